// Who is signed in, and the tokens that say so: POST v1/auth/login (email + password) →
// an access JWT (15 minutes) and a refresh token; POST v1/auth/refresh → a new pair;
// GET v1/auth/me → {id, email}. api.js sends the access token on every call.
//
// The pair is kept in sessionStorage ("v2m.session"): it survives a reload but not the
// tab, and no other tab sees it (docs/FRONTEND.md says why). Nothing is kept in cookies.
//
// Events for the page (onChange): "signed-in" (user), "refreshed" (user: a new access
// token, so URLs that carry it are rebuilt), "expired" (message: the API refused the
// session; calls wait for a sign-in), "required" (message: the API wants credentials and
// there were none), "signed-out".

import { call } from "./http.js";

const KEY = "v2m.session";
const RETRY_MS = 15_000; // a refresh that could not reach the API is tried again

const listeners = new Set();
let session = read(); // {access, refresh, refreshAt, expiresAt, user: {id, email}} or null
let refreshing = null; // the refresh in flight, shared by every caller
let timer = 0;
let waiting = null; // calls waiting for a sign-in: {promise, resolve, userId}
if (session) schedule(session.refreshAt - Date.now()); // a session kept over a reload

function read() {
  try {
    const saved = JSON.parse(sessionStorage.getItem(KEY) || "null");
    const ok =
      saved &&
      typeof saved.access === "string" &&
      typeof saved.refresh === "string" &&
      Number.isFinite(saved.refreshAt) &&
      typeof saved.user?.id === "string";
    return ok ? saved : null;
  } catch {
    return null;
  }
}

function write() {
  try {
    if (session) sessionStorage.setItem(KEY, JSON.stringify(session));
    else sessionStorage.removeItem(KEY);
  } catch {
    /* storage disabled: the session lasts as long as the page */
  }
}

function emit(event, detail) {
  for (const listener of listeners) listener(event, detail);
}

export function onChange(listener) {
  listeners.add(listener);
}

/** The signed-in user ({id, email}), or null. */
export const user = () => session?.user ?? null;

/** True when the access token is due for renewal (or past it). */
export const stale = () => session !== null && Date.now() >= session.refreshAt;

/** The access token as it is now, for URLs (EventSource, <audio>, links); may be stale. */
export const currentToken = () => session?.access ?? null;

function keep(pair, who) {
  const now = Date.now();
  const life = Math.max(1, Number(pair.expires_in) || 900) * 1000;
  // Renewed ahead of expiry: a minute early for 15 minutes, a quarter early for short lives.
  const early = Math.min(60_000, life / 4);
  session = {
    access: pair.access_token,
    refresh: pair.refresh_token,
    refreshAt: now + life - early,
    expiresAt: now + life,
    user: { id: who.id, email: who.email },
  };
  write();
  schedule(session.refreshAt - now);
}

function schedule(ms) {
  window.clearTimeout(timer);
  if (!session) return;
  timer = window.setTimeout(() => {
    refresh().catch(() => {
      if (session) schedule(RETRY_MS); // the API was not reached: try again
    });
  }, Math.max(1000, ms));
}

function forget() {
  const userId = session?.user?.id ?? null;
  session = null;
  write();
  window.clearTimeout(timer);
  return userId;
}

function deferred(userId) {
  let resolve;
  const promise = new Promise((done) => {
    resolve = done;
  });
  return { promise, resolve, userId };
}

/** The session was refused: forget it and have calls wait for the next sign-in. */
function end(message) {
  const userId = forget();
  waiting ||= deferred(userId);
  emit("expired", message);
}

/** A new pair from the refresh token; one request however many callers ask at once. */
export function refresh() {
  if (!session) return Promise.reject(new Error("not signed in"));
  if (!refreshing) {
    const before = session;
    refreshing = call("POST", "v1/auth/refresh", { body: { refresh_token: before.refresh } })
      .then((pair) => {
        if (session !== before) return; // signed out (or in again) meanwhile
        keep(pair, before.user);
        emit("refreshed", session.user);
      })
      .catch((err) => {
        // 401 (expired, revoked user) or 422: this session is over. Anything else
        // (network, 5xx) leaves it as it is, to be tried again.
        const over = err.status >= 400 && err.status < 500 && err.status !== 429;
        if (over && session === before) end(err.message);
        throw err;
      })
      .finally(() => {
        refreshing = null;
      });
  }
  return refreshing;
}

/** The access token to send now (refreshed first when it is about to expire), or null. */
export async function token() {
  if (session && Date.now() >= session.refreshAt) {
    try {
      await refresh();
    } catch {
      /* over (session is now null) or unreachable (the old token is tried) */
    }
  }
  return currentToken();
}

/** A call sent with `used` was answered 401: refresh once. True when there is a new token. */
export async function renew(used) {
  if (!session) return false;
  if (session.access !== used) return true; // refreshed meanwhile
  try {
    await refresh();
    return session !== null;
  } catch {
    return false;
  }
}

/**
 * The API wants credentials the page does not have: ask for a sign-in. Resolves when
 * someone signs in: true when it is the same user as before (the call can be sent
 * again), false when it is someone else or the person signed out instead.
 */
export function needSignIn(message) {
  if (session) end(message);
  else if (!waiting) {
    waiting = deferred(null);
    emit("required", message);
  }
  return waiting.promise;
}

/** POST v1/auth/login, then GET v1/auth/me for who it is. Throws PageError. */
export async function signIn(email, password) {
  const pair = await call("POST", "v1/auth/login", { body: { email, password } });
  const who = await call("GET", "v1/auth/me", { token: pair.access_token });
  keep(pair, who);
  const released = waiting;
  waiting = null;
  emit("signed-in", session.user);
  released?.resolve(released.userId === null || released.userId === who.id);
  return session.user;
}

/** Forget the tokens (the API keeps no session to end: they expire on their own). */
export function signOut() {
  forget();
  const released = waiting;
  waiting = null;
  emit("signed-out");
  released?.resolve(false);
}
