"""A local SMTP sink for `make run`: every message it receives is written to
`<dir>/<timestamp>-<id>.eml`, and the path printed. Nothing is relayed anywhere.

    python scripts/mail_sink.py --port 8025 --dir .run/mail
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


class WriteToDir:
    """aiosmtpd handler: one .eml file per message."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def handle_DATA(self, _server: SMTP, _session: Session, envelope: Envelope) -> str:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        path = self.directory / f"{stamp}-{uuid.uuid4().hex[:8]}.eml"
        path.write_bytes(envelope.original_content or b"")
        print(f"mail to {', '.join(envelope.rcpt_tos)} written to {path}", flush=True)
        return "250 Message accepted"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8025)
    parser.add_argument("--dir", type=Path, default=Path(".run/mail"))
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    controller = Controller(WriteToDir(args.dir), hostname=args.host, port=args.port)
    controller.start()
    print(f"SMTP sink on {args.host}:{args.port}, writing messages to {args.dir}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    controller.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
