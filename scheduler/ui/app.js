// The router: one page module per path. Links inside the app navigate without reloading; a
// page returns a function that stops its live updates when the user leaves it.

import { errorBox, fill } from './dom.js';

const routes = [
  [/^\/$/, 'experiments', () => import('./pages/experiments.js')],
  [/^\/runs$/, 'experiments', () => import('./pages/runs.js')],
  [/^\/runs\/([0-9a-f]{32})$/, 'experiments', () => import('./pages/run.js')],
  [/^\/compare$/, 'experiments', () => import('./pages/compare.js')],
  [/^\/diff$/, 'experiments', () => import('./pages/diff.js')],
  [/^\/sweeps$/, 'sweeps', () => import('./pages/sweeps.js')],
  [/^\/sweeps\/([0-9a-f]{32})$/, 'sweeps', () => import('./pages/sweep.js')],
  [/^\/models$/, 'models', () => import('./pages/models.js')],
  [/^\/models\/([^/]+)$/, 'models', () => import('./pages/model.js')],
  [/^\/cluster$/, 'cluster', () => import('./pages/cluster.js')],
];

let leave = null;

async function show() {
  if (leave) leave();
  leave = null;
  const main = document.getElementById('page');
  const path = window.location.pathname;
  const route = routes.find(([pattern]) => pattern.test(path));
  for (const link of document.querySelectorAll('[data-nav]')) {
    link.classList.toggle('current', Boolean(route) && link.dataset.nav === route[1]);
  }
  if (!route) {
    fill(main, errorBox(`No page at ${path}`));
    return;
  }
  const [pattern, , load] = route;
  try {
    const page = await load();
    leave = (await page.render(main, path.match(pattern).slice(1))) || null;
  } catch (error) {
    fill(main, errorBox(error));
  }
}

export function navigate(href) {
  window.history.pushState(null, '', href);
  show();
  window.scrollTo(0, 0);
}

document.addEventListener('click', (event) => {
  const link = event.target.closest('a[href]');
  if (!link || event.defaultPrevented || event.button !== 0) return;
  if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey || link.target) return;
  const url = new URL(link.href, window.location.href);
  if (url.origin !== window.location.origin || url.pathname.startsWith('/api/') || url.pathname.startsWith('/ajax-api/') || link.hasAttribute('download')) return;
  event.preventDefault();
  navigate(url.pathname + url.search);
});

window.addEventListener('popstate', show);

function applyTheme(theme) {
  if (theme) document.documentElement.dataset.theme = theme;
  else delete document.documentElement.dataset.theme;
}

applyTheme(localStorage.getItem('drover.theme'));
document.getElementById('theme').addEventListener('click', () => {
  const dark = document.documentElement.dataset.theme
    ? document.documentElement.dataset.theme === 'dark'
    : window.matchMedia('(prefers-color-scheme: dark)').matches;
  const next = dark ? 'light' : 'dark';
  localStorage.setItem('drover.theme', next);
  applyTheme(next);
  window.dispatchEvent(new Event('themechange'));
});

show();
