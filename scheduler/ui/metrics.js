// Metric charts shared by the run and compare pages: one Chart per metric, fed by
// /api/drover/chart at the chart's pixel width, with the x axis, log scale, smoothing, zoom
// and (on a run page) the attempt kept in the URL.

import { drover } from './api.js';
import { Chart, PALETTE } from './chart.js';
import { errorBox, fill, h } from './dom.js';
import * as url from './url.js';

/// The chart settings controls; `onChange` redraws.
export function chartControls(onChange) {
  const axis = h('select', { 'aria-label': 'x axis', onchange: () => { url.update({ x: axis.value === 'step' ? '' : axis.value, zoom: '' }); onChange(); } },
    ['step', 'time', 'relative'].map((v) => h('option', { value: v, selected: url.param('x', 'step') === v }, v === 'step' ? 'x: step' : v === 'time' ? 'x: wall time' : 'x: relative time')));
  const log = h('input', { type: 'checkbox', checked: url.param('log') === '1', onchange: () => { url.update({ log: log.checked }); onChange(); } });
  const smoothing = h('input', { type: 'range', min: 0, max: 0.99, step: 0.01, value: url.param('smooth', '0'), 'aria-label': 'smoothing' });
  const shown = h('span', { class: 'muted' }, url.param('smooth', '0'));
  smoothing.addEventListener('input', () => { shown.textContent = smoothing.value; });
  smoothing.addEventListener('change', () => { url.update({ smooth: smoothing.value === '0' ? '' : smoothing.value }); onChange(); });
  return h('div', { class: 'toolbar chart-controls' }, axis, h('label', {}, log, ' log y'), h('label', {}, 'smoothing ', smoothing, ' ', shown),
    h('span', { class: 'muted' }, 'Drag across a chart to zoom; double-click to zoom out.'));
}

/// Draws metric `key` for `runs` ([{ id, label, start }]) into `container`; returns the chart.
export function metricChart(container, key, runs) {
  const title = h('h3', {}, key);
  const status = h('div', { class: 'muted small' });
  const box = h('div', { class: 'chart-box' }, title, status);
  container.append(box);
  let chart = null;
  const zoomed = () => {
    const [zoomKey, from, to] = url.param('zoom').split('~');
    return zoomKey === key ? { from: Number(from), to: Number(to) } : null;
  };
  async function load() {
    const axis = url.param('x', 'step');
    const zoom = zoomed();
    // Relative time is wall time shifted by each run's start; ranges go to the server as
    // wall time of the first run.
    const shift = axis === 'relative' ? runs[0].start : 0;
    try {
      const answer = await drover('/chart', {
        run_ids: runs.map((run) => run.id).join(','), key, x: axis === 'step' ? 'step' : 'time',
        width: chart.plotWidth(), from: zoom ? zoom.from + shift : undefined, to: zoom ? zoom.to + shift : undefined,
        attempt: url.param('attempt') || undefined,
      });
      const series = answer.series.map((s, index) => ({
        label: runs[index].label, color: PALETTE[index % PALETTE.length], buckets: s.buckets,
        xOffset: axis === 'relative' ? runs[index].start : 0,
      }));
      const points = answer.series.reduce((n, s) => n + s.points, 0);
      fill(status, `${points.toLocaleString()} point${points === 1 ? "" : "s"}${zoom ? ' in the zoomed range' : ''}${points > chart.plotWidth() ? `, each pixel showing its min and max` : ''}`);
      chart.set(series, { axis, log: url.param('log') === '1', smoothing: Number(url.param('smooth', '0')), title: key });
    } catch (error) {
      fill(status, errorBox(error));
    }
  }
  chart = new Chart(box, {
    height: 240,
    onZoom: (from, to) => {
      url.update({ zoom: from === null ? '' : `${key}~${from}~${to}` });
      load();
    },
  });
  chart.reload = load;
  load();
  return chart;
}
