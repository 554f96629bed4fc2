// The user channel: one WebSocket per signed-in tab (`/v1/ws`, `hello` with
// the access token) carrying chat messages, edits, read receipts, typing and
// presence for every chat of the user (docs/protocol.md). Views subscribe
// with on(); the chat on screen is followed so that every (re)connect asks
// the server for what it missed with `sync`.
//
// Also the per-chat Timeline: messages keyed by seq, so the same message
// arriving from REST, from `sync` and live is shown once, and edits apply in
// version order however they interleave with the messages.
import { session, refresh } from './api.js';

const PING_MS = 5000;
const TYPING_EVERY_MS = 2000;
// Reconnect delays; jittered so a server restart is not hit by every tab at once.
const BACKOFF_MS = [500, 1000, 2000, 5000, 10000];

export class ChatChannel {
  constructor() {
    this.listeners = new Set();
    this.followed = new Map(); // chat_id -> () => highest seq shown
    this.online = new Set();
    this.lastTyping = new Map();
    this.userId = null;
    this.ready = false;
    this.stopped = true;
    this.failures = 0;
    window.conveneChannel = this; // for tests and diagnostics
  }

  start() {
    if (!this.stopped) return;
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.retry);
    clearInterval(this.pinger);
    const ws = this.ws;
    this.ws = null;
    if (ws) ws.close(1000);
    this.setReady(false);
  }

  connect() {
    if (this.stopped || !session()) return;
    const ws = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/v1/ws`);
    this.ws = ws;
    ws.onopen = () => {
      const s = session();
      if (s) ws.send(JSON.stringify({ type: 'hello', access_token: s.access_token }));
    };
    ws.onmessage = (ev) => { if (this.ws === ws) this.onMessage(JSON.parse(ev.data)); };
    ws.onclose = () => {
      // A socket we replaced or closed on purpose reports nothing.
      if (this.ws !== ws) return;
      this.ws = null;
      clearInterval(this.pinger);
      this.setReady(false);
      this.reconnectLater();
    };
    clearInterval(this.pinger);
    this.pinger = setInterval(() => this.send({ type: 'ping' }), PING_MS);
  }

  reconnectLater() {
    if (this.stopped) return;
    const base = BACKOFF_MS[Math.min(this.failures, BACKOFF_MS.length - 1)];
    this.failures += 1;
    clearTimeout(this.retry);
    this.retry = setTimeout(() => this.connect(), base * (0.5 + Math.random()));
  }

  // Drops the socket and lets onclose reconnect (with backoff).
  reconnect() {
    if (this.ws) this.ws.close(4000, 'reconnect');
  }

  send(msg) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(msg));
    return true;
  }

  on(fn) {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  emit(msg) {
    for (const fn of [...this.listeners]) {
      try { fn(msg); } catch (e) { console.warn('chat listener', e); }
    }
  }

  setReady(ready) {
    if (this.ready === ready) return;
    this.ready = ready;
    if (!ready) this.online.clear();
    this.emit({ type: 'channel', ready });
  }

  isOnline(userId) {
    return userId === this.userId ? this.ready : this.online.has(userId);
  }

  // Follows a chat: after each `welcome` (and now, if connected) the server
  // sends every message after lastSeq(), then live ones.
  follow(chatId, lastSeq) {
    this.followed.set(chatId, lastSeq);
    if (this.ready) this.sync(chatId, lastSeq());
    return () => { if (this.followed.get(chatId) === lastSeq) this.followed.delete(chatId); };
  }

  sync(chatId, afterSeq) {
    this.send({ type: 'sync', chat_id: chatId, after_seq: afterSeq });
  }

  // Called on every keystroke; tells the others at most every 2 s.
  typing(chatId) {
    const now = Date.now();
    if (!this.ready || now - (this.lastTyping.get(chatId) || 0) < TYPING_EVERY_MS) return;
    if (this.send({ type: 'typing', chat_id: chatId })) this.lastTyping.set(chatId, now);
  }

  onMessage(m) {
    switch (m.type) {
      case 'welcome':
        this.userId = m.user_id;
        this.online = new Set(m.online);
        this.failures = 0;
        this.ready = true;
        for (const [chatId, lastSeq] of this.followed) this.sync(chatId, lastSeq());
        this.emit(m);
        return;
      case 'presence':
        if (m.online) this.online.add(m.user_id); else this.online.delete(m.user_id);
        this.emit(m);
        return;
      case 'pong':
        return;
      case 'error':
        if (!this.ready) return this.helloFailed(m);
        console.warn('chat channel', m);
        if (this.unknownChat(m)) this.reconnect();
        this.emit(m);
        return;
      default:
        this.emit(m);
    }
  }

  // A chat created or joined after `hello` may not be on this connection
  // yet; a new `hello` picks up every chat of the user. At most every 10 s.
  unknownChat(m) {
    if (m.code !== 'not_found' || Date.now() - (this.rehelloAt || 0) < 10000) return false;
    if (![...this.followed.keys()].some((id) => String(m.message).includes(id))) return false;
    this.rehelloAt = Date.now();
    return true;
  }

  // `hello` was refused: an expired access token is refreshed first; any
  // other failure (e.g. a node without the user channel) is retried with
  // growing delays rather than in a tight loop.
  async helloFailed(m) {
    console.warn('chat channel hello', m);
    if (m.code === 'unauthorized' && !(await refresh())) {
      this.stop();
      return;
    }
    this.reconnect();
  }
}

// One chat's messages as the client shows them, keyed by seq.
export class Timeline {
  constructor() {
    this.bySeq = new Map();
    // Edits whose message is not shown yet, by seq; applied when it arrives.
    this.held = new Map();
  }

  get(seq) { return this.bySeq.get(seq); }

  get size() { return this.bySeq.size; }

  // Shows a message unless the same or a newer version is shown already.
  // Returns whether anything changed.
  add(m) {
    const shown = this.bySeq.get(m.seq);
    if (shown && shown.version >= m.version) return false;
    let msg = m;
    const held = this.held.get(m.seq);
    if (held) {
      this.held.delete(m.seq);
      if (held.version > m.version) msg = editedCopy(m, held);
    }
    this.bySeq.set(m.seq, msg);
    return true;
  }

  // Applies a `message_edited`: 'applied', 'stale' (an equal or newer
  // version is shown) or 'held' (its message is not shown yet).
  edit(e) {
    const shown = this.bySeq.get(e.seq);
    if (!shown) {
      const held = this.held.get(e.seq);
      if (!held || held.version < e.version) this.held.set(e.seq, e);
      return 'held';
    }
    if (e.version <= shown.version) return 'stale';
    this.bySeq.set(e.seq, editedCopy(shown, e));
    return 'applied';
  }

  lastSeq() {
    let max = 0;
    for (const seq of this.bySeq.keys()) if (seq > max) max = seq;
    return max;
  }

  firstSeq() {
    let min = Infinity;
    for (const seq of this.bySeq.keys()) if (seq < min) min = seq;
    return min === Infinity ? 0 : min;
  }

  messages() {
    return [...this.bySeq.values()].sort((a, b) => a.seq - b.seq);
  }
}

function editedCopy(m, e) {
  return { ...m, text: e.text, version: e.version, edited_at: m.edited_at || new Date().toISOString() };
}

// crypto.randomUUID exists only in secure contexts (https, localhost); a
// plain-http deployment still needs a unique client_id per message.
export function newClientId() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const hex = [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
