// #/submit (ministry): the signed YAML document and its detached minisign signature, both made
// offline (the secret key never reaches the browser). "Check" runs every check a submission
// would, storing nothing; "Submit" is offered only after a passing check of these very files.

import {paths, post} from '../api.js';
import {bdi, field, h, replace} from '../dom.js';
import {
  actionText, code, directiveHref, errorText, scopeInline, stateLabel, targetsInline, windowEl,
} from '../format.js';
import {t} from '../i18n.js';

const MAX_DOCUMENT_BYTES = 4 * 1024 * 1024;
const MAX_SIGNATURE_BYTES = 64 * 1024;

async function readText(file, max) {
  if (file.size > max) throw new Error(t('submit.too_large', {name: file.name, max}));
  return file.text();
}

// The document's line `line` with a caret under `column` (both 1-based), or null.
function snippet(lines, line, column) {
  if (!(line > 0) || line > lines.length) return null;
  const text = lines[line - 1].replace(/\t/g, ' ');
  const caret = column > 0 ? `${' '.repeat(Math.min(column - 1, text.length))}^` : '';
  return h('pre', {class: 'snippet', dir: 'ltr'},
    h('span', {class: 'line-no'}, `${line} | `), text, caret ? `\n${' '.repeat(String(line).length + 3)}${caret}` : '');
}

function problemEl(p, lines) {
  const line = Number(p.line) || 0;
  const column = Number(p.column) || 0;
  const where = line > 0 ? t('submit.at', {line, column}) : t('submit.whole_document');
  return h('li', {testid: 'check-problem', class: 'problem', data: {line, column}},
    h('span', {class: 'where'}, where), ' ',
    bdi(String(p.message ?? '')), ' ',
    code(`(${p.code ?? ''})`, {class: 'problem-code'}),
    snippet(lines, line, column));
}

// Puts a File chosen earlier back into a (redrawn) file input.
function restoreFile(input, file) {
  if (!file) return;
  try {
    const transfer = new DataTransfer();
    transfer.items.add(file);
    input.files = transfer.files;
  } catch {
    // A browser without DataTransfer(): the file is still kept and used.
  }
}

export function render(root, ctx) {
  if (ctx.session.role !== 'ministry') {
    root.append(h('h1', null, t('submit.title')), h('p', {class: 'notice'}, t('submit.ministry_only')));
    return null;
  }

  // Survives a redraw of this page (a change of language): the chosen files, the last check
  // ({ok, body, lines}), the texts of a passing check, and the last result (a function drawing it).
  const keep = ctx.keep;
  const docInput = h('input', {id: 'submit-document', type: 'file', testid: 'submit-document',
    accept: '.yaml,.yml,text/yaml,application/yaml,text/plain',
    on: {change: () => {
      keep.doc = docInput.files?.[0] ?? null;
      reset();
    }}});
  const sigInput = h('input', {id: 'submit-signature', type: 'file', testid: 'submit-signature',
    accept: '.minisig,text/plain',
    on: {change: () => {
      keep.sig = sigInput.files?.[0] ?? null;
      reset();
    }}});
  const checkBtn = h('button', {type: 'button', testid: 'submit-check', class: 'primary', on: {click: runCheck}},
    t('submit.check'));
  const sendBtn = h('button', {type: 'button', testid: 'submit-send', class: 'primary', disabled: true,
    'aria-describedby': 'submit-send-hint', on: {click: runSend}}, t('submit.send'));
  const sendHint = h('p', {class: 'hint', id: 'submit-send-hint'}, t('submit.send_hint'));
  const checkBox = h('div', {class: 'check-box'});
  const resultBox = h('div', {class: 'result-box'});

  function reset() {
    keep.check = null;
    keep.checked = null;
    keep.result = null;
    sendBtn.disabled = true;
    replace(checkBox);
    replace(resultBox);
  }

  function setResult(draw) {
    keep.result = draw;
    replace(resultBox, draw ? draw() : null);
  }

  function failure(text) {
    return () => h('p', {testid: 'submit-result', class: ['result', 'error'], data: {ok: 'false'}, role: 'alert'}, text());
  }

  async function readBoth() {
    const doc = keep.doc ?? docInput.files?.[0];
    const sig = keep.sig ?? sigInput.files?.[0];
    if (!doc || !sig) throw new Error(t('submit.choose_both'));
    return {
      document: await readText(doc, MAX_DOCUMENT_BYTES),
      signature: await readText(sig, MAX_SIGNATURE_BYTES),
    };
  }

  function drawCheck(check) {
    const {ok, body, lines} = check;
    const children = [];
    if (ok) {
      children.push(h('p', null, t('submit.check_ok')),
        h('dl', {class: 'details'},
          h('div', {class: 'dl-row'}, h('dt', null, t('directive.issuer')), h('dd', null, code(body.issuer ?? ''))),
          h('div', {class: 'dl-row'}, h('dt', null, t('directive.id')), h('dd', null, code(body.id ?? ''))),
          h('div', {class: 'dl-row'}, h('dt', null, t('directive.action')), h('dd', null, actionText(body))),
          body.legal_basis !== undefined
            ? h('div', {class: 'dl-row'}, h('dt', null, t('directive.legal_basis')), h('dd', null, h('bdi', {dir: 'auto'}, body.legal_basis)))
            : null,
          h('div', {class: 'dl-row'}, h('dt', null, t('directive.targets')), h('dd', null, targetsInline(body, 12))),
          body.scope !== undefined
            ? h('div', {class: 'dl-row'}, h('dt', null, t('directive.scope')), h('dd', null, scopeInline(body.scope)))
            : null,
          body.not_before !== undefined
            ? h('div', {class: 'dl-row'}, h('dt', null, t('directive.window')), h('dd', null, windowEl(body)))
            : null,
          h('div', {class: 'dl-row'}, h('dt', null, t('directive.signer')), h('dd', null, code(body.signed_by_key ?? '')))));
    } else {
      const problems = Array.isArray(body?.problems) ? body.problems : [];
      children.push(h('p', null, t('submit.check_failed', {n: problems.length})),
        h('ol', {class: 'problems'}, problems.map((p) => problemEl(p, lines))));
    }
    replace(checkBox, h('div', {testid: 'check-result', class: ['result', ok ? 'ok' : 'error'], role: 'status',
      data: {ok: ok ? 'true' : 'false'}}, children));
  }

  async function runCheck() {
    reset();
    checkBtn.disabled = true;
    let texts;
    try {
      texts = await readBoth();
    } catch (e) {
      replace(checkBox, h('p', {class: 'error', role: 'alert'}, e.message));
      checkBtn.disabled = false;
      return;
    }
    const lines = texts.document.split(/\r?\n/);
    try {
      const body = await post(paths.check, texts);
      keep.check = {ok: body?.ok === true, body, lines};
      if (keep.check.ok) keep.checked = texts;
    } catch (e) {
      // A refusal of the call itself (too large, not allowed): shown as the check's one problem.
      keep.check = {ok: false, lines, body: {problems: [{code: e.code, message: errorText(e), line: e.body?.line, column: e.body?.column}]}};
    } finally {
      checkBtn.disabled = false;
    }
    drawCheck(keep.check);
    sendBtn.disabled = !keep.checked;
  }

  async function runSend() {
    const checked = keep.checked;
    if (!checked) return;
    sendBtn.disabled = true;
    let texts;
    try {
      texts = await readBoth();
    } catch (e) {
      setResult(failure(() => e.message));
      return;
    }
    // The files were chosen again or changed on disk since the check: check again first.
    if (texts.document !== checked.document || texts.signature !== checked.signature) {
      reset();
      setResult(failure(() => t('submit.changed')));
      return;
    }
    try {
      const d = await post(paths.directives, texts);
      const key = `${d.issuer}/${d.id}`;
      keep.checked = null;
      setResult(() => h('div', {testid: 'submit-result', class: ['result', 'ok'], data: {ok: 'true', key}, role: 'status'},
        h('p', null, t('submit.sent', {key, state: stateLabel(d.state)})),
        h('p', null, h('a', {href: directiveHref(d.issuer, d.id)}, t('submit.open', {key})))));
    } catch (e) {
      setResult(failure(() => errorText(e)));
      sendBtn.disabled = false;
    }
  }

  root.append(
    h('h1', null, t('submit.title')),
    h('p', null, t('submit.intro')),
    h('section', {class: 'card', 'aria-labelledby': 'files-title'},
      h('h2', {id: 'files-title'}, t('submit.files')),
      field(t('submit.document'), docInput, t('submit.document_hint')),
      field(t('submit.signature'), sigInput, t('submit.signature_hint')),
      h('div', {class: 'buttons'}, checkBtn, sendBtn),
      sendHint),
    checkBox,
    resultBox);
  restoreFile(docInput, keep.doc);
  restoreFile(sigInput, keep.sig);
  if (keep.check) drawCheck(keep.check);
  if (keep.result) replace(resultBox, keep.result());
  sendBtn.disabled = !keep.checked;
  return null;
}
