// DOM helpers.  Everything a user wrote reaches the page as a text node:
// h() turns string children into text nodes and refuses innerHTML and inline styles.

const FORBIDDEN = new Set(['innerHTML', 'outerHTML', 'style', 'srcdoc']);

/** h('li', {class: 'x', dataset: {id}, onclick: fn}, 'text', childNode, [more]) */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (FORBIDDEN.has(key)) throw new Error(`h(): '${key}' is not allowed`);
    if (key === 'class') el.className = value;
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value);
    else if (key === 'value' || key === 'checked' || key === 'disabled') el[key] = value;
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Replace an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/**
 * fill(), keeping keyboard focus: an element with data-focus="x" that had focus
 * gives it to its replacement with the same data-focus.
 */
export function refill(el, ...children) {
  const focused = document.activeElement;
  const key = el.contains(focused) ? focused.dataset.focus : undefined;
  fill(el, ...children);
  if (key) el.querySelector(`[data-focus="${CSS.escape(key)}"]`)?.focus();
  return el;
}

export const $ = (id) => document.getElementById(id);

export function timeOf(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? '' : date.toLocaleTimeString([], {hour: '2-digit', minute: '2-digit'});
}

export function dayOf(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? '' : date.toLocaleDateString([], {year: 'numeric', month: 'short', day: 'numeric'});
}

/** "last seen 5 min ago", "last seen today at 09:12", "last seen 3 Jan 2024". */
export function lastSeenText(iso) {
  const when = Date.parse(iso || '');
  if (Number.isNaN(when)) return 'offline';
  const minutes = Math.floor((Date.now() - when) / 60000);
  if (minutes < 1) return 'last seen just now';
  if (minutes < 60) return `last seen ${minutes} min ago`;
  if (new Date(when).toDateString() === new Date().toDateString()) return `last seen today at ${timeOf(iso)}`;
  return `last seen ${dayOf(iso)}`;
}

export function sizeText(bytes) {
  if (!Number.isFinite(bytes)) return '';
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}
