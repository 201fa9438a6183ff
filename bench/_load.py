"""A lean HTTP load generator for `bench/api.py`: N keep-alive connections, each a closed loop
(one request in flight per connection), for a fixed time. Raw asyncio streams, so that the
client costs little of the machine the server runs on; it reads Content-Length or chunked
bodies, which is all uvicorn sends.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass
class Load:
    """What a load run saw: each request's latency (s), the statuses, the run's length."""

    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]

    def summary(self) -> str:
        ms = lambda v: f"{v * 1000:.1f} ms"  # noqa: E731
        return (f"{self.rate:,.0f} req/s, p50 {ms(statistics.median(self.latencies))}, "
                f"p99 {ms(self.percentile(99))} ({len(self.latencies):,} requests, "
                f"statuses {dict(sorted(self.statuses.items()))})")


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {k.strip().lower(): v.strip() for k, v in
               (line.split(":", 1) for line in lines[1:] if ":" in line)}
    if "content-length" in headers:
        return status, await reader.readexactly(int(headers["content-length"]))
    body = bytearray()
    while True:  # chunked
        size = int((await reader.readuntil(b"\r\n")).strip(), 16)
        chunk = await reader.readexactly(size + 2)
        if size == 0:
            return status, bytes(body)
        body += chunk[:-2]


async def _connection(port: int, requests: Sequence[bytes], until: float, load: Load,
                      delay: float) -> None:
    # Connections open one after another: `herald api --workers N` shares one listening
    # socket, and a worker woken by several waiting connections accepts them all.
    await asyncio.sleep(delay)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        i = 0
        while time.perf_counter() < until:
            started = time.perf_counter()
            writer.write(requests[i % len(requests)])
            status, _ = await _read_response(reader)
            load.latencies.append(time.perf_counter() - started)
            load.statuses[status] = load.statuses.get(status, 0) + 1
            i += 1
    finally:
        writer.close()


def request(path: str, token: str | None = None) -> bytes:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Accept: */*\r\n\r\n".encode()


def run_load(port: int, per_connection: Sequence[Sequence[bytes]], seconds: float) -> Load:
    """One connection per entry of `per_connection`, each sending its requests in turn."""
    load = Load()

    async def main() -> None:
        until = time.perf_counter() + seconds
        started = time.perf_counter()
        await asyncio.gather(*(_connection(port, requests, until, load, i * 0.02)
                               for i, requests in enumerate(per_connection)))
        load.seconds = time.perf_counter() - started

    asyncio.run(main())
    return load
