"""Webhook events processed in the background: the answer does not wait, nothing is lost.

Real threads on committed rows (`transaction=True`): the background thread writes on its own
database connection, as in production.
"""

import logging
import threading
from datetime import timedelta
from http import HTTPStatus

import pytest

from telemetry.models import Reading, WebhookEvent
from telemetry.services import webhook_dispatch
from telemetry.services.webhook_dispatch import BackgroundProcessor
from telemetry.services.webhooks import webhook_event_process, webhook_events_retry
from telemetry.tests.conftest import WAIT_SECONDS as WAIT
from telemetry.tests.webhook_support import link, send, state_event


@pytest.fixture
def gate(monkeypatch):
    """Holds the background thread at the start of each event until the test opens it."""
    opened = threading.Event()
    started = threading.Event()

    def held(*, event, force=False):
        started.set()
        assert opened.wait(WAIT)
        return webhook_event_process(event=event, force=force)

    monkeypatch.setattr(webhook_dispatch, "webhook_event_process", held)
    yield started, opened
    opened.set()


def status_of(event_id: str) -> str:
    return WebhookEvent.objects.get(event_id=event_id).status


@pytest.mark.django_db(transaction=True)
def test_accepted_event_is_processed_after_the_answer(client, user, background, gate):
    link(user)
    started, opened = gate
    event = state_event()

    response = send(client, event)

    # Answered while the thread is still held before processing: the answer did not wait.
    assert (response.status_code, response.json()) == (HTTPStatus.OK, {"status": "accepted"})
    assert started.wait(WAIT)
    assert status_of(event["eventId"]) == "received"
    assert Reading.objects.count() == 0
    opened.set()
    assert background.wait_idle(WAIT)
    assert status_of(event["eventId"]) == "processed"
    assert Reading.objects.get().soc_pct == 80.0


@pytest.mark.django_db(transaction=True)
def test_events_are_processed_in_order_and_a_duplicate_is_not_queued(client, user, background):
    link(user)
    first = state_event(soc=60, oem_ms=1_740_000_000_000)
    second = state_event(soc=70, oem_ms=1_740_000_060_000)

    answers = [send(client, e).json()["status"] for e in (first, first, second)]

    assert answers == ["accepted", "duplicate", "accepted"]
    assert background.wait_idle(WAIT)
    assert [status_of(e["eventId"]) for e in (first, second)] == ["processed", "processed"]
    assert list(Reading.objects.order_by("recorded_at").values_list("soc_pct", flat=True)) == [
        60.0,
        70.0,
    ]
    assert WebhookEvent.objects.get(event_id=first["eventId"]).attempts == 1


@pytest.mark.django_db(transaction=True)
def test_a_full_queue_leaves_the_event_for_the_retry_sweep(
    client, user, settings, monkeypatch, gate, caplog
):
    link(user)
    settings.SMARTCAR_WEBHOOK_PROCESSING = "background"
    processor = BackgroundProcessor(maxsize=1)
    monkeypatch.setattr(webhook_dispatch, "_processor", processor)
    started, opened = gate
    held, queued, overflow = state_event(), state_event(), state_event()

    assert send(client, held).status_code == HTTPStatus.OK
    assert started.wait(WAIT)  # the thread holds `held`; the queue has room for one
    assert send(client, queued).status_code == HTTPStatus.OK
    with caplog.at_level(logging.WARNING, logger=webhook_dispatch.__name__):
        response = send(client, overflow)
    # Still a 2xx: the event is stored, and Smartcar must not send it again.
    assert (response.status_code, response.json()) == (HTTPStatus.OK, {"status": "accepted"})
    opened.set()
    assert processor.stop(WAIT) == 0

    assert [status_of(e["eventId"]) for e in (held, queued)] == ["processed", "processed"]
    assert status_of(overflow["eventId"]) == "received"
    assert "queue full" in caplog.text
    assert webhook_events_retry(stale_after=timedelta(0), limit=10) == {"processed": 1}
    assert status_of(overflow["eventId"]) == "processed"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("failing", ["webhook_event_process", "_check_connections"])
def test_a_crash_in_processing_keeps_the_thread_and_the_event(
    client, user, background, monkeypatch, caplog, failing
):
    link(user)
    crashed, later = state_event(soc=60), state_event(soc=70, oem_ms=1_740_000_060_000)
    real = getattr(webhook_dispatch, failing)

    def crash_once(**kwargs):
        monkeypatch.setattr(webhook_dispatch, failing, real)
        raise RuntimeError("boom")

    monkeypatch.setattr(webhook_dispatch, failing, crash_once)
    with caplog.at_level(logging.ERROR, logger=webhook_dispatch.__name__):
        assert send(client, crashed).status_code == HTTPStatus.OK
        assert background.wait_idle(WAIT)
    thread = background._thread
    assert send(client, later).status_code == HTTPStatus.OK
    assert background.wait_idle(WAIT)

    assert background._thread is thread  # the same thread went on
    assert status_of(crashed["eventId"]) == "received"  # for --retry-failed
    assert status_of(later["eventId"]) == "processed"
    assert "background processing failed" in caplog.text


@pytest.mark.django_db
def test_background_hand_off_waits_for_the_commit(
    client, user, background, django_capture_on_commit_callbacks
):
    """Inside a transaction (here the test's own) the thread is handed the event only when it
    commits: before that its connection could not see the row."""
    link(user)
    event = state_event()

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert send(client, event).json() == {"status": "accepted"}

    assert len(callbacks) == 1
    assert background.pending() == 0
    assert status_of(event["eventId"]) == "received"


@pytest.mark.django_db
def test_inline_mode_processes_before_the_answer(client, user, settings):
    settings.SMARTCAR_WEBHOOK_PROCESSING = "inline"
    link(user)
    event = state_event()

    assert send(client, event).json() == {"status": "accepted"}

    assert status_of(event["eventId"]) == "processed"


@pytest.mark.django_db(transaction=True)
def test_exit_drains_the_queue_within_the_limit(client, user, background, gate, settings, caplog):
    link(user)
    started, opened = gate
    event = state_event()
    send(client, event)
    assert started.wait(WAIT)

    settings.SMARTCAR_WEBHOOK_DRAIN_SECONDS = 0.05
    with caplog.at_level(logging.WARNING, logger=webhook_dispatch.__name__):
        webhook_dispatch._drain_at_exit(background)
    assert "1 webhook events left for process_webhooks --retry-failed at exit" in caplog.text

    threading.Timer(0.1, opened.set).start()
    settings.SMARTCAR_WEBHOOK_DRAIN_SECONDS = WAIT
    webhook_dispatch._drain_at_exit(background)
    assert background.pending() == 0
    assert status_of(event["eventId"]) == "processed"


@pytest.mark.django_db(transaction=True)
def test_a_forked_process_starts_its_own_thread_and_queue(client, user, background):
    link(user)
    first = state_event(soc=60)
    send(client, first)
    assert background.wait_idle(WAIT)
    assert background.stop(WAIT) == 0
    parent_thread = background._thread

    background._pid = -1  # as if made in a parent process and inherited by a fork
    assert background.pending() == 0  # the parent's queue is not this process's
    second = state_event(soc=70, oem_ms=1_740_000_060_000)
    send(client, second)
    assert background.wait_idle(WAIT)

    assert background._thread is not parent_thread
    assert status_of(second["eventId"]) == "processed"


@pytest.mark.django_db(transaction=True)
def test_an_idle_thread_gives_its_connection_back(client, user, background, monkeypatch):
    link(user)
    closed = threading.Event()
    real = webhook_dispatch.connections

    class Watched:
        def __getattr__(self, name):
            return getattr(real, name)

        def close_all(self):
            real.close_all()
            closed.set()

    monkeypatch.setattr(webhook_dispatch, "IDLE_CLOSE_SECONDS", 0.05)
    monkeypatch.setattr(webhook_dispatch, "connections", Watched())
    send(client, state_event())

    assert background.wait_idle(WAIT)
    assert closed.wait(WAIT)


class FakeConnection:
    def __init__(self, *, errors_occurred: bool) -> None:
        self.errors_occurred = errors_occurred
        self.checked = 0

    def close_if_unusable_or_obsolete(self) -> None:
        self.checked += 1


@pytest.mark.parametrize(
    ("between_bursts", "errors_occurred", "checked"),
    [(True, False, 1), (False, True, 1), (False, False, 0)],
    ids=["new-burst", "after-an-error", "mid-burst"],
)
def test_connections_are_checked_per_burst_and_after_errors(
    monkeypatch, between_bursts, errors_occurred, checked
):
    connection = FakeConnection(errors_occurred=errors_occurred)

    class Handler:
        def all(self, initialized_only=False):
            return [connection]

    monkeypatch.setattr(webhook_dispatch, "connections", Handler())
    webhook_dispatch._check_connections(between_bursts=between_bursts)

    assert connection.checked == checked


@pytest.fixture
def batches(monkeypatch):
    """The batches the background thread hands to `webhook_events_process_batch`, as lists of
    event ids (the real function still does the work)."""
    seen: list[list[str]] = []
    real = webhook_dispatch.webhook_events_process_batch

    def spy(events):
        seen.append([event.event_id for event in events])
        return real(events)

    monkeypatch.setattr(webhook_dispatch, "webhook_events_process_batch", spy)
    return seen


def burst(n: int) -> list[dict]:
    return [state_event(soc=50 + i, oem_ms=1_740_000_000_000 + 60_000 * (i + 1)) for i in range(n)]


@pytest.mark.django_db(transaction=True)
def test_events_queued_during_processing_are_processed_as_one_batch(
    client, user, background, gate, batches
):
    link(user)
    started, opened = gate
    held, queued = state_event(soc=40, oem_ms=1_740_000_000_000), burst(5)

    send(client, held)
    assert started.wait(WAIT)  # the thread holds `held`; the others queue up behind it
    for event in queued:
        assert send(client, event).json() == {"status": "accepted"}
    opened.set()
    assert background.wait_idle(WAIT)

    assert batches == [[event["eventId"] for event in queued]]  # in order, in one batch
    assert {status_of(e["eventId"]) for e in [held, *queued]} == {"processed"}
    assert list(Reading.objects.order_by("recorded_at").values_list("soc_pct", flat=True)) == [
        40.0,
        50.0,
        51.0,
        52.0,
        53.0,
        54.0,
    ]
    state = Reading.objects.get(soc_pct=54.0).vehicle.telemetry_state
    assert state.latest_reading.soc_pct == 54.0


@pytest.mark.django_db(transaction=True)
def test_a_batch_is_at_most_batch_max_events(client, user, background, gate, batches, monkeypatch):
    link(user)
    monkeypatch.setattr(webhook_dispatch, "BATCH_MAX", 2)
    started, opened = gate
    held, queued = state_event(soc=40, oem_ms=1_740_000_000_000), burst(5)

    send(client, held)
    assert started.wait(WAIT)
    for event in queued:
        send(client, event)
    opened.set()
    assert background.wait_idle(WAIT)

    ids = [event["eventId"] for event in queued]
    assert batches == [ids[0:2], ids[2:4]]  # the fifth came alone: processed on its own
    assert {status_of(e["eventId"]) for e in [held, *queued]} == {"processed"}


@pytest.mark.django_db(transaction=True)
def test_a_stop_queued_behind_a_burst_ends_the_thread_after_it(client, user, background, gate):
    link(user)
    started, opened = gate
    held, queued = state_event(soc=40), burst(3)
    send(client, held)
    assert started.wait(WAIT)
    for event in queued:
        send(client, event)

    threading.Timer(0.1, opened.set).start()
    assert background.stop(WAIT) == 0  # queued behind the burst

    assert not background._thread.is_alive()
    assert {status_of(e["eventId"]) for e in [held, *queued]} == {"processed"}


@pytest.mark.django_db(transaction=True)
def test_a_crash_in_a_batch_keeps_the_thread_and_its_events(
    client, user, background, gate, monkeypatch, caplog
):
    link(user)
    started, opened = gate
    held, queued, later = (
        state_event(soc=40),
        burst(2),
        state_event(soc=90, oem_ms=1_740_009_000_000),
    )

    def crash(events):
        raise RuntimeError("boom")

    monkeypatch.setattr(webhook_dispatch, "webhook_events_process_batch", crash)
    send(client, held)
    assert started.wait(WAIT)
    for event in queued:
        send(client, event)
    with caplog.at_level(logging.ERROR, logger=webhook_dispatch.__name__):
        opened.set()
        assert background.wait_idle(WAIT)
    thread = background._thread
    send(client, later)
    assert background.wait_idle(WAIT)

    assert background._thread is thread
    assert [status_of(e["eventId"]) for e in queued] == ["received", "received"]  # for the sweep
    assert status_of(later["eventId"]) == "processed"
    assert "(2): background processing failed" in caplog.text
