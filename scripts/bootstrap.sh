#!/usr/bin/env bash
# Installs what `make run` and `make test` need on a fresh Debian machine, and only what
# is missing. Usage: scripts/bootstrap.sh python|system|postgres|test-tools|monitor
#   python      virtualenv in .venv with the project and its dev tools
#   system      ffmpeg/ffprobe and RabbitMQ (installed with apt-get, started if not running,
#               with its rabbitmq_prometheus plugin on :15692)
#   postgres    PostgreSQL for the tests of the PostgreSQL path (installed/started if absent)
#   test-tools  what only the tests use from apt (chromium, nginx for `nginx -t`,
#               prometheus/promtool, tmux)
#   monitor     `make monitor`: Prometheus in the foreground on 127.0.0.1:${PROMETHEUS_PORT:-9090},
#               scraping `make run`'s API, its ${WORKERS:-1} worker(s) and RabbitMQ
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
APT_UPDATED=0

say() { printf '==> %s\n' "$*"; }

apt_install() {
  if [ "$APT_UPDATED" -eq 0 ]; then
    $SUDO apt-get update -qq
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@"
}

port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && exec 3>&- 3<&-
}

wait_for_port() {
  local port=$1 what=$2 tries=${3:-60}
  for _ in $(seq "$tries"); do
    if port_open "$port"; then return 0; fi
    sleep 1
  done
  echo "error: $what did not start listening on 127.0.0.1:$port" >&2
  return 1
}

find_python() {
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
      echo "$candidate"
      return 0
    fi
  done
  echo "error: Python 3.11 or newer is required (apt-get install python3)" >&2
  return 1
}

install_python() {
  local stamp="$VENV/.installed"
  if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ]; then return 0; fi
  local py
  py=$(find_python)
  if [ ! -x "$VENV/bin/python" ]; then
    say "creating virtualenv $VENV"
    if ! "$py" -m venv "$VENV" 2>/dev/null; then
      rm -rf "$VENV"
      say "installing python3-venv (apt-get)"
      apt_install python3-venv
      "$py" -m venv "$VENV"
    fi
  fi
  say "installing Python dependencies (pip)"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -e '.[dev]'
  touch "$stamp"
}

install_system() {
  local missing=()
  command -v ffmpeg >/dev/null 2>&1 && command -v ffprobe >/dev/null 2>&1 || missing+=(ffmpeg)
  command -v rabbitmq-server >/dev/null 2>&1 || [ -x /usr/sbin/rabbitmq-server ] || missing+=(rabbitmq-server)
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]} (apt-get)"
    apt_install "${missing[@]}"
  fi
  start_rabbitmq
}

start_rabbitmq() {
  # Only a local broker is ours to start; a remote V2M_AMQP_URL is the user's business.
  case "${V2M_AMQP_URL:-amqp://127.0.0.1}" in
    *@127.0.0.1* | *@localhost* | amqp://127.0.0.1* | amqp://localhost*) ;;
    *) return 0 ;;
  esac
  if ! port_open 5672; then
    say "starting RabbitMQ"
    if command -v systemctl >/dev/null 2>&1 && systemctl is-system-running >/dev/null 2>&1; then
      $SUDO systemctl start rabbitmq-server
    else
      $SUDO rabbitmq-server -detached
    fi
    wait_for_port 5672 RabbitMQ 90
  fi
  # Queue depth and consumers come from RabbitMQ's own Prometheus endpoint (:15692).
  # Enabling is idempotent and takes effect on the running node.
  if ! port_open 15692; then
    say "enabling RabbitMQ's rabbitmq_prometheus plugin (:15692)"
    $SUDO rabbitmq-plugins enable --quiet rabbitmq_prometheus >/dev/null
    wait_for_port 15692 "RabbitMQ's Prometheus endpoint" 30
  fi
}

install_postgres() {
  if port_open 5432; then return 0; fi
  if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    say "installing postgresql (apt-get)"
    apt_install postgresql
  fi
  say "starting PostgreSQL"
  local version
  version=$(find /etc/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -V | tail -n 1)
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main start ||
    $SUDO pg_ctlcluster "$version" main start
  wait_for_port 5432 PostgreSQL 60
  # The tests connect as postgres:postgres over TCP (trust or password auth both work).
  $SUDO su postgres -c "psql -q -c \"ALTER USER postgres PASSWORD 'postgres'\"" >/dev/null
}

install_test_tools() {
  # Debian's Chromium for the page's browser tests (Playwright drives it; no browser is
  # ever downloaded by Playwright itself).
  if [ ! -x /usr/bin/chromium ]; then
    say "installing chromium (apt-get)"
    apt_install chromium
  fi
  # nginx only checks the frontend image's config (`nginx -t`); it is not left running.
  if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
    say "installing nginx for 'nginx -t' (apt-get)"
    apt_install nginx-light
    $SUDO service nginx stop >/dev/null 2>&1 || true
  fi
  # tmux: the v2m tests watch its live progress rows in a real terminal.
  if ! command -v tmux >/dev/null 2>&1; then
    say "installing tmux (apt-get)"
    apt_install tmux
  fi
  # axe-core (npm, pinned in package-lock.json): the accessibility checks the browser
  # tests inject into the page.
  if [ ! -f node_modules/axe-core/axe.min.js ]; then
    command -v npm >/dev/null 2>&1 || apt_install npm
    say "installing axe-core (npm ci)"
    npm ci --no-audit --no-fund
  fi
  install_prometheus
}

install_prometheus() {
  # Debian's package: prometheus and promtool. Never a downloaded binary.
  if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then return 0; fi
  say "installing prometheus (apt-get)"
  apt_install prometheus
  # The package starts its own daemon on :9090 (and, if recommends were on, a node
  # exporter on :9100, the worker's metrics port). We run Prometheus ourselves.
  local svc
  for svc in prometheus prometheus-node-exporter; do
    if command -v systemctl >/dev/null 2>&1 && systemctl is-system-running >/dev/null 2>&1; then
      $SUDO systemctl disable --now "$svc" >/dev/null 2>&1 || true
    else
      $SUDO service "$svc" stop >/dev/null 2>&1 || true
    fi
  done
}

run_monitor() {
  install_prometheus
  local config=monitoring/prometheus/prometheus.local.yml dir=.run/prometheus
  local port=${PROMETHEUS_PORT:-9090} workers=${WORKERS:-1} targets="" i
  if port_open "$port"; then
    echo "error: port $port is in use (the Debian prometheus service? 'service prometheus stop'); or set PROMETHEUS_PORT" >&2
    return 1
  fi
  mkdir -p "$dir/data"
  # `make run` gives worker N the metrics port 9100+N-1.
  for ((i = 0; i < workers; i++)); do targets+="${targets:+, }\"127.0.0.1:$((9100 + i))\""; done
  printf '[{"targets": [%s]}]\n' "$targets" >"$dir/workers.json.tmp"
  mv "$dir/workers.json.tmp" "$dir/workers.json"
  promtool check config "$config" >/dev/null
  say "Prometheus on http://127.0.0.1:$port (alerts: /alerts, targets: /targets); Ctrl-C stops it"
  exec prometheus --config.file="$config" --storage.tsdb.path="$dir/data" \
    --storage.tsdb.retention.time=7d --web.listen-address="127.0.0.1:$port" \
    --web.enable-lifecycle --log.level=warn
}

case "${1:-}" in
  python) install_python ;;
  system) install_system ;;
  postgres) install_postgres ;;
  test-tools) install_test_tools ;;
  monitor) run_monitor ;;
  *)
    echo "usage: $0 python|system|postgres|test-tools|monitor" >&2
    exit 2
    ;;
esac
