"""Request cost in process: each API endpoint called through Django's WSGI handler, no server,
no load client, one request at a time, on a fresh SQLite or PostgreSQL database.

What api_load.py cannot separate: the time one request takes in our code and the database
(p50 and p90 of N calls, each timed alone) and its SQL statements, without gunicorn, the HTTP
client or queueing. Compare endpoints with the ceiling of the same run (bench/urls.py: a bare
Django view that decodes the JWT and reads one row). Data as api_load.py's: U users with a
vehicle and a latest reading, one of them with D days of 1-minute readings (the history).
Webhooks post a new signed VEHICLE_STATE event each time: `webhook` is the answer with the
event processed in the background (the default; each call then waits, untimed, for that to end),
`webhook_inline` the same with the processing in the request. Writes
bench/results/request_cpu-<db>.json.

    .venv/bin/python bench/request_cpu.py
    .venv/bin/python bench/request_cpu.py --history-days 365 \\
        --database-url postgres://postgres@127.0.0.1:5432/bench
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common
import api_load

SETTINGS = "bench.settings"


def wsgi_caller() -> Callable[..., int]:
    """`call(method, path, headers, body)` → the status code, through Django's WSGI handler."""
    from django.core.handlers.wsgi import WSGIHandler

    app = WSGIHandler()

    def call(method: str, path: str, headers: dict[str, str], body: bytes = b"") -> int:
        route, _, query = path.partition("?")
        environ = {
            "REQUEST_METHOD": method,
            "PATH_INFO": route,
            "QUERY_STRING": query,
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "HTTP_HOST": "127.0.0.1:8000",
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr,
            "CONTENT_LENGTH": str(len(body)),
            **{"HTTP_" + name.upper().replace("-", "_"): value for name, value in headers.items()},
        }
        if "HTTP_CONTENT_TYPE" in environ:
            environ["CONTENT_TYPE"] = environ.pop("HTTP_CONTENT_TYPE")
        statuses: list[str] = []
        response = app(environ, lambda status, _headers, _exc=None: statuses.append(status))
        try:
            b"".join(response)
        finally:
            response.close()
        return int(statuses[0].split(" ", 1)[0])

    return call


def measure(
    call: Callable[..., int],
    make: Callable[[int], Any],
    first: int,
    count: int,
    settle: Callable[[], Any] = lambda: None,
) -> dict[str, Any]:
    """p50/p90 of `count` requests, each timed alone; `settle` runs after each, untimed (the
    webhook's background processing: its statements are not the request's either)."""
    for n in range(first, first + 20):  # warm-up: imports, compiled reads, connection
        call(*make(n))
        settle()
    times: list[float] = []
    statuses: set[int] = set()
    with _common.count_sql(skip_thread=lambda t: t.name == "webhook-processor") as statements:
        for n in range(first + 20, first + 20 + count):
            request = make(n)
            started = time.perf_counter()
            statuses.add(call(*request))
            times.append(time.perf_counter() - started)
            settle()
    times.sort()
    return {
        "requests": count,
        "p50Us": round(_common.percentile(times, 50) * 1e6),
        "p90Us": round(_common.percentile(times, 90) * 1e6),
        "sqlPerRequest": round(statements.value / count, 2),
        "statuses": sorted(statuses),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=50, help="users/vehicles (default 50)")
    parser.add_argument("--history-days", type=int, default=30, help="1-minute readings (30)")
    parser.add_argument("--requests", type=int, default=500, help="per endpoint (500)")
    parser.add_argument("--database-url", default=None, help="PostgreSQL URL; default SQLite")
    args = parser.parse_args()

    vendor = _common.setup_django(args.database_url, settings_module=SETTINGS)
    from django.db import connection
    from django.test import override_settings

    from telemetry.services.webhook_dispatch import background_processor

    _common.create_database("cpu")
    try:
        db_version = _common.database_version()
        seeded = api_load.seed(args.users, 1, args.history_days)

        def processed() -> None:
            background_processor().wait_idle(60)

        call = wsgi_caller()
        specs = api_load.requests_by_endpoint(seeded, args.users, 1)
        runs = []
        for index, (name, make) in enumerate(specs.items()):
            settle = processed if name == "webhook" else lambda: None
            result = measure(call, make, index * (args.requests + 20), args.requests, settle)
            runs.append({"endpoint": name, **result})
        # The same deliveries processed in the request, before the answer: what the background
        # thread takes off the answer.
        with override_settings(SMARTCAR_WEBHOOK_PROCESSING="inline"):
            result = measure(
                call, specs["webhook"], len(specs) * (args.requests + 20), args.requests
            )
        runs.append({"endpoint": "webhook_inline", **result})
    finally:
        background_processor().stop(60)  # its thread's connection too
        connection.close()
        _common.destroy_database()

    ceiling = next(r["p50Us"] for r in runs if r["endpoint"] == "ceiling")
    print(
        f"\nrequest_cpu on {db_version}, in process (no server, no client), {args.users} users, "
        f"history 1 x {args.history_days} days, {args.requests} requests per endpoint"
    )
    print(
        _common.table(
            ["endpoint", "p50 us", "p90 us", "p50 / ceiling", "SQL per request", "statuses"],
            [
                [
                    r["endpoint"],
                    r["p50Us"],
                    r["p90Us"],
                    round(r["p50Us"] / ceiling, 2),
                    r["sqlPerRequest"],
                    ",".join(map(str, r["statuses"])),
                ]
                for r in runs
            ],
        )
    )
    path = _common.write_results(
        f"request_cpu-{vendor}",
        {
            "database": db_version,
            "users": args.users,
            "historyDays": args.history_days,
            "runs": runs,
        },
    )
    print(f"\nwrote {path.relative_to(_common.REPO_ROOT)}")


if __name__ == "__main__":
    main()
