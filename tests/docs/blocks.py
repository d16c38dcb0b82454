"""The shell blocks of the docs, with the marker on the line before each fence.

A fenced block whose language is bash, sh, console or shell is a command a reader may
run. The HTML comment on the line immediately before its fence says how it is covered:

    <!-- needs: docker -->          needs a Docker engine (not on the test machine)
    <!-- needs: cluster -->         needs a Kubernetes cluster
    <!-- run-by: tests/x.py::test_name -->   that test runs it (with small counts)
    <!-- not-run: reason -->        cannot run in a test, for the reason given
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHELL_LANGUAGES = {"bash", "sh", "console", "shell"}
_FENCE = re.compile(r"^(```+|~~~+)\s*([\w-]*)")
_MARKER = re.compile(r"^<!--\s*(needs|run-by|not-run):\s*(.+?)\s*-->$")


@dataclass(frozen=True)
class Block:
    doc: str  # path relative to the repository
    line: int  # 1-based line of the opening fence
    language: str
    text: str
    marker: tuple[str, str] | None  # (kind, value) of the comment before the fence

    def __str__(self) -> str:
        return f"{self.doc}:{self.line}"


def shell_blocks(path: Path) -> list[Block]:
    """Every shell block of a Markdown file, in order."""
    lines = path.read_text().splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        fence = _FENCE.match(lines[i])
        if not fence:
            i += 1
            continue
        end = next(
            (j for j in range(i + 1, len(lines)) if lines[j].startswith(fence.group(1))),
            len(lines),
        )
        if fence.group(2) in SHELL_LANGUAGES:
            marker = _MARKER.match(lines[i - 1].strip()) if i else None
            blocks.append(
                Block(
                    doc=path.relative_to(ROOT).as_posix()
                    if path.is_relative_to(ROOT)
                    else str(path),
                    line=i + 1,
                    language=fence.group(2),
                    text="\n".join(lines[i + 1 : end]) + "\n",
                    marker=(marker.group(1), marker.group(2)) if marker else None,
                )
            )
        i = end + 1
    return blocks


def run_by(doc: str, test: str) -> Block:
    """The one block of `doc` whose marker says `test` runs it."""
    found = [b for b in shell_blocks(ROOT / doc) if b.marker == ("run-by", test)]
    assert len(found) == 1, f"{doc} has {len(found)} blocks marked run-by: {test}"
    return found[0]
