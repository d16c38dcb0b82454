// Words and numbers shown on the page: sizes, limits, durations, file names.

const SIZE_UNITS = ["bytes", "KB", "MB", "GB", "TB"];
const LIMIT_UNITS = ["bytes", "KiB", "MiB", "GiB", "TiB"];

function scale(n, units) {
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return [value, units[unit], unit];
}

/** "894 KB", "1.2 MB": file sizes as people read them. */
export function formatBytes(n) {
  if (!Number.isFinite(n)) return "";
  const [value, unit, index] = scale(n, SIZE_UNITS);
  if (index === 0) return `${value} ${value === 1 ? "byte" : "bytes"}`;
  return `${value.toFixed(value < 10 ? 1 : 0)} ${unit}`;
}

/** "195.3 KiB", "2 GiB": limits in binary units, as the API words them. */
export function formatLimit(n) {
  const [value, unit, index] = scale(n, LIMIT_UNITS);
  return index === 0 ? `${value} bytes` : `${+value.toFixed(1)} ${unit}`;
}

/** "0:40", "1:02:03". */
export function formatDuration(seconds) {
  const total = Math.max(0, Math.round(seconds));
  const hours = Math.floor(total / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const secs = String(total % 60).padStart(2, "0");
  return hours ? `${hours}:${String(minutes).padStart(2, "0")}:${secs}` : `${minutes}:${secs}`;
}

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

export function formatTime(date) {
  return dateTime.format(date);
}

export function extensionOf(name) {
  const dot = name.lastIndexOf(".");
  return dot > 0 ? name.slice(dot + 1).toLowerCase() : "";
}

/** The name without its extension: "holiday.mp4" → "holiday" (the MP3 is "holiday.mp3"). */
export function stemOf(name) {
  const base = name.replace(/\\/g, "/").split("/").pop() || "";
  const dot = base.lastIndexOf(".");
  return (dot > 0 ? base.slice(0, dot) : base).trim() || "audio";
}

/** "VBR V2 · stereo", "128 kbit/s CBR · mono · 44.1 kHz": a job's options in short. */
export function describeOptions(options = {}) {
  const parts = [];
  const format = options.format || "mp3";
  if (format !== "mp3") parts.push(format.toUpperCase());
  if (options.bitrate_kbps) parts.push(`${options.bitrate_kbps} kbit/s CBR`);
  else if (format === "mp3") parts.push(`VBR V${options.quality ?? 2}`);
  parts.push(options.channels === 1 ? "mono" : "stereo");
  if (options.sample_rate_hz) parts.push(`${options.sample_rate_hz / 1000} kHz`);
  if (options.normalize) parts.push(`${options.normalize.target_lufs} LUFS`);
  if (options.trim) parts.push("trimmed");
  return parts.join(" · ");
}
