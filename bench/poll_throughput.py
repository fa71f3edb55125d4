"""Poller throughput: N vehicles, every one due, polled by one `run_poll_cycle` with W workers
against the emulator (a separate process, over real HTTP) answering after L ms.

Prints vehicles/s, the ideal W/L, their ratio, SQL statements and Smartcar HTTP requests per
polled vehicle (and the emulator's billable count), the RSS growth during the cycle, and where
the cycle's time went (claiming in the main thread vs. polling in the workers). Writes
bench/results/poll_throughput-<db>.json. Targets (issue 8): ratio >= 0.9 at W=32, <= 6 SQL and
exactly 1 Smartcar call per vehicle with a fresh token, memory flat as N grows. Never fails
because the machine is slow: it reports what it measured.

    .venv/bin/python bench/poll_throughput.py                       # quick: 300 vehicles, SQLite
    .venv/bin/python bench/poll_throughput.py --vehicles 1000 10000
    .venv/bin/python bench/poll_throughput.py --database-url postgres://postgres@127.0.0.1/bench

Must never: change the poller's behaviour (it only wraps functions to time and count them).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common

SCOPES = ["read_battery", "read_charge", "read_location", "read_odometer", "read_vehicle_info"]


def start_emulator(vehicles: int, latency_ms: int, workers: int, folder: Path) -> tuple[Any, str]:
    port = _common.free_port()
    tokens_file = folder / "grants.json"
    process = subprocess.Popen(  # noqa: S603 - our own scripts and venv
        [
            sys.executable,
            str(Path(__file__).resolve().parent / "emulator_server.py"),
            f"--vehicles={vehicles}",
            f"--port={port}",
            f"--tokens-file={tokens_file}",
            f"--latency-ms={latency_ms}",
            f"--threads-hint={workers}",
        ],
        cwd=_common.REPO_ROOT,
    )
    _common.wait_for_port(port, timeout=120, process=process)
    return process, f"http://127.0.0.1:{port}"


def seed(grants: list[dict[str, Any]]) -> None:
    """One user, account (fresh tokens) and active vehicle per grant, in bulk."""
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from vehicles.models import SmartcarAccount, Vehicle

    now = timezone.now()
    user_model = get_user_model()
    users = user_model.objects.bulk_create(
        [user_model(username=f"bench-{i}") for i in range(len(grants))], batch_size=1000
    )
    users = list(user_model.objects.filter(username__startswith="bench-").order_by("id"))
    by_name = {u.username: u for u in users}
    accounts = SmartcarAccount.objects.bulk_create(
        [
            SmartcarAccount(
                smartcar_user_id=f"bench-user-{i}",
                owner=by_name[f"bench-{i}"],
                access_token=g["access_token"],
                refresh_token=g["refresh_token"],
                access_expires_at=now + timedelta(seconds=g["expires_in"]),
                refresh_expires_at=now + timedelta(days=60),
                last_refreshed_at=now,
                scopes=SCOPES,
            )
            for i, g in enumerate(grants)
        ],
        batch_size=1000,
    )
    accounts = list(SmartcarAccount.objects.order_by("id"))
    by_user = {a.smartcar_user_id: a for a in accounts}
    Vehicle.objects.bulk_create(
        [
            Vehicle(
                smartcar_vehicle_id=g["vehicle_id"],
                owner=by_name[f"bench-{i}"],
                account=by_user[f"bench-user-{i}"],
                make=g["make"],
                model=g["model"],
                year=g["year"],
                is_primary=True,
                connected_at=now,
            )
            for i, g in enumerate(grants)
        ],
        batch_size=1000,
    )


def settle(polling: Any) -> None:
    """Bring the fresh database to where a running one is when it polls this fleet: the state
    rows exist (the first cycle creates them) and, on PostgreSQL, autovacuum has analysed the
    new rows. Without the statistics the planner took the just-seeded 10,000 vehicles for 7,
    and every claim joined and sorted the whole fleet (27 ms a claim, 11 s of a 68 s cycle)."""
    from django.db import connection

    polling._ensure_states(None)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")


def emulator_calls(base: str) -> int:
    import requests

    counts = requests.get(f"{base}/_smartcar/_control/calls", timeout=30).json()
    return sum(counts["vehicles"].values())


def run_one(args: argparse.Namespace, vehicles: int) -> dict[str, Any]:
    from django.test.utils import override_settings

    from telemetry.services import polling, readings

    folder = Path(tempfile.mkdtemp(prefix="bench-poll-"))
    process, base = start_emulator(vehicles, args.latency_ms, args.workers, folder)
    try:
        grants = json.loads((folder / "grants.json").read_text())
        (folder / "grants.json").unlink()
        _common.create_database(f"poll{vehicles}")
        try:
            started = time.monotonic()
            seed(grants)
            del grants
            settle(polling)
            seed_seconds = time.monotonic() - started
            emulator = f"{base}/_smartcar"
            with override_settings(
                SMARTCAR_BASE_URL=emulator,
                SMARTCAR_AUTH_URL=emulator,
                SMARTCAR_CONNECT_URL=emulator,
                SMARTCAR_V3_BASE_URL=emulator,
                SMARTCAR_VEHICLE_API=args.api,
                SMARTCAR_READ_TIMEOUT=30.0,
            ):
                return measure(args, vehicles, base, process.pid, polling, readings, seed_seconds)
        finally:
            _common.destroy_database()
    finally:
        _common.stop_process(process)


def measure(
    args: argparse.Namespace,
    vehicles: int,
    base: str,
    emulator_pid: int,
    polling: Any,
    readings: Any,
    seed_seconds: float,
) -> dict[str, Any]:
    from telemetry.models import TelemetryState

    # Where the time goes: the main thread claims batches; workers read from Smartcar.
    claim_time = _common.Counter()
    poll_time = _common.Counter()
    original_claim = polling._claim
    original_read = readings.telemetry_poll_read

    def timed_claim(*a: Any, **kw: Any) -> Any:
        t0 = time.perf_counter_ns()
        try:
            return original_claim(*a, **kw)
        finally:
            claim_time.add(time.perf_counter_ns() - t0)

    def timed_read(**kw: Any) -> Any:
        t0 = time.perf_counter_ns()
        try:
            return original_read(**kw)
        finally:
            poll_time.add(time.perf_counter_ns() - t0)

    before_calls = emulator_calls(base)
    emulator_cpu = _common.process_cpu_seconds(emulator_pid)
    poller_cpu = time.process_time()
    polling._claim = timed_claim
    # The workers' share of a poll (the Smartcar read; writer threads store what it read)
    # calls this module attribute: timing it there keeps the poller's real path.
    readings.telemetry_poll_read = timed_read
    try:
        with (
            _common.count_sql() as sql,
            _common.count_http() as http,
            _common.count_pool_discards() as discards,
            _common.RssSampler() as rss,
        ):
            summary = polling.run_poll_cycle(ignore_schedule=True, workers=args.workers)
    finally:
        polling._claim = original_claim
        readings.telemetry_poll_read = original_read
    poller_cpu = time.process_time() - poller_cpu
    emulator_cpu = _common.process_cpu_seconds(emulator_pid) - emulator_cpu
    billable = emulator_calls(base) - before_calls
    ok = TelemetryState.objects.filter(last_outcome__in=["ok", "unchanged"]).count()
    polled = max(summary.polled, 1)
    ideal = args.workers / (args.latency_ms / 1000) if args.latency_ms else float("inf")
    wall = summary.duration
    return {
        "vehicles": vehicles,
        "workers": args.workers,
        "latencyMs": args.latency_ms,
        "api": args.api,
        "seedSeconds": round(seed_seconds, 2),
        "cycleSeconds": round(wall, 3),
        "polled": summary.polled,
        "ok": ok,
        "failed": dict(summary.failed),
        "vehiclesPerSecond": round(summary.polled / wall, 2) if wall else 0.0,
        "idealPerSecond": round(ideal, 2),
        "ratio": round(summary.polled / wall / ideal, 3) if wall and ideal else 0.0,
        "sqlPerVehicle": round(sql.value / polled, 2),
        "httpPerVehicle": round(http.value / polled, 3),
        "sqlByKindPerVehicle": {
            kind: round(count / polled, 2) for kind, count in sql.kinds.most_common()
        },
        "httpPoolDiscards": discards.value,
        "billablePerVehicle": round(billable / polled, 3),
        "rssBaselineMiB": round(rss.baseline / 2**20, 1),
        "rssGrowthMiB": round(rss.growth_mib, 1),
        "claimSecondsMainThread": round(claim_time.value / 1e9, 3),
        "pollSecondsPerVehicle": round(poll_time.value / 1e9 / polled, 4),
        # Both processes share the machine's CPUs: what the emulator uses, the poller cannot.
        "pollerCpuMsPerVehicle": round(poller_cpu * 1000 / polled, 2),
        "pollerCpuShare": round(poller_cpu / wall, 2) if wall else 0.0,
        "emulatorCpuMsPerVehicle": round(emulator_cpu * 1000 / polled, 2),
        "workerUtilisation": round(poll_time.value / 1e9 / (wall * args.workers), 3) if wall else 0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--vehicles", type=int, nargs="+", default=[300], help="fleet sizes (default 300)"
    )
    parser.add_argument("--workers", type=int, default=32, help="poller threads (default 32)")
    parser.add_argument(
        "--latency-ms", type=int, default=200, help="emulator latency per request (default 200)"
    )
    parser.add_argument("--api", choices=["v3", "v2"], default="v3", help="Smartcar API (v3)")
    parser.add_argument(
        "--database-url",
        default=None,
        help="PostgreSQL URL (a fresh database is created on "
        "that server and dropped after); default: a temp SQLite file",
    )
    args = parser.parse_args()

    vendor = _common.setup_django(args.database_url)
    _common.create_database("probe")
    db_version = _common.database_version()
    _common.destroy_database()

    runs = [run_one(args, n) for n in args.vehicles]
    print(
        f"\npoll_throughput on {db_version}, workers={args.workers}, latency={args.latency_ms} ms"
    )
    print(
        _common.table(
            [
                "N",
                "veh/s",
                "ideal W/L",
                "ratio",
                "SQL/veh",
                "HTTP/veh",
                "billable/veh",
                "RSS +MiB",
                "claim s",
                "worker util",
                "poller CPU ms/veh",
                "poller CPUs",
                "emulator CPU ms/veh",
                "pool discards",
                "failed",
            ],
            [
                [
                    r["vehicles"],
                    r["vehiclesPerSecond"],
                    r["idealPerSecond"],
                    r["ratio"],
                    r["sqlPerVehicle"],
                    r["httpPerVehicle"],
                    r["billablePerVehicle"],
                    r["rssGrowthMiB"],
                    r["claimSecondsMainThread"],
                    r["workerUtilisation"],
                    r["pollerCpuMsPerVehicle"],
                    r["pollerCpuShare"],
                    r["emulatorCpuMsPerVehicle"],
                    r["httpPoolDiscards"],
                    sum(r["failed"].values()),
                ]
                for r in runs
            ],
        )
    )
    path = _common.write_results(
        f"poll_throughput-{vendor}", {"database": db_version, "runs": runs}
    )
    print("\nSQL statements per polled vehicle, by kind (largest run):")
    for kind, per in runs[-1]["sqlByKindPerVehicle"].items():
        print(f"  {per:6.2f}  {kind}")
    print(f"\nwrote {path.relative_to(_common.REPO_ROOT)}")


if __name__ == "__main__":
    main()
