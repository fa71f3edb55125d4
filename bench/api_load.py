"""API load: the app under gunicorn (sync workers) on a fresh SQLite or PostgreSQL database,
driven by an asyncio client on uvloop (bench/_http_load.py) at 4 and 16 connections for a
fixed number of requests per endpoint.

Data: U users, each with a Smartcar account, a vehicle and a latest reading; H of the vehicles
also carry D days of 1-minute readings (history). Endpoints: `GET /api/v1/vehicles`,
`…/telemetry/latest`, `…/telemetry?bucket=1h` over the last 7 days of a history vehicle, and
`POST /api/v1/smartcar/webhook` (signed VEHICLE_STATE events, each new; processed as
`SMARTCAR_WEBHOOK_PROCESSING` says, by default in the background, so the script also waits
for and reports when every event has been processed; with `worker` it starts `--followers`
`process_webhooks --follow` processes under `nice -n 10`, as the README advises), plus the ceiling
(`/bench/ceiling`, bench/urls.py: a bare Django view that decodes the JWT and reads one row).
Prints req/s, p50, p99, errors, each endpoint's ratio to the ceiling and the load client's own
CPU per request; writes bench/results/api_load-<db>.json. The client runs on the same machine
and competes for CPU: what it takes, the server does not get.

    .venv/bin/python bench/api_load.py                                    # quick
    .venv/bin/python bench/api_load.py --users 10000 --history-vehicles 3 --history-days 365 \\
        --requests 3000 --database-url postgres://postgres@127.0.0.1/bench  # full
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common
import _http_load

SETTINGS = "bench.settings"


def seed(users: int, history_vehicles: int, history_days: int) -> dict[str, Any]:
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from telemetry.models import Reading, TelemetryState
    from vehicles.models import SmartcarAccount, Vehicle

    now = timezone.now().replace(second=0, microsecond=0)
    user_model = get_user_model()
    user_model.objects.bulk_create(
        [user_model(username=f"load-{i}", email=f"load-{i}@example.test") for i in range(users)],
        batch_size=2000,
    )
    by_name = {u.username: u for u in user_model.objects.filter(username__startswith="load-")}
    SmartcarAccount.objects.bulk_create(
        [
            SmartcarAccount(
                smartcar_user_id=f"load-sc-{i}",
                owner=by_name[f"load-{i}"],
                access_token=f"access-{i}",
                refresh_token=f"refresh-{i}",
                access_expires_at=now + timedelta(hours=2),
                refresh_expires_at=now + timedelta(days=60),
                last_refreshed_at=now,
                scopes=["read_battery", "read_charge", "read_location", "read_odometer"],
            )
            for i in range(users)
        ],
        batch_size=2000,
    )
    accounts = {a.smartcar_user_id: a for a in SmartcarAccount.objects.all()}
    Vehicle.objects.bulk_create(
        [
            Vehicle(
                smartcar_vehicle_id=f"load-vid-{i}",
                owner=by_name[f"load-{i}"],
                account=accounts[f"load-sc-{i}"],
                make="TESLA",
                model="Model 3",
                year=2022,
                is_primary=True,
                connected_at=now,
            )
            for i in range(users)
        ],
        batch_size=2000,
    )
    vehicles = {v.smartcar_vehicle_id: v for v in Vehicle.objects.all()}

    def reading(vehicle: Any, at: Any, minute: int) -> Any:
        return Reading(
            vehicle=vehicle,
            recorded_at=at,
            received_at=at,
            source="poll",
            soc_pct=20 + (minute % 800) / 10,
            range_km=100 + minute % 300,
            charging_state="NOT_CHARGING",
            is_plugged_in=False,
            latitude=52.5,
            longitude=13.4,
            odometer_km=10_000 + minute / 60,
        )

    started = time.monotonic()
    history_rows = 0
    minutes = history_days * 24 * 60
    for h in range(history_vehicles):
        vehicle = vehicles[f"load-vid-{h}"]
        for chunk in range(0, minutes, 10_000):
            rows = [
                reading(vehicle, now - timedelta(minutes=m), m)
                for m in range(chunk, min(minutes, chunk + 10_000))
            ]
            Reading.objects.bulk_create(rows, batch_size=5000)
            history_rows += len(rows)
    Reading.objects.bulk_create(
        [reading(vehicles[f"load-vid-{i}"], now, i) for i in range(history_vehicles, users)],
        batch_size=2000,
    )
    latest = {}
    for vehicle_id, reading_id in Reading.objects.filter(recorded_at=now).values_list(
        "vehicle_id", "id"
    ):
        latest[vehicle_id] = reading_id
    TelemetryState.objects.bulk_create(
        [TelemetryState(vehicle_id=v, latest_reading_id=r) for v, r in latest.items()],
        batch_size=2000,
    )
    # A live database has planner statistics and few dead rows (autovacuum keeps up as it
    # goes); one just bulk-loaded has no statistics, and PostgreSQL then plans the history
    # lookups from default guesses, and the rollup's upserts left ~59 dead versions of each
    # hour, which autovacuum would otherwise clean up while the load runs, on the same CPUs.
    # CHECKPOINT writes the load's dirty pages now rather than during the measurement.
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")
            cursor.execute("CHECKPOINT")
    return {
        "historyRows": history_rows,
        "historySeedSeconds": round(time.monotonic() - started, 1),
        "vehicles": {v.smartcar_vehicle_id: str(v.pk) for v in vehicles.values()},
    }


def server_env(database_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": SETTINGS,
        "DATABASE_URL": database_url,
        "LOG_LEVEL": "WARNING",
    }


# The followers' PostgreSQL sessions carry this name, so that their backends' CPU is found.
FOLLOWER_APPLICATION = "bench-webhook-follower"


def start_followers(count: int, database_url: str) -> list[subprocess.Popen[bytes]]:
    """`process_webhooks --follow` processes at a lower CPU priority (the worker mode)."""
    command = ["nice", "-n", "10", sys.executable, "manage.py", "process_webhooks", "--follow"]
    if database_url.startswith("postgres"):
        database_url += f"?application_name={FOLLOWER_APPLICATION}"
    return [
        subprocess.Popen(  # noqa: S603 - our own command and venv
            command,
            cwd=_common.REPO_ROOT,
            env=server_env(database_url),
            stdout=subprocess.DEVNULL,
        )
        for _ in range(count)
    ]


def followers_cpu_seconds(followers: list[subprocess.Popen[bytes]]) -> tuple[float, float]:
    """CPU seconds used so far by the follower processes, and by their PostgreSQL backends
    (0 on SQLite, where the database works inside the follower)."""
    from django.db import connection

    own = sum(_common.process_cpu_seconds(follower.pid) for follower in followers)
    backends = 0.0
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s",
                [FOLLOWER_APPLICATION],
            )
            for (pid,) in cursor.fetchall():
                try:
                    backends += _common.process_cpu_seconds(pid)
                except OSError:  # a backend that has just gone
                    continue
    return own, backends


def start_gunicorn(workers: int, database_url: str) -> tuple[subprocess.Popen[bytes], str]:
    port = _common.free_port()
    env = server_env(database_url)
    gunicorn = Path(sys.executable).with_name("gunicorn")
    process = subprocess.Popen(  # noqa: S603 - our own scripts and venv
        [
            str(gunicorn),
            "config.wsgi:application",
            f"--workers={workers}",
            "--worker-class=sync",
            f"--bind=127.0.0.1:{port}",
            "--log-level=warning",
            "--error-logfile=-",
        ],
        cwd=_common.REPO_ROOT,
        env=env,
    )
    _common.wait_for_port(port, timeout=60, process=process)
    return process, f"http://127.0.0.1:{port}"


def load(
    base: str, make_request: Callable[[int], bytes], first: int, total: int, connections: int
) -> dict[str, Any]:
    """`total` requests, numbered from `first`, over `connections` concurrent connections.

    Every request is built before the clock starts (see bench/_http_load.py)."""
    requests = [make_request(first + i) for i in range(total)]
    result = _http_load.run_load(base, requests, total=total, connections=connections)
    return {
        "requests": total,
        "connections": connections,
        "seconds": round(result.seconds, 3),
        "reqPerSecond": round(total / result.seconds, 1),
        "p50Ms": round(_common.percentile(result.latencies, 50) * 1000, 1),
        "p99Ms": round(_common.percentile(result.latencies, 99) * 1000, 1),
        "errors": len(result.error_statuses),
        "errorStatuses": sorted(set(result.error_statuses)),
        # What the client took of the shared CPUs, per request: the server did not get it.
        "clientCpuMsPerRequest": round(1000 * result.client_cpu_seconds / total, 3),
    }


def webhooks_processed(timeout: float = 120.0) -> dict[str, Any]:
    """After a webhook load: how long until no stored event waits for processing any more
    (the server's background threads, or the followers; 0 when processed in the request) and
    how many were left at `timeout`. The ack's latency alone would hide a backlog."""
    from telemetry.models import WebhookEvent

    started = time.monotonic()
    waiting = WebhookEvent.objects.filter(status=WebhookEvent.Status.RECEIVED)
    left = waiting.count()
    while left and time.monotonic() - started < timeout:
        time.sleep(0.05)
        left = waiting.count()
    return {"processedAfterSeconds": round(time.monotonic() - started, 2), "unprocessed": left}


Request = tuple[str, str, dict[str, str], bytes]  # method, path, headers, body


def requests_by_endpoint(
    seeded: dict[str, Any], users: int, history_vehicles: int
) -> dict[str, Callable[[int], Request]]:
    """Per endpoint, request number -> the request (each webhook event is a new one). Also
    request_cpu.py's, so both benchmarks send the same requests."""
    from core.jwt_tokens import issue_jwt
    from telemetry.tests.webhook_support import serialize, sign, state_event

    sample = min(users, 500)
    jwts = [issue_jwt(f"load-{i}") for i in range(sample)]
    vehicle_of = [seeded["vehicles"][f"load-vid-{i}"] for i in range(sample)]
    history = max(1, history_vehicles)

    def get(path: str, user: int) -> Request:
        return "GET", path, {"Authorization": f"Bearer {jwts[user]}"}, b""

    # Each delivery newer than the vehicle's latest reading, as Smartcar's are as a rule (an
    # older one costs one more query, the check for a twin in history).
    now_ms = int(time.time() * 1000)

    def webhook(n: int) -> Request:
        body = serialize(
            state_event(f"load-vid-{n % sample}", soc=50 + n % 40, oem_ms=now_ms + n * 1000)
        )
        headers = {"SC-Signature": sign(body), "Content-Type": "application/json"}
        return "POST", "/api/v1/smartcar/webhook", headers, body

    return {
        "ceiling": lambda n: get("/bench/ceiling", n % sample),
        "vehicles": lambda n: get("/api/v1/vehicles", n % sample),
        "latest": lambda n: get(
            f"/api/v1/vehicles/{vehicle_of[n % sample]}/telemetry/latest", n % sample
        ),
        "history_7d_1h": lambda n: get(
            f"/api/v1/vehicles/{vehicle_of[n % history]}/telemetry?bucket=1h", n % history
        ),
        "history_page_100": lambda n: get(
            f"/api/v1/vehicles/{vehicle_of[n % history]}/telemetry?limit=100", n % history
        ),
        "webhook": webhook,
    }


def endpoints(
    base: str, seeded: dict[str, Any], users: int, history_vehicles: int
) -> dict[str, Callable[[int], bytes]]:
    """Per endpoint, request number -> the raw HTTP request."""

    def raw(make: Callable[[int], Request]) -> Callable[[int], bytes]:
        def build(n: int) -> bytes:
            method, path, headers, body = make(n)
            return _http_load.build_request(base, method, path, headers=headers, body=body)

        return build

    specs = requests_by_endpoint(seeded, users, history_vehicles)
    return {name: raw(make) for name, make in specs.items()}


def medians(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (connections, endpoint), in run order: the median of each figure over its
    rounds (each round's ratio is to that round's ceiling); `p99MaxMs` is the worst round's."""
    groups: dict[tuple[int, str], list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault((run["connections"], run["endpoint"]), []).append(run)
    rows = []
    for (connections, endpoint), group in groups.items():
        row: dict[str, Any] = {"endpoint": endpoint, "connections": connections}
        for key in group[0]:
            values = [run[key] for run in group]
            if key not in (*row, "round", "errors", "unprocessed") and all(
                isinstance(v, int | float) for v in values
            ):
                row[key] = round(statistics.median(values), 3)
            elif key == "followerCpuMsPerEvent":  # a pair of figures: each one's median
                row[key] = [round(statistics.median(pair), 3) for pair in zip(*values, strict=True)]
        row["errors"] = sum(run["errors"] for run in group)  # every error counts, not a median
        row["errorStatuses"] = sorted({s for run in group for s in run["errorStatuses"]})
        if "unprocessed" in group[0]:
            row["unprocessed"] = max(run["unprocessed"] for run in group)
        row["p99MaxMs"] = max(run["p99Ms"] for run in group)
        row["rounds"] = len(group)
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=1000, help="users/vehicles (default 1000)")
    parser.add_argument("--history-vehicles", type=int, default=1, help="default 1")
    parser.add_argument("--history-days", type=int, default=30, help="1-minute readings (30)")
    parser.add_argument("--requests", type=int, default=400, help="per endpoint and level (400)")
    parser.add_argument("--connections", type=int, nargs="+", default=[4, 16])
    parser.add_argument("--gunicorn-workers", type=int, default=2)
    parser.add_argument(
        "--endpoints",
        nargs="+",
        default=None,
        help="only these rows (the ceiling always runs): vehicles latest history_7d_1h "
        "history_page_100 webhook",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run every row this many times, interleaved, and print each row's median (1)",
    )
    parser.add_argument(
        "--followers",
        type=int,
        default=1,
        help="process_webhooks --follow processes when SMARTCAR_WEBHOOK_PROCESSING=worker (1)",
    )
    parser.add_argument("--database-url", default=None, help="PostgreSQL URL; default SQLite")
    args = parser.parse_args()
    if args.rounds < 1 or args.followers < 1:
        parser.error("--rounds and --followers must be at least 1")

    vendor = _common.setup_django(args.database_url, settings_module=SETTINGS)
    from django.conf import settings

    mode = settings.SMARTCAR_WEBHOOK_PROCESSING  # bench/settings.py, as the server's
    _common.create_database("api")
    try:
        db_version = _common.database_version()
        t0 = time.monotonic()
        seeded = seed(args.users, args.history_vehicles, args.history_days)
        seed_seconds = time.monotonic() - t0
        from django.db import connection

        connection.close()
        server, base = start_gunicorn(args.gunicorn_workers, _common.database_url())
        followers = []
        if mode == "worker":
            followers = start_followers(args.followers, _common.database_url())
        try:
            calls = endpoints(base, seeded, args.users, args.history_vehicles)
            if args.endpoints:
                calls = {
                    name: call
                    for name, call in calls.items()
                    if name == "ceiling" or name in args.endpoints
                }
            numbered = 0  # request numbers never repeat, so every webhook event is new
            for _name, call in calls.items():  # warm-up: imports, connections, caches
                load(base, call, numbered, 20, 2)
                numbered += 20
            if "webhook" in calls:
                webhooks_processed()  # the warm-up's
            runs = []
            for connections in args.connections:
                # Rounds interleave the rows, so a drift of the machine's speed (a shared VM)
                # touches every row alike rather than the last ones.
                for round_number in range(args.rounds):
                    for name, call in calls.items():
                        measured = name == "webhook" and followers
                        cpu_before = followers_cpu_seconds(followers) if measured else (0.0, 0.0)
                        result = load(base, call, numbered, args.requests, connections)
                        numbered += args.requests
                        if name == "webhook":
                            result.update(webhooks_processed())
                            if measured:
                                cpu_after = followers_cpu_seconds(followers)
                                result["followerCpuMsPerEvent"] = [
                                    round(1000 * (after - before) / args.requests, 3)
                                    for before, after in zip(cpu_before, cpu_after, strict=True)
                                ]
                        runs.append({"endpoint": name, "round": round_number, **result})
        finally:
            _common.stop_process(server)
            for follower in followers:
                _common.stop_process(follower)
    finally:
        _common.destroy_database()

    ceilings = {
        (r["connections"], r["round"]): r["reqPerSecond"]
        for r in runs
        if r["endpoint"] == "ceiling"
    }
    for run in runs:
        ceiling = ceilings[(run["connections"], run["round"])]
        run["ratioToCeiling"] = round(run["reqPerSecond"] / ceiling, 2)
    rows = medians(runs)
    print(
        f"\napi_load on {db_version}, gunicorn {args.gunicorn_workers} sync workers, "
        f"{args.users} users, history {args.history_vehicles} x {args.history_days} days "
        f"({seeded['historyRows']} rows), {args.requests} requests per row; client on the "
        "same CPU (its CPU per request in the last column)"
        + (f"; medians of {args.rounds} interleaved rounds" if args.rounds > 1 else "")
    )
    print(
        _common.table(
            [
                "endpoint",
                "conns",
                "req/s",
                "p50 ms",
                "p99 ms",
                "worst p99 ms",
                "errors",
                "ratio to ceiling",
                "client CPU ms",
            ],
            [
                [
                    r["endpoint"],
                    r["connections"],
                    r["reqPerSecond"],
                    r["p50Ms"],
                    r["p99Ms"],
                    r["p99MaxMs"],
                    r["errors"],
                    r["ratioToCeiling"],
                    r["clientCpuMsPerRequest"],
                ]
                for r in rows
            ],
        )
    )
    for run in rows:
        if run["endpoint"] == "webhook":
            print(
                f"webhook at {run['connections']} conns ({mode} processing): every event "
                f"processed {run['processedAfterSeconds']} s after the last answer"
                f"{' (median)' if run['rounds'] > 1 else ''}, {run['unprocessed']} left "
                "unprocessed"
            )
            if "followerCpuMsPerEvent" in run:
                own, backends = run["followerCpuMsPerEvent"]
                where = (
                    f"{backends} ms in their PostgreSQL backends"
                    if vendor == "postgresql"
                    else "SQLite's work included"
                )
                print(
                    f"  followers' CPU per event: {own} ms in Python, {where}"
                    + (" (median)" if run["rounds"] > 1 else "")
                )
    path = _common.write_results(
        f"api_load-{vendor}",
        {
            "database": db_version,
            "users": args.users,
            "historyVehicles": args.history_vehicles,
            "historyDays": args.history_days,
            "historyRows": seeded["historyRows"],
            "seedSeconds": round(seed_seconds, 1),
            "gunicornWorkers": args.gunicorn_workers,
            "webhookProcessing": mode,
            "rounds": args.rounds,
            "rows": rows,
            "runs": runs,
        },
    )
    print(f"\nwrote {path.relative_to(_common.REPO_ROOT)}")


if __name__ == "__main__":
    main()
