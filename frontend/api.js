// The v1 API as the page uses it (README.md): POST v1/uploads, PUT to the presigned URL,
// GET v1/uploads/{id}/probe and /cover (what the file holds), POST v1/jobs, GET v1/jobs/{id}/events (Server-Sent Events) or GET v1/jobs/{id},
// GET v1/jobs, GET v1/jobs/{id}/download, GET v1/auth/me. Paths are relative so the page
// also works behind a proxy that serves it under a sub-path.
//
// Every call carries `Authorization: Bearer <access token>` (auth.js); a 401 refreshes
// the token once and sends the call again, and a second 401 asks for a sign-in and waits
// for it. EventSource and <audio>/<a> cannot send headers: their URLs carry the access
// token as `?access_token=` (the API accepts it on those two routes only). The PUT to
// storage carries no credentials at all: the presigned URL is its own.

import * as auth from "./auth.js";
import { PageError, call } from "./http.js";

export { PageError };

const MAX_EVENT_STREAMS = 4; // held at once; HTTP/1.1 browsers allow ~6 connections a host
const POLL_MS = 1500;
const TERMINAL = new Set(["completed", "failed"]);
const MAX_RATE_WAIT_S = 120; // longest single wait on a 429 before trying again

export const isTerminal = (status) => TERMINAL.has(status);

/** `path` with the current access token as ?access_token=, for clients without headers. */
function withToken(path) {
  const token = auth.currentToken();
  if (!token) return path; // no session: the server needs no sign-in
  return `${path}${path.includes("?") ? "&" : "?"}access_token=${encodeURIComponent(token)}`;
}

/** The MP3's URL for <audio src> and <a href>: redirects to a presigned storage URL. */
export const downloadUrl = (jobId) => withToken(`v1/jobs/${encodeURIComponent(jobId)}/download`);

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** How long to wait after a 429, in ms: the server's Retry-After, within reason. */
export const rateWait = (err) => Math.min(MAX_RATE_WAIT_S, Math.max(1, err.retryAfterS || 5)) * 1000;

/**
 * A v1 call with the signed-in user's access token. A 401 is answered by one refresh and
 * one more try; after that (or with no session) the page asks for a sign-in and, when
 * the same user signs in again, the call goes once more (someone else: the 401 is thrown).
 */
async function request(method, path, options = {}) {
  let renewed = false;
  for (let signIns = 0; ; ) {
    const token = await auth.token();
    try {
      return await call(method, path, { ...options, token });
    } catch (err) {
      if (err.status !== 401) throw err;
      if (token && !renewed && (await auth.renew(token))) {
        renewed = true;
        continue;
      }
      if (signIns >= 2 || !(await auth.needSignIn(err.message))) throw err;
      signIns += 1;
      renewed = false;
    }
  }
}

/** GET v1/auth/me → {id, email, created_at}; waits for a sign-in when the API wants one. */
export const whoAmI = () => request("GET", "v1/auth/me");

export function uuid() {
  if (globalThis.crypto?.randomUUID) return crypto.randomUUID();
  // randomUUID needs a secure context: a plain-HTTP page on a LAN address gets this.
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const hex = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  const parts = [hex.slice(0, 8), hex.slice(8, 12), hex.slice(12, 16), hex.slice(16, 20)];
  return `${parts.join("-")}-${hex.slice(20)}`;
}

/**
 * POST v1/uploads → {upload_id, url, method, headers, expires_at, max_size_bytes}.
 * A 429 (rate_limited) is waited out as its Retry-After says, a few times, with
 * onWait(PageError) telling the row why it waits.
 */
export async function createUpload(file, contentType, onWait = () => {}) {
  for (let attempt = 0; ; attempt += 1) {
    try {
      return await request("POST", "v1/uploads", {
        body: { filename: file.name, content_type: contentType, size_bytes: file.size },
      });
    } catch (err) {
      if (err.status !== 429 || attempt >= 4) throw err;
      onWait(err);
      await sleep(rateWait(err));
    }
  }
}

/**
 * PUT the file to the presigned URL with XMLHttpRequest (fetch has no upload progress).
 * Returns {done: Promise, abort()}; onProgress(bytesSent) is called as bytes leave.
 */
export function putToStorage(file, grant, onProgress) {
  const xhr = new XMLHttpRequest();
  const done = new Promise((resolve, reject) => {
    xhr.open(grant.method || "PUT", grant.url);
    for (const [name, value] of Object.entries(grant.headers || {})) {
      // Browsers set Content-Length (and Host) themselves and refuse to be told.
      if (["content-length", "host"].includes(name.toLowerCase())) continue;
      xhr.setRequestHeader(name, value);
    }
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) onProgress(event.loaded);
    });
    xhr.addEventListener("load", () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        onProgress(file.size);
        resolve();
        return;
      }
      const detail = /<Message>([^<]*)<\/Message>/.exec(xhr.responseText || "")?.[1];
      const why = detail ? `HTTP ${xhr.status}: ${detail}` : `HTTP ${xhr.status}`;
      reject(new PageError("storage_rejected", `Storage refused the upload (${why}). Try again.`));
    });
    xhr.addEventListener("error", () => {
      const message = "The file could not be sent to storage. Check your connection and try again.";
      reject(new PageError("storage_unreachable", message));
    });
    xhr.addEventListener("abort", () => reject(new PageError("cancelled", "Upload cancelled.")));
    xhr.send(file);
  });
  return { done, abort: () => xhr.abort() };
}

// --------------------------------------------------------------------------- multipart uploads

const uploadPath = (uploadId, rest = "") => `v1/uploads/${encodeURIComponent(uploadId)}${rest}`;

/** POST v1/uploads/{id}/parts → {parts: [{part_number, url, headers}]} (≤ 100 numbers). */
export const presignParts = (uploadId, numbers) =>
  request("POST", uploadPath(uploadId, "/parts"), { body: { part_numbers: numbers } });
/** GET v1/uploads/{id}/parts → {parts: [{part_number, size_bytes, etag}]}: what storage holds. */
export const listParts = (uploadId) => request("GET", uploadPath(uploadId, "/parts"));
/** POST v1/uploads/{id}/complete with every part's ETag → the upload. */
export const completeUpload = (uploadId, parts) =>
  request("POST", uploadPath(uploadId, "/complete"), { body: { parts } });
/** DELETE v1/uploads/{id}: storage drops the parts. */
export const abortUpload = (uploadId) => request("DELETE", uploadPath(uploadId));

/**
 * POST v1/jobs; transient failures are retried with the same Idempotency-Key. A 429
 * (too many jobs queued or converting) is waited out for up to 15 minutes, as its
 * Retry-After says, so that the finished upload is not lost; onWait(PageError) says so.
 */
export async function createJob(uploadId, options, onWait = () => {}) {
  const key = uuid();
  const delays = [500, 1500, 3000, 6000];
  const giveUpAt = Date.now() + 15 * 60_000;
  for (let attempt = 0; ; ) {
    try {
      return await request("POST", "v1/jobs", {
        body: { upload_id: uploadId, options },
        headers: { "Idempotency-Key": key },
      });
    } catch (err) {
      if (err.status === 429 && Date.now() < giveUpAt) {
        onWait(err);
        await sleep(rateWait(err));
        continue;
      }
      // upload_incomplete right after a finished PUT: storage may lag a moment.
      const again = err.retryable || err.code === "upload_incomplete";
      if (!again || attempt >= delays.length) throw err;
      await sleep(delays[attempt]);
      attempt += 1;
    }
  }
}

/**
 * GET v1/uploads/{id}/probe → the file's duration, streams, tags, cover and chapters.
 * Right after the PUT storage may lag a moment (409 upload_incomplete): asked again.
 */
export async function probeUpload(uploadId) {
  const path = `v1/uploads/${encodeURIComponent(uploadId)}/probe`;
  const delays = [500, 1500, 3000];
  for (let attempt = 0; ; attempt += 1) {
    try {
      return await request("GET", path);
    } catch (err) {
      const again = err.retryable || err.code === "upload_incomplete";
      if (!again || attempt >= delays.length) throw err;
      await sleep(delays[attempt]);
    }
  }
}

/**
 * The file's own cover picture (GET v1/uploads/{id}/cover) as a data: URL for <img>, or
 * null. Fetched with the Authorization header, so no token ends up in an image URL.
 */
export async function coverDataUrl(uploadId) {
  const token = await auth.token();
  try {
    const response = await fetch(`v1/uploads/${encodeURIComponent(uploadId)}/cover`, {
      headers: token ? { Authorization: `Bearer ${token}` } : {},
      cache: "no-store",
    });
    if (!response.ok) return null;
    const blob = await response.blob();
    return await new Promise((resolve) => {
      const reader = new FileReader();
      reader.addEventListener("load", () => resolve(String(reader.result)));
      reader.addEventListener("error", () => resolve(null));
      reader.readAsDataURL(blob);
    });
  } catch {
    return null; // no preview; the conversion keeps the cover all the same
  }
}

/** GET v1/jobs → {items, next_cursor}, newest first. */
export function listJobs({ limit, cursor }) {
  const query = new URLSearchParams({ limit: String(limit) });
  if (cursor) query.set("cursor", cursor);
  return request("GET", `v1/jobs?${query}`);
}

let openStreams = 0;

/**
 * Follow a job until it is completed or failed: Server-Sent Events while fewer than
 * MAX_EVENT_STREAMS are open, polling GET v1/jobs/{id} otherwise or when the stream breaks
 * (a proxy that buffers, an API restart). onJob(job) gets every change; onError(PageError)
 * when the job is gone. Returns stop().
 */
export function followJob(jobId, onJob, onError) {
  let stopCurrent = () => {};
  let stopped = false;
  const deliver = (job) => {
    if (stopped) return;
    onJob(job);
    if (isTerminal(job.status)) stop();
  };
  const stop = () => {
    stopped = true;
    stopCurrent();
  };
  const poll = () => {
    let timer = 0;
    let delay = POLL_MS;
    stopCurrent = () => window.clearTimeout(timer);
    const tick = async () => {
      try {
        deliver(await request("GET", `v1/jobs/${encodeURIComponent(jobId)}`));
        delay = POLL_MS;
      } catch (err) {
        if (err.status === 404) {
          if (!stopped) onError(err);
          stop();
          return;
        }
        delay = Math.min(delay * 2, 15_000); // the API is down or restarting: back off
      }
      if (!stopped) timer = window.setTimeout(tick, delay);
    };
    timer = window.setTimeout(tick, 0);
  };
  const stream = async () => {
    await auth.token(); // a fresh access token for the stream's URL
    if (stopped) return;
    if (typeof EventSource !== "function" || openStreams >= MAX_EVENT_STREAMS) {
      poll();
      return;
    }
    // The token is checked when the stream opens; it may expire while the stream lasts.
    const source = new EventSource(withToken(`v1/jobs/${encodeURIComponent(jobId)}/events`));
    openStreams += 1;
    let open = true;
    const close = () => {
      if (!open) return;
      open = false;
      source.close();
      openStreams -= 1;
    };
    stopCurrent = close;
    source.addEventListener("job", (event) => {
      let job;
      try {
        job = JSON.parse(event.data);
      } catch {
        return; // a malformed event: the next one will do
      }
      deliver(job);
    });
    source.addEventListener("error", () => {
      // Refused (401 with an expired token, a buffering proxy) or broken: poll instead,
      // with the Authorization header and its refresh.
      if (!open || stopped) return;
      close();
      poll();
    });
  };
  stream();
  return stop;
}

// --------------------------------------------------------------------------- notifications

/** GET v1/account → {id, email, webhook_url, notify_email}. */
export const getAccount = () => request("GET", "v1/account");
/** PATCH v1/account with {webhook_url, notify_email}; 422 webhook_url_not_allowed. */
export const updateAccount = (changes) => request("PATCH", "v1/account", { body: changes });
export const webhookSecret = () => request("GET", "v1/account/webhook-secret");
export const rotateWebhookSecret = () => request("POST", "v1/account/webhook-secret/rotate");
/** GET v1/jobs/{id}/deliveries → {items: [...]}, every attempt oldest first. */
export const listDeliveries = (jobId) =>
  request("GET", `v1/jobs/${encodeURIComponent(jobId)}/deliveries`);
