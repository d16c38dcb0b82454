// The list of the user's jobs: each unfinished one followed live (api.js followJob:
// Server-Sent Events, polling as fallback), earlier ones loaded a page at a time
// (GET v1/jobs) below what is shown.

import { followJob, isTerminal, listJobs } from "./api.js";
import { showDeliveries } from "./notify.js";
import { JobRow } from "./row.js";

const PAGE_SIZE = 20;

/** Follow a row's job until it ends; a row following already stops first. */
export function follow(row) {
  row.stopFollowing?.();
  row.stopFollowing = null;
  if (!row.job || isTerminal(row.job.status)) return;
  row.stopFollowing = followJob(
    row.job.id,
    (job) => row.setJob(job),
    (err) => row.setStatus("failed", { code: err.code, message: err.message }),
  );
}

/**
 * The page's "load earlier jobs": `state` is the page's (rows, byJobId, nextCursor,
 * ownerId), `els` its list, loading, more and notice nodes, `handlers` the rows' own.
 */
export function jobPages({ state, els, handlers, updateSummary }) {
  /** A page of GET v1/jobs, appended below what is shown; unfinished jobs are followed. */
  return async function loadJobs() {
    const owner = state.ownerId;
    els.more.disabled = true;
    try {
      const page = await listJobs({ limit: PAGE_SIZE, cursor: state.nextCursor });
      if (state.ownerId !== owner) return; // signed out (or in as someone else) meanwhile
      for (const job of page.items) {
        if (state.byJobId.has(job.id)) continue;
        const row = new JobRow({ job, on: handlers });
        state.rows.add(row);
        state.byJobId.set(job.id, row);
        els.list.append(row.el);
        follow(row);
        if (isTerminal(job.status)) showDeliveries(row, { recheck: false });
      }
      state.nextCursor = page.next_cursor;
      els.notice.hidden = true;
    } catch (err) {
      if (state.ownerId !== owner) return;
      els.notice.textContent = `Earlier conversions could not be loaded: ${err.message}`;
      els.notice.hidden = false;
    } finally {
      if (state.ownerId === owner) {
        els.loading.hidden = true;
        els.more.disabled = false;
        els.more.hidden = !state.nextCursor;
        updateSummary();
      }
    }
  };
}
