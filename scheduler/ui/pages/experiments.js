// Experiments: their runs by status and last activity; create, rename, delete and restore;
// pick several to see their runs in one table.

import { drover, mlflowPost } from '../api.js';
import { emptyState, errorBox, fill, formatAgo, formatTime, h } from '../dom.js';
import { every } from '../live.js';
import * as url from '../url.js';

const STATUSES = ['RUNNING', 'SCHEDULED', 'FINISHED', 'FAILED', 'KILLED'];

export async function render(main) {
  const view = url.param('view', 'active');
  const selected = new Set(url.listParam('e'));
  const status = h('div', { class: 'notice', role: 'status' });
  const tableHolder = h('div');
  const openSelected = h('a', { class: 'button', href: '#' }, 'Runs of the selected');

  const name = h('input', { type: 'text', placeholder: 'new experiment name', 'aria-label': 'New experiment name', maxlength: 500 });
  const createForm = h('form', { class: 'inline', onsubmit: async (event) => {
    event.preventDefault();
    try {
      await mlflowPost('/experiments/create', { name: name.value.trim() });
      name.value = '';
      await refresh();
    } catch (error) {
      fill(status, errorBox(error));
    }
  } }, name, h('button', { type: 'submit' }, 'Create'));

  const viewSelect = h('select', { 'aria-label': 'Which experiments', onchange: () => { url.update({ view: viewSelect.value === 'active' ? '' : viewSelect.value }); refresh(); } },
    ...['active', 'deleted', 'all'].map((v) => h('option', { value: v, selected: v === view }, v === 'active' ? 'Active' : v === 'deleted' ? 'Deleted' : 'All')));

  fill(main, h('div', { class: 'toolbar' }, h('h1', {}, 'Experiments'), viewSelect, createForm, openSelected), status, tableHolder);

  const updateSelection = () => {
    url.update({ e: [...selected] });
    openSelected.href = url.link('/runs', { e: [...selected] });
    openSelected.classList.toggle('disabled', selected.size === 0);
  };
  updateSelection();

  async function act(path, body) {
    try {
      await mlflowPost(path, body);
      fill(status);
      await refresh();
    } catch (error) {
      fill(status, errorBox(error));
    }
  }

  function row(experiment) {
    const id = experiment.experiment_id;
    const counts = experiment.run_counts || {};
    const total = STATUSES.reduce((sum, s) => sum + (counts[s] || 0), 0);
    const check = h('input', { type: 'checkbox', checked: selected.has(id), 'aria-label': `Select ${experiment.name}`, onchange: () => {
      if (check.checked) selected.add(id); else selected.delete(id);
      updateSelection();
    } });
    const deleted = experiment.lifecycle_stage === 'deleted';
    const rename = h('button', { type: 'button', class: 'small', onclick: () => {
      const next = window.prompt('Rename the experiment to', experiment.name);
      if (next && next.trim() && next !== experiment.name) act('/experiments/update', { experiment_id: id, new_name: next.trim() });
    } }, 'Rename');
    const remove = deleted
      ? h('button', { type: 'button', class: 'small', onclick: () => act('/experiments/restore', { experiment_id: id }) }, 'Restore')
      : h('button', { type: 'button', class: 'small danger', onclick: () => {
        if (window.confirm(`Delete experiment "${experiment.name}"? Its runs can be restored with it.`)) act('/experiments/delete', { experiment_id: id });
      } }, 'Delete');
    return h('tr', { class: deleted ? 'deleted' : '' },
      h('td', {}, check),
      h('td', {}, h('a', { href: url.link('/runs', { e: id }) }, experiment.name), deleted ? h('span', { class: 'tag' }, 'deleted') : null),
      h('td', { class: 'num' }, id),
      ...STATUSES.map((s) => h('td', { class: 'num' }, counts[s] ? String(counts[s]) : '')),
      h('td', { class: 'num' }, String(total)),
      h('td', { title: formatTime(experiment.last_activity) }, formatAgo(experiment.last_activity)),
      h('td', { class: 'actions' }, rename, remove));
  }

  async function refresh() {
    const { experiments } = await drover('/experiments', { view: url.param('view') || undefined });
    if (!experiments.length) {
      fill(tableHolder, emptyState('No experiments yet', 'drover run examples/quickstart -P alpha=0.5', 'Runs land in the Default experiment; --experiment NAME picks another.'));
      return;
    }
    const head = h('tr', {}, h('th', {}, ''), h('th', {}, 'Name'), h('th', { class: 'num' }, 'ID'),
      ...STATUSES.map((s) => h('th', { class: 'num' }, s.toLowerCase())), h('th', { class: 'num' }, 'runs'), h('th', {}, 'Last activity'), h('th', {}, ''));
    fill(tableHolder, h('table', { class: 'grid' }, h('thead', {}, head), h('tbody', {}, experiments.map(row))));
  }

  try {
    await refresh();
  } catch (error) {
    fill(tableHolder, errorBox(error));
  }
  return every(5000, refresh);
}
