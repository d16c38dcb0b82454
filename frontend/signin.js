// The sign-in form: email and password → auth.signIn (POST v1/auth/login). Errors are
// the API's own sentences, shown in a role="alert" region that screen readers read out.
// What happens once someone is signed in is the page's business (app.js listens to
// auth.js's "signed-in").

import * as auth from "./auth.js";
import { $ } from "./dom.js";

const els = {
  section: $('[data-role="signin"]'),
  heading: $("#signin-heading"),
  form: $('[data-role="signin-form"]'),
  email: $("#signin-email"),
  password: $("#signin-password"),
  error: $('[data-role="signin-error"]'),
  submit: $('[data-role="sign-in"]'),
};

function say(message, invalid = []) {
  for (const input of [els.email, els.password]) {
    if (invalid.includes(input)) input.setAttribute("aria-invalid", "true");
    else input.removeAttribute("aria-invalid");
  }
  if (message && els.error.textContent === message) {
    // The same words again (a second wrong password): empty the region first, so that
    // screen readers announce it again.
    els.error.textContent = "";
    window.setTimeout(() => {
      els.error.textContent = message;
    }, 100);
    return;
  }
  els.error.textContent = message;
}

/**
 * Show the form (the rest of the page is hidden by app.js), with why, if there is a why.
 * `fresh` empties the email too (after signing out: the next person may be someone else).
 */
export function showSignIn(message = "", { fresh = false } = {}) {
  const wasHidden = els.section.hidden;
  els.section.hidden = false;
  say(message);
  els.submit.disabled = false;
  if (fresh) els.email.value = "";
  if (!wasHidden) return;
  els.password.value = "";
  // The email field when it is empty, else the password (after a session ended).
  (els.email.value ? els.password : els.email).focus();
}

export function hideSignIn() {
  els.section.hidden = true;
  els.password.value = "";
  say("");
}

async function submit(event) {
  event.preventDefault();
  if (els.submit.disabled) return;
  const email = els.email.value.trim();
  const password = els.password.value;
  if (!email) {
    say("Enter your email address.", [els.email]);
    els.email.focus();
    return;
  }
  if (!password) {
    say("Enter your password.", [els.password]);
    els.password.focus();
    return;
  }
  els.submit.disabled = true;
  els.submit.textContent = "Signing in…";
  try {
    await auth.signIn(email, password);
  } catch (err) {
    // 401: "The email or password is not right."; 429 comes with when to try again.
    const message = err.message || "The sign-in did not work. Try again.";
    say(message, err.status === 401 ? [els.email, els.password] : []);
    els.password.select();
    els.password.focus();
  } finally {
    els.submit.disabled = false;
    els.submit.textContent = "Sign in";
  }
}

export function wireSignIn() {
  els.form.addEventListener("submit", submit);
}
