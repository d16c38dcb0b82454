"""Where the API's CPU goes under load: py-spy attached to the running process, summarised."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.integration.conftest import BIN

RATE_HZ = 100


def attach(pid: int, seconds: int, out: Path) -> subprocess.Popen[bytes]:
    """py-spy sampling ``pid`` for ``seconds`` without pausing it (``--nonblocking``): the
    process keeps serving between samples, though py-spy's own CPU competes with it."""
    return subprocess.Popen(
        [str(BIN / "py-spy"), "record", "--pid", str(pid), "--nonblocking"]
        + ["--rate", str(RATE_HZ), "--duration", str(seconds), "--format", "raw", "-o", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


IDLE_LEAVES = (
    "Queue.get (queue.py)",
    "wait (threading.py)",
    "_acquire_restore (threading.py)",
    "select (selectors.py)",
)
OURS = ("api/", "shared/")
# Where a busy sample goes: the first category whose marker is on its stack.
CATEGORIES = (
    ("database: COMMIT (SQLite WAL write and fsync)", ("do_commit (sqlalchemy/",)),
    ("database: statements (sqlite3 execute, fetch)", ("do_execute", "fetchone", "fetchall")),
    ("database: SQLAlchemy ORM, SQL compilation, pool", ("(sqlalchemy/", "(sqlmodel/")),
    ("presigning (boto3's client presigner: botocore)", ("(botocore/", "(boto3/")),
    ("pydantic (validation, serialisation)", ("(pydantic",)),
    ("our code, other (api/, shared/)", ("(api/routes", "(api/auth", "(api/deps", "(shared/")),
    ("threadpool hand-off (anyio, contextvars)", ("WorkerThread.run",)),
    ("event loop: uvicorn, middleware, routing, JSON", ("",)),
)


def summarise_profile(path: Path, top: int = 10) -> str:
    """Where busy samples go, by category and by our heaviest functions.

    Samples whose innermost frame is a wait (idle threadpool threads, the event loop's
    select) are dropped; function shares are inclusive, of the busy samples.
    """
    busy = 0
    by_category: dict[str, int] = {}
    ours: dict[str, int] = {}
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames = [_frame(f) for f in stack.split(";")]
        if any(idle in frames[-1] for idle in IDLE_LEAVES) or any(
            f.startswith(("<module> ", "create_app.<locals>.lifespan ")) for f in frames[1:]
        ):
            continue  # idle threads, and the server's start-up
        count = int(count_text)
        busy += count
        joined = ";".join(frames)
        category = next(name for name, markers in CATEGORIES if any(m in joined for m in markers))
        by_category[category] = by_category.get(category, 0) + count
        for key in {f for f in frames if f.rsplit("(", 1)[-1].startswith(OURS)}:
            if "Middleware.__call__" not in key:
                ours[key] = ours.get(key, 0) + count
    if not busy:
        return "no busy samples"
    lines = ["| where the busy samples go | share |", "|---|---|"]
    lines += [
        f"| {name} | {100 * by_category[name] / busy:.0f} % |"
        for name, _ in CATEGORIES
        if by_category.get(name)
    ]
    lines += ["", "| our functions (inclusive) | share |", "|---|---|"]
    lines += [
        f"| `{key}` | {100 * n / busy:.0f} % |"
        for key, n in sorted(ours.items(), key=lambda item: -item[1])[:top]
    ]
    return "\n".join(lines) + f"\n\n({busy} busy samples at {RATE_HZ} Hz.)"


def _frame(raw: str) -> str:
    func, _, where = raw.partition(" (")
    file = where.split(":", 1)[0].rstrip(")")
    file = file.removeprefix(_REPO)
    for marker in ("site-packages/", "/lib/python3."):
        if marker in file:
            file = file.split(marker, 1)[1].split("/", 1 if marker.startswith("/lib") else 0)[-1]
    return f"{func} ({file})"


_REPO = str(Path(__file__).resolve().parent.parent) + "/"
