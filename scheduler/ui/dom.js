// Building the page from data without ever parsing it as HTML: every string a user or a
// run supplied becomes a text node, so names like <script> show as typed.

export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on')) element.addEventListener(name.slice(2), value);
    else if (name === 'class') element.className = value;
    else if (value === true) element.setAttribute(name, '');
    else element.setAttribute(name, String(value));
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/// Replaces everything inside `element`.
export function fill(element, ...children) {
  element.replaceChildren();
  append(element, children);
  return element;
}

export function formatTime(ms) {
  if (ms === undefined || ms === null || ms === '') return '';
  const date = new Date(Number(ms));
  const pad = (n) => String(n).padStart(2, '0');
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
}

export function formatDuration(ms) {
  if (ms === undefined || ms === null || Number.isNaN(ms)) return '';
  const seconds = Math.max(0, Math.round(ms / 1000));
  if (seconds < 60) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes}m ${seconds % 60}s`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours}h ${minutes % 60}m`;
  return `${Math.floor(hours / 24)}d ${hours % 24}h`;
}

export function formatAgo(ms) {
  if (!ms) return '';
  return `${formatDuration(Date.now() - Number(ms))} ago`;
}

export function formatNumber(value) {
  if (typeof value === 'string') return value;
  if (value === undefined || value === null) return '';
  if (Number.isInteger(value)) return String(value);
  const magnitude = Math.abs(value);
  if (magnitude !== 0 && (magnitude < 1e-3 || magnitude >= 1e6)) return value.toExponential(4);
  return String(Number(value.toPrecision(6)));
}

/// A status shown by word and symbol, not by colour alone.
export function statusBadge(status) {
  const symbols = { RUNNING: '▶', SCHEDULED: '…', FINISHED: '✓', FAILED: '✗', KILLED: '■' };
  const name = String(status || '').toUpperCase();
  return h('span', { class: `status status-${name.toLowerCase()}` }, `${symbols[name] || '?'} ${name.toLowerCase()}`);
}

export function shortId(id) {
  return String(id).slice(0, 8);
}

/// The value of tag `key` on an MLflow-shaped run.
export function tagOf(run, key) {
  const tag = (run.data.tags || []).find((t) => t.key === key);
  return tag ? tag.value : undefined;
}

export function emptyState(title, command, more) {
  return h('div', { class: 'empty' }, h('h2', {}, title), command ? h('pre', {}, h('code', {}, command)) : null, more ? h('p', { class: 'muted' }, more) : null);
}

export function errorBox(error) {
  return h('div', { class: 'error', role: 'alert' }, String(error && error.message ? error.message : error));
}
