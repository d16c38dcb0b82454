"""Every shell block of README.md and docs/ is run by a test or marked as why it is not.

docs/DEPLOY.md is checked the same way by tests/deploy/test_deploy_doc.py, which also runs
its runnable blocks.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.docs.blocks import ROOT, Block, shell_blocks

DOCS = [ROOT / "README.md"] + sorted(
    p for p in (ROOT / "docs").glob("*.md") if p.name != "DEPLOY.md"
)
BLOCKS = [block for doc in DOCS for block in shell_blocks(doc)]


def test_the_docs_have_shell_blocks_to_check() -> None:
    assert {b.doc for b in BLOCKS} >= {"README.md", "docs/RELIABILITY.md", "docs/OPERATIONS.md"}


@pytest.mark.parametrize("block", BLOCKS, ids=str)
def test_shell_block_is_run_by_a_test_or_marked(block: Block) -> None:
    assert block.marker, (
        f"{block}: put <!-- run-by: tests/…py::test_… -->, <!-- needs: docker -->, "
        "<!-- needs: cluster --> or <!-- not-run: reason --> on the line before the fence"
    )
    kind, value = block.marker
    if kind == "needs":
        assert value in ("docker", "cluster"), f"{block}: needs: docker or needs: cluster"
    elif kind == "not-run":
        assert len(value.split()) >= 3, f"{block}: say why it cannot run in a test"
    else:
        path, _, name = value.partition("::")
        test_file = ROOT / path
        assert test_file.is_file(), f"{block}: {path} does not exist"
        source = test_file.read_text()
        assert re.search(rf"^def {re.escape(name)}\(", source, re.M), (
            f"{block}: {path} defines no {name}"
        )
        # the test finds the block by its marker, so it runs what the doc says
        assert f'"{value}"' in source and f'"{block.doc}"' in source, (
            f"{block}: {path} must take the block with run_by({block.doc!r}, {value!r})"
        )


def test_a_marker_counts_only_on_the_line_just_before_the_fence(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text(
        "<!-- needs: docker -->\n\n```sh\ndocker compose up\n```\n"
        "<!-- not-run: a foreground server -->\n```bash\nmake run\n```\n"
        "```python\nprint()\n```\n"
        "```console\n$ ls\n```\n"
    )
    blocks = shell_blocks(doc)
    assert [(b.language, b.marker) for b in blocks] == [
        ("sh", None),
        ("bash", ("not-run", "a foreground server")),
        ("console", None),
    ]
    assert blocks[1].text == "make run\n"
