"""Compose files: valid against the Compose spec, and wired the way docs/DEPLOY.md promises.

No Docker engine runs here, so the files are checked as data: the schema from
../shared/schemas/compose-spec.json, then the rules (healthchecks, start order,
pinned images, secrets only from .env, a scalable worker).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.deploy import REPO_ROOT, schema_path

COMPOSE_FILES = ["docker-compose.yaml", "docker-compose.locust.yml"]
OWN_SERVICES = {"api", "worker", "frontend", "notifier"}
#: Services that run another service's image (same build, another command).
IMAGE_OF = {"notifier": "api"}
INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Z0-9_]+)(?P<op>:?[-?])?(?P<arg>[^}]*)\}")
SECRET_NAME = re.compile(r"PASSWORD|SECRET")


def load(name: str) -> dict[str, Any]:
    with (REPO_ROOT / name).open() as handle:
        data: dict[str, Any] = yaml.safe_load(handle)
    return data


def services(name: str = "docker-compose.yaml") -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = load(name)["services"]
    return result


def duration_seconds(text: str) -> float:
    """Compose duration ("2h1m", "90s", "1m30s") in seconds."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", text)
    assert parts and "".join(n + u for n, u in parts) == text, f"bad duration {text!r}"
    return sum(float(n) * units[u] for n, u in parts)


def env_example_keys() -> dict[str, str]:
    keys = {}
    for line in (REPO_ROOT / ".env.example").read_text().splitlines():
        match = re.match(r"^#?\s*([A-Z][A-Z0-9_]*)=(.*)$", line)
        if match:
            keys[match.group(1)] = match.group(2)
    return keys


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_compose_file_validates_against_the_compose_spec(name: str) -> None:
    schema = json.loads(schema_path("compose-spec.json").read_text())
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(load(name)), key=str)
    assert not errors, "\n".join(
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors
    )


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_every_service_has_a_healthcheck_or_a_stated_reason(name: str) -> None:
    for service_name, service in services(name).items():
        has_check = "healthcheck" in service and not service["healthcheck"].get("disable")
        reason = service.get("x-healthcheck-reason", "")
        assert has_check or len(reason) > 20, (
            f"{name}: {service_name} has neither healthcheck nor reason"
        )


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_dependencies_wait_for_health_or_completion(name: str) -> None:
    all_services = services(name)
    for service_name, service in all_services.items():
        for dependency, rule in service.get("depends_on", {}).items():
            assert dependency in all_services, f"{service_name} depends on unknown {dependency}"
            condition = rule["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in all_services[dependency], f"{dependency} has no healthcheck"
            else:
                assert condition == "service_completed_successfully", (
                    f"{service_name} -> {dependency}"
                )
                assert all_services[dependency].get("restart") == "no", (
                    f"{dependency} is not one-shot"
                )


def test_app_waits_for_database_broker_and_bucket() -> None:
    for name in ("api", "worker"):
        depends_on = services()[name]["depends_on"]
        assert depends_on["postgres"]["condition"] == "service_healthy"
        assert depends_on["rabbitmq"]["condition"] == "service_healthy"
        assert depends_on["storage"]["condition"] == "service_healthy"
    storage_waits_for = services()["storage"]["depends_on"]
    assert storage_waits_for["storage-init"]["condition"] == "service_completed_successfully"


@pytest.mark.parametrize(
    ("name", "scalable"),
    [("docker-compose.yaml", "worker"), ("docker-compose.locust.yml", "locust-worker")],
)
def test_scaled_services_have_no_container_name_or_host_port(name: str, scalable: str) -> None:
    service = services(name)[scalable]
    assert "container_name" not in service
    assert "ports" not in service


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_images_are_pinned_and_never_latest(name: str) -> None:
    for service_name, service in services(name).items():
        image = service.get("image")
        assert image, f"{service_name} has no image name"
        _, _, tag = image.rpartition(":")
        assert tag and "/" not in tag and tag != "latest", f"{service_name}: {image}"
        if service_name not in OWN_SERVICES:
            assert "build" not in service
            assert re.search(r"\d", tag), f"{service_name}: {image} tag is not a version"


def test_own_images_build_from_the_repository_root() -> None:
    for name in OWN_SERVICES:
        build = services()[name]["build"]
        assert build["context"] == "."
        image_dir = IMAGE_OF.get(name, name)
        assert (REPO_ROOT / build["dockerfile"]) == REPO_ROOT / image_dir / "Dockerfile"


def test_api_and_worker_share_one_configuration() -> None:
    api_env, worker_env = services()["api"]["environment"], services()["worker"]["environment"]
    assert api_env == worker_env
    assert api_env["V2M_S3_ENDPOINT_URL"] == "${S3_ENDPOINT_URL:-http://storage:9000}"
    assert "localhost" in api_env["V2M_S3_PUBLIC_ENDPOINT_URL"], (
        "presigned URLs must be signed for the host browsers reach"
    )
    assert api_env["V2M_QUEUE_NAME"] == "transcode"


def test_secrets_come_only_from_env_with_no_default() -> None:
    text = (REPO_ROOT / "docker-compose.yaml").read_text()
    used = {m.group("name"): m for m in INTERPOLATION.finditer(text)}
    secrets = {name for name in used if SECRET_NAME.search(name)}
    assert secrets >= {
        "POSTGRES_PASSWORD",
        "RABBITMQ_PASSWORD",
        "S3_SECRET_KEY",
        "JWT_SECRET",
        "BOOTSTRAP_ADMIN_PASSWORD",
        "GRAFANA_ADMIN_PASSWORD",
    }
    for match in INTERPOLATION.finditer(text):
        if match.group("name") in secrets:
            assert match.group("op") == ":?", f"{match.group(0)} must be required, with no default"
    assert not re.search(r"(?i)(password|secret)[\w]*:\s*['\"]?[\w-]{4,}['\"]?\s*$", text, re.M), (
        "literal secret"
    )


def test_env_example_lists_every_variable_and_holds_no_secret() -> None:
    example = env_example_keys()
    for name in COMPOSE_FILES:
        for match in INTERPOLATION.finditer((REPO_ROOT / name).read_text()):
            assert match.group("name") in example, (
                f"{match.group('name')} ({name}) is missing from .env.example"
            )
    for key, value in example.items():
        if SECRET_NAME.search(key):
            assert value == "", f".env.example must leave {key} empty"


def test_dot_env_is_kept_out_of_images() -> None:
    ignored = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    assert ".env" in ignored


def test_worker_is_given_time_to_drain_on_stop() -> None:
    worker = services()["worker"]
    env = worker["environment"]
    budget = float(env["V2M_JOB_TIMEOUT_S"]) + float(env["V2M_WORKER_DRAIN_TIMEOUT_S"])
    assert duration_seconds(worker["stop_grace_period"]) > budget
    assert "/tmp" in {v["target"] for v in worker["volumes"] if isinstance(v, dict)}


def test_own_containers_are_read_only_without_capabilities() -> None:
    for name in OWN_SERVICES:
        service = services()[name]
        assert service["read_only"] is True, name
        assert service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name


def test_rabbitmq_gets_the_shared_broker_config_and_plugins() -> None:
    compose = load("docker-compose.yaml")
    rabbitmq = compose["services"]["rabbitmq"]
    targets = {c["target"]: compose["configs"][c["source"]]["file"] for c in rabbitmq["configs"]}
    conf = REPO_ROOT / targets["/etc/rabbitmq/conf.d/20-video2mp3.conf"]
    plugins = REPO_ROOT / targets["/etc/rabbitmq/enabled_plugins"]
    assert re.search(r"^consumer_timeout\s*=\s*\d+", conf.read_text(), re.M)
    assert {"rabbitmq_management", "rabbitmq_prometheus"} <= set(
        re.findall(r"rabbitmq_\w+", plugins.read_text())
    )


def test_storage_init_makes_the_bucket_the_app_uses_on_the_served_volume() -> None:
    compose = load("docker-compose.yaml")
    storage, init = compose["services"]["storage"], compose["services"]["storage-init"]
    assert init["restart"] == "no"
    assert init["image"] == storage["image"], "one pinned rclone image for server and client"
    served_dir = storage["command"][-1]
    volume = next(v for v in storage["volumes"] if v.endswith(f":{served_dir}"))
    assert volume in init["volumes"]
    bucket = services()["api"]["environment"]["V2M_S3_BUCKET"]
    assert init["command"] == ["mkdir", f"{served_dir}/{bucket}"]


def test_storage_allows_the_page_origin_and_the_app_key() -> None:
    storage = services()["storage"]
    env, app = storage["environment"], services()["api"]["environment"]
    assert env["RCLONE_ALLOW_ORIGIN"] == "${FRONTEND_ORIGIN:-http://localhost:8080}"
    assert app["V2M_CORS_ORIGINS"] == '["${FRONTEND_ORIGIN:-http://localhost:8080}"]'
    access, secret = env["RCLONE_AUTH_KEY"].strip('"').split(",")
    assert (access, secret) == (app["V2M_S3_ACCESS_KEY"], app["V2M_S3_SECRET_KEY"])


def test_every_env_example_setting_is_passed_by_a_compose_file() -> None:
    used = {
        match.group("name")
        for name in COMPOSE_FILES
        for match in INTERPOLATION.finditer((REPO_ROOT / name).read_text())
    }
    unused = sorted(set(env_example_keys()) - used)
    assert not unused, f".env.example offers settings no Compose file reads: {unused}"


def test_locust_sends_the_api_key_the_api_requires() -> None:
    for service in services("docker-compose.locust.yml").values():
        assert service["environment"]["V2M_API_KEY"].startswith("${V2M_API_KEY:?")


def test_compose_has_a_first_user_to_sign_in_with() -> None:
    for name in ("api", "worker"):
        env = services()[name]["environment"]
        assert env["V2M_AUTH_REQUIRED"] == "true"
        assert env["V2M_BOOTSTRAP_ADMIN_EMAIL"].startswith("${BOOTSTRAP_ADMIN_EMAIL:-")
        assert env["V2M_BOOTSTRAP_ADMIN_PASSWORD"].startswith("${BOOTSTRAP_ADMIN_PASSWORD:?")


def test_frontend_reads_the_storage_origin_at_start_not_at_build() -> None:
    frontend = services()["frontend"]
    assert "args" not in frontend["build"]
    assert (
        frontend["environment"]["STORAGE_ORIGIN"]
        == (services()["api"]["environment"]["V2M_S3_PUBLIC_ENDPOINT_URL"])
    )


def test_monitoring_is_provisioned_from_the_monitoring_folder() -> None:
    prometheus, grafana = services()["prometheus"], services()["grafana"]
    assert "./monitoring/prometheus:/etc/prometheus:ro" in prometheus["volumes"]
    mounts = {v.split(":")[0] for v in grafana["volumes"]}
    assert {"./monitoring/grafana/provisioning", "./monitoring/grafana/dashboards"} <= mounts


def test_every_named_volume_is_declared() -> None:
    compose = load("docker-compose.yaml")
    declared = set(compose["volumes"])
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            if isinstance(volume, str) and not volume.startswith((".", "/")):
                assert volume.split(":")[0] in declared, volume


def test_locust_uses_the_load_test_locustfile() -> None:
    for service in services("docker-compose.locust.yml").values():
        command = service["command"]
        locustfile = Path(command[command.index("-f") + 1])
        mount = next(v for v in service["volumes"] if v.endswith(":ro"))
        host_dir, container_dir, _ = mount.split(":")
        assert locustfile.parent == Path(container_dir)
        assert Path(host_dir) / locustfile.name == Path("tests/load/locustfile.py")


def test_notifier_runs_the_api_image_with_the_shared_configuration_and_mailpit() -> None:
    notifier, api = services()["notifier"], services()["api"]
    assert notifier["image"] == api["image"]
    assert notifier["command"] == ["python", "-m", "notifier"]
    for key, value in api["environment"].items():
        assert notifier["environment"][key] == value
    assert "mailpit:1025" in notifier["environment"]["V2M_SMTP_URL"]
    assert notifier["depends_on"]["mailpit"]["condition"] == "service_healthy"
