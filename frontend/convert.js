// After an upload: convert straight away, or first the check of the file's tags, cover
// and length (review.js) when "Check the tags before converting" was on for the row.

import { coverDataUrl, createJob, probeUpload } from "./api.js";
import { buildReview } from "./review.js";

/**
 * `listed(row)`: the row is still in the list; `started(row, job)`: its job was created,
 * to be shown and followed.
 */
export function conversions({ listed, started }) {
  /** Create the job for an uploaded file. */
  async function convert(row, uploadId, options, held = () => {}) {
    const job = await createJob(uploadId, options, held);
    row.hold = null;
    if (!listed(row)) return;
    row.options = options;
    started(row, job);
  }

  /** The check before converting: the file's own tags, cover and length. */
  async function review(row, uploadId) {
    row.setStatus("review");
    let probe = null;
    let problem = "";
    try {
      probe = await probeUpload(uploadId);
    } catch (err) {
      problem = `Its tags could not be read: ${err.message}`;
    }
    const keepsCover = (row.options.cover || "source") === "source";
    const cover = probe?.has_cover && keepsCover ? await coverDataUrl(uploadId) : null;
    if (!listed(row) || row.status !== "review") return;
    const form = buildReview({
      key: row.key,
      filename: row.filename,
      options: row.options,
      probe,
      problem,
      cover,
      onConvert: (options) => convert(row, uploadId, options),
    });
    row.showReview(form);
  }

  /** A file now in storage: its review (which frees the upload slot) or its job. */
  async function uploaded(row, uploadId, held) {
    if (row.review) {
      review(row, uploadId); // frees the upload slot while the user checks
      return;
    }
    await convert(row, uploadId, row.options, held);
  }

  return { uploaded };
}
