"""A small asyncio HTTP/1.1 load client for `api_load.py`.

Why not `requests` in threads: on a 2-vCPU machine the client shares the CPUs with the server,
and `requests` spends about a millisecond of CPU per call (URL parsing, header objects, the
GIL passing between threads), which the server then does not get. Here every request is built
as bytes before the clock starts, and the timed loop only connects, writes and reads, so the
figures describe the server, not the client.

The loop is uvloop's (requirements-dev.txt), and each exchange is a bare
`asyncio.Protocol` with one timer, not a stream reader and writer under `wait_for`: the client's
CPU per request is what the server does not get, so it is measured (`LoadResult.client_cpu_seconds`)
and kept small (docs/performance.md: 0.5 ms a request with streams on the default loop).

Each request opens its own connection and asks for `Connection: close`: gunicorn's sync
workers close after every response anyway, and a fresh connection per request is what a client
behind a proxy that does not pool would see. The latency of a request includes its connect.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import uvloop


def build_request(
    base: str,
    method: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
) -> bytes:
    """The raw bytes of one HTTP/1.1 request to `base` (http://host:port)."""
    host = urlsplit(base).netloc
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", "Connection: close"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if body or method in {"POST", "PUT", "PATCH"}:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


@dataclass
class LoadResult:
    requests: int
    connections: int
    seconds: float
    latencies: list[float] = field(default_factory=list)
    error_statuses: list[int] = field(default_factory=list)
    # The client's own CPU (its process, all of it) over the timed run.
    client_cpu_seconds: float = 0.0


def _status_of(response: bytes) -> int:
    """The status code of a raw response; 0 when it is not an HTTP response at all."""
    head = response[:32].split(b" ", 2)
    if len(head) < 2 or not head[0].startswith(b"HTTP/"):
        return 0
    try:
        return int(head[1])
    except ValueError:
        return 0


class _Exchange(asyncio.Protocol):
    """One request on its own connection: write it, keep the response's first bytes (the
    status line is all we read), and resolve `done` with the status once the server closes.
    A response cut short still counts by its status line; no response at all is 0."""

    def __init__(self, request: bytes, done: asyncio.Future[int]) -> None:
        self.request = request
        self.done = done
        self.head = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        if len(self.head) < 32:
            self.head += data[:32]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(_status_of(self.head))


async def _one(
    loop: asyncio.AbstractEventLoop, host: str, port: int, request: bytes, timeout: float
) -> int:
    done: asyncio.Future[int] = loop.create_future()
    transport: asyncio.BaseTransport | None = None
    try:
        async with asyncio.timeout(timeout):
            transport, _ = await loop.create_connection(
                lambda: _Exchange(request, done), host, port
            )
            return await done
    except (TimeoutError, OSError):
        return 0
    finally:
        if transport is not None:
            transport.close()


async def _run(
    base: str, requests: Sequence[bytes], total: int, connections: int, timeout: float
) -> LoadResult:
    parts = urlsplit(base)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    errors: list[int] = []
    next_index = iter(range(total))

    async def connection_loop() -> None:
        for n in next_index:  # one shared iterator: each request index is taken once
            started = time.perf_counter()
            status = await _one(loop, host, port, requests[n % len(requests)], timeout)
            latencies.append(time.perf_counter() - started)
            if not 200 <= status < 300:
                errors.append(status)

    cpu_started = time.process_time()
    started = time.perf_counter()
    await asyncio.gather(*(connection_loop() for _ in range(connections)))
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    return LoadResult(
        total,
        connections,
        seconds,
        sorted(latencies),
        errors,
        client_cpu_seconds=cpu,
    )


def run_load(
    base: str,
    requests: Sequence[bytes],
    *,
    total: int,
    connections: int,
    timeout: float = 30.0,
) -> LoadResult:
    """Send `total` requests (cycling through `requests`) over `connections` concurrent
    connections; returns the sorted latencies, any non-2xx statuses (0 = no response, or none
    within `timeout`) and the client's CPU time."""
    if not requests:
        raise ValueError("no requests to send")
    return uvloop.run(_run(base, requests, total, connections, timeout))
