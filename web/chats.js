// Chats: the list of my chats (#/chats) and one chat (#/chats/{id}). The
// REST API gives the history; the user channel (chat.js) adds what happens
// while the page is open: messages, edits, read receipts, typing, presence.
import { call, session } from './api.js';
import { h, formView, when, errorLine, attempt, errorText } from './dom.js';
import { Timeline, newClientId } from './chat.js';

const PAGE = 50;
const TYPING_SHOWN_MS = 3000;

function chatTitle(chat, me) {
  if (chat.title) return chat.title;
  const others = chat.members.filter((m) => m.user_id !== me).map((m) => m.username);
  return others.join(', ') || 'just you';
}

function dot(channel, userId) {
  const el = h('span', { class: 'presence', 'data-test': 'presence', 'data-user': userId });
  paintDot(el, channel);
  return el;
}

function paintDot(el, channel) {
  const online = channel.isOnline(el.dataset.user);
  el.classList.toggle('online', online);
  el.dataset.online = String(online);
  el.title = online ? 'online' : 'offline';
}

// Presence changes repaint the dots in place rather than the whole page.
function repaintDots(root, channel) {
  root.querySelectorAll('[data-test=presence]').forEach((el) => paintDot(el, channel));
}

function memberChips(members, me, channel) {
  return members.map((m) => h('span', { class: 'member' },
    dot(channel, m.user_id), m.user_id === me ? `${m.username} (you)` : m.username));
}

export async function chatList({ channel, onLeave, go }) {
  const me = session().user.id;
  const list = h('ul', { class: 'plain chats', 'data-test': 'chats' });
  const more = h('button', { class: 'secondary', 'data-test': 'chats-more', hidden: true, onclick: () => load(false) }, 'Load more');
  let cursor = null;
  async function load(reset) {
    const q = !reset && cursor ? `&cursor=${encodeURIComponent(cursor)}` : '';
    const page = await call('GET', `/v1/chats?limit=${PAGE}${q}`);
    if (reset) list.replaceChildren();
    list.append(...page.items.map((c) => chatRow(c, me, channel)));
    cursor = page.next_cursor;
    more.hidden = !cursor;
  }
  await load(true);

  // New messages reorder the list and change unread counts: reload the
  // first page, at most a few times a second.
  let timer = null;
  const reloadSoon = () => { clearTimeout(timer); timer = setTimeout(() => load(true).catch(() => {}), 300); };
  const root = h('div', {},
    h('div', { class: 'card' }, h('h2', {}, 'Chats'), list, more),
    formView('New chat', [
      h('input', { name: 'title', placeholder: 'title (leave empty for a direct chat)', id: 'f-chat-title' }),
      h('input', { name: 'members', placeholder: 'member emails, comma-separated', id: 'f-chat-members', required: true }),
    ], 'Create', async (d) => {
      const emails = d.members.split(',').map((s) => s.trim()).filter(Boolean);
      const chat = await call('POST', '/v1/chats', { title: d.title.trim(), member_emails: emails });
      go(`#/chats/${chat.id}`);
    }));
  onLeave(channel.on((m) => {
    if (m.type === 'presence' || m.type === 'welcome' || m.type === 'channel') repaintDots(root, channel);
    else if (m.type === 'read_receipt' ? m.user_id === me : ['message_created', 'message_edited', 'chat_member_added', 'chat_member_removed'].includes(m.type)) reloadSoon();
  }));
  onLeave(() => clearTimeout(timer));
  return root;
}

function chatRow(c, me, channel) {
  const others = c.members.filter((m) => m.user_id !== me);
  const last = c.last_message;
  return h('li', { class: 'chat-row', 'data-test': 'chat-row', 'data-id': c.id },
    h('div', { class: 'grow' },
      h('div', {}, h('a', { href: `#/chats/${c.id}`, 'data-test': 'chat-link' }, chatTitle(c, me)), ' ',
        h('span', { class: 'members' }, memberChips(others, me, channel))),
      h('div', { class: 'muted last', 'data-test': 'last-message' },
        last ? `${last.sender.id === me ? 'you' : last.sender.username}: ${last.text}` : 'No messages yet.')),
    last ? h('span', { class: 'muted' }, when(last.created_at)) : '',
    c.unread_count ? h('span', { class: 'badge', 'data-test': 'unread', title: 'unread' }, String(c.unread_count)) : '');
}

export async function chatView(id, { channel, onLeave }) {
  const view = new ChatView(id, channel);
  await view.load();
  onLeave(() => view.close());
  return view.root;
}

class ChatView {
  constructor(id, channel) {
    this.id = id;
    this.channel = channel;
    this.me = session().user.id;
    this.timeline = new Timeline();
    this.els = new Map(); // seq -> element
    this.pending = new Map(); // client_id -> element of a send not confirmed yet
    this.members = new Map(); // user_id -> ChatMember (last_read_seq kept current)
    this.typing = new Map(); // user_id -> timer hiding "is typing…"
    this.myRead = 0;
    this.reading = false;
    this.closed = false;
  }

  async load() {
    const [chat, page] = await Promise.all([
      call('GET', `/v1/chats/${this.id}`),
      call('GET', `/v1/chats/${this.id}/messages?limit=${PAGE}`),
    ]);
    this.chat = chat;
    this.setMembers(chat.members);
    this.myRead = chat.last_read_seq;
    this.render();
    this.addPage(page);
    this.unsubscribe = this.channel.on((m) => this.onEvent(m));
    this.unfollow = this.channel.follow(this.id, () => this.timeline.lastSeq());
    this.onVisible = () => this.markRead();
    document.addEventListener('visibilitychange', this.onVisible);
    // The view is attached after load() returns.
    setTimeout(() => this.scrollToBottom(), 0);
    this.markRead();
  }

  close() {
    this.closed = true;
    this.unsubscribe();
    this.unfollow();
    document.removeEventListener('visibilitychange', this.onVisible);
    for (const t of this.typing.values()) clearTimeout(t);
  }

  setMembers(list) {
    const old = this.members;
    this.members = new Map(list.map((m) => {
      // A receipt may have arrived after this snapshot was read.
      const prev = old.get(m.user_id);
      return [m.user_id, { ...m, last_read_seq: Math.max(m.last_read_seq, prev ? prev.last_read_seq : 0) }];
    }));
  }

  render() {
    this.log = h('div', { class: 'messages', id: 'messages', 'data-test': 'messages' });
    this.older = h('button', { class: 'secondary', 'data-test': 'load-older', id: 'load-older', hidden: true, onclick: () => this.loadOlder() }, 'Load older');
    this.typingLine = h('div', { class: 'muted typing', 'data-test': 'typing' });
    this.input = h('input', { id: 'chat-input', 'data-test': 'chat-input', placeholder: 'Write a message', autocomplete: 'off',
      maxlength: 4000, oninput: () => this.channel.typing(this.id) });
    this.err = errorLine('chat-error');
    this.membersEl = h('div', { class: 'members', 'data-test': 'chat-members' });
    this.root = h('div', { class: 'card chat', 'data-test': 'chat', 'data-id': this.id },
      h('div', { class: 'chat-head' }, h('h2', { 'data-test': 'chat-title' }, chatTitle(this.chat, this.me)),
        h('a', { href: '#/chats' }, 'All chats')),
      this.membersEl,
      this.older, this.log, this.typingLine,
      h('form', { class: 'inline', onsubmit: (e) => { e.preventDefault(); this.send(); } },
        this.input, h('button', { type: 'submit', id: 'chat-send', 'data-test': 'chat-send' }, 'Send')),
      this.err,
      this.chat.kind === 'group' ? this.addMemberForm() : '');
    this.renderMembers();
  }

  addMemberForm() {
    const email = h('input', { type: 'email', placeholder: 'add a member by email', required: true, 'data-test': 'add-member-email' });
    const err = errorLine();
    return h('form', { class: 'inline', onsubmit: async (e) => {
      e.preventDefault();
      if (await attempt(err, () => call('POST', `/v1/chats/${this.id}/members`, { email: email.value.trim() }))) {
        email.value = '';
        await this.reloadMembers();
      }
    } }, email, h('button', { type: 'submit', class: 'secondary', 'data-test': 'add-member' }, 'Add'), err);
  }

  renderMembers() {
    this.membersEl.replaceChildren(...memberChips([...this.members.values()], this.me, this.channel));
  }

  async reloadMembers() {
    try {
      const chat = await call('GET', `/v1/chats/${this.id}`);
      this.setMembers(chat.members);
      this.renderMembers();
      this.repaintTicks();
    } catch (e) {
      this.err.textContent = errorText(e);
    }
  }

  // A page from GET …/messages (newest first).
  addPage(page) {
    for (const m of page.items) this.show(m);
    this.older.hidden = !page.has_more;
  }

  async loadOlder() {
    const before = this.timeline.firstSeq();
    const page = await attempt(this.err, () => call('GET', `/v1/chats/${this.id}/messages?before=${before}&limit=${PAGE}`));
    if (!page) return;
    // Keep the messages on screen where they are while older ones go above.
    const fromBottom = this.log.scrollHeight - this.log.scrollTop;
    this.addPage(page);
    this.log.scrollTop = this.log.scrollHeight - fromBottom;
  }

  // Adds or updates a message; false when the same or a newer version is shown.
  show(m) {
    if (!this.timeline.add(m)) return false;
    this.dropPending(m);
    this.paint(m.seq);
    return true;
  }

  paint(seq) {
    const old = this.els.get(seq);
    // Someone editing the message in place keeps their editor; it repaints on Save or Cancel.
    if (old && old.classList.contains('editing')) return;
    const el = this.messageEl(this.timeline.get(seq));
    if (old) old.replaceWith(el);
    else this.insert(seq, el);
    this.els.set(seq, el);
  }

  // In seq order; unconfirmed sends stay at the bottom.
  insert(seq, el) {
    let next = null;
    let nextSeq = Infinity;
    for (const [s, e] of this.els) if (s > seq && s < nextSeq) { next = e; nextSeq = s; }
    this.log.insertBefore(el, next || this.log.querySelector('.pending'));
  }

  messageEl(m) {
    const mine = m.sender.id === this.me;
    return h('div', { class: `msg${mine ? ' mine' : ''}`, 'data-test': 'message', 'data-seq': m.seq, 'data-id': m.id,
      'data-version': m.version, 'data-sender': m.sender.username },
    h('div', { class: 'meta' }, h('strong', {}, m.sender.username), ' ', when(m.created_at),
      m.version > 1 ? h('span', { class: 'muted', 'data-test': 'edited' }, ' (edited)') : ''),
    h('div', { class: 'text', 'data-test': 'message-text' }, m.text),
    mine ? h('div', { class: 'actions' }, this.tick(m.seq),
      h('button', { class: 'link', 'data-test': 'edit-message', onclick: () => this.startEdit(m.seq) }, 'Edit')) : '');
  }

  // "read" in a chat of two, "read by N" in a group, from the members'
  // read positions.
  tick(seq) {
    const others = [...this.members.values()].filter((x) => x.user_id !== this.me);
    const readers = others.filter((x) => x.last_read_seq >= seq).length;
    let label = 'sent';
    if (readers) label = others.length <= 1 ? 'read' : `read by ${readers}`;
    return h('span', { class: `tick${readers ? ' read' : ''}`, 'data-test': 'read-tick', 'data-read-by': readers, title: label },
      `${readers ? '✓✓' : '✓'} ${label}`);
  }

  repaintTicks() {
    for (const [seq, el] of this.els) {
      const t = el.querySelector('.tick');
      if (t) t.replaceWith(this.tick(seq));
    }
  }

  startEdit(seq) {
    const el = this.els.get(seq);
    const m = this.timeline.get(seq);
    if (!el || el.classList.contains('editing')) return;
    el.classList.add('editing');
    const box = h('input', { class: 'edit', 'data-test': 'edit-input', value: m.text, maxlength: 4000 });
    const err = errorLine();
    const done = () => { el.classList.remove('editing'); this.paint(seq); };
    const save = async () => {
      const text = box.value.trim();
      if (!text || text === this.timeline.get(seq).text) return done();
      const updated = await attempt(err, () => call('PATCH', `/v1/messages/${m.id}`, { text }));
      if (updated) { this.timeline.add(updated); done(); }
    };
    el.querySelector('.text').replaceWith(h('form', { class: 'inline', onsubmit: (e) => { e.preventDefault(); save(); } },
      box, h('button', { type: 'submit', 'data-test': 'edit-save' }, 'Save'),
      h('button', { type: 'button', class: 'secondary', 'data-test': 'edit-cancel', onclick: done }, 'Cancel'), err));
    box.focus();
  }

  async send() {
    const text = this.input.value.trim();
    if (!text) return;
    this.input.value = '';
    const clientId = newClientId();
    const el = h('div', { class: 'msg mine pending', 'data-test': 'pending-message', 'data-client-id': clientId },
      h('div', { class: 'meta muted' }, 'sending…'), h('div', { class: 'text' }, text));
    this.pending.set(clientId, el);
    this.log.append(el);
    this.scrollToBottom();
    await this.post(clientId, text, el);
  }

  // The client_id makes a retry safe: if the first attempt reached the server
  // after all, the retry returns that message instead of a second one.
  async post(clientId, text, el) {
    try {
      const m = await call('POST', `/v1/chats/${this.id}/messages`, { text, client_id: clientId });
      this.show(m);
      this.dropPending(m);
      this.scrollToBottom();
    } catch (e) {
      el.querySelector('.meta').replaceChildren(h('span', { class: 'error' }, `not sent: ${errorText(e)} `),
        h('button', { class: 'link', 'data-test': 'retry-send', onclick: () => {
          el.querySelector('.meta').replaceChildren('sending…');
          this.post(clientId, text, el);
        } }, 'Retry'));
    }
  }

  // The confirmed message replaces its "sending…" placeholder, whichever of
  // the POST answer and the live event comes first.
  dropPending(m) {
    if (m.sender.id !== this.me) return;
    const el = this.pending.get(m.client_id);
    if (el) { el.remove(); this.pending.delete(m.client_id); }
  }

  onEvent(m) {
    if (m.chat_id && m.chat_id !== this.id) return;
    switch (m.type) {
      case 'welcome': return this.reconnected();
      case 'presence': case 'channel': return this.renderMembers();
      case 'message_created': return this.onCreated(m.message);
      case 'message_edited': return this.onEdited(m);
      case 'read_receipt': return this.onReceipt(m);
      case 'typing': return this.onTyping(m.user_id);
      case 'chat_member_added': case 'chat_member_removed': return this.reloadMembers();
      default: return undefined;
    }
  }

  // `sync` brings the messages missed while disconnected, but not edits of
  // messages already shown nor read receipts: fetch the newest page and the
  // members' read positions again (newer versions replace older ones).
  async reconnected() {
    this.renderMembers();
    try {
      const page = await call('GET', `/v1/chats/${this.id}/messages?limit=${PAGE}`);
      for (const m of page.items) this.show(m);
    } catch (e) {
      console.warn('refresh after reconnect', e);
    }
    await this.reloadMembers();
    this.markRead();
  }

  onCreated(msg) {
    const stick = this.atBottom();
    if (!this.show(msg)) return;
    this.stopTyping(msg.sender.id);
    if (stick || msg.sender.id === this.me) this.scrollToBottom();
    this.markRead();
  }

  onEdited(e) {
    const r = this.timeline.edit(e);
    if (r === 'applied') this.paint(e.seq);
    // An edit of a message we have not got: fetch what we missed, the edit
    // applies when the message arrives.
    else if (r === 'held' && e.seq > this.timeline.lastSeq()) this.channel.sync(this.id, this.timeline.lastSeq());
  }

  onReceipt({ user_id: userId, up_to_seq: upTo }) {
    const m = this.members.get(userId);
    if (!m || upTo <= m.last_read_seq) return;
    m.last_read_seq = upTo;
    if (userId === this.me) this.myRead = Math.max(this.myRead, upTo);
    else this.repaintTicks();
  }

  onTyping(userId) {
    if (userId === this.me) return;
    clearTimeout(this.typing.get(userId));
    this.typing.set(userId, setTimeout(() => this.stopTyping(userId), TYPING_SHOWN_MS));
    this.renderTyping();
  }

  stopTyping(userId) {
    if (!this.typing.has(userId)) return;
    clearTimeout(this.typing.get(userId));
    this.typing.delete(userId);
    this.renderTyping();
  }

  renderTyping() {
    const names = [...this.typing.keys()].map((u) => (this.members.get(u) || { username: 'someone' }).username);
    this.typingLine.textContent = names.length ? `${names.join(', ')} ${names.length === 1 ? 'is' : 'are'} typing…` : '';
  }

  // Marks everything shown as read when it includes messages from others
  // that are not read yet and the page is actually visible. One request at a
  // time; messages that arrive meanwhile are covered by the next one.
  async markRead() {
    if (this.closed || this.reading || document.visibilityState !== 'visible') return;
    const unread = this.timeline.messages().some((m) => m.seq > this.myRead && m.sender.id !== this.me);
    if (!unread) return;
    const last = this.timeline.get(this.timeline.lastSeq());
    this.reading = true;
    let done = false;
    try {
      const state = await call('POST', `/v1/chats/${this.id}/read`, { up_to_message_id: last.id });
      this.myRead = Math.max(this.myRead, last.seq, state.last_read_seq);
      const mine = this.members.get(this.me);
      if (mine) mine.last_read_seq = Math.max(mine.last_read_seq, this.myRead);
      done = true;
    } catch (e) {
      console.warn('mark read', e);
    } finally {
      this.reading = false;
    }
    // Messages that arrived during the request.
    if (done && this.timeline.lastSeq() > last.seq) this.markRead();
  }

  atBottom() {
    return this.log.scrollHeight - this.log.scrollTop - this.log.clientHeight < 40;
  }

  scrollToBottom() {
    this.log.scrollTop = this.log.scrollHeight;
  }
}
