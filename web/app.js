// convene web client: hash-routed views over the REST API, the conference
// page (room.js) over the signaling WebSocket, and chats (chats.js) over the
// user channel (chat.js). Plain ES modules, no build step.
import { call, login, logout, register, session } from './api.js';
import { h, errorText, formView, input } from './dom.js';
import { Room } from './room.js';
import { ChatChannel } from './chat.js';
import { postsTab } from './posts.js';
import { chatList, chatView } from './chats.js';

const app = document.getElementById('app');
let currentRoom = null;
// One user channel per tab, open while signed in (it also makes us "online").
const channel = new ChatChannel();
// Cleanups of the view on screen (listeners, timers), run on navigation.
let leaving = [];
// Bumped per navigation, so a view that finishes loading after the user
// moved on is dropped instead of replacing the newer one.
let routeGen = 0;

const views = {
  login() {
    return formView('Sign in', [input('login', 'text', 'username or email'), input('password', 'password')], 'Sign in',
      async ({ login: l, password }) => { await login(l, password); go('#/teams'); },
      h('p', {}, 'No account? ', h('a', { href: '#/register' }, 'Register')));
  },
  register() {
    return formView('Register', [input('username'), input('email', 'email'), input('password', 'password', 'password (8+ characters)')], 'Create account',
      async ({ username, email, password }) => { await register(username, email, password); go('#/teams'); });
  },
  async teams() {
    const page = await call('GET', '/v1/teams?limit=100');
    const list = h('ul', { class: 'plain', 'data-test': 'teams' },
      page.items.map((t) => h('li', {}, h('a', { href: `#/teams/${t.id}` }, t.name), h('span', { class: 'muted' }, t.role))));
    return h('div', {},
      h('div', { class: 'card' }, h('h2', {}, 'Your teams'), page.items.length ? list : h('p', { class: 'muted' }, 'No teams yet.')),
      formView('Create a team', [input('name'), h('input', { name: 'description', placeholder: 'description' })], 'Create',
        async (d) => { const t = await call('POST', '/v1/teams', d); go(`#/teams/${t.id}`); }),
      formView('Join a team', [input('code', 'text', 'join code')], 'Ask to join',
        async ({ code }) => {
          const r = await call('POST', '/v1/teams/join', { code });
          if (r.status === 'member') go(`#/teams/${r.team_id}`);
          else alert('Request sent; an admin of the team will accept it.');
        }));
  },
  async team(id, tab) {
    const team = await call('GET', `/v1/teams/${id}`);
    const tabLink = (hash, label, test, active) => h('a', { href: hash, 'data-test': test, id: test, class: active ? 'tab active' : 'tab' }, label);
    const posts = tab === 'posts';
    return h('div', {}, h('h1', {}, team.name), h('p', { class: 'muted' }, team.description || ''),
      h('nav', { class: 'tabs' },
        tabLink(`#/teams/${id}`, 'Overview', 'tab-overview', !posts),
        tabLink(`#/teams/${id}/posts`, 'Posts', 'tab-posts', posts)),
      posts ? await postsTab(team) : await teamOverview(team));
  },
  chats(id, ctx) {
    return chatList(ctx);
  },
  chat(id, ctx) {
    return chatView(id, ctx);
  },
  async conf(id) {
    const conf = await call('GET', `/v1/conferences/${id}`);
    return prejoin(conf);
  },
};

// Join code, requests, conferences and members: the team page's first tab.
async function teamOverview(team) {
  const { id } = team;
  const [members, confs] = await Promise.all([
    call('GET', `/v1/teams/${id}/members?limit=200`),
    call('GET', `/v1/teams/${id}/conferences?limit=100`),
  ]);
  const admin = team.role === 'admin';
  const root = h('div', {});
  if (admin) {
    root.append(h('div', { class: 'card' }, h('h3', {}, 'Join code'),
      h('code', { 'data-test': 'join-code' }, team.join_code || ''), ' ',
      h('button', { class: 'secondary', onclick: async () => { await call('POST', `/v1/teams/${id}/join-code/rotate`); route(); } }, 'Rotate')));
    const reqs = await call('GET', `/v1/teams/${id}/requests?limit=100`);
    const pending = (reqs.items || []).filter((r) => r.status === 'pending');
    root.append(h('div', { class: 'card' }, h('h3', {}, 'Pending requests'),
      pending.length ? h('ul', { class: 'plain', 'data-test': 'requests' }, pending.map((r) => h('li', {}, r.username,
        h('button', { onclick: async () => { await call('POST', `/v1/teams/${id}/requests/${r.id}/accept`); route(); } }, 'Accept'),
        h('button', { class: 'secondary', onclick: async () => { await call('POST', `/v1/teams/${id}/requests/${r.id}/reject`); route(); } }, 'Reject'))))
        : h('p', { class: 'muted' }, 'None.')));
  }
  root.append(h('div', { class: 'card' }, h('h3', {}, 'Conferences'),
    h('ul', { class: 'plain', 'data-test': 'conferences' }, confs.items.map((c) => h('li', {},
      h('a', { href: `#/conf/${c.id}` }, c.title), c.ended_at ? h('span', { class: 'muted' }, 'ended') : '',
      c.waiting_hall ? h('span', { class: 'muted' }, 'waiting hall') : '')))));
  root.append(formView('New conference', [input('title'),
    h('label', {}, h('input', { type: 'checkbox', name: 'waiting_hall', checked: true, id: 'f-waiting_hall' }), ' waiting hall')], 'Create',
    async (d) => {
      const c = await call('POST', `/v1/teams/${id}/conferences`, { title: d.title, starts_at: new Date().toISOString(), waiting_hall: d.waiting_hall === 'on' });
      go(`#/conf/${c.id}`);
    }));
  root.append(h('div', { class: 'card' }, h('h3', {}, 'Members'),
    h('ul', { class: 'plain', 'data-test': 'members' }, members.items.map((m) => h('li', {}, m.username, h('span', { class: 'muted' }, m.role))))));
  return root;
}

// Device check before joining: preview, pick camera and microphone.
async function prejoin(conf) {
  const video = h('video', { class: 'preview', autoplay: true, muted: true, playsinline: true });
  const camSel = h('select', { id: 'camera' });
  const micSel = h('select', { id: 'microphone' });
  const err = h('div', { class: 'error' });
  let stream = null;
  async function preview() {
    if (stream) stream.getTracks().forEach((t) => t.stop());
    try {
      stream = await navigator.mediaDevices.getUserMedia({
        video: camSel.value ? { deviceId: { exact: camSel.value }, width: 1280, height: 720 } : { width: 1280, height: 720 },
        audio: micSel.value ? { deviceId: { exact: micSel.value } } : true,
      });
      video.srcObject = stream;
    } catch (e) { err.textContent = `camera/microphone: ${e.message}`; }
  }
  await preview();
  const devices = await navigator.mediaDevices.enumerateDevices();
  for (const d of devices) {
    const opt = h('option', { value: d.deviceId }, d.label || d.kind);
    if (d.kind === 'videoinput') camSel.append(opt);
    if (d.kind === 'audioinput') micSel.append(opt);
  }
  camSel.onchange = preview;
  micSel.onchange = preview;
  const join = h('button', { id: 'join', onclick: async () => {
    join.disabled = true;
    try {
      const grant = await call('POST', `/v1/conferences/${conf.id}/join`);
      currentRoom = new Room({ conf, grant, stream, user: session().user, mount: app });
      await currentRoom.start();
    } catch (e) { err.textContent = errorText(e); join.disabled = false; }
  } }, 'Join');
  return h('div', { class: 'card' }, h('h1', {}, conf.title), video,
    h('div', { class: 'controls' }, camSel, micSel, join), err);
}

function go(hash) { location.hash = hash; }

// Views that take no id; `#/teams/{id}` and `#/chats/{id}` are routed below.
const pages = { login: views.login, register: views.register, teams: views.teams, chats: views.chats, conf: views.conf };

async function route() {
  if (currentRoom) { currentRoom.leave(); currentRoom = null; }
  for (const fn of leaving.splice(0)) fn();
  const gen = ++routeGen;
  const cleanups = [];
  leaving = cleanups;
  const ctx = { channel, go, onLeave: (fn) => cleanups.push(fn) };
  const s = session();
  document.getElementById('whoami').textContent = s ? s.user.username : '';
  document.getElementById('logout').hidden = !s;
  document.getElementById('nav-chats').hidden = !s;
  const [, name, id, sub] = (location.hash || '#/teams').split('/');
  const open = name === 'login' || name === 'register';
  if (!s) channel.stop();
  if (!s && !open) return go('#/login');
  if (s) channel.start();
  app.replaceChildren(h('p', { class: 'muted' }, 'Loading…'));
  let el;
  try {
    if (name === 'teams' && id) el = await views.team(id, sub);
    else if (name === 'chats' && id) el = await views.chat(id, ctx);
    else el = await (pages[name] || views.teams)(id, ctx);
  } catch (e) {
    el = h('div', { class: 'card error' }, errorText(e));
  }
  if (gen !== routeGen) { for (const fn of cleanups) fn(); return; }
  app.replaceChildren(el);
}

document.getElementById('logout').onclick = () => { channel.stop(); logout(); go('#/login'); };
window.addEventListener('hashchange', route);
route();
