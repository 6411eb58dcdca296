// Entry module: the session, the header, the hash router. Each view's render(root, ctx) builds
// its page and returns a function that stops its polling when the page is left.

import {ApiError, UNAUTHORIZED_EVENT, del, get, paths, setCsrf} from './api.js';
import {h, replace, select} from './dom.js';
import {errorText, formatTime, fromUnixAny, roleLabel} from './format.js';
import {LANGUAGES, language, preferredLanguage, setLanguage, t} from './i18n.js';
import * as auditView from './views/audit.js';
import * as directiveView from './views/directive.js';
import * as directivesView from './views/directives.js';
import * as fleetView from './views/fleet.js';
import * as loginView from './views/login.js';
import * as submitView from './views/submit.js';

const app = {
  session: null,   // {name, role, csrf, expires_at} while signed in
  stopView: null,  // the current view's cleanup
  returnTo: null,  // the route asked for before signing in
  sessionEnded: false,  // the sign-in page says the session ended (expired, signed out elsewhere)
  // What a page keeps across its own re-renders (a change of language redraws it): checked
  // files, results, filters. Dropped when another route is shown.
  kept: {path: null, data: {}},
};

const ROUTES = [
  {pattern: /^\/login$/, view: loginView, nav: null},
  {pattern: /^\/directives$/, view: directivesView, nav: 'directives'},
  {pattern: /^\/directive\/([^/]+)\/([^/]+)$/, view: directiveView, nav: 'directives'},
  {pattern: /^\/submit$/, view: submitView, nav: 'submit'},
  {pattern: /^\/fleet$/, view: fleetView, nav: 'fleet'},
  {pattern: /^\/audit$/, view: auditView, nav: 'audit'},
];

function currentPath() {
  const raw = location.hash.replace(/^#/, '');
  return raw === '' ? '/' : raw;
}

// Moves to `path`; `replaceEntry` keeps redirects out of the history.
function go(path, replaceEntry = false) {
  const target = `#${path}`;
  if (location.hash === target) {
    route();
  } else if (replaceEntry) {
    location.replace(target);
  } else {
    location.hash = path;
  }
}

function stopView() {
  if (app.stopView) {
    try {
      app.stopView();
    } catch (e) {
      console.error(e);
    }
  }
  app.stopView = null;
}

function navLink(name, label, active) {
  return h('a', {
    href: `#/${name}`, testid: `nav-${name}`, class: 'nav-link',
    'aria-current': active === name ? 'page' : false,
  }, label);
}

function renderHeader(active) {
  const top = document.getElementById('top');
  const s = app.session;
  const langSelect = select({id: 'lang-select', testid: 'lang', on: {change: onLanguage}},
    LANGUAGES.map((code) => [code, code === 'ar' ? t('lang.ar') : t('lang.en')]), language());
  const skip = h('button', {type: 'button', class: 'skip-link', on: {click: () => document.getElementById('view').focus()}},
    t('nav.skip'));
  const brand = h('span', {class: 'brand'}, t('app.name'));
  let nav = null;
  let who = null;
  if (s) {
    nav = h('nav', {class: 'nav', 'aria-label': t('nav.label')},
      navLink('directives', t('nav.directives'), active),
      s.role === 'ministry' ? navLink('submit', t('nav.submit'), active) : null,
      navLink('fleet', t('nav.fleet'), active),
      navLink('audit', t('nav.audit'), active));
    who = h('div', {class: 'who'},
      h('span', {testid: 'whoami', class: 'whoami',
        title: fromUnixAny(s.expires_at) ? t('session.expires', {time: formatTime(fromUnixAny(s.expires_at))}) : false},
      `${s.name} (${roleLabel(s.role)})`),
      h('button', {type: 'button', testid: 'logout', on: {click: onLogout}}, t('nav.logout')));
  }
  replace(top, skip, brand, nav,
    h('div', {class: 'top-tools'},
      who,
      h('div', {class: 'lang'}, h('label', {for: 'lang-select'}, t('nav.language')), langSelect)));
}

function route() {
  stopView();
  const path = currentPath();
  if (!app.session && path !== '/login') {
    if (path !== '/') app.returnTo = path;
    go('/login', true);
    return;
  }
  if (app.session && (path === '/' || path === '/login')) {
    const next = app.returnTo ?? '/directives';
    app.returnTo = null;
    go(next, true);
    return;
  }
  let match = null;
  let found = null;
  for (const r of ROUTES) {
    match = path.match(r.pattern);
    if (match) {
      found = r;
      break;
    }
  }
  renderHeader(found?.nav ?? null);
  const main = document.getElementById('view');
  main.replaceChildren();
  if (!found) {
    main.append(h('h1', {tabindex: -1}, t('notfound.title')),
      h('p', null, t('notfound.text')),
      h('p', null, h('a', {href: '#/directives'}, t('nav.directives'))));
    return;
  }
  let params;
  try {
    params = match.slice(1).map(decodeURIComponent);
  } catch {
    params = match.slice(1);
  }
  if (app.kept.path !== path) app.kept = {path, data: {}};
  const ctx = {
    session: app.session,
    params,
    keep: app.kept.data,
    go,
    sessionEnded: app.sessionEnded,
    signedIn,
  };
  if (found.view !== loginView) app.sessionEnded = false;
  const before = document.activeElement;
  try {
    app.stopView = found.view.render(main, ctx) ?? null;
  } catch (e) {
    console.error(e);
    main.append(h('p', {class: 'error', role: 'alert'}, errorText(e)));
  }
  // A new page: focus its heading (screen readers announce it), unless the view focused a
  // control itself (the sign-in page focuses the token).
  if (document.activeElement === before || document.activeElement === document.body) {
    const heading = main.querySelector('h1');
    if (heading) {
      heading.tabIndex = -1;
      heading.focus({preventScroll: true});
    }
  }
}

function signedIn(session) {
  app.session = session;
  setCsrf(session.csrf);
  const next = app.returnTo ?? '/directives';
  app.returnTo = null;
  go(next, true);
}

async function onLogout() {
  try {
    await del(paths.session, undefined, {redirectOn401: false});
  } catch (e) {
    // Signed out here whatever the server said (it may have expired the session already).
    if (!(e instanceof ApiError)) console.error(e);
  }
  app.session = null;
  app.returnTo = null;
  setCsrf('');
  go('/login', true);
}

function onUnauthorized() {
  if (app.session) {
    app.session = null;
    setCsrf('');
    app.sessionEnded = true;
    const path = currentPath();
    if (path !== '/login' && path !== '/') app.returnTo = path;
  }
  if (currentPath() !== '/login') go('/login', true);
}

async function onLanguage(e) {
  try {
    await setLanguage(e.target.value);
  } catch (err) {
    // The catalogue did not load: stay in the language that is shown.
    console.error(err);
    e.target.value = language();
    return;
  }
  route();
  document.getElementById('lang-select')?.focus();
}

async function start() {
  try {
    await setLanguage(preferredLanguage());
  } catch (e) {
    try {
      await setLanguage('en');
    } catch {
      // No catalogue at all: nothing can be said in words of ours; show the cause.
      document.getElementById('view').append(h('p', {class: 'error', role: 'alert'}, String(e)));
      return;
    }
  }
  try {
    const s = await get(paths.session, {redirectOn401: false});
    if (s && typeof s.name === 'string') {
      app.session = s;
      setCsrf(s.csrf);
    }
  } catch (e) {
    app.session = null;
    if (!(e instanceof ApiError) || e.status !== 401) console.error(e);
  }
  window.addEventListener('hashchange', route);
  window.addEventListener(UNAUTHORIZED_EVENT, onUnauthorized);
  route();
}

start();
