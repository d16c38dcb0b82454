"""ffmpeg's memory limit in every overlay sits below the worker container's memory limit."""

from __future__ import annotations

import pytest

from tests.deploy.test_kubernetes import (
    OVERLAYS,
    app_config,
    parse_quantity,
    render,
    worker_container,
)

MiB = 2**20
# The worker process's own peak (issue target; docs/PERFORMANCE.md measures it).
WORKER_BUDGET_MIB = 120
# Address space Debian's ffmpeg maps before it converts anything (its shared libraries):
# a limit below this fails every job.
FFMPEG_START_MIB = 300


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ffmpeg_memory_limit_fits_inside_the_worker_container(overlay: str) -> None:
    docs = render(overlay)
    container = worker_container(docs)
    env = {**app_config(docs), **{e["name"]: e.get("value") for e in container["env"]}}
    limit_mib = int(env["V2M_FFMPEG_MEMORY_LIMIT_MB"])
    concurrency = int(env.get("V2M_WORKER_CONCURRENCY") or 1)
    container_mib = parse_quantity(container["resources"]["limits"]["memory"]) / MiB

    # ffmpeg fails its allocation (resource_limit, once) before the OOM killer fires
    assert limit_mib * concurrency + WORKER_BUDGET_MIB <= container_mib, (limit_mib, container_mib)
    assert limit_mib >= FFMPEG_START_MIB
