#!/usr/bin/env bash
# Deploy video2mp3 to a local minikube cluster. Idempotent: run it again after a
# change and it converges (rebuilds the images, re-applies the overlay,
# restarts the app pods onto the new images).
#
#   scripts/deploy-minikube.sh                  # start/reuse cluster, deploy
#   scripts/deploy-minikube.sh --no-build       # re-apply manifests only
#   scripts/deploy-minikube.sh --delete         # remove the app (namespace)
#   scripts/deploy-minikube.sh --delete-cluster # delete the minikube profile
#
# Environment: MINIKUBE_PROFILE (default video2mp3), MINIKUBE_CPUS (4),
# MINIKUBE_MEMORY (8192 MB), MINIKUBE_DRIVER (minikube's default).
set -euo pipefail

readonly KEDA_VERSION="2.20.2"
readonly NAMESPACE="video2mp3"
readonly OVERLAY="k8s/overlays/minikube"
readonly IMAGE_TAG="dev"
readonly APP_HOST="video2mp3.test"
readonly STORAGE_HOST="storage.video2mp3.test"
readonly ADMIN_EMAIL="admin@video2mp3.test"
readonly COMPONENTS=(api worker frontend)
PROFILE="${MINIKUBE_PROFILE:-video2mp3}"
CPUS="${MINIKUBE_CPUS:-4}"
MEMORY="${MINIKUBE_MEMORY:-8192}"
DRIVER="${MINIKUBE_DRIVER:-}"

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

usage() {
  cat <<USAGE
Usage: ${0##*/} [--no-build | --delete | --delete-cluster | --help]

Deploys video2mp3 (k8s/overlays/minikube) to the minikube profile
"${PROFILE}": starts it if needed (calico CNI, ingress addon), installs KEDA
v${KEDA_VERSION} when missing, builds the images inside minikube, applies the
overlay, waits for the rollout and prints the URLs.

  --no-build        skip building images (re-apply manifests only)
  --delete          delete the app's objects and namespace, keep the cluster
  --delete-cluster  delete the whole minikube profile "${PROFILE}"
  -h, --help        show this help
USAGE
}

require_tools() {
  local missing=() tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
  done
  if ((${#missing[@]} > 0)); then
    die "missing required tools: ${missing[*]}. Install minikube (minikube.sigs.k8s.io/docs/start) and kubectl (kubernetes.io/docs/tasks/tools), plus a minikube driver such as Docker."
  fi
}

k() { kubectl --context "$PROFILE" "$@"; }

ensure_cluster() {
  local host_state
  host_state="$(minikube -p "$PROFILE" status --format '{{.Host}}' 2>/dev/null || true)"
  if [[ "$host_state" == "Running" ]]; then
    log "minikube profile ${PROFILE} is running"
  else
    log "starting minikube profile ${PROFILE} (${CPUS} CPUs, ${MEMORY} MB, calico CNI so NetworkPolicy is enforced)"
    local args=(start -p "$PROFILE" --cpus "$CPUS" --memory "$MEMORY" --cni calico)
    [[ -n "$DRIVER" ]] && args+=(--driver "$DRIVER")
    minikube "${args[@]}"
  fi
  log "enabling the ingress addon"
  minikube -p "$PROFILE" addons enable ingress >/dev/null
  k -n ingress-nginx wait --for=condition=Available deployment/ingress-nginx-controller --timeout=300s
}

ensure_keda() {
  if k get crd scaledobjects.keda.sh >/dev/null 2>&1; then
    local version
    version="$(k -n keda get deployment keda-operator -o jsonpath='{.metadata.labels.app\.kubernetes\.io/version}' 2>/dev/null || true)"
    log "KEDA already installed (version ${version:-unknown}; this project is tested against ${KEDA_VERSION})"
  else
    log "installing KEDA v${KEDA_VERSION}"
    k apply --server-side -f "https://github.com/kedacore/keda/releases/download/v${KEDA_VERSION}/keda-${KEDA_VERSION}.yaml"
  fi
  k -n keda wait --for=condition=Available deployment --all --timeout=300s
}

build_images() {
  local component
  for component in "${COMPONENTS[@]}"; do
    log "building video2mp3/${component}:${IMAGE_TAG} inside minikube"
    minikube -p "$PROFILE" image build -t "video2mp3/${component}:${IMAGE_TAG}" -f "${component}/Dockerfile" .
  done
}

deploy() {
  local component existed=()
  for component in "${COMPONENTS[@]}"; do
    if k -n "$NAMESPACE" get deployment "$component" >/dev/null 2>&1; then
      existed+=("$component")
    fi
  done

  log "applying ${OVERLAY}"
  k apply -k "$OVERLAY"

  # Images are tagged :dev and never pulled, so pods that already ran the old
  # build need a restart to pick up the new one. Old workers drain first.
  if [[ "$BUILD" == "true" ]] && ((${#existed[@]} > 0)); then
    for component in "${existed[@]}"; do
      k -n "$NAMESPACE" rollout restart "deployment/${component}"
    done
  fi

  log "waiting for the data stores"
  local sts
  for sts in postgres rabbitmq storage; do
    k -n "$NAMESPACE" rollout status "statefulset/${sts}" --timeout=600s
  done
  log "waiting for the app"
  for component in "${COMPONENTS[@]}"; do
    k -n "$NAMESPACE" rollout status "deployment/${component}" --timeout=600s
  done
  k -n "$NAMESPACE" get scaledobject worker
}

print_urls() {
  local ip
  ip="$(minikube -p "$PROFILE" ip)"
  cat <<URLS

video2mp3 is running in namespace ${NAMESPACE} (minikube profile ${PROFILE}).

Point the two Ingress hosts at the cluster (once), e.g. in /etc/hosts:
  ${ip} ${APP_HOST} ${STORAGE_HOST}
With the docker driver on macOS or Windows, run 'minikube -p ${PROFILE} tunnel'
in another terminal and use 127.0.0.1 instead of ${ip}.

  Page:          http://${APP_HOST}/
  API docs:      http://${APP_HOST}/docs
  Storage (presigned URLs): http://${STORAGE_HOST}/
  Sign in as:    ${ADMIN_EMAIL} with the password in Secret video2mp3-secrets,
                 key V2M_BOOTSTRAP_ADMIN_PASSWORD:
    kubectl --context ${PROFILE} -n ${NAMESPACE} get secret video2mp3-secrets \\
      -o jsonpath='{.data.V2M_BOOTSTRAP_ADMIN_PASSWORD}' | base64 -d; echo
  RabbitMQ UI:   kubectl --context ${PROFILE} -n ${NAMESPACE} port-forward svc/rabbitmq 15672
  Autoscaling:   scripts/demo-autoscaling.sh
URLS
}

BUILD="true"
ACTION="deploy"
while (($# > 0)); do
  case "$1" in
    --no-build) BUILD="false" ;;
    --delete) ACTION="delete" ;;
    --delete-cluster) ACTION="delete-cluster" ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
  shift
done

# Run from the repository root, wherever the script is called from.
script_dir="${BASH_SOURCE[0]%/*}"
[[ "$script_dir" == "${BASH_SOURCE[0]}" ]] && script_dir="."
cd "${script_dir}/.."

case "$ACTION" in
  delete-cluster)
    require_tools minikube
    log "deleting minikube profile ${PROFILE}"
    minikube delete -p "$PROFILE"
    ;;
  delete)
    require_tools kubectl
    log "deleting ${OVERLAY} (busy workers finish their job first; idle ones exit at once)"
    k delete -k "$OVERLAY" --ignore-not-found
    ;;
  deploy)
    require_tools minikube kubectl
    ensure_cluster
    ensure_keda
    if [[ "$BUILD" == "true" ]]; then
      build_images
    fi
    deploy
    print_urls
    ;;
esac
