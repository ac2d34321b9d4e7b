// Compare 2 to 20 runs: their params side by side with the differing ones highlighted (or
// only those), their metrics overlaid on one chart per metric, and a scatter of any value
// against any metric.

import { drover } from '../api.js';
import { PALETTE } from '../chart.js';
import { chartControls, metricChart } from '../metrics.js';
import { errorBox, fill, formatNumber, h, shortId, statusBadge } from '../dom.js';
import { scatter } from '../plots.js';
import * as url from '../url.js';

export async function render(main) {
  const ids = url.listParam('runs');
  if (ids.length < 2 || ids.length > 20) {
    fill(main, h('h1', {}, 'Compare runs'), errorBox(`Pick 2 to 20 runs in a runs table to compare them (${ids.length} given).`));
    return null;
  }
  const details = await Promise.all(ids.map((id) => drover(`/runs/${id}`)));
  const runs = details.map((d) => d.run);
  const label = (run) => run.info.run_name || shortId(run.info.run_id);

  const onlyDiff = h('input', { type: 'checkbox', checked: url.param('diff') === '1', onchange: () => { url.update({ diff: onlyDiff.checked }); drawParams(); } });
  const paramsHolder = h('div', { class: 'table-holder' });
  const charts = h('div', { class: 'charts' });
  const scatterHolder = h('div');
  const legend = h('div', { class: 'legend' }, runs.map((run, i) => h('span', {}, h('span', { class: 'swatch', 'data-color': i }), h('a', { href: `/runs/${run.info.run_id}` }, label(run)))));
  for (const swatch of legend.querySelectorAll('.swatch')) swatch.style.background = PALETTE[Number(swatch.dataset.color) % PALETTE.length];

  // What differs in code and inputs: each run against the first, as `drover runs diff`.
  const diffs = h('p', { class: 'diff-links' }, 'What differs in code, data, image and command: ', runs.slice(1).map((run) =>
    h('a', { class: 'button small', href: url.link('/diff', { a: runs[0].info.run_id, b: run.info.run_id }) }, runs.length === 2 ? 'diff these two runs' : `${label(runs[0])} → ${label(run)}`)));

  const chartList = [];
  fill(main, h('h1', {}, `Compare ${runs.length} runs`), legend, diffs,
    h('h2', {}, 'Parameters'), h('label', {}, onlyDiff, ' Only the differences'), paramsHolder,
    h('h2', {}, 'Metrics'), chartControls(() => chartList.forEach((c) => c.reload())), charts,
    h('h2', {}, 'Scatter'), scatterHolder);

  const valueOf = (run, column) => {
    const [kind, ...rest] = column.split('.');
    const key = rest.join('.');
    if (kind === 'params') return (run.data.params || []).find((p) => p.key === key)?.value;
    return (run.data.metrics || []).find((m) => m.key === key)?.value;
  };

  function drawParams() {
    const keys = [...new Set(runs.flatMap((run) => (run.data.params || []).map((p) => p.key)))].sort();
    const rows = [];
    for (const key of keys) {
      const values = runs.map((run) => valueOf(run, `params.${key}`));
      const differs = new Set(values.map(String)).size > 1;
      if (onlyDiff.checked && !differs) continue;
      rows.push(h('tr', { class: differs ? 'differs-row' : '' }, h('th', {}, key),
        values.map((value) => h('td', { class: differs ? 'differs' : '' }, value === undefined ? '—' : value))));
    }
    const metricKeys = [...new Set(runs.flatMap((run) => (run.data.metrics || []).map((m) => m.key)))].sort();
    const metricRows = metricKeys.map((key) => h('tr', {}, h('th', {}, `${key} (latest)`), runs.map((run) => h('td', { class: 'num' }, formatNumber(valueOf(run, `metrics.${key}`)) || '—'))));
    fill(paramsHolder, h('table', { class: 'grid compare' },
      h('thead', {}, h('tr', {}, h('th', {}, ''), runs.map((run) => h('th', {}, h('a', { href: `/runs/${run.info.run_id}` }, label(run)), ' ', statusBadge(run.info.status))))),
      h('tbody', {}, rows.length ? rows : h('tr', {}, h('td', { colspan: runs.length + 1, class: 'muted' }, 'No parameter differs.')), metricRows)));
  }

  function drawScatter() {
    const params = [...new Set(runs.flatMap((run) => (run.data.params || []).map((p) => `params.${p.key}`)))].sort();
    const metrics = [...new Set(runs.flatMap((run) => (run.data.metrics || []).map((m) => `metrics.${m.key}`)))].sort();
    const choices = [...params, ...metrics];
    if (!metrics.length) { fill(scatterHolder, h('p', { class: 'muted' }, 'No metrics to plot.')); return; }
    const x = url.param('sx', params[0] || metrics[0]);
    const y = url.param('sy', metrics[0]);
    const select = (name, value, options) => {
      const element = h('select', { 'aria-label': name, onchange: () => { url.update({ [name]: element.value }); drawScatter(); } }, options.map((o) => h('option', { value: o, selected: o === value }, o)));
      return element;
    };
    const canvas = h('canvas', { class: 'scatter', role: 'img' });
    fill(scatterHolder, h('div', { class: 'toolbar' }, 'x ', select('sx', x, choices), ' y ', select('sy', y, metrics)), canvas);
    scatter(canvas, runs.map((run, i) => ({ x: valueOf(run, x), y: valueOf(run, y), color: PALETTE[i % PALETTE.length] })), { xLabel: x, yLabel: y, width: Math.min(900, main.clientWidth - 20) });
  }

  drawParams();
  drawScatter();
  const keys = [...new Set(runs.flatMap((run) => (run.data.metrics || []).map((m) => m.key)))].sort();
  const chartRuns = runs.map((run) => ({ id: run.info.run_id, label: label(run), start: run.info.start_time }));
  for (const key of keys) chartList.push(metricChart(charts, key, chartRuns));
  if (!keys.length) charts.append(h('p', { class: 'muted' }, 'These runs have no metrics.'));
  return () => chartList.forEach((chart) => chart.destroy());
}
