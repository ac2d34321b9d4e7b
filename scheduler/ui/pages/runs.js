// The runs table of one or several experiments: the server filters, sorts and pages, so it
// stays instant at 100,000 runs; this draws one page, keeps every setting in the URL, and
// refreshes the statuses on the page while runs are live.

import { drover } from '../api.js';
import { emptyState, errorBox, fill, formatDuration, formatNumber, formatTime, h, shortId, statusBadge, tagOf } from '../dom.js';
import { every } from '../live.js';
import * as url from '../url.js';
import { navigate } from '../app.js';

const PAGE_SIZES = [50, 100, 250, 1000];

/// Built-in columns: label, the order_by subject (if sortable), and the cell.
const BUILT_IN = [
  ['Status', 'attributes.status', (run) => statusBadge(run.info.status)],
  ['Name', 'attributes.run_name', null],
  ['Start', 'attributes.start_time', (run) => formatTime(run.info.start_time)],
  ['Duration', null, (run) => duration(run)],
  ['User', 'attributes.user_id', (run) => run.info.user_id],
  ['Source', 'tags.`mlflow.source.git.commit`', (run) => source(run)],
  ['Worker', 'tags.`drover.worker`', (run) => tagOf(run, 'drover.worker') || ''],
];

/// How long the run took, or has been running; nothing when it ended without an end time.
function duration(run) {
  const end = run.info.end_time || (run.info.status === 'RUNNING' ? Date.now() : null);
  return end ? formatDuration(end - run.info.start_time) : '';
}

function source(run) {
  const commit = tagOf(run, 'mlflow.source.git.commit');
  const name = tagOf(run, 'drover.project.name') || tagOf(run, 'mlflow.source.name') || '';
  const dirty = tagOf(run, 'drover.source.git.dirty') === 'true';
  return commit ? `${name} @${commit.slice(0, 8)}${dirty ? '+dirty' : ''}` : name;
}

/// `params.my key` → params.`my key`, as the search grammar reads it.
export function subject(kind, key) {
  return /^[A-Za-z0-9_]+$/.test(key) ? `${kind}.${key}` : `${kind}.\`${key}\``;
}

function cellOf(run, column) {
  const [kind, ...rest] = column.split('.');
  const key = rest.join('.');
  if (kind === 'params') return (run.data.params || []).find((p) => p.key === key)?.value ?? '';
  if (kind === 'tags') return tagOf(run, key) ?? '';
  const metric = (run.data.metrics || []).find((m) => m.key === key);
  return metric ? formatNumber(metric.value) : '';
}

export async function render(main) {
  const state = {
    experiments: url.listParam('e'),
    filter: url.param('q'),
    sort: url.param('sort', 'attributes.start_time'),
    descending: url.param('dir', 'desc') !== 'asc',
    columns: url.listParam('cols'),
    view: url.param('view', 'active'),
    offset: Number(url.param('offset', '0')) || 0,
    size: Number(url.param('n', '100')) || 100,
    selected: new Set(url.listParam('sel')),
    flat: url.param('flat') === '1',
    expanded: new Set(),
    page: null,
  };

  const save = () => url.update({
    e: state.experiments, q: state.filter,
    sort: state.sort === 'attributes.start_time' ? '' : state.sort,
    dir: state.descending ? '' : 'asc',
    cols: state.columns, view: state.view === 'active' ? '' : state.view,
    offset: state.offset || '', n: state.size === 100 ? '' : state.size,
    sel: [...state.selected], flat: state.flat,
  });

  const filterInput = h('input', { type: 'search', class: 'filter', value: state.filter, 'aria-label': 'Filter runs', placeholder: "metrics.rmse < 1 and params.alpha = '0.5'", spellcheck: 'false' });
  const filterError = h('div', { class: 'inline-error', role: 'alert', 'aria-live': 'polite' });
  const summary = h('span', { class: 'muted', role: 'status' });
  const compare = h('a', { class: 'button' }, 'Compare');
  const columnsPicker = h('details', { class: 'picker' }, h('summary', {}, 'Columns'));
  const viewSelect = h('select', { 'aria-label': 'Deleted runs', onchange: () => { state.view = viewSelect.value; state.offset = 0; load(); } },
    h('option', { value: 'active', selected: state.view === 'active' }, 'Hide deleted'),
    h('option', { value: 'all', selected: state.view === 'all' }, 'Show deleted'),
    h('option', { value: 'deleted', selected: state.view === 'deleted' }, 'Only deleted'));
  const foldBox = h('input', { type: 'checkbox', checked: !state.flat, onchange: () => { state.flat = !foldBox.checked; state.offset = 0; load(); } });
  const pager = h('div', { class: 'pager' });
  const tableHolder = h('div', { class: 'table-holder' });
  const title = h('h1', {}, 'Runs');

  fill(main,
    h('div', { class: 'toolbar' }, title, summary),
    h('form', { class: 'filter-bar', onsubmit: (event) => { event.preventDefault(); state.filter = filterInput.value.trim(); state.offset = 0; load(); } },
      filterInput, h('button', { type: 'submit' }, 'Search')),
    filterError,
    h('div', { class: 'toolbar' }, viewSelect, h('label', {}, foldBox, ' Fold sweep trials under their sweep'), columnsPicker, compare, pager),
    tableHolder);

  function updateCompare() {
    const ids = [...state.selected];
    compare.href = url.link('/compare', { runs: ids });
    const usable = ids.length >= 2 && ids.length <= 20;
    compare.classList.toggle('disabled', !usable);
    compare.setAttribute('aria-disabled', String(!usable));
    compare.textContent = `Compare ${ids.length || ''}`.trim();
  }
  compare.addEventListener('click', (event) => { if (compare.classList.contains('disabled')) event.preventDefault(); });

  function orderBy() {
    return [`${state.sort} ${state.descending ? 'DESC' : 'ASC'}`];
  }

  async function fetchPage() {
    return drover('/runs', {
      experiment_ids: state.experiments.join(','), filter: state.filter, order_by: orderBy(),
      offset: state.offset, max_results: state.size, view: state.view, fold: state.flat ? '' : '1',
    });
  }

  async function load() {
    save();
    try {
      const page = await fetchPage();
      fill(filterError);
      filterInput.classList.remove('invalid');
      state.page = page;
      draw();
    } catch (error) {
      if (error.status === 400) {
        filterInput.classList.add('invalid');
        fill(filterError, error.message);
      } else {
        fill(tableHolder, errorBox(error));
      }
    }
  }

  function drawPicker(columns) {
    const group = (kind, keys) => keys.length ? h('fieldset', {}, h('legend', {}, kind),
      keys.map((key) => {
        const id = `${kind}.${key}`;
        const box = h('input', { type: 'checkbox', checked: state.columns.includes(id), onchange: () => {
          state.columns = box.checked ? [...state.columns, id] : state.columns.filter((c) => c !== id);
          save();
          draw();
        } });
        return h('label', {}, box, ` ${key}`);
      })) : null;
    fill(columnsPicker, h('summary', {}, `Columns (${state.columns.length})`),
      h('div', { class: 'picker-body' }, group('metrics', columns.metrics), group('params', columns.params), group('tags', columns.tags)));
  }

  function header() {
    const sortable = (label, key) => {
      const active = state.sort === key;
      const arrow = active ? (state.descending ? ' ▼' : ' ▲') : '';
      return h('th', { 'aria-sort': active ? (state.descending ? 'descending' : 'ascending') : 'none' },
        key ? h('button', { type: 'button', class: 'sort', onclick: () => {
          if (state.sort === key) state.descending = !state.descending;
          else { state.sort = key; state.descending = true; }
          state.offset = 0;
          load();
        } }, label + arrow) : label);
    };
    const all = h('input', { type: 'checkbox', 'aria-label': 'Select every run on this page', onchange: () => {
      for (const run of state.page.runs) {
        if (all.checked) state.selected.add(run.info.run_id); else state.selected.delete(run.info.run_id);
      }
      save();
      draw();
    } });
    return h('tr', {}, h('th', {}, all),
      ...BUILT_IN.map(([label, key]) => sortable(label, key)),
      ...state.columns.map((column) => {
        const [kind, ...rest] = column.split('.');
        return sortable(`${rest.join('.')}${kind === 'params' ? ' (param)' : kind === 'tags' ? ' (tag)' : ''}`, subject(kind, rest.join('.')));
      }));
  }

  function row(run, depth = 0) {
    const id = run.info.run_id;
    const box = h('input', { type: 'checkbox', checked: state.selected.has(id), 'aria-label': `Select ${run.info.run_name || id}`, onchange: () => {
      if (box.checked) state.selected.add(id); else state.selected.delete(id);
      save();
      updateCompare();
    } });
    const children = run.children || 0;
    const toggle = children ? h('button', { type: 'button', class: 'fold', 'aria-expanded': String(state.expanded.has(id)), onclick: () => {
      if (state.expanded.has(id)) state.expanded.delete(id); else state.expanded.add(id);
      draw();
    } }, `${state.expanded.has(id) ? '▾' : '▸'} ${children}`) : null;
    const name = h('td', { class: depth ? 'child' : '' }, toggle,
      h('a', { href: `/runs/${id}` }, run.info.run_name || shortId(id)),
      run.info.lifecycle_stage === 'deleted' ? h('span', { class: 'tag' }, 'deleted') : null);
    const cells = BUILT_IN.map(([label, , cell]) => (label === 'Name' ? name : h('td', {}, cell(run))));
    const tr = h('tr', { tabindex: 0, 'data-run': id, class: run.info.lifecycle_stage === 'deleted' ? 'deleted' : '' },
      h('td', {}, box), ...cells, ...state.columns.map((column) => h('td', { class: column.startsWith('metrics.') ? 'num' : '' }, cellOf(run, column))));
    return tr;
  }

  async function childRows(parent) {
    const page = await drover('/runs', {
      experiment_ids: state.experiments.join(','), filter: `tags.\`mlflow.parentRunId\` = '${parent}'`,
      order_by: orderBy(), max_results: 1000, view: state.view,
    });
    return page.runs.map((run) => row(run, 1));
  }

  async function draw() {
    const page = state.page;
    if (!page) return;
    drawPicker(page.columns);
    updateCompare();
    const first = page.total ? page.offset + 1 : 0;
    const last = Math.min(page.offset + page.runs.length, page.total);
    const folded = state.flat ? '' : ' (sweep trials folded)';
    fill(summary, page.total ? `${first.toLocaleString()}–${last.toLocaleString()} of ${page.total.toLocaleString()} matching runs${folded}` : `No matching runs${folded}`);
    const names = state.experiments.map((id) => (page.experiments || {})[id] || id);
    title.textContent = names.length ? names.join(', ') : 'Runs of every active experiment';
    document.title = `${title.textContent} · drover`;
    drawPager(page);
    if (!page.total) {
      fill(tableHolder, state.filter ? h('p', { class: 'muted' }, 'No run matches this filter.') : emptyState('No runs here yet', 'drover run examples/quickstart -P alpha=0.5'));
      return;
    }
    const body = h('tbody', { onkeydown: keys });
    for (const run of page.runs) {
      body.append(row(run));
      if (state.expanded.has(run.info.run_id)) {
        const holder = h('tr', {}, h('td', { colspan: 99, class: 'muted' }, 'Loading trials…'));
        body.append(holder);
        childRows(run.info.run_id).then((rows) => holder.replaceWith(...rows), (error) => fill(holder.firstChild, errorBox(error)));
      }
    }
    fill(tableHolder, h('table', { class: 'grid runs' }, h('thead', {}, header()), body));
  }

  function drawPager(page) {
    const go = (offset) => { state.offset = Math.max(0, offset); load(); };
    const size = h('select', { 'aria-label': 'Rows per page', onchange: () => { state.size = Number(size.value); state.offset = 0; load(); } },
      PAGE_SIZES.map((n) => h('option', { value: n, selected: n === state.size }, `${n} rows`)));
    fill(pager,
      h('button', { type: 'button', disabled: page.offset === 0, onclick: () => go(page.offset - state.size) }, '← Previous'),
      h('button', { type: 'button', disabled: page.offset + page.runs.length >= page.total, onclick: () => go(page.offset + state.size) }, 'Next →'),
      size);
  }

  /// Arrow keys move between rows, space selects, enter opens.
  function keys(event) {
    const tr = event.target.closest('tr[data-run]');
    if (!tr) return;
    if (event.key === 'ArrowDown' || event.key === 'ArrowUp') {
      event.preventDefault();
      const rows = [...tr.parentElement.querySelectorAll('tr[data-run]')];
      const next = rows[rows.indexOf(tr) + (event.key === 'ArrowDown' ? 1 : -1)];
      if (next) next.focus();
    } else if (event.key === 'Enter' && event.target === tr) {
      navigate(`/runs/${tr.dataset.run}`);
    } else if (event.key === ' ' && event.target === tr) {
      event.preventDefault();
      tr.querySelector('input[type=checkbox]').click();
    }
  }

  await load();
  // Statuses change while runs go: refresh the page often while any run on it is live.
  let quiet = 0;
  return every(2000, async () => {
    const live = state.page && state.page.runs.some((run) => run.info.status === 'RUNNING' || run.info.status === 'SCHEDULED');
    if (!live && ++quiet < 5) return;
    quiet = 0;
    const page = await fetchPage();
    const focused = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.run : null;
    state.page = page;
    await draw();
    if (focused) tableHolder.querySelector(`tr[data-run="${focused}"]`)?.focus();
  });
}
