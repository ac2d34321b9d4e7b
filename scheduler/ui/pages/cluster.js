// The cluster: workers with their state, slots and resources, the queue in the order the
// dispatcher takes it, and the attempts lost with a worker recently.

import { drover, post } from '../api.js';
import { emptyState, errorBox, fill, formatAgo, formatTime, h, shortId } from '../dom.js';
import { every } from '../live.js';

function bytes(value) {
  const gib = Number(value) / 2 ** 30;
  return gib >= 1 ? `${gib.toFixed(1)} GiB` : `${Math.round(Number(value) / 2 ** 20)} MiB`;
}

export async function render(main) {
  const notice = h('div', { role: 'status' });
  const workers = h('section');
  const queue = h('section');
  const losses = h('section');
  fill(main, h('h1', {}, 'Cluster'), notice, h('h2', {}, 'Workers'), workers, h('h2', {}, 'Queue'), queue,
    h('h2', {}, 'Lost recently'), losses);
  // Drains a worker (no new runs; its runs finish) or undrains it, then redraws.
  async function drain(worker, yes) {
    try {
      await post(`/api/drover/workers/${encodeURIComponent(worker)}/drain`, { drain: yes });
      fill(notice);
      await refresh();
    } catch (error) {
      fill(notice, errorBox(error));
    }
  }
  const state = (w) => (!w.connected ? '○ disconnected' : w.draining ? '◐ draining' : '● connected');
  async function refresh() {
    const cluster = await drover('/cluster');
    fill(workers, cluster.workers.length ? h('table', { class: 'grid' },
      h('thead', {}, h('tr', {}, ['Worker', 'Host', 'State', 'Slots busy', 'CPUs', 'Memory', 'GPUs', 'Docker', 'Labels', 'Last heartbeat', 'Running', ''].map((t) => h('th', {}, t)))),
      h('tbody', {}, cluster.workers.map((w) => h('tr', { class: w.connected ? '' : 'worker-down' },
        h('td', {}, h('code', {}, w.worker_id)), h('td', {}, w.hostname),
        h('td', {}, state(w)),
        h('td', { class: 'num' }, `${w.busy_slots} / ${w.slots}`), h('td', { class: 'num' }, `${w.cpus_in_use} / ${w.cpus}`), h('td', { class: 'num' }, `${bytes(w.memory_in_use_bytes)} / ${bytes(w.memory_bytes)}`),
        h('td', { class: 'num', title: w.gpus.length ? `devices ${w.gpus.join(', ')}; held: ${w.gpus_in_use.join(', ') || 'none'}` : '' }, w.gpus.length ? `${w.gpus_in_use.length} / ${w.gpus.length}` : '—'),
        h('td', {}, w.docker_available ? 'yes' : 'no'),
        h('td', {}, (w.labels || []).map((l) => `${l.key}=${l.value}`).join(', ')),
        h('td', { title: formatTime(w.last_seen_ms) }, formatAgo(w.last_seen_ms)),
        h('td', {}, (w.runs || []).map((r, i) => [i ? ', ' : '', h('a', { href: `/runs/${r.run_id}` }, r.run_name || shortId(r.run_id)), r.retries_used ? ` (attempt ${r.attempt})` : ''])),
        h('td', {}, w.draining
          ? h('button', { type: 'button', class: 'small', onclick: () => drain(w.worker_id, false) }, 'Undrain')
          : h('button', { type: 'button', class: 'small', title: 'Place no new runs here; its runs finish', onclick: () => drain(w.worker_id, true) }, 'Drain'))))))
      : emptyState('No workers', 'drover worker --scheduler http://SCHEDULER:7070', 'drover run and drover sweep start one beside the embedded store.'));
    fill(queue, cluster.queue.length ? h('table', { class: 'grid' },
      h('thead', {}, h('tr', {}, ['#', 'Run', 'Experiment', 'Priority', 'Submitted', 'Requeued', 'Waiting'].map((t) => h('th', {}, t)))),
      h('tbody', {}, cluster.queue.map((q, i) => h('tr', {},
        h('td', { class: 'num' }, String(i + 1)), h('td', {}, h('a', { href: `/runs/${q.run_id}` }, q.run_name || shortId(q.run_id))),
        h('td', {}, q.experiment_id), h('td', { class: 'num' }, String(q.priority)),
        h('td', { title: formatTime(q.submitted) }, formatAgo(q.submitted)), h('td', { class: 'num' }, q.retries_used ? `${q.retries_used}×` : ''), h('td', {}, q.waiting || '')))))
      : h('p', { class: 'muted' }, 'Nothing is waiting for a worker.'));
    fill(losses, cluster.recent_losses.length ? h('table', { class: 'grid losses' },
      h('thead', {}, h('tr', {}, ['When', 'Run', 'Attempt', 'Worker', 'Why', 'Then'].map((t) => h('th', {}, t)))),
      h('tbody', {}, cluster.recent_losses.map((l) => h('tr', {},
        h('td', { title: formatTime(l.time) }, formatAgo(l.time)), h('td', {}, h('a', { href: `/runs/${l.run_id}` }, shortId(l.run_id))),
        h('td', { class: 'num' }, String(l.attempt)), h('td', {}, h('code', {}, l.worker)), h('td', {}, l.reason),
        h('td', {}, l.requeued ? '↻ requeued' : '✕ ended')))))
      : h('p', { class: 'muted' }, 'No attempt has lost its worker since the scheduler started.'));
  }
  await refresh();
  return every(2000, refresh);
}
