// What the page remembers across visits (localStorage): the options chosen last and the
// server's upload limit; and the options form read for a new file.

import { applyFormat, readOutputOptions } from "./options.js";

const OPTIONS_KEY = "v2m.options";

export function load(key, fallback) {
  try {
    const raw = localStorage.getItem(key);
    return raw === null ? fallback : JSON.parse(raw);
  } catch {
    return fallback;
  }
}

export function save(key, value) {
  try {
    localStorage.setItem(key, JSON.stringify(value));
  } catch {
    /* private mode or a full store: the page works without it */
  }
}

/** The job's options from the form (`els`: options form, quality and rate selects). */
export function readOptions(els) {
  const options = readOutputOptions(els.options);
  const [kind, value] = els.quality.value.split(":");
  if (!els.quality.disabled && kind === "q") options.quality = Number(value);
  if (!els.quality.disabled && kind === "b") options.bitrate_kbps = Number(value);
  const channels = new FormData(els.options).get("channels");
  if (channels) options.channels = Number(channels);
  if (!els.rate.disabled && els.rate.value) options.sample_rate_hz = Number(els.rate.value);
  return options;
}

export function describeQuality(els) {
  els.qualityHint.textContent = els.quality.value.startsWith("q:")
    ? "Variable bitrate: the best sound for its size."
    : "Constant bitrate: a predictable size that every player handles.";
}

export function restoreOptions(els) {
  const saved = load(OPTIONS_KEY, null);
  if (!saved || typeof saved !== "object") return;
  if ([...els.quality.options].some((o) => o.value === saved.quality)) {
    els.quality.value = saved.quality;
  }
  const channels = saved.channels === "1" ? "1" : "";
  const radio = els.options.querySelector(`input[name="channels"][value="${channels}"]`);
  if (radio) radio.checked = true;
  if ([...els.rate.options].some((o) => o.value === saved.rate)) els.rate.value = saved.rate;
  const format = els.options.elements.format;
  if ([...format.options].some((o) => o.value === saved.format)) format.value = saved.format;
  const cover = els.options.elements.cover;
  if ([...cover.options].some((o) => o.value === saved.cover)) cover.value = saved.cover;
  els.options.elements.review.checked = saved.review === true;
  applyFormat(els.options);
}

export function rememberOptions(els) {
  save(OPTIONS_KEY, {
    quality: els.quality.value,
    channels: new FormData(els.options).get("channels") || "",
    rate: els.rate.value,
    format: els.options.elements.format.value,
    cover: els.options.elements.cover.value,
    review: els.options.elements.review.checked,
  });
}
