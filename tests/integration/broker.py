"""A RabbitMQ node of the test's own, on free ports, that a test may stop and restart.

Stopping the machine's shared broker would break every other test and user of it; this
node has its own name, ports and data directory, so a restart keeps its durable queues.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import uuid
from pathlib import Path

from tests.integration.conftest import free_port, port_open, wait_for


def rabbitmq_server() -> str | None:
    return shutil.which("rabbitmq-server") or (
        "/usr/sbin/rabbitmq-server" if Path("/usr/sbin/rabbitmq-server").exists() else None
    )


def _give_to_rabbitmq_user(path: Path) -> None:
    """Debian's rabbitmq-server drops to the rabbitmq user when started as root."""
    if os.geteuid() != 0:
        return
    try:
        import pwd

        user = pwd.getpwnam("rabbitmq")
    except KeyError:
        return
    for p in [path, *path.rglob("*")]:
        os.chown(p, user.pw_uid, user.pw_gid)
    # the user must be able to reach the directory through its parents
    for parent in path.parents:
        if parent == Path("/"):
            break
        mode = parent.stat().st_mode
        if not mode & 0o001:
            os.chmod(parent, mode | 0o001)


class DedicatedBroker:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.node = f"v2mtest{uuid.uuid4().hex[:8]}@localhost"
        self.port = free_port()
        self.dist_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        (workdir / "enabled_plugins").write_text("[].\n")
        (workdir / "rabbitmq.conf").write_text("loopback_users = none\n")

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"

    def start(self) -> None:
        server = rabbitmq_server()
        assert server, "rabbitmq-server is not installed: run `make install-system`"
        env = {
            **os.environ,
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.workdir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.workdir / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.workdir / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(self.workdir / "rabbitmq.conf"),
            "RABBITMQ_PID_FILE": str(self.workdir / "rabbitmq.pid"),
            "ERL_CRASH_DUMP": str(self.workdir / "erl_crash.dump"),
        }
        _give_to_rabbitmq_user(self.workdir)
        log = (self.workdir / "server.out").open("ab")
        self.proc = subprocess.Popen(
            [server], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        wait_for(
            lambda: port_open(self.port) or self.proc is None or self.proc.poll() is not None,
            90,
            "the dedicated RabbitMQ node to listen",
        )
        assert self.proc.poll() is None, (self.workdir / "server.out").read_text()[-3000:]

    def stop(self) -> None:
        """A clean stop (rabbitmqctl), as an operator or an orchestrator would do it."""
        if self.proc is None or self.proc.poll() is not None:
            return
        ctl = shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl"
        subprocess.run([ctl, "-n", self.node, "stop"], capture_output=True, timeout=60, check=False)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.kill()
        wait_for(lambda: not port_open(self.port), 30, "the dedicated RabbitMQ node to stop")

    def kill(self) -> None:
        """The last resort: SIGKILL the node (its pid file names the Erlang VM)."""
        pid_file = self.workdir / "rabbitmq.pid"
        if pid_file.exists():
            try:
                os.kill(int(pid_file.read_text().strip()), signal.SIGKILL)
            except (ValueError, ProcessLookupError):
                pass
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
