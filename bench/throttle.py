"""A TCP proxy on loopback that caps throughput, standing in for storage across a network.

    python -m bench.throttle --listen 19001 --target 127.0.0.1:9000 --rate-mb-s 50

Every byte in each direction passes through one token bucket per direction, shared by all
connections, so the cap is that of a link (50 MB/s means 50e6 bytes/s) and not per
connection. Requests are forwarded unchanged (the Host header and so SigV4 signatures stay
valid). It prints ``listening`` once it accepts connections and stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import time

CHUNK = 64 * 1024


class TokenBucket:
    """``rate`` bytes per second, bursts of at most ``burst`` bytes."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = time.monotonic()
        self.lock = asyncio.Lock()

    async def take(self, n: int) -> None:
        async with self.lock:  # FIFO: connections share the link fairly
            while True:
                now = time.monotonic()
                self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
                self.stamp = now
                if self.tokens >= n:
                    self.tokens -= n
                    return
                await asyncio.sleep((n - self.tokens) / self.rate)


async def pump(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, bucket: TokenBucket
) -> None:
    try:
        while data := await reader.read(CHUNK):
            await bucket.take(len(data))
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        with contextlib.suppress(Exception):
            if writer.can_write_eof():
                writer.write_eof()


async def serve(listen: int, host: str, port: int, rate: float) -> None:
    # Bursts of 1/20 s keep the rate smooth at the scale of a request.
    up = TokenBucket(rate, max(CHUNK, rate / 20))
    down = TokenBucket(rate, max(CHUNK, rate / 20))

    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection(host, port)
        except OSError:
            client_w.close()
            return
        await asyncio.gather(pump(client_r, server_w, up), pump(server_r, client_w, down))
        for w in (client_w, server_w):
            with contextlib.suppress(Exception):
                w.close()

    server = await asyncio.start_server(handle, "127.0.0.1", listen)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        print("listening", flush=True)
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", type=int, required=True)
    parser.add_argument("--target", required=True, help="host:port")
    parser.add_argument("--rate-mb-s", type=float, default=50.0, help="MB/s (1 MB = 1e6 bytes)")
    args = parser.parse_args()
    host, _, port = args.target.rpartition(":")
    asyncio.run(serve(args.listen, host, int(port), args.rate_mb_s * 1e6))


if __name__ == "__main__":
    main()
