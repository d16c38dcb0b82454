"""Large files in parts: `POST /v1/uploads` answered with a `multipart` plan.

Parts go straight to storage, ``PARALLEL`` at a time, each read from the file when it is
sent (one part in memory per thread) and retried with backoff on a fresh URL. Before
sending, storage is asked which parts it holds (`GET /v1/uploads/{id}/parts`), so a run
stopped by Ctrl-C resumes where it stopped: the upload id and its plan are kept in the
state file (cli/resume.py), the parts themselves in storage.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from cli.client import ApiClient, Progress, reaching
from cli.errors import CancelledError, StorageError, UnreachableError

PARALLEL = 4
URLS_PER_CALL = 100  # the API's cap on part numbers a call
ATTEMPTS = 5


def send_parts(
    client: ApiClient, upload_id: str, plan: dict[str, Any], path: Path, progress: Progress
) -> None:
    """Send the parts storage lacks, then complete the upload."""
    base = f"/v1/uploads/{upload_id}"
    total = path.stat().st_size
    part_size, count = int(plan["part_size"]), int(plan["part_count"])

    def size_of(n: int) -> int:
        return part_size if n < count else total - part_size * (count - 1)

    held = client.request("GET", f"{base}/parts").json()["parts"]
    etags: dict[int, str] = {p["part_number"]: p["etag"] for p in held}
    progress(sum(size_of(n) for n in etags), total)
    todo = [n for n in range(1, count + 1) if n not in etags]
    urls: dict[int, dict[str, Any]] = {}
    lock = threading.Lock()

    def url_for(n: int) -> dict[str, Any]:
        with lock:
            if n not in urls:
                batch = [n, *(m for m in todo if m != n and m not in urls)][:URLS_PER_CALL]
                answer = client.request("POST", f"{base}/parts", json={"part_numbers": batch})
                urls.update({p["part_number"]: p for p in answer.json()["parts"]})
            return urls[n]

    def put(n: int, data: bytes) -> str:
        grant = url_for(n)
        try:
            with reaching("storage"):
                response = client.storage.put(grant["url"], content=data, headers=grant["headers"])
        except UnreachableError:
            urls.pop(n, None)
            raise
        if response.status_code >= 300 or "etag" not in response.headers:
            urls.pop(n, None)  # perhaps expired: the next try asks for a fresh URL
            raise StorageError(
                f"Storage refused part {n} ({response.status_code}): {response.text[:300]}"
            )
        return response.headers["etag"]

    stop = threading.Event()  # a part failed for good: the others not yet begun stay unsent

    def send(n: int) -> str:
        if client.cancel.is_set() or stop.is_set():
            raise CancelledError("Interrupted.")
        with path.open("rb") as handle:
            handle.seek((n - 1) * part_size)
            data = handle.read(size_of(n))
        retrying = Retrying(
            retry=retry_if_exception_type((StorageError, UnreachableError)),
            wait=wait_exponential_jitter(initial=1, max=30),
            stop=stop_after_attempt(ATTEMPTS),
            sleep=client.sleep,
            reraise=True,
        )
        try:
            etag: str = retrying(put, n, data)
        except BaseException:
            stop.set()
            raise
        progress(len(data), total)
        return etag

    with ThreadPoolExecutor(PARALLEL, thread_name_prefix="v2m-part") as pool:
        for n, etag in zip(todo, pool.map(send, todo), strict=True):
            etags[n] = etag
    parts = [{"part_number": n, "etag": etags[n]} for n in sorted(etags)]
    client.request("POST", f"{base}/complete", json={"parts": parts})
