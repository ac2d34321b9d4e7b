// One run: status, provenance and execution, params, metrics with charts, tags, artifacts
// and the log, with status, metrics and log following live while the run goes.

import { drover, mlflowPost, post } from '../api.js';
import { chartControls, metricChart } from '../metrics.js';
import { errorBox, fill, formatDuration, formatNumber, formatTime, h, shortId, statusBadge, tagOf } from '../dom.js';
import { all, every } from '../live.js';
import { artifactBrowser } from '../artifacts.js';
import { patchView } from '../patch.js';
import * as url from '../url.js';

const LIVE = new Set(['RUNNING', 'SCHEDULED']);

/// Rows of [key, value]; rows whose value is unknown (empty or '—') are left out.
function keyValueTable(rows, empty) {
  rows = rows.filter(([, value]) => value !== '' && value !== '—' && value !== undefined && value !== null);
  if (!rows.length) return h('p', { class: 'muted' }, empty);
  return h('table', { class: 'grid kv' }, h('tbody', {}, rows.map(([key, value]) => h('tr', {}, h('th', {}, key), h('td', {}, value)))));
}

/// Each attempt: where it ran, when, how it ended (or why it was retried), and a link to its
/// own metric charts (each attempt keeps its own history).
function attemptTable(runId, execution) {
  const time = (ms) => (ms ? formatTime(ms) : '—');
  const shown = Number(url.param('attempt', String(execution.attempt)));
  const charts = (a) => (a.attempt === shown ? h('span', { class: 'muted' }, 'shown')
    : h('a', { href: url.link(`/runs/${runId}`, { attempt: a.attempt === execution.attempt ? '' : a.attempt }) }, 'show'));
  return h('table', { class: 'grid attempts' },
    h('thead', {}, h('tr', {}, ['#', 'Worker', 'Assigned', 'Started', 'Ended', 'Exit code', 'Outcome', 'Metrics'].map((t) => h('th', {}, t)))),
    h('tbody', {}, execution.attempts.map((a) => h('tr', {},
      h('td', { class: 'num' }, String(a.attempt)), h('td', {}, h('code', {}, a.worker)),
      h('td', {}, time(a.assigned)), h('td', {}, time(a.started)), h('td', {}, time(a.ended)),
      h('td', { class: 'num' }, a.exit_code ?? '—'), h('td', {}, a.outcome || (a.ended ? '—' : 'running')), h('td', {}, charts(a))))));
}

export async function render(main, [runId]) {
  let detail = await drover(`/runs/${runId}`);
  const header = h('div', { class: 'run-header' });
  const notice = h('div', { role: 'status' });
  const overview = h('section', { class: 'cards' });
  const params = h('section');
  const metrics = h('section');
  const charts = h('div', { class: 'charts' });
  const tags = h('section');
  const artifacts = h('section');
  const logBox = h('pre', { class: 'log', tabindex: 0, 'aria-label': 'Run log' });
  const follow = h('input', { type: 'checkbox', checked: url.param('follow', '1') === '1', onchange: () => url.update({ follow: follow.checked ? '' : '0' }) });
  const attempt = url.param('attempt');
  const attemptNote = attempt ? h('p', { class: 'notice' }, `The charts show attempt ${attempt}'s history; the table, the current attempt's latest values. `,
    h('a', { href: url.link(`/runs/${runId}`) }, 'Show the current attempt')) : null;
  fill(main, header, notice, overview,
    h('h2', {}, 'Metrics'), attemptNote, metrics, chartControls(() => chartList.forEach((c) => c.reload())), charts,
    h('h2', {}, 'Parameters'), params,
    h('h2', {}, 'Log'), h('label', {}, follow, ' Follow the end of the log'), logBox,
    h('h2', {}, 'Artifacts'), artifacts,
    h('h2', {}, 'Tags'), tags);

  async function act(action) {
    try {
      await action();
      fill(notice);
      await refresh();
    } catch (error) {
      fill(notice, errorBox(error));
    }
  }

  function drawHeader() {
    const { run, experiment, execution } = detail;
    const info = run.info;
    const live = LIVE.has(info.status);
    const deleted = info.lifecycle_stage === 'deleted';
    const buttons = [];
    if (execution && live) buttons.push(h('button', { type: 'button', class: 'danger', onclick: () => act(() => post(`/api/drover/runs/${runId}/cancel`)) }, 'Cancel'));
    buttons.push(deleted
      ? h('button', { type: 'button', onclick: () => act(() => mlflowPost('/runs/restore', { run_id: runId })) }, 'Restore')
      : h('button', { type: 'button', class: 'danger', onclick: () => { if (window.confirm('Delete this run? It can be restored.')) act(() => mlflowPost('/runs/delete', { run_id: runId })); } }, 'Delete'));
    fill(header,
      h('div', { class: 'crumbs' }, h('a', { href: url.link('/runs', { e: info.experiment_id }) }, experiment.name), ' / run ', h('code', {}, runId)),
      h('div', { class: 'toolbar' }, h('h1', {}, info.run_name || shortId(runId)), statusBadge(info.status), deleted ? h('span', { class: 'tag' }, 'deleted') : null, ...buttons));
    document.title = `${info.run_name || shortId(runId)} · drover`;
  }

  function drawOverview() {
    const { run, execution } = detail;
    const info = run.info;
    const tag = (key) => tagOf(run, key);
    const end = info.end_time || (LIVE.has(info.status) ? Date.now() : null);
    const commit = tag('mlflow.source.git.commit');
    const when = [
      ['Started', formatTime(info.start_time)],
      ['Ended', info.end_time ? formatTime(info.end_time) : '—'],
      ['Duration', end ? formatDuration(end - info.start_time) : ''],
      ['User', info.user_id],
    ];
    const provenance = [
      ['Snapshot', tag('drover.snapshot.digest') || (execution && execution.snapshot) || '—'],
      ['Git commit', commit ? `${commit}${tag('drover.source.git.dirty') === 'true' ? ' (dirty: uncommitted changes)' : ''}` : '—'],
      ['Uncommitted', tag('drover.source.git.diff') ? uncommitted(tag('drover.source.git.diff')) : '—'],
      ['Source', tag('mlflow.source.name') || tag('drover.project.name') || '—'],
      ['Entry point', tag('mlflow.project.entryPoint') || (execution && execution.entry_point) || '—'],
      ['Command', tag('drover.command') || '—'],
      ['Image', tag('drover.docker.image') || (execution && execution.image) || '—'],
      ['Image ID', tag('drover.docker.image_id') || '—'],
      ['Environment', execution ? `${execution.env_manager}${execution.environment_names.length ? `; variables: ${execution.environment_names.join(', ')}` : ''}` : '—'],
      ['drover', tag('drover.version') || '—'],
      ['Rerun of', tag('drover.rerun_of') ? h('a', { href: `/runs/${tag('drover.rerun_of')}` }, tag('drover.rerun_of')) : '—'],
      ['Run it again', execution ? h('code', {}, `drover runs rerun ${runId}`) : '—'],
    ];
    const data = (run.data.tags || []).map((t) => t.key.match(/^drover\.data\.(.+)\.source$/)).filter(Boolean)
      .map(([key, name]) => [name, tag(key), tag(`drover.data.${name}.digest`) || 'not read (a URI, or unreadable where the run ran)']);
    const attempts = execution ? [
      ['Placement', execution.worker ? `${execution.state} on ${execution.worker}` : execution.state],
      ['Attempt', `${execution.attempt || '—'}${execution.retries_used ? ` (${execution.retries_used} requeued after a lost worker; up to ${execution.max_retries})` : ''}`],
      ['Worker', tag('drover.worker') || '—'],
      ['GPUs', tag('drover.gpus') || '—'],
      ['Waiting', LIVE.has(info.status) && execution.state === 'queued' ? (tag('drover.waiting') || 'for a free slot') : '—'],
      ['Exit code', execution.exit_code ?? tag('drover.exit_code') ?? '—'],
      ['Why', execution.message || tag('drover.failure_reason') || '—'],
      ['Submitted', formatTime(execution.submitted)],
      ['Priority', String(execution.priority)],
    ] : [['Executed by', 'a client (MLflow API), not by drover']];
    fill(overview,
      h('div', { class: 'card' }, h('h3', {}, 'When'), keyValueTable(when)),
      h('div', { class: 'card' }, h('h3', {}, 'Execution'), keyValueTable(attempts)),
      execution && execution.attempts.length ? h('div', { class: 'card wide' }, h('h3', {}, 'Attempts'), attemptTable(runId, execution)) : null,
      h('div', { class: 'card wide' }, h('h3', {}, 'Provenance'), keyValueTable(provenance, 'Not recorded: drover records the code, image and command of the runs it executes.')),
      data.length ? h('div', { class: 'card wide' }, h('h3', {}, 'Data'), h('table', { class: 'grid data' },
        h('thead', {}, h('tr', {}, h('th', {}, 'Parameter'), h('th', {}, 'Source'), h('th', {}, 'Digest'))),
        h('tbody', {}, data.map(([name, source, digest]) => h('tr', {}, h('th', {}, name), h('td', {}, h('code', {}, source)), h('td', {}, h('code', {}, digest))))))) : null);
  }

  // The summary of the uncommitted changes, which opens to their diff (read once, on demand;
  // kept across the redraws of a live run).
  let uncommittedBox = null;
  function uncommitted(summary) {
    if (uncommittedBox) return uncommittedBox;
    const holder = h('div');
    const details = h('details', { class: 'uncommitted', ontoggle: async () => {
      if (!details.open || holder.childNodes.length) return;
      try {
        fill(holder, patchView((await drover(`/runs/${runId}/source-diff`)).diff));
      } catch (error) {
        fill(holder, errorBox(error));
      }
    } }, h('summary', {}, summary), holder);
    uncommittedBox = details;
    return details;
  }

  function drawData() {
    const { run } = detail;
    fill(params, keyValueTable((run.data.params || []).map((p) => [p.key, p.value]), 'No parameters.'));
    const latest = run.data.metrics || [];
    fill(metrics, latest.length
      ? h('table', { class: 'grid' }, h('thead', {}, h('tr', {}, h('th', {}, 'Metric'), h('th', { class: 'num' }, 'Latest'), h('th', { class: 'num' }, 'Step'), h('th', {}, 'Time'))),
        h('tbody', {}, latest.map((m) => h('tr', {}, h('th', {}, m.key), h('td', { class: 'num' }, formatNumber(m.value)), h('td', { class: 'num' }, String(m.step)), h('td', {}, formatTime(m.timestamp))))))
      : h('p', { class: 'muted' }, 'No metrics yet.'));
    fill(tags, keyValueTable((run.data.tags || []).map((t) => [t.key, t.value]), 'No tags.'));
  }

  const chartList = [];
  function syncCharts() {
    const keys = (detail.run.data.metrics || []).map((m) => m.key).sort();
    const have = new Set(chartList.map((c) => c.key));
    for (const key of keys) {
      if (have.has(key)) continue;
      const chart = metricChart(charts, key, [{ id: runId, label: detail.run.info.run_name || shortId(runId), start: detail.run.info.start_time }]);
      chart.key = key;
      chartList.push(chart);
    }
  }

  let cursor = 0;
  async function pollLog() {
    for (let round = 0; round < 16; round += 1) {
      const page = await drover(`/runs/${runId}/log`, { cursor, max_bytes: 262144 });
      for (const chunk of page.chunks) {
        logBox.append(h('span', { class: `log-${chunk.stream}` }, chunk.text));
      }
      cursor = page.next_cursor;
      if (!page.chunks.length) break;
    }
    if (!cursor && !logBox.childNodes.length) logBox.textContent = '';
    logBox.dataset.cursor = String(cursor);
    if (follow.checked) logBox.scrollTop = logBox.scrollHeight;
  }

  async function refresh() {
    detail = await drover(`/runs/${runId}`);
    drawHeader();
    drawOverview();
    drawData();
    syncCharts();
  }

  drawHeader();
  drawOverview();
  drawData();
  syncCharts();
  artifactBrowser(artifacts, detail.run);
  await pollLog().catch((error) => fill(logBox, String(error.message)));

  // Each metric's latest point, to redraw each second only the charts whose metric moved;
  // every tenth second all of them, for points logged behind the latest step.
  const latestOf = () => new Map((detail.run.data.metrics || []).map((m) => [m.key, `${m.step}@${m.timestamp}=${m.value}`]));
  let wasLive = LIVE.has(detail.run.info.status);
  let ticks = 0;
  return all(
    every(1000, async () => {
      if (!wasLive) return;
      await pollLog();
      const before = latestOf();
      await refresh();
      const after = latestOf();
      ticks += 1;
      const moved = (chart) => ticks % 10 === 0 || (before.has(chart.key) && before.get(chart.key) !== after.get(chart.key));
      chartList.filter(moved).forEach((chart) => chart.reload());
      wasLive = LIVE.has(detail.run.info.status);
      if (!wasLive) await pollLog();
    }),
    () => chartList.forEach((chart) => chart.destroy()),
  );
}
