// The upload queue: files wait for one of a few slots, then go straight to storage, in
// one presigned PUT or in parts (multipart.js; the same file dropped again after a
// reload resumes its parts). Cancel works while waiting and while sending.

import { PageError, abortUpload, createUpload, putToStorage } from "./api.js";
import { declaredType } from "./checks.js";
import * as multipart from "./multipart.js";

const MAX_PARALLEL_UPLOADS = 3; // files uploading at once; the others wait their turn

/**
 * The page's upload queue. `listed(row)`: the row is still in the list (not cleared by a
 * sign-out); `learnMaxBytes(bytes)`: the server's limit, from a grant; `uploaded(row,
 * uploadId, held)`: the file is in storage, what comes next (its errors fail the row).
 */
export function uploadQueue({ listed, learnMaxBytes, uploaded }) {
  let waiting = []; // rows waiting for an upload slot
  let uploading = 0;

  function enqueue(row) {
    row.waiting = true;
    row.cancel = () => {
      waiting = waiting.filter((other) => other !== row);
      row.waiting = false;
      row.cancel = null;
      row.setStatus("failed", { code: "cancelled", message: "Upload cancelled." });
    };
    row.setStatus("queued");
    waiting.push(row);
    pump();
  }

  function pump() {
    while (uploading < MAX_PARALLEL_UPLOADS && waiting.length) {
      const row = waiting.shift();
      uploading += 1;
      run(row).finally(() => {
        uploading -= 1;
        pump();
      });
    }
  }

  /** One file: presign, PUT with progress, then hand it on. */
  async function run(row) {
    const { file } = row;
    row.waiting = false;
    row.cancel = null;
    row.setStatus("uploading");
    // A 429 (rate_limited) is waited out by api.js; the row says why it is not moving.
    const held = (err) => {
      row.hold = `${err.message} The page will try again by itself.`;
      row.render();
    };
    try {
      const contentType = declaredType(file);
      // The same file dropped again after a reload resumes its multipart upload.
      const grant =
        (await multipart.resumable(file)) || (await createUpload(file, contentType, held));
      row.hold = null;
      if (!listed(row)) return; // the list was cleared (signed out) meanwhile
      if (grant.max_size_bytes) learnMaxBytes(grant.max_size_bytes);
      const onProgress = (loaded) => {
        row.loaded = loaded;
        row.render();
      };
      let upload;
      if (grant.multipart) {
        multipart.remember(file, grant);
        upload = multipart.putInParts(file, grant, onProgress);
        row.cancel = () => {
          upload.abort();
          multipart.forget(file);
          abortUpload(grant.upload_id).catch(() => {}); // else the server's reaper does it
        };
      } else {
        upload = putToStorage(file, grant, onProgress);
        row.cancel = upload.abort;
      }
      row.render(); // shows Cancel
      await upload.done;
      if (grant.multipart) multipart.forget(file);
      row.cancel = null;
      if (!listed(row)) return;
      await uploaded(row, grant.upload_id, held);
    } catch (err) {
      const error =
        err instanceof PageError
          ? err
          : new PageError("unexpected", "Something went wrong in the page. Try again.");
      row.cancel = null;
      row.hold = null;
      row.setStatus("failed", { code: error.code, message: error.message });
    }
  }

  return {
    enqueue,
    /** Forget the rows waiting (the list is being cleared; their cancel is not called). */
    clear() {
      waiting = [];
    },
  };
}
