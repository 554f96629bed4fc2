// The team page's Posts tab: posts newest first with cursor paging, each
// with its comments on demand. Edit and delete buttons follow the server's
// rules (edit: the author; delete: the author or a team admin); the server
// enforces them either way.
import { call, session } from './api.js';
import { h, when, errorLine, attempt } from './dom.js';

const PAGE = 20;

export async function postsTab(team) {
  const ctx = { me: session().user.id, admin: team.role === 'admin' };
  const list = h('div', { class: 'posts', 'data-test': 'posts' });
  const err = errorLine();
  let cursor = null;
  async function more() {
    const q = cursor ? `&cursor=${encodeURIComponent(cursor)}` : '';
    const page = await call('GET', `/v1/teams/${team.id}/posts?limit=${PAGE}${q}`);
    list.append(...page.items.map((p) => postCard(p, ctx)));
    cursor = page.next_cursor;
    moreBtn.hidden = !cursor;
  }
  const moreBtn = h('button', { class: 'secondary', id: 'posts-more', 'data-test': 'posts-more', hidden: true,
    onclick: () => attempt(err, more) }, 'Load more');
  await more();
  return h('div', {}, composer(team, (p) => list.prepend(postCard(p, ctx))), list, moreBtn, err);
}

function composer(team, added) {
  const title = h('input', { name: 'title', placeholder: 'title', required: true, maxlength: 200, id: 'new-post-title', 'data-test': 'new-post-title' });
  const body = h('textarea', { name: 'body', placeholder: 'write something', rows: 4, id: 'new-post-body', 'data-test': 'new-post-body' });
  const err = errorLine('form-error');
  const form = h('form', { class: 'wide', onsubmit: async (e) => {
    e.preventDefault();
    const post = await attempt(err, () => call('POST', `/v1/teams/${team.id}/posts`, { title: title.value, body: body.value }));
    if (post) { form.reset(); added(post); }
  } }, title, body, h('button', { type: 'submit', id: 'new-post-submit', 'data-test': 'new-post-submit' }, 'Post'), err);
  return h('div', { class: 'card' }, h('h3', {}, 'New post'), form);
}

function plural(n, word) { return `${n} ${word}${n === 1 ? '' : 's'}`; }

function postCard(initial, ctx) {
  let post = initial;
  let comments = null; // the comments section, once opened
  const card = h('article', { class: 'card post', 'data-test': 'post', 'data-id': post.id });
  const err = errorLine();
  const countBtn = h('button', { class: 'secondary', 'data-test': 'toggle-comments', onclick: () => toggle() });
  const setCount = (n) => { post = { ...post, comment_count: n }; countBtn.textContent = plural(n, 'comment'); };
  setCount(post.comment_count);

  function show() {
    const mine = post.author.id === ctx.me;
    card.replaceChildren(
      h('h3', { class: 'post-title', 'data-test': 'post-title' }, post.title),
      h('div', { class: 'muted' }, h('span', { 'data-test': 'post-author' }, post.author.username), ' · ', when(post.created_at),
        post.edited_at ? h('span', { 'data-test': 'edited' }, ' · edited') : ''),
      h('div', { class: 'post-body', 'data-test': 'post-body' }, post.body),
      h('div', { class: 'controls' }, countBtn,
        mine ? h('button', { class: 'secondary', 'data-test': 'edit-post', onclick: edit }, 'Edit') : '',
        mine || ctx.admin ? h('button', { class: 'danger', 'data-test': 'delete-post', onclick: remove }, 'Delete') : ''),
      err, comments || '');
  }

  function edit() {
    const title = h('input', { value: post.title, required: true, maxlength: 200, 'data-test': 'edit-post-title' });
    const body = h('textarea', { rows: 4, 'data-test': 'edit-post-body' });
    body.value = post.body;
    card.replaceChildren(h('form', { class: 'wide', onsubmit: async (e) => {
      e.preventDefault();
      const updated = await attempt(err, () => call('PATCH', `/v1/posts/${post.id}`, { title: title.value, body: body.value }));
      if (updated) { post = updated; setCount(updated.comment_count); show(); }
    } }, title, body, h('div', { class: 'controls' },
      h('button', { type: 'submit', 'data-test': 'save-post' }, 'Save'),
      h('button', { type: 'button', class: 'secondary', 'data-test': 'cancel-post', onclick: show }, 'Cancel')), err));
    title.focus();
  }

  async function remove() {
    if (!window.confirm('Delete this post and its comments?')) return;
    if (await attempt(err, () => call('DELETE', `/v1/posts/${post.id}`)) !== undefined) card.remove();
  }

  async function toggle() {
    if (comments) { comments.remove(); comments = null; return; }
    comments = await attempt(err, () => commentsSection(post, ctx, (delta) => setCount(post.comment_count + delta)));
    if (comments) card.append(comments);
  }

  show();
  return card;
}

// Comments oldest first, paged with the cursor; new ones go at the end.
async function commentsSection(post, ctx, counted) {
  const list = h('ul', { class: 'plain comments', 'data-test': 'comments' });
  const err = errorLine();
  let cursor = null;
  async function more() {
    const q = cursor ? `&cursor=${encodeURIComponent(cursor)}` : '';
    const page = await call('GET', `/v1/posts/${post.id}/comments?limit=${PAGE}${q}`);
    // A comment added here already may come again on a later page.
    const fresh = page.items.filter((c) => !list.querySelector(`[data-id="${c.id}"]`));
    list.append(...fresh.map((c) => commentItem(c, ctx, counted)));
    cursor = page.next_cursor;
    moreBtn.hidden = !cursor;
  }
  const moreBtn = h('button', { class: 'secondary', 'data-test': 'comments-more', hidden: true, onclick: () => attempt(err, more) }, 'More comments');
  await more();
  const box = h('input', { placeholder: 'write a comment', required: true, maxlength: 4000, 'data-test': 'comment-input' });
  const form = h('form', { class: 'inline', onsubmit: async (e) => {
    e.preventDefault();
    const c = await attempt(err, () => call('POST', `/v1/posts/${post.id}/comments`, { body: box.value }));
    if (c) { box.value = ''; list.append(commentItem(c, ctx, counted)); counted(1); }
  } }, box, h('button', { type: 'submit', 'data-test': 'comment-submit' }, 'Comment'));
  return h('div', { class: 'comments-box', 'data-test': 'comments-box' }, list, moreBtn, form, err);
}

function commentItem(initial, ctx, counted) {
  let c = initial;
  const li = h('li', { class: 'comment', 'data-test': 'comment', 'data-id': c.id });
  const err = errorLine();
  function show() {
    const mine = c.author.id === ctx.me;
    li.replaceChildren(
      h('div', { class: 'muted' }, h('strong', {}, c.author.username), ' · ', when(c.created_at), c.edited_at ? ' · edited' : ''),
      h('div', { class: 'comment-body', 'data-test': 'comment-body' }, c.body),
      h('div', { class: 'controls small' },
        mine ? h('button', { class: 'link', 'data-test': 'edit-comment', onclick: edit }, 'Edit') : '',
        mine || ctx.admin ? h('button', { class: 'link danger', 'data-test': 'delete-comment', onclick: remove }, 'Delete') : ''),
      err);
  }
  function edit() {
    const box = h('input', { value: c.body, required: true, maxlength: 4000, 'data-test': 'edit-comment-input' });
    li.replaceChildren(h('form', { class: 'inline', onsubmit: async (e) => {
      e.preventDefault();
      const updated = await attempt(err, () => call('PATCH', `/v1/comments/${c.id}`, { body: box.value }));
      if (updated) { c = updated; show(); }
    } }, box, h('button', { type: 'submit', 'data-test': 'save-comment' }, 'Save'),
    h('button', { type: 'button', class: 'secondary', onclick: show }, 'Cancel')), err);
    box.focus();
  }
  async function remove() {
    if (!window.confirm('Delete this comment?')) return;
    if (await attempt(err, () => call('DELETE', `/v1/comments/${c.id}`)) !== undefined) { li.remove(); counted(-1); }
  }
  show();
  return li;
}
