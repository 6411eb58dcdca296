// The operators' console (issue 15) in Debian's chromium, headless, through playwright-core:
// the seed's whole story through the console alone, each role's allowed actions, requests
// forged by hand from the page, payloads that must render inert, a protected-range overlap and
// its two-engineer override flow, revoke (ministry), reject and the reason dialog with the
// keyboard alone (Esc sends nothing), CSRF, the session cookie, logout, and screenshots of
// every page in English and Arabic at 1280x800.
//
// Started by console_browser.py (same directory), which runs the controller and the agents and
// passes everything in the environment:
//   SLUICE_CONSOLE_URL     https://127.0.0.1:PORT (the console is URL/ui/)
//   SLUICE_CONSOLE_CERT    the controller's certificate: its key is pinned in the browser
//                          (--ignore-certificate-errors-spki-list), nothing else is trusted
//   SLUICE_CONSOLE_KEY     its key (the look-alike site of the CSRF test serves the same name)
//   SLUICE_CONSOLE_CA      the CA that signed it (for this script's own requests)
//   SLUICE_TOKEN_{MINISTRY,ENGINEER,VIEWER,NODE}   role tokens (names ROLE-user)
//   SLUICE_TOKEN_ENGINEER2, SLUICE_ENGINEER2_NAME   a second engineer (protected overrides)
//   SLUICE_CONSOLE_NODES   how many agents run
//   SLUICE_CONSOLE_DOCS    JSON: the signed documents' directory and names (console_browser.py)
//   SLUICE_CONSOLE_SHOTS   where the screenshots go
//   SLUICE_CHROMIUM        the browser (default /usr/bin/chromium)
// Prints one "ok   ..." or "FAIL ..." line per check; exits 0 when all passed, 1 otherwise.
// Contract: control/console/README.md (routes, sessions and CSRF, data-testid names).

import {chromium} from 'playwright-core';
import {X509Certificate, createHash} from 'node:crypto';
import {readFileSync} from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import path from 'node:path';

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set (run console_browser.py)`);
  return v;
};
const URL_ = env('SLUICE_CONSOLE_URL');
const UI = `${URL_}/ui/`;
const CERT = env('SLUICE_CONSOLE_CERT');
const CA = env('SLUICE_CONSOLE_CA');
const TOKENS = {
  ministry: env('SLUICE_TOKEN_MINISTRY'),
  engineer: env('SLUICE_TOKEN_ENGINEER'),
  viewer: env('SLUICE_TOKEN_VIEWER'),
  node: env('SLUICE_TOKEN_NODE'),
  engineer2: env('SLUICE_TOKEN_ENGINEER2'),
};
const ENGINEER2_NAME = env('SLUICE_ENGINEER2_NAME');
const NODES = Number(env('SLUICE_CONSOLE_NODES'));
const DOCS = JSON.parse(env('SLUICE_CONSOLE_DOCS'));
const SHOTS = env('SLUICE_CONSOLE_SHOTS');
const BLOCK = `${DOCS.issuer}/${DOCS.block}`;
const UNBLOCK = `${DOCS.issuer}/${DOCS.unblock}`;
const XSS = `${DOCS.issuer}/${DOCS.xss}`;
const PROT = `${DOCS.issuer}/${DOCS.protected}`;  // a block inside a protected range
const REJ = `${DOCS.issuer}/${DOCS.reject}`;      // rejected with the keyboard alone
const VIEWPORT = {width: 1280, height: 800};
const CONVERGE_MS = 60000;  // canary, 2 s soak, the rest: well under this

// ---- bookkeeping ---------------------------------------------------------------------------
const failures = [];
let passed = 0;
function check(cond, what) {
  console.log(`${cond ? 'ok  ' : 'FAIL'} ${what}`);
  if (cond) passed++;
  else failures.push(what);
  return cond;
}
class StepFailed extends Error {}
function must(cond, what) {
  if (!check(cond, what)) throw new StepFailed(what);
}
const started = Date.now();
function step(title) {
  console.log(`\n== ${title} (at ${((Date.now() - started) / 1000).toFixed(1)} s)`);
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function eventually(fn, ms, every = 250) {
  const end = Date.now() + ms;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch {
      last = undefined;
    }
    if (Date.now() > end) return last;
    await sleep(every);
  }
}

// ---- the browser -----------------------------------------------------------------------------
// The controller's certificate comes from a throwaway CA: pin its key rather than turning
// certificate checks off (the look-alike site below shows the same certificate).
const spki = createHash('sha256')
  .update(new X509Certificate(readFileSync(CERT)).publicKey.export({type: 'spki', format: 'der'}))
  .digest('base64');
const browser = await chromium.launch({
  executablePath: process.env.SLUICE_CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: [`--ignore-certificate-errors-spki-list=${spki}`],
});

const dialogs = [];    // any alert/confirm/prompt: a payload ran, or the console used one
const cspReports = [];  // "Refused to ... because it violates the Content Security Policy"
const pageErrors = [];

const T = (page, id) => page.getByTestId(id);

// `token`: which of TOKENS signs in (default: the role's own).
async function newSession(role, locale = 'en-US', token = role) {
  const context = await browser.newContext({viewport: VIEWPORT, locale});
  context.setDefaultTimeout(10000);
  const page = await watched(context, token === role ? role : `${role} (${token})`);
  return {role, token, context, page};
}
async function watched(context, role) {
  const page = await context.newPage();
  page.on('dialog', async (d) => {
    dialogs.push(`${role}: ${d.type()} ${d.message()}`);
    await d.dismiss().catch(() => {});
  });
  page.on('console', (m) => {
    if (/Content Security Policy/i.test(m.text())) cspReports.push(`${role}: ${m.text()}`);
  });
  page.on('pageerror', (e) => pageErrors.push(`${role}: ${e.message}`));
  return page;
}

async function signIn(s, name = `${s.role}-user`) {
  const {page} = s;
  await page.goto(UI);
  await T(page, 'login-token').fill(TOKENS[s.token ?? s.role]);
  await T(page, 'login-submit').click();
  const who = await eventually(async () => {
    const text = await T(page, 'whoami').textContent({timeout: 500});
    return text ? text.trim() : null;
  }, 10000);
  // NAME (ROLE), the role as the catalogue words it.
  must(!!who && who.startsWith(`${name} (`) && who.toLowerCase().includes(s.role),
       `${s.role} signs in with its token: whoami "${who}"`);
}

// fetch() run by the page itself: the page's own cookie, and its CSRF token unless csrf is
// false (or a string to send instead). -> {status, body}
async function pageFetch(page, method, route, {body, csrf = true} = {}) {
  return page.evaluate(async ({method, route, body, csrf}) => {
    const headers = {'Content-Type': 'application/json'};
    if (csrf === true) {
      const s = await fetch('/v1/session', {credentials: 'same-origin'});
      headers['X-CSRF-Token'] = (await s.json()).csrf;
    } else if (typeof csrf === 'string') {
      headers['X-CSRF-Token'] = csrf;
    }
    const init = {method, headers, credentials: 'same-origin'};
    if (method !== 'GET') init.body = JSON.stringify(body ?? {});
    const r = await fetch(route, init);
    const text = await r.text();
    let parsed = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      // not JSON
    }
    return {status: r.status, body: parsed};
  }, {method, route, body, csrf});
}

async function go(page, hash) {
  await page.goto(`${UI}#/${hash}`);
}
async function openDirective(page, key) {
  await go(page, `directive/${key}`);
  await T(page, 'directive').waitFor();
  await eventually(async () => (await T(page, 'directive').getAttribute('data-key')) === key, 5000);
  await directiveLoaded(page);
}
// The directive page has drawn its first answer (data-state, actions and all, in one go).
async function directiveLoaded(page) {
  await page.locator('[data-testid="directive"][data-state]').waitFor();
}
const directiveState = (page) => T(page, 'directive').getAttribute('data-state');
async function enforcement(page) {
  const out = {};
  for (const k of ['in_scope', 'enforcing', 'pending', 'failing', 'stale']) {
    const t = await T(page, `enf-${k}`).textContent({timeout: 1000}).catch(() => null);
    out[k] = t === null ? null : Number(t.trim());
  }
  return out;
}
const count = (page, id) => T(page, id).count();

// The actions on the page (every data-testid starting with action-), but the result line.
async function actionsShown(page) {
  if (await T(page, 'directive').count()) await directiveLoaded(page);
  return page.$$eval('[data-testid^="action-"]', (els) =>
    els.map((e) => e.getAttribute('data-testid')).filter((id) => id !== 'action-result').sort());
}

// Click an action; answer the reason dialog if it asks; -> action-result's data-ok and text.
async function act(page, id, reason) {
  // An earlier result stays on the page until this one replaces it: wait for a new element.
  await page.$$eval('[data-testid="action-result"]', (els) => els.forEach((e) => (e.dataset.stale = '1')));
  await T(page, id).click();
  const asked = await T(page, 'reason-input').waitFor({timeout: 3000}).then(() => true, () => false);
  if (asked) {
    await T(page, 'reason-input').fill(reason);
    await T(page, 'reason-confirm').click();
  }
  const res = page.locator('[data-testid="action-result"]:not([data-stale])');
  await res.waitFor();
  await eventually(async () => (await res.getAttribute('data-ok')) !== null, 10000);
  return {ok: await res.getAttribute('data-ok'), text: (await res.textContent()).trim(), asked};
}

// The page in both languages: English, then Arabic (<html lang=ar dir=rtl>), then back. A
// language change draws the page anew: `prepare` (if any) brings it back to the state to show
// (a check result, a verification) each time; `ready` is an element to wait for; `focus` one
// to scroll into view (else the top of the page is shown).
// Named NN-NAME: en-03-directives.png, ar-03-directives.png.
let shotNo = 0;
async function shoot(page, name, {ready, focus, prepare} = {}) {
  shotNo++;
  const file = (lang) => path.join(SHOTS, `${lang}-${String(shotNo).padStart(2, '0')}-${name}.png`);
  for (const lang of ['en', 'ar']) {
    await setLanguage(page, lang);
    if (prepare) await prepare();
    for (const id of [ready, focus].filter(Boolean)) await T(page, id).first().waitFor().catch(() => {});
    if (focus) {
      await T(page, focus).first().evaluate((e) => e.scrollIntoView({block: 'center'})).catch(() => {});
    } else {
      await page.evaluate(() => window.scrollTo(0, 0));
    }
    await sleep(300);  // a render in flight
    await page.screenshot({path: file(lang)});
  }
  await setLanguage(page, 'en');
}
async function setLanguage(page, lang) {
  if ((await page.evaluate(() => document.documentElement.lang)) === lang) return;
  await T(page, 'lang').selectOption(lang);
  const ok = await eventually(async () => page.evaluate((l) =>
    document.documentElement.lang === l && document.documentElement.dir === (l === 'ar' ? 'rtl' : 'ltr'), lang), 5000);
  check(ok, `language ${lang}: <html lang="${lang}" dir="${lang === 'ar' ? 'rtl' : 'ltr'}">`);
}

function docFile(name) {
  return path.join(DOCS.dir, name);
}
async function upload(page, doc) {
  await T(page, 'submit-document').setInputFiles(docFile(doc));
  await T(page, 'submit-signature').setInputFiles(docFile(`${doc}.minisig`));
}
// The submit page: upload + dry-run check; -> {ok, problems: [{line, column, text}]}
async function dryRun(page, doc) {
  await go(page, 'submit');
  return checkOnPage(page, doc);
}
async function checkOnPage(page, doc) {
  await upload(page, doc);
  await T(page, 'submit-check').click();
  const res = T(page, 'check-result');
  await res.waitFor();
  await eventually(async () => (await res.getAttribute('data-ok')) !== null, 10000);
  const problems = [];
  for (const p of await T(page, 'check-problem').all()) {
    problems.push({line: await p.getAttribute('data-line'), column: await p.getAttribute('data-column'),
                   text: (await p.textContent()).trim()});
  }
  return {ok: await res.getAttribute('data-ok'), problems};
}
async function checkPasses(page, doc) {
  const r = await dryRun(page, doc);
  must(r.ok === 'true' && r.problems.length === 0,
       `${doc}: the dry-run check passes (data-ok ${r.ok}, ${r.problems.length} problems)`);
  check(await T(page, 'submit-send').isEnabled(), `${doc}: submit enabled after the passing check`);
  return r;
}
async function send(page, doc, key) {
  await T(page, 'submit-send').click();
  const res = T(page, 'submit-result');
  await res.waitFor();
  const text = (await res.textContent()).trim();
  check(await res.getAttribute('data-ok') === 'true' && await res.getAttribute('data-key') === key,
        `${doc} submitted as ${key}: "${text.slice(0, 100)}"`);
}

// Wait for the directive page (it polls every 2 s) to show `state` and every node enforcing.
async function waitEnforcing(page, key, state) {
  const t0 = Date.now();
  const last = await eventually(async () => {
    const e = await enforcement(page);
    const st = await directiveState(page);
    return st === state && e.in_scope === NODES && e.enforcing === NODES ? {st, e} : null;
  }, CONVERGE_MS, 500);
  const e = last ? last.e : await enforcement(page);
  check(!!last, `${key}: the page shows ${state}, ${state === "ended" ? "removed" : "enforcing"} ${e.enforcing} == in scope ${e.in_scope} == ` +
        `${NODES} nodes (${((Date.now() - t0) / 1000).toFixed(1)} s, no reload)`);
  return e;
}

// ---- a site on another origin, for the CSRF tests -------------------------------------------
// https on another port of 127.0.0.1 (same site, other origin: SameSite=Strict lets the cookie
// go, so only the CSRF token stands in the way) and plain http (another site by scheme).
function attackerPage(target) {
  // A text/plain form sends NAME=VALUE as is: {"reason":"forged by another site","x":"="}
  return `<!doctype html><title>totally unrelated</title>
<form id=f method=POST action="${target}" enctype="text/plain">
<input type=hidden name='{"reason":"forged by another site","x":"' value='"}'>
<button id=go type=submit>win a prize</button></form>`;
}
function listen(server) {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server.address().port)));
}
const handler = (req, res) => {
  const target = `${URL_}${new globalThis.URL(req.url, 'http://x').searchParams.get('target') || '/'}`;
  res.writeHead(200, {'Content-Type': 'text/html'});
  res.end(attackerPage(target));
};
const evilTls = https.createServer({cert: readFileSync(CERT), key: readFileSync(env('SLUICE_CONSOLE_KEY'))}, handler);
const evilPlain = http.createServer(handler);
const evilTlsPort = await listen(evilTls);
const evilPlainPort = await listen(evilPlain);

// A request from outside any browser, with a given Cookie header (the logout test).
function rawRequest(method, route, headers = {}, body = undefined) {
  return new Promise((resolve, reject) => {
    const u = new globalThis.URL(URL_ + route);
    const req = https.request({host: u.hostname, port: u.port, path: u.pathname + u.search, method, headers,
                               ca: readFileSync(CA)}, (res) => {
      let data = '';
      res.on('data', (c) => (data += c));
      res.on('end', () => resolve({status: res.statusCode, headers: res.headers, body: data}));
    });
    req.on('error', reject);
    req.end(body);
  });
}

// ---- the story -------------------------------------------------------------------------------
const sessions = [];
async function open(role, locale, token) {
  const s = await newSession(role, locale, token);
  sessions.push(s);
  return s;
}

async function story() {
  step('the console is served by the controller');
  {
    const r = await rawRequest('GET', '/ui/');
    check(r.status === 200 && /text\/html/.test(r.headers['content-type'] || ''), `GET /ui/: ${r.status} ${r.headers['content-type']}`);
    const csp = r.headers['content-security-policy'] || '';
    check(/script-src 'self'/.test(csp) && !/unsafe-inline/.test(csp) && /frame-ancestors 'none'/.test(csp),
          `CSP: ${csp}`);
    check(r.headers['x-content-type-options'] === 'nosniff' && r.headers['x-frame-options'] === 'DENY',
          'nosniff and X-Frame-Options DENY');
    check(!/<script(?![^>]*\bsrc=)[^>]*>/i.test(r.body) && !/\son[a-z]+=/i.test(r.body) && !/<style/i.test(r.body),
          'index.html has no inline script, handler or style');
    check(!/https?:\/\//i.test(r.body.replace(/xmlns(:\w+)?="[^"]*"/g, '')), 'index.html loads nothing from another host');
    const root = await rawRequest('GET', '/');
    check(root.status >= 300 && root.status < 400 && /\/ui\/$/.test(root.headers.location || ''),
          `GET / redirects to /ui/ (${root.status} ${root.headers.location})`);
  }

  step('sign-in page; a wrong token is refused');
  const ministry = await open('ministry');
  {
    const {page} = ministry;
    await page.goto(UI);
    await T(page, 'login-token').waitFor();
    check(await page.evaluate(() => document.activeElement?.getAttribute('data-testid')) === 'login-token',
          'the sign-in page puts the focus on the token');
    check(await page.evaluate(() => !!document.getElementById('login-token')?.labels?.length),
          'the token field has a <label>');
    await shoot(page, 'login', {ready: 'login-token'});
    await T(page, 'login-token').fill('not-a-token');
    await T(page, 'login-submit').click();
    await T(page, 'login-error').waitFor();
    check((await T(page, 'login-error').textContent()).trim().length > 0, 'a wrong token: login-error shown');
    check((await ministry.context.cookies()).every((c) => c.name !== 'sluice_session'), 'a wrong token: no session cookie');
    await T(page, 'login-token').fill('');
    const json = {'Content-Type': 'application/json'};
    const asNode = await rawRequest('POST', '/v1/session', json, JSON.stringify({token: TOKENS.node}));
    check(asNode.status === 401 && !asNode.headers['set-cookie'], `a node's token cannot sign in: ${asNode.status}`);
    const raw = await rawRequest('POST', '/v1/session', json, JSON.stringify({token: TOKENS.viewer}));
    const setCookie = (raw.headers['set-cookie'] || []).join('; ');
    check(raw.status === 200 && /sluice_session=/.test(setCookie) && /HttpOnly/i.test(setCookie) &&
          /;\s*Secure/i.test(setCookie) && /SameSite=Strict/i.test(setCookie) && /Path=\//.test(setCookie),
          `sign-in answer: Set-Cookie ${setCookie.replace(/sluice_session=[^;]+/, 'sluice_session=...')}`);
    // A browser set to Arabic gets the Arabic console before anyone picks a language.
    const ar = await newSession('anonymous', 'ar-EG');
    await ar.page.goto(UI);
    await T(ar.page, 'login-token').waitFor();
    check(await ar.page.evaluate(() => document.documentElement.lang === 'ar' && document.documentElement.dir === 'rtl'),
          'an Arabic browser: the sign-in page in Arabic, <html dir="rtl">');
    await ar.context.close();
  }

  step('the ministry signs in: cookie flags, its navigation');
  await signIn(ministry);
  {
    const {page, context} = ministry;
    const cookie = (await context.cookies()).find((c) => c.name === 'sluice_session');
    check(!!cookie && cookie.httpOnly === true && cookie.secure === true && cookie.sameSite === 'Strict',
          `session cookie: HttpOnly ${cookie?.httpOnly}, Secure ${cookie?.secure}, SameSite ${cookie?.sameSite}`);
    check(cookie && cookie.path === '/' && cookie.expires === -1, `session cookie: Path=/ and no persistent expiry (${cookie?.expires})`);
    check(!(await page.evaluate(() => document.cookie)).includes('sluice_session'), 'document.cookie does not show it');
    check(await T(page, 'nav-submit').isVisible(), 'ministry: nav-submit shown');
    for (const n of ['nav-directives', 'nav-fleet', 'nav-audit']) check(await T(page, n).isVisible(), `ministry: ${n} shown`);
  }

  step('submit: refusals placed by the dry-run check, nothing stored');
  {
    const {page} = ministry;
    const bad = await dryRun(page, DOCS.bad_action.file);
    const placed = bad.problems.find((p) => Number(p.line) === DOCS.bad_action.line);
    check(bad.ok === 'false' && !!placed,
          `${DOCS.bad_action.file}: check fails, a problem at line ${DOCS.bad_action.line} ` +
          `(${bad.problems.map((p) => `${p.line}:${p.column} ${p.text.slice(0, 60)}`).join('; ')})`);
    check(placed && Number(placed.column) === DOCS.bad_action.column, `... column ${DOCS.bad_action.column} (${placed?.column})`);
    check(!(await T(page, 'submit-send').isEnabled()), 'submit stays disabled after a failing check');
    await shoot(page, 'submit-check-refused', {focus: 'check-result', prepare: () => checkOnPage(page, DOCS.bad_action.file)});
    const tampered = await dryRun(page, DOCS.tampered);
    check(tampered.ok === 'false' && tampered.problems.some((p) => /signature/i.test(p.text)),
          `${DOCS.tampered} (changed after signing): check fails naming the signature ` +
          `(${tampered.problems.map((p) => p.text.slice(0, 60)).join('; ')})`);
    const list = await pageFetch(page, 'GET', '/v1/directives');
    check(list.status === 200 && list.body.directives.length === 0, 'nothing was stored by the checks');
  }

  step('the ministry uploads the signed block: dry-run passes, submitted');
  {
    const {page} = ministry;
    await shoot(page, 'submit-check-passed', {focus: 'check-result', prepare: () => checkOnPage(page, 'block.yaml')});
    await checkPasses(ministry.page, 'block.yaml');
    await send(page, 'block.yaml', BLOCK);
    await openDirective(page, BLOCK);
    must(await directiveState(page) === 'awaiting_approval', `${BLOCK}: awaiting approval`);
    const shown = await actionsShown(page);
    check(!shown.includes('action-approve') && !shown.includes('action-reject') && !shown.includes('action-override'),
          `the submitter (ministry) is not offered approve/reject/override: [${shown}]`);
    const signer = (await T(page, 'directive-signer').textContent()).trim();
    check(signer.length > 0, `the signer's key is shown: "${signer.slice(0, 80)}"`);
    const docText = await T(page, 'directive-document').textContent();
    check(docText === readFileSync(docFile('block.yaml'), 'utf8') || docText.trim() === readFileSync(docFile('block.yaml'), 'utf8').trim(),
          'the signed document is shown as submitted, byte for byte');
    // By hand, with the page's own cookie and CSRF token: the server refuses.
    const r = await pageFetch(page, 'POST', `/v1/directives/${BLOCK}/approve`);
    check(r.status === 403, `ministry POSTs approve by hand: ${r.status} ${JSON.stringify(r.body).slice(0, 100)}`);
  }

  step('the engineer: directives, the impact report, approval');
  const engineer = await open('engineer');
  await signIn(engineer);
  // A second tab on the fleet page for the rest of the story: the page samples the rollout's
  // progress while it is open.
  const fleetTab = await watched(engineer.context, 'engineer (fleet tab)');
  await go(fleetTab, 'fleet');
  await T(fleetTab, 'fleet-table').waitFor();
  {
    const {page} = engineer;
    check(!(await T(page, 'nav-submit').count()) || !(await T(page, 'nav-submit').isVisible()), 'engineer: no nav-submit');
    await go(page, 'directives');
    await T(page, 'directives-table').waitFor();
    const row = page.locator(`[data-testid="directive-row"][data-key="${BLOCK}"]`);
    await row.waitFor();
    check(await row.getAttribute('data-state') === 'awaiting_approval', 'the list shows the block awaiting approval');
    await shoot(page, 'directives', {ready: 'directives-table'});
    // Filter and search
    await T(page, 'directives-filter').selectOption('active');
    check(await eventually(async () => (await row.count()) === 0, 5000), 'filter "active" hides it');
    await T(page, 'directives-filter').selectOption('');
    await T(page, 'directives-search').fill('no-such-directive');
    check(await eventually(async () => (await row.count()) === 0, 5000), 'a search for something else hides it');
    await T(page, 'directives-search').fill(DOCS.block);
    check(await eventually(async () => (await row.count()) === 1, 5000), `a search for ${DOCS.block} shows it`);

    await openDirective(page, BLOCK);
    // The stand-in node reports every 5 s; the page refreshes the report every 10 s: reload
    // rather than wait for it.
    const reported = await eventually(async () => {
      const text = await T(page, 'impact-table').textContent({timeout: 2000}).catch(() => '');
      if (/drive\.example\.com/.test(text)) return true;
      await page.reload();
      await T(page, 'directive').waitFor();
      return false;
    }, 30000, 3000);
    const rows = await count(page, 'impact-row');
    check(!!reported, `the impact report is shown: ${rows} impact-row(s), drive.example.com among the other names`);
    const hot = page.locator('[data-testid="impact-row"][data-prefix="149.154.160.0/20"]');
    const cells = (await hot.count()) ? (await hot.locator('td').allTextContents()).map((c) => c.trim()) : [];
    check(cells[1] === '20' && /^60(\.0)?\s*%$/.test(cells[2]) && /^15(\.0)?\s*%$/.test(cells[3]) &&
          cells[4] === '5' && /drive\.example\.com/.test(cells[5] || ''),
          `impact row 149.154.160.0/20 as reported: 20 flows, 60 % own, 15 % unnamed, 5 other (drive.example.com): ${JSON.stringify(cells)}`);
    check(await T(page, 'impact-chart').first().evaluate((e) => e.tagName.toLowerCase() === 'svg').catch(() => false),
          'impact chart is an <svg>');
    await shoot(page, 'directive-awaiting', {ready: 'enforcement'});
    await shoot(page, 'impact', {focus: 'impact-table'});
    const shown = await actionsShown(page);
    check(shown.includes('action-approve') && shown.includes('action-reject') && !shown.includes('action-revoke'),
          `engineer on an awaiting directive: approve and reject, no revoke: [${shown}]`);
    const approvals = (await T(page, 'directive-approvals').textContent()).trim();
    check(/0\D+1/.test(approvals), `approvals "${approvals}" (0 of 1)`);
    const r = await act(page, 'action-approve', 'impact reviewed, order checked');
    check(r.ok === 'true', `engineer approves: data-ok ${r.ok} "${r.text.slice(0, 80)}"`);
  }

  step('the directive page shows the fleet converging to enforcing');
  {
    const {page} = engineer;
    await openDirective(page, BLOCK);
    await waitEnforcing(page, BLOCK, 'active');
    const e = await enforcement(page);
    check(e.pending === 0 && e.failing === 0 && e.stale === 0, `pending ${e.pending}, failing ${e.failing}, stale ${e.stale}`);
    const approvals = (await T(page, 'directive-approvals').textContent()).trim();
    check(/1\D+1/.test(approvals), `approvals "${approvals}" (1 of 1)`);
    const items = await T(page, 'timeline-item').allTextContents();
    check(items.some((t) => /received|submitted/i.test(t)) && items.some((t) => /approved/i.test(t)),
          `the directive's own timeline: ${items.length} items, received and approved`);
    check(!(await actionsShown(page)).includes('action-approve'), 'no approve once active');
    await shoot(page, 'directive-active', {ready: 'enforcement'});
  }

  step('fleet page (open in a tab of its own since before the approval)');
  {
    const page = fleetTab;
    await page.bringToFront();
    const conv = await eventually(async () => {
      const n = Number((await T(page, 'fleet-count-converged').textContent()).trim());
      return n === NODES ? n : null;
    }, 15000, 500);
    check(conv === NODES, `fleet: ${conv} converged of ${NODES}`);
    check(await count(page, 'node-row') === NODES, `fleet: ${NODES} node rows`);
    check(await page.locator('[data-testid="node-row"][data-node="sim-0001"]').count() === 1, 'fleet: the canary sim-0001 is listed');
    const shown = await actionsShown(page);
    check(['action-pause', 'action-resume', 'action-emergency-stop'].every((a) => shown.includes(a)) ||
          ['action-pause', 'action-emergency-stop'].every((a) => shown.includes(a)),
          `engineer on the fleet page: pause/resume and emergency stop: [${shown}]`);
    await shoot(page, 'fleet', {ready: 'fleet-table'});
  }

  step('viewer: signs in with the keyboard alone; sees everything, may do nothing');
  const viewer = await open('viewer');
  {
    const {page} = viewer;
    await page.goto(UI);
    await T(page, 'login-token').waitFor();
    await page.keyboard.type(TOKENS.viewer);  // the focus is already on the token
    await page.keyboard.press('Enter');
    const who = await eventually(async () => (await T(page, 'whoami').textContent({timeout: 500}))?.trim(), 10000);
    must(!!who && who.startsWith('viewer-user ('), `viewer signs in by keyboard (type, Enter): whoami "${who}"`);
  }
  {
    const {page} = viewer;
    check(!(await T(page, 'nav-submit').count()) || !(await T(page, 'nav-submit').isVisible()), 'viewer: no nav-submit');
    await openDirective(page, BLOCK);
    await T(page, 'enforcement').waitFor();
    check((await actionsShown(page)).length === 0, `viewer on the active directive: no action buttons [${await actionsShown(page)}]`);
    await go(page, 'fleet');
    await T(page, 'fleet-table').waitFor();
    check((await actionsShown(page)).length === 0, `viewer on the fleet page: no action buttons [${await actionsShown(page)}]`);
    for (const [m, route] of [['POST', `/v1/directives/${BLOCK}/revoke`], ['POST', '/v1/rollout/pause'],
                              ['POST', '/v1/directives/check']]) {
      const r = await pageFetch(page, m, route, {body: {reason: 'viewer tries'}});
      check(r.status === 403, `viewer ${m}s ${route} by hand (with its CSRF token): ${r.status}`);
    }
  }
  {
    const {page} = ministry;
    await go(page, 'fleet');
    await T(page, 'fleet-table').waitFor();
    const shown = await actionsShown(page);
    check(!shown.some((a) => /pause|resume|emergency/.test(a)), `ministry on the fleet page: no engineer actions [${shown}]`);
    const r = await pageFetch(page, 'POST', '/v1/emergency-stop', {body: {reason: 'ministry tries'}});
    check(r.status === 403, `ministry POSTs emergency-stop by hand: ${r.status}`);
    await openDirective(page, BLOCK);
    const onActive = await actionsShown(page);
    check(!onActive.includes('action-approve') && !onActive.includes('action-reject'),
          `ministry on the active block: no approve/reject [${onActive}]`);
  }

  step('the ministry uploads the signed unblock; the engineer approves; the fleet converges back');
  {
    const {page} = ministry;
    await checkPasses(ministry.page, 'unblock.yaml');
    await send(page, 'unblock.yaml', UNBLOCK);
    await openDirective(page, UNBLOCK);
    check(!(await actionsShown(page)).includes('action-approve'), 'the submitter is not offered approve on the unblock');
  }
  {
    const {page} = engineer;
    await openDirective(page, UNBLOCK);
    const r = await act(page, 'action-approve', 'lift ordered');
    check(r.ok === 'true', `engineer approves the unblock: data-ok ${r.ok}`);
    check(await eventually(async () => (await directiveState(page)) === 'active', 10000),
          `${UNBLOCK}: active on its page (${await directiveState(page)})`);
    // A lift has no rules of its own: a node enforces it once it holds the block's rules with
    // their new end (then without them); the block's own page counts their removal.
    await waitEnforcing(page, UNBLOCK, 'active');
    await openDirective(page, BLOCK);
    await waitEnforcing(page, BLOCK, 'ended');
    await shoot(page, 'directive-ended', {ready: 'enforcement'});
  }

  step('fleet actions: pause and resume the rollout, emergency stop and clear (engineer)');
  {
    const page = fleetTab;
    await page.bringToFront();
    const converged = async () => eventually(async () =>
      Number((await T(page, 'fleet-count-converged').textContent()).trim()) === NODES, CONVERGE_MS, 500);
    check(!!await converged(), `fleet converged again: ${await T(page, 'fleet-count-converged').textContent()} of ${NODES}`);
    const rollout = async () => (await pageFetch(page, 'GET', '/v1/rollout')).body;
    for (const [action, field, want] of [['action-pause', 'paused', true], ['action-resume', 'paused', false],
                                         ['action-emergency-stop', 'emergency_stop', true],
                                         ['action-emergency-clear', 'emergency_stop', false]]) {
      const before = (await rollout()).target;
      const r = await act(page, action, `console test: ${action}`);
      const ro = await rollout();
      check(r.ok === 'true' && r.asked && ro[field] === want,
            `${action}, with a reason: data-ok ${r.ok}, rollout ${field} ${ro[field]}`);
      if (field === 'emergency_stop') {
        // A stop compiles no rules, its end the rules again: a new revision either way.
        const moved = await eventually(async () => (await rollout()).target > before, 5000);
        const target = (await rollout()).target;
        const onIt = moved && await eventually(async () => {
          const nodes = (await pageFetch(page, 'GET', '/v1/nodes')).body.nodes;
          return nodes.length === NODES && nodes.every((n) => n.applied_revision >= target && n.state === 'converged');
        }, CONVERGE_MS, 500);
        const ok = onIt && await converged();
        check(!!ok, `... revision ${before} -> ${target}: every node applied it, the page counts ${NODES} converged`);
      }
      await sleep(500);
    }
  }

  step('payloads in a directive render inert');
  {
    const {page} = ministry;
    await checkPasses(ministry.page, 'xss.yaml');
    await send(page, 'xss.yaml', XSS);
    const badDomain = await dryRun(page, DOCS.bad_domain);
    check(badDomain.ok === 'false', `a payload as a target domain: the check refuses it (${badDomain.problems.map((p) => p.text.slice(0, 80)).join('; ')})`);
    await inert(page, 'ministry, check problems of a payload domain');
    for (const s of [ministry, engineer, viewer]) {
      await go(s.page, 'directives');
      const row = s.page.locator(`[data-testid="directive-row"][data-key="${XSS}"]`);
      await row.waitFor();
      check((await row.textContent()).includes(DOCS.payloads[0]) || (await row.textContent()).includes('<img'),
            `${s.role}: the list shows the payload as text`);
      await inert(s.page, `${s.role}, directive list`);
      await openDirective(s.page, XSS);
      const lb = await T(s.page, 'directive-legal-basis').textContent();
      check(lb.includes(DOCS.payloads[0]) && lb.includes(DOCS.payloads[1]),
            `${s.role}: legal basis shown as text: ${lb.slice(0, 90)}`);
      check((await T(s.page, 'directive-document').textContent()).includes(DOCS.payloads[0]),
            `${s.role}: the document (payload in a comment) shown as text`);
      await inert(s.page, `${s.role}, directive page`);
    }
    await shoot(engineer.page, 'directive-payloads', {ready: 'directive-legal-basis'});
    // The reason dialog by keyboard: Esc cancels, nothing happens.
    await T(engineer.page, 'action-reject').click();
    await T(engineer.page, 'reason-input').waitFor();
    check(await engineer.page.evaluate(() => document.activeElement?.getAttribute('data-testid')) === 'reason-input',
          'the reason dialog puts the focus on the reason');
    await engineer.page.keyboard.press('Escape');
    check(await eventually(async () => (await T(engineer.page, 'reason-input').count()) === 0, 3000),
          'Esc closes the reason dialog');
    await sleep(2500);  // one poll
    check(await directiveState(engineer.page) === 'awaiting_approval', 'a cancelled rejection changes nothing');
    const r = await act(engineer.page, 'action-reject', 'payload test: rejected');
    check(r.ok === 'true' && r.asked, `engineer rejects it, giving a reason: data-ok ${r.ok}`);
    await openDirective(engineer.page, XSS);
    check(await eventually(async () => (await directiveState(engineer.page)) === 'ended', 10000),
          `${XSS}: ended after the rejection`);
    await go(viewer.page, 'audit');
    await T(viewer.page, 'audit-table').waitFor();
    await inert(viewer.page, 'viewer, audit page');
  }

  step('protected targets: the overlap shown, approval refused until two engineers override');
  const engineer2 = await open('engineer', undefined, 'engineer2');
  {
    const {page} = ministry;
    const pr = DOCS.protected_range;
    await checkPasses(page, 'protected.yaml');
    await send(page, 'protected.yaml', PROT);
    await openDirective(page, PROT);
    must(await directiveState(page) === 'awaiting_approval', `${PROT}: awaiting approval`);
    const text = await eventually(async () => (await T(page, 'impact-overlaps').textContent({timeout: 1000})) || null, 10000);
    check(!!text && text.includes(pr.target), `the submitter sees the overlap too: "${(text || '').trim().slice(0, 120)}"`);
    const shown = await actionsShown(page);
    check(!shown.some((a) => /approve|reject|override/.test(a)),
          `the submitter (ministry) is offered no approve/reject/override on a protected overlap: [${shown}]`);
    const r = await pageFetch(page, 'POST', `/v1/directives/${PROT}/override`, {body: {reason: 'ministry tries'}});
    check(r.status === 403, `ministry POSTs override by hand: ${r.status} ${r.body?.error ?? ''}`);
  }
  await signIn(engineer2, ENGINEER2_NAME);
  {
    const {page} = engineer;
    const pr = DOCS.protected_range;
    await openDirective(page, PROT);
    const box = T(page, 'impact-overlaps');
    await box.waitFor();
    const text = (await box.textContent()).trim();
    check(text.includes(pr.target) && text.includes(pr.name) && text.includes(pr.range) &&
          await box.getAttribute('data-count') === '1' && !/\bnone\b/.test(await box.getAttribute('class') || ''),
          `impact-overlaps names the target ${pr.target} inside '${pr.name}' (${pr.range}): "${text.slice(0, 140)}"`);
    check(/0\D+2/.test(text), `impact-overlaps: overrides so far 0 of 2 ("${text.slice(-60)}")`);
    // The stand-in node's report for it: its row is marked as overlapping a protected range.
    const row = page.locator(`[data-testid="impact-row"][data-prefix="${pr.target}"]`);
    // The row can show before the node's counts do (seen under load): wait for its flows.
    const rowCells = async () => (await row.locator('td').allTextContents()).map((c) => c.trim());
    await eventually(async () => {
      if (await row.count() && (await rowCells())[1] === '10') return true;
      await page.reload();
      await T(page, 'directive').waitFor();
      return false;
    }, 30000, 3000);
    const marked = (await row.count()) > 0;
    const cls = marked ? (await row.getAttribute('class')) || '' : '';
    const cells = marked ? await rowCells() : [];
    check(/\boverlap\b/.test(cls) && /protected/i.test(cells[0] || '') && cells[1] === '10' && /portal\.gov\.example/.test(cells[5] || ''),
          `impact row ${pr.target} highlighted as protected (class "${cls}"): ${JSON.stringify(cells)}`);
    const overrideButtons = async (p) => p.locator('[data-testid="impact-overlaps"] [data-testid="action-override"]').count();
    check(await overrideButtons(page) === 1, 'engineer: action-override offered in the overlaps section');
    await shoot(page, 'impact-protected', {focus: 'impact-overlaps'});

    let r = await act(page, 'action-approve', 'try before any override');
    check(r.ok === 'false' && /protected_overlap/.test(r.text) && r.text.includes(pr.target),
          `approve with no override: refused by the server, data-ok ${r.ok} "${r.text.slice(0, 140)}"`);
    r = await act(page, 'action-override', 'collateral reviewed: only our test range');
    check(r.ok === 'true' && r.asked, `engineer-user overrides, giving a reason: data-ok ${r.ok}`);
    check(await eventually(async () => (await overrideButtons(page)) === 0, 5000),
          'engineer-user: the override button is gone once it overrode');
    check(await eventually(async () => /1\D+2/.test(await T(page, 'impact-overlaps').textContent()), 5000),
          `impact-overlaps: overrides so far 1 of 2 ("${(await T(page, 'impact-overlaps').textContent()).trim().slice(-60)}")`);
    r = await act(page, 'action-approve', 'try after one override');
    check(r.ok === 'false' && /protected_overlap/.test(r.text),
          `approve after one override: still refused, data-ok ${r.ok} "${r.text.slice(0, 100)}"`);
    await openDirective(page, PROT);  // drawn anew from the server's answer
    check(await overrideButtons(page) === 0, 'engineer-user, page reloaded: still no override button');

    const p2 = engineer2.page;
    await openDirective(p2, PROT);
    await T(p2, 'impact-overlaps').waitFor();
    check(await overrideButtons(p2) === 1, `${ENGINEER2_NAME}: action-override offered (it has not overridden)`);
    r = await act(p2, 'action-override', 'second engineer agrees');
    check(r.ok === 'true' && r.asked, `${ENGINEER2_NAME} overrides, giving a reason: data-ok ${r.ok}`);
    check(await eventually(async () => (await overrideButtons(p2)) === 0, 5000),
          `${ENGINEER2_NAME}: the override button is gone once it overrode`);

    await openDirective(page, PROT);
    check(await eventually(async () => /2\D+2/.test(await T(page, 'impact-overlaps').textContent()), 5000),
          'impact-overlaps: overrides so far 2 of 2');
    const details = await page.locator('[data-testid="directive"] dl.details').textContent();
    check(details.includes('engineer-user') && details.includes(ENGINEER2_NAME),
          `the details list both overriding engineers`);
    r = await act(page, 'action-approve', 'two overrides given');
    check(r.ok === 'true', `approve after two overrides: data-ok ${r.ok} "${r.text.slice(0, 80)}"`);
    check(await eventually(async () => (await directiveState(page)) === 'active', 10000),
          `${PROT}: active on its page (${await directiveState(page)})`);
    const items = await eventually(async () => {
      const all = await T(page, 'timeline-item').allTextContents();
      return all.filter((t) => /directive\.override_approved/.test(t)).length === 2 &&
        all.some((t) => /directive\.approved/.test(t)) ? all : null;
    }, 15000, 1000) || await T(page, 'timeline-item').allTextContents();
    const overrides = items.filter((t) => /directive\.override_approved/.test(t));
    check(overrides.length === 2 && overrides.some((t) => t.includes('engineer-user')) &&
          overrides.some((t) => t.includes(ENGINEER2_NAME)),
          `timeline: ${overrides.length} override records, by engineer-user and ${ENGINEER2_NAME}`);
    // The second refusal is a repeat by the same caller within 60 s: the server counts it into
    // one request.refused.repeated record later (README: at most two records per minute and
    // code), which names no directive, so the timeline holds the first.
    const refused = items.filter((t) => /request\.refused/.test(t) && /protected_overlap/.test(t));
    check(refused.length >= 1, `timeline: the refused approval recorded (${refused.length} protected_overlap refusal record(s))`);
    await waitEnforcing(page, PROT, 'active');
    check(!(await actionsShown(page)).includes('action-revoke'), 'engineer: no revoke on the active directive');
  }

  step('revoke (ministry): the protected-range block ends at once; the fleet converges');
  {
    const {page} = ministry;
    await openDirective(page, PROT);
    const shown = await actionsShown(page);
    check(shown.includes('action-revoke') && !shown.includes('action-reject') && !shown.includes('action-approve'),
          `ministry on an active directive: revoke, no approve/reject: [${shown}]`);
    const r = await act(page, 'action-revoke', 'order withdrawn by the ministry');
    check(r.ok === 'true' && r.asked, `ministry revokes, giving a reason: data-ok ${r.ok} "${r.text.slice(0, 80)}"`);
    check(await eventually(async () => (await directiveState(page)) === 'ended', 10000),
          `${PROT}: ended on its page (${await directiveState(page)})`);
    const badge = (await page.locator('[data-testid="directive"] .heading-badge').textContent()).trim();
    check(/revoked/i.test(badge), `the page says why: "${badge}"`);
    await waitEnforcing(page, PROT, 'ended');
    check((await actionsShown(page)).length === 0, `ministry on the ended directive: no actions [${await actionsShown(page)}]`);
  }

  step('reject (engineer) with the keyboard alone; Esc cancels without a request');
  {
    const {page} = ministry;
    await checkPasses(page, 'reject.yaml');
    await send(page, 'reject.yaml', REJ);
    await openDirective(page, REJ);
    must(await directiveState(page) === 'awaiting_approval', `${REJ}: awaiting approval`);
    const shown = await actionsShown(page);
    check(!shown.includes('action-reject') && !shown.includes('action-approve'),
          `ministry on an awaiting directive: no reject/approve [${shown}]`);
  }
  {
    const {page} = engineer;
    await openDirective(page, REJ);
    const sent = [];
    const onRequest = (req) => {
      if (!['GET', 'HEAD'].includes(req.method())) sent.push(`${req.method()} ${new globalThis.URL(req.url()).pathname}`);
    };
    page.on('request', onRequest);
    const focused = () => page.evaluate(() => document.activeElement?.getAttribute('data-testid') ?? document.activeElement?.tagName);
    const tabTo = async (id) => {
      for (let i = 0; i < 40; i++) {
        if (await focused() === id) return true;
        await page.keyboard.press('Tab');
      }
      return (await focused()) === id;
    };
    try {
      must(await tabTo('action-reject'), 'Tab reaches action-reject');
      await page.keyboard.press('Enter');
      check(await T(page, 'reason-input').waitFor({timeout: 3000}).then(() => true, () => false) &&
            await focused() === 'reason-input', 'Enter opens the reason dialog, the focus on the reason');
      await page.keyboard.type('typed, then cancelled');
      await page.keyboard.press('Escape');
      check(await eventually(async () => (await T(page, 'reason-input').count()) === 0, 3000), 'Esc closes the dialog');
      check(await focused() === 'action-reject', `the focus returns to action-reject (${await focused()})`);
      await sleep(2500);  // one poll
      check(sent.length === 0, `Esc: no request was sent [${sent}]`);
      check(await directiveState(page) === 'awaiting_approval', 'Esc: the directive still awaits approval');

      // Again: Enter with no reason is refused by the dialog itself; type one; Enter sends.
      await page.$$eval('[data-testid="action-result"]', (els) => els.forEach((e) => (e.dataset.stale = '1')));
      await page.keyboard.press('Enter');
      await T(page, 'reason-input').waitFor({timeout: 3000});
      await page.keyboard.press('Enter');
      await sleep(300);
      check(await T(page, 'reason-input').count() === 1 && sent.length === 0,
            `Enter with an empty reason: the dialog stays, nothing sent [${sent}]`);
      await page.keyboard.type('rejected by keyboard: order incomplete');
      await page.keyboard.press('Enter');
      const res = page.locator('[data-testid="action-result"]:not([data-stale])');
      await res.waitFor();
      await eventually(async () => (await res.getAttribute('data-ok')) !== null, 10000);
      check(await res.getAttribute('data-ok') === 'true', `typed reason, Enter: rejected, data-ok ${await res.getAttribute('data-ok')}`);
      check(sent.length === 1 && sent[0] === `POST /v1/directives/${REJ}/reject`, `exactly one request went out: [${sent}]`);
    } finally {
      page.off('request', onRequest);
    }
    check(await eventually(async () => (await directiveState(page)) === 'ended', 10000),
          `${REJ}: ended on its page (${await directiveState(page)})`);
    const badge = (await page.locator('[data-testid="directive"] .heading-badge').textContent()).trim();
    check(/rejected/i.test(badge), `the page says why: "${badge}"`);
    const api = await pageFetch(page, 'GET', `/v1/directives/${REJ}`);
    check(api.body?.end_reason === 'rejected', `API: end_reason ${api.body?.end_reason}`);
    // Its shadow rules go: one more rollout. Let it finish (the audit page below pages through
    // a log that should stand still meanwhile).
    const settled = await eventually(async () => {
      const ro = (await pageFetch(page, 'GET', '/v1/rollout')).body;
      const nodes = (await pageFetch(page, 'GET', '/v1/nodes')).body.nodes;
      return ro.stage === 'done' && nodes.length === NODES &&
        nodes.every((n) => n.applied_revision >= ro.target && n.state === 'converged') ? ro : null;
    }, CONVERGE_MS, 500);
    check(!!settled, `after the rejection every node applied revision ${settled?.target} (rollout ${settled?.stage})`);
    await openDirective(ministry.page, REJ);
    check(!(await actionsShown(ministry.page)).includes('action-reject'), 'ministry on the rejected directive: no reject');
  }

  await shoot(fleetTab, 'fleet-rollouts', {focus: 'rollout-chart'});

  step('audit: paged records, verify chain');
  {
    const {page} = viewer;
    await go(page, 'audit');
    await T(page, 'audit-table').waitFor();
    const n = await count(page, 'audit-row');
    check(n > 0, `audit page: ${n} records`);
    // It opens on the newest records: the last row is the chain's head.
    const seqs = async () => (await page.locator('[data-testid="audit-row"]').evaluateAll(
      (rows) => rows.map((r) => Number(r.dataset.seq))));
    const opened = await seqs();
    check(!(await T(page, 'audit-next').isEnabled()), 'audit opens on the newest page (nothing newer)');
    const first = await T(page, 'audit-row').first().textContent();
    if (await T(page, 'audit-prev').isEnabled().catch(() => false)) {
      await T(page, 'audit-prev').click();
      check(await eventually(async () => (await T(page, 'audit-row').first().textContent()) !== first, 5000),
            'audit-prev shows older records');
      check(Math.max(...(await seqs())) < Math.max(...opened), 'older records have lower seqs');
      await T(page, 'audit-next').click();
      // The newest page again (the log may have grown meanwhile: a refusal counted into a
      // request.refused.repeated record a minute later, say).
      check(await eventually(async () => Math.max(...(await seqs())) >= Math.max(...opened) &&
                                         !(await T(page, 'audit-next').isEnabled()), 5000),
            'audit-next comes back to the newest');
    } else {
      console.log(`     (one page of audit records only: ${n})`);
    }
    await T(page, 'audit-verify').click();
    const res = T(page, 'audit-verify-result');
    await res.waitFor();
    await eventually(async () => (await res.getAttribute('data-ok')) !== null, 10000);
    const head = (await T(page, 'audit-head-hash').textContent()).trim();
    check(await res.getAttribute('data-ok') === 'true', `verify chain: data-ok ${await res.getAttribute('data-ok')} "${(await res.textContent()).trim().slice(0, 80)}"`);
    // The chain may have grown since (rollout records): the hash shown is one record's own.
    const all = (await pageFetch(page, 'GET', '/v1/audit?limit=10000')).body.records;
    const rec = all.find((r) => r.hash === head);
    check(/^[0-9a-f]{64}$/.test(head) && !!rec,
          `head hash shown ${head.slice(0, 16)}... is the hash of audit record #${rec?.seq} (of ${all.length})`);
    await shoot(page, 'audit', {focus: 'audit-verify-result', prepare: async () => {
      await T(page, 'audit-verify').click();
      await T(page, 'audit-verify-result').waitFor();
    }});
  }

  step('CSRF: requests without the token are refused');
  {
    const {page} = engineer;
    await go(page, 'fleet');
    await T(page, 'fleet-table').waitFor();
    const none = await pageFetch(page, 'POST', '/v1/rollout/pause', {body: {reason: 'no token'}, csrf: false});
    check(none.status === 403 && none.body.error === 'csrf', `same page, no X-CSRF-Token: ${none.status} ${none.body.error}`);
    const wrong = await pageFetch(page, 'POST', '/v1/rollout/pause', {body: {reason: 'wrong token'}, csrf: 'x'.repeat(43)});
    check(wrong.status === 403 && wrong.body.error === 'csrf', `same page, a wrong X-CSRF-Token: ${wrong.status} ${wrong.body.error}`);
    const del = await pageFetch(page, 'DELETE', '/v1/session', {csrf: false});
    check(del.status === 403, `DELETE /v1/session without the token: ${del.status} (the session stays)`);

    // Another site's page, in the engineer's browser.
    const evil = await engineer.context.newPage();
    evil.on('dialog', (d) => d.dismiss());
    for (const [what, origin] of [[`https://127.0.0.1:${evilTlsPort} (same site, other origin: the cookie goes along)`, `https://127.0.0.1:${evilTlsPort}`],
                                  [`http://127.0.0.1:${evilPlainPort} (other site: SameSite=Strict keeps the cookie)`, `http://127.0.0.1:${evilPlainPort}`]]) {
      await evil.goto(`${origin}/?target=/v1/rollout/pause`);
      const [resp] = await Promise.all([
        evil.waitForResponse((r) => r.url() === `${URL_}/v1/rollout/pause`),
        evil.locator('#go').click(),
      ]);
      const body = await resp.text().catch(() => '');
      // Same site: the cookie went along and only the missing token stopped it (403 csrf).
      // Another site: the browser kept the cookie back, so there was no session at all (401).
      const want = origin.startsWith('https:') ? 403 : 401;
      check(resp.status() === want && (want === 401 || body.includes('"csrf"')),
            `form POST from ${what}: ${resp.status()} ${body.slice(0, 80)}`);
      await evil.goto(`${origin}/?target=/v1/rollout/pause`);  // the form took the tab to the answer
      const fetched = await evil.evaluate(async (u) => {
        try {
          const r = await fetch(u, {method: 'POST', credentials: 'include', headers: {'Content-Type': 'application/json', 'X-CSRF-Token': 'guess'}, body: '{"reason":"x"}'});
          return `answered ${r.status}`;
        } catch (e) {
          return `blocked: ${e.message}`;
        }
      }, `${URL_}/v1/rollout/pause`);
      check(fetched.startsWith('blocked'), `fetch with a header from ${origin}: ${fetched} (no CORS for other origins)`);
      await evil.evaluate(async (u) => {
        await fetch(u, {method: 'POST', mode: 'no-cors', credentials: 'include', body: '{"reason":"x"}'}).catch(() => {});
      }, `${URL_}/v1/rollout/pause`);
    }
    await evil.close();
    const ro = await pageFetch(page, 'GET', '/v1/rollout');
    check(ro.status === 200 && ro.body.paused === false, `the rollout was never paused (paused ${ro.body.paused})`);
  }

  step('logout ends the session');
  {
    const {page, context} = engineer;
    const cookie = (await context.cookies()).find((c) => c.name === 'sluice_session');
    const before = await rawRequest('GET', '/v1/session', {Cookie: `sluice_session=${cookie.value}`});
    check(before.status === 200, `the cookie works from outside the browser before logout (${before.status})`);
    await T(page, 'logout').click();
    const signIn = await T(page, 'login-token').waitFor({timeout: 10000}).then(() => true, () => false);
    check(signIn && (await page.evaluate(() => location.hash)).startsWith('#/login'),
          'logout shows the sign-in page');
    const after = await pageFetch(page, 'GET', '/v1/session', {csrf: false});
    check(after.status === 401, `GET /v1/session after logout: ${after.status}`);
    const api = await pageFetch(page, 'GET', '/v1/directives', {csrf: false});
    check(api.status === 401, `GET /v1/directives after logout: ${api.status}`);
    const replay = await rawRequest('GET', '/v1/directives', {Cookie: `sluice_session=${cookie.value}`});
    check(replay.status === 401, `the old cookie replayed from outside: ${replay.status} (ended on the server)`);
    check(!(await context.cookies()).some((c) => c.name === 'sluice_session' && c.value), 'the cookie is cleared in the browser');
  }
}

// No payload ran, no element came from one; the page is still the console.
async function inert(page, where) {
  const found = await page.evaluate(() => ({
    pwned: window.__pwned ?? null,
    imgs: document.querySelectorAll('img[src="x"], img[onerror]').length,
    scripts: [...document.scripts].filter((s) => !s.src).length,
    handlers: [...document.querySelectorAll('*')].filter((e) => [...e.attributes].some((a) => a.name.startsWith('on'))).length,
  }));
  check(found.pwned === null && found.imgs === 0 && found.scripts === 0 && found.handlers === 0 && dialogs.length === 0,
        `${where}: inert (window.__pwned ${found.pwned}, injected img ${found.imgs}, inline scripts ${found.scripts}, ` +
        `on* attributes ${found.handlers}, dialogs ${dialogs.length})`);
}

let crashed = null;
try {
  await story();
} catch (e) {
  crashed = e;
  if (!(e instanceof StepFailed)) check(false, `story stopped: ${e.stack || e}`);
} finally {
  check(dialogs.length === 0, `no dialog was ever opened (${dialogs.join(' | ')})`);
  check(cspReports.length === 0, `no CSP violation reported (${cspReports.slice(0, 3).join(' | ')})`);
  check(pageErrors.length === 0, `no uncaught error in the pages (${pageErrors.slice(0, 3).join(' | ')})`);
  for (const s of sessions) await s.context.close().catch(() => {});
  await browser.close().catch(() => {});
  evilTls.close();
  evilPlain.close();
}
console.log(`\nstory.mjs: ${passed} passed, ${failures.length} failed${crashed instanceof StepFailed ? ' (stopped at a failed step)' : ''}`);
for (const f of failures) console.log(`  - ${f}`);
process.exit(failures.length ? 1 : 0);
