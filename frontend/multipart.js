// Large files go to storage in parts (POST v1/uploads answers with `multipart`): four parts
// at a time, each PUT to its own short-lived presigned URL and retried with backoff, then
// POST v1/uploads/{id}/complete with every part's ETag (storage's CORS rule exposes it).
//
// The upload id is kept in localStorage under the file's name, size and last-modified
// time. After a reload the user drops the same file again: the page asks storage which
// parts it already holds (GET v1/uploads/{id}/parts) and sends only the others.

import { PageError, completeUpload, listParts, presignParts } from "./api.js";

const PARALLEL = 4;
const URLS_PER_CALL = 100; // the API's cap on part numbers a call
const RETRY_DELAYS_MS = [1000, 2000, 4000, 8000, 16000];
const STORE = "v2m.multipartUploads";
const KEEP_MS = 24 * 3600 * 1000; // an entry older than this is forgotten (the server aborts it)

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const fileKey = (file) => `${file.name}|${file.size}|${file.lastModified}`;

function saved() {
  try {
    return JSON.parse(localStorage.getItem(STORE) || "{}") || {};
  } catch {
    return {};
  }
}

function store(entries) {
  try {
    localStorage.setItem(STORE, JSON.stringify(entries));
  } catch {
    /* private mode or full: the upload still works, it just cannot resume */
  }
}

/** Remember a multipart upload of `file` so that a reload can resume it. */
export function remember(file, grant) {
  const entries = saved();
  for (const [key, entry] of Object.entries(entries)) {
    if (Date.now() - entry.at > KEEP_MS) delete entries[key];
  }
  entries[fileKey(file)] = { upload_id: grant.upload_id, multipart: grant.multipart, at: Date.now() };
  store(entries);
}

export function forget(file) {
  const entries = saved();
  delete entries[fileKey(file)];
  store(entries);
}

/**
 * The unfinished upload of this same file from an earlier visit, as a grant with the
 * parts storage holds (`stored`), or null when there is none or the server no longer has
 * it (expired, aborted, completed: it is forgotten then).
 */
export async function resumable(file) {
  const entry = saved()[fileKey(file)];
  if (!entry) return null;
  try {
    const { parts } = await listParts(entry.upload_id);
    return { upload_id: entry.upload_id, multipart: entry.multipart, stored: parts };
  } catch (err) {
    if (err.status >= 400 && err.status < 500 && err.status !== 429) forget(file);
    return null;
  }
}

/** PUT one part with XMLHttpRequest; resolves with storage's ETag. */
function putPart(blob, grant, inFlight) {
  const xhr = new XMLHttpRequest();
  inFlight.add(xhr);
  return new Promise((resolve, reject) => {
    xhr.open("PUT", grant.url);
    for (const [name, value] of Object.entries(grant.headers || {})) {
      if (["content-length", "host"].includes(name.toLowerCase())) continue;
      xhr.setRequestHeader(name, value);
    }
    xhr.addEventListener("loadend", () => inFlight.delete(xhr));
    xhr.addEventListener("load", () => {
      const etag = xhr.getResponseHeader("ETag");
      if (xhr.status >= 200 && xhr.status < 300 && etag) resolve(etag);
      else reject(new PageError("storage_rejected", `Storage refused a part (HTTP ${xhr.status}).`));
    });
    xhr.addEventListener("error", () =>
      reject(new PageError("storage_unreachable", "A part could not be sent to storage.")),
    );
    xhr.addEventListener("abort", () => reject(new PageError("cancelled", "Upload cancelled.")));
    xhr.send(blob);
  });
}

/**
 * Send the parts storage does not hold yet, then complete the upload. Returns
 * {done: Promise, abort()}, as api.putToStorage does; onProgress(bytes) counts the
 * bytes of parts storage holds.
 */
export function putInParts(file, grant, onProgress) {
  const { part_size: partSize, part_count: count } = grant.multipart;
  const etags = new Map((grant.stored || []).map((p) => [p.part_number, p.etag]));
  const sizeOf = (n) => (n < count ? partSize : file.size - partSize * (count - 1));
  const todo = [];
  for (let n = 1; n <= count; n += 1) if (!etags.has(n)) todo.push(n);
  const inFlight = new Set();
  const urls = new Map();
  let cancelled = false;
  let stored = [...etags.keys()].reduce((sum, n) => sum + sizeOf(n), 0);
  onProgress(stored);

  const pending = new Map(); // part number → the presign call that will bring its URL
  const urlFor = async (n) => {
    if (!urls.has(n) && !pending.has(n)) {
      // The next parts still to send, this one first: one call presigns many.
      const wanted = (m) => m !== n && !urls.has(m) && !pending.has(m);
      const batch = [n, ...todo.filter(wanted)].slice(0, URLS_PER_CALL);
      const call = presignParts(grant.upload_id, batch).then(({ parts }) => {
        for (const part of parts) urls.set(part.part_number, part);
      });
      for (const m of batch) pending.set(m, call);
      call.finally(() => batch.forEach((m) => pending.delete(m))).catch(() => {});
    }
    if (pending.has(n)) await pending.get(n);
    return urls.get(n);
  };

  const send = async (n) => {
    const blob = file.slice((n - 1) * partSize, (n - 1) * partSize + sizeOf(n));
    for (let attempt = 0; ; attempt += 1) {
      if (cancelled) throw new PageError("cancelled", "Upload cancelled.");
      try {
        return await putPart(blob, await urlFor(n), inFlight);
      } catch (err) {
        if (cancelled || err.code === "cancelled" || attempt >= RETRY_DELAYS_MS.length) throw err;
        if (err.status >= 400 && err.status < 500 && err.status !== 429) throw err; // the API said no
        urls.delete(n); // a fresh URL next time: this one may have expired
        await sleep(RETRY_DELAYS_MS[attempt] * (0.75 + Math.random() / 2));
      }
    }
  };

  const worker = async () => {
    while (todo.length) {
      const n = todo.shift();
      etags.set(n, await send(n));
      stored += sizeOf(n);
      onProgress(stored);
    }
  };

  const done = (async () => {
    try {
      await Promise.all(Array.from({ length: Math.min(PARALLEL, todo.length) }, worker));
    } catch (err) {
      cancelled = true; // the other parts stop too; storage keeps what it has for a resume
      for (const xhr of inFlight) xhr.abort();
      throw err;
    }
    const parts = [...etags].sort((a, b) => a[0] - b[0]);
    await completeUpload(
      grant.upload_id,
      parts.map(([n, etag]) => ({ part_number: n, etag })),
    );
    onProgress(file.size);
  })();
  const abort = () => {
    cancelled = true;
    for (const xhr of inFlight) xhr.abort();
  };
  return { done, abort };
}
