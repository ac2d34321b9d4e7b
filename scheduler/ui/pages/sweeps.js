// Every sweep: its method, objective, progress and best value.

import { drover } from '../api.js';
import { emptyState, fill, formatAgo, formatNumber, formatTime, h, shortId, statusBadge } from '../dom.js';
import { every } from '../live.js';

export function progressBar(counts, total) {
  const parts = ['finished', 'stopped', 'failed', 'killed', 'active'];
  const bar = h('div', { class: 'progress', role: 'img', 'aria-label': parts.map((p) => `${counts[p]} ${p}`).join(', ') + ` of ${total}` });
  for (const part of parts) {
    if (!counts[part]) continue;
    const span = h('span', { class: `bar-${part}`, title: `${counts[part]} ${part}` });
    span.style.width = `${(100 * counts[part]) / Math.max(total, 1)}%`;
    bar.append(span);
  }
  return bar;
}

export async function render(main) {
  const holder = h('div');
  fill(main, h('div', { class: 'toolbar' }, h('h1', {}, 'Sweeps')), holder);
  async function refresh() {
    const { sweeps } = await drover('/sweeps');
    if (!sweeps.length) {
      fill(holder, emptyState('No sweeps yet', "drover sweep examples/quickstart -P 'alpha=loguniform(1e-3,1)' --max-runs 20 --metric train_rmse"));
      return;
    }
    sweeps.sort((a, b) => b.created_ms - a.created_ms);
    fill(holder, h('table', { class: 'grid' },
      h('thead', {}, h('tr', {}, ['Name', 'Status', 'Method', 'Objective', 'Progress', '', 'Best', 'Created'].map((t) => h('th', {}, t)))),
      h('tbody', {}, sweeps.map((sweep) => {
        const total = sweep.spec.max_runs;
        const done = sweep.counts.finished + sweep.counts.failed + sweep.counts.killed + sweep.counts.stopped;
        const objective = sweep.spec.objective ? `${sweep.spec.objective.goal} ${sweep.spec.objective.metric}` : '—';
        return h('tr', {},
          h('td', {}, h('a', { href: `/sweeps/${sweep.sweep_id}` }, sweep.name || shortId(sweep.sweep_id))),
          h('td', {}, statusBadge(sweep.status)),
          h('td', {}, sweep.spec.method),
          h('td', {}, objective),
          h('td', { class: 'num' }, `${done}/${total}`),
          h('td', {}, progressBar(sweep.counts, total)),
          h('td', { class: 'num' }, sweep.best && sweep.best.value !== null ? formatNumber(sweep.best.value) : '—'),
          h('td', { title: formatTime(sweep.created_ms) }, formatAgo(sweep.created_ms)));
      }))));
  }
  await refresh();
  return every(3000, refresh);
}
