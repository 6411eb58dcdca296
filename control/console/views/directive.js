// #/directive/ISSUER/ID: one directive, polled every 2 s: what it says and who signed it, its
// approvals, the fleet's enforcement, its own audit timeline, the impact report while it awaits
// approval, and the actions the signed-in role may take in its state.

import {get, paths, poll, post} from '../api.js';
import {stackedBars} from '../chart.js';
import {askReason, dialogOpen} from '../dialog.js';
import {bdi, field, h, replace, select, table} from '../dom.js';
import {
  actionText, code, errorText, formatClock, fromUnixMs, fromUnixS, percent, scopeInline,
  stateBadge, stateLabel, targetGroups, timeEl, windowEl,
} from '../format.js';
import {isRtl, t} from '../i18n.js';
import {eventLabel, detailText} from './audit.js';

const POLL_MS = 2000;
const SLOW_EVERY = 5;          // timeline and impact: every 5th poll (10 s) unless something moved
const TIMELINE_LIMIT = 500;
const IMPACT_TOP = 10;
const IMPACT_WINDOWS = [900, 3600, 6 * 3600, 24 * 3600];

function dlRow(label, value, props) {
  return h('div', {class: 'dl-row'}, h('dt', null, label), h('dd', props, value));
}

function targetsEl(d) {
  const groups = targetGroups(d);
  if (groups.length === 0) return h('span', null, t('common.none'));
  return h('ul', {class: 'targets'},
    groups.map(([label, items]) => h('li', null,
      h('span', {class: 'target-kind'}, `${label}: `),
      items.map((item, i) => [i ? t('common.list_sep') : '', h('bdi', {class: 'mono'}, item)]))));
}

// The signature's untrusted comment names the key too; the server's key id is what counts.
function signerEl(d) {
  if (typeof d.signed_by_key === 'string' && d.signed_by_key) return code(d.signed_by_key);
  return h('span', null, t('common.none'));
}

export function render(root, ctx) {
  const [issuer, id] = ctx.params;
  const subject = `${issuer}/${id}`;
  const session = ctx.session;

  let view = null;          // the latest GET of the directive
  let detailSig = '';
  let actionsSig = '';
  let timelineSig = '';
  let impactSig = '';
  let overlapsSig = '';
  // Across a redraw (a change of language): the last action's result and the impact window.
  const keep = ctx.keep;
  let impactWindow = keep.impactWindow ?? 3600;
  let ticks = 0;
  let documentShown = null;

  const page = h('section', {testid: 'directive', class: 'directive', data: {key: subject}});
  const badge = h('span', {class: 'heading-badge'});
  const status = h('p', {class: 'status', role: 'status'});
  const actions = h('div', {class: 'actions', role: 'group', 'aria-label': t('directive.actions')});
  const resultBox = h('div', {class: 'result-box'});
  const details = h('dl', {class: 'details'});
  const enfValues = {};
  const enfLabels = {};
  const progress = h('progress', {max: 1, value: 0, 'aria-labelledby': 'enf-progress-label'});
  const progressLabel = h('span', {id: 'enf-progress-label'});
  const enforcement = h('dl', {class: 'stats', testid: 'enforcement'},
    ['in_scope', 'enforcing', 'pending', 'failing', 'stale'].map((k) => {
      enfValues[k] = h('dd', {testid: `enf-${k}`, class: ['stat-value', `enf-${k}`]}, t('common.none'));
      enfLabels[k] = h('dt', null);
      return h('div', {class: ['stat', `stat-${k}`]}, enfLabels[k], enfValues[k]);
    }));
  const impactBox = h('section', {class: 'card impact', 'aria-labelledby': 'impact-title', hidden: true});
  const impactBody = h('div');
  const timelineBody = h('div');
  const documentPre = h('pre', {testid: 'directive-document', class: 'document', dir: 'ltr', tabindex: 0,
    'aria-labelledby': 'document-title'});
  const signaturePre = h('pre', {class: 'signature', dir: 'ltr'});

  const windowSelect = select({id: 'impact-window', on: {change: () => {
    impactWindow = Number(windowSelect.value);
    keep.impactWindow = impactWindow;
    impactSig = '';
    refreshImpact();
  }}}, IMPACT_WINDOWS.map((s) => [String(s), windowLabel(s)]), String(impactWindow));

  function windowLabel(s) {
    const labels = {
      900: t('impact.window_15m'),
      3600: t('impact.window_1h'),
      21600: t('impact.window_6h'),
      86400: t('impact.window_24h'),
    };
    return labels[s] ?? String(s);
  }

  // `text` is a function: the result is drawn again in the new language after a switch.
  function showResult(ok, text) {
    keep.result = {ok, text};
    replace(resultBox, h('p', {testid: 'action-result', class: ['result', ok ? 'ok' : 'error'],
      data: {ok: ok ? 'true' : 'false'}, role: 'status'}, text()));
  }

  const ACTIONS = {
    approve: {
      label: () => t('directive.approve'), optional: true, danger: false,
      title: () => t('directive.approve_title', {key: subject}),
      description: () => t('directive.approve_desc'),
      done: () => t('directive.approved'),
    },
    reject: {
      label: () => t('directive.reject'), danger: true,
      title: () => t('directive.reject_title', {key: subject}),
      description: () => t('directive.reject_desc'),
      done: () => t('directive.rejected'),
    },
    override: {
      label: () => t('directive.override'), danger: true,
      title: () => t('directive.override_title', {key: subject}),
      description: () => t('directive.override_desc'),
      done: () => t('directive.overridden'),
    },
    revoke: {
      label: () => t('directive.revoke'), danger: true,
      title: () => t('directive.revoke_title', {key: subject}),
      description: () => t('directive.revoke_desc'),
      done: () => t('directive.revoked'),
    },
  };

  async function runAction(name) {
    const spec = ACTIONS[name];
    const reason = await askReason({
      title: spec.title(), description: spec.description(), confirmLabel: spec.label(),
      optional: !!spec.optional, danger: spec.danger,
    });
    if (reason === null) return;
    try {
      const after = await post(paths.directiveAction(issuer, id, name), {reason});
      showResult(true, () => t('directive.result_ok', {done: spec.done(), state: stateLabel(after?.state)}));
    } catch (e) {
      showResult(false, () => errorText(e));
    }
    poller.refresh();
  }

  function actionButton(name) {
    const spec = ACTIONS[name];
    return h('button', {type: 'button', testid: `action-${name}`, class: spec.danger ? 'danger' : 'primary',
      on: {click: () => runAction(name)}}, spec.label());
  }

  // Which actions this user may take on this directive now. The server decides in the end; the
  // page never offers what it would refuse (four eyes: no approval by the submitter).
  function allowed(d) {
    const me = session.name;
    const out = [];
    if (session.role === 'engineer' && d.state === 'awaiting_approval') {
      const approvedByMe = (d.approvals ?? []).some((a) => a.actor === me);
      if (me !== d.submitted_by && !approvedByMe) out.push('approve');
      out.push('reject');
    }
    if (session.role === 'ministry' && (d.state === 'scheduled' || d.state === 'active')) out.push('revoke');
    return out;
  }

  function mayOverride(d) {
    const me = session.name;
    return session.role === 'engineer' && d.state === 'awaiting_approval' &&
      (d.protected_overlaps ?? []).length > 0 && me !== d.submitted_by &&
      !(d.overrides ?? []).some((o) => o.actor === me);
  }

  function drawActions(d) {
    const names = allowed(d);
    const sig = JSON.stringify([names, d.state]);
    // Not while the reason dialog is open: its confirm must still find the page it came from.
    if (sig === actionsSig || dialogOpen()) return;
    actionsSig = sig;
    replace(actions, names.map(actionButton));
    actions.hidden = names.length === 0;
  }

  function drawDetails(d) {
    const approvals = d.approvals ?? [];
    const required = d.approvals_required ?? '?';
    const overrides = d.overrides ?? [];
    replace(details,
      dlRow(t('directive.issuer'), code(d.issuer)),
      dlRow(t('directive.id'), code(d.id)),
      dlRow(t('directive.action'), actionText(d)),
      // Its own direction (a Latin order in an Arabic page), aligned with the other values.
      dlRow(t('directive.legal_basis'), h('bdi', {dir: 'auto'}, d.legal_basis ?? t('common.none')),
        {testid: 'directive-legal-basis', class: 'legal'}),
      dlRow(t('directive.targets'), targetsEl(d), {testid: 'directive-targets'}),
      dlRow(t('directive.scope'), scopeInline(d.scope)),
      dlRow(t('directive.window'), windowEl(d)),
      dlRow(t('directive.submitted_by'), bdi(d.submitted_by ?? t('common.none'))),
      dlRow(t('directive.received'), timeEl(fromUnixS(d.received_at))),
      dlRow(t('directive.updated'), timeEl(fromUnixS(d.updated_at))),
      d.state === 'ended' ? dlRow(t('directive.ended'), timeEl(fromUnixS(d.ended_at))) : null,
      dlRow(t('directive.signer'), signerEl(d), {testid: 'directive-signer'}),
      dlRow(t('directive.approvals'), [
        h('span', {testid: 'directive-approvals', class: 'approvals'},
          t('directive.approvals_of', {n: approvals.length, m: required})),
        approvals.length ? h('ul', {class: 'people'}, approvals.map((a) =>
          h('li', null, bdi(a.actor), ' · ', timeEl(fromUnixS(a.at))))) : null,
      ]),
      overrides.length ? dlRow(t('directive.overrides'), h('ul', {class: 'people'}, overrides.map((o) =>
        h('li', null, bdi(o.actor), ' · ', timeEl(fromUnixS(o.at)), o.reason ? [' · ', bdi(o.reason)] : null)))) : null);
  }

  function drawEnforcement(d) {
    const e = d.enforcement ?? {};
    const ended = d.state === 'ended';
    const labels = {
      in_scope: t('enf.in_scope'),
      enforcing: ended ? t('enf.removed') : t('enf.enforcing'),
      pending: t('enf.pending'),
      failing: t('enf.failing'),
      stale: t('enf.stale'),
    };
    for (const k of Object.keys(enfValues)) {
      enfLabels[k].textContent = labels[k];
      const v = e[k];
      enfValues[k].textContent = typeof v === 'number' ? String(v) : t('common.none');
      enfValues[k].classList.toggle('nonzero', typeof v === 'number' && v > 0);
    }
    const inScope = Number(e.in_scope) || 0;
    const enforcing = Number(e.enforcing) || 0;
    progress.max = Math.max(inScope, 1);
    progress.value = Math.min(enforcing, progress.max);
    const counts = {n: enforcing, m: inScope};
    progressLabel.textContent = ended ? t('enf.progress_ended', counts) : t('enf.progress', counts);
  }

  async function refreshTimeline() {
    let records;
    try {
      const body = await get(paths.auditSubject(subject, TIMELINE_LIMIT));
      records = Array.isArray(body?.records) ? body.records : [];
    } catch (e) {
      replace(timelineBody, h('p', {class: 'error'}, errorText(e)));
      timelineSig = '';
      return;
    }
    const sig = JSON.stringify(records.map((r) => r.seq));
    if (sig === timelineSig) return;
    timelineSig = sig;
    const items = records.map((r) => h('li', {testid: 'timeline-item', class: 'timeline-item', data: {seq: r.seq}},
      h('div', {class: 'timeline-head'},
        timeEl(fromUnixMs(r.at)),
        h('strong', {class: 'event'}, eventLabel(r.event)),
        code(r.event, {class: 'event-code'}),
        h('span', {class: 'actor'}, bdi(r.actor))),
      detailText(r) ? h('p', {class: 'timeline-detail'}, h('bdi', {dir: 'ltr'}, detailText(r))) : null));
    replace(timelineBody, items.length
      ? h('ol', {testid: 'timeline', class: 'timeline'}, items)
      : [h('ol', {testid: 'timeline', class: 'timeline'}), h('p', null, t('timeline.none'))]);
  }

  function overlapsEl(d) {
    const overlaps = d.protected_overlaps ?? [];
    const overrides = d.overrides ?? [];
    if (overlaps.length === 0) {
      return h('div', {testid: 'impact-overlaps', class: 'overlaps none', data: {count: 0}},
        h('p', null, t('impact.no_overlaps')));
    }
    const needed = d.overrides_required ?? '?';
    return h('div', {testid: 'impact-overlaps', class: 'overlaps', data: {count: overlaps.length}, role: 'group',
      'aria-labelledby': 'overlaps-title'},
    h('h3', {id: 'overlaps-title'}, t('impact.overlaps_title', {n: overlaps.length})),
    h('ul', null, overlaps.map((m) => h('li', null, bdi(String(m), {dir: 'ltr', lang: 'en'})))),  // the server's English sentence
    h('p', null, t('impact.overrides_so_far', {n: overrides.length, m: needed})),
    mayOverride(d) ? actionButton('override') : null);
  }

  // Whether a report's prefix is one of the targets a protected-range message names.
  function overlapping(prefix, d) {
    return (d.protected_overlaps ?? []).some((m) => String(m).includes(`target ${prefix} `));
  }

  function impactEl(report, d) {
    const prefixes = Array.isArray(report?.prefixes) ? report.prefixes : [];
    const domains = Array.isArray(report?.domains) ? report.domains : [];
    const warnings = Array.isArray(report?.warnings) ? report.warnings : [];
    const share = (p, key) => (p.flows > 0 ? Number(p[key]) || 0 : 0);
    const otherShare = (p) => (p.flows > 0 ? (Number(p.other_flows) || 0) / p.flows : 0);
    const chart = stackedBars({
      testid: 'impact-chart',
      title: t('impact.chart_title'),
      description: t('impact.chart_desc'),
      rtl: isRtl(),
      emptyText: t('impact.no_reports'),
      legend: [
        {cls: 'own', label: t('impact.own')},
        {cls: 'unnamed', label: t('impact.unnamed')},
        {cls: 'other', label: t('impact.other')},
      ],
      rows: prefixes.map((p) => ({
        label: p.prefix === '*' ? t('impact.all_targets') : String(p.prefix),
        segments: [
          {value: share(p, 'own_share'), cls: 'own', title: `${t('impact.own')} ${percent(share(p, 'own_share'))}`},
          {value: share(p, 'unnamed_share'), cls: 'unnamed', title: `${t('impact.unnamed')} ${percent(share(p, 'unnamed_share'))}`},
          {value: otherShare(p), cls: 'other', title: `${t('impact.other')} ${percent(otherShare(p))}`},
        ],
      })),
    });
    const rows = prefixes.map((p) => {
      const hot = overlapping(p.prefix, d);
      return h('tr', {testid: 'impact-row', class: hot ? 'overlap' : false, data: {prefix: p.prefix}},
        h('td', null, code(p.prefix === '*' ? t('impact.all_targets') : p.prefix),
          hot ? h('span', {class: 'badge warn'}, t('impact.protected')) : null),
        h('td', {class: 'num'}, String(p.flows ?? 0)),
        h('td', {class: 'num'}, percent(share(p, 'own_share'))),
        h('td', {class: 'num'}, percent(share(p, 'unnamed_share'))),
        h('td', {class: 'num'}, String(p.other_flows ?? 0)),
        h('td', null, (p.top_other ?? []).length
          ? h('ul', {class: 'names'}, p.top_other.map((n) =>
            h('li', null, h('bdi', {class: 'mono'}, String(n.name)), ` ${percent(n.share)} (${n.flows})`)))
          : t('common.none')));
    });
    if (rows.length === 0) {
      rows.push(h('tr', {class: 'empty'}, h('td', {colspan: 6}, t('impact.no_reports'))));
    }
    const domainRows = domains.map((dm) => h('tr', null,
      h('td', null, h('bdi', {class: 'mono'}, String(dm.domain))),
      h('td', {class: 'num'}, String(dm.flows ?? 0)),
      h('td', null, (dm.names ?? []).map((n, i) => [i ? t('common.list_sep') : '', h('bdi', {class: 'mono'}, String(n.name)), ` (${n.flows})`]))));
    return [
      h('p', {class: 'impact-summary'}, t('impact.summary', {
        reports: report?.reports ?? 0, nodes: report?.nodes ?? 0,
      }), ' ', report?.newest_window_end ? [t('impact.newest'), ' ', timeEl(fromUnixS(report.newest_window_end))] : null),
      warnings.length ? h('ul', {class: 'warnings'}, warnings.map((w) => h('li', null, bdi(String(w))))) : null,
      chart,
      table({testid: 'impact-table', class: 'data'}, [
        t('impact.col.prefix'), t('impact.col.flows'), t('impact.col.own'), t('impact.col.unnamed'),
        t('impact.col.other_flows'), t('impact.col.top_other'),
      ], rows, t('impact.table_caption')),
      domainRows.length ? table({class: 'data'}, [t('impact.col.domain'), t('impact.col.flows'), t('impact.col.names')],
        domainRows, t('impact.domains_caption')) : null,
    ];
  }

  let impactOverlapsBox = h('div');
  let impactReportBox = h('div');

  async function refreshImpact() {
    if (!view || view.state !== 'awaiting_approval') return;
    let report;
    try {
      report = await get(paths.impact(issuer, id, impactWindow, IMPACT_TOP));
    } catch (e) {
      impactSig = '';
      replace(impactReportBox, h('p', {class: 'error'}, errorText(e)));
      return;
    }
    const sig = JSON.stringify([report, view.protected_overlaps, isRtl()]);
    if (sig === impactSig) return;
    impactSig = sig;
    replace(impactReportBox, impactEl(report, view));
  }

  function drawImpactFrame(d) {
    const awaiting = d.state === 'awaiting_approval';
    impactBox.hidden = !awaiting;
    if (!awaiting) {
      impactSig = '';
      return;
    }
    const sig = JSON.stringify([d.protected_overlaps, d.overrides, d.overrides_required, d.submitted_by]);
    // Not while the reason dialog is open (its override button would go from under it).
    if (sig === overlapsSig || dialogOpen()) return;
    overlapsSig = sig;
    const fresh = overlapsEl(d);
    impactOverlapsBox.replaceWith(fresh);
    impactOverlapsBox = fresh;
  }

  async function refresh() {
    let d;
    try {
      d = await get(paths.directive(issuer, id));
    } catch (e) {
      if (e.status === 404) {
        replace(page, h('h1', null, t('directive.not_found', {key: subject})),
          h('p', null, h('a', {href: '#/directives'}, t('nav.directives'))));
        poller.stop();
        return;
      }
      replace(status, t('common.update_failed', {error: errorText(e)}));
      status.classList.add('error');
      return;
    }
    const first = view === null;
    view = d;
    if (first) build();
    page.dataset.state = d.state;
    replace(status, t('common.updated', {time: formatClock(new Date())}));
    status.classList.remove('error');
    replace(badge, stateBadge(d));
    const sig = JSON.stringify({...d, enforcement: null, document: null, signature: null});
    const moved = sig !== detailSig;
    if (moved) {
      detailSig = sig;
      drawDetails(d);
    }
    drawEnforcement(d);
    drawActions(d);
    drawImpactFrame(d);
    if (documentShown !== d.document) {
      documentShown = d.document;
      documentPre.textContent = typeof d.document === 'string' ? d.document : '';
      signaturePre.textContent = typeof d.signature === 'string' ? d.signature : '';
    }
    const slow = ticks++ % SLOW_EVERY === 0;
    await Promise.all([
      moved || slow ? refreshTimeline() : null,
      (moved || slow) && d.state === 'awaiting_approval' ? refreshImpact() : null,
    ]);
  }

  function build() {
    replace(page,
      h('div', {class: 'page-head'},
        h('h1', null, t('directive.heading'), ' ', code(subject)),
        badge),
      status,
      actions,
      resultBox,
      h('div', {class: 'columns'},
        h('section', {class: 'card', 'aria-labelledby': 'details-title'},
          h('h2', {id: 'details-title'}, t('directive.details')),
          details),
        h('section', {class: 'card', 'aria-labelledby': 'enf-title'},
          h('h2', {id: 'enf-title'}, t('enf.title')),
          h('p', {class: 'hint'}, t('enf.hint')),
          enforcement,
          h('div', {class: 'progress'}, progressLabel, progress))),
      impactBox,
      h('section', {class: 'card', 'aria-labelledby': 'timeline-title'},
        h('h2', {id: 'timeline-title'}, t('timeline.title')),
        timelineBody),
      h('section', {class: 'card', 'aria-labelledby': 'document-title'},
        h('h2', {id: 'document-title'}, t('directive.document')),
        documentPre,
        h('details', null, h('summary', null, t('directive.signature')), signaturePre)));
    replace(impactBox,
      h('h2', {id: 'impact-title'}, t('impact.title')),
      h('p', {class: 'hint'}, t('impact.hint')),
      impactOverlapsBox,
      h('div', {class: 'toolbar'}, field(t('impact.window'), windowSelect)),
      impactReportBox);
    replace(impactReportBox, h('p', null, t('common.loading')));
    replace(timelineBody, h('p', null, t('common.loading')));
    if (keep.result) showResult(keep.result.ok, keep.result.text);
    const heading = page.querySelector('h1');
    if (heading && (document.activeElement === document.body || document.activeElement === root)) {
      heading.tabIndex = -1;
      heading.focus({preventScroll: true});
    }
  }

  replace(page, h('h1', null, t('directive.heading'), ' ', code(subject)), h('p', null, t('common.loading')));
  root.append(page);
  const poller = poll(refresh, POLL_MS);
  return () => poller.stop();
}
