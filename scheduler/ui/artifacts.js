// A run's artifacts: browse directories, download files, and preview text, JSON and images.
// Previews never hand the file to the browser as a page: text is shown as text, and images
// are drawn from a blob whose type the UI sets, so no artifact runs as HTML here. A text
// preview reads at most the first MiB of a file, an image at most 16 MiB.

import { mlflow } from './api.js';
import { errorBox, fill, h } from './dom.js';

const PREVIEW_BYTES = 1 << 20;
const IMAGE_BYTES = 16 << 20;
const IMAGE_TYPES = { png: 'image/png', jpg: 'image/jpeg', jpeg: 'image/jpeg', gif: 'image/gif', webp: 'image/webp' };
const TEXT = /\.(txt|log|md|csv|tsv|py|sh|yaml|yml|toml|cfg|ini|json|jsonl|html|xml|js|rs)$|(^|\/)MLproject$/i;

/// The download URL of `path` under a run whose artifact URI is `mlflow-artifacts:/…`.
export function downloadUrl(artifactUri, path) {
  const root = artifactUri.replace(/^mlflow-artifacts:\/?/, '');
  const encoded = `${root}/${path}`.split('/').filter(Boolean).map(encodeURIComponent).join('/');
  return `/ajax-api/2.0/mlflow-artifacts/artifacts/${encoded}`;
}

function size(bytes) {
  if (bytes === undefined) return '';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = Number(bytes);
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
  return `${unit ? value.toFixed(1) : value} ${units[unit]}`;
}

/// The start of a response, up to `limit` bytes; the rest is never downloaded.
async function firstBytes(response, limit) {
  const reader = response.body.getReader();
  const parts = [];
  let size = 0;
  while (size < limit) {
    const { done, value } = await reader.read();
    if (done) break;
    parts.push(value);
    size += value.length;
  }
  if (size >= limit) await reader.cancel();
  return new Blob(parts).slice(0, limit);
}

async function preview(target, artifactUri, file) {
  fill(target, h('p', { class: 'muted' }, `Loading ${file.path}…`));
  const extension = file.path.split('.').pop().toLowerCase();
  const response = await fetch(downloadUrl(artifactUri, file.path));
  if (!response.ok) throw new Error(`cannot read ${file.path}: ${response.status}`);
  const blob = await firstBytes(response, IMAGE_TYPES[extension] ? IMAGE_BYTES : PREVIEW_BYTES);
  if (IMAGE_TYPES[extension]) {
    const image = h('img', { alt: file.path, class: 'preview-image' });
    image.src = URL.createObjectURL(new Blob([blob], { type: IMAGE_TYPES[extension] }));
    fill(target, h('h3', {}, file.path), image);
    return;
  }
  let text = await blob.slice(0, PREVIEW_BYTES).text();
  if (extension === 'json') {
    try { text = JSON.stringify(JSON.parse(text), null, 2); } catch { /* shown as it is */ }
  }
  const cut = Number(file.file_size) > PREVIEW_BYTES ? h('p', { class: 'muted' }, `The first ${size(PREVIEW_BYTES)} of ${size(file.file_size)}.`) : null;
  fill(target, h('h3', {}, file.path), cut, h('pre', { class: 'preview-text' }, text));
}

export function artifactBrowser(container, run) {
  const list = h('div', { class: 'artifact-list' });
  const shown = h('div', { class: 'artifact-preview' });
  fill(container, h('div', { class: 'artifacts' }, list, shown));
  const artifactUri = run.info.artifact_uri;

  async function open(path) {
    try {
      const answer = await mlflow('/artifacts/list', { run_id: run.info.run_id, path });
      const files = answer.files || [];
      const up = path ? h('li', {}, h('button', { type: 'button', class: 'link', onclick: () => open(path.split('/').slice(0, -1).join('/')) }, '⬑ ..')) : null;
      if (!files.length && !path) {
        fill(list, h('p', { class: 'muted' }, 'No artifacts. Scripts log them with mlflow.log_artifact(); they are stored by the scheduler.'));
        return;
      }
      fill(list, h('p', { class: 'muted' }, `/${path}`), h('ul', {}, up, files.map((file) => {
        const name = file.path.split('/').pop();
        if (file.is_dir) return h('li', {}, h('button', { type: 'button', class: 'link', onclick: () => open(file.path) }, `📁 ${name}/`));
        const canPreview = TEXT.test(file.path) || IMAGE_TYPES[file.path.split('.').pop().toLowerCase()];
        return h('li', {},
          canPreview ? h('button', { type: 'button', class: 'link', onclick: () => preview(shown, artifactUri, file).catch((error) => fill(shown, errorBox(error))) }, name) : h('span', {}, name),
          ' ', h('span', { class: 'muted' }, size(file.file_size)), ' ',
          h('a', { href: downloadUrl(artifactUri, file.path), download: name }, 'download'));
      })));
    } catch (error) {
      fill(list, errorBox(error));
    }
  }
  open('');
}
