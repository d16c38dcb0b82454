// The account's notifications: the default webhook URL, the email switch, and the
// webhook signing secret (revealed, copied and rotated on request, never shown unasked).

import { $ } from "./dom.js";
import { getAccount, rotateWebhookSecret, updateAccount, webhookSecret } from "./api.js";

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
