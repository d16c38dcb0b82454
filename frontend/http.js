// One JSON call to the API, with its failures in the API's shape. api.js adds the
// credentials (auth.js) on top; auth.js uses this directly for login and refresh.

/** An error in the API's shape: a snake_case code and a sentence for people. */
export class PageError extends Error {
  constructor(code, message, { status = 0, retryable = false, retryAfterS = 0 } = {}) {
    super(message);
    this.code = code;
    this.status = status;
    this.retryable = retryable;
    this.retryAfterS = retryAfterS; // from Retry-After on 429/503, in seconds
  }
}

/** Seconds from a Retry-After header (delta-seconds or an HTTP date); 0 when absent. */
function retryAfter(response) {
  const raw = response.headers.get("Retry-After");
  if (!raw) return 0;
  const seconds = Number(raw);
  if (Number.isFinite(seconds)) return Math.max(0, seconds);
  const date = Date.parse(raw);
  return Number.isFinite(date) ? Math.max(0, Math.ceil((date - Date.now()) / 1000)) : 0;
}

/**
 * JSON in, JSON out; failures become PageError with the body's {code, message}.
 * `token` is sent as `Authorization: Bearer …` when given.
 */
export async function call(method, path, { body, headers = {}, token = null } = {}) {
  let response;
  try {
    response = await fetch(path, {
      method,
      headers: {
        Accept: "application/json",
        ...(body === undefined ? {} : { "Content-Type": "application/json" }),
        ...(token ? { Authorization: `Bearer ${token}` } : {}),
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
      { status, retryable: status >= 500 || status === 429, retryAfterS: retryAfter(response) },
    );
  }
  return data;
}
