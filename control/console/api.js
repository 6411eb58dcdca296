// The controller's API from the page: same origin, the session cookie as the credential, JSON
// both ways, and the session's CSRF token on every request that may change something.

let csrfToken = '';
// Timer-driven poll runs in progress: their reads say so (X-Sluice-Poll), so an open page that
// only refreshes itself does not keep its session from going idle.
let background = 0;

export function setCsrf(token) {
  csrfToken = typeof token === 'string' ? token : '';
}

// A refused or failed call: `status` is the HTTP status (0: no answer), `code` the server's
// machine-readable error ("forbidden", "csrf", a directive error...), `body` its JSON if any.
export class ApiError extends Error {
  constructor(status, code, message, body) {
    super(message || code);
    this.status = status;
    this.code = code;
    this.body = body;
  }
}

// Fired on window when a call is refused for want of a session (expired, signed out elsewhere,
// controller restarted): the app forgets the session and shows the sign-in page.
export const UNAUTHORIZED_EVENT = 'sluice:unauthorized';

export async function request(method, path, body, {redirectOn401 = true} = {}) {
  const headers = {Accept: 'application/json'};
  const init = {method, headers, credentials: 'same-origin', cache: 'no-store', redirect: 'error'};
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  if (method !== 'GET' && method !== 'HEAD' && csrfToken) headers['X-CSRF-Token'] = csrfToken;
  if (method === 'GET' && background > 0) headers['X-Sluice-Poll'] = '1';
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, 'network', e instanceof Error ? e.message : String(e), null);
  }
  const text = await res.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (res.status === 401 && redirectOn401) window.dispatchEvent(new CustomEvent(UNAUTHORIZED_EVENT));
  if (!res.ok) {
    const code = data && typeof data.error === 'string' ? data.error : `http_${res.status}`;
    const message = data && typeof data.message === 'string' ? data.message : res.statusText;
    throw new ApiError(res.status, code, message, data);
  }
  return data;
}

export const get = (path, opts) => request('GET', path, undefined, opts);
export const post = (path, body, opts) => request('POST', path, body ?? {}, opts);
export const del = (path, body, opts) => request('DELETE', path, body, opts);

const enc = encodeURIComponent;

export const paths = {
  session: '/v1/session',
  directives: '/v1/directives',
  check: '/v1/directives/check',
  directive: (issuer, id) => `/v1/directives/${enc(issuer)}/${enc(id)}`,
  directiveAction: (issuer, id, action) => `/v1/directives/${enc(issuer)}/${enc(id)}/${action}`,
  impact: (issuer, id, windowS, top) =>
    `/v1/directives/${enc(issuer)}/${enc(id)}/impact?window=${enc(windowS)}&top=${enc(top)}`,
  nodes: '/v1/nodes',
  rollout: '/v1/rollout',
  rolloutAction: (action) => `/v1/rollout/${action}`,
  emergencyStop: '/v1/emergency-stop',
  audit: (after, limit) => `/v1/audit?after=${enc(after)}&limit=${enc(limit)}`,
  auditLast: (limit) => `/v1/audit?last=1&limit=${enc(limit)}`,
  auditSubject: (subject, limit) => `/v1/audit?subject=${enc(subject)}&limit=${enc(limit)}`,
  auditVerify: '/v1/audit/verify',
};

// Runs `fn` now and then `ms` after each run ends (never two at once), until stop().
// refresh() runs it again as soon as the current run (if any) ends.
export function poll(fn, ms) {
  let stopped = false;
  let running = false;
  let again = false;
  let timer = 0;
  const tick = async (timed = false) => {
    if (stopped) return;
    clearTimeout(timer);
    if (running) {
      again = true;
      return;
    }
    running = true;
    if (timed) background += 1;
    try {
      await fn();
    } catch (e) {
      // The caller shows its own errors; a throw here must not end the polling.
      console.error(e);
    } finally {
      if (timed) background -= 1;
      running = false;
      if (!stopped) {
        if (again) {
          again = false;
          timer = setTimeout(tick, 0);
        } else {
          timer = setTimeout(() => tick(true), ms);
        }
      }
    }
  };
  tick();
  return {
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
    refresh: () => tick(),
  };
}
