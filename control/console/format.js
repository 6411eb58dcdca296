// Shared formatting: times, states, targets, scope, errors. Returns text or inert elements.

import {h, ltr} from './dom.js';
import {t} from './i18n.js';

const pad = (n, width = 2) => String(n).padStart(width, '0');

// Unix seconds / unix milliseconds / RFC 3339 text -> Date, or null when absent (0, "", null).
export const fromUnixS = (s) => (typeof s === 'number' && s > 0 ? new Date(s * 1000) : null);
export const fromUnixMs = (ms) => (typeof ms === 'number' && ms > 0 ? new Date(ms) : null);
// A session's expires_at: unix ms from this server, read as seconds when it is small enough to be.
export const fromUnixAny = (v) => (typeof v === 'number' && v > 1e11 ? fromUnixMs(v) : fromUnixS(v));
export function fromRfc3339(text) {
  if (typeof text !== 'string' || text === '') return null;
  const d = new Date(text);
  return Number.isNaN(d.getTime()) ? null : d;
}

// "2026-11-21 03:00:00" in the browser's local time zone.
export function formatTime(date) {
  if (!(date instanceof Date) || Number.isNaN(date.getTime())) return t('common.none');
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ` +
    `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
}

export function formatClock(date) {
  return `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
}

// <time> with local text, the UTC instant in datetime and as its tooltip.
export function timeEl(date) {
  if (!(date instanceof Date) || Number.isNaN(date.getTime())) return h('span', null, t('common.none'));
  const iso = date.toISOString();
  return h('time', {datetime: iso, title: iso, dir: 'ltr', class: 'ltr'}, formatTime(date));
}

export function shortHash(hash, n = 12) {
  return typeof hash === 'string' && hash ? hash.slice(0, n) : t('common.none');
}

// 0.1234 -> "12.3%"
export function percent(share) {
  return `${(Number(share || 0) * 100).toFixed(1)}%`;
}

// The catalogue's words for a value the server sends (t('GROUP.VALUE')) when it is one of
// `known`; anything else as sent.
export function labelOf(group, known, value) {
  return known.includes(value) ? t(`${group}.${value}`) : String(value ?? '');
}

export function stateLabel(state) {
  return labelOf('state', ['awaiting_approval', 'scheduled', 'active', 'ended'], state);
}

export function endReasonLabel(reason) {
  return labelOf('end_reason', ['expired', 'lifted', 'revoked', 'rejected'], reason);
}

// A directive's state as a badge; an ended one says why.
export function stateBadge(d) {
  const text = d.state === 'ended' && d.end_reason
    ? t('state.ended_because', {reason: endReasonLabel(d.end_reason)})
    : stateLabel(d.state);
  return h('span', {class: ['badge', `state-${d.state}`]}, text);
}

export function actionLabel(action) {
  return labelOf('action', ['block', 'unblock', 'monitor', 'throttle'], action);
}

export function responseLabel(response) {
  return labelOf('response', ['drop', 'reset', 'notice'], response);
}

// "Block · notice page" (the response only for blocks that name one).
export function actionText(d) {
  const action = actionLabel(d.action);
  if (d.action === 'block' && d.response) return `${action} · ${responseLabel(d.response)}`;
  if (d.action === 'throttle' && d.throttle && typeof d.throttle === 'object') {
    return `${action} · ${t('throttle.rate', {bps: d.throttle.rate_bps ?? '?'})}`;
  }
  return action;
}

export function nodeStateLabel(state) {
  return labelOf('node_state', ['converged', 'pending', 'failing', 'stale', 'revoked', 'not_enrolled'],
    state);
}

export function roleLabel(role) {
  return labelOf('role', ['ministry', 'engineer', 'viewer'], role);
}

const list = (v) => (Array.isArray(v) ? v.map(String) : []);

// The target lists of a directive view or a check answer, as [[kindLabel, [items]]...], empty
// kinds left out. Unblocks name the directives they lift.
export function targetGroups(d) {
  const targets = d && typeof d.targets === 'object' && d.targets ? d.targets : {};
  const groups = [
    [t('targets.apps'), list(targets.apps)],
    [t('targets.domains'), list(targets.domains)],
    [t('targets.prefixes'), list(targets.prefixes)],
    [t('targets.lifts'), list(d?.lifts ?? targets.lifts)],
  ];
  return groups.filter(([, items]) => items.length > 0);
}

// One line: "apps: telegram; domains: a.org, b.org +3" (at most `max` items in all).
export function targetsSummary(d, max = 4) {
  if (!d || d.targets === undefined) {
    const lifts = list(d?.lifts);
    return lifts.length ? `${t('targets.lifts')}: ${lifts.join(', ')}` : t('common.none');
  }
  const groups = targetGroups(d);
  if (groups.length === 0) return t('common.none');
  let left = max;
  let hidden = 0;
  const parts = [];
  for (const [label, items] of groups) {
    const shown = items.slice(0, Math.max(left, 0));
    hidden += items.length - shown.length;
    left -= shown.length;
    if (shown.length) parts.push(`${label}: ${shown.join(', ')}`);
  }
  const text = parts.join('; ');
  return hidden > 0 ? `${text} ${t('targets.more', {n: hidden})}` : text;
}

// The same as inline elements, each item isolated (an RTL page must not reorder "*.telegram.org"
// or "region=north" with the text around it).
export function targetsInline(d, max = 4) {
  if (!d || d.targets === undefined) {
    const lifts = list(d?.lifts);
    if (!lifts.length) return h('span', null, t('common.none'));
  }
  const groups = targetGroups(d);
  if (groups.length === 0) return h('span', null, t('common.none'));
  let left = max;
  let hidden = 0;
  const parts = [];
  for (const [label, items] of groups) {
    const shown = items.slice(0, Math.max(left, 0));
    hidden += items.length - shown.length;
    left -= shown.length;
    if (shown.length === 0) continue;
    parts.push(h('span', {class: 'target-group'},
      h('span', {class: 'target-kind'}, `${label}: `),
      shown.map((item, i) => [i ? t('common.list_sep') : '', h('bdi', {class: 'mono'}, item)])));
  }
  return h('span', {class: 'targets-inline'}, parts.map((p, i) => [i ? '; ' : '', p]),
    hidden > 0 ? [' ', h('span', {class: 'more'}, t('targets.more', {n: hidden}))] : null);
}

export function scopeInline(scope) {
  if (scope === undefined || scope === null) return h('span', null, t('common.none'));
  if (scope === 'all' || scope?.all === true) return h('span', null, t('scope.all'));
  if (typeof scope === 'string') return h('bdi', null, scope);
  const parts = [];
  const sites = list(scope.sites);
  if (sites.length) {
    parts.push(h('span', null, h('span', {class: 'target-kind'}, `${t('scope.sites')}: `),
      sites.map((s, i) => [i ? t('common.list_sep') : '', h('bdi', {class: 'mono'}, s)])));
  }
  if (scope.labels && typeof scope.labels === 'object') {
    const labels = Object.entries(scope.labels);
    if (labels.length) {
      parts.push(h('span', null, h('span', {class: 'target-kind'}, `${t('scope.labels')}: `),
        labels.map(([k, v], i) => [i ? t('common.list_sep') : '', h('bdi', {class: 'mono'}, `${k}=${v}`)])));
    }
  }
  return parts.length ? h('span', null, parts.map((p, i) => [i ? '; ' : '', p])) : h('span', null, t('common.none'));
}

// scope as the server sends it: "all", {"all": true}, {"sites": [...]}, {"labels": {...}}.
export function scopeText(scope) {
  if (scope === undefined || scope === null) return t('common.none');
  if (scope === 'all' || scope?.all === true) return t('scope.all');
  if (typeof scope === 'string') return scope;
  const parts = [];
  const sites = list(scope.sites);
  if (sites.length) parts.push(`${t('scope.sites')}: ${sites.join(', ')}`);
  if (scope.labels && typeof scope.labels === 'object') {
    const labels = Object.entries(scope.labels).map(([k, v]) => `${k}=${v}`);
    if (labels.length) parts.push(`${t('scope.labels')}: ${labels.join(', ')}`);
  }
  return parts.length ? parts.join('; ') : t('common.none');
}

// not_before .. not_after (RFC 3339); an open end reads "until lifted".
export function windowEl(d) {
  const from = fromRfc3339(d.not_before);
  const until = fromRfc3339(d.not_after);
  if (!from && !until) return h('span', null, t('common.none'));
  return h('span', {class: 'window'},
    timeEl(from), ` ${t('window.to')} `, until ? timeEl(until) : h('span', null, t('window.open_ended')));
}

// A refused call as one line: "Refused (403 forbidden): role viewer may not ...".
export function errorText(e) {
  if (!e || typeof e !== 'object') return String(e);
  if (!('status' in e)) return String(e.message ?? e);  // not an answer of the server
  if (e.status === 0) return t('error.network', {message: e.message || ''});
  if (e.status === 401) return t('error.unauthorized');
  if (e.status === 429) return t('error.rate_limited');
  const where = e.body && e.body.line > 0
    ? ` ${t('error.at_line', {line: e.body.line, column: e.body.column ?? 0})}` : '';
  return t('error.refused', {status: e.status ?? '?', code: e.code ?? '', message: e.message ?? ''}) + where;
}

export function key(issuer, id) {
  return `${issuer}/${id}`;
}

export function directiveHref(issuer, id) {
  return `#/directive/${encodeURIComponent(issuer)}/${encodeURIComponent(id)}`;
}

// A monospace, left-to-right value (ids, hashes, revisions).
export function code(text, props) {
  return ltr(text, {...props, class: ['mono', props?.class]});
}
