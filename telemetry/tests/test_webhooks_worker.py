"""Webhook events processed by followers (`SMARTCAR_WEBHOOK_PROCESSING=worker`,
`process_webhooks --follow`): the endpoint only stores; followers claim, process, release."""

import logging
import os
import signal
import threading
from collections import Counter
from datetime import timedelta
from http import HTTPStatus

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from telemetry.models import Reading, TelemetryState, WebhookEvent
from telemetry.services import webhook_worker, webhooks
from telemetry.services.webhook_worker import (
    webhook_events_claim,
    webhook_events_follow,
)
from telemetry.services.webhooks import webhook_events_process_batch, webhook_events_retry
from telemetry.tests.conftest import WAIT_SECONDS as WAIT
from telemetry.tests.test_polling import (  # noqa: F401  (a fixture)
    threads_share_the_database,
)
from telemetry.tests.test_webhooks_process import battery_item
from telemetry.tests.webhook_support import T0_MS, error_event, link, send, state_event
from vehicles.models import Vehicle

pytestmark = pytest.mark.django_db


@pytest.fixture
def worker_mode(settings):
    settings.SMARTCAR_WEBHOOK_PROCESSING = "worker"


def store(client, count: int, *, start: int = 0) -> list[WebhookEvent]:
    """`count` accepted VEHICLE_STATE events for vid-1, one minute apart, left `received`."""
    for n in range(start, start + count):
        response = send(client, state_event(soc=50 + n, oem_ms=T0_MS + n * 60_000))
        assert response.json() == {"status": "accepted"}
    return list(WebhookEvent.objects.order_by("pk"))


def test_in_worker_mode_the_endpoint_stores_and_answers_without_processing(
    client, user, worker_mode
):
    link(user)

    response = send(client, state_event())

    assert (response.status_code, response.json()) == (HTTPStatus.OK, {"status": "accepted"})
    event = WebhookEvent.objects.get()
    assert (event.status, event.lease_until, event.attempts) == ("received", None, 0)
    assert not Reading.objects.exists()


def test_a_claim_takes_the_oldest_received_events_and_leases_them(client, user, worker_mode):
    link(user)
    events = store(client, 5)
    now = timezone.now()

    claimed = webhook_events_claim(owner="f1", limit=3, now=now, lease_seconds=60)

    assert [e.pk for e in claimed] == [e.pk for e in events[:3]]
    assert all(e.payload["eventId"] for e in claimed)  # whole rows, ready to process
    leased = WebhookEvent.objects.filter(lease_owner="f1")
    assert set(leased.values_list("lease_until", flat=True)) == {now + timedelta(seconds=60)}
    # Another follower gets the rest, never ours.
    other = webhook_events_claim(owner="f2", limit=10, now=now)
    assert [e.pk for e in other] == [e.pk for e in events[3:]]
    assert webhook_events_claim(owner="f3", limit=10, now=now) == []


def test_an_expired_claim_is_taken_over_and_a_processed_event_is_never_claimed(
    client, user, worker_mode
):
    link(user)
    first, second = store(client, 2)
    now = timezone.now()
    webhook_events_claim(owner="dead", limit=2, now=now - timedelta(seconds=120), lease_seconds=60)
    WebhookEvent.objects.filter(pk=second.pk).update(status="processed")

    claimed = webhook_events_claim(owner="f1", limit=10, now=now)

    assert [e.pk for e in claimed] == [first.pk]


def test_a_claim_refuses_an_empty_batch():
    with pytest.raises(ValueError, match="limit"):
        webhook_events_claim(owner="f1", limit=0)


def stop_when(total: int, stop: threading.Event, seen: Counter):
    def on_batch(done: Counter) -> None:
        seen.update(done)
        if sum(seen.values()) >= total:
            stop.set()

    return on_batch


def test_a_follower_processes_every_stored_event_and_ends_its_claims(client, user, worker_mode):
    link(user)
    store(client, 7)
    stop, seen = threading.Event(), Counter()

    totals = webhook_events_follow(
        owner="f1", stop=stop, batch=3, interval=0.01, on_batch=stop_when(7, stop, seen)
    )

    assert totals == {"processed": 7}
    rows = WebhookEvent.objects.all()
    assert {(e.status, e.attempts, e.lease_until) for e in rows} == {("processed", 1, None)}
    assert Reading.objects.count() == 7


def test_a_stopping_follower_finishes_its_batch_and_claims_no_more(
    client, user, worker_mode, monkeypatch
):
    link(user)
    store(client, 6)
    stop = threading.Event()
    real = webhook_worker.webhook_events_process_batch

    def process_then_stop(events):
        stop.set()  # SIGTERM arrives while the first batch is being processed
        return real(events)

    monkeypatch.setattr(webhook_worker, "webhook_events_process_batch", process_then_stop)

    totals = webhook_events_follow(owner="f1", stop=stop, batch=4, interval=0.01)

    assert totals == {"processed": 4}
    rest = WebhookEvent.objects.filter(status="received")
    assert rest.count() == 2
    assert not WebhookEvent.objects.filter(lease_until__isnull=False).exists()


class RecordingStop(threading.Event):
    """A stop event that records how long the follower asked to wait."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float] = []

    def wait(self, timeout=None) -> bool:
        self.waits.append(timeout)
        return super().wait(0)


def test_a_follower_claims_again_at_once_after_a_full_batch_and_waits_once_drained(
    client, user, worker_mode
):
    link(user)
    store(client, 7)
    stop, seen = RecordingStop(), Counter()

    totals = webhook_events_follow(
        owner="f1", stop=stop, batch=3, interval=0.25, on_batch=stop_when(7, stop, seen)
    )

    # 3 and 3 (full: more may be waiting), then 1 (fewer than 3: drained, let events gather).
    assert totals == {"processed": 7}
    assert stop.waits == [0.25]


def test_a_bug_in_a_batch_is_logged_and_the_follower_goes_on(
    client, user, worker_mode, monkeypatch, caplog
):
    link(user)
    store(client, 4)
    stop, seen = threading.Event(), Counter()
    real = webhook_worker.webhook_events_process_batch
    calls = []

    def broken_once(events):
        calls.append(len(events))
        if len(calls) == 1:
            raise RuntimeError("a bug")
        return real(events)

    monkeypatch.setattr(webhook_worker, "webhook_events_process_batch", broken_once)

    totals = webhook_events_follow(
        owner="f1", stop=stop, batch=2, interval=0.01, on_batch=stop_when(2, stop, seen)
    )

    assert totals == {"processed": 2}  # the next batch, after the failed one
    assert calls == [2, 2]
    assert "processing 2 events failed" in caplog.text
    # The failed batch is still claimed: it comes back once its lease runs out.
    assert WebhookEvent.objects.filter(status="received", lease_owner="f1").count() == 2


def test_a_follower_waits_out_a_database_outage_with_growing_pauses(
    client, user, worker_mode, monkeypatch, caplog
):
    link(user)
    store(client, 2)
    stop, seen = RecordingStop(), Counter()
    real = webhook_worker.webhook_events_claim
    failures = iter([True] * 7)

    def flaky(**kwargs):
        if next(failures, False):
            raise DatabaseError("server closed the connection")
        return real(**kwargs)

    monkeypatch.setattr(webhook_worker, "webhook_events_claim", flaky)

    with caplog.at_level(logging.WARNING, logger="telemetry.services.webhook_worker"):
        totals = webhook_events_follow(
            owner="f1", stop=stop, batch=5, interval=0.5, on_batch=stop_when(2, stop, seen)
        )

    assert totals == {"processed": 2}
    # Then the batch of 2, fewer than 5: the queue is drained, wait the interval.
    assert stop.waits == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 0.5]
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1  # once per outage, not once per try
    assert "back after 7 failures" in caplog.text


def test_retry_failed_leaves_events_under_a_live_claim_alone(client, user, worker_mode):
    link(user)
    held, expired = store(client, 2)
    now = timezone.now()
    WebhookEvent.objects.filter(pk=held.pk).update(
        lease_owner="f1", lease_until=now + timedelta(seconds=60)
    )
    WebhookEvent.objects.filter(pk=expired.pk).update(
        lease_owner="dead", lease_until=now - timedelta(seconds=1)
    )

    counts = webhook_events_retry(stale_after=timedelta(0), limit=10)

    assert counts == {"processed": 1}
    assert WebhookEvent.objects.get(pk=held.pk).status == "received"
    assert WebhookEvent.objects.get(pk=expired.pk).status == "processed"


@pytest.mark.django_db(transaction=True)
def test_two_followers_at_once_process_each_event_exactly_once(
    client,
    user,
    worker_mode,
    threads_share_the_database,  # noqa: F811
):
    link(user)
    store(client, 60)
    stop = threading.Event()
    results: list[Counter] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def follower(name: str) -> None:
        try:
            totals = webhook_events_follow(owner=name, stop=stop, batch=4, interval=0.01)
            with lock:
                results.append(totals)
        except Exception as exc:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(exc)
        finally:
            from django.db import connection

            connection.close()

    threads = [threading.Thread(target=follower, args=(f"f{n}",)) for n in range(2)]
    for thread in threads:
        thread.start()
    deadline = timezone.now() + timedelta(seconds=WAIT)
    while WebhookEvent.objects.filter(status="received").exists() and timezone.now() < deadline:
        stop.wait(0.02)
    stop.set()
    for thread in threads:
        thread.join(WAIT)

    assert errors == []
    assert sum(sum(r.values()) for r in results) == 60
    assert set(WebhookEvent.objects.values_list("status", "attempts")) == {("processed", 1)}
    assert Reading.objects.count() == 60


# --- the command ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"follow": True, "retry_failed": True},
        {"follow": True, "prune_days": 30},
        {"follow": True, "batch": 0},
        {"follow": True, "interval": 0},
        {"retry_failed": True, "batch": 10},
        {"retry_failed": True, "interval": 1.0},
    ],
    ids=["with-retry", "with-prune", "batch", "interval", "batch-alone", "interval-alone"],
)
def test_follow_refuses_bad_combinations(options):
    with pytest.raises(CommandError):
        call_command("process_webhooks", **options)


def test_follow_runs_until_sigterm_and_restores_the_signal_handlers(
    client, user, worker_mode, capsys
):
    link(user)
    store(client, 3)
    before = signal.getsignal(signal.SIGTERM)
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    try:
        call_command("process_webhooks", follow=True, interval=0.05)
    finally:
        timer.cancel()

    out = capsys.readouterr().out
    assert "Following webhook events as" in out
    assert "Stopped after 3 events: processed 3." in out
    assert signal.getsignal(signal.SIGTERM) is before
    assert not WebhookEvent.objects.filter(status="received").exists()


# --- a batch processed at once (what a follower does) -----------------------------------------


def stored_events(client, bodies) -> list[WebhookEvent]:
    for body in bodies:
        assert send(client, body).json() == {"status": "accepted"}
    return list(WebhookEvent.objects.order_by("pk"))


def test_a_batch_ends_as_each_event_would_on_its_own(client, user, worker_mode):
    link(user, vehicle_ids=("vid-1", "vid-2"))
    bad_signals = state_event("vid-2", oem_ms=T0_MS + 1)
    bad_signals["data"]["signals"] = {"not": "a list"}
    unknown_type = error_event()
    unknown_type["eventType"] = "VEHICLE_SOMETHING_NEW"
    legacy = {
        "version": "2.0",
        "webhookId": "w",
        "eventName": "scheduled",
        "mode": "live",
        "payload": {"vehicles": [{"vehicleId": "vid-2", "data": [battery_item(0.25)]}]},
    }
    events = stored_events(
        client,
        [
            state_event("vid-1", soc=61),
            state_event("not-ours"),
            bad_signals,
            error_event("vid-2"),
            unknown_type,
            legacy,  # its vehicle is named in the payload, not prefetched: looked up alone
        ],
    )
    done = events[0]
    WebhookEvent.objects.filter(pk=done.pk).update(status="processed", attempts=1)
    done.refresh_from_db()

    statuses = webhook_events_process_batch([done, *events[1:]])

    assert statuses == ["processed", "unmatched", "failed", "processed", "ignored", "processed"]
    rows = {e.pk: e for e in WebhookEvent.objects.select_related("vehicle")}
    assert rows[done.pk].attempts == 1  # a final event is left alone
    assert rows[events[2].pk].error == "invalid_signals"
    assert rows[events[3].pk].vehicle.smartcar_vehicle_id == "vid-2"
    assert {e.attempts for pk, e in rows.items() if pk != done.pk} == {1}
    assert not WebhookEvent.objects.filter(lease_until__isnull=False).exists()
    assert {r.vehicle.smartcar_vehicle_id for r in Reading.objects.select_related("vehicle")} == {
        "vid-2"
    }
    state = TelemetryState.objects.get(vehicle__smartcar_vehicle_id="vid-2")
    assert state.last_error == "webhook:VEHICLE_STATE:ASLEEP"


@pytest.mark.parametrize("size", [1, 3, 64, 65, 130])
def test_every_event_of_a_batch_gets_its_own_outcome_whatever_its_size(
    client, user, worker_mode, size
):
    # Outcomes are written in chunks of up to 64 rows, each padded to a power of two: every row
    # must still get its own status, note, time and vehicle.
    link(user, vehicle_ids=("vid-1", "vid-2"))
    bodies = []
    for n in range(size):
        if n % 3 == 0:
            bodies.append(state_event("not-ours", oem_ms=T0_MS + n * 1000))
        elif n % 3 == 1:
            bodies.append(state_event(f"vid-{n % 2 + 1}", soc=n % 90, oem_ms=T0_MS + n * 1000))
        else:
            bad = state_event("vid-1", oem_ms=T0_MS + n * 1000)
            bad["data"]["signals"] = {"not": "a list"}
            bodies.append(bad)
    events = stored_events(client, bodies)
    vid_2 = Vehicle.objects.get(smartcar_vehicle_id="vid-2")
    # An event no vehicle is matched to keeps the one it has.
    WebhookEvent.objects.filter(pk=events[0].pk).update(vehicle=vid_2)
    events[0].vehicle = vid_2

    statuses = webhook_events_process_batch(events)

    expected = {0: "unmatched", 1: "processed", 2: "failed"}
    assert statuses == [expected[n % 3] for n in range(size)]
    rows = WebhookEvent.objects.in_bulk([e.pk for e in events])
    for event in events:
        row = rows[event.pk]
        assert (row.status, row.error, row.processed_at, row.vehicle_id, row.attempts) == (
            event.status,
            event.error,
            event.processed_at,
            event.vehicle_id,
            1,
        )
        assert row.lease_until is None
    assert rows[events[0].pk].vehicle_id == vid_2.pk
    assert {rows[e.pk].error for e in events[2::3]} <= {"invalid_signals"}
    assert all(rows[e.pk].processed_at is None for e in events[2::3])
    assert Reading.objects.count() == len(events[1::3])


def test_a_batch_with_two_readings_of_one_car_keeps_the_newer_as_latest(client, user, worker_mode):
    link(user)
    events = stored_events(
        client, [state_event(soc=70, oem_ms=T0_MS + 60_000), state_event(soc=60, oem_ms=T0_MS)]
    )

    assert webhook_events_process_batch(events) == ["processed", "processed"]

    assert Reading.objects.count() == 2
    latest = TelemetryState.objects.get().latest_reading
    assert latest.soc_pct == 70


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("size", [1, 8, 50])
def test_a_batch_costs_the_same_few_statements_whatever_its_size(client, user, worker_mode, size):
    vehicle_ids = tuple(f"vid-{n}" for n in range(size))
    linked = link(user, vehicle_ids=vehicle_ids)
    # As the poller leaves them: every live vehicle has its state row.
    TelemetryState.objects.bulk_create([TelemetryState(vehicle=v) for v in linked.vehicles])
    events = stored_events(client, [state_event(vid) for vid in vehicle_ids])

    with CaptureQueriesContext(connection) as captured:
        statuses = webhook_events_process_batch(events)

    # The vehicles in one SELECT, the readings in one INSERT, their pointers in one UPDATE, the
    # outcomes in one UPDATE. One event at a time costs 4 statements an event.
    statements = [q["sql"].split(" ", 1)[0] for q in captured.captured_queries]
    assert [s for s in statements if s not in ("BEGIN", "COMMIT")] == [
        "SELECT",
        "INSERT",
        "UPDATE",
        "UPDATE",
    ]
    if size == 1:  # one reading: a plain INSERT in autocommit, no bulk INSERT's transaction
        assert "BEGIN" not in statements
    assert statuses == ["processed"] * len(events)
    assert Reading.objects.count() == len(events)
    assert TelemetryState.objects.filter(latest_reading__isnull=True).count() == 0


def test_an_event_whose_reading_cannot_be_stored_fails_and_the_others_do_not(
    client, user, worker_mode, caplog
):
    link(user, vehicle_ids=("vid-1", "vid-2"))
    events = stored_events(client, [state_event("vid-1"), error_event("vid-2")])

    def database_down_for_readings(execute, sql, params, many, context):
        if sql.startswith(f'INSERT INTO "{Reading._meta.db_table}"'):
            raise DatabaseError("server closed the connection")
        return execute(sql, params, many, context)

    with connection.execute_wrapper(database_down_for_readings):
        statuses = webhook_events_process_batch(events)

    assert statuses == ["failed", "processed"]
    row = WebhookEvent.objects.get(pk=events[0].pk)
    assert (row.status, row.error, row.lease_until) == (
        "failed",
        "internal_error:DatabaseError",
        None,
    )
    assert "server closed" in caplog.text  # the traceback is logged, once per event


def test_a_bug_storing_a_batchs_readings_fails_those_events_and_not_the_follower(
    client, user, worker_mode, monkeypatch, caplog
):
    link(user, vehicle_ids=("vid-1", "vid-2"))
    events = stored_events(client, [state_event("vid-1"), error_event("vid-2")])

    def broken(readings, *, source):
        raise RuntimeError("a bug")

    monkeypatch.setattr(webhooks, "telemetry_store_readings", broken)

    statuses = webhook_events_process_batch(events)  # does not raise

    assert statuses == ["failed", "processed"]
    assert WebhookEvent.objects.get(pk=events[0].pk).error == "internal_error:RuntimeError"
    assert "a bug" in caplog.text  # with its traceback


def test_a_batch_whose_outcomes_cannot_be_written_stays_received(client, user, worker_mode, caplog):
    link(user)
    events = stored_events(client, [state_event()])
    webhook_events_claim(owner="f1", limit=5)

    def database_down_for_event_updates(execute, sql, params, many, context):
        if sql.startswith(f'UPDATE "{WebhookEvent._meta.db_table}"'):
            raise DatabaseError("server closed the connection")
        return execute(sql, params, many, context)

    with (
        connection.execute_wrapper(database_down_for_event_updates),
        caplog.at_level(logging.ERROR, logger="telemetry.services.webhooks"),
    ):
        webhook_events_process_batch(events)

    row = WebhookEvent.objects.get()
    # Claimed still: another follower takes it once the lease runs out, and processes it again
    # (the reading is already there: no twin).
    assert (row.status, row.lease_owner, row.attempts) == ("received", "f1", 0)
    assert Reading.objects.count() == 1
    assert "could not record 1 outcomes" in caplog.text
