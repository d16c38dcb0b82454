"""docs/DEPLOY.md's commands, run as a reader would run them where this machine can.

Every shell block is either run here or marked, on the line before it, with
`<!-- needs: docker -->` or `<!-- needs: cluster -->`. The unmarked blocks run in a
temp copy of the files they read; the `.env` they leave must satisfy every `${VAR:?}`
of the Compose files. The production Secret recipe (marked: it needs a cluster) also
runs, against a stand-in `kubectl` that records what it was asked to create, so the
Secrets it makes are checked against every key the production manifests read.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.deploy import REPO_ROOT, require_tool
from tests.deploy.compose_env import (
    MissingVariableError,
    interpolate,
    read_env_file,
    required_variables,
)
from tests.deploy.test_kubernetes import containers, pod_specs, render

DOC = REPO_ROOT / "docs" / "DEPLOY.md"
SHELL_LANGUAGES = {"sh", "bash", "shell"}
MARKER = re.compile(r"^<!-- needs: (docker|cluster) -->$")
FENCE = re.compile(r"^```(?P<lang>[\w-]*)\s*$")


@dataclass(frozen=True)
class Block:
    line: int
    lang: str
    text: str
    needs: str | None


def blocks(path: Path = DOC) -> list[Block]:
    found: list[Block] = []
    lines = path.read_text().splitlines()
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        end = index + 1
        while not lines[end].startswith("```"):
            end += 1
        previous = next((lines[i] for i in range(index - 1, -1, -1) if lines[i].strip()), "")
        marker = MARKER.match(previous.strip())
        found.append(
            Block(
                line=index + 1,
                lang=opening.group("lang"),
                text="\n".join(lines[index + 1 : end]) + "\n",
                needs=marker.group(1) if marker else None,
            )
        )
        index = end + 1
    return found


def shell_blocks() -> list[Block]:
    return [b for b in blocks() if b.lang in SHELL_LANGUAGES]


def runnable_blocks() -> list[Block]:
    return [b for b in shell_blocks() if b.needs is None]


def run_shell(script: str, cwd: Path, path: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=cwd,
        env={"PATH": path or os.environ.get("PATH", ""), "HOME": str(cwd)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def env_after_the_doc(tmp_path: Path) -> dict[str, str]:
    """The `.env` that the doc's runnable blocks leave in a fresh copy of the repository's files."""
    require_tool("openssl", "apt-get install openssl")
    for name in (".env.example", "docker-compose.yaml", "docker-compose.locust.yml"):
        shutil.copy(REPO_ROOT / name, tmp_path / name)
    for block in runnable_blocks():
        result = run_shell(block.text, tmp_path)
        assert result.returncode == 0, f"DEPLOY.md line {block.line}:\n{result.stderr}"
    return read_env_file((tmp_path / ".env").read_text())


def test_every_shell_block_is_run_here_or_marked_as_needing_docker_or_a_cluster() -> None:
    # Given the doc's shell blocks: the unmarked ones are those this file runs
    runnable = runnable_blocks()
    assert runnable, "expected the secret generation to be runnable here"
    for block in runnable:
        assert "docker " not in block.text and "kubectl " not in block.text, (
            f"DEPLOY.md line {block.line} needs Docker or a cluster but is not marked"
        )
    # And every marked block is a shell block (a marker on prose or JSON is a typo)
    lines = DOC.read_text().splitlines()
    marked = [i for i, line in enumerate(lines) if MARKER.match(line.strip())]
    fenced_after = {b.line - 1 for b in shell_blocks() if b.needs}
    for index in marked:
        following = next(j for j in range(index + 1, len(lines)) if lines[j].strip())
        assert following in fenced_after, f"marker on line {index + 1} precedes no shell block"


def test_the_secret_one_liner_fills_every_required_compose_variable(
    env_after_the_doc: dict[str, str],
) -> None:
    # Then docker compose would start: every ${VAR:?} of the stack has a value
    compose = (REPO_ROOT / "docker-compose.yaml").read_text()
    interpolate(compose, env_after_the_doc)
    for name in required_variables(compose):
        assert len(env_after_the_doc[name]) >= 32, name
    # And the values are URL-safe (they end up inside connection URLs)
    for name in required_variables(compose):
        assert re.fullmatch(r"[0-9a-f]+", env_after_the_doc[name]), name


def test_the_load_test_key_is_the_one_value_the_doc_adds_for_locust(
    env_after_the_doc: dict[str, str],
) -> None:
    locust = (REPO_ROOT / "docker-compose.locust.yml").read_text()
    with pytest.raises(MissingVariableError, match="V2M_API_KEY"):
        interpolate(locust, env_after_the_doc)
    interpolate(locust, {**env_after_the_doc, "V2M_API_KEY": "v2m_test"})
    load_blocks = [b for b in shell_blocks() if "docker-compose.locust.yml up" in b.text]
    assert load_blocks and all('echo "V2M_API_KEY=' in b.text for b in load_blocks)
    assert all(b.needs == "docker" for b in load_blocks)


def test_the_doc_uses_no_gnu_only_sed_in_place() -> None:
    for path in (DOC, REPO_ROOT / "README.md"):
        for block in blocks(path):
            assert not re.search(r"\bsed\s+(-\w*\s+)*-i\b", block.text), f"{path.name}:{block.line}"


def production_recipe() -> Block:
    [block] = [
        b for b in shell_blocks() if "k8s/overlays/production" in b.text and "secret" in b.text
    ]
    return block


def recorded_secrets(tmp_path: Path) -> tuple[dict[str, dict[str, str]], list[list[str]]]:
    """Run the production recipe with a stand-in kubectl; the Secrets it would create."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "kubectl.jsonl"
    stub = bin_dir / "kubectl"
    stub.write_text(
        "#!/usr/bin/env python3\n"
        "import json, sys\n"
        f"with open({str(log)!r}, 'a') as f:\n"
        "    f.write(json.dumps(sys.argv[1:]) + '\\n')\n"
    )
    stub.chmod(0o755)
    result = run_shell(production_recipe().text, tmp_path, f"{bin_dir}:{os.environ['PATH']}")
    assert result.returncode == 0, result.stderr
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    secrets: dict[str, dict[str, str]] = {}
    for argv in calls:
        if "generic" in argv:
            name = argv[argv.index("generic") + 1]
            literals = [
                a.removeprefix("--from-literal=") for a in argv if a.startswith("--from-literal=")
            ]
            secrets[name] = dict(item.split("=", 1) for item in literals)
    return secrets, calls


def test_the_production_secret_recipe_creates_every_key_the_manifests_read(
    tmp_path: Path,
) -> None:
    secrets, calls = recorded_secrets(tmp_path)
    # Every secretKeyRef of the production render, optional or not, has its key
    wanted: set[tuple[str, str]] = set()
    for _, pod in pod_specs(render("production")):
        for container in containers(pod):
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    wanted.add((ref["name"], ref["key"]))
    missing = sorted((n, k) for n, k in wanted if k not in secrets.get(n, {}))
    assert not missing, f"the recipe does not create {missing}"
    app = secrets["video2mp3-secrets"]
    # No empty value (an unset shell variable would leave one)
    assert all(app.values()), app
    assert len(app["V2M_JWT_SECRET"]) >= 32
    assert "change-me" not in json.dumps(secrets).lower()
    # KEDA reads the broker with the same password RabbitMQ is given
    keda_host = secrets["rabbitmq-keda"]["host"]
    assert f":{app['RABBITMQ_DEFAULT_PASS']}@" in keda_host
    assert calls[-1] == ["apply", "-k", "k8s/overlays/production"]
