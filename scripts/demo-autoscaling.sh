#!/usr/bin/env bash
# Show KEDA scaling the workers: flood the transcode queue through the public
# API, then print queue depth and worker replicas every few seconds until the
# burst has drained and KEDA has scaled back in (or the time limit is hit).
#
#   scripts/demo-autoscaling.sh                       # 40 jobs, minikube hosts
#   scripts/demo-autoscaling.sh --jobs 80 --minutes 30
#   scripts/demo-autoscaling.sh --url http://video2mp3.test --file clip.mp4
#   scripts/demo-autoscaling.sh --no-kubectl --url http://127.0.0.1:8000 --jobs 3
#
# Needs: curl, jq, kubectl (not with --no-kubectl), and ffmpeg unless --file is
# given. The page host and the storage host (presigned URLs) must resolve from
# this machine, as set up by scripts/deploy-minikube.sh.
#
# Credentials: the API key in V2M_API_KEY, otherwise the one `make run` keeps
# in .run/dev-api-key. One user may hold 20 active jobs by default; raise the
# demo user's limit first (python -m api.admin set-limits EMAIL
# --max-active-jobs 500 --uploads-per-minute 600), otherwise the submissions
# wait at the cap: curl honours each 429's Retry-After.
set -euo pipefail

URL="${V2M_DEMO_URL:-http://video2mp3.test}"
JOBS=40
MINUTES=30
INTERVAL=10
FILE=""
KUBECTL=1
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NAMESPACE="video2mp3"
CONTEXT="${MINIKUBE_PROFILE:-video2mp3}"

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

usage() {
  cat <<USAGE
Usage: ${0##*/} [--url URL] [--jobs N] [--minutes M] [--file VIDEO] [--context CTX]
       [--interval S] [--no-kubectl]

Submits N conversion jobs to the API at URL (default ${URL}) and prints, every
${INTERVAL} s for at most M minutes, the transcode queue's ready/unacked counts
and the worker Deployment's replicas, so KEDA's 1..10 scaling can be watched.
Without --file it makes a 10-minute test clip (tiny video, sine audio) with ffmpeg.
With --no-kubectl (any stack, e.g. make run) it prints how many of the jobs are
queued, processing, completed and failed instead, and exits when all finished
(non-zero if one failed).

The API key comes from V2M_API_KEY, otherwise from .run/dev-api-key (make run).
USAGE
}

while (($# > 0)); do
  case "$1" in
    --url) URL="$2"; shift ;;
    --jobs) JOBS="$2"; shift ;;
    --minutes) MINUTES="$2"; shift ;;
    --file) FILE="$2"; shift ;;
    --context) CONTEXT="$2"; shift ;;
    --interval) INTERVAL="$2"; shift ;;
    --no-kubectl) KUBECTL=0 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
  shift
done

[[ "$JOBS" =~ ^[0-9]+$ && "$JOBS" -ge 1 && "$JOBS" -le 500 ]] || die "--jobs must be 1..500"
[[ "$MINUTES" =~ ^[0-9]+$ && "$MINUTES" -ge 1 ]] || die "--minutes must be a positive integer"
[[ "$INTERVAL" =~ ^[0-9]+$ && "$INTERVAL" -ge 1 ]] || die "--interval must be a positive integer"

required=(curl jq)
((KUBECTL)) && required+=(kubectl)
[[ -z "$FILE" ]] && required+=(ffmpeg)
missing=()
for tool in "${required[@]}"; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
((${#missing[@]} == 0)) || die "missing required tools: ${missing[*]} (e.g. apt-get install curl jq ffmpeg; kubectl from kubernetes.io/docs/tasks/tools)"

API_KEY="${V2M_API_KEY:-}"
if [[ -z "$API_KEY" && -f "${REPO_ROOT}/.run/dev-api-key" ]]; then
  API_KEY="$(<"${REPO_ROOT}/.run/dev-api-key")"
fi
[[ -n "$API_KEY" ]] || die "no API key: set V2M_API_KEY (python -m api.admin create-key EMAIL prints one)"
# Retries 429 (waiting for its Retry-After) and 5xx; POST /v1/jobs carries an
# Idempotency-Key, so a retried submission never makes a second job.
RETRY=(--retry 20 --retry-max-time 900)

k() { kubectl --context "$CONTEXT" -n "$NAMESPACE" "$@"; }

workdir="$(mktemp -d)"
trap 'rm -rf "$workdir"' EXIT
# The key goes to the API only, never to storage (presigned URLs carry their own
# signature), and through a file, so it never shows in the process list.
(umask 077 && printf 'Authorization: Bearer %s\n' "$API_KEY" >"${workdir}/auth")
AUTH=(-H "@${workdir}/auth")

if [[ -z "$FILE" ]]; then
  FILE="${workdir}/demo.mp4"
  log "making a 10-minute test clip"
  ffmpeg -hide_banner -loglevel error \
    -f lavfi -i "color=c=black:s=64x64:r=1:d=600" \
    -f lavfi -i "sine=frequency=440:sample_rate=44100:duration=600" \
    -shortest -c:v libx264 -preset ultrafast -c:a aac -b:a 128k "$FILE"
fi
[[ -f "$FILE" ]] || die "no such file: $FILE"
size="$(wc -c <"$FILE" | tr -d ' ')"
name="${FILE##*/}"

submit_job() {
  local upload url upload_id headers=() line
  upload="$(curl -fsS "${RETRY[@]}" -X POST "${URL}/v1/uploads" "${AUTH[@]}" -H 'Content-Type: application/json' \
    -d "$(jq -n --arg f "$name" --argjson s "$size" '{filename: $f, content_type: "video/mp4", size_bytes: $s}')")"
  url="$(jq -r '.url' <<<"$upload")"
  upload_id="$(jq -r '.upload_id' <<<"$upload")"
  while IFS= read -r line; do
    headers+=(-H "$line")
  done < <(jq -r '.headers // {} | to_entries[] | "\(.key): \(.value)"' <<<"$upload")
  curl -fsS "${RETRY[@]}" -X PUT "${headers[@]}" --upload-file "$FILE" "$url" -o /dev/null
  curl -fsS "${RETRY[@]}" -X POST "${URL}/v1/jobs" "${AUTH[@]}" -H 'Content-Type: application/json' \
    -H "Idempotency-Key: demo-${run_id}-${1}" \
    -d "$(jq -n --arg u "$upload_id" '{upload_id: $u, options: {}}')" | jq -r '.id'
}

run_id="$(date +%s)-$$"
job_ids=()
log "submitting ${JOBS} jobs to ${URL}"
for ((i = 1; i <= JOBS; i++)); do
  job_id="$(submit_job "$i")"
  job_ids+=("$job_id")
  printf '  job %3d/%d  %s\n' "$i" "$JOBS" "$job_id"
done

if ((!KUBECTL)); then
  # Without a cluster: follow the jobs through the API until every one finished.
  log "following the jobs for up to ${MINUTES} minutes (Ctrl-C to stop)"
  printf '%-8s %7s %10s %9s %6s\n' time queued processing completed failed
  deadline=$((SECONDS + MINUTES * 60))
  count() { grep -c "^$1\$" <<<"$statuses" || true; }
  while ((SECONDS < deadline)); do
    statuses="$(for id in "${job_ids[@]}"; do
      curl -fsS "${RETRY[@]}" "${AUTH[@]}" "${URL}/v1/jobs/${id}" | jq -r '.status'
    done)"
    printf '%-8s %7s %10s %9s %6s\n' "$(date +%H:%M:%S)" "$(count queued)" "$(count processing)" "$(count completed)" "$(count failed)"
    if (($(count completed) + $(count failed) == JOBS)); then
      (($(count failed) == 0)) || die "$(count failed) of ${JOBS} jobs failed"
      log "all ${JOBS} jobs completed"
      exit 0
    fi
    sleep "$INTERVAL"
  done
  die "time limit reached before every job finished"
fi

queue_counts() {
  # "ready unacked" for the transcode queue, read inside the broker pod.
  k exec rabbitmq-0 -- rabbitmqctl -q list_queues name messages_ready messages_unacknowledged 2>/dev/null \
    | awk '$1 == "transcode" { print $2, $3 }'
}

log "watching for up to ${MINUTES} minutes (Ctrl-C to stop)"
printf '%-8s %6s %8s %9s %6s %8s\n' time ready unacked desired pods ready
deadline=$((SECONDS + MINUTES * 60))
peak=0
while ((SECONDS < deadline)); do
  read -r ready unacked <<<"$(queue_counts || echo '? ?')"
  desired="$(k get deployment worker -o jsonpath='{.spec.replicas}' 2>/dev/null || echo '?')"
  pods="$(k get deployment worker -o jsonpath='{.status.replicas}' 2>/dev/null || echo '?')"
  ready_pods="$(k get deployment worker -o jsonpath='{.status.readyReplicas}' 2>/dev/null || echo '?')"
  printf '%-8s %6s %8s %9s %6s %8s\n' "$(date +%H:%M:%S)" "${ready:-?}" "${unacked:-?}" "${desired:-?}" "${pods:-?}" "${ready_pods:-?}"
  if [[ "$desired" =~ ^[0-9]+$ ]] && ((desired > peak)); then
    peak="$desired"
  fi
  if [[ "${ready:-}" == "0" && "${unacked:-}" == "0" && "$desired" == "1" && "$peak" -gt 1 ]]; then
    log "queue drained and workers scaled back to 1 (peak ${peak})"
    exit 0
  fi
  sleep "$INTERVAL"
done
log "time limit reached (peak ${peak} workers)"
