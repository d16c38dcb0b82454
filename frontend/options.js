// The output options beyond the encoder settings: format, loudness, trim, tags and cover.
// Which encoder settings a format takes mirrors the API (a setting that does not apply
// is a 422 there): the controls that do not apply are disabled, and not sent.

const BITRATE = new Set(["mp3", "m4a", "opus", "mp4"]);
const RATE = new Set(["mp3", "m4a", "flac", "wav", "mp4"]);
const HINT = {
  mp3: "Plays everywhere.",
  m4a: "AAC: smaller than MP3 at the same quality; Apple devices and most players.",
  opus: "The smallest for speech and music; modern players and browsers.",
  flac: "Lossless: the exact sound, about half the size of WAV.",
  wav: "Uncompressed 16-bit PCM: for editing.",
  mp4: "The video too (H.264 with AAC audio), for players that need video.",
};
const TAGS = ["title", "artist", "album"];
// Formats whose file carries a cover picture (shared/options.py FORMATS).
const COVER = new Set(["mp3", "m4a", "opus", "flac"]);

export const EXTENSION = { mp3: "mp3", m4a: "m4a", opus: "opus", flac: "flac", wav: "wav", mp4: "mp4" };

/** Enable only the controls the chosen format takes, and say what it is for. */
export function applyFormat(form) {
  const format = form.elements.format.value;
  const quality = form.elements.quality;
  quality.disabled = !BITRATE.has(format);
  const vbr = quality.querySelector("optgroup");
  vbr.disabled = format !== "mp3"; // LAME's VBR scale is MP3's alone
  if (vbr.disabled && quality.value.startsWith("q:")) quality.value = "b:192";
  form.elements.sample_rate.disabled = !RATE.has(format);
  form.querySelector("#opt-format-hint").textContent = HINT[format] || "";
  form.elements.target.disabled = !form.elements.normalize.checked;
  const cover = form.elements.cover;
  cover.disabled = !COVER.has(format);
  cover.querySelector('option[value="frame"]').disabled = !COVER.has(format);
  if (cover.disabled && cover.value === "frame") cover.value = "source";
  form.querySelector("#opt-cover-hint").textContent = COVER.has(format)
    ? ""
    : `${format.toUpperCase()} files carry no cover picture.`;
}

function seconds(input) {
  const value = input.value.trim();
  if (!value) return null;
  const n = Number(value);
  return Number.isFinite(n) && n >= 0 ? n : null;
}

/** The format, loudness, trim and tags asked for in the form, as API options. */
export function readOutputOptions(form) {
  const options = {};
  const format = form.elements.format.value;
  if (format !== "mp3") options.format = format;
  if (form.elements.normalize.checked) {
    options.normalize = { target_lufs: Number(form.elements.target.value) };
  }
  const start = seconds(form.elements.trim_start);
  const end = seconds(form.elements.trim_end);
  if (start || end) {
    options.trim = {};
    if (start) options.trim.start_s = start;
    if (end) options.trim.end_s = end;
  }
  const tags = {};
  for (const name of TAGS) {
    const value = form.elements[`tag_${name}`].value.trim();
    if (value) tags[name] = value;
  }
  if (Object.keys(tags).length) options.tags = tags;
  const cover = form.elements.cover;
  if (!cover.disabled && cover.value !== "source") options.cover = cover.value;
  return options;
}

/** The trim asked for is backwards: end at or before start. */
export function trimProblem(form) {
  const start = seconds(form.elements.trim_start) || 0;
  const end = seconds(form.elements.trim_end);
  return end !== null && end <= start ? "The end of the trim must come after its start." : "";
}
