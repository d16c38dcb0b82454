// video2mp3 page: pick or drop files; each is uploaded straight to storage with a
// presigned URL, queued for conversion and followed live (Server-Sent Events, polling as
// fallback) until its MP3 can be played and downloaded. No build step, nothing external.
//
// Modules: api.js (the v1 API), checks.js (refusals before upload), row.js (one row of
// the list), format.js (words and numbers), dom.js (node building). This one holds the
// page's state and wires them together.

import {
  PageError,
  createJob,
  createUpload,
  followJob,
  isTerminal,
  listJobs,
  putToStorage,
} from "./api.js";
import { DEFAULT_MAX_BYTES, declaredType, refusal } from "./checks.js";
import { $, h } from "./dom.js";
import { formatLimit } from "./format.js";
import { JobRow } from "./row.js";

const MAX_PARALLEL_UPLOADS = 3; // files uploading at once; the others wait their turn
const PAGE_SIZE = 20;
const STORE = { options: "v2m.options", maxBytes: "v2m.maxUploadBytes" };

const els = {
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
};

// --------------------------------------------------------------------------- announcements

function announce(text) {
  // One node per message, so several files changing at once are all read out.
  const line = h("p", { text });
  els.announce.append(line);
  window.setTimeout(() => line.remove(), 10_000);
}

function onStatus(row) {
  const name = row.filename;
  if (row.status === "uploading") announce(`${name}: uploading.`);
  else if (row.status === "processing") announce(`${name}: converting.`);
  else if (row.status === "completed") announce(`${name}: MP3 ready to play and download.`);
  else if (row.status === "failed") announce(`${name} failed. ${row.error?.message || ""}`);
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
  const options = {};
  const [kind, value] = els.quality.value.split(":");
  if (kind === "q") options.quality = Number(value);
  if (kind === "b") options.bitrate_kbps = Number(value);
  const channels = new FormData(els.options).get("channels");
  if (channels) options.channels = Number(channels);
  if (els.rate.value) options.sample_rate_hz = Number(els.rate.value);
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
}

function rememberOptions() {
  save(STORE.options, {
    quality: els.quality.value,
    channels: new FormData(els.options).get("channels") || "",
    rate: els.rate.value,
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
  const options = readOptions();
  // A batch goes on top of the list, in the order chosen, and uploads in that order.
  let previous = null;
  for (const file of files) {
    const row = new JobRow({ file, options, on: handlers });
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
  try {
    const contentType = declaredType(file);
    const grant = await createUpload(file, contentType);
    learnMaxBytes(grant.max_size_bytes);
    const upload = putToStorage(file, grant, (loaded) => {
      row.loaded = loaded;
      row.render();
    });
    row.cancel = upload.abort;
    row.render(); // shows Cancel
    await upload.done;
    row.cancel = null;
    const job = await createJob(grant.upload_id, row.options);
    state.byJobId.set(job.id, row);
    row.setJob(job);
    follow(row);
  } catch (err) {
    const error =
      err instanceof PageError
        ? err
        : new PageError("unexpected", "Something went wrong in the page. Try again.");
    row.cancel = null;
    row.setStatus("failed", { code: error.code, message: error.message });
  }
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
  els.more.disabled = true;
  try {
    const page = await listJobs({ limit: PAGE_SIZE, cursor: state.nextCursor });
    for (const job of page.items) {
      if (state.byJobId.has(job.id)) continue;
      const row = new JobRow({ job, on: handlers });
      state.rows.add(row);
      state.byJobId.set(job.id, row);
      els.list.append(row.el);
      follow(row);
    }
    state.nextCursor = page.next_cursor;
    els.notice.hidden = true;
  } catch (err) {
    els.notice.textContent = `Earlier conversions could not be loaded: ${err.message}`;
    els.notice.hidden = false;
  } finally {
    els.loading.hidden = true;
    els.more.disabled = false;
    els.more.hidden = !state.nextCursor;
    updateSummary();
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
    event.preventDefault();
    event.dataTransfer.dropEffect = "copy";
  });
  window.addEventListener("drop", (event) => {
    if (!event.dataTransfer?.files?.length) return;
    event.preventDefault();
    depth = 0;
    els.dropzone.classList.remove("is-dragging");
    addFiles(event.dataTransfer.files);
  });
}

function wire() {
  restoreOptions();
  describeQuality();
  els.maxSize.textContent = formatLimit(state.maxBytes);
  els.options.addEventListener("change", () => {
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
  window.addEventListener("beforeunload", (event) => {
    const busy = [...state.rows].some((row) => row.status === "uploading" || row.waiting);
    if (busy) event.preventDefault(); // leaving would lose the uploads in flight
  });

  loadJobs();
}

wire();
