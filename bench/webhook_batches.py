"""What processing stored webhook events costs a follower (`process_webhooks --follow`), per
event, by batch size: in process, no server, no load, on a fresh SQLite or PostgreSQL database.

U users with a vehicle and a latest reading (as api_load.py seeds them); E signed VEHICLE_STATE
deliveries, each new, stored as the worker mode's endpoint stores them (`received`); then, for
each batch size B, E events processed with `webhook_events_process_batch` B at a time (each
size on its own events). Prints, per event: wall time, the process's CPU, on PostgreSQL the CPU
of its backend (the same machine's /proc), and SQL statements per batch by kind. Writes
bench/results/webhook_batches-<db>.json. What api_load.py shows under load (the followers' CPU
per event while the answers run) this shows alone, per batch size.

    .venv/bin/python bench/webhook_batches.py
    .venv/bin/python bench/webhook_batches.py --database-url postgres://postgres@127.0.0.1:5432/bench
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common
import api_load

SETTINGS = "bench.settings"


def backend_cpu_seconds() -> float:
    """CPU seconds our PostgreSQL backend has used so far (0 on SQLite: it runs in process)."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return 0.0
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (pid,) = cursor.fetchone()
    return _common.process_cpu_seconds(pid)


def store_events(make: Any, first: int, count: int) -> list[Any]:
    from telemetry.models import WebhookEvent
    from telemetry.services.webhooks import webhook_receive

    for n in range(first, first + count):
        _, _, headers, body = make(n)
        webhook_receive(body=body, signature=headers["SC-Signature"])
    return list(WebhookEvent.objects.filter(status=WebhookEvent.Status.RECEIVED).order_by("pk"))


def measure(events: list[Any], batch: int) -> dict[str, Any]:
    from telemetry.services.webhooks import webhook_events_process_batch

    backend = backend_cpu_seconds()
    cpu = time.process_time()
    started = time.perf_counter()
    with _common.count_sql() as sql:
        statuses = [
            status
            for start in range(0, len(events), batch)
            for status in webhook_events_process_batch(events[start : start + batch])
        ]
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu
    backend = backend_cpu_seconds() - backend
    batches = -(-len(events) // batch)
    return {
        "batch": batch,
        "events": len(events),
        "processed": statuses.count("processed"),
        "wallMsPerEvent": round(wall * 1000 / len(events), 3),
        "cpuMsPerEvent": round(cpu * 1000 / len(events), 3),
        "backendCpuMsPerEvent": round(backend * 1000 / len(events), 3),
        "sqlPerBatch": round(sql.value / batches, 2),
        "sqlByKindPerBatch": {kind: round(n / batches, 2) for kind, n in sql.kinds.most_common()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=2000, help="users/vehicles (default 2000)")
    parser.add_argument("--events", type=int, default=2000, help="per batch size (2000)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 5, 50, 200])
    parser.add_argument("--database-url", default=None, help="PostgreSQL URL; default SQLite")
    args = parser.parse_args()
    if args.events < 1 or min(args.batches) < 1:
        parser.error("--events and --batches must be at least 1")

    # The endpoint only stores, as with followers (bench/settings.py reads the environment).
    os.environ["SMARTCAR_WEBHOOK_PROCESSING"] = "worker"
    vendor = _common.setup_django(args.database_url, settings_module=SETTINGS)
    from django.db import connection

    _common.create_database("webhooks")
    try:
        db_version = _common.database_version()
        seeded = api_load.seed(args.users, 0, 0)
        make = api_load.requests_by_endpoint(seeded, args.users, 0)["webhook"]
        warm = store_events(make, 0, 20)  # imports, compiled statements, connection
        measure(warm, 5)
        runs = []
        numbered = 20
        for batch in args.batches:
            events = store_events(make, numbered, args.events)
            numbered += args.events
            runs.append(measure(events, batch))
    finally:
        connection.close()
        _common.destroy_database()

    print(
        f"\nwebhook_batches on {db_version}, in process, {args.users} users, {args.events} "
        "events per batch size"
    )
    print(
        _common.table(
            [
                "batch",
                "processed",
                "wall ms/event",
                "CPU ms/event",
                "backend CPU ms/event",
                "SQL/batch",
                "by kind",
            ],
            [
                [
                    r["batch"],
                    r["processed"],
                    r["wallMsPerEvent"],
                    r["cpuMsPerEvent"],
                    r["backendCpuMsPerEvent"] if vendor == "postgresql" else "-",
                    r["sqlPerBatch"],
                    ", ".join(f"{k} {v}" for k, v in r["sqlByKindPerBatch"].items()),
                ]
                for r in runs
            ],
        )
    )
    path = _common.write_results(
        f"webhook_batches-{vendor}",
        {"database": db_version, "users": args.users, "events": args.events, "runs": runs},
    )
    print(f"\nwrote {path.relative_to(_common.REPO_ROOT)}")


if __name__ == "__main__":
    main()
