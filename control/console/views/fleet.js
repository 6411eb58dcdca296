// #/fleet: nodes by state and the current rollout, polled every 2 s; the rollout's progress over
// time is sampled by this page from those polls (kept while the console stays open, so leaving
// and coming back leaves a gap rather than starting over). Engineers pause/resume the rollout
// and set/clear the emergency stop.

import {del, get, paths, poll, post} from '../api.js';
import {lineChart} from '../chart.js';
import {askReason, dialogOpen} from '../dialog.js';
import {bdi, field, h, replace, table} from '../dom.js';
import {code, errorText, formatClock, fromUnixMs, fromUnixS, labelOf, nodeStateLabel, shortHash, timeEl} from '../format.js';
import {t} from '../i18n.js';

const POLL_MS = 2000;
const MAX_SAMPLES = 1800;  // an hour at one sample per 2 s
const MAX_ROWS = 2000;     // beyond this, the search narrows the table
const STATES = ['converged', 'pending', 'failing', 'stale', 'revoked', 'not_enrolled'];

const samples = [];  // {t: ms, total, converged, on_target}

function stageLabel(stage) {
  return labelOf('rollout.stage', ['canary', 'fleet', 'done', 'halted'], stage);
}

function nodeRow(n) {
  const labels = n.labels && typeof n.labels === 'object' ? n.labels : {};
  const problem = [n.health && n.health !== 'ok' ? n.health : '', n.error ?? ''].filter(Boolean).join(' · ');
  return h('tr', {testid: 'node-row', data: {node: n.node, state: n.state},
    class: n.state === 'converged' ? false : `node-${n.state}`},
  h('td', null, code(n.node)),
  h('td', null, h('span', {class: ['badge', `node-state-${n.state}`]}, nodeStateLabel(n.state))),
  h('td', {class: 'num'}, code(`${n.applied_revision ?? 0} / ${n.offered_revision ?? 0}`)),
  h('td', null, code(shortHash(n.ruleset_sha256), {title: n.ruleset_sha256 || false})),
  h('td', {class: 'nowrap'}, timeEl(fromUnixS(n.last_seen))),
  h('td', null, bdi(labels.site ?? '')),
  h('td', null, bdi(labels.region ?? '')),
  h('td', null, n.canary ? t('fleet.canary_yes') : t('fleet.canary_no')),
  h('td', {class: 'problem-cell'}, problem ? bdi(problem) : ''));
}

export function render(root, ctx) {
  const engineer = ctx.session.role === 'engineer';
  const keep = ctx.keep;  // the last action's result and the search, across a redraw
  let nodes = [];
  let rollout = null;
  let nodesSig = '';
  let rolloutSig = '';

  const status = h('p', {class: 'status', role: 'status'});
  const countValues = {};
  const counts = h('dl', {class: 'stats fleet-counts'},
    STATES.map((s) => {
      countValues[s] = h('dd', {testid: `fleet-count-${s}`, class: 'stat-value'}, t('common.none'));
      return h('div', {class: ['stat', `stat-${s}`]}, h('dt', null, nodeStateLabel(s)), countValues[s]);
    }));
  const total = h('p', {class: 'count'});
  const rolloutBox = h('dl', {class: 'details rollout'});
  const actions = h('div', {class: 'actions', role: 'group', 'aria-label': t('fleet.actions')});
  const resultBox = h('div', {class: 'result-box'});
  const chartBox = h('div', {class: 'chart-box'});
  const tableBox = h('div');
  const search = h('input', {id: 'fleet-search', type: 'search', autocomplete: 'off', value: keep.search ?? '',
    on: {input: () => {
      keep.search = search.value;
      drawTable(true);
    }}});

  const ACTIONS = {
    pause: {label: () => t('fleet.pause'), danger: false, call: (reason) => post(paths.rolloutAction('pause'), {reason}),
      title: () => t('fleet.pause_title'), description: () => t('fleet.pause_desc'), done: () => t('fleet.paused_done')},
    resume: {label: () => t('fleet.resume'), danger: false, call: (reason) => post(paths.rolloutAction('resume'), {reason}),
      title: () => t('fleet.resume_title'), description: () => t('fleet.resume_desc'), done: () => t('fleet.resumed_done')},
    'emergency-stop': {label: () => t('fleet.emergency_stop'), danger: true,
      call: (reason) => post(paths.emergencyStop, {reason}),
      title: () => t('fleet.emergency_stop_title'), description: () => t('fleet.emergency_stop_desc'),
      done: () => t('fleet.emergency_stop_done')},
    'emergency-clear': {label: () => t('fleet.emergency_clear'), danger: false,
      call: (reason) => del(paths.emergencyStop, {reason}),
      title: () => t('fleet.emergency_clear_title'), description: () => t('fleet.emergency_clear_desc'),
      done: () => t('fleet.emergency_clear_done')},
  };
  const buttons = {};

  function showResult(ok, text) {
    keep.result = {ok, text};
    replace(resultBox, h('p', {testid: 'action-result', class: ['result', ok ? 'ok' : 'error'],
      data: {ok: ok ? 'true' : 'false'}, role: 'status'}, text()));
  }

  async function runAction(name) {
    const spec = ACTIONS[name];
    const reason = await askReason({title: spec.title(), description: spec.description(),
      confirmLabel: spec.label(), danger: spec.danger});
    if (reason === null) return;
    try {
      const r = await spec.call(reason);
      if (r && typeof r === 'object') showRollout(r);
      showResult(true, () => spec.done());
    } catch (e) {
      showResult(false, () => errorText(e));
    }
    poller.refresh();
  }

  if (engineer) {
    for (const name of Object.keys(ACTIONS)) {
      const spec = ACTIONS[name];
      buttons[name] = h('button', {type: 'button', testid: `action-${name}`, class: spec.danger ? 'danger' : false,
        on: {click: () => runAction(name)}}, spec.label());
      actions.append(buttons[name]);
    }
  } else {
    actions.hidden = true;
  }

  // Every engineer control stays in place; the one that makes no sense now is disabled
  // (pause while paused...), so the row does not jump under the pointer.
  function updateButtons(r) {
    if (!engineer || dialogOpen()) return;
    buttons.pause.disabled = r.paused === true;
    buttons.resume.disabled = r.paused !== true && r.stage !== 'halted';
    buttons['emergency-stop'].disabled = r.emergency_stop === true;
    buttons['emergency-clear'].disabled = r.emergency_stop !== true;
  }

  function showRollout(r) {
    rollout = r;
    const sig = JSON.stringify(r);
    updateButtons(r);
    if (sig === rolloutSig) return;
    rolloutSig = sig;
    const row = (label, value, props) => h('div', {class: 'dl-row'}, h('dt', null, label), h('dd', props, value));
    replace(rolloutBox,
      row(t('rollout.stage'), h('span', {class: ['badge', `stage-${r.stage}`], data: {stage: r.stage ?? ''}}, stageLabel(r.stage)),
        {testid: 'rollout-stage'}),
      row(t('rollout.since'), timeEl(fromUnixMs(r.stage_since))),
      row(t('rollout.target'), code(String(r.target ?? 0))),
      row(t('rollout.released'), code(String(r.released ?? 0))),
      row(t('rollout.paused'), r.paused ? t('common.yes') : t('common.no'), {class: r.paused ? 'warn-text' : false}),
      r.reason ? row(t('rollout.reason'), bdi(r.reason)) : null,
      row(t('rollout.emergency'), r.emergency_stop ? t('rollout.emergency_on') : t('common.no'),
        {class: r.emergency_stop ? 'danger-text' : false}),
      r.leader ? row(t('rollout.leader'), code(r.leader)) : null);
  }

  function drawCounts() {
    const byState = Object.fromEntries(STATES.map((s) => [s, 0]));
    for (const n of nodes) byState[n.state] = (byState[n.state] ?? 0) + 1;
    for (const s of STATES) {
      countValues[s].textContent = String(byState[s]);
      countValues[s].classList.toggle('nonzero', byState[s] > 0);
    }
    replace(total, t('fleet.total', {n: nodes.length}));
  }

  function drawTable(force) {
    const words = search.value.toLowerCase().split(/\s+/).filter(Boolean);
    const shown = nodes.filter((n) => {
      if (words.length === 0) return true;
      const labels = n.labels && typeof n.labels === 'object' ? Object.entries(n.labels).map(([k, v]) => `${k}=${v}`) : [];
      const text = [n.node, n.state, ...labels].join(' ').toLowerCase();
      return words.every((w) => text.includes(w));
    });
    const rows = shown.slice(0, MAX_ROWS).map(nodeRow);
    if (rows.length === 0) rows.push(h('tr', {class: 'empty'}, h('td', {colspan: 9}, t('fleet.no_nodes'))));
    replace(tableBox,
      shown.length > MAX_ROWS ? h('p', {class: 'notice'}, t('fleet.truncated', {shown: MAX_ROWS, total: shown.length})) : null,
      table({testid: 'fleet-table', class: 'data'}, [
        t('fleet.col.node'), t('fleet.col.state'), t('fleet.col.revision'), t('fleet.col.ruleset'),
        t('fleet.col.last_seen'), t('fleet.col.site'), t('fleet.col.region'), t('fleet.col.canary'),
        t('fleet.col.problem'),
      ], rows, t('fleet.nodes')));
    if (force) nodesSig = JSON.stringify(nodes);
  }

  function drawChart() {
    replace(chartBox, lineChart({
      testid: 'rollout-chart',
      title: t('fleet.chart_title'),
      description: t('fleet.chart_desc'),
      emptyText: t('fleet.chart_empty'),
      formatX: (ms) => formatClock(new Date(ms)),
      series: [
        {label: t('fleet.series.total'), cls: 'total', points: samples.map((s) => ({t: s.t, v: s.total}))},
        {label: t('fleet.series.converged'), cls: 'converged', points: samples.map((s) => ({t: s.t, v: s.converged}))},
        {label: t('fleet.series.on_target'), cls: 'on-target', points: samples.map((s) => ({t: s.t, v: s.on_target}))},
      ],
    }));
  }

  async function refresh() {
    let nodeBody;
    let rolloutBody;
    try {
      [nodeBody, rolloutBody] = await Promise.all([get(paths.nodes), get(paths.rollout)]);
    } catch (e) {
      replace(status, t('common.update_failed', {error: errorText(e)}));
      status.classList.add('error');
      return;
    }
    status.classList.remove('error');
    replace(status, t('common.updated', {time: formatClock(new Date())}));
    nodes = Array.isArray(nodeBody?.nodes) ? nodeBody.nodes : [];
    nodes.sort((a, b) => String(a.node).localeCompare(String(b.node)));
    showRollout(rolloutBody ?? {});
    drawCounts();
    const sig = JSON.stringify(nodes);
    if (sig !== nodesSig) {
      nodesSig = sig;
      drawTable(false);
    }
    const target = Number(rollout?.target) || 0;
    samples.push({
      t: Date.now(),
      total: nodes.filter((n) => n.state !== 'revoked' && n.state !== 'not_enrolled').length,
      converged: nodes.filter((n) => n.state === 'converged').length,
      on_target: nodes.filter((n) => target > 0 && Number(n.applied_revision) >= target).length,
    });
    if (samples.length > MAX_SAMPLES) samples.splice(0, samples.length - MAX_SAMPLES);
    drawChart();
  }

  root.append(
    h('h1', null, t('fleet.title')),
    status,
    h('div', {class: 'columns'},
      h('section', {class: 'card', 'aria-labelledby': 'counts-title'},
        h('h2', {id: 'counts-title'}, t('fleet.by_state')),
        counts,
        total),
      h('section', {class: 'card', 'aria-labelledby': 'rollout-title'},
        h('h2', {id: 'rollout-title'}, t('rollout.title')),
        rolloutBox,
        actions,
        resultBox)),
    h('section', {class: 'card', 'aria-labelledby': 'progress-title'},
      h('h2', {id: 'progress-title'}, t('fleet.progress')),
      h('p', {class: 'hint'}, t('fleet.progress_hint')),
      chartBox),
    h('section', {class: 'card', 'aria-labelledby': 'nodes-title'},
      h('h2', {id: 'nodes-title'}, t('fleet.nodes')),
      h('div', {class: 'toolbar'}, field(t('fleet.search'), search, t('fleet.search_hint'))),
      tableBox));
  replace(tableBox, h('p', null, t('common.loading')));
  if (keep.result) showResult(keep.result.ok, keep.result.text);
  const poller = poll(refresh, POLL_MS);
  return () => poller.stop();
}
