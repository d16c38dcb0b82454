// The check before converting ("Check the tags before converting"): once a file is
// uploaded, what it holds (GET v1/uploads/{id}/probe) prefills its tags, its own cover
// picture is shown when the output keeps it, and its length sits by the trim. The user
// edits and presses Convert; only what differs from the file's own tags is sent (the
// server keeps the file's tags by default), and a field emptied is sent empty, which
// removes that tag.

import { h } from "./dom.js";
import { formatDuration } from "./format.js";

export const TAG_FIELDS = [
  ["title", "Title"],
  ["artist", "Artist"],
  ["album", "Album"],
  ["album_artist", "Album artist"],
  ["date", "Date"],
  ["track", "Track"],
  ["genre", "Genre"],
  ["comment", "Comment"],
];
const MAX_LENGTH = { date: 32, track: 16, genre: 255, comment: 4096 };

function numberOrNull(input) {
  const value = input.value.trim();
  if (!value) return null;
  const n = Number(value);
  return Number.isFinite(n) && n >= 0 ? n : NaN;
}

/** "3.0 s" under a minute, "1:02:03" above: the length the trim is measured against. */
function lengthWords(seconds) {
  return seconds < 60 ? `${seconds.toFixed(1)} s` : formatDuration(seconds);
}

/** Why the trim cannot be honoured, or "". */
function trimProblem(start, end, duration) {
  if (Number.isNaN(start) || Number.isNaN(end)) return "The trim takes seconds, 0 or more.";
  if (end !== null && end <= (start || 0)) return "The end of the trim must come after its start.";
  if (start !== null && duration !== null && start >= duration) {
    return `The trim must start before the end of the file (${lengthWords(duration)}).`;
  }
  return "";
}

/**
 * The review form for one uploaded file. `probe` is the API's description (null when it
 * could not be read, with `problem` saying why); `cover` a data: URL or null.
 * onConvert(options) creates the job; it throws a PageError to show in the form.
 */
export function buildReview({ key, filename, options, probe, problem, cover, onConvert }) {
  const source = probe?.tags || {};
  const asked = options.tags || {};
  const duration = probe?.duration_s ?? null;
  const headingId = `${key}-review-heading`;
  const errorId = `${key}-review-error`;
  const form = h("form", {
    class: "review",
    "data-role": "review",
    "aria-labelledby": headingId,
    novalidate: true,
  });
  const facts = [];
  if (duration !== null) facts.push(`Length ${lengthWords(duration)}`);
  if (probe?.audio) facts.push(`${probe.audio.codec.toUpperCase()} audio`);
  if (probe?.chapters?.length) facts.push(`${probe.chapters.length} chapters`);
  form.append(
    h("h3", { class: "review__heading", id: headingId, text: `Before converting ${filename}` }),
    h("p", {
      class: "review__facts",
      "data-role": "review-facts",
      text: problem || facts.join(" · ") || "Nothing more is known about this file.",
    }),
  );
  if (cover && (options.cover || "source") === "source") {
    form.append(
      h(
        "figure",
        { class: "review__cover" },
        h("img", {
          src: cover,
          alt: `Cover picture of ${filename}`,
          "data-role": "cover-preview",
          width: 96,
          height: 96,
        }),
        h("figcaption", { text: "Its own cover, kept in the output." }),
      ),
    );
  }
  const fields = {};
  const tags = h("fieldset", { class: "field review__tags" }, h("legend", { text: "Tags" }));
  for (const [name, label] of TAG_FIELDS) {
    const id = `${key}-tag-${name}`;
    const input = h("input", {
      class: "input",
      type: "text",
      id,
      name: `tag_${name}`,
      maxlength: MAX_LENGTH[name] || 1024,
      value: asked[name] ?? source[name] ?? "",
    });
    if (name === "track") input.setAttribute("inputmode", "numeric");
    fields[name] = input;
    tags.append(h("label", { for: id, text: label }), input);
  }
  const trimHint = `${key}-trim-hint`;
  const trimInput = (which, value) =>
    h("input", {
      class: "input",
      type: "number",
      id: `${key}-trim-${which}`,
      min: 0,
      max: duration ?? undefined,
      step: 0.1,
      inputmode: "decimal",
      value: value ?? "",
      "aria-describedby": `${trimHint} ${errorId}`,
    });
  const start = trimInput("start", options.trim?.start_s);
  const end = trimInput("end", options.trim?.end_s);
  const trim = h(
    "fieldset",
    { class: "field review__trim" },
    h("legend", { text: "Trim" }),
    h("label", { for: start.id, text: "Start, in seconds" }),
    start,
    h("label", { for: end.id, text: "End, in seconds" }),
    end,
    h("p", {
      class: "field__hint",
      id: trimHint,
      text: duration === null ? "The file's length is not known." : `The file is ${lengthWords(duration)} long.`,
    }),
  );
  const error = h("p", { class: "field__error", id: errorId, role: "alert", "data-role": "review-error" });
  const submit = h("button", { class: "button button--primary", type: "submit", text: "Convert" });
  form.append(tags, trim, error, h("div", { class: "review__actions" }, submit));

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const from = numberOrNull(start);
    const to = numberOrNull(end);
    const problemText = trimProblem(from, to, duration);
    error.textContent = problemText;
    start.setAttribute("aria-invalid", String(Boolean(problemText)));
    if (problemText) {
      start.focus();
      return;
    }
    const chosen = { ...options };
    delete chosen.tags;
    delete chosen.trim;
    const changed = {};
    for (const [name] of TAG_FIELDS) {
      const value = fields[name].value.trim();
      if (value !== (source[name] ?? "")) changed[name] = value;
    }
    if (Object.keys(changed).length) chosen.tags = changed;
    if (from || to) {
      chosen.trim = { ...(options.trim || {}) };
      delete chosen.trim.start_s;
      delete chosen.trim.end_s;
      if (from) chosen.trim.start_s = from;
      if (to) chosen.trim.end_s = to;
    }
    submit.disabled = true;
    try {
      await onConvert(chosen);
    } catch (err) {
      error.textContent = err.message;
      submit.disabled = false;
      submit.focus();
    }
  });
  return form;
}
