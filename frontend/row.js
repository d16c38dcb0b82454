// One file or job in the list. The <li> carries the stable hooks tests and scripts use:
// data-job-id ("" until the job exists), data-status (queued|uploading|review|processing|
// completed|failed; review: uploaded, waiting for the user's Convert), when failed, data-error-code, and data-output="expired" once a
// completed job's MP3 is no longer kept (its retention passed or it was deleted).

import { downloadUrl } from "./api.js";
import * as auth from "./auth.js";
import { REFUSED } from "./checks.js";
import { h, icon } from "./dom.js";
import { EXTENSION } from "./options.js";
import {
  describeOptions,
  formatBytes,
  formatDuration,
  formatTime,
  stemOf,
} from "./format.js";

const STATUS_LABEL = {
  queued: "In queue",
  uploading: "Uploading",
  review: "Check",
  processing: "Converting",
  completed: "Done",
  failed: "Failed",
};

let counter = 0;

export class JobRow {
  /**
   * From a File about to be uploaded ({file, options}) or a job from the API ({job}).
   * `on` holds the page's handlers: status(row), retry(row), dismiss(row), chooseAgain().
   */
  constructor({ file = null, job = null, options = {}, on }) {
    this.key = `row-${++counter}`;
    this.on = on;
    this.file = file;
    this.job = job;
    this.options = job ? job.options || {} : options;
    this.filename = job ? job.input.filename : file.name;
    this.sizeBytes = job ? job.input.size_bytes : file.size;
    this.createdAt = job ? new Date(job.created_at) : new Date();
    this.status = job ? job.status : "queued";
    this.waiting = !job; // queued in this page for an upload slot, not yet on the server
    this.loaded = 0;
    this.error = job?.error || null;
    this.live = !job; // started in this page: its preview loads the duration at once
    this.cancel = null;
    this.stopFollowing = null;
    this.hold = null; // why the row waits (a rate limit), shown as its status line
    this.build();
    this.render();
  }

  build() {
    const nameId = `${this.key}-name`;
    this.el = h("li", {
      class: "job",
      tabindex: -1,
      "data-job-id": "",
      "data-status": this.status,
      "aria-labelledby": nameId,
    });
    this.iconEl = h("span", { class: "job__icon", "aria-hidden": "true" });
    this.nameEl = h("span", { class: "job__name", id: nameId, title: this.filename });
    this.nameEl.textContent = this.filename;
    this.metaEl = h("span", { class: "job__meta" });
    this.badgeEl = h("span", { class: "badge", "data-role": "badge" });
    const bar = (role, label) =>
      h("progress", {
        class: `bar bar--${role}`,
        "data-role": `${role}-progress`,
        max: 100,
        value: 0,
        "aria-label": `${label} of ${this.filename}`,
      });
    this.uploadBar = bar("upload", "Upload");
    this.convertBar = bar("convert", "Conversion");
    this.statusEl = h("p", { class: "job__status", "data-role": "status" });
    this.errorEl = h("p", { class: "job__error", "data-role": "error", hidden: true });
    this.resultEl = h("div", { class: "job__result", "data-role": "result", hidden: true });
    this.reviewEl = h("div", { class: "job__review", hidden: true });
    this.actionsEl = h("div", { class: "job__actions" });
    this.el.append(
      h(
        "div",
        { class: "job__head" },
        this.iconEl,
        h("div", { class: "job__title" }, this.nameEl, this.metaEl),
        this.badgeEl,
      ),
      h("div", { class: "job__bars" }, this.uploadBar, this.convertBar),
      this.statusEl,
      this.errorEl,
      this.reviewEl,
      this.resultEl,
      this.actionsEl,
    );
  }

  /** The job's MP3 is gone: the page shows "Expired" in place of the player. */
  get expired() {
    return this.status === "completed" && Boolean(this.job?.output?.expired);
  }

  /** The download answered 410 output_expired: the job says so from now on. */
  markExpired() {
    if (!this.job?.output) return;
    this.job = { ...this.job, output: { ...this.job.output, expired: true } };
    this.render();
  }

  get refused() {
    return this.status === "failed" && REFUSED.has(this.error?.code);
  }

  /** The job as the API reports it (from POST, SSE or polling). */
  setJob(job) {
    const before = this.status;
    this.job = job;
    this.waiting = false;
    this.status = job.status;
    const unknown = { code: "failed", message: "The conversion failed." };
    this.error = job.status === "failed" ? job.error || unknown : null;
    this.render();
    if (before !== this.status) this.on.status(this);
  }

  setStatus(status, error = null) {
    const before = this.status;
    this.status = status;
    this.error = error;
    this.render();
    if (before !== status) this.on.status(this);
  }

  /** Back to the start, for Retry: a new upload and a new job for the same file. */
  reset(options) {
    this.job = null;
    this.error = null;
    this.live = true;
    this.options = options;
    this.createdAt = new Date();
    this.loaded = 0;
    this.uploadBar.value = 0;
  }

  /** The check before converting (review.js), shown while the status is "review". */
  showReview(form) {
    this.reviewEl.replaceChildren(form);
    this.render();
  }

  render() {
    const { el, job, status } = this;
    this.reviewEl.hidden = status !== "review" || !this.reviewEl.firstChild;
    if (status !== "review" && this.reviewEl.firstChild) this.reviewEl.replaceChildren();
    el.dataset.status = status;
    el.dataset.jobId = job?.id || "";
    if (this.error) el.dataset.errorCode = this.error.code;
    else delete el.dataset.errorCode;
    if (this.expired) el.dataset.output = "expired";
    else delete el.dataset.output;

    const look = status === "completed" ? "done" : status === "failed" ? "failed" : "file";
    if (this.iconEl.dataset.look !== look) {
      this.iconEl.dataset.look = look;
      this.iconEl.replaceChildren(icon(look));
    }

    const meta = [formatBytes(this.sizeBytes), this.refused ? null : describeOptions(this.options)]
      .filter(Boolean)
      .join(" · ");
    if (this.metaKey !== meta + this.createdAt.getTime()) {
      this.metaKey = meta + this.createdAt.getTime();
      const when = h("time", {
        datetime: this.createdAt.toISOString(),
        text: formatTime(this.createdAt),
      });
      this.metaEl.replaceChildren(`${meta} · `, when);
    }

    if (this.waiting) this.badgeEl.textContent = "Waiting";
    else if (this.refused) this.badgeEl.textContent = "Not uploaded";
    else if (this.error?.code === "cancelled") this.badgeEl.textContent = "Cancelled";
    else if (this.expired) this.badgeEl.textContent = "Expired";
    else this.badgeEl.textContent = STATUS_LABEL[status] || status;

    const share = this.sizeBytes ? this.loaded / this.sizeBytes : 1;
    const uploaded = Math.min(100, Math.floor(share * 100));
    if (status === "uploading") this.uploadBar.value = uploaded;
    const progress = job?.progress ?? 0;
    if (status === "queued" && !this.waiting) this.convertBar.removeAttribute("value");
    else this.convertBar.value = status === "completed" ? 100 : progress;

    this.statusEl.textContent = this.statusText(uploaded, progress);
    this.statusEl.hidden = !this.statusEl.textContent;
    this.errorEl.hidden = !this.error;
    this.errorEl.textContent = this.error ? this.error.message : "";
    this.renderResult();
    this.renderActions();
  }

  statusText(uploaded, progress) {
    const { status, job } = this;
    if (this.hold) return this.hold;
    if (this.waiting) return "Waiting for another upload to finish…";
    if (status === "uploading") {
      const sent = `${formatBytes(this.loaded)} of ${formatBytes(this.sizeBytes)}`;
      return this.loaded ? `Uploading ${sent} · ${uploaded}%` : "Preparing the upload…";
    }
    if (status === "review") {
      return this.reviewEl.firstChild
        ? "Uploaded · check the tags, then convert."
        : "Uploaded · reading the file's tags…";
    }
    if (status === "queued") return "Uploaded · waiting for a converter…";
    if (status === "processing") {
      return progress ? `Converting · ${progress}%` : "Starting the conversion…";
    }
    if (status === "completed" && job?.output) {
      const out = job.output;
      const until = out.expires_at ? new Date(out.expires_at) : null;
      return [
        `${stemOf(this.filename)}.mp3`,
        formatDuration(out.duration_s),
        formatBytes(out.size_bytes),
        out.bitrate_kbps ? `${out.bitrate_kbps} kbit/s` : null,
        until && !out.expired ? `kept until ${formatTime(until)}` : null,
      ]
        .filter(Boolean)
        .join(" · ");
    }
    return "";
  }

  renderResult() {
    const done = this.status === "completed" && this.job;
    this.resultEl.hidden = !done;
    if (!done) {
      if (this.resultFor) this.resultEl.replaceChildren();
      this.resultFor = null;
      this.audioEl = this.linkEl = null;
      return;
    }
    const resultFor = `${this.job.id}${this.expired ? ":expired" : ""}`;
    if (this.resultFor === resultFor) return; // already built: keep playback going
    this.resultFor = resultFor;
    const jobId = this.job.id;
    const format = this.options.format || "mp3";
    const name = `${stemOf(this.filename)}.${EXTENSION[format] || "mp3"}`;
    if (this.expired) {
      this.audioEl = this.linkEl = null;
      const note = h("p", { class: "job__expired", "data-role": "expired" });
      note.textContent =
        `Expired: ${name} is no longer kept (downloads last a limited time after the ` +
        "conversion). Convert the file again to get a new one.";
      this.resultEl.replaceChildren(note);
      return;
    }
    // Both URLs carry the access token (?access_token=): <audio> and <a> send no headers.
    // Rows from earlier visits load nothing until played; fresh ones fetch the duration.
    const audio = h("audio", {
      controls: true,
      preload: this.live ? "metadata" : "none",
      src: downloadUrl(jobId),
      "aria-label": `Preview of ${name}`,
    });
    let reloaded = false;
    audio.addEventListener("loadedmetadata", () => {
      reloaded = false; // a later failure (an expired URL) may ask again
    });
    audio.addEventListener("error", async () => {
      // The access token in the URL, or the presigned URL behind the redirect, expired:
      // ask for a fresh one, once, and carry on where it was.
      if (reloaded) return;
      reloaded = true;
      // A 410 (output_expired) says the MP3 is gone: show that instead of a player.
      const probe = await fetch(downloadUrl(jobId), { redirect: "manual" }).catch(() => null);
      if (probe?.status === 410) {
        this.markExpired();
        return;
      }
      const at = audio.currentTime;
      const playing = !audio.paused;
      await auth.token();
      audio.src = downloadUrl(jobId);
      if (at) audio.currentTime = at;
      if (playing) audio.play().catch(() => {});
    });
    const link = h(
      "a",
      {
        class: "button button--primary",
        href: downloadUrl(jobId),
        download: name,
        "data-role": "download",
      },
      icon("download"),
      // The visible words start the accessible name (WCAG 2.5.3): "Download MP3 holiday.mp3".
      `Download ${format.toUpperCase()}`,
      h("span", { class: "visually-hidden" }, ` ${name}`),
    );
    link.addEventListener("click", (event) => {
      if (link.dataset.fresh) {
        delete link.dataset.fresh;
        return;
      }
      link.href = downloadUrl(jobId);
      if (!auth.stale()) return;
      // The token is about to expire (a sleeping tab's timer ran late): renew it first.
      event.preventDefault();
      auth.token().then(() => {
        link.href = downloadUrl(jobId);
        link.dataset.fresh = "1";
        link.click();
      });
    });
    this.audioEl = audio;
    this.linkEl = link;
    this.resultEl.replaceChildren(audio, link);
  }

  /** A new access token: rebuild the URLs that carry it, without stopping playback. */
  refreshUrls() {
    if (!this.linkEl || !this.job) return;
    const url = downloadUrl(this.job.id);
    this.linkEl.href = url;
    const audio = this.audioEl;
    const untouched =
      audio.readyState === HTMLMediaElement.HAVE_NOTHING &&
      audio.networkState !== HTMLMediaElement.NETWORK_LOADING &&
      audio.paused;
    if (untouched) audio.src = url; // not loaded yet (preload="none"): no fetch happens
  }

  renderActions() {
    const button = (role, onclick, label, { quiet = false, glyph = null } = {}) =>
      h(
        "button",
        {
          class: quiet ? "button button--quiet" : "button",
          type: "button",
          "data-role": role,
          onclick,
        },
        glyph && icon(glyph),
        label,
      );
    const actions = [];
    if ((this.status === "uploading" || this.waiting) && this.cancel) {
      actions.push(button("cancel", () => this.cancel?.(), "Cancel", { quiet: true }));
    }
    if (this.status === "failed") {
      if (this.refused) {
        actions.push(button("dismiss", () => this.on.dismiss(this), "Dismiss", { quiet: true }));
      } else if (this.file) {
        actions.push(button("retry", () => this.on.retry(this), "Retry", { glyph: "retry" }));
      } else {
        // From an earlier visit: the browser no longer holds the file, so ask for it again.
        const label = "Retry with the file…";
        actions.push(button("retry", () => this.on.chooseAgain(), label, { glyph: "retry" }));
      }
    }
    const key = actions.map((a) => a.dataset.role).join(",");
    if (this.actionsEl.dataset.key === key) return; // keep focus on an existing button
    const hadFocus = this.actionsEl.contains(document.activeElement);
    this.actionsEl.dataset.key = key;
    this.actionsEl.replaceChildren(...actions);
    this.actionsEl.hidden = actions.length === 0;
    if (hadFocus) (actions[0] || this.el).focus();
  }
}
