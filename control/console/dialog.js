// The reason dialog: every state-changing action asks why (the reason is audited).
// A modal <dialog>: focus goes to the reason, Esc or Cancel cancels, focus returns to the
// control that opened it.

import {h} from './dom.js';
import {t} from './i18n.js';

let serial = 0;

// Resolves to the reason text, or null when cancelled. `optional`: an empty reason is accepted.
export function askReason({title, description, confirmLabel, optional = false, danger = false}) {
  const opener = document.activeElement;
  const id = `reason-${++serial}`;
  return new Promise((resolve) => {
    const input = h('input', {
      id: `${id}-input`, type: 'text', testid: 'reason-input', maxlength: 500,
      autocomplete: 'off', required: !optional, 'aria-describedby': `${id}-desc`,
    });
    const problem = h('p', {class: 'error', id: `${id}-problem`, role: 'alert', hidden: true});
    const dialog = h('dialog', {class: 'reason-dialog', 'aria-labelledby': `${id}-title`,
      'aria-describedby': `${id}-desc`});
    let done = false;
    const finish = (value) => {
      if (done) return;
      done = true;
      if (dialog.open) dialog.close();
      dialog.remove();
      if (opener instanceof HTMLElement && opener.isConnected) opener.focus();
      resolve(value);
    };
    const form = h('form', {
      novalidate: true,
      on: {
        submit: (e) => {
          e.preventDefault();
          const reason = input.value.trim();
          if (!optional && reason === '') {
            problem.textContent = t('dialog.reason_required');
            problem.hidden = false;
            input.setAttribute('aria-invalid', 'true');
            input.focus();
            return;
          }
          finish(reason);
        },
      },
    },
    h('h2', {id: `${id}-title`}, title),
    h('p', {id: `${id}-desc`}, description),
    h('div', {class: 'field'},
      h('label', {for: input.id}, optional ? t('dialog.reason_optional') : t('dialog.reason')),
      input),
    problem,
    h('div', {class: 'buttons'},
      h('button', {type: 'submit', class: danger ? 'danger' : 'primary', testid: 'reason-confirm'},
        confirmLabel),
      h('button', {type: 'button', testid: 'reason-cancel', on: {click: () => finish(null)}},
        t('dialog.cancel'))));
    dialog.append(form);
    // Esc: the browser fires "cancel" on a modal dialog; keydown covers browsers that do not.
    dialog.addEventListener('cancel', (e) => {
      e.preventDefault();
      finish(null);
    });
    dialog.addEventListener('keydown', (e) => {
      if (e.key === 'Escape') {
        e.preventDefault();
        finish(null);
      }
    });
    document.body.append(dialog);
    dialog.showModal();
    input.focus();
  });
}

export function dialogOpen() {
  return document.querySelector('dialog.reason-dialog[open]') !== null;
}
