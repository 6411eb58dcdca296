// Element builders. Everything that comes from the server (legal bases, targets, names, audit
// details) reaches the page through these, and they only ever create text nodes or set
// attributes: no string is parsed as markup, so a payload such as <img onerror> stays text.

// Properties set on the element itself rather than as attributes (their live state matters:
// a select's value, a button's disabled flag).
const PROPERTIES = new Set(['value', 'checked', 'disabled', 'hidden', 'selected', 'multiple',
  'required', 'readOnly', 'open']);

// Attribute names that would run script or style text: never set from here, whatever the value.
const FORBIDDEN = /^(on|style$|srcdoc$|formaction$)/i;

function safeHref(value) {
  const s = String(value);
  // Only in-app links (hash routes) and same-origin paths are built by the console.
  if (s.startsWith('#') || (s.startsWith('/') && !s.startsWith('//'))) return s;
  throw new Error(`refused link target: ${s}`);
}

export function setProps(el, props) {
  for (const [key, value] of Object.entries(props ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') {
      el.setAttribute('class', Array.isArray(value) ? value.flat(Infinity).filter(Boolean).join(' ') : value);
    } else if (key === 'testid') {
      el.dataset.testid = value;
    } else if (key === 'data') {
      for (const [k, v] of Object.entries(value)) el.dataset[k] = String(v);
    } else if (key === 'on') {
      for (const [event, fn] of Object.entries(value)) el.addEventListener(event, fn);
    } else if (key === 'text') {
      el.textContent = String(value);
    } else if (key === 'for') {
      el.htmlFor = value;
    } else if (PROPERTIES.has(key)) {
      el[key] = value;
    } else if (FORBIDDEN.test(key)) {
      throw new Error(`refused attribute: ${key}`);
    } else if (key === 'href') {
      el.setAttribute('href', safeHref(value));
    } else {
      el.setAttribute(key, value === true ? '' : String(value));
    }
  }
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

// h('p', {class: 'x', testid: 'y'}, 'text', otherNode, [more, nodes])
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  setProps(el, props);
  return append(el, children);
}

// Replaces an element's children (text and nodes as in h()).
export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

// A labelled form control: <div class="field"><label for=ID>LABEL</label>CONTROL</div>.
export function field(label, control, hint) {
  const hintEl = hint ? h('p', {class: 'hint', id: `${control.id}-hint`}, hint) : null;
  if (hintEl) control.setAttribute('aria-describedby', hintEl.id);
  return h('div', {class: 'field'}, h('label', {for: control.id}, label), control, hintEl);
}

// <select> from [[value, label]...].
export function select(props, options, selected) {
  const el = h('select', props,
    options.map(([value, label]) => h('option', {value}, label)));
  if (selected !== undefined) el.value = selected;
  return el;
}

// A table: headers are strings; rows are <tr> elements built by the caller.
export function table(props, headers, rows, caption) {
  return h('div', {class: 'table-wrap'},
    h('table', props,
      caption ? h('caption', {class: 'visually-hidden'}, caption) : null,
      h('thead', null, h('tr', null, headers.map((text) => h('th', {scope: 'col'}, text)))),
      h('tbody', null, rows)));
}

// Data text that may be in either direction (an Arabic legal basis in an English page, an id in
// an Arabic one): isolated so it does not reorder its neighbours.
export function bdi(text, props) {
  return h('bdi', props, text);
}

// Text that is always left to right (hashes, ids, revisions, times), isolated in RTL pages.
export function ltr(text, props) {
  return h('span', {...props, dir: 'ltr', class: ['ltr', props?.class]}, text);
}
