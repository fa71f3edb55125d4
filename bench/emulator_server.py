"""A stand-alone emulator process for benchmarks: N grants on N simulated vehicles, over HTTP.

Run by the benchmarks (not by hand, though `--help` works). The emulator's fleet is a fixed
catalogue of 11 cars; here it is widened to N clones (same models, fresh vehicle ids) and one
grant with a fresh token pair is issued per clone through the emulator's own OAuth functions.
The pairs are written as JSON to `--tokens-file` (a path in a private temp dir the caller owns;
emulator tokens are meaningless outside this process) and the server then serves
`/_smartcar/…` with a threaded WSGI server until it is terminated.

Must never: be pointed at anything but the emulator; print a token.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import socket
import sys
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common

PERMISSIONS = ["read_battery", "read_charge", "read_location", "read_odometer", "read_vehicle_info"]


def seed_grants(count: int) -> list[dict[str, Any]]:
    from smartcar_emulator import conf, oauth, store

    class BenchState(store.State):
        # The emulator rebuilds its id index on every lookup (fine for 11 cars); 10,000 clones
        # would make the emulator, not our poller, the bottleneck.
        @functools.cached_property
        def vehicles_by_id(self) -> dict[str, Any]:  # type: ignore[override]
            return {vehicle.id: vehicle for vehicle in self.fleet}

    base = store.reset().fleet
    clones = tuple(
        dataclasses.replace(base[i % len(base)], id=str(uuid.UUID(int=i + 1, version=4)))
        for i in range(count)
    )
    with store._lock:
        store._state = BenchState(seed=conf.seed(), fleet=clones)
    redirect_uri = conf.redirect_uris()[0]
    grants = []
    for index, vehicle in enumerate(clones):
        code = oauth.grant_create(
            client_id=conf.client_id(),
            user_id=f"bench-user-{index}",
            make=vehicle.make,
            vehicle_ids=[vehicle.id],
            permissions=PERMISSIONS,
            mode="simulated",
            redirect_uri=redirect_uri,
        )
        pair = oauth.code_exchange(client_id=conf.client_id(), code=code, redirect_uri=redirect_uri)
        grants.append(
            {
                "vehicle_id": vehicle.id,
                "make": vehicle.make,
                "model": vehicle.model,
                "year": vehicle.year,
                "access_token": pair.access_token,
                "refresh_token": pair.refresh_token,
                "expires_in": pair.expires_in,
            }
        )
    return grants


def serve(port: int, threads_hint: int) -> None:
    from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler
    from django.core.wsgi import get_wsgi_application

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    class Server(ThreadedWSGIServer):
        # Room for every poller worker to connect at once without SYN retries (1 s each).
        request_queue_size = max(128, threads_hint * 4)

        def get_request(self) -> tuple[socket.socket, Any]:
            # wsgiref writes the headers and the body in separate sends: with Nagle on, the body
            # waits for the client's delayed ACK of the headers, which added 40 ms to every
            # response (measured: 244 ms for an injected 200 ms) and capped the poller at 0.78.
            connection, address = super().get_request()
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return connection, address

    server = Server(("127.0.0.1", port), QuietHandler)
    server.set_app(get_wsgi_application())
    server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vehicles", type=int, default=100)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tokens-file", type=Path, required=True)
    parser.add_argument("--latency-ms", type=int, default=0)
    parser.add_argument("--threads-hint", type=int, default=32)
    args = parser.parse_args()

    # The emulator keeps no rows; an in-memory database keeps Django's start-up happy.
    _common.setup_django("sqlite://:memory:")
    from smartcar_emulator import control

    grants = seed_grants(args.vehicles)
    if args.latency_ms:
        control.set_faults(latency_ms=args.latency_ms)
    fd = os.open(args.tokens_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(grants, out)
    serve(args.port, args.threads_hint)


if __name__ == "__main__":
    main()
