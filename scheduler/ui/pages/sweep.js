// One sweep: progress, method and space, the best run and the best-so-far curve, the
// leaderboard, and parallel coordinates of every trial's parameters against the metric.

import { drover, post } from '../api.js';
import { Chart } from '../chart.js';
import { errorBox, fill, formatNumber, formatTime, h, shortId, statusBadge } from '../dom.js';
import { every } from '../live.js';
import { parallelCoordinates } from '../plots.js';
import { progressBar } from './sweeps.js';

function domainText(domain) {
  const [kind, value] = Object.entries(domain)[0];
  if (kind === 'fixed') return String(value);
  if (kind === 'values') return value.join(', ');
  if (kind === 'int') return `int(${value.low}, ${value.high})`;
  if (kind === 'q_uniform') return `qstep(${value.low}, ${value.high}, ${value.q})`;
  return `${kind}(${value.low}, ${value.high})`;
}

export async function render(main, [sweepId]) {
  const header = h('div');
  const notice = h('div', { role: 'status' });
  const facts = h('section', { class: 'cards' });
  const curveBox = h('div', { class: 'chart-box' }, h('h3', {}, 'Best so far, by trial'));
  const parallel = h('canvas', { class: 'parallel', role: 'img' });
  const board = h('section');
  fill(main, header, notice, facts, h('h2', {}, 'Best so far'), curveBox,
    h('h2', {}, 'Parameters → metric'), h('p', { class: 'muted small' }, 'One line per trial. Dashed: stopped early. Red dotted: failed.'), parallel,
    h('h2', {}, 'Leaderboard'), board);
  const curve = new Chart(curveBox, { height: 220 });

  async function refresh() {
    const { sweep, trials } = await drover(`/sweeps/${sweepId}`);
    const spec = sweep.spec;
    const total = spec.max_runs;
    const cancel = sweep.status === 'RUNNING' ? h('button', { type: 'button', class: 'danger', onclick: async () => {
      if (!window.confirm('Cancel this sweep and its running trials?')) return;
      try { await post(`/api/drover/sweeps/${sweepId}/cancel`); await refresh(); } catch (error) { fill(notice, errorBox(error)); }
    } }, 'Cancel sweep') : null;
    fill(header, h('div', { class: 'crumbs' }, h('a', { href: '/sweeps' }, 'Sweeps'), ' / ', h('code', {}, sweepId)),
      h('div', { class: 'toolbar' }, h('h1', {}, sweep.name || shortId(sweepId)), statusBadge(sweep.status), cancel),
      sweep.reason ? h('p', { class: 'muted' }, sweep.reason) : null);
    const counts = sweep.counts;
    const objective = spec.objective;
    fill(facts,
      h('div', { class: 'card' }, h('h3', {}, 'Progress'), progressBar(counts, total),
        h('p', {}, `${counts.created} of ${total} trials created: ${counts.finished} finished, ${counts.stopped} stopped early, ${counts.failed} failed, ${counts.killed} killed, ${counts.active} active`),
        h('p', { class: 'muted' }, `Started ${formatTime(sweep.created_ms)}${sweep.ended_ms ? `, ended ${formatTime(sweep.ended_ms)}` : ''}`)),
      h('div', { class: 'card' }, h('h3', {}, 'Method'),
        h('p', {}, `${spec.method}, ${spec.parallel} at a time${spec.max_failures !== null && spec.max_failures !== undefined ? `, up to ${spec.max_failures} failures` : ''}, seed ${spec.seed}`),
        h('p', {}, objective ? `${objective.goal} ${objective.metric}` : 'no objective'),
        spec.early_stop ? h('p', {}, `early stopping: ${spec.early_stop.rule} from step ${spec.early_stop.min_step}, eta ${spec.early_stop.eta}`) : null),
      h('div', { class: 'card' }, h('h3', {}, 'Space'), h('table', { class: 'grid kv' }, h('tbody', {}, spec.parameters.map((p) => h('tr', {}, h('th', {}, p.name), h('td', {}, domainText(p.domain))))))),
      h('div', { class: 'card' }, h('h3', {}, 'Best'), sweep.best
        ? h('p', {}, h('a', { href: `/runs/${sweep.best.run_id}` }, `trial ${sweep.best.index}`), `: ${formatNumber(sweep.best.value)}`, h('br'), Object.entries(sweep.best.params).map(([k, v]) => `${k}=${v}`).join(', '))
        : h('p', { class: 'muted' }, 'No trial has reported the metric yet.')));

    const better = (a, b) => (objective && objective.goal === 'maximize' ? a > b : a < b);
    let best = null;
    const buckets = [];
    for (const trial of [...trials].sort((a, b) => a.index - b.index)) {
      if (trial.value === null || trial.value === undefined) continue;
      if (best === null || better(trial.value, best)) best = trial.value;
      buckets.push([trial.index, trial.index, best, best, best, best, 1]);
    }
    curve.set([{ label: objective ? `best ${objective.metric}` : 'best', buckets }], { axis: 'step', title: 'best so far' });

    const axes = [...spec.parameters.filter((p) => !('fixed' in p.domain)).map((p) => p.name), objective ? objective.metric : 'value'];
    const rows = trials.map((trial) => {
      const values = { ...trial.params };
      if (trial.value !== null && trial.value !== undefined) values[axes[axes.length - 1]] = trial.value;
      return { values, state: trial.state };
    });
    const logAxes = spec.parameters.filter((p) => 'log_uniform' in p.domain).map((p) => p.name);
    parallelCoordinates(parallel, rows, axes, { width: Math.min(1200, main.clientWidth - 20), goal: objective ? objective.goal : 'minimize', logAxes });

    const ranked = trials.filter((t) => t.value !== null && t.value !== undefined).sort((a, b) => (better(a.value, b.value) ? -1 : better(b.value, a.value) ? 1 : 0));
    const paramNames = spec.parameters.map((p) => p.name);
    fill(board, ranked.length ? h('table', { class: 'grid' },
      h('thead', {}, h('tr', {}, h('th', {}, '#'), h('th', {}, 'Trial'), h('th', {}, 'State'), h('th', { class: 'num' }, objective ? objective.metric : 'value'), paramNames.map((n) => h('th', {}, n)))),
      h('tbody', {}, ranked.slice(0, 100).map((trial, i) => {
        const { params } = trial;
        return h('tr', {}, h('td', { class: 'num' }, String(i + 1)), h('td', {}, h('a', { href: `/runs/${trial.run_id}` }, `trial ${trial.index}`)),
          h('td', {}, trial.state + (trial.stopped_by ? ` (${trial.stopped_by})` : '')), h('td', { class: 'num' }, formatNumber(trial.value)), paramNames.map((n) => h('td', {}, params[n] ?? '')));
      }))) : h('p', { class: 'muted' }, 'No trial has reported the metric yet.'));
    return sweep.status === 'RUNNING';
  }

  let running = await refresh();
  return every(2000, async () => { if (running) running = await refresh(); });
}
