// The account's notifications: the default webhook URL, the email switch, and the
// webhook signing secret (revealed, copied and rotated on request, never shown unasked);
// and, on each finished job's row, whether its notifications were delivered.

import { $, h } from "./dom.js";
import {
  getAccount,
  listDeliveries,
  rotateWebhookSecret,
  updateAccount,
  webhookSecret,
} from "./api.js";

const els = {
  form: $('[data-role="notify-form"]'),
  webhook: $('[data-role="notify-webhook"]'),
  email: $('[data-role="notify-email"]'),
  secret: $('[data-role="notify-secret"]'),
  reveal: $('[data-role="notify-reveal"]'),
  copy: $('[data-role="notify-copy"]'),
  rotate: $('[data-role="notify-rotate"]'),
  status: $('[data-role="notify-status"]'),
};
let secret = null;

const say = (text) => {
  els.status.textContent = text;
};

function showSecret(value) {
  secret = value;
  els.secret.textContent = value ?? "hidden";
  els.copy.hidden = value === null;
  els.reveal.hidden = value !== null;
}

/** Fill the form with the signed-in account's settings; the secret starts hidden. */
export async function loadNotify() {
  showSecret(null);
  say("");
  try {
    const account = await getAccount();
    els.webhook.value = account.webhook_url ?? "";
    els.email.checked = account.notify_email;
  } catch (err) {
    say(err.message);
  }
}

async function save(event) {
  event.preventDefault();
  const url = els.webhook.value.trim();
  try {
    const account = await updateAccount({ webhook_url: url || null, notify_email: els.email.checked });
    els.webhook.value = account.webhook_url ?? "";
    say("Saved.");
  } catch (err) {
    say(err.message); // e.g. a webhook URL on a private address
  }
}

async function reveal() {
  try {
    showSecret((await webhookSecret()).secret);
  } catch (err) {
    say(err.message);
  }
}

async function rotate() {
  if (!window.confirm("Replace the signing secret? The old one keeps signing for 24 hours.")) return;
  try {
    showSecret((await rotateWebhookSecret()).secret);
    say("New secret made. The old one keeps signing for 24 hours.");
  } catch (err) {
    say(err.message);
  }
}

async function copy() {
  try {
    await navigator.clipboard.writeText(secret);
    say("Copied.");
  } catch {
    say("Copying failed: select the secret and copy it.");
  }
}

export function wireNotify() {
  els.form.addEventListener("submit", save);
  els.reveal.addEventListener("click", reveal);
  els.rotate.addEventListener("click", rotate);
  els.copy.addEventListener("click", copy);
}

// --------------------------------------------------------------------------- per job

const CHANNEL = { webhook: "Webhook", email: "Email" };
// Deliveries are recorded a moment after the job finishes and retried for hours: look
// again a few times while some are still waiting, then leave the row as it is.
const RECHECK_MS = [1000, 3000, 10000, 30000];

function describe(item) {
  const name = CHANNEL[item.channel] || item.channel;
  if (item.status === "succeeded") return `${name} delivered`;
  if (item.status === "failed") {
    const why = item.status_code ? `HTTP ${item.status_code}` : item.error || "failed";
    return item.next_retry_at
      ? `${name} failed (${why}), retrying at ${new Date(item.next_retry_at).toLocaleTimeString()}`
      : `${name} failed (${why})`;
  }
  return `${name} pending`;
}

/**
 * Show on a finished job's row how its notifications went (nothing when it has none).
 * A job that just finished is looked at again while its deliveries are under way
 * (`recheck`); one listed long after it finished is looked at once.
 */
export async function showDeliveries(row, { recheck = true, attempt = 0 } = {}) {
  const jobId = row.job?.id;
  if (!jobId) return;
  let items;
  try {
    items = (await listDeliveries(jobId)).items;
  } catch {
    return; // a detail: the row says nothing rather than an error
  }
  if (row.job?.id !== jobId) return; // the row moved on (Retry) meanwhile
  const latest = new Map(items.map((item) => [item.channel, item])); // oldest first: last wins
  const text = [...latest.values()].map(describe).join(" · ");
  let el = row.el.querySelector('[data-role="delivery"]');
  if (text && !el) {
    el = h("p", { class: "job__delivery", "data-role": "delivery" });
    row.el.append(el);
  }
  if (el) el.textContent = text;
  const waiting = items.length === 0 || [...latest.values()].some((i) => i.status !== "succeeded");
  if (recheck && waiting && attempt < RECHECK_MS.length && row.el.isConnected) {
    setTimeout(() => showDeliveries(row, { attempt: attempt + 1 }), RECHECK_MS[attempt]);
  }
}
