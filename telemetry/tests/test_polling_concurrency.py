"""Several poller processes on one PostgreSQL (SECURITY E5; issue 5 §3, §6).

- Two `manage.py poll_telemetry --once` processes over 200 due vehicles: each vehicle is polled
  exactly once, by one of them.
- A poller killed with SIGKILL mid-cycle loses nothing: its claimed vehicles stay leased until
  the (short) lease runs out, then another poller polls them.

The children run the real command; only the Smartcar read is replaced, by `recording_poll` below,
which this file's child entry point installs. It appends "vehicle-id pid" to a file.
SQLite is skipped: several poller processes on one database is a PostgreSQL deployment (row locks
with SKIP LOCKED); on SQLite the thread-pool and compare-and-set claim tests in test_polling.py
cover the poller.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone

from telemetry.models import TelemetryState
from telemetry.services import polling
from telemetry.services.readings import PollResult
from telemetry.tests.test_polling import FakePoll, make_vehicles
from tests.support import current_database_url

pytestmark = [pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]

REPO_ROOT = Path(__file__).resolve().parents[2]
VEHICLES = 200

CHILD_CODE = """
import os, sys
sys.path.insert(0, os.getcwd())
import django
django.setup()
from telemetry.tests.test_polling_concurrency import child_main
child_main()
"""


@pytest.fixture(autouse=True)
def postgres_only():
    if connection.vendor != "postgresql":
        pytest.skip(
            "several poller processes sharing one database is a PostgreSQL deployment "
            "(SKIP LOCKED); on SQLite the thread-pool tests cover concurrent claims"
        )


# --- the child side -----------------------------------------------------------------------------


def recording_poll(*, vehicle, source="poll", defer_state_write=False) -> PollResult:
    """Stands in for the real poll in the children: records who polled what."""
    line = f"{vehicle.pk} {os.getpid()}\n".encode()
    fd = os.open(os.environ["POLLER_TEST_RECORD"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, line)  # one O_APPEND write per line: lines never interleave
    finally:
        os.close(fd)
    time.sleep(float(os.environ.get("POLLER_TEST_POLL_SECONDS", "0")))
    return PollResult("unchanged", None, False, 1)


def child_main() -> None:
    from django.core.management import call_command

    from telemetry.tests.test_polling import stand_in_for_the_real_poll

    stand_in_for_the_real_poll(setattr, recording_poll)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    if sys.stdin.readline().strip() != "go":
        raise SystemExit("parent did not say go")
    call_command(
        "poll_telemetry", "--once", "--json", "--workers", os.environ["POLLER_TEST_WORKERS"]
    )


# --- the parent side ----------------------------------------------------------------------------


def start_children(count: int, record: Path, **env_extra: str) -> list[subprocess.Popen]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        # The children must use the test database pytest-django created, not the configured one.
        "DATABASE_URL": current_database_url(),
        "POLLER_TEST_RECORD": str(record),
        "POLLER_TEST_WORKERS": "4",
        **env_extra,
    }
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD_CODE],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]
    for child in children:
        assert child.stdout.readline() == "ready\n", child.stderr.read()
    return children


def say_go(children: list[subprocess.Popen]) -> None:
    for child in children:
        child.stdin.write("go\n")
        child.stdin.flush()


def kill_all(children: list[subprocess.Popen]) -> None:
    for child in children:
        if child.poll() is None:
            child.kill()
            child.wait()


def recorded(record: Path) -> list[tuple[str, int]]:
    if not record.exists():
        return []
    return [
        (vehicle, int(pid))
        for vehicle, pid in (line.split() for line in record.read_text().splitlines())
    ]


def test_two_poller_processes_poll_each_of_200_vehicles_exactly_once(user, tmp_path):
    vehicles = make_vehicles(user, VEHICLES)
    record = tmp_path / "polls.txt"
    # A few ms per poll keeps both processes busy at the same time.
    children = start_children(2, record, POLLER_TEST_POLL_SECONDS="0.005")
    try:
        say_go(children)
        outputs = [child.communicate(timeout=120) for child in children]
    finally:
        kill_all(children)

    summaries = []
    for child, (stdout, stderr) in zip(children, outputs, strict=True):
        assert child.returncode == 0, stderr
        summaries.append(json.loads(stdout.strip().splitlines()[-1]))
    polls = recorded(record)
    polled_ids = [vehicle for vehicle, _ in polls]
    assert len(polled_ids) == VEHICLES
    assert sorted(polled_ids) == sorted(str(v.pk) for v in vehicles)  # each exactly once
    pids = {pid for _, pid in polls}
    assert pids == {child.pid for child in children}  # both really took part
    assert sum(s["polled"] for s in summaries) == VEHICLES
    assert TelemetryState.objects.filter(last_outcome="unchanged").count() == VEHICLES
    assert not TelemetryState.objects.filter(lease_until__gt=timezone.now()).exists()


def test_a_poller_killed_mid_cycle_loses_nothing(user, tmp_path, settings):
    lease_seconds = 3
    vehicles = make_vehicles(user, 20)
    record = tmp_path / "polls.txt"
    # The child hangs in its first polls (4 workers, a batch of 16 claimed) until it is killed.
    children = start_children(
        1, record, POLL_LEASE_SECONDS=str(lease_seconds), POLLER_TEST_POLL_SECONDS="60"
    )
    (child,) = children
    try:
        say_go(children)
        deadline = time.monotonic() + 30
        while len(recorded(record)) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(recorded(record)) == 4, child.stderr.read() if child.poll() else ""
        child.kill()  # SIGKILL: no cleanup at all
        child.wait()
    finally:
        kill_all(children)

    leased = set(
        TelemetryState.objects.filter(lease_until__gt=timezone.now()).values_list(
            "vehicle_id", flat=True
        )
    )
    assert len(leased) == 16  # the killed poller's batch, still claimed
    assert {str(pk) for pk in leased} >= {vehicle for vehicle, _ in recorded(record)}

    # Another poller right away: polls everything else, leaves the leased vehicles alone.
    survivor = FakePoll(lambda v: PollResult("unchanged", None, False, 1))
    first = polling.run_poll_cycle(poll_fn=survivor, workers=1)
    assert first.polled == 4
    assert leased.isdisjoint(survivor.polled)

    # Once the lease has run out, the killed poller's vehicles are polled too.
    time.sleep(lease_seconds + 0.5)
    second = polling.run_poll_cycle(poll_fn=survivor, workers=1)
    assert second.polled == 16
    assert sorted(survivor.polled) == sorted(v.pk for v in vehicles)
    assert TelemetryState.objects.filter(last_outcome="unchanged").count() == 20
    assert not TelemetryState.objects.filter(lease_until__isnull=False).exists()
