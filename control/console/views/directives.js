// #/directives: every directive, newest first, filtered by state and free text.

import {get, paths, poll} from '../api.js';
import {field, h, replace, select, table} from '../dom.js';
import {
  actionText, code, directiveHref, errorText, formatClock, scopeInline, scopeText,
  stateBadge, stateLabel, targetsInline, targetsSummary, windowEl,
} from '../format.js';
import {t} from '../i18n.js';

const STATES = ['awaiting_approval', 'scheduled', 'active', 'ended'];
const REFRESH_MS = 5000;

// The text a search matches against: what the row shows, in the data's own words.
function haystack(d) {
  const targets = d.targets && typeof d.targets === 'object'
    ? Object.values(d.targets).flat().join(' ') : '';
  return [d.issuer, d.id, d.legal_basis, d.action, d.response, d.state, d.end_reason,
    d.submitted_by, targets, stateLabel(d.state), targetsSummary(d), scopeText(d.scope)]
    .filter((v) => typeof v === 'string').join('\n').toLowerCase();
}

function row(d) {
  const href = directiveHref(d.issuer, d.id);
  return h('tr', {testid: 'directive-row', data: {key: `${d.issuer}/${d.id}`, state: d.state}},
    h('td', null, stateBadge(d)),
    h('td', {class: 'key'},
      h('a', {href}, code(d.id, {class: 'nowrap'})),
      h('div', {class: 'issuer'}, code(d.issuer))),
    h('td', {class: 'legal'}, h('bdi', {dir: 'auto'}, d.legal_basis ?? t('common.none'))),
    h('td', null, actionText(d)),
    h('td', null, targetsInline(d)),
    h('td', null, scopeInline(d.scope)),
    h('td', {class: 'window-cell'}, windowEl(d)));
}

export function render(root, ctx) {
  const keep = ctx.keep;  // the filter and search, across a redraw (a change of language)
  let directives = null;
  let lastBody = '';

  const filter = select({id: 'directives-filter', testid: 'directives-filter', on: {change: draw}},
    [['', t('directives.all_states')], ...STATES.map((s) => [s, stateLabel(s)])], keep.state ?? '');
  const search = h('input', {
    id: 'directives-search', type: 'search', testid: 'directives-search', autocomplete: 'off',
    value: keep.search ?? '', on: {input: draw},
  });
  const status = h('p', {class: 'status', role: 'status'});
  const count = h('p', {class: 'count'});
  const tableBox = h('div');

  function draw() {
    keep.state = filter.value;
    keep.search = search.value;
    if (directives === null) return;
    const state = filter.value;
    const words = search.value.toLowerCase().split(/\s+/).filter(Boolean);
    const shown = directives
      .filter((d) => state === '' || d.state === state)
      .filter((d) => {
        const text = haystack(d);
        return words.every((w) => text.includes(w));
      });
    const rows = shown.map(row);
    if (rows.length === 0) {
      rows.push(h('tr', {class: 'empty'}, h('td', {colspan: 7},
        directives.length === 0 ? t('directives.none') : t('directives.no_match'))));
    }
    replace(count, t('directives.count', {shown: shown.length, total: directives.length}));
    replace(tableBox, table({testid: 'directives-table', class: 'data'}, [
      t('directives.col.state'), t('directives.col.directive'),
      t('directives.col.legal_basis'), t('directives.col.action'), t('directives.col.targets'),
      t('directives.col.scope'), t('directives.col.window'),
    ], rows, t('directives.title')));
  }

  async function refresh() {
    try {
      const body = await get(paths.directives);
      const list = Array.isArray(body?.directives) ? body.directives : [];
      const text = JSON.stringify(list);
      replace(status, t('common.updated', {time: formatClock(new Date())}));
      status.classList.remove('error');
      // Redrawn only when something changed: rows stay put under the pointer and the keyboard.
      if (text === lastBody) return;
      lastBody = text;
      list.sort((a, b) => (b.received_at ?? 0) - (a.received_at ?? 0) ||
        String(a.id).localeCompare(String(b.id)));
      directives = list;
      draw();
    } catch (e) {
      replace(status, t('common.update_failed', {error: errorText(e)}));
      status.classList.add('error');
    }
  }

  root.append(
    h('h1', null, t('directives.title')),
    h('div', {class: 'toolbar'},
      field(t('directives.filter'), filter),
      field(t('directives.search'), search, t('directives.search_hint')),
      status),
    count,
    tableBox);
  replace(tableBox, h('p', null, t('common.loading')));
  const poller = poll(refresh, REFRESH_MS);
  return () => poller.stop();
}
