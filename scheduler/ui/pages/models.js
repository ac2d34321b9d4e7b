// Registered models: latest version, aliases and last update, filtered by name in the URL.

import { mlflow } from '../api.js';
import { emptyState, errorBox, fill, formatAgo, formatTime, h } from '../dom.js';
import { param, update } from '../url.js';

// A LIKE pattern that matches `text` literally anywhere in a name.
function containing(text) {
  return `%${text.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
}

// A string literal of the filter grammar, which reads one level of backslash escapes.
export function quoted(text) {
  return `'${text.replace(/[\\']/g, (c) => `\\${c}`)}'`;
}

export function aliasChips(aliases) {
  return (aliases || []).map((a) => h('span', { class: 'tag', title: `alias ${a.alias} → version ${a.version}` }, `@${a.alias} → v${a.version}`));
}

export async function render(main) {
  const search = h('input', { type: 'search', placeholder: 'Filter by name', value: param('q'), 'aria-label': 'Filter models by name' });
  const holder = h('div');
  fill(main, h('div', { class: 'toolbar' }, h('h1', {}, 'Models'), search), holder);
  async function refresh() {
    const q = param('q');
    const filter = q ? `name LIKE ${quoted(containing(q))}` : '';
    let models = [];
    let token;
    try {
      do {
        const page = await mlflow('/registered-models/search', { filter, max_results: 1000, page_token: token });
        models = models.concat(page.registered_models || []);
        token = page.next_page_token;
      } while (token && models.length < 10000);
    } catch (error) {
      fill(holder, errorBox(error));
      return;
    }
    if (!models.length) {
      fill(holder, q ? h('p', { class: 'muted' }, `No model's name contains “${q}”.`)
        : emptyState('No registered models yet', "mlflow.sklearn.log_model(model, name='model', registered_model_name='my-model')"));
      return;
    }
    fill(holder, h('table', { class: 'grid models' },
      h('thead', {}, h('tr', {}, ['Name', 'Latest version', 'Aliases', 'Updated', 'Description'].map((t) => h('th', {}, t)))),
      h('tbody', {}, models.map((model) => {
        const latest = Math.max(0, ...(model.latest_versions || []).map((v) => Number(v.version)));
        return h('tr', {},
          h('td', {}, h('a', { href: `/models/${encodeURIComponent(model.name)}` }, model.name)),
          h('td', { class: 'num' }, latest ? `v${latest}` : '—'),
          h('td', {}, aliasChips(model.aliases)),
          h('td', { title: formatTime(model.last_updated_timestamp) }, formatAgo(model.last_updated_timestamp)),
          h('td', { class: 'muted' }, model.description || ''));
      }))));
  }
  search.addEventListener('change', () => {
    update({ q: search.value.trim() });
    refresh();
  });
  await refresh();
  return null;
}
