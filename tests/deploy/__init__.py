"""Offline checks of the deployment files: Dockerfiles, Compose, Kubernetes, scripts.

Nothing here needs a Docker engine or a cluster. The tools the checks run
(kubectl, hadolint, shellcheck, nginx) must be installed; a missing one fails
its test with the command that installs it, rather than skipping.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
# Reference schemas live in the `shared` folder beside the repository.
SCHEMAS_DIR = REPO_ROOT.parent / "shared" / "schemas"


def require_tool(name: str, install: str) -> str:
    """Path of `name` (the running virtualenv's bin first, then PATH), or fail saying how to install it."""
    venv_bin = Path(sys.executable).parent / name
    if venv_bin.is_file():
        return str(venv_bin)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed; install it with: {install}", pytrace=False)
    return found


def schema_path(name: str) -> Path:
    """A reference schema from ../shared/schemas, or fail saying where it should be."""
    path = SCHEMAS_DIR / name
    if not path.is_file():
        pytest.fail(
            f"reference schema {name} not found in the shared/schemas folder beside the "
            "repository (see its README.md)",
            pytrace=False,
        )
    return path
