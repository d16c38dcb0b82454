"""Kubernetes manifests: every overlay renders, validates, and follows the deployment rules.

Rendering uses `kubectl kustomize`; built-in kinds are validated with
kubernetes-validate, custom resources (KEDA, Prometheus Operator) against the CRD
schemas in ../shared/schemas. The policy checks read the rendered output, so
they see exactly what `kubectl apply -k` would send.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from shared.config import Settings
from tests.deploy import REPO_ROOT, SCHEMAS_DIR, require_tool, schema_path

K8S_DIR = REPO_ROOT / "k8s"
OVERLAYS = ["minikube", "production"]
KUBERNETES_VERSION = "1.32"
NAMESPACE = "video2mp3"
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}
CLUSTER_SCOPED_KINDS = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
}
OWN_IMAGE = re.compile(r"^(?:[\w.-]+(?::\d+)?/)*video2mp3/(api|worker|frontend):")

Doc = dict[str, Any]


@functools.cache
def render(overlay: str) -> tuple[Doc, ...]:
    kubectl = require_tool(
        "kubectl", "see kubernetes.io/docs/tasks/tools (kubectl >= 1.27 embeds kustomize 5)"
    )
    result = subprocess.run(
        [kubectl, "kustomize", str(K8S_DIR / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"kubectl kustomize {overlay} failed:\n{result.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def render_kustomization(directory: Path, kustomization: Doc) -> tuple[Doc, ...]:
    """Write `kustomization` into `directory` and render it with `kubectl kustomize`."""
    directory.mkdir(exist_ok=True)
    (directory / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization"}
            | kustomization
        )
    )
    kubectl = require_tool("kubectl", "see kubernetes.io/docs/tasks/tools")
    result = subprocess.run(
        [kubectl, "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return tuple(d for d in yaml.safe_load_all(result.stdout) if d)


def of_kind(docs: tuple[Doc, ...], kind: str) -> list[Doc]:
    return [doc for doc in docs if doc["kind"] == kind]


def one(docs: tuple[Doc, ...], kind: str, name: str) -> Doc:
    matches = [doc for doc in of_kind(docs, kind) if doc["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def app_config(docs: tuple[Doc, ...]) -> dict[str, str]:
    """Data of the generated video2mp3-config ConfigMap (its name carries a hash suffix)."""
    maps = [
        d
        for d in of_kind(docs, "ConfigMap")
        if d["metadata"]["name"].startswith("video2mp3-config")
    ]
    assert len(maps) == 1, "expected one video2mp3-config ConfigMap"
    data: dict[str, str] = maps[0]["data"]
    return data


def pod_specs(docs: tuple[Doc, ...]) -> Iterator[tuple[Doc, Doc]]:
    for doc in docs:
        if doc["kind"] in WORKLOAD_KINDS:
            yield doc, doc["spec"]["template"]["spec"]


def containers(pod: Doc) -> list[Doc]:
    return [*pod.get("initContainers", []), *pod["containers"]]


def resource_id(doc: Doc) -> str:
    return f"{doc['kind']}/{doc['metadata']['name']}"


def parse_quantity(value: str | int) -> float:
    """Kubernetes quantity ("3Gi", "500m", "2") as a number of base units."""
    text = str(value)
    suffixes = {
        "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40,
        "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "m": 10**-3,
    }  # fmt: skip
    for suffix, factor in suffixes.items():
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


def scaled_object(docs: tuple[Doc, ...]) -> Doc:
    return one(docs, "ScaledObject", "worker")


def rabbitmq_trigger(docs: tuple[Doc, ...]) -> Doc:
    triggers: list[Doc] = [
        t for t in scaled_object(docs)["spec"]["triggers"] if t["type"] == "rabbitmq"
    ]
    assert len(triggers) == 1, "expected exactly one rabbitmq trigger"
    return triggers[0]


def worker_pod(docs: tuple[Doc, ...]) -> Doc:
    pod: Doc = one(docs, "Deployment", "worker")["spec"]["template"]["spec"]
    return pod


def worker_container(docs: tuple[Doc, ...]) -> Doc:
    container: Doc = worker_pod(docs)["containers"][0]
    return container


def container_port(container: Doc, port: int | str) -> int:
    if isinstance(port, int):
        return port
    for declared in container.get("ports", []):
        if declared.get("name") == port:
            return int(declared["containerPort"])
    raise AssertionError(f"container {container['name']} has no port named {port}")


# --- CRD schemas -----------------------------------------------------------------


@functools.cache
def crd_schemas() -> dict[tuple[str, str, str], Doc]:
    """(group, version, kind) -> openAPIV3Schema, from every CRD in ../shared/schemas."""
    schema_path("README.md")  # fails with a clear message when the folder is missing
    schemas: dict[tuple[str, str, str], Doc] = {}
    for path in sorted(SCHEMAS_DIR.glob("*.yaml")):
        with path.open() as handle:
            crd = yaml.safe_load(handle)
        if crd.get("kind") != "CustomResourceDefinition":
            continue
        spec = crd["spec"]
        for version in spec["versions"]:
            key = (spec["group"], version["name"], spec["names"]["kind"])
            schemas[key] = version["schema"]["openAPIV3Schema"]
    return schemas


def pruned_fields(instance: Any, schema: Doc, path: str = "") -> list[str]:
    """Fields the API server would silently drop: not declared in a structural schema.

    jsonschema alone accepts them (CRD schemas rarely say additionalProperties:
    false), so a misspelt `minReplicaCont` would pass validation and vanish on apply.
    """
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    found: list[str] = []
    if isinstance(instance, dict):
        properties = schema.get("properties")
        additional = schema.get("additionalProperties")
        for key, value in instance.items():
            if properties is not None and key in properties:
                found += pruned_fields(value, properties[key], f"{path}.{key}")
            elif isinstance(additional, dict):
                found += pruned_fields(value, additional, f"{path}.{key}")
            elif properties is not None and not additional and not (path == "" and key == "status"):
                found.append(f"{path}.{key}")
    elif isinstance(instance, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(instance):
            found += pruned_fields(item, schema["items"], f"{path}[{index}]")
    return found


def validate_custom_resource(doc: Doc) -> None:
    group, _, version = doc["apiVersion"].rpartition("/")
    schema = crd_schemas().get((group, version, doc["kind"]))
    assert schema is not None, (
        f"{resource_id(doc)} ({doc['apiVersion']}) is neither a built-in kind nor a CRD "
        "with a schema in ../shared/schemas"
    )
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(doc), key=str)
    assert not errors, f"{resource_id(doc)}: " + "; ".join(
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors
    )
    # metadata is typed only as `object` in CRDs; the API server validates it itself.
    unknown = [f for f in pruned_fields(doc, schema) if not f.startswith(".metadata.")]
    assert not unknown, f"{resource_id(doc)} has fields the CRD does not declare: {unknown}"


# --- rendering and schema validation -----------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_with_kubectl_kustomize(overlay: str) -> None:
    docs = render(overlay)
    kinds = {doc["kind"] for doc in docs}
    assert {
        "Namespace",
        "Deployment",
        "StatefulSet",
        "ScaledObject",
        "TriggerAuthentication",
    } <= kinds


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_resource_validates_against_its_schema(overlay: str) -> None:
    for doc in render(overlay):
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            validate_custom_resource(doc)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{overlay}: {resource_id(doc)} is invalid: {exc}", pytrace=False)


def test_crd_check_catches_a_misspelt_scaledobject_field() -> None:
    doc = dict(scaled_object(render("minikube")))
    doc["spec"] = {**doc["spec"], "minReplicaCont": 1}
    with pytest.raises(AssertionError, match="minReplicaCont"):
        validate_custom_resource(doc)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_namespaced_resources_all_land_in_the_app_namespace(overlay: str) -> None:
    for doc in render(overlay):
        if doc["kind"] not in CLUSTER_SCOPED_KINDS:
            assert doc["metadata"].get("namespace") == NAMESPACE, resource_id(doc)


def test_kustomizations_use_labels_not_deprecated_common_labels() -> None:
    files = sorted(K8S_DIR.rglob("kustomization.yaml"))
    assert files
    for path in files:
        with path.open() as handle:
            kustomization = yaml.safe_load(handle)
        assert "commonLabels" not in kustomization, path.relative_to(REPO_ROOT)
    for overlay in OVERLAYS:
        with (K8S_DIR / "overlays" / overlay / "kustomization.yaml").open() as handle:
            assert "labels" in yaml.safe_load(handle), overlay


# --- KEDA ------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_keda_scales_the_worker_deployment_between_one_and_ten(overlay: str) -> None:
    spec = scaled_object(render(overlay))["spec"]
    assert spec["scaleTargetRef"]["name"] == "worker"
    assert spec["scaleTargetRef"].get("kind", "Deployment") == "Deployment"
    assert spec["minReplicaCount"] == 1
    assert spec["maxReplicaCount"] == 10


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_keda_counts_ready_plus_unacked_messages_over_http(overlay: str) -> None:
    # amqp would count only ready messages: busy workers would look idle and be removed.
    metadata = rabbitmq_trigger(render(overlay))["metadata"]
    assert metadata["protocol"] == "http"
    assert metadata.get("excludeUnacknowledged", "false") != "true"
    assert metadata["mode"] == "QueueLength"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_keda_queue_length_target_equals_worker_concurrency(overlay: str) -> None:
    docs = render(overlay)
    config = app_config(docs)
    metadata = rabbitmq_trigger(docs)["metadata"]
    assert int(metadata["value"]) == int(config["V2M_WORKER_CONCURRENCY"])
    assert metadata["queueName"] == config["V2M_QUEUE_NAME"]


def test_changing_concurrency_in_an_overlay_changes_the_keda_target(tmp_path: Path) -> None:
    # Given an overlay that raises the worker concurrency to 3
    overlay = tmp_path / "overlay"
    # When it is rendered (kustomize accepts only relative paths to other kustomizations)
    docs = render_kustomization(
        overlay,
        {
            "resources": [os.path.relpath(K8S_DIR / "base", overlay)],
            "components": [os.path.relpath(K8S_DIR / "components" / "keda-concurrency", overlay)],
            "configMapGenerator": [
                {
                    "name": "video2mp3-config",
                    "behavior": "merge",
                    "literals": ["V2M_WORKER_CONCURRENCY=3"],
                }
            ],
        },
    )
    # Then KEDA asks for one pod per three messages
    assert rabbitmq_trigger(docs)["metadata"]["value"] == "3"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_keda_reads_the_management_url_from_a_secret(overlay: str) -> None:
    docs = render(overlay)
    auth_ref = rabbitmq_trigger(docs)["authenticationRef"]
    auth = one(docs, auth_ref.get("kind", "TriggerAuthentication"), auth_ref["name"])
    refs = {ref["parameter"]: ref for ref in auth["spec"]["secretTargetRef"]}
    assert "host" in refs
    secrets = [s for s in of_kind(docs, "Secret") if s["metadata"]["name"] == refs["host"]["name"]]
    if overlay == "production":
        assert not secrets, "production must not ship the placeholder Secret"
        return
    assert len(secrets) == 1
    host = urlsplit(secrets[0]["stringData"][refs["host"]["key"]])
    assert host.scheme == "http"
    assert host.port == 15672
    assert host.hostname is not None and host.hostname.startswith("rabbitmq.")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_keda_scale_in_is_stabilised_so_one_burst_does_not_flap(overlay: str) -> None:
    spec = scaled_object(render(overlay))["spec"]
    assert spec["cooldownPeriod"] >= 60
    behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    scale_down = behavior["scaleDown"]
    assert scale_down["stabilizationWindowSeconds"] >= 120
    assert scale_down["policies"], "scale-down must be rate limited"
    for policy in scale_down["policies"]:
        assert not (policy["type"] == "Percent" and policy["value"] >= 100)
    assert behavior["scaleUp"]["stabilizationWindowSeconds"] <= 30


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_worker_replicas_are_left_to_keda(overlay: str) -> None:
    assert "replicas" not in one(render(overlay), "Deployment", "worker")["spec"]


# --- safe scale-in -----------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_worker_grace_period_exceeds_job_timeout_plus_drain(overlay: str) -> None:
    docs = render(overlay)
    config = app_config(docs)
    job_timeout = float(config["V2M_JOB_TIMEOUT_S"])
    drain = float(config["V2M_WORKER_DRAIN_TIMEOUT_S"])
    assert drain >= job_timeout, "a draining worker must be allowed to finish its longest job"
    assert worker_pod(docs)["terminationGracePeriodSeconds"] > job_timeout + drain


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rabbitmq_consumer_timeout_outlasts_the_longest_job(overlay: str) -> None:
    docs = render(overlay)
    config = app_config(docs)
    broker_conf = [
        d for d in of_kind(docs, "ConfigMap") if d["metadata"]["name"].startswith("rabbitmq-config")
    ][0]["data"]
    settings: dict[str, str] = {}
    for line in broker_conf["20-video2mp3.conf"].splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.lstrip().startswith("#"):
            settings[key.strip()] = value.strip()
    # A delivery stays unacked for at most one job (prefetch = concurrency, and a
    # draining worker only finishes jobs it already started): job timeout plus
    # 10 minutes for the upload, the ack and a slow broker.
    budget_ms = (float(config["V2M_JOB_TIMEOUT_S"]) + 600) * 1000
    assert int(settings["consumer_timeout"]) > budget_ms
    plugins = broker_conf["enabled_plugins"]
    assert "rabbitmq_management" in plugins and "rabbitmq_prometheus" in plugins
    mounts = one(docs, "StatefulSet", "rabbitmq")["spec"]["template"]["spec"]["containers"][0][
        "volumeMounts"
    ]
    assert "/etc/rabbitmq/conf.d/20-video2mp3.conf" in {m["mountPath"] for m in mounts}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_worker_has_prestop_hook_and_probes_on_its_health_port(overlay: str) -> None:
    docs = render(overlay)
    container = worker_container(docs)
    assert "preStop" in container["lifecycle"]
    port = int(app_config(docs)["V2M_WORKER_METRICS_PORT"])
    for probe in ("readinessProbe", "livenessProbe"):
        http_get = container[probe]["httpGet"]
        assert http_get["path"] == "/healthz", probe
        assert container_port(container, http_get["port"]) == port, probe


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_worker_temp_dir_is_an_emptydir_sized_for_the_largest_output(overlay: str) -> None:
    docs = render(overlay)
    config = app_config(docs)
    pod, container = worker_pod(docs), worker_container(docs)
    mount = [m for m in container["volumeMounts"] if m["mountPath"] == config["V2M_TMP_DIR"]]
    assert len(mount) == 1, (
        "V2M_TMP_DIR must be a mounted volume (the root filesystem is read-only)"
    )
    volume = [v for v in pod["volumes"] if v["name"] == mount[0]["name"]][0]
    size = parse_quantity(volume["emptyDir"]["sizeLimit"])
    # ffmpeg reads inputs through a presigned URL: only outputs are written to disk
    max_output = int(
        config.get("V2M_MAX_OUTPUT_BYTES", Settings.model_fields["max_output_bytes"].default)
    )
    assert size >= max_output * int(config["V2M_WORKER_CONCURRENCY"])
    assert parse_quantity(container["resources"]["limits"]["ephemeral-storage"]) >= size


# --- every pod -----------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_declares_requests_and_limits(overlay: str) -> None:
    for workload, pod in pod_specs(render(overlay)):
        for container in containers(pod):
            resources = container.get("resources", {})
            for section in ("requests", "limits"):
                for resource in ("cpu", "memory"):
                    assert resource in resources.get(section, {}), (
                        f"{resource_id(workload)}/{container['name']}: no {section}.{resource}"
                    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_long_running_container_has_readiness_and_liveness_probes(overlay: str) -> None:
    for workload, pod in pod_specs(render(overlay)):
        if workload["kind"] == "Job":
            continue  # one-shot: runs to completion, nothing to probe
        for container in pod["containers"]:
            for probe in ("readinessProbe", "livenessProbe"):
                assert probe in container, (
                    f"{resource_id(workload)}/{container['name']}: no {probe}"
                )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_runs_non_root_read_only_without_capabilities(overlay: str) -> None:
    for workload, pod in pod_specs(render(overlay)):
        pod_ctx = pod.get("securityContext", {})
        for container in containers(pod):
            where = f"{resource_id(workload)}/{container['name']}"
            ctx = container.get("securityContext", {})
            assert ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot")) is True, where
            assert ctx.get("runAsUser", pod_ctx.get("runAsUser", 1)) != 0, where
            assert ctx.get("readOnlyRootFilesystem") is True, where
            assert ctx.get("allowPrivilegeEscalation") is False, where
            assert "ALL" in ctx.get("capabilities", {}).get("drop", []), where
            seccomp = ctx.get("seccompProfile", pod_ctx.get("seccompProfile", {}))
            assert seccomp.get("type") == "RuntimeDefault", where


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_pod_mounts_a_service_account_token(overlay: str) -> None:
    docs = render(overlay)
    for workload, pod in pod_specs(docs):
        assert pod.get("automountServiceAccountToken") is False, resource_id(workload)
    for account in of_kind(docs, "ServiceAccount"):
        assert account.get("automountServiceAccountToken") is False, resource_id(account)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_image_is_pinned_and_never_latest(overlay: str) -> None:
    for workload, pod in pod_specs(render(overlay)):
        for container in containers(pod):
            image = container["image"]
            where = f"{resource_id(workload)}/{container['name']}: {image}"
            if "@sha256:" in image:
                continue
            name, _, tag = image.rpartition(":")
            assert name and "/" not in tag, f"{where} has no tag"
            assert tag != "latest", where
            if not OWN_IMAGE.match(image):
                assert re.search(r"\d", tag), f"{where}: third-party tag is not a version"


# --- availability, network, ingress, monitoring ----------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_api_has_a_pod_disruption_budget(overlay: str) -> None:
    docs = render(overlay)
    api_labels = one(docs, "Deployment", "api")["spec"]["template"]["metadata"]["labels"]
    budgets = [
        pdb
        for pdb in of_kind(docs, "PodDisruptionBudget")
        if pdb["spec"]["selector"]["matchLabels"].items() <= api_labels.items()
    ]
    assert len(budgets) == 1
    spec = budgets[0]["spec"]
    assert "maxUnavailable" in spec or "minAvailable" in spec


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_workers_may_reach_only_broker_storage_database_and_dns(overlay: str) -> None:
    docs = render(overlay)
    worker_labels = one(docs, "Deployment", "worker")["spec"]["template"]["metadata"]["labels"]
    policies = [
        p
        for p in of_kind(docs, "NetworkPolicy")
        if p["spec"]["podSelector"].get("matchLabels")
        and p["spec"]["podSelector"]["matchLabels"].items() <= worker_labels.items()
    ]
    assert len(policies) == 1, f"expected one NetworkPolicy selecting {worker_labels}"
    spec = policies[0]["spec"]
    assert "Egress" in spec["policyTypes"]
    reachable = set()
    for rule in spec["egress"]:
        assert rule.get("to"), "an egress rule without `to` allows every destination"
        assert rule.get("ports"), "every egress rule names its ports"
        for peer in rule["to"]:
            assert "ipBlock" not in peer, "no IP ranges: ffmpeg must not reach the internet"
            labels = peer["podSelector"]["matchLabels"]
            reachable.add(labels.get("app.kubernetes.io/name") or labels.get("k8s-app"))
    assert reachable == {"rabbitmq", "storage", "postgres", "kube-dns"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_presigned_urls_are_signed_for_the_storage_ingress_host(overlay: str) -> None:
    docs = render(overlay)
    public = urlsplit(app_config(docs)["V2M_S3_PUBLIC_ENDPOINT_URL"])
    internal = urlsplit(app_config(docs)["V2M_S3_ENDPOINT_URL"])
    assert public.hostname != internal.hostname, "browsers cannot reach the in-cluster host"
    storage_rules = [
        (ingress, rule)
        for ingress in of_kind(docs, "Ingress")
        for rule in ingress["spec"]["rules"]
        if rule.get("host") == public.hostname
    ]
    assert len(storage_rules) == 1, f"no Ingress rule for {public.hostname}"
    ingress, rule = storage_rules[0]
    backends = {p["backend"]["service"]["name"] for p in rule["http"]["paths"]}
    assert backends == {internal.hostname}
    tls_hosts = {h for tls in ingress["spec"].get("tls", []) for h in tls["hosts"]}
    assert (public.scheme == "https") == (public.hostname in tls_hosts)
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"] == "0"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ingress_routes_the_page_and_the_api(overlay: str) -> None:
    docs = render(overlay)
    routes = {
        path["path"]: path["backend"]["service"]["name"]
        for ingress in of_kind(docs, "Ingress")
        for rule in ingress["spec"]["rules"]
        for path in rule["http"]["paths"]
    }
    assert routes["/"] == "frontend"
    for api_path in ("/v1", "/healthz", "/readyz", "/docs", "/openapi.json"):
        assert routes[api_path] == "api", api_path


NGINX = "nginx.ingress.kubernetes.io/"
JOB_ID = "0f8e2c1a-5b7d-4e3f-9a21-6c4d8b0e7f13"
TOKEN_URIS = (f"/v1/jobs/{JOB_ID}/events", f"/v1/jobs/{JOB_ID}/download")
LOGGED_URIS = (
    "/v1/jobs",
    f"/v1/jobs/{JOB_ID}",
    f"/v1/jobs/{JOB_ID}/events/more",
    f"/v1/jobs/{JOB_ID}/downloads",
    "/v1/auth/login",
    "/healthz",
    "/docs",
    "/openapi.json",
    "/",
    "/index.html",
)


def app_host_locations(docs: tuple[Doc, ...]) -> tuple[str, list[tuple[Doc, Doc]]]:
    """The page/API host and every (Ingress, path) served on it, across Ingresses."""
    main = one(docs, "Ingress", "video2mp3")
    host: str = main["spec"]["rules"][0]["host"]
    locations = [
        (ingress, path)
        for ingress in of_kind(docs, "Ingress")
        for rule in ingress["spec"]["rules"]
        if rule.get("host") == host
        for path in rule["http"]["paths"]
    ]
    return host, locations


def served_by(locations: list[tuple[Doc, Doc]], uri: str) -> Doc:
    """The Ingress whose path ingress-nginx picks for `uri` (query string excluded).

    Exact paths win outright. When any Ingress of the host sets use-regex, every other
    path of the host becomes a case-insensitive regex anchored at the start, tried
    longest path first; otherwise the longest matching Prefix wins.
    """
    for ingress, path in locations:
        if path["pathType"] == "Exact" and path["path"] == uri:
            return ingress
    regex_host = any(
        ingress["metadata"].get("annotations", {}).get(NGINX + "use-regex") == "true"
        for ingress, _ in locations
    )
    ranked = sorted(
        (item for item in locations if item[1]["pathType"] != "Exact"),
        key=lambda item: len(item[1]["path"]),
        reverse=True,
    )
    for ingress, path in ranked:
        prefix = path["path"].rstrip("/")
        if regex_host:
            matched = re.match(path["path"], uri, re.IGNORECASE) is not None
        else:
            matched = uri == prefix or uri.startswith(prefix + "/")
        if matched:
            return ingress
    raise AssertionError(f"no Ingress path serves {uri}")


def access_logged(ingress: Doc) -> bool:
    annotations = ingress["metadata"].get("annotations", {})
    return bool(annotations.get(NGINX + "enable-access-log", "true") != "false")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_token_carrying_urls_are_served_by_an_ingress_without_access_log(overlay: str) -> None:
    docs = render(overlay)
    host, locations = app_host_locations(docs)
    main = one(docs, "Ingress", "video2mp3")
    for uri in TOKEN_URIS:
        ingress = served_by(locations, uri)
        assert not access_logged(ingress), f"{uri} is served by logged {resource_id(ingress)}"
        assert ingress["spec"]["ingressClassName"] == "nginx"
        assert ingress["spec"].get("tls") == main["spec"].get("tls"), resource_id(ingress)
        annotations = ingress["metadata"]["annotations"]
        assert annotations[NGINX + "proxy-buffering"] == "off", "the events stream is SSE"
        assert int(annotations[NGINX + "proxy-read-timeout"]) >= 3600
        backends = {
            path["backend"]["service"]["name"] for owner, path in locations if owner is ingress
        }
        assert backends == {"api"}, f"{host}{uri}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_other_route_keeps_its_access_log(overlay: str) -> None:
    _, locations = app_host_locations(render(overlay))
    unlogged_paths = [path["path"] for ingress, path in locations if not access_logged(ingress)]
    assert unlogged_paths, "the token-carrying routes need an Ingress without access log"
    for uri in LOGGED_URIS:
        ingress = served_by(locations, uri)
        assert access_logged(ingress), f"{uri} is served by unlogged {resource_id(ingress)}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_metrics_pods_carry_prometheus_annotations(overlay: str) -> None:
    docs = render(overlay)
    for kind, name in (
        ("Deployment", "api"),
        ("Deployment", "worker"),
        ("Deployment", "notifier"),
        ("StatefulSet", "rabbitmq"),
    ):
        template = one(docs, kind, name)["spec"]["template"]
        annotations = template["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true", name
        ports = {
            p["containerPort"] for c in template["spec"]["containers"] for p in c.get("ports", [])
        }
        assert int(annotations["prometheus.io/port"]) in ports, name


def test_operator_monitors_ship_only_where_the_operator_is_expected() -> None:
    def monitors(overlay: str) -> set[str]:
        return {
            resource_id(d)
            for d in render(overlay)
            if d["apiVersion"].startswith("monitoring.coreos.com/")
        }

    assert monitors("minikube") == set()
    assert monitors("production") == {
        "ServiceMonitor/api",
        "PodMonitor/worker",
        "PodMonitor/notifier",
        "ServiceMonitor/rabbitmq",
        "PrometheusRule/video2mp3",
    }


def test_production_ships_no_placeholder_secrets_and_runs_in_production_mode() -> None:
    docs = render("production")
    assert of_kind(docs, "Secret") == []
    assert "CHANGE-ME" not in yaml.safe_dump_all(docs)
    assert app_config(docs)["V2M_ENVIRONMENT"] == "production"


def test_secret_template_marks_every_password_as_a_placeholder() -> None:
    with (K8S_DIR / "base" / "secret.yaml").open() as handle:
        secrets = [d for d in yaml.safe_load_all(handle) if d]
    for secret in secrets:
        for key, value in secret["stringData"].items():
            if any(word in key.upper() for word in ("PASS", "SECRET", "HOST")):
                assert "change-me" in value.lower(), f"{secret['metadata']['name']}.{key}"


# --- network policies for every workload ------------------------------------------------


def selects(policy: Doc, labels: dict[str, str]) -> bool:
    match: dict[str, str] = policy["spec"]["podSelector"].get("matchLabels", {})
    return match.items() <= labels.items()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_traffic_is_denied_unless_a_policy_allows_it(overlay: str) -> None:
    docs = render(overlay)
    deny_all = [
        p
        for p in of_kind(docs, "NetworkPolicy")
        if p["spec"]["podSelector"] == {}
        and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
    ]
    assert len(deny_all) == 1, "expected one default-deny NetworkPolicy for every pod"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_workload_has_its_own_network_policy(overlay: str) -> None:
    docs = render(overlay)
    for workload, _ in pod_specs(docs):
        labels = workload["spec"]["template"]["metadata"]["labels"]
        own = [
            p
            for p in of_kind(docs, "NetworkPolicy")
            if p["spec"]["podSelector"].get("matchLabels") and selects(p, labels)
        ]
        assert own, f"{resource_id(workload)} has no NetworkPolicy of its own"


def allowed_sources(docs: tuple[Doc, ...], target: str, port: int) -> set[str]:
    """Who may open `port` on the pods named `target`: pod names or `ns:<namespace>`."""
    sources: set[str] = set()
    for policy in of_kind(docs, "NetworkPolicy"):
        if (
            policy["spec"]["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/name")
            != target
        ):
            continue
        for rule in policy["spec"].get("ingress", []):
            if port not in {p["port"] for p in rule.get("ports", [])}:
                continue
            for peer in rule.get("from", [{"anywhere": True}]):
                if "podSelector" in peer and "namespaceSelector" not in peer:
                    sources.add(peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"])
                elif "namespaceSelector" in peer:
                    ns = peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                    sources.add(f"ns:{ns}")
                else:
                    sources.add("anywhere")
    return sources


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_allow_exactly_the_flows_that_exist(overlay: str) -> None:
    docs = render(overlay)
    assert allowed_sources(docs, "postgres", 5432) == {"api", "worker", "notifier"}
    assert allowed_sources(docs, "rabbitmq", 5672) == {"api", "worker", "notifier"}
    assert allowed_sources(docs, "notifier", 9101) == {"ns:monitoring"}
    assert allowed_sources(docs, "rabbitmq", 15672) == {"ns:keda"}
    assert allowed_sources(docs, "storage", 9000) == {"api", "worker", "ns:ingress-nginx"}
    assert allowed_sources(docs, "api", 8000) == {"frontend", "ns:ingress-nginx", "ns:monitoring"}
    assert allowed_sources(docs, "frontend", 8080) == {"ns:ingress-nginx"}


# --- storage, first user, page, re-apply ----------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_storage_serves_the_bucket_the_app_uses_with_the_app_key_and_page_origin(
    overlay: str,
) -> None:
    docs = render(overlay)
    config = app_config(docs)
    pod = one(docs, "StatefulSet", "storage")["spec"]["template"]["spec"]
    [server] = pod["containers"]
    [bucket_init] = pod["initContainers"]
    assert server["image"] == bucket_init["image"]
    served = server["args"][-1]
    assert bucket_init["args"] == ["mkdir", f"{served}/$(V2M_S3_BUCKET)"]
    init_env = {e["name"]: e for e in bucket_init["env"]}
    assert init_env["V2M_S3_BUCKET"]["valueFrom"]["configMapKeyRef"]["key"] == "V2M_S3_BUCKET"
    env = {e["name"]: e for e in server["env"]}
    assert env["RCLONE_AUTH_KEY"]["value"] == '"$(S3_ACCESS_KEY),$(S3_SECRET_KEY)"'
    for name, key in (
        ("S3_ACCESS_KEY", "V2M_S3_ACCESS_KEY"),
        ("S3_SECRET_KEY", "V2M_S3_SECRET_KEY"),
    ):
        assert env[name]["valueFrom"]["secretKeyRef"]["key"] == key
    origin_key = env["RCLONE_ALLOW_ORIGIN"]["valueFrom"]["configMapKeyRef"]["key"]
    page_origins = json.loads(config["V2M_CORS_ORIGINS"])
    assert [config[origin_key]] == page_origins
    assert urlsplit(config["V2M_S3_ENDPOINT_URL"]).hostname == "storage"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_first_user_is_created_from_the_config_and_a_secret(overlay: str) -> None:
    docs = render(overlay)
    assert "@" in app_config(docs)["V2M_BOOTSTRAP_ADMIN_EMAIL"]
    for name in ("api", "worker"):
        env = {
            e["name"]: e
            for e in one(docs, "Deployment", name)["spec"]["template"]["spec"]["containers"][0][
                "env"
            ]
        }
        ref = env["V2M_BOOTSTRAP_ADMIN_PASSWORD"]["valueFrom"]["secretKeyRef"]
        assert (ref["name"], ref["key"]) == ("video2mp3-secrets", "V2M_BOOTSTRAP_ADMIN_PASSWORD")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_page_allows_the_storage_origin_it_is_given_at_start(overlay: str) -> None:
    docs = render(overlay)
    [container] = one(docs, "Deployment", "frontend")["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    ref = env["STORAGE_ORIGIN"]["valueFrom"]["configMapKeyRef"]
    assert ref["name"].startswith("video2mp3-config")
    assert ref["key"] == "V2M_S3_PUBLIC_ENDPOINT_URL"


def render_with_config_change(tmp_path: Path, overlay: str) -> tuple[Doc, ...]:
    """The overlay rendered again after an operator changed one setting in it."""
    changed = tmp_path / "changed"
    return render_kustomization(
        changed,
        {
            "resources": [os.path.relpath(K8S_DIR / "overlays" / overlay, changed)],
            "configMapGenerator": [
                {
                    "name": "video2mp3-config",
                    "behavior": "merge",
                    "literals": ["V2M_LOG_LEVEL=DEBUG"],
                }
            ],
        },
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_reapplying_after_a_config_change_leaves_every_job_template_unchanged(
    overlay: str, tmp_path: Path
) -> None:
    # A Job's pod template is immutable: `kubectl apply` of a changed one is refused.
    # Given the overlay as applied, and as re-rendered after a setting changed
    before = {d["metadata"]["name"]: d for d in of_kind(render(overlay), "Job")}
    after_docs = render_with_config_change(tmp_path, overlay)
    assert app_config(after_docs)["V2M_LOG_LEVEL"] == "DEBUG"
    after = {d["metadata"]["name"]: d for d in of_kind(after_docs, "Job")}
    # Then every Job would be applied unchanged
    assert before.keys() == after.keys()
    for name, job in before.items():
        assert job["spec"]["template"] == after[name]["spec"]["template"], f"Job/{name}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_notifier_runs_the_api_image_and_reaches_only_public_addresses_outside(
    overlay: str,
) -> None:
    docs = render(overlay)
    notifier = one(docs, "Deployment", "notifier")["spec"]["template"]["spec"]["containers"][0]
    api = one(docs, "Deployment", "api")["spec"]["template"]["spec"]["containers"][0]
    assert notifier["image"] == api["image"]
    assert notifier["command"] == ["python", "-m", "notifier"]
    policy = one(docs, "NetworkPolicy", "notifier")
    blocks = [
        peer["ipBlock"]
        for rule in policy["spec"]["egress"]
        for peer in rule["to"]
        if "ipBlock" in peer
    ]
    assert len(blocks) == 1
    for private in (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "169.254.0.0/16",
        "127.0.0.0/8",
    ):
        assert private in blocks[0]["except"]
