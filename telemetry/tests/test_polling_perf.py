"""The poller's cost guards (issue 8): SQL statements per polled vehicle, one Smartcar call per
vehicle, AppThrottle read per claim rather than per vehicle, lease renewal while vehicles are
held, and the HTTP pool warning. `bench/poll_throughput.py` measures the same at scale."""

import json
import logging
import random
import re
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from smartcar_client.types import TokenSet
from telemetry.models import AppThrottle, TelemetryState
from telemetry.services import polling
from telemetry.services.readings import PollResult
from telemetry.tests.test_polling import (  # noqa: F401  (threads_share_the_database: a fixture)
    T0,
    Clock,
    FakePoll,
    make_cycle,
    make_vehicles,
    no_refresh,
    ok_result,
    threads_share_the_database,
)
from vehicles.services import LinkedVehicleInfo, account_link

FIXTURES = Path(__file__).parent / "fixtures"
BATCH_URL = re.compile(r"https://api\.smartcar\.test/v2\.0/vehicles/[^/]+/batch")


def link_fleet(user, count: int, start: int) -> list:
    tokens = TokenSet.from_json(
        {"access_token": f"access-{start}", "refresh_token": f"refresh-{start}", "expires_in": 7200}
    )
    result = account_link(
        owner=user,
        smartcar_user_id=f"sc-user-perf-{start}",
        tokens=tokens,
        scopes=["read_battery", "read_charge", "read_location", "read_odometer"],
        vehicles=[LinkedVehicleInfo(f"vid-perf-{start + i}") for i in range(count)],
    )
    return result.vehicles


def statements(vehicle_ids) -> int:
    with CaptureQueriesContext(connection) as queries:
        summary = polling.run_poll_cycle(
            workers=1,
            vehicle_ids=vehicle_ids,
            clock=timezone.now,
            rng=random.Random(0),
            batch_size=10,  # one claim for either fleet
        )
    assert summary.stored == len(vehicle_ids)
    return len(queries.captured_queries)


# Transactional: the poller runs in autocommit (no test savepoints around the INSERT).
@pytest.mark.django_db(transaction=True)
def test_a_polled_vehicle_with_a_fresh_token_costs_at_most_three_statements(
    user, settings, smartcar_api
):
    settings.SMARTCAR_VEHICLE_API = "v2"
    smartcar_api.post(BATCH_URL, json=json.loads((FIXTURES / "v2_batch_ok.json").read_text()))
    one = link_fleet(user, 1, start=0)
    six = link_fleet(user, 6, start=100)

    # The cycle's fixed cost (idle grants, state rows, pause, claim queries) is the same for
    # both: the difference is what each further vehicle costs.
    per_vehicle = (statements([v.pk for v in six]) - statements([v.pk for v in one])) / 5

    # INSERT reading, one UPDATE for outcome, pointer and calls (the state rows are read with
    # the claim, one SELECT per batch); SQLite's claim adds a compare-and-set UPDATE per
    # vehicle, PostgreSQL's is one per batch.
    budget = 2 if connection.features.has_select_for_update_skip_locked else 3
    assert per_vehicle <= budget
    assert len(smartcar_api.calls) == 7  # exactly one Smartcar call per vehicle
    assert set(TelemetryState.objects.values_list("calls_this_month", flat=True)) == {4}


@pytest.mark.django_db
def test_app_throttle_is_read_per_claim_not_per_vehicle(user):
    make_vehicles(user, 8)
    with CaptureQueriesContext(connection) as queries:
        summary = polling.run_poll_cycle(
            poll_fn=FakePoll(), workers=1, clock=Clock(), refresh_fn=lambda **kw: False
        )
    throttle_reads = [q for q in queries.captured_queries if "appthrottle" in q["sql"]]
    assert summary.polled == 8
    # Cycle start and each claim: two batches of 4 (one worker), then the empty claim.
    assert len(throttle_reads) <= 4


@pytest.mark.django_db
def test_another_pollers_pause_stops_the_workers_within_the_check_interval(user, monkeypatch):
    monkeypatch.setattr(polling, "PAUSE_CHECK_SECONDS", 0.0)
    make_vehicles(user, 3)

    def paused_by_a_peer(v):
        AppThrottle.objects.create(pk=1, paused_until=T0 + timedelta(seconds=60))
        return ok_result(v)

    poll = FakePoll(paused_by_a_peer)
    summary = polling.run_poll_cycle(
        poll_fn=poll, workers=1, clock=Clock(), refresh_fn=lambda **kw: False
    )
    assert len(poll.polled) == 1
    assert summary.skipped == {"paused": 2}
    assert summary.paused_until == T0 + timedelta(seconds=60)
    assert not TelemetryState.objects.filter(lease_until__isnull=False).exists()


@pytest.mark.django_db
def test_leases_of_held_vehicles_are_renewed_while_polling(user, settings):
    settings.POLL_LEASE_SECONDS = 30
    make_vehicles(user, 3)
    clock = Clock()
    seen = []

    def slow(v):
        # Our lease must still be live when the poll starts, however long the earlier ones took.
        seen.append(TelemetryState.objects.get(vehicle=v).lease_until > clock.now)
        clock.advance(20)  # each poll outlasts two thirds of the lease
        return ok_result(v)

    class Monotonic:  # the renewal interval is measured on the monotonic clock
        def __call__(self) -> float:
            return (clock.now - T0).total_seconds()

    original = polling.time.monotonic
    polling.time.monotonic = Monotonic()
    try:
        summary = polling.run_poll_cycle(
            poll_fn=FakePoll(slow), workers=1, clock=clock, refresh_fn=lambda **kw: False
        )
    finally:
        polling.time.monotonic = original
    assert summary.polled == 3
    assert seen == [True, True, True]


@pytest.mark.django_db
def test_renewal_touches_only_rows_this_cycle_still_leases(user, settings):
    settings.POLL_LEASE_SECONDS = 30
    mine, finished, taken = make_vehicles(user, 3)
    polling._ensure_states(None)
    cycle = make_cycle("host:1:a")
    held = polling._claim(cycle, now=T0, limit=3, vehicle_ids=None)
    TelemetryState.objects.filter(vehicle=finished).update(lease_until=None)
    other_lease = T0 + timedelta(seconds=5)
    TelemetryState.objects.filter(vehicle=taken).update(
        lease_owner="host:2:b", lease_until=other_lease
    )
    cycle.clock.advance(25)
    leases = polling._Leases(cycle)
    leases._renewed = float("-inf")

    assert leases.renew_if_due(held) == 1
    assert leases.renew_if_due(held) == 0  # not due again yet

    rows = {row.vehicle_id: row for row in TelemetryState.objects.all()}
    assert rows[mine.pk].lease_until == T0 + timedelta(seconds=55)
    assert rows[finished.pk].lease_until is None
    assert (rows[taken.pk].lease_owner, rows[taken.pk].lease_until) == ("host:2:b", other_lease)


@pytest.mark.django_db
def test_more_workers_than_http_connections_is_a_warning(settings, caplog):
    settings.SMARTCAR_HTTP_POOL_MAXSIZE = 2
    with caplog.at_level(logging.WARNING, logger="telemetry.services.polling"):
        polling.run_poll_cycle(workers=2, refresh_fn=lambda **kw: False)
        assert "SMARTCAR_HTTP_POOL_MAXSIZE" not in caplog.text
        polling.run_poll_cycle(workers=4, refresh_fn=lambda **kw: False)
    assert "4 workers share 2 Smartcar HTTP connections" in caplog.text


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("threads_share_the_database")
def test_one_slow_poll_does_not_hold_up_the_next_claims(user):
    """No batch barrier: while one poll hangs, the other workers go on claiming and polling."""
    make_vehicles(user, 12)
    release = threading.Event()
    calls = []
    lock = threading.Lock()
    waited = []

    def answer(v):
        with lock:
            calls.append(v.pk)
            first, everyone_else_done = len(calls) == 1, len(calls) == 12
        if first:
            waited.append(release.wait(timeout=10))
        elif everyone_else_done:
            release.set()
        return PollResult("unchanged", None, False, 1)

    summary = polling.run_poll_cycle(
        poll_fn=FakePoll(answer), workers=4, batch_size=4, refresh_fn=no_refresh
    )
    assert summary.polled == 12
    assert waited == [True]  # the 11 others were claimed and polled while the first one hung


@pytest.mark.django_db
@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="PostgreSQL's plan (SQLite claims by compare-and-set)"
)
@pytest.mark.parametrize("ignore_schedule", [False, True])
def test_a_claim_reads_the_states_in_index_order_without_sorting(
    django_user_model, ignore_schedule
):
    """The claim's ORDER BY is the index's order (telemetry_state_claim_order): PostgreSQL reads
    the first due rows and stops at the batch, instead of joining and sorting every state for
    each batch (which made a cycle's claims grow with the square of the fleet). Sorting is
    priced out so that a small table's plan shows whether the index *can* give the order."""
    user = django_user_model.objects.create(username="claim-plan")
    make_vehicles(user, 3)
    polling._ensure_states(None)
    cycle = make_cycle("planner", ignore_schedule=ignore_schedule)
    with transaction.atomic(), connection.cursor() as cursor:
        claim = (
            polling._claimable(cycle, timezone.now(), None)
            .select_for_update(skip_locked=True, of=("self",))
            .values_list("vehicle_id", flat=True)[:32]
        )
        sql, params = claim.query.sql_with_params()
        cursor.execute("SET LOCAL enable_sort = off")
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("EXPLAIN " + sql, params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "telemetry_state_claim_order" in plan, plan
    assert "Sort" not in plan, plan
