"""A PostgreSQL cluster of the test's own, on a free port, that a test may stop and start.

Stopping the machine's shared server would break every other test and user of it. As
root, the cluster belongs to the ``postgres`` user (initdb refuses to run as root).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.integration.conftest import free_port, port_open, wait_for


def postgres_bin() -> Path | None:
    """The directory holding initdb and pg_ctl: on PATH, or Debian's newest version."""
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return versions[-1].parent if versions else None


class DedicatedPostgres:
    def __init__(self, workdir: Path) -> None:
        bindir = postgres_bin()
        if bindir is None:
            raise RuntimeError("PostgreSQL's server programs (initdb, pg_ctl) are not installed")
        self.bindir = bindir
        self.workdir = workdir
        self.data = workdir / "data"
        self.port = free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *argv: str) -> None:
        prefix: list[str] = []
        if os.geteuid() == 0:
            prefix = ["runuser", "-u", "postgres", "--"]
        subprocess.run([*prefix, *argv], check=True, capture_output=True, timeout=120)

    def init(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.workdir, "postgres", "postgres")
        self._run(
            str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust"
        )
        self.start()

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.workdir}"
        log = self.workdir / "postgres.log"
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(log),
            "-w",
            "start",
        )
        wait_for(lambda: port_open(self.port), 30, "PostgreSQL to listen")

    def stop(self) -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
