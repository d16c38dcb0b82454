"""Third-party images: each exists where it is pulled from, and is pinned.

Docker Hub removed the `minio/minio` and `minio/mc` repositories in September 2026;
a file naming them fails at the first pull. The list below holds namespaces and
repositories known to be gone; every image named by a Compose file or a rendered
overlay is checked against it, and must carry a version tag or a digest.
"""

from __future__ import annotations

import re

import pytest

from tests.deploy import REPO_ROOT
from tests.deploy.test_compose import COMPOSE_FILES, services
from tests.deploy.test_kubernetes import OVERLAYS, containers, pod_specs, render

# Repositories (or whole namespaces, ending in "/") that no longer exist on Docker Hub.
REMOVED_FROM_DOCKER_HUB = ("minio/minio", "minio/mc", "minio/")
OWN_IMAGE = re.compile(r"^(?:[\w.-]+(?::\d+)?/)*video2mp3/(api|worker|frontend):")


def docker_hub_repository(image: str) -> str | None:
    """`namespace/name` of an image pulled from Docker Hub, or None for another registry."""
    name = image.split("@", 1)[0]
    base, _, tag = name.rpartition(":")
    if base and "/" not in tag:
        name = base
    first = name.split("/", 1)[0]
    if "." in first or ":" in first or first == "localhost":
        if first not in ("docker.io", "index.docker.io"):
            return None
        name = name.split("/", 1)[1]
    return name if "/" in name else f"library/{name}"


def every_image() -> list[tuple[str, str]]:
    found = [
        (f"{name}: {service_name}", service["image"])
        for name in COMPOSE_FILES
        for service_name, service in services(name).items()
    ]
    for overlay in OVERLAYS:
        for workload, pod in pod_specs(render(overlay)):
            for container in containers(pod):
                where = f"{overlay}: {workload['kind']}/{workload['metadata']['name']}"
                found.append((f"{where}/{container['name']}", container["image"]))
    return found


def test_the_removed_list_catches_the_images_docker_hub_removed() -> None:
    for image in ("minio/minio:RELEASE.2025-04-22T22-12-26Z", "docker.io/minio/mc:latest"):
        repository = docker_hub_repository(image)
        assert repository is not None and repository.startswith(REMOVED_FROM_DOCKER_HUB)
    assert docker_hub_repository("quay.io/minio/minio:RELEASE.2025-04-22T22-12-26Z") is None
    assert docker_hub_repository("postgres:16.9-bookworm") == "library/postgres"


def test_no_image_comes_from_a_repository_docker_hub_removed() -> None:
    images = every_image()
    assert len(images) > 10
    for where, image in images:
        repository = docker_hub_repository(image)
        assert repository is None or not repository.startswith(REMOVED_FROM_DOCKER_HUB), (
            f"{where}: {image} no longer exists on Docker Hub"
        )


def test_every_third_party_image_is_pinned_to_a_version() -> None:
    for where, image in every_image():
        if "@sha256:" in image:
            continue
        _, _, tag = image.rpartition(":")
        assert tag and "/" not in tag and tag != "latest", f"{where}: {image} is not pinned"
        if not OWN_IMAGE.match(image) and "${" not in image:
            assert re.search(r"\d", tag), f"{where}: {image} tag is not a version"


@pytest.mark.parametrize("path", ["docker-compose.yaml", "k8s/base/storage.yaml"])
def test_one_storage_image_version_everywhere(path: str) -> None:
    versions = set(re.findall(r"rclone/rclone:([\w.-]+)", (REPO_ROOT / path).read_text()))
    assert versions == {"1.75.2"}, f"{path}: {versions}"
