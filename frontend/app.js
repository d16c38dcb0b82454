// video2mp3 page: pick or drop files; each is uploaded straight to storage with a
// presigned URL, queued for conversion and followed live (Server-Sent Events, polling as
// fallback) until its MP3 can be played and downloaded. No build step, nothing external.
//
// Modules: api.js (the v1 API), auth.js (sign-in and tokens), signin.js (the sign-in
// form), http.js (one JSON call), checks.js (refusals before upload), row.js (one row of
// the list), options.js (format, loudness, trim, tags and cover), review.js (the check
// of a file's tags before converting), format.js (words and numbers), dom.js (node
// building), multipart.js (large files in parts, resumable). This one holds the
// page's state and wires them together.

import {
  PageError,
  abortUpload,
  coverDataUrl,
  createJob,
  createUpload,
  followJob,
  isTerminal,
  listJobs,
  probeUpload,
  putToStorage,
  whoAmI,
} from "./api.js";
import * as auth from "./auth.js";
import { DEFAULT_MAX_BYTES, declaredType, refusal } from "./checks.js";
import { $, h } from "./dom.js";
import { formatLimit } from "./format.js";
import * as multipart from "./multipart.js";
import { loadNotify, showDeliveries, wireNotify } from "./notify.js";
import { applyFormat, readOutputOptions, trimProblem } from "./options.js";
import { buildReview } from "./review.js";
import { JobRow } from "./row.js";
import { hideSignIn, showSignIn, wireSignIn } from "./signin.js";

const MAX_PARALLEL_UPLOADS = 3; // files uploading at once; the others wait their turn
const PAGE_SIZE = 20;
const STORE = { options: "v2m.options", maxBytes: "v2m.maxUploadBytes" };

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

function load(key, fallback) {
  try {
    const raw = localStorage.getItem(key);
    return raw === null ? fallback : JSON.parse(raw);
  } catch {
    return fallback;
  }
}

function save(key, value) {
  try {
    localStorage.setItem(key, JSON.stringify(value));
  } catch {
    /* private mode or a full store: the page works without it */
  }
}

const state = {
  // The server's limit, learned from upload responses and kept across visits.
  maxBytes: load(STORE.maxBytes, DEFAULT_MAX_BYTES),
  rows: new Set(),
  byJobId: new Map(),
  waiting: [], // rows waiting for an upload slot
  uploading: 0,
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
  save(STORE.maxBytes, value);
  els.maxSize.textContent = formatLimit(value);
}

// --------------------------------------------------------------------------- options

function readOptions() {
  const options = readOutputOptions(els.options);
  const [kind, value] = els.quality.value.split(":");
  if (!els.quality.disabled && kind === "q") options.quality = Number(value);
  if (!els.quality.disabled && kind === "b") options.bitrate_kbps = Number(value);
  const channels = new FormData(els.options).get("channels");
  if (channels) options.channels = Number(channels);
  if (!els.rate.disabled && els.rate.value) options.sample_rate_hz = Number(els.rate.value);
  return options;
}

function describeQuality() {
  els.qualityHint.textContent = els.quality.value.startsWith("q:")
    ? "Variable bitrate: the best sound for its size."
    : "Constant bitrate: a predictable size that every player handles.";
}

function restoreOptions() {
  const saved = load(STORE.options, null);
  if (!saved || typeof saved !== "object") return;
  if ([...els.quality.options].some((o) => o.value === saved.quality)) {
    els.quality.value = saved.quality;
  }
  const channels = saved.channels === "1" ? "1" : "";
  const radio = els.options.querySelector(`input[name="channels"][value="${channels}"]`);
  if (radio) radio.checked = true;
  if ([...els.rate.options].some((o) => o.value === saved.rate)) els.rate.value = saved.rate;
  const format = els.options.elements.format;
  if ([...format.options].some((o) => o.value === saved.format)) format.value = saved.format;
  const cover = els.options.elements.cover;
  if ([...cover.options].some((o) => o.value === saved.cover)) cover.value = saved.cover;
  els.options.elements.review.checked = saved.review === true;
  applyFormat(els.options);
}

function rememberOptions() {
  save(STORE.options, {
    quality: els.quality.value,
    channels: new FormData(els.options).get("channels") || "",
    rate: els.rate.value,
    format: els.options.elements.format.value,
    cover: els.options.elements.cover.value,
    review: els.options.elements.review.checked,
  });
}

// --------------------------------------------------------------------------- rows

const handlers = { status: onStatus, retry, dismiss: removeRow, chooseAgain };

function follow(row) {
  row.stopFollowing?.();
  row.stopFollowing = null;
  if (!row.job || isTerminal(row.job.status)) return;
  row.stopFollowing = followJob(
    row.job.id,
    (job) => row.setJob(job),
    (err) => row.setStatus("failed", { code: err.code, message: err.message }),
  );
}

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
  const options = readOptions();
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
      enqueue(row);
    }
  }
  updateSummary();
}

function enqueue(row) {
  row.waiting = true;
  row.cancel = () => {
    state.waiting = state.waiting.filter((other) => other !== row);
    row.waiting = false;
    row.cancel = null;
    row.setStatus("failed", { code: "cancelled", message: "Upload cancelled." });
  };
  row.setStatus("queued");
  state.waiting.push(row);
  pump();
}

function pump() {
  while (state.uploading < MAX_PARALLEL_UPLOADS && state.waiting.length) {
    const row = state.waiting.shift();
    state.uploading += 1;
    run(row).finally(() => {
      state.uploading -= 1;
      pump();
    });
  }
}

/** One file: presign, PUT with progress, create the job, follow it. */
async function run(row) {
  const { file } = row;
  row.waiting = false;
  row.cancel = null;
  row.setStatus("uploading");
  // A 429 (rate_limited) is waited out by api.js; the row says why it is not moving.
  const held = (err) => {
    row.hold = `${err.message} The page will try again by itself.`;
    row.render();
  };
  try {
    const contentType = declaredType(file);
    // The same file dropped again after a reload resumes its multipart upload.
    const grant = (await multipart.resumable(file)) || (await createUpload(file, contentType, held));
    row.hold = null;
    if (!state.rows.has(row)) return; // the list was cleared (signed out) meanwhile
    if (grant.max_size_bytes) learnMaxBytes(grant.max_size_bytes);
    const onProgress = (loaded) => {
      row.loaded = loaded;
      row.render();
    };
    let upload;
    if (grant.multipart) {
      multipart.remember(file, grant);
      upload = multipart.putInParts(file, grant, onProgress);
      row.cancel = () => {
        upload.abort();
        multipart.forget(file);
        abortUpload(grant.upload_id).catch(() => {}); // else the server's reaper does it
      };
    } else {
      upload = putToStorage(file, grant, onProgress);
      row.cancel = upload.abort;
    }
    row.render(); // shows Cancel
    await upload.done;
    if (grant.multipart) multipart.forget(file);
    row.cancel = null;
    if (!state.rows.has(row)) return;
    if (row.review) {
      review(row, grant.upload_id); // frees the upload slot while the user checks
      return;
    }
    await convert(row, grant.upload_id, row.options, held);
  } catch (err) {
    const error =
      err instanceof PageError
        ? err
        : new PageError("unexpected", "Something went wrong in the page. Try again.");
    row.cancel = null;
    row.hold = null;
    row.setStatus("failed", { code: error.code, message: error.message });
  }
}

/** Create the job for an uploaded file and follow it. */
async function convert(row, uploadId, options, held = () => {}) {
  const job = await createJob(uploadId, options, held);
  row.hold = null;
  if (!state.rows.has(row)) return;
  row.options = options;
  state.byJobId.set(job.id, row);
  row.setJob(job);
  follow(row);
}

/** The check before converting: the file's own tags, cover and length (review.js). */
async function review(row, uploadId) {
  row.setStatus("review");
  let probe = null;
  let problem = "";
  try {
    probe = await probeUpload(uploadId);
  } catch (err) {
    problem = `Its tags could not be read: ${err.message}`;
  }
  const keepsCover = (row.options.cover || "source") === "source";
  const cover = probe?.has_cover && keepsCover ? await coverDataUrl(uploadId) : null;
  if (!state.rows.has(row) || row.status !== "review") return;
  const form = buildReview({
    key: row.key,
    filename: row.filename,
    options: row.options,
    probe,
    problem,
    cover,
    onConvert: (options) => convert(row, uploadId, options),
  });
  row.showReview(form);
}

function retry(row) {
  row.stopFollowing?.();
  if (row.job) state.byJobId.delete(row.job.id);
  row.reset(readOptions());
  enqueue(row);
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

// --------------------------------------------------------------------------- job list

/** A page of GET v1/jobs, appended below what is shown; unfinished jobs are followed. */
async function loadJobs() {
  const owner = state.ownerId;
  els.more.disabled = true;
  try {
    const page = await listJobs({ limit: PAGE_SIZE, cursor: state.nextCursor });
    if (state.ownerId !== owner) return; // signed out (or in as someone else) meanwhile
    for (const job of page.items) {
      if (state.byJobId.has(job.id)) continue;
      const row = new JobRow({ job, on: handlers });
      state.rows.add(row);
      state.byJobId.set(job.id, row);
      els.list.append(row.el);
      follow(row);
      if (isTerminal(job.status)) showDeliveries(row, { recheck: false });
    }
    state.nextCursor = page.next_cursor;
    els.notice.hidden = true;
  } catch (err) {
    if (state.ownerId !== owner) return;
    els.notice.textContent = `Earlier conversions could not be loaded: ${err.message}`;
    els.notice.hidden = false;
  } finally {
    if (state.ownerId === owner) {
      els.loading.hidden = true;
      els.more.disabled = false;
      els.more.hidden = !state.nextCursor;
      updateSummary();
    }
  }
}

// --------------------------------------------------------------------------- who is signed in

/** Empty the list: stop following, cancel uploads (the jobs stay on the server). */
function resetList() {
  const rows = [...state.rows];
  state.rows.clear(); // first, so the rows' last changes are not announced
  state.byJobId.clear();
  state.waiting = [];
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

function wireDragAndDrop() {
  // Files may be dropped anywhere on the page; the drop zone lights up while dragging.
  let depth = 0;
  const hasFiles = (event) => [...(event.dataTransfer?.types || [])].includes("Files");
  window.addEventListener("dragenter", (event) => {
    if (!hasFiles(event)) return;
    depth += 1;
    els.dropzone.classList.add("is-dragging");
  });
  window.addEventListener("dragleave", () => {
    depth = Math.max(0, depth - 1);
    if (!depth) els.dropzone.classList.remove("is-dragging");
  });
  window.addEventListener("dragover", (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault(); // also when signed out: the browser would open the file
    event.dataTransfer.dropEffect = els.app.hidden ? "none" : "copy";
  });
  window.addEventListener("drop", (event) => {
    if (!event.dataTransfer?.files?.length) return;
    event.preventDefault();
    depth = 0;
    els.dropzone.classList.remove("is-dragging");
    if (els.app.hidden) return; // not signed in: nothing is sent
    addFiles(event.dataTransfer.files);
  });
}

function wire() {
  restoreOptions();
  applyFormat(els.options);
  describeQuality();
  els.maxSize.textContent = formatLimit(state.maxBytes);
  els.options.addEventListener("change", () => {
    applyFormat(els.options);
    rememberOptions();
    describeQuality();
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
  wireDragAndDrop();

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
