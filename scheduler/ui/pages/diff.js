// What differs between two runs, the answer `drover runs diff` prints: their code file by
// file with each changed text file's unified diff, then parameters, data, image, command,
// environment, and final metrics with deltas.

import { drover } from '../api.js';
import { errorBox, fill, formatNumber, h, shortId } from '../dom.js';
import { patchView } from '../patch.js';
import * as url from '../url.js';

const SECTIONS = [['parameters', 'Parameters'], ['data', 'Data'], ['image', 'Image'], ['command', 'Command'], ['environment', 'Environment']];

function codeView(code, runA, runB) {
  if (!code.snapshot_a || !code.snapshot_b) return h('p', { class: 'muted' }, 'Not known: drover did not execute both runs.');
  if (code.snapshot_a === code.snapshot_b) return h('p', {}, 'The same snapshot ', h('code', {}, code.snapshot_a), '.');
  const rows = [
    ...code.added.map((path) => ['added', path, '']),
    ...code.removed.map((path) => ['removed', path, '']),
    ...code.changed.map((file) => ['changed', file.path, file.patch ? `+${file.insertions} −${file.deletions}` : 'binary or large']),
  ];
  return h('div', {},
    h('p', { class: 'small muted' }, h('code', {}, shortId(code.snapshot_a.replace(/^sha256:/, ''))), ` (${runA}) → `, h('code', {}, shortId(code.snapshot_b.replace(/^sha256:/, ''))), ` (${runB})`),
    h('table', { class: 'grid files' }, h('tbody', {}, rows.map(([kind, path, lines]) => h('tr', {}, h('td', { class: `file-${kind}` }, kind), h('td', {}, h('code', {}, path)), h('td', { class: 'num' }, lines))))),
    code.changed.filter((file) => file.patch).map((file) => patchView(file.patch)));
}

function changesView(changes) {
  if (!changes.length) return h('p', { class: 'muted' }, 'The same.');
  return h('table', { class: 'grid kv' }, h('thead', {}, h('tr', {}, h('th', {}, ''), h('th', {}, 'A'), h('th', {}, 'B'))),
    h('tbody', {}, changes.map((change) => h('tr', {}, h('th', {}, change.key),
    h('td', { class: 'differs' }, change.a ?? '—'), h('td', { class: 'differs' }, change.b ?? '—')))));
}

function metricsView(metrics) {
  if (!metrics.length) return h('p', { class: 'muted' }, 'Neither run logged a metric.');
  return h('table', { class: 'grid' },
    h('thead', {}, h('tr', {}, h('th', {}, 'metric'), h('th', { class: 'num' }, 'A'), h('th', { class: 'num' }, 'B'), h('th', { class: 'num' }, 'B − A'))),
    h('tbody', {}, metrics.map((m) => h('tr', {}, h('th', {}, m.key), h('td', { class: 'num' }, formatNumber(m.a) || '—'),
      h('td', { class: 'num' }, formatNumber(m.b) || '—'), h('td', { class: 'num' }, m.delta === null ? '—' : `${m.delta >= 0 ? '+' : ''}${formatNumber(m.delta)}`)))));
}

export async function render(main) {
  const [a, b] = [url.param('a'), url.param('b')];
  if (!/^[0-9a-f]{32}$/.test(a) || !/^[0-9a-f]{32}$/.test(b)) {
    fill(main, h('h1', {}, 'Diff two runs'), errorBox('Pick two runs to compare, then follow “What differs” on the compare page.'));
    return null;
  }
  const [diff, runA, runB] = await Promise.all([drover('/diff', { a, b }), drover(`/runs/${a}`), drover(`/runs/${b}`)]);
  const name = (detail) => detail.run.info.run_name || shortId(detail.run.info.run_id);
  const link = (detail, side) => h('a', { href: `/runs/${detail.run.info.run_id}` }, `${side} ${name(detail)}`);
  fill(main,
    h('div', { class: 'crumbs' }, h('a', { href: url.link('/compare', { runs: [a, b].join(',') }) }, 'Compare'), ' / Diff'),
    h('h1', {}, 'What differs: ', link(runA, 'A'), ' → ', link(runB, 'B')),
    h('p', { class: diff.matches ? 'verdict match' : 'verdict' }, diff.matches
      ? 'The runs match: the same code, parameters, data, image, command and environment.'
      : 'The runs differ in what is listed below.'),
    h('p', { class: 'small muted' }, 'From a terminal: ', h('code', {}, `drover runs diff ${a} ${b}`)),
    h('h2', {}, 'Code'), codeView(diff.code, name(runA), name(runB)),
    SECTIONS.map(([key, title]) => [h('h2', {}, title), changesView(diff[key])]),
    h('h2', {}, 'Final metrics'), metricsView(diff.metrics));
  return null;
}
