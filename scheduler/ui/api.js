// The JSON endpoints the pages read: MLflow's REST API and drover's own under /api/drover.
// Errors carry the server's message, so a bad filter can be shown as the server put it.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function call(method, path, body) {
  const options = { method, headers: { Accept: 'application/json' } };
  if (body !== undefined) {
    options.headers['Content-Type'] = 'application/json';
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  // Signed out (the scheduler requires its token): sign in, then come back here.
  if (response.status === 401) window.location.assign(`/login?next=${encodeURIComponent(window.location.pathname + window.location.search)}`);
  const text = await response.text();
  let value = {};
  try {
    value = text ? JSON.parse(text) : {};
  } catch {
    throw new ApiError(response.status, 'BAD_RESPONSE', `${method} ${path}: ${text.slice(0, 200)}`);
  }
  if (!response.ok) throw new ApiError(response.status, value.error_code, value.message || `${method} ${path} failed with ${response.status}`);
  return value;
}

function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value === undefined || value === null || value === '') continue;
    if (Array.isArray(value)) value.forEach((item) => search.append(key, item));
    else search.set(key, value);
  }
  const text = search.toString();
  return text ? `?${text}` : '';
}

export const get = (path, params = {}) => call('GET', path + query(params));
export const post = (path, body = {}) => call('POST', path, body);

export const drover = (path, params) => get(`/api/drover${path}`, params);
export const mlflow = (path, params) => get(`/ajax-api/2.0/mlflow${path}`, params);
export const mlflowPost = (path, body) => post(`/ajax-api/2.0/mlflow${path}`, body);
