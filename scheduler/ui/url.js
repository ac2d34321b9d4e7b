// Every view's settings live in the URL: pages read them from here and write them back with
// replaceState (settings) or pushState (navigation), so any view can be copied and shared.

export function params() {
  return new URLSearchParams(window.location.search);
}

export function param(name, fallback = '') {
  const value = params().get(name);
  return value === null ? fallback : value;
}

export function listParam(name) {
  return param(name).split(',').filter(Boolean);
}

/// Sets (or, for empty values, removes) parameters of the current URL without a new history
/// entry.
export function update(changes) {
  const search = params();
  for (const [name, value] of Object.entries(changes)) {
    const text = Array.isArray(value) ? value.join(',') : value;
    if (text === undefined || text === null || text === '' || text === false) search.delete(name);
    else search.set(name, text === true ? '1' : String(text));
  }
  const query = search.toString();
  window.history.replaceState(null, '', window.location.pathname + (query ? `?${query}` : ''));
}

export function link(path, values = {}) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(values)) {
    const text = Array.isArray(value) ? value.join(',') : value;
    if (text !== undefined && text !== null && text !== '') search.set(name, String(text));
  }
  const query = search.toString();
  return path + (query ? `?${query}` : '');
}
