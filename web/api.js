// REST client for the control plane. Tokens live in localStorage so a reload
// keeps the session; a 401 tries one refresh before giving up.

const store = window.localStorage;

export function session() {
  const raw = store.getItem('convene.session');
  return raw ? JSON.parse(raw) : null;
}

export function setSession(s) {
  if (s) store.setItem('convene.session', JSON.stringify(s));
  else store.removeItem('convene.session');
}

export class ApiError extends Error {
  constructor(problem) {
    super(problem.detail || problem.title || 'request failed');
    this.problem = problem;
    this.status = problem.status;
  }
}

async function raw(method, path, body, token) {
  const headers = { 'accept': 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (token) headers['authorization'] = `Bearer ${token}`;
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  const data = text ? JSON.parse(text) : null;
  if (!res.ok) throw new ApiError(data || { status: res.status, title: res.statusText });
  return data;
}

// Exported for the chat channel, whose `hello` needs a live access token.
export async function refresh() {
  const s = session();
  if (!s) return false;
  try {
    const t = await raw('POST', '/v1/auth/refresh', { refresh_token: s.refresh_token });
    setSession({ ...s, access_token: t.access_token, refresh_token: t.refresh_token, user: t.user || s.user });
    return true;
  } catch {
    setSession(null);
    return false;
  }
}

export async function call(method, path, body) {
  const s = session();
  try {
    return await raw(method, path, body, s && s.access_token);
  } catch (e) {
    if (e instanceof ApiError && e.status === 401 && s && await refresh()) {
      return raw(method, path, body, session().access_token);
    }
    throw e;
  }
}

// Ends the session on the server too: the refresh token stops working.
export async function logout() {
  const s = session();
  setSession(null);
  if (s && s.refresh_token) {
    try { await raw('POST', '/v1/auth/logout', { refresh_token: s.refresh_token }); } catch { /* signed out locally anyway */ }
  }
}

export async function login(loginName, password) {
  const t = await raw('POST', '/v1/auth/login', { login: loginName, password });
  setSession({ access_token: t.access_token, refresh_token: t.refresh_token, user: t.user });
  return t.user;
}

export async function register(username, email, password) {
  await raw('POST', '/v1/auth/register', { username, email, password });
  return login(username, password);
}
