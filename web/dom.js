// Small DOM helpers shared by the views (app.js, posts.js, chats.js).
import { ApiError } from './api.js';

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (v === true) el.setAttribute(k, '');
    else if (v !== false && v != null) el.setAttribute(k, v);
  }
  for (const c of children.flat()) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

export function errorText(e) {
  return e instanceof ApiError ? `${e.problem.title}: ${e.problem.detail || ''}` : String(e.message || e);
}

export function formView(title, fields, submitLabel, onSubmit, extra) {
  const err = h('div', { class: 'error', 'data-test': 'form-error' });
  const form = h('form', {
    onsubmit: async (ev) => {
      ev.preventDefault();
      err.textContent = '';
      const data = Object.fromEntries(new FormData(form).entries());
      try { await onSubmit(data, form); } catch (e) { err.textContent = errorText(e); }
    },
  }, fields, h('button', { type: 'submit' }, submitLabel), err);
  return h('div', { class: 'card' }, h('h2', {}, title), form, extra || '');
}

export function input(name, type = 'text', placeholder = name) {
  return h('input', { name, type, placeholder, required: true, id: `f-${name}` });
}

// Short local time; the full timestamp goes into the title for hovering.
export function when(iso) {
  const d = new Date(iso);
  const today = new Date().toDateString() === d.toDateString();
  const text = today ? d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }) : d.toLocaleString();
  return h('time', { datetime: iso, title: d.toLocaleString() }, text);
}

// An error line that a failed action fills in, next to the thing it was about.
export function errorLine(test) {
  return h('div', { class: 'error', 'data-test': test || 'error' });
}

// Runs an async action and shows its failure in `err` rather than losing it.
export async function attempt(err, action) {
  err.textContent = '';
  try { return await action(); } catch (e) { err.textContent = errorText(e); return undefined; }
}
