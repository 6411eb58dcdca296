// Strings: one catalogue per language (i18n/LANG.json), t(key, params) to look one up.
// The chosen language is remembered in localStorage and set on <html lang dir>.

export const LANGUAGES = ['en', 'ar'];
const RTL = new Set(['ar']);
const STORAGE_KEY = 'sluice.lang';

let current = 'en';
let catalogue = {};
let fallback = {};  // English: a key missing from another catalogue still shows something

async function load(lang) {
  const res = await fetch(new URL(`./i18n/${lang}.json`, import.meta.url),
    {credentials: 'same-origin', cache: 'no-cache'});
  if (!res.ok) throw new Error(`catalogue ${lang}: HTTP ${res.status}`);
  return res.json();
}

export function preferredLanguage() {
  let saved = null;
  try {
    saved = localStorage.getItem(STORAGE_KEY);
  } catch {
    saved = null;  // storage disabled: the browser's language decides
  }
  if (LANGUAGES.includes(saved)) return saved;
  return (navigator.language || '').toLowerCase().startsWith('ar') ? 'ar' : 'en';
}

export async function setLanguage(lang) {
  if (!LANGUAGES.includes(lang)) lang = 'en';
  if (Object.keys(fallback).length === 0) fallback = await load('en');
  catalogue = lang === 'en' ? fallback : await load(lang);
  current = lang;
  try {
    localStorage.setItem(STORAGE_KEY, lang);
  } catch {
    // not remembered; still applied
  }
  const html = document.documentElement;
  html.lang = lang;
  html.dir = RTL.has(lang) ? 'rtl' : 'ltr';
  document.title = t('app.title');
}

export function language() {
  return current;
}

export function isRtl() {
  return RTL.has(current);
}

// The catalogue's text for `key`, with each {name} replaced by params[name].
export function t(key, params) {
  let text = catalogue[key] ?? fallback[key];
  if (text === undefined) {
    console.warn(`i18n: no string for ${key}`);
    return key;
  }
  if (params) {
    text = text.replace(/\{(\w+)\}/g, (whole, name) =>
      Object.prototype.hasOwnProperty.call(params, name) ? String(params[name]) : whole);
  }
  return text;
}
