// Client-side checks before anything is sent: the server's size limit and types that are
// clearly not media. Anything else goes up; the worker's ffprobe has the last word.

import { extensionOf, formatLimit } from "./format.js";

/** The API's default V2M_MAX_UPLOAD_BYTES, used until an upload response says otherwise. */
export const DEFAULT_MAX_BYTES = 50 * 1024 ** 3;

// Refusals, made by the page before any request or by the API before the upload. Sending
// the same file again cannot help, so such rows offer Dismiss instead of Retry.
export const REFUSED = new Set([
  "file_too_large",
  "file_empty",
  "not_media",
  "upload_too_large",
  "unsupported_media_type",
]);

const NOT_MEDIA_TOP = /^(text|image|font|model|message|multipart)\//;
const NOT_MEDIA_APP = new RegExp(
  "^application/(" +
    [
      "pdf|rtf|msword|vnd\\.ms-excel|vnd\\.ms-powerpoint|epub\\+zip",
      "vnd\\.openxmlformats-officedocument\\..*|vnd\\.oasis\\.opendocument\\..*",
      "zip|x-zip-compressed|gzip|x-gzip|x-tar|x-bzip2?|x-xz|zstd|x-7z-compressed",
      "x-rar-compressed|vnd\\.rar|java-archive|x-apple-diskimage|x-iso9660-image",
      "json|ld\\+json|xml|xhtml\\+xml|javascript|x-javascript|x-sh|x-python|sql",
      "x-msdownload|x-subrip",
    ].join("|") +
    ")$",
);
// Only consulted when the browser gives no type at all.
const NOT_MEDIA_EXT = new Set(
  (
    "txt md csv tsv log json xml yaml yml html htm css js mjs py sh rtf pdf doc docx xls " +
    "xlsx ppt pptx odt ods odp epub zip rar 7z tar gz tgz bz2 xz zst exe dmg iso apk jar " +
    "jpg jpeg png gif webp heic heif avif bmp tif tiff svg ico psd srt vtt ass ssa sub"
  ).split(" "),
);

// What to declare when the browser gives no usable type. The API accepts video/*,
// audio/* and application/octet-stream.
const EXT_TYPE = {
  mp4: "video/mp4",
  m4v: "video/mp4",
  mov: "video/quicktime",
  mkv: "video/x-matroska",
  webm: "video/webm",
  avi: "video/x-msvideo",
  wmv: "video/x-ms-wmv",
  flv: "video/x-flv",
  ts: "video/mp2t",
  m2ts: "video/mp2t",
  mts: "video/mp2t",
  mpg: "video/mpeg",
  mpeg: "video/mpeg",
  "3gp": "video/3gpp",
  ogv: "video/ogg",
  mp3: "audio/mpeg",
  m4a: "audio/mp4",
  aac: "audio/aac",
  wav: "audio/wav",
  flac: "audio/flac",
  ogg: "audio/ogg",
  opus: "audio/ogg",
};
const MEDIA_TYPE = /^(video|audio)\/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$/;

/** The content_type to declare for a file (and to send with its PUT). */
export function declaredType(file) {
  const type = (file.type || "").split(";")[0].trim().toLowerCase();
  if (MEDIA_TYPE.test(type)) return type;
  return EXT_TYPE[extensionOf(file.name)] || "application/octet-stream";
}

/** Why a file is refused before upload ({code, message}), or null when it may go. */
export function refusal(file, maxBytes) {
  if (file.size > maxBytes) {
    const sizes = `${formatLimit(file.size)}; the largest accepted is ${formatLimit(maxBytes)}`;
    return { code: "file_too_large", message: `This file is ${sizes}.` };
  }
  if (file.size === 0) {
    return { code: "file_empty", message: "This file is empty, so there is nothing to convert." };
  }
  const type = (file.type || "").toLowerCase();
  const ext = extensionOf(file.name);
  if (NOT_MEDIA_TOP.test(type) || NOT_MEDIA_APP.test(type) || (!type && NOT_MEDIA_EXT.has(ext))) {
    const kind = type.startsWith("image/") ? "picture" : "document";
    const what = type ? `a ${kind} (${type})` : `a .${ext} file`;
    return {
      code: "not_media",
      message: `This is ${what}, not a video or audio file, so it was not uploaded.`,
    };
  }
  return null;
}
