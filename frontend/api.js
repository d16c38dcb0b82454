// The v1 API as the page uses it (README.md): POST v1/uploads, PUT to the presigned URL,
// POST v1/jobs, GET v1/jobs/{id}/events (Server-Sent Events) or GET v1/jobs/{id},
// GET v1/jobs, GET v1/jobs/{id}/download. Paths are relative so the page also works
// behind a proxy that serves it under a sub-path.

const MAX_EVENT_STREAMS = 4; // held at once; HTTP/1.1 browsers allow ~6 connections a host
const POLL_MS = 1500;
const TERMINAL = new Set(["completed", "failed"]);

/** An error in the API's shape: a snake_case code and a sentence for people. */
export class PageError extends Error {
  constructor(code, message, { status = 0, retryable = false } = {}) {
    super(message);
    this.code = code;
    this.status = status;
    this.retryable = retryable;
  }
}

export const isTerminal = (status) => TERMINAL.has(status);

export const downloadUrl = (jobId) => `v1/jobs/${encodeURIComponent(jobId)}/download`;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** JSON in, JSON out; failures become PageError with the body's {code, message}. */
async function request(method, path, { body, headers = {} } = {}) {
  let response;
  try {
    response = await fetch(path, {
      method,
      headers: {
        Accept: "application/json",
        ...(body === undefined ? {} : { "Content-Type": "application/json" }),
        ...headers,
      },
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
  } catch {
    throw new PageError(
      "network_error",
      "The server could not be reached. Check your connection and try again.",
      { retryable: true },
    );
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    /* not JSON: described below */
  }
  if (!response.ok) {
    const error = data?.error;
    const status = response.status;
    throw new PageError(
      error?.code || `http_${status}`,
      error?.message || `The server answered with an error (HTTP ${status}). Try again soon.`,
      { status, retryable: status >= 500 || status === 429 },
    );
  }
  return data;
}

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

/** POST v1/uploads → {upload_id, url, method, headers, expires_at, max_size_bytes}. */
export function createUpload(file, contentType) {
  return request("POST", "v1/uploads", {
    body: { filename: file.name, content_type: contentType, size_bytes: file.size },
  });
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

/** POST v1/jobs; transient failures are retried with the same Idempotency-Key. */
export async function createJob(uploadId, options) {
  const key = uuid();
  const delays = [500, 1500, 3000, 6000];
  for (let attempt = 0; ; attempt += 1) {
    try {
      return await request("POST", "v1/jobs", {
        body: { upload_id: uploadId, options },
        headers: { "Idempotency-Key": key },
      });
    } catch (err) {
      // upload_incomplete right after a finished PUT: storage may lag a moment.
      const again = err.retryable || err.code === "upload_incomplete";
      if (!again || attempt >= delays.length) throw err;
      await sleep(delays[attempt]);
    }
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
  if (typeof EventSource !== "function" || openStreams >= MAX_EVENT_STREAMS) {
    poll();
    return stop;
  }
  const source = new EventSource(`v1/jobs/${encodeURIComponent(jobId)}/events`);
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
    if (!open || stopped) return;
    close();
    poll();
  });
  return stop;
}
