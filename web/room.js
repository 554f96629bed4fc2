// The conference page: one RTCPeerConnection to the SFU, driven by the
// signaling WebSocket (messages in docs/protocol.md). The SFU offers when
// tracks come and go; this side is the polite peer and answers in order.

const PING_MS = 5000;
const SIMULCAST = [
  { rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150_000 },
  { rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 500_000 },
  { rid: 'f', maxBitrate: 1_500_000 },
];

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (v === true) el.setAttribute(k, '');
    else if (v !== false && v != null) el.setAttribute(k, v);
  }
  for (const c of children.flat()) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

export class Room {
  constructor({ conf, grant, stream, user, mount }) {
    this.conf = conf;
    this.grant = grant;
    this.token = grant.token;
    this.stream = stream;
    this.user = user;
    this.mount = mount;
    this.participants = new Map();
    this.tracks = new Map();
    this.myTracks = [];
    // Tracks of our own screen shares: declared `screen_share` with each offer.
    this.screenTracks = new Set();
    this.resumeToken = null;
    this.closed = false;
    this.negotiation = Promise.resolve();
    this.joinedAt = null;
    window.conveneRoom = this;
  }

  // The join answer says (team admins moderate too, without being listed in
  // conf.moderators); older servers did not, hence the fallback.
  isModerator() {
    return this.grant.moderator ?? this.conf.moderators.includes(this.user.id);
  }

  async start() {
    this.startedAt = performance.now();
    this.connect();
  }

  connect() {
    const ws = new WebSocket(this.grant.signaling_url);
    this.ws = ws;
    ws.onopen = () => this.send({ type: 'join', token: this.token, ...(this.resumeToken ? { resume_token: this.resumeToken } : {}) });
    ws.onmessage = (ev) => this.onMessage(JSON.parse(ev.data));
    ws.onclose = (ev) => {
      clearInterval(this.pinger);
      if (this.closed) return;
      // 1000 ends the session on purpose and 4000 means another socket took
      // it over; anything else (a broken socket, 4001 after a stall) is
      // resumed within the server's grace period.
      if (this.resumeToken && ev.code !== 1000 && ev.code !== 4000) {
        setTimeout(() => this.connect(), 1000);
      } else if (ev.code !== 1000) {
        this.status(`disconnected (${ev.code} ${ev.reason})`);
      }
    };
    clearInterval(this.pinger);
    this.pinger = setInterval(() => this.send({ type: 'ping' }), PING_MS);
  }

  send(msg) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(msg));
  }

  status(text) {
    const el = document.getElementById('status');
    if (el) el.textContent = text;
  }

  onMessage(m) {
    switch (m.type) {
      case 'waiting': return this.renderWaiting(m.position);
      case 'admitted': this.token = m.token; return;
      case 'denied': return this.renderEnd(`The moderator turned you away${m.reason ? `: ${m.reason}` : '.'}`);
      case 'joined': return this.onJoined(m);
      case 'participant_joined': this.participants.set(m.participant.participant_id, m.participant); return this.renderPeople();
      case 'participant_left': this.participants.delete(m.participant_id); this.removeTile(m.participant_id); return this.renderPeople();
      case 'track_published':
        this.tracks.set(m.track.track_id, m.track);
        if (m.track.participant_id === this.participantId) this.myTracks.push(m.track);
        return;
      case 'track_unpublished': this.tracks.delete(m.track_id); return;
      case 'track_muted': return;
      case 'offer': return this.onOffer(m.sdp);
      case 'answer': return this.queue(() => this.pc.setRemoteDescription({ type: 'answer', sdp: m.sdp }));
      case 'media_ended': return this.onMediaEnded(m);
      case 'active_speakers': return this.highlight(m.participant_ids);
      case 'chat': return this.appendChat(`${m.from.name}`, m.text);
      case 'lobby_message': return this.appendChat(`${m.from_name} (waiting hall)`, m.text);
      case 'waiting_updated': return this.renderWaitingList(m.entries);
      case 'mute_requested': return this.setMic(false);
      case 'moved_to_waiting': this.closePc(); return;
      case 'removed': return this.renderEnd('A moderator removed you from the conference.');
      case 'conference_ended': return this.renderEnd('The conference has ended.');
      case 'error': console.warn('signaling error', m); return this.status(`${m.code}: ${m.message}`);
      default: return;
    }
  }

  renderWaiting(position) {
    this.closePc();
    const log = h('div', { id: 'chat-log' });
    const input = h('input', { placeholder: 'message the moderators', id: 'lobby-text' });
    this.mount.replaceChildren(h('div', { class: 'card', 'data-test': 'waiting' },
      h('h1', {}, this.conf.title),
      h('p', {}, 'Waiting for a moderator to let you in. Position in queue: ', h('strong', { id: 'position' }, String(position))),
      h('video', { class: 'preview', autoplay: true, muted: true, playsinline: true, srcObject: null }),
      h('div', { class: 'card' }, h('h3', {}, 'Waiting-hall chat'), log,
        h('form', { class: 'inline', onsubmit: (e) => { e.preventDefault(); if (input.value) { this.send({ type: 'lobby_message', text: input.value }); this.appendChat('you', input.value); input.value = ''; } } }, input, h('button', {}, 'Send'))),
      h('div', { id: 'status', class: 'muted' })));
    const v = this.mount.querySelector('video');
    v.srcObject = this.stream;
  }

  renderEnd(text) {
    this.closed = true;
    this.closePc();
    if (this.ws) this.ws.close(1000);
    this.mount.replaceChildren(h('div', { class: 'card', 'data-test': 'ended' }, h('h2', {}, text), h('a', { href: `#/teams/${this.conf.team_id}` }, 'Back to the team')));
  }

  async onJoined(m) {
    this.participantId = m.participant_id;
    this.resumeToken = m.resume_token;
    this.iceServers = m.ice_servers;
    for (const p of m.participants) this.participants.set(p.participant_id, p);
    for (const t of m.tracks) this.tracks.set(t.track_id, t);
    this.joinedAt = performance.now() - this.startedAt;
    this.renderRoom();
    if (!this.pc) await this.setupPc(m.ice_servers);
  }

  // The SFU dropped a media session. Ours: a new peer connection and offer on
  // the same socket start another one. Someone else's: its tile goes until
  // its tracks come back.
  onMediaEnded(m) {
    if (m.participant_id !== this.participantId) return this.removeTile(m.participant_id);
    this.status(`media lost (${m.reason}); reconnecting`);
    this.myTracks = [];
    this.closePc();
    return this.setupPc(this.iceServers);
  }

  async setupPc(iceServers) {
    const pc = new RTCPeerConnection({ iceServers: iceServers || [], bundlePolicy: 'max-bundle' });
    this.pc = pc;
    pc.ontrack = (ev) => this.onTrack(ev);
    pc.onconnectionstatechange = () => this.status(`media: ${pc.connectionState}`);
    const audio = this.stream && this.stream.getAudioTracks()[0];
    const video = this.stream && this.stream.getVideoTracks()[0];
    if (audio) pc.addTransceiver(audio, { direction: 'sendonly', streams: [this.stream] });
    if (video) pc.addTransceiver(video, { direction: 'sendonly', streams: [this.stream], sendEncodings: SIMULCAST });
    await this.offer();
  }

  // All SDP work runs one step at a time so an SFU offer never interleaves
  // with our own.
  queue(step) {
    this.negotiation = this.negotiation.then(step).catch((e) => { console.warn('negotiation', e); this.status(`negotiation: ${e.message}`); });
    return this.negotiation;
  }

  offer() {
    return this.queue(async () => {
      const offer = await this.pc.createOffer();
      await this.pc.setLocalDescription(offer);
      this.send({ type: 'offer', sdp: this.pc.localDescription.sdp, sources: this.sources() });
    });
  }

  // What each of our sending m-lines carries, by mid (mids exist once the
  // offer is the local description).
  sources() {
    const out = {};
    for (const t of this.pc.getTransceivers()) {
      const track = t.sender && t.sender.track;
      if (!t.mid || !track) continue;
      const screen = this.screenTracks.has(track);
      out[t.mid] = track.kind === 'audio'
        ? (screen ? 'screen_share_audio' : 'microphone')
        : (screen ? 'screen_share' : 'camera');
    }
    return out;
  }

  onOffer(sdp) {
    return this.queue(async () => {
      await this.pc.setRemoteDescription({ type: 'offer', sdp });
      const answer = await this.pc.createAnswer();
      await this.pc.setLocalDescription(answer);
      this.send({ type: 'answer', sdp: this.pc.localDescription.sdp });
    });
  }

  closePc() {
    if (this.pc) { this.pc.close(); this.pc = null; }
  }

  onTrack(ev) {
    // The SFU names a participant's stream by its id, and a screen share's
    // `{id}|screen`: a tile each.
    const pid = (ev.streams[0] && ev.streams[0].id) || 'unknown';
    const tile = this.tile(pid);
    const video = tile.querySelector('video');
    if (!video.srcObject) video.srcObject = new MediaStream();
    video.srcObject.addTrack(ev.track);
    ev.track.onended = () => video.srcObject && video.srcObject.removeTrack(ev.track);
  }

  tile(stream) {
    let el = document.getElementById(`tile-${stream}`);
    if (!el) {
      const screen = stream.endsWith('|screen');
      const pid = screen ? stream.slice(0, -'|screen'.length) : stream;
      const p = this.participants.get(pid);
      const name = `${p ? p.name : pid}${screen ? ' (screen)' : ''}`;
      el = h('div', { class: screen ? 'tile screen' : 'tile', id: `tile-${stream}`, 'data-participant': pid },
        h('video', { autoplay: true, playsinline: true }), h('span', { class: 'name' }, name));
      document.getElementById('grid').append(el);
    }
    return el;
  }

  removeTile(pid) {
    for (const id of [`tile-${pid}`, `tile-${pid}|screen`]) {
      const el = document.getElementById(id);
      if (el) el.remove();
    }
  }

  highlight(ids) {
    document.querySelectorAll('.tile:not(.screen)').forEach((t) => t.classList.toggle('speaking', ids[0] === t.dataset.participant));
  }

  renderRoom() {
    const me = h('div', { class: 'tile', id: 'tile-me', 'data-participant': this.participantId },
      h('video', { autoplay: true, muted: true, playsinline: true }), h('span', { class: 'name' }, `${this.user.username} (you)`));
    me.querySelector('video').srcObject = this.stream;
    const chatInput = h('input', { placeholder: 'message everyone', id: 'chat-text' });
    const moderator = this.isModerator();
    this.mount.replaceChildren(h('div', { class: 'room', 'data-test': 'room' },
      h('div', {},
        h('h1', {}, this.conf.title),
        h('div', { class: 'grid', id: 'grid' }, me),
        h('div', { class: 'controls' },
          h('button', { id: 'mic', onclick: () => this.setMic(!this.micOn()) }, 'Mute mic'),
          h('button', { id: 'cam', onclick: () => this.setCam(!this.camOn()) }, 'Stop camera'),
          h('button', { id: 'share', class: 'secondary', onclick: () => this.shareScreen() }, 'Share screen'),
          moderator ? h('button', { id: 'end', class: 'danger', onclick: () => this.send({ type: 'end_conference' }) }, 'End for all') : '',
          h('button', { id: 'leave', class: 'danger', onclick: () => { this.send({ type: 'leave' }); this.renderEnd('You left the conference.'); } }, 'Leave')),
        h('div', { id: 'status', class: 'muted' })),
      h('div', { class: 'side' },
        h('div', { class: 'card' }, h('h3', {}, 'People'), h('ul', { class: 'plain', id: 'people' })),
        moderator ? h('div', { class: 'card' }, h('h3', {}, 'Waiting hall'),
          h('button', { id: 'admit-all', onclick: () => this.send({ type: 'admit_all' }) }, 'Admit all'),
          h('ul', { class: 'plain', id: 'waiting-list' })) : '',
        h('div', { class: 'card' }, h('h3', {}, 'Chat'), h('div', { id: 'chat-log' }),
          h('form', { class: 'inline', onsubmit: (e) => { e.preventDefault(); if (chatInput.value) { this.send({ type: 'chat', text: chatInput.value }); chatInput.value = ''; } } }, chatInput, h('button', {}, 'Send'))))));
    this.renderPeople();
    if (this.pendingWaiting) this.renderWaitingList(this.pendingWaiting);
  }

  renderPeople() {
    const ul = document.getElementById('people');
    if (!ul) return;
    const moderator = this.isModerator();
    ul.replaceChildren(h('li', {}, `${this.user.username} (you)`), ...[...this.participants.values()].map((p) => h('li', {}, p.name,
      moderator ? h('button', { class: 'secondary', onclick: () => this.send({ type: 'mute_participant', participant_id: p.participant_id, video: false }) }, 'Mute') : '',
      moderator ? h('button', { class: 'secondary', onclick: () => this.send({ type: 'move_to_waiting', participant_id: p.participant_id }) }, 'To waiting hall') : '',
      moderator ? h('button', { class: 'danger', onclick: () => this.send({ type: 'remove', participant_id: p.participant_id }) }, 'Remove') : '')));
  }

  renderWaitingList(entries) {
    this.pendingWaiting = entries;
    const ul = document.getElementById('waiting-list');
    if (!ul) return;
    ul.replaceChildren(...entries.map((e) => h('li', { 'data-user': e.user_id, class: 'waiter' },
      h('span', {}, `${e.position}. ${e.name}`),
      h('button', { class: 'admit', onclick: () => this.send({ type: 'admit', user_id: e.user_id }) }, 'Admit'),
      h('button', { class: 'secondary deny', onclick: () => this.send({ type: 'deny', user_id: e.user_id, reason: prompt('Reason (optional)') || '' }) }, 'Deny'),
      h('button', { class: 'secondary', onclick: () => { const text = prompt('Message'); if (text) this.send({ type: 'lobby_message', text, to: e.user_id }); } }, 'Message'))));
  }

  appendChat(from, text) {
    const log = document.getElementById('chat-log');
    if (!log) return;
    log.append(h('div', {}, h('span', { class: 'from' }, `${from}: `), text));
    log.scrollTop = log.scrollHeight;
  }

  micOn() { const t = this.stream && this.stream.getAudioTracks()[0]; return !!(t && t.enabled); }
  camOn() { const t = this.stream && this.stream.getVideoTracks()[0]; return !!(t && t.enabled); }

  setMic(on) {
    const t = this.stream && this.stream.getAudioTracks()[0];
    if (t) t.enabled = on;
    const b = document.getElementById('mic');
    if (b) { b.textContent = on ? 'Mute mic' : 'Unmute mic'; b.classList.toggle('off', !on); }
    this.announceMute('audio', !on);
  }

  setCam(on) {
    const t = this.stream && this.stream.getVideoTracks()[0];
    if (t) t.enabled = on;
    const b = document.getElementById('cam');
    if (b) { b.textContent = on ? 'Stop camera' : 'Start camera'; b.classList.toggle('off', !on); }
    this.announceMute('video', !on);
  }

  announceMute(kind, muted) {
    for (const t of this.myTracks) if (t.kind === kind) this.send({ type: 'mute', track_id: t.track_id, muted });
  }

  async shareScreen() {
    if (!this.pc) return;
    const screen = await navigator.mediaDevices.getDisplayMedia({ video: true });
    const track = screen.getVideoTracks()[0];
    this.screenTracks.add(track);
    const tr = this.pc.addTransceiver(track, { direction: 'sendonly', streams: [screen] });
    track.onended = () => { tr.sender.replaceTrack(null); tr.direction = 'inactive'; this.offer(); };
    await this.offer();
  }

  leave() {
    this.closed = true;
    this.send({ type: 'leave' });
    clearInterval(this.pinger);
    this.closePc();
    if (this.ws) this.ws.close(1000);
    if (this.stream) this.stream.getTracks().forEach((t) => t.stop());
  }

  // For tests and diagnostics: what arrived, per remote participant.
  async stats() {
    if (!this.pc) return null;
    const report = await this.pc.getStats();
    const out = { videoFramesDecoded: 0, audioPacketsReceived: 0, inbound: [] };
    report.forEach((s) => {
      if (s.type !== 'inbound-rtp') return;
      out.inbound.push({ kind: s.kind, framesDecoded: s.framesDecoded || 0, packetsReceived: s.packetsReceived || 0 });
      if (s.kind === 'video') out.videoFramesDecoded += s.framesDecoded || 0;
      if (s.kind === 'audio') out.audioPacketsReceived += s.packetsReceived || 0;
    });
    out.joinMs = this.joinedAt;
    return out;
  }
}
