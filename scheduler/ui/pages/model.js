// One registered model: its aliases, tags and versions, each version linked to the run that
// produced it (name, status, snapshot and image) and to its logged model's files.

import { mlflow } from '../api.js';
import { emptyState, fill, formatAgo, formatTime, h, shortId, statusBadge, tagOf } from '../dom.js';
import { aliasChips, quoted } from './models.js';

const SNAPSHOT = 'drover.snapshot.digest';
const IMAGE = 'drover.docker.image';
const GIT_COMMIT = 'mlflow.source.git.commit';

// The runs behind the versions, by id; a run that is gone is left out.
async function runsOf(versions) {
  const ids = [...new Set(versions.map((v) => v.run_id).filter(Boolean))].slice(0, 200);
  const runs = await Promise.all(ids.map((id) => mlflow('/runs/get', { run_id: id }).then((r) => r.run, () => null)));
  return new Map(runs.filter(Boolean).map((run) => [run.info.run_id, run]));
}

function lineage(run) {
  if (!run) return h('span', { class: 'muted' }, '—');
  const facts = [[SNAPSHOT, 'snapshot'], [GIT_COMMIT, 'commit'], [IMAGE, 'image']]
    .map(([key, label]) => [label, tagOf(run, key)])
    .filter(([, value]) => value);
  return h('span', {}, facts.map(([label, value]) => h('span', { class: 'tag', title: `${label} ${value}` }, `${label} ${value.length > 24 ? shortId(value.replace(/^sha256:/, '')) : value}`)));
}

export async function render(main, [encoded]) {
  const name = decodeURIComponent(encoded);
  const { registered_model: model } = await mlflow('/registered-models/get', { name });
  const { model_versions: versions = [] } = await mlflow('/model-versions/search', { filter: `name = ${quoted(name)}`, max_results: 10000 });
  versions.sort((a, b) => Number(b.version) - Number(a.version));
  const runs = await runsOf(versions);
  const aliased = new Map();
  for (const { alias, version } of model.aliases || []) aliased.set(version, [...(aliased.get(version) || []), alias]);
  const header = h('div', { class: 'toolbar' }, h('h1', {}, model.name), ...aliasChips(model.aliases));
  const facts = h('p', { class: 'muted' }, `Registered ${formatTime(model.creation_timestamp)} · updated ${formatAgo(model.last_updated_timestamp)}`,
    model.description ? ` · ${model.description}` : '');
  const tags = (model.tags || []).length ? h('p', {}, model.tags.map((t) => h('span', { class: 'tag' }, `${t.key}=${t.value}`))) : null;
  const table = versions.length ? h('table', { class: 'grid versions' },
    h('thead', {}, h('tr', {}, ['Version', 'Aliases', 'Stage', 'Produced by', 'Status', 'Snapshot, commit, image', 'Registered', 'Source'].map((t) => h('th', {}, t)))),
    h('tbody', {}, versions.map((v) => {
      const run = runs.get(v.run_id);
      return h('tr', { 'data-version': v.version },
        h('td', { class: 'num' }, `v${v.version}`),
        h('td', {}, (aliased.get(v.version) || []).map((a) => h('span', { class: 'tag' }, `@${a}`))),
        h('td', {}, v.current_stage),
        h('td', {}, v.run_id ? h('a', { href: `/runs/${v.run_id}` }, run ? run.info.run_name || shortId(v.run_id) : shortId(v.run_id)) : '—'),
        h('td', {}, run ? statusBadge(run.info.status) : '—'),
        h('td', {}, lineage(run)),
        h('td', { title: formatTime(v.creation_timestamp) }, formatAgo(v.creation_timestamp)),
        h('td', {}, h('code', {}, v.source)));
    }))) : emptyState('No versions', `mlflow.register_model('models:/<model id>', '${model.name}')`);
  fill(main, header, facts, tags, h('h2', {}, 'Versions'), table);
  return null;
}
