// video2mp3 page: pick or drop files; each is uploaded straight to storage with a
// presigned URL, queued for conversion and followed live (Server-Sent Events, polling as
// fallback) until its MP3 can be played and downloaded. No build step, nothing external.
//
// Modules: api.js (the v1 API), auth.js (sign-in and tokens), signin.js (the sign-in
// form), http.js (one JSON call), checks.js (refusals before upload), upload.js (the
// upload queue: one PUT or in parts, cancel, resume), multipart.js (large files in parts,
// resumable), convert.js (after an upload: the review or the job), review.js (the check
// of a file's tags before converting), jobs.js (the list's pages and following a job),
// row.js (one row of the list), options.js (format, loudness, trim, tags and cover),
// prefs.js (the options form read and remembered), notify.js (notifications), drop.js
// (drag and drop), format.js (words and numbers), dom.js (node building). This one
// holds the page's state and wires them together.

import { isTerminal, whoAmI } from "./api.js";
import * as auth from "./auth.js";
import { DEFAULT_MAX_BYTES, refusal } from "./checks.js";
import { conversions } from "./convert.js";
import { $, h } from "./dom.js";
import { wireDragAndDrop } from "./drop.js";
import { formatLimit } from "./format.js";
import { follow, jobPages } from "./jobs.js";
import { loadNotify, showDeliveries, wireNotify } from "./notify.js";
import { applyFormat, trimProblem } from "./options.js";
import {
  describeQuality,
  load,
  readOptions,
  rememberOptions,
  restoreOptions,
  save,
} from "./prefs.js";
import { JobRow } from "./row.js";
import { hideSignIn, showSignIn, wireSignIn } from "./signin.js";
import { uploadQueue } from "./upload.js";

const MAX_BYTES_KEY = "v2m.maxUploadBytes";

const els = {
  starting: $('[data-role="starting"]'),
  app: $('[data-role="app"]'),
  intakeHeading: $("#intake-heading"),
  account: $('[data-role="account"]'),
  accountLabel: $('[data-role="account-label"]'),
  userEmail: $('[data-role="user-email"]'),
  signOut: $('[data-role="sign-out"]'),
  input: $("#file-input"),
  dropzone: $("#dropzone"),
  options: $("#options"),
  quality: $("#opt-quality"),
  qualityHint: $("#opt-quality-hint"),
  rate: $("#opt-rate"),
  list: $('[data-role="jobs"]'),
  empty: $('[data-role="empty"]'),
  loading: $('[data-role="loading"]'),
  more: $('[data-role="more"]'),
  notice: $('[data-role="notice"]'),
  summary: $('[data-role="summary"]'),
  announce: $('[data-role="announce"]'),
  maxSize: $('[data-role="max-size"]'),
};

const state = {
  // The server's limit, learned from upload responses and kept across visits.
  maxBytes: load(MAX_BYTES_KEY, DEFAULT_MAX_BYTES),
  rows: new Set(),
  byJobId: new Map(),
  nextCursor: null,
  ownerId: null, // whose jobs the list shows
};

// --------------------------------------------------------------------------- announcements

function announce(text) {
  // One node per message, so several files changing at once are all read out.
  const line = h("p", { text });
  els.announce.append(line);
  window.setTimeout(() => line.remove(), 10_000);
}

function onStatus(row) {
  if (!state.rows.has(row)) return; // a row of a list that was cleared (signed out)
  const name = row.filename;
  if (row.status === "uploading") announce(`${name}: uploading.`);
  else if (row.status === "review") announce(`${name}: uploaded. Check its tags, then convert.`);
  else if (row.status === "processing") announce(`${name}: converting.`);
  else if (row.status === "completed") announce(`${name}: MP3 ready to play and download.`);
  else if (row.status === "failed") announce(`${name} failed. ${row.error?.message || ""}`);
  if (row.job && isTerminal(row.status)) showDeliveries(row);
  updateSummary();
}

function updateSummary() {
  let active = 0;
  let done = 0;
  let failed = 0;
  for (const row of state.rows) {
    if (row.status === "completed") done += 1;
    else if (row.status === "failed") failed += 1;
    else active += 1;
  }
  const parts = [];
  if (active) parts.push(`${active} in progress`);
  if (done) parts.push(`${done} done`);
  if (failed) parts.push(`${failed} failed`);
  els.summary.textContent = parts.join(" · ");
  els.empty.hidden = state.rows.size > 0 || !els.loading.hidden;
}

function learnMaxBytes(value) {
  if (!Number.isFinite(value) || value <= 0) return;
  state.maxBytes = value;
  save(MAX_BYTES_KEY, value);
  els.maxSize.textContent = formatLimit(value);
}

// --------------------------------------------------------------------------- rows

const handlers = { status: onStatus, retry, dismiss: removeRow, chooseAgain };
const listed = (row) => state.rows.has(row);
const { uploaded } = conversions({
  listed,
  started(row, job) {
    state.byJobId.set(job.id, row);
    row.setJob(job);
    follow(row);
  },
});
const uploads = uploadQueue({ listed, learnMaxBytes, uploaded });
const loadJobs = jobPages({ state, els, handlers, updateSummary });

function removeRow(row) {
  row.stopFollowing?.();
  state.rows.delete(row);
  if (row.job) state.byJobId.delete(row.job.id);
  const next = row.el.nextElementSibling || row.el.previousElementSibling;
  row.el.remove();
  (next?.querySelector("button, a") || $("#jobs-heading")).focus();
  updateSummary();
}

// --------------------------------------------------------------------------- the flow

function addFiles(files) {
  const problem = trimProblem(els.options);
  $('[data-role="trim-error"]').textContent = problem;
  if (problem) {
    els.options.elements.trim_end.focus();
    return;
  }
  const options = readOptions(els);
  const review = els.options.elements.review.checked;
  // A batch goes on top of the list, in the order chosen, and uploads in that order.
  let previous = null;
  for (const file of files) {
    const row = new JobRow({ file, options, on: handlers });
    row.review = review;
    state.rows.add(row);
    if (previous) previous.el.after(row.el);
    else els.list.prepend(row.el);
    previous = row;
    const refused = refusal(file, state.maxBytes);
    if (refused) {
      row.waiting = false;
      row.setStatus("failed", refused);
    } else {
      uploads.enqueue(row);
    }
  }
  updateSummary();
}

function retry(row) {
  row.stopFollowing?.();
  if (row.job) state.byJobId.delete(row.job.id);
  row.reset(readOptions(els));
  uploads.enqueue(row);
}

/** A row from an earlier visit: the file is gone from memory, so it is chosen again. */
function chooseAgain() {
  const picker = h("input", { type: "file", accept: els.input.accept, hidden: true });
  picker.addEventListener("change", () => {
    if (picker.files?.length) addFiles(picker.files);
    picker.remove();
  });
  document.body.append(picker);
  picker.click();
}

// --------------------------------------------------------------------------- who is signed in

/** Empty the list: stop following, cancel uploads (the jobs stay on the server). */
function resetList() {
  const rows = [...state.rows];
  state.rows.clear(); // first, so the rows' last changes are not announced
  state.byJobId.clear();
  uploads.clear();
  state.nextCursor = null;
  for (const row of rows) {
    row.stopFollowing?.();
    row.cancel?.();
  }
  els.list.replaceChildren();
  els.notice.hidden = true;
  els.loading.hidden = false;
  els.more.hidden = true;
  updateSummary();
}

function showAccount(user) {
  const signedIn = auth.user() !== null;
  // Without a session the server answered anyway: it needs no sign-in (V2M_AUTH_REQUIRED=false).
  els.accountLabel.textContent = signedIn ? "Signed in as" : "No sign-in needed · using";
  els.userEmail.textContent = user.email;
  els.signOut.hidden = !signedIn;
  els.account.hidden = false;
}

/** Show the page to `user`; their list is loaded unless it is already the one shown. */
function enter(user) {
  els.starting.hidden = true;
  hideSignIn();
  showAccount(user);
  els.app.hidden = false;
  if (state.ownerId === user.id) return; // the same person again: carry on
  resetList();
  state.ownerId = user.id;
  loadJobs();
  loadNotify();
}

/** Hide the page behind the sign-in form. Work in progress waits (api.js). */
function askSignIn(message, options) {
  els.starting.hidden = true;
  els.app.hidden = true;
  els.account.hidden = true;
  showSignIn(message, options);
}

function onAuth(event, detail) {
  if (event === "signed-in") {
    enter(detail);
    els.intakeHeading.focus();
  } else if (event === "refreshed") {
    for (const row of state.rows) row.refreshUrls(); // URLs carrying the old token
  } else if (event === "expired") {
    askSignIn("Your session has ended. Sign in again to carry on.");
  } else if (event === "required") {
    askSignIn(state.ownerId ? "This server now asks you to sign in." : "");
  } else if (event === "signed-out") {
    resetList();
    state.ownerId = null;
    askSignIn("", { fresh: true });
    announce("Signed out.");
  }
}

function signOut() {
  const busy = [...state.rows].some((row) => row.status === "uploading" || row.waiting);
  if (busy && !window.confirm("Uploads in progress will stop. Sign out anyway?")) return;
  auth.signOut();
}

/** Who is this? GET v1/auth/me with the stored session, if any; a 401 asks for a sign-in. */
async function start() {
  try {
    enter(await whoAmI()); // after a sign-in, "signed-in" has already entered: no-op
  } catch (err) {
    const stored = auth.user();
    if (stored) enter(stored); // the API is unreachable: the list will say so
    else askSignIn(err.status === 401 ? "" : err.message);
  }
}

// --------------------------------------------------------------------------- wiring

function wire() {
  restoreOptions(els);
  applyFormat(els.options);
  describeQuality(els);
  els.maxSize.textContent = formatLimit(state.maxBytes);
  els.options.addEventListener("change", () => {
    applyFormat(els.options);
    rememberOptions(els);
    describeQuality(els);
  });
  els.options.addEventListener("submit", (event) => event.preventDefault());

  els.input.addEventListener("change", () => {
    addFiles(els.input.files || []);
    els.input.value = ""; // so that choosing the same file again fires change again
  });
  els.dropzone.addEventListener("click", (event) => {
    if (event.target.closest("label, input")) return;
    els.input.click();
  });
  wireDragAndDrop(els.dropzone, { open: () => !els.app.hidden, addFiles });

  els.more.addEventListener("click", loadJobs);
  els.signOut.addEventListener("click", signOut);
  auth.onChange(onAuth);
  wireNotify();
  wireSignIn();
  window.addEventListener("beforeunload", (event) => {
    const busy = [...state.rows].some((row) => row.status === "uploading" || row.waiting);
    if (busy) event.preventDefault(); // leaving would lose the uploads in flight
  });

  start();
}

wire();
