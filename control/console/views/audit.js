// #/audit: the audit log a page at a time (after/limit), and the chain's verification.

import {get, paths} from '../api.js';
import {bdi, h, replace, table} from '../dom.js';
import {code, directiveHref, errorText, fromUnixMs, shortHash, timeEl} from '../format.js';
import {t} from '../i18n.js';

const PAGE = 50;
const DETAIL_MAX = 300;
const DIRECTIVE_KEY = /^([a-z0-9._-]{1,64})\/([A-Za-z0-9._-]{1,64})$/;

// The event in the reader's words; the dotted name is shown beside it.
export function eventLabel(event) {
  const labels = {
    'directive.received': t('event.directive.received'),
    'directive.approved': t('event.directive.approved'),
    'directive.override_approved': t('event.directive.override_approved'),
    'directive.rejected': t('event.directive.rejected'),
    'directive.revoked': t('event.directive.revoked'),
    'directive.refused': t('event.directive.refused'),
    'directive.awaiting_approval': t('event.directive.awaiting_approval'),
    'directive.scheduled': t('event.directive.scheduled'),
    'directive.active': t('event.directive.active'),
    'directive.ended': t('event.directive.ended'),
    'rollout.started': t('event.rollout.started'),
    'rollout.promoted': t('event.rollout.promoted'),
    'rollout.completed': t('event.rollout.completed'),
    'rollout.halted': t('event.rollout.halted'),
    'rollout.paused': t('event.rollout.paused'),
    'rollout.resumed': t('event.rollout.resumed'),
    'emergency_stop.set': t('event.emergency_stop.set'),
    'emergency_stop.cleared': t('event.emergency_stop.cleared'),
    'node.enrolled': t('event.node.enrolled'),
    'node.relabelled': t('event.node.relabelled'),
    'node.revoked': t('event.node.revoked'),
    'request.refused': t('event.request.refused'),
    'request.refused.repeated': t('event.request.refused.repeated'),
    'controller.initialised': t('event.controller.initialised'),
    'controller.leader': t('event.controller.leader'),
    'revision.created': t('event.revision.created'),
    'revision.compile_failed': t('event.revision.compile_failed'),
    'node.registered': t('event.node.registered'),
    'node.nack': t('event.node.nack'),
    'node.audit_checkpoint_conflict': t('event.node.audit_checkpoint_conflict'),
    'session.opened': t('event.session.opened'),
    'session.closed': t('event.session.closed'),
  };
  return labels[event] ?? String(event ?? '');
}

// A record's detail on one line: "reason=..., from=scheduled" (at most DETAIL_MAX characters).
export function detailText(record) {
  const detail = record?.detail;
  let text;
  if (detail && typeof detail === 'object' && !Array.isArray(detail)) {
    text = Object.entries(detail)
      .filter(([, v]) => v !== '' && v !== null && v !== undefined)
      .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
      .join(', ');
  } else if (typeof detail === 'string') {
    text = detail;
  } else if (typeof record?.detail_text === 'string') {
    text = record.detail_text;
  } else {
    text = '';
  }
  return text.length > DETAIL_MAX ? `${text.slice(0, DETAIL_MAX - 1)}…` : text;
}

function subjectEl(subject) {
  if (typeof subject !== 'string' || subject === '') return t('common.none');
  const m = subject.match(DIRECTIVE_KEY);
  if (m) return h('a', {href: directiveHref(m[1], m[2])}, code(subject));
  return bdi(subject);
}

function row(r) {
  const full = typeof r.detail_text === 'string' ? r.detail_text : '';
  return h('tr', {testid: 'audit-row', data: {seq: r.seq}},
    h('td', {class: 'num'}, code(String(r.seq))),
    h('td', {class: 'nowrap'}, timeEl(fromUnixMs(r.at))),
    h('td', null, bdi(r.actor ?? '')),
    h('td', null, h('span', {class: 'event'}, eventLabel(r.event)), ' ', code(r.event ?? '', {class: 'event-code'})),
    h('td', null, subjectEl(r.subject)),
    // key=value text (JSON inside): left to right even in an Arabic page.
    h('td', {class: 'detail', title: full || false}, h('bdi', {dir: 'ltr'}, detailText(r))),
    h('td', null, code(shortHash(r.hash), {title: r.hash ?? false})));
}

export function render(root, ctx) {
  // The page shown and the verification, across a redraw (a change of language). The page opens
  // on the newest records (after = null); `after` is the seq the shown page starts after.
  const keep = ctx.keep;
  let after = keep.after ?? null;
  let shown = [];  // the records on the page
  const status = h('p', {class: 'status', role: 'status'});
  const tableBox = h('div');
  const prev = h('button', {type: 'button', testid: 'audit-prev', disabled: true,
    on: {click: () => load(Math.max(0, after - PAGE))}}, t('audit.prev'));
  const next = h('button', {type: 'button', testid: 'audit-next', disabled: true,
    on: {click: async () => {
      // The next PAGE records; near the head, the newest page (so "older" then "newer" comes
      // back to the same records).
      await load(after + PAGE);
      if (shown.length < PAGE) await load(null);
    }}}, t('audit.next'));
  const reload = h('button', {type: 'button', on: {click: () => load(after)}}, t('audit.reload'));
  const verify = h('button', {type: 'button', testid: 'audit-verify', class: 'primary', on: {click: runVerify}},
    t('audit.verify'));
  const verifyBox = h('div', {class: 'verify-box'});

  let loading = 0;
  // from: the seq to start after, or null for the newest page.
  async function load(from) {
    const mine = ++loading;
    prev.disabled = true;
    next.disabled = true;
    replace(status, t('common.loading'));
    let records;
    try {
      const body = await get(from === null ? paths.auditLast(PAGE) : paths.audit(from, PAGE));
      records = Array.isArray(body?.records) ? body.records : [];
    } catch (e) {
      if (mine !== loading) return;
      replace(status, errorText(e));
      status.classList.add('error');
      prev.disabled = !(after > 0);
      return;
    }
    if (mine !== loading) return;  // a later click won
    const newest = from === null;
    after = newest ? (records.length ? records[0].seq - 1 : 0) : from;
    keep.after = newest ? null : from;
    shown = records;
    status.classList.remove('error');
    const rows = records.map(row);
    if (rows.length === 0) rows.push(h('tr', {class: 'empty'}, h('td', {colspan: 7}, t('audit.none'))));
    replace(tableBox, table({testid: 'audit-table', class: 'data'}, [
      t('audit.col.seq'), t('audit.col.at'), t('audit.col.actor'), t('audit.col.event'),
      t('audit.col.subject'), t('audit.col.detail'), t('audit.col.hash'),
    ], rows, t('audit.title')));
    replace(status, records.length
      ? t('audit.range', {from: records[0].seq, to: records[records.length - 1].seq})
      : t('audit.none'));
    prev.disabled = !(after > 0);
    // The newest page, or a short one, is the end of the log (for now).
    next.disabled = newest || records.length < PAGE;
  }

  // {answer} or {error}: drawn again after a change of language.
  function drawVerify(v) {
    if (v.error) {
      replace(verifyBox, h('p', {testid: 'audit-verify-result', class: ['result', 'error'], role: 'status',
        data: {ok: 'false'}}, errorText(v.error)));
      return;
    }
    const r = v.answer ?? {};
    const ok = r.ok === true;
    replace(verifyBox,
      h('p', {testid: 'audit-verify-result', class: ['result', ok ? 'ok' : 'error'], role: 'status',
        data: {ok: ok ? 'true' : 'false'}},
      ok ? t('audit.verify_ok', {records: r.records ?? 0})
        : t('audit.verify_failed', {seq: r.bad_seq ?? '?', problem: r.problem ?? ''})),
      h('dl', {class: 'details'},
        h('div', {class: 'dl-row'}, h('dt', null, t('audit.head_seq')), h('dd', null, code(String(r.head_seq ?? '')))),
        h('div', {class: 'dl-row'}, h('dt', null, t('audit.head_hash')),
          h('dd', null, code(String(r.head_hash ?? ''), {testid: 'audit-head-hash', class: 'hash'})))));
  }

  async function runVerify() {
    verify.disabled = true;
    replace(verifyBox, h('p', {class: 'status'}, t('audit.verifying')));
    try {
      keep.verify = {answer: await get(paths.auditVerify)};
    } catch (e) {
      keep.verify = {error: e};
    } finally {
      verify.disabled = false;
    }
    drawVerify(keep.verify);
  }

  root.append(
    h('h1', null, t('audit.title')),
    h('section', {class: 'card', 'aria-labelledby': 'verify-title'},
      h('h2', {id: 'verify-title'}, t('audit.verify_title')),
      h('p', {class: 'hint'}, t('audit.verify_hint')),
      h('div', {class: 'buttons'}, verify),
      verifyBox),
    h('div', {class: 'toolbar pager', role: 'group', 'aria-label': t('audit.paging')}, prev, next, reload, status),
    tableBox);
  if (keep.verify) drawVerify(keep.verify);
  load(after);
  return null;
}
