"""Refresh single-flight under a race: 2 processes x 8 threads need a refresh of ONE account at
the same instant, for R rounds (default 50), on SQLite (a file) or PostgreSQL.

Smartcar's token endpoint is a strict local stand-in (the one `vehicles/tests/
test_tokens_concurrency.py` uses): every refresh token works once; a reuse is `invalid_grant`.
Target (issue 8): token-endpoint calls == rounds, invalid_grant == 0, and every worker of a round
gets the same new access token. Prints a table, writes bench/results/refresh_race-<db>.json.

    .venv/bin/python bench/refresh_race.py
    .venv/bin/python bench/refresh_race.py --database-url postgres://postgres@127.0.0.1/bench
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common


def race(account_pk: int, threads: int, start_at: float) -> tuple[list[str], list[str]]:
    """`threads` workers call account_access_token at wall time `start_at`."""
    from django.db import connection

    from vehicles.models import SmartcarAccount
    from vehicles.tokens import account_access_token

    results: list[str] = []
    errors: list[str] = []
    lock = threading.Lock()

    def work() -> None:
        try:
            account = SmartcarAccount.objects.get(pk=account_pk)
            time.sleep(max(0.0, start_at - time.time()))
            token = account_access_token(account=account)
            with lock:
                results.append(token)
        except Exception as exc:  # noqa: BLE001 - reported, counted
            with lock:
                errors.append(type(exc).__name__)
        finally:
            connection.close()

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=120)
    return results, errors


def child_main(args: argparse.Namespace) -> None:
    _common.setup_django(os.environ["RACE_DATABASE_URL"])
    from django.conf import settings

    settings.SMARTCAR_AUTH_URL = os.environ["RACE_AUTH_URL"]
    account_pk = int(os.environ["RACE_ACCOUNT"])
    print("ready", flush=True)
    for line in sys.stdin:
        command, _, value = line.strip().partition(" ")
        if command != "go":
            break
        results, errors = race(account_pk, args.threads, float(value))
        # Only whether the workers agreed is reported, never the token itself.
        print(
            json.dumps(
                {
                    "distinct": len(set(results)),
                    "n": len(results),
                    "errors": errors,
                    "digest": hash_of(results),
                }
            ),
            flush=True,
        )


def _pipe(stream: Any) -> Any:
    if stream is None:
        raise RuntimeError("child pipe missing")
    return stream


def hash_of(values: list[str]) -> str:
    import hashlib

    return hashlib.sha256("|".join(sorted(set(values))).encode()).hexdigest()[:16]


def run(args: argparse.Namespace) -> dict[str, Any]:
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    import vehicles.tests.test_tokens_concurrency as strict
    from smartcar_client.types import TokenSet
    from vehicles.models import SmartcarAccount
    from vehicles.services import LinkedVehicleInfo, account_link

    strict.ENDPOINT_DELAY = args.endpoint_delay_ms / 1000
    _common.create_database("race")
    children: list[subprocess.Popen[str]] = []
    try:
        with strict.StrictTokenEndpoint() as endpoint:
            settings.SMARTCAR_AUTH_URL = endpoint.url
            owner = get_user_model().objects.create(username="race")
            account = account_link(
                owner=owner,
                smartcar_user_id="race-user",
                tokens=TokenSet.from_json(
                    {"access_token": "access-1", "refresh_token": "refresh-1", "expires_in": 60}
                ),
                scopes=["read_odometer"],
                vehicles=[LinkedVehicleInfo("race-vid")],
            ).account
            env = {
                **os.environ,
                "RACE_DATABASE_URL": _common.database_url(),
                "RACE_AUTH_URL": endpoint.url,
                "RACE_ACCOUNT": str(account.pk),
            }
            for _ in range(args.processes - 1):
                child = subprocess.Popen(  # noqa: S603 - this script, this interpreter
                    [sys.executable, __file__, "--child", f"--threads={args.threads}"],
                    cwd=_common.REPO_ROOT,
                    env=env,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
                children.append(child)
                if _pipe(child.stdout).readline().strip() != "ready":
                    raise RuntimeError("a child process did not start")

            bad_rounds = 0
            errors: list[str] = []
            started = time.monotonic()
            for _ in range(args.rounds):
                # Every worker of this round must find the token about to expire.
                SmartcarAccount.objects.filter(pk=account.pk).update(
                    access_expires_at=timezone.now() + timedelta(seconds=60)
                )
                calls_before = endpoint.calls
                start_at = time.time() + 0.3
                for child in children:
                    _pipe(child.stdin).write(f"go {start_at}\n")
                    _pipe(child.stdin).flush()
                results, own_errors = race(account.pk, args.threads, start_at)
                digests = {hash_of(results)}
                errors += own_errors
                for child in children:
                    report = json.loads(_pipe(child.stdout).readline())
                    errors += report["errors"]
                    digests.add(report["digest"])
                    if report["distinct"] != 1:
                        bad_rounds += 1
                if (
                    len(set(results)) != 1
                    or len(digests) != 1
                    or endpoint.calls != calls_before + 1
                ):
                    bad_rounds += 1
            seconds = time.monotonic() - started
            row = SmartcarAccount.objects.get(pk=account.pk)
            return {
                "database": _common.database_version(),
                "processes": args.processes,
                "threadsPerProcess": args.threads,
                "rounds": args.rounds,
                "endpointDelayMs": args.endpoint_delay_ms,
                "tokenEndpointCalls": endpoint.calls,
                "invalidGrant": endpoint.invalid_grants,
                "badRequests": endpoint.bad_requests,
                "workerErrors": len(errors),
                "workerErrorKinds": sorted(set(errors)),
                "roundsWithDisagreement": bad_rounds,
                "accountStatus": row.status,
                "seconds": round(seconds, 2),
                "met": endpoint.calls == args.rounds
                and endpoint.invalid_grants == 0
                and not errors
                and bad_rounds == 0,
            }
    finally:
        for child in children:
            if child.stdin:
                child.stdin.close()
            _common.stop_process(child)
        _common.destroy_database()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=50, help="rounds (default 50)")
    parser.add_argument("--threads", type=int, default=8, help="threads per process (default 8)")
    parser.add_argument("--processes", type=int, default=2, help="processes (default 2)")
    parser.add_argument(
        "--endpoint-delay-ms",
        type=int,
        default=100,
        help="how long the token endpoint takes to answer (default 100)",
    )
    parser.add_argument("--database-url", default=None, help="PostgreSQL URL; default SQLite")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(args)
        return

    vendor = _common.setup_django(args.database_url)
    result = run(args)
    print(f"\nrefresh_race on {result['database']}")
    print(
        _common.table(
            [
                "processes x threads",
                "rounds",
                "token calls",
                "invalid_grant",
                "worker errors",
                "disagreeing rounds",
                "seconds",
                "target met",
            ],
            [
                [
                    f"{result['processes']} x {result['threadsPerProcess']}",
                    result["rounds"],
                    result["tokenEndpointCalls"],
                    result["invalidGrant"],
                    result["workerErrors"],
                    result["roundsWithDisagreement"],
                    result["seconds"],
                    result["met"],
                ]
            ],
        )
    )
    path = _common.write_results(f"refresh_race-{vendor}", result)
    print(f"\nwrote {path.relative_to(_common.REPO_ROOT)}")


if __name__ == "__main__":
    main()
