// #/login: the role token (the same as the API's bearer tokens) for a session cookie.

import {post, paths} from '../api.js';
import {field, h} from '../dom.js';
import {errorText} from '../format.js';
import {t} from '../i18n.js';

export function render(root, ctx) {
  const token = h('input', {
    id: 'login-token', type: 'password', testid: 'login-token', autocomplete: 'current-password',
    spellcheck: 'false', required: true,
  });
  const submit = h('button', {type: 'submit', class: 'primary', testid: 'login-submit'}, t('login.submit'));
  const errorBox = h('div', {class: 'login-error-box'});
  const form = h('form', {class: 'login-form', novalidate: true, on: {submit: onSubmit}},
    field(t('login.token'), token, t('login.token_hint')),
    errorBox,
    h('div', {class: 'buttons'}, submit));

  // The error stays across a redraw (a change of language): kept as a function of the language.
  function showError(text) {
    ctx.keep.error = text;
    errorBox.replaceChildren(h('p', {class: 'error', role: 'alert', testid: 'login-error'}, text()));
    token.setAttribute('aria-invalid', 'true');
  }

  async function onSubmit(e) {
    e.preventDefault();
    const value = token.value.trim();
    if (value === '') {
      showError(() => t('login.empty'));
      token.focus();
      return;
    }
    submit.disabled = true;
    try {
      const session = await post(paths.session, {token: value}, {redirectOn401: false});
      token.value = '';
      ctx.signedIn(session);
    } catch (err) {
      showError(() => (err.status === 401 ? t('login.bad_token') : errorText(err)));
      token.select();
      token.focus();
    } finally {
      submit.disabled = false;
    }
  }

  root.append(
    h('section', {class: 'card login'},
      h('h1', null, t('login.title')),
      h('p', null, t('login.intro')),
      ctx.sessionEnded ? h('p', {class: 'notice', role: 'status'}, t('login.expired')) : null,
      form));
  if (ctx.keep.error) showError(ctx.keep.error);
  token.focus();
  return null;
}
