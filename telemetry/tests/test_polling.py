"""The poller's cycle: what is due, claims and leases, recording outcomes, pauses, budget, idle
grants. A fake poll function drives it here; the end-to-end tests at the bottom use the real
`telemetry_poll_vehicle` with `responses`."""

import json
import logging
import random
import threading
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.db.backends.signals import connection_created
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from core.errors import ReconnectRequiredError
from smartcar_client.errors import (
    SmartcarBillingError,
    SmartcarConfigurationError,
    SmartcarRetryLaterError,
)
from smartcar_client.types import TokenSet
from telemetry.models import AppThrottle, Reading, TelemetryState
from telemetry.services import polling, readings
from telemetry.services.readings import PollResult
from vehicles.models import SmartcarAccount, Vehicle
from vehicles.services import LinkedVehicleInfo, account_link

pytestmark = pytest.mark.django_db

FIXTURES = Path(__file__).parent / "fixtures"
T0 = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)


# --- helpers (also used by the command and concurrency tests) ----------------------------------


class Clock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def make_account(user, n: int = 1, *, status: str = SmartcarAccount.Status.ACTIVE, **fields):
    defaults = {
        "access_token": f"access-{n}",
        "refresh_token": f"refresh-{n}",
        "access_expires_at": timezone.now() + timedelta(hours=2),
        "last_refreshed_at": timezone.now(),
        "scopes": ["read_battery", "read_charge", "read_location", "read_odometer"],
    }
    defaults.update(fields)
    return SmartcarAccount.objects.create(
        smartcar_user_id=f"sc-user-{n}", owner=user, status=status, **defaults
    )


def make_vehicles(user, count: int, *, account=None, status=Vehicle.Status.ACTIVE, start=0):
    account = account or make_account(user, n=start + 1000)
    return [
        Vehicle.objects.create(
            smartcar_vehicle_id=f"sc-vehicle-{start + i}",
            owner=user,
            account=account,
            status=status,
        )
        for i in range(count)
    ]


def ok_result(vehicle, *, charging_state="NOT_CHARGING", plugged=False, calls=1) -> PollResult:
    """A stored reading, as telemetry_poll_vehicle returns after a good poll."""
    now = timezone.now()
    reading = Reading.objects.create(
        vehicle=vehicle,
        recorded_at=now,
        received_at=now,
        source=Reading.Source.POLL,
        soc_pct=50,
        charging_state=charging_state,
        is_plugged_in=plugged,
    )
    TelemetryState.objects.filter(vehicle=vehicle).update(latest_reading=reading)
    return PollResult("ok", reading, True, calls)


class FakePoll:
    """Records every poll; answers with `answer(vehicle)` (default: a good reading)."""

    def __init__(self, answer=None) -> None:
        self.answer = answer or (lambda vehicle: ok_result(vehicle))
        self.polled: list = []
        self.lock = threading.Lock()

    def __call__(self, *, vehicle, source="poll", defer_state_write=False) -> PollResult:
        # As readings.telemetry_poll_vehicle's signature (the poller's default asks to defer):
        # a fake writes no state, so it has none to hand back.
        assert source == "poll"
        with self.lock:
            self.polled.append(vehicle.pk)
        return self.answer(vehicle)


def stand_in_for_the_real_poll(set_attr, poll) -> None:
    """Make the poller's real poll (the Smartcar read on a worker, its writes on a writer thread)
    answer with `poll`'s PollResult. `set_attr`: monkeypatch.setattr, or setattr in a child."""

    def read(*, vehicle, source, defer_state_write):
        return poll(vehicle=vehicle, source=source)

    set_attr(readings, "telemetry_poll_read", read)
    set_attr(readings, "telemetry_poll_store", lambda polled: polled)


def no_refresh(*, account) -> bool:
    raise AssertionError("no idle refresh expected")


def cycle(poll, clock=None, **options) -> polling.CycleSummary:
    options.setdefault("workers", 1)
    options.setdefault("refresh_fn", no_refresh)
    options.setdefault("rng", random.Random(0))
    return polling.run_poll_cycle(poll_fn=poll, clock=clock or Clock(), **options)


def state(vehicle) -> TelemetryState:
    return TelemetryState.objects.get(vehicle=vehicle)


# --- what is due --------------------------------------------------------------------------------


def test_a_vehicle_never_polled_is_due_and_gets_its_state_row(user):
    (vehicle,) = make_vehicles(user, 1)
    poll, clock = FakePoll(), Clock()

    summary = cycle(poll, clock)

    assert poll.polled == [vehicle.pk]
    row = state(vehicle)
    assert row.last_polled_at == T0
    assert row.last_outcome == "ok"
    assert row.next_poll_at == T0 + timedelta(seconds=900)  # not charging, not plugged in
    assert (row.lease_until, row.consecutive_failures, row.last_error) == (None, 0, "")
    assert (summary.polled, summary.stored, summary.claimed) == (1, 1, 1)
    assert summary.outcomes == {"ok": 1}


def test_next_poll_follows_the_reading(user, settings):
    charging, plugged = make_vehicles(user, 2)
    answers = {
        charging.pk: lambda v: ok_result(v, charging_state="CHARGING", plugged=True),
        plugged.pk: lambda v: ok_result(v, charging_state="NOT_CHARGING", plugged=True),
    }
    cycle(FakePoll(lambda v: answers[v.pk](v)))
    assert state(charging).next_poll_at == T0 + timedelta(seconds=settings.POLL_INTERVAL_CHARGING)
    assert state(plugged).next_poll_at == T0 + timedelta(seconds=settings.POLL_INTERVAL_PLUGGED_IN)


def test_a_vehicle_not_yet_due_is_not_polled_unless_the_schedule_is_ignored(user):
    (vehicle,) = make_vehicles(user, 1)
    TelemetryState.objects.create(vehicle=vehicle, next_poll_at=T0 + timedelta(seconds=1))
    poll = FakePoll()

    assert cycle(poll).polled == 0
    assert poll.polled == []

    assert cycle(poll, ignore_schedule=True).polled == 1
    assert poll.polled == [vehicle.pk]


def test_a_vehicle_due_exactly_now_is_polled(user):
    (vehicle,) = make_vehicles(user, 1)
    TelemetryState.objects.create(vehicle=vehicle, next_poll_at=T0)
    poll = FakePoll()
    cycle(poll)
    assert poll.polled == [vehicle.pk]


def test_inactive_vehicles_and_accounts_are_never_polled(user):
    make_vehicles(user, 1, status=Vehicle.Status.DISCONNECTED, start=0)
    make_vehicles(user, 1, status=Vehicle.Status.NEEDS_REAUTH, start=1)
    reauth = make_account(user, 2, status=SmartcarAccount.Status.NEEDS_REAUTH)
    make_vehicles(user, 1, account=reauth, start=2)
    Vehicle.objects.create(smartcar_vehicle_id="no-account", owner=user, account=None)
    poll = FakePoll()

    summary = cycle(poll, ignore_schedule=True)

    assert (poll.polled, summary.polled) == ([], 0)
    assert not TelemetryState.objects.exists()


def test_vehicle_ids_restrict_the_cycle(user):
    a, b = make_vehicles(user, 2)
    poll = FakePoll()
    cycle(poll, vehicle_ids=[b.pk])
    assert poll.polled == [b.pk]
    assert not TelemetryState.objects.filter(vehicle=a).exists()


def test_each_vehicle_is_polled_once_per_cycle_even_with_small_batches(user):
    vehicles = make_vehicles(user, 7)
    poll = FakePoll()
    summary = cycle(poll, ignore_schedule=True, batch_size=2)
    assert sorted(poll.polled) == sorted(v.pk for v in vehicles)
    assert summary.polled == 7


def test_vehicle_resolve_ids_takes_our_id_or_the_smartcar_id(user):
    a, b = make_vehicles(user, 2)
    found, missing = polling.vehicle_resolve_ids(
        identifiers=[str(a.pk), b.smartcar_vehicle_id, "nope", str(a.pk)]
    )
    assert found == [a.pk, b.pk]
    assert missing == ["nope"]


def test_vehicle_resolve_ids_ignores_a_disconnected_row_of_the_same_smartcar_id(user):
    (live,) = make_vehicles(user, 1)
    Vehicle.objects.create(
        smartcar_vehicle_id=live.smartcar_vehicle_id,
        owner=user,
        status=Vehicle.Status.DISCONNECTED,
    )
    found, _ = polling.vehicle_resolve_ids(identifiers=[live.smartcar_vehicle_id])
    assert found == [live.pk]


# --- claims and leases --------------------------------------------------------------------------


def make_cycle(owner: str, clock=None, *, ignore_schedule=False) -> polling._Cycle:
    from telemetry.schedule import ScheduleConfig

    return polling._Cycle(
        owner=owner,
        poll_fn=FakePoll(),
        config=ScheduleConfig.from_settings(),
        clock=clock or Clock(),
        rng=None,
        ignore_schedule=ignore_schedule,
        stop=threading.Event(),
        threaded=False,
    )


def test_two_claimers_never_get_the_same_vehicle(user, settings):
    vehicles = make_vehicles(user, 10)
    polling._ensure_states(None)
    a, b = make_cycle("host:1:a"), make_cycle("host:2:b")

    first = polling._claim(a, now=T0, limit=6, vehicle_ids=None)
    second = polling._claim(b, now=T0, limit=6, vehicle_ids=None)

    assert len(first) == 6
    assert len(second) == 4
    assert set(first).isdisjoint(second)
    assert set(first) | set(second) == {v.pk for v in vehicles}
    lease_end = T0 + timedelta(seconds=settings.POLL_LEASE_SECONDS)
    assert set(
        TelemetryState.objects.filter(lease_owner="host:1:a").values_list("vehicle_id", flat=True)
    ) == set(first)
    assert set(TelemetryState.objects.values_list("lease_until", flat=True)) == {lease_end}
    assert polling._claim(a, now=T0, limit=6, vehicle_ids=None) == []


def test_a_claim_with_a_stale_view_loses_the_compare_and_set(user, monkeypatch):
    """Claimer B read the candidates before A leased them: B must not get them."""
    if connection.features.has_select_for_update_skip_locked:
        pytest.skip("PostgreSQL claims with row locks; the compare-and-set is the SQLite path")
    vehicles = make_vehicles(user, 3)
    polling._ensure_states(None)
    a, b = make_cycle("host:1:a"), make_cycle("host:2:b")
    stale = list(TelemetryState.objects.values_list("pk", flat=True))  # B's view before A claimed
    assert len(polling._claim(a, now=T0, limit=3, vehicle_ids=None)) == 3

    monkeypatch.setattr(
        polling, "_claimable", _once(lambda *args: TelemetryState.objects.filter(pk__in=stale))
    )
    assert polling._claim(b, now=T0, limit=3, vehicle_ids=None) == []
    assert set(TelemetryState.objects.values_list("lease_owner", flat=True)) == {"host:1:a"}
    assert len(vehicles) == 3


def test_a_compare_and_set_does_not_take_a_vehicle_polled_meanwhile(user, monkeypatch):
    if connection.features.has_select_for_update_skip_locked:
        pytest.skip("PostgreSQL claims with row locks; the compare-and-set is the SQLite path")
    (vehicle,) = make_vehicles(user, 1)
    polling._ensure_states(None)
    stale = list(TelemetryState.objects.values_list("pk", flat=True))  # due when B read it
    # Meanwhile another poller polled it and released it with a future next poll.
    TelemetryState.objects.update(next_poll_at=T0 + timedelta(seconds=900), lease_owner="other")
    monkeypatch.setattr(
        polling, "_claimable", _once(lambda *args: TelemetryState.objects.filter(pk__in=stale))
    )
    assert polling._claim(make_cycle("host:2:b"), now=T0, limit=1, vehicle_ids=None) == []
    assert state(vehicle).lease_owner == "other"


def _once(stale_view):
    """A claimable-rows view that is stale on its first read and empty afterwards."""
    calls = []

    def view(*args):
        calls.append(1)
        return stale_view(*args) if len(calls) == 1 else TelemetryState.objects.none()

    return view


def test_a_live_lease_is_respected_even_when_ignoring_the_schedule(user):
    (vehicle,) = make_vehicles(user, 1)
    TelemetryState.objects.create(
        vehicle=vehicle, lease_until=T0 + timedelta(seconds=10), lease_owner="host:9:crashed"
    )
    poll = FakePoll()
    assert cycle(poll, ignore_schedule=True).polled == 0
    assert poll.polled == []


def test_an_expired_lease_is_reclaimed(user):
    (vehicle,) = make_vehicles(user, 1)
    TelemetryState.objects.create(
        vehicle=vehicle, lease_until=T0 - timedelta(seconds=1), lease_owner="host:9:crashed"
    )
    poll = FakePoll()
    assert cycle(poll).polled == 1
    row = state(vehicle)
    assert row.lease_until is None
    assert row.lease_owner != "host:9:crashed"
    assert row.last_outcome == "ok"


def test_vehicles_gone_between_their_claim_and_its_read_are_skipped_and_claiming_goes_on(
    user, monkeypatch
):
    vehicles = make_vehicles(user, 4)
    real_claim, claims = polling._claim, []

    def claim_then_lose(cycle_, **kwargs):
        pks = real_claim(cycle_, **kwargs)
        claims.append(pks)
        if len(claims) == 1:  # every vehicle of the first claim is deleted before its read
            Vehicle.objects.filter(pk__in=pks).delete()
        return pks

    monkeypatch.setattr(polling, "_claim", claim_then_lose)
    poll = FakePoll()
    summary = cycle(poll, batch_size=2)

    lost = set(claims[0])
    assert len(lost) == 2
    assert set(poll.polled) == {v.pk for v in vehicles} - lost
    assert (summary.claimed, summary.polled, summary.skipped) == (4, 2, {"lease_lost": 2})


def test_a_result_is_not_written_once_the_lease_was_taken_over(user, caplog):
    (vehicle,) = make_vehicles(user, 1)

    def slow_poll(v):
        # Our lease ran out during the poll and another poller took the vehicle.
        TelemetryState.objects.filter(vehicle=v).update(
            lease_owner="host:2:other", lease_until=T0 + timedelta(seconds=300)
        )
        return ok_result(v)

    with caplog.at_level(logging.WARNING, logger="telemetry.services.polling"):
        cycle(FakePoll(slow_poll))
    row = state(vehicle)
    assert (row.lease_owner, row.last_outcome, row.next_poll_at) == ("host:2:other", "", None)
    assert row.lease_until == T0 + timedelta(seconds=300)
    assert "lease on vehicle" in caplog.text


# --- failures -----------------------------------------------------------------------------------


def test_a_crash_in_the_poll_function_is_recorded_and_the_cycle_goes_on(user, caplog):
    vehicles = make_vehicles(user, 3)
    crashing = vehicles[1].pk

    def answer(v):
        if v.pk == crashing:
            raise RuntimeError("boom with secret-looking text access-1")
        return ok_result(v)

    with caplog.at_level(logging.ERROR):
        summary = cycle(FakePoll(answer), workers=1)

    assert summary.polled == 3
    assert summary.failed == {"crash": 1}
    assert summary.outcomes == {"ok": 2, "failed": 1}
    row = TelemetryState.objects.get(vehicle_id=crashing)
    assert (row.last_outcome, row.last_error, row.consecutive_failures) == (
        "failed",
        "internal:RuntimeError",
        1,
    )
    assert row.lease_until is None
    # Backoff from the default interval, with equal jitter.
    assert T0 + timedelta(seconds=450) <= row.next_poll_at <= T0 + timedelta(seconds=900)
    assert "access-1" not in row.last_error


def test_failures_back_off_exponentially_and_success_resets(user, settings):
    (vehicle,) = make_vehicles(user, 1)
    clock = Clock()
    error = SmartcarRetryLaterError(status=502, type="UPSTREAM", code="NO_RESPONSE")
    failing = FakePoll(lambda v: PollResult("failed", None, False, 1, error=error))
    delays = []
    for _ in range(8):
        cycle(failing, clock)
        row = state(vehicle)
        delays.append((row.next_poll_at - clock.now).total_seconds())
        clock.now = row.next_poll_at
    assert state(vehicle).consecutive_failures == 8
    for n, value in enumerate(delays, start=1):
        nominal = min(settings.POLL_BACKOFF_MAX, 900 * 2 ** (n - 1))
        assert nominal / 2 <= value <= nominal
    assert state(vehicle).last_error == "UPSTREAM:NO_RESPONSE"

    cycle(FakePoll(), clock)
    assert state(vehicle).consecutive_failures == 0
    assert state(vehicle).last_error == ""


def test_last_error_holds_type_code_and_request_id_only(user):
    (vehicle,) = make_vehicles(user, 1)
    error = SmartcarRetryLaterError(
        status=429, type="RATE_LIMIT", code="VEHICLE", request_id="req-42", retry_after=60
    )
    cycle(FakePoll(lambda v: PollResult("rate_limited", None, False, 1, 60, error)))
    assert state(vehicle).last_error == "RATE_LIMIT:VEHICLE request_id=req-42"


def test_retry_after_is_respected(user):
    """E7: 429 RATE_LIMIT:VEHICLE with Retry-After → no call to that car before it."""
    (vehicle,) = make_vehicles(user, 1)
    clock = Clock()
    error = SmartcarRetryLaterError(status=429, type="RATE_LIMIT", code="VEHICLE", retry_after=5000)
    limited = FakePoll(lambda v: PollResult("rate_limited", None, False, 1, 5000, error))
    cycle(limited, clock)
    assert state(vehicle).next_poll_at == T0 + timedelta(seconds=5000)

    poll = FakePoll()
    clock.advance(4999)
    assert cycle(poll, clock).polled == 0
    clock.advance(1)
    assert cycle(poll, clock).polled == 1
    assert poll.polled == [vehicle.pk]


def test_billing_stops_polling_until_next_month_and_says_so_loudly(user, caplog):
    (vehicle,) = make_vehicles(user, 1)
    error = SmartcarBillingError(status=430, type="BILLING", code="VEHICLE_REQUEST_LIMIT")
    with caplog.at_level(logging.ERROR, logger="telemetry.services.polling"):
        summary = cycle(FakePoll(lambda v: PollResult("billing", None, False, 1, error=error)))
    row = state(vehicle)
    assert row.next_poll_at == datetime(2025, 4, 1, tzinfo=UTC)
    assert row.last_outcome == "billing"
    assert summary.failed == {"billing": 1}
    assert summary.needs_operator
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert any(str(vehicle.pk) in r.getMessage() and "BILLING" in r.getMessage() for r in errors)


def test_reauth_leaves_no_next_poll_and_the_vehicle_drops_out(user):
    (vehicle,) = make_vehicles(user, 1)

    def reauth(v):
        SmartcarAccount.objects.filter(pk=v.account_id).update(
            status=SmartcarAccount.Status.NEEDS_REAUTH
        )
        return PollResult("reauth", None, False, 1, error=ReconnectRequiredError())

    cycle(FakePoll(reauth))
    row = state(vehicle)
    assert (row.next_poll_at, row.last_outcome, row.last_error) == (
        None,
        "reauth",
        "reconnect_required",
    )
    poll = FakePoll()
    assert cycle(poll, ignore_schedule=True).polled == 0


def test_configuration_errors_everywhere_need_an_operator(user):
    make_vehicles(user, 2)
    error = SmartcarConfigurationError(status=401, type="OAUTH", code="invalid_client")
    summary = cycle(FakePoll(lambda v: PollResult("failed", None, False, 0, error=error)))
    assert summary.failed == {"configuration": 2}
    assert summary.needs_operator


def test_one_good_poll_means_no_operator_is_needed(user):
    a, _ = make_vehicles(user, 2)
    error = SmartcarConfigurationError(status=401, type="OAUTH", code="invalid_client")

    def answer(v):
        return ok_result(v) if v.pk == a.pk else PollResult("failed", None, False, 0, error=error)

    summary = cycle(FakePoll(answer))
    assert not summary.needs_operator
    assert not cycle(FakePoll()).needs_operator  # nothing due: nothing failed


# --- the app-wide rate limit --------------------------------------------------------------------


def test_while_the_app_is_paused_a_cycle_polls_nothing_and_says_so(user):
    make_vehicles(user, 2)
    AppThrottle.objects.create(pk=1, paused_until=T0 + timedelta(seconds=30))
    poll = FakePoll()

    summary = cycle(poll, ignore_schedule=True)

    assert (poll.polled, summary.polled, summary.claimed) == ([], 0, 0)
    assert summary.paused_until == T0 + timedelta(seconds=30)
    assert "paused until" in summary.line()
    assert summary.as_dict()["pausedUntil"] == (T0 + timedelta(seconds=30)).isoformat()


def test_an_expired_pause_does_not_stop_polling(user):
    make_vehicles(user, 1)
    AppThrottle.objects.create(pk=1, paused_until=T0 - timedelta(seconds=1))
    assert cycle(FakePoll()).polled == 1


def test_app_rate_limit_pauses_everyone_and_releases_the_rest(user):
    vehicles = make_vehicles(user, 4)
    error = SmartcarRetryLaterError(
        status=429, type="RATE_LIMIT", code="SMARTCAR_API", retry_after=120
    )
    limited = FakePoll(lambda v: PollResult("rate_limited", None, False, 1, 120, error, True))

    summary = cycle(limited)

    assert len(limited.polled) == 1
    assert summary.skipped == {"paused": 3}
    assert summary.paused_until == T0 + timedelta(seconds=120)
    throttle = AppThrottle.objects.get(pk=1)
    assert (throttle.paused_until, throttle.reason) == (
        T0 + timedelta(seconds=120),
        "RATE_LIMIT:SMARTCAR_API",
    )
    others = TelemetryState.objects.exclude(vehicle_id=limited.polled[0])
    assert others.count() == 3
    for row in others:  # released untouched: due again as soon as the pause ends
        assert (row.lease_until, row.next_poll_at, row.last_outcome) == (None, None, "")
    assert len(vehicles) == 4


def test_app_rate_limit_without_retry_after_backs_off_with_jitter_and_grows():
    clock = Clock()
    first = polling.app_throttle_pause(retry_after=None, now=clock.now, rng=random.Random(1))
    assert T0 + timedelta(seconds=30) <= first <= T0 + timedelta(seconds=60)
    # Limited again by a peer while still paused: the pause is not doubled again.
    assert polling.app_throttle_pause(retry_after=None, now=clock.now) == first
    # Limited again soon after the pause ended: twice as long.
    length = (first - T0).total_seconds()
    clock.now = first + timedelta(seconds=1)
    second = polling.app_throttle_pause(retry_after=None, now=clock.now, rng=random.Random(1))
    assert length <= (second - clock.now).total_seconds() <= 2 * length


def test_a_longer_retry_after_extends_an_existing_pause():
    first = polling.app_throttle_pause(retry_after=60, now=T0)
    assert first == T0 + timedelta(seconds=60)
    assert polling.app_throttle_pause(retry_after=30, now=T0) == first
    assert polling.app_throttle_pause(retry_after=600, now=T0) == T0 + timedelta(seconds=600)


# --- webhooks, budget, stopping -----------------------------------------------------------------


def webhook_reading(vehicle, received_at, charging_state="CHARGING"):
    reading = Reading.objects.create(
        vehicle=vehicle,
        recorded_at=received_at,
        received_at=received_at,
        source=Reading.Source.WEBHOOK,
        soc_pct=40,
        charging_state=charging_state,
        is_plugged_in=True,
    )
    TelemetryState.objects.update_or_create(vehicle=vehicle, defaults={"latest_reading": reading})
    return reading


def test_a_fresh_webhook_reading_counts_as_the_poll(user, settings):
    (vehicle,) = make_vehicles(user, 1)
    received = T0 - timedelta(seconds=100)
    webhook_reading(vehicle, received)
    poll = FakePoll()

    summary = cycle(poll)

    assert poll.polled == []
    assert summary.skipped == {"webhook_fresh": 1}
    row = state(vehicle)
    assert row.next_poll_at == received + timedelta(seconds=settings.POLL_INTERVAL_CHARGING)
    assert (row.last_outcome, row.lease_until) == ("unchanged", None)


def test_a_stale_webhook_reading_does_not_save_the_poll(user):
    (vehicle,) = make_vehicles(user, 1)
    webhook_reading(vehicle, T0 - timedelta(seconds=301))
    poll = FakePoll()
    cycle(poll)
    assert poll.polled == [vehicle.pk]


def test_a_fresh_polled_reading_does_not_skip_the_poll(user):
    (vehicle,) = make_vehicles(user, 1)
    reading = webhook_reading(vehicle, T0 - timedelta(seconds=10))
    Reading.objects.filter(pk=reading.pk).update(source=Reading.Source.POLL)
    poll = FakePoll()
    cycle(poll)
    assert poll.polled == [vehicle.pk]


def test_forcing_a_poll_ignores_a_fresh_webhook_reading(user):
    (vehicle,) = make_vehicles(user, 1)
    webhook_reading(vehicle, T0 - timedelta(seconds=10))
    poll = FakePoll()
    cycle(poll, ignore_schedule=True)
    assert poll.polled == [vehicle.pk]


def test_the_budget_stretches_the_next_poll(user, settings):
    settings.SMARTCAR_MONTHLY_CALL_BUDGET = 100
    (vehicle,) = make_vehicles(user, 1)
    TelemetryState.objects.create(
        vehicle=vehicle, calls_month=T0.date().replace(day=1), calls_this_month=60
    )
    cycle(FakePoll(lambda v: ok_result(v, calls=4)))
    seconds_left = (datetime(2025, 4, 1, tzinfo=UTC) - T0).total_seconds()
    expected = T0 + timedelta(seconds=seconds_left * 4 / 40)
    assert abs((state(vehicle).next_poll_at - expected).total_seconds()) < 1


def test_last_months_calls_do_not_count_against_this_months_budget(user, settings):
    settings.SMARTCAR_MONTHLY_CALL_BUDGET = 100
    (vehicle,) = make_vehicles(user, 1)
    TelemetryState.objects.create(
        vehicle=vehicle, calls_month=date(2025, 2, 1), calls_this_month=100
    )
    poll = FakePoll()
    cycle(poll, ignore_schedule=True)
    assert poll.polled == [vehicle.pk]


def test_an_exhausted_budget_blocks_even_a_forced_poll(user, settings):
    settings.SMARTCAR_MONTHLY_CALL_BUDGET = 100
    (vehicle,) = make_vehicles(user, 1)
    TelemetryState.objects.create(
        vehicle=vehicle, calls_month=T0.date().replace(day=1), calls_this_month=100
    )
    poll = FakePoll()
    summary = cycle(poll, ignore_schedule=True)
    assert poll.polled == []
    assert summary.skipped == {"budget_exhausted": 1}
    assert state(vehicle).lease_until is None


def test_a_budget_spent_elsewhere_parks_a_due_vehicle_until_next_month(user, settings):
    settings.SMARTCAR_MONTHLY_CALL_BUDGET = 100
    (vehicle,) = make_vehicles(user, 1)
    TelemetryState.objects.create(
        vehicle=vehicle, calls_month=T0.date().replace(day=1), calls_this_month=100
    )
    poll = FakePoll()
    assert cycle(poll).skipped == {"budget_exhausted": 1}
    assert poll.polled == []
    row = state(vehicle)
    assert (row.next_poll_at, row.lease_until) == (datetime(2025, 4, 1, tzinfo=UTC), None)


def test_stopping_releases_claimed_vehicles_without_polling_them(user):
    make_vehicles(user, 3)
    stop = threading.Event()

    def first_then_stop(v):
        stop.set()  # SIGTERM arrives during the first poll
        return ok_result(v)

    poll = FakePoll(first_then_stop)
    summary = cycle(poll, stop=stop)

    assert len(poll.polled) == 1
    assert summary.skipped == {"stopping": 2}
    assert not TelemetryState.objects.filter(lease_until__isnull=False).exists()
    assert TelemetryState.objects.filter(last_outcome="ok").count() == 1
    assert TelemetryState.objects.filter(next_poll_at__isnull=True).count() == 2


def test_progress_is_reported_per_vehicle(user):
    make_vehicles(user, 3)
    seen = []
    cycle(FakePoll(), progress=lambda done, claimed: seen.append((done, claimed)))
    assert seen == [(1, 3), (2, 3), (3, 3)]


def test_seconds_until_next_due(user):
    (vehicle,) = make_vehicles(user, 1)
    polling._ensure_states(None)
    assert polling.seconds_until_next_due(now=T0, max_seconds=30) == 0
    TelemetryState.objects.update(next_poll_at=T0 + timedelta(seconds=12))
    assert polling.seconds_until_next_due(now=T0, max_seconds=30) == 12
    TelemetryState.objects.update(next_poll_at=T0 + timedelta(hours=1))
    assert polling.seconds_until_next_due(now=T0, max_seconds=30) == 30
    AppThrottle.objects.create(pk=1, paused_until=T0 + timedelta(seconds=5))
    assert polling.seconds_until_next_due(now=T0, max_seconds=30) == 5
    assert vehicle


def test_seconds_until_next_due_ignores_vehicles_another_poller_holds(user):
    (vehicle,) = make_vehicles(user, 1)
    TelemetryState.objects.create(
        vehicle=vehicle, lease_until=T0 + timedelta(seconds=60), lease_owner="host:2:other"
    )
    assert polling.seconds_until_next_due(now=T0, max_seconds=30) == 30


class CountingEvent(threading.Event):
    """Records each wait; sets itself after `cycles` waits."""

    def __init__(self, cycles: int) -> None:
        super().__init__()
        self.waits: list[float] = []
        self.cycles = cycles

    def wait(self, timeout=None) -> bool:
        self.waits.append(timeout)
        if len(self.waits) >= self.cycles:
            self.set()
        return self.is_set()


def test_the_loop_never_busy_waits(user, monkeypatch):
    make_vehicles(user, 1)
    monkeypatch.setattr(polling, "seconds_until_next_due", lambda **kw: 0.0)
    stop = CountingEvent(cycles=3)
    summaries = []
    cycles = polling.run_poll_loop(
        stop=stop,
        on_cycle=summaries.append,
        poll_fn=FakePoll(),
        refresh_fn=no_refresh,
        workers=1,
    )
    assert cycles == 3
    assert [s.polled for s in summaries] == [1, 0, 0]
    assert stop.waits == [polling.LOOP_MIN_SLEEP_SECONDS] * 3


# --- idle grants --------------------------------------------------------------------------------


def test_idle_grants_are_refreshed_oldest_first_and_bounded(user, settings):
    settings.SMARTCAR_IDLE_REFRESH_DAYS = 50
    now = timezone.now()
    old = [make_account(user, n, last_refreshed_at=now - timedelta(days=60 - n)) for n in range(3)]
    fresh = make_account(user, 10, last_refreshed_at=now - timedelta(days=49))
    lonely = make_account(user, 11, last_refreshed_at=now - timedelta(days=70))  # no vehicle
    for n, account in enumerate([*old, fresh]):
        make_vehicles(user, 1, account=account, start=100 + n)
    seen = []

    def refresh(*, account):
        seen.append(account.pk)
        return True

    refreshed, errors = polling.accounts_refresh_idle(now=now, limit=2, refresh_fn=refresh)

    assert (refreshed, errors) == (2, {})
    assert sorted(seen) == sorted([old[0].pk, old[1].pk])
    assert lonely.pk not in seen


def test_idle_refresh_errors_are_counted_not_raised(user):
    now = timezone.now()
    accounts = [
        make_account(user, n, last_refreshed_at=now - timedelta(days=80 - n)) for n in range(3)
    ]
    for n, account in enumerate(accounts):
        make_vehicles(user, 1, account=account, start=200 + n)

    def refresh(*, account):
        if account.pk == accounts[0].pk:
            raise ReconnectRequiredError()
        if account.pk == accounts[1].pk:
            raise SmartcarRetryLaterError(status=503, type="SERVER", code="INTERNAL")
        return True

    summary = cycle(FakePoll(), Clock(now), refresh_fn=refresh)
    assert summary.idle_refreshed == 1
    assert summary.idle_errors == {"reconnect_required": 1, "SERVER:INTERNAL": 1}
    assert summary.polled == 3  # the polling went on
    assert "idle grants refreshed 1" in summary.line()


# --- threads (PostgreSQL, or SQLite on a file) --------------------------------------------------


@pytest.fixture
def threads_share_the_database():
    if connection.vendor == "sqlite" and connection.is_in_memory_db():
        pytest.skip(
            "the in-memory SQLite test database fails concurrent writers with 'database table is "
            "locked'; the PostgreSQL run covers the thread pool"
        )


@pytest.mark.django_db(transaction=True)
def test_a_thread_pool_polls_every_vehicle_exactly_once(user, threads_share_the_database):
    vehicles = make_vehicles(user, 40)
    poll = FakePoll(lambda v: PollResult("unchanged", None, False, 1))
    summary = polling.run_poll_cycle(
        poll_fn=poll, workers=8, refresh_fn=no_refresh, rng=random.Random(0)
    )
    assert sorted(poll.polled) == sorted(v.pk for v in vehicles)
    assert summary.polled == 40
    assert not TelemetryState.objects.filter(lease_until__isnull=False).exists()
    assert TelemetryState.objects.filter(last_outcome="unchanged").count() == 40


@pytest.mark.django_db(transaction=True)
def test_two_threaded_pollers_at_once_poll_each_vehicle_once(user, threads_share_the_database):
    vehicles = make_vehicles(user, 60)
    poll = FakePoll(lambda v: PollResult("unchanged", None, False, 1))
    results, errors = [], []

    def run():
        try:
            results.append(
                polling.run_poll_cycle(poll_fn=poll, workers=4, refresh_fn=no_refresh, batch_size=5)
            )
        except Exception as exc:  # noqa: BLE001  (reported to the main thread below)
            errors.append(repr(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert sorted(poll.polled) == sorted(v.pk for v in vehicles)
    assert sum(r.polled for r in results) == 60


@pytest.mark.django_db(transaction=True)
def test_a_worker_reads_its_next_vehicle_while_a_writer_stores_the_last(
    user, threads_share_the_database, monkeypatch
):
    vehicles = make_vehicles(user, 4)
    reads, lock, all_read = [], threading.Lock(), threading.Event()
    stores: list[tuple[str, bool]] = []

    def read(*, vehicle, source, defer_state_write):
        with lock:
            reads.append(vehicle.pk)
            if len(reads) == len(vehicles):
                all_read.set()
        return PollResult("unchanged", None, False, 1)

    def store(polled):
        # Held until every vehicle was read: two workers get through four vehicles only if
        # neither waits for a write.
        stores.append((threading.current_thread().name, all_read.wait(timeout=5)))
        return polled

    monkeypatch.setattr(readings, "telemetry_poll_read", read)
    monkeypatch.setattr(readings, "telemetry_poll_store", store)

    summary = polling.run_poll_cycle(workers=2, refresh_fn=no_refresh, rng=random.Random(0))

    assert summary.polled == 4
    assert len(stores) == 4
    assert all(name.startswith("poller-writer-") and waited for name, waited in stores)
    assert TelemetryState.objects.filter(last_outcome="unchanged", lease_until=None).count() == 4


@pytest.mark.django_db(transaction=True)
def test_a_crash_storing_one_vehicles_reading_is_that_vehicles_failure(
    user, threads_share_the_database, monkeypatch, caplog
):
    broken, *others = make_vehicles(user, 3)

    def read(*, vehicle, source, defer_state_write):
        return vehicle.pk

    def store(pk):
        if pk == broken.pk:
            raise RuntimeError("the database went away")
        return PollResult("unchanged", None, False, 1)

    monkeypatch.setattr(readings, "telemetry_poll_read", read)
    monkeypatch.setattr(readings, "telemetry_poll_store", store)

    with caplog.at_level(logging.ERROR, logger="telemetry.services.polling"):
        summary = polling.run_poll_cycle(workers=2, refresh_fn=no_refresh, rng=random.Random(0))

    assert (summary.polled, summary.failed) == (3, {"crash": 1})
    assert f"polling vehicle {broken.pk} crashed" in caplog.text
    row = state(broken)
    assert (row.last_outcome, row.lease_until) == ("failed", None)
    assert {state(v).last_outcome for v in others} == {"unchanged"}


@pytest.mark.django_db(transaction=True)
def test_the_real_polls_writers_open_one_connection_each_for_the_whole_cycle(
    user, threads_share_the_database, monkeypatch
):
    make_vehicles(user, 40)
    stand_in_for_the_real_poll(
        monkeypatch.setattr, FakePoll(lambda v: PollResult("unchanged", None, False, 1))
    )
    opened = []

    def count(sender, connection, **kwargs):
        opened.append(threading.current_thread().name)

    connection_created.connect(count)
    try:
        summary = polling.run_poll_cycle(workers=16, refresh_fn=no_refresh)
    finally:
        connection_created.disconnect(count)
    assert summary.polled == 40
    writers = [name for name in opened if name.startswith("poller-writer-")]
    # 16 workers, one writer per 8 (a writer that never got a vehicle opens none).
    assert 1 <= len(writers) == len(set(writers)) <= 2
    assert len(opened) == len(set(opened)) <= 16 + 2


# --- end to end with the real poll function and `responses` -------------------------------------

BATCH_URL = "https://api.smartcar.test/v2.0/vehicles/vid-e2e/batch"
TOKEN_URL = "https://auth.smartcar.test/oauth/token"


@pytest.fixture
def linked_vehicle(user, settings) -> Vehicle:
    settings.SMARTCAR_VEHICLE_API = "v2"
    tokens = TokenSet.from_json(
        {"access_token": "access-e2e", "refresh_token": "refresh-e2e", "expires_in": 7200}
    )
    result = account_link(
        owner=user,
        smartcar_user_id="sc-user-e2e",
        tokens=tokens,
        scopes=["read_battery", "read_charge", "read_location", "read_odometer"],
        vehicles=[LinkedVehicleInfo("vid-e2e")],
    )
    return result.vehicles[0]


def real_cycle(clock=None, **options) -> polling.CycleSummary:
    return polling.run_poll_cycle(
        workers=1, clock=clock or Clock(timezone.now()), rng=random.Random(0), **options
    )


def test_e2e_a_good_batch_is_stored_and_scheduled_by_charging_state(
    linked_vehicle, smartcar_api, settings
):
    smartcar_api.post(BATCH_URL, json=json.loads((FIXTURES / "v2_batch_ok.json").read_text()))
    clock = Clock(timezone.now())

    summary = real_cycle(clock)

    assert (summary.polled, summary.stored, summary.failed) == (1, 1, {})
    row = state(linked_vehicle)
    assert row.latest_reading.charging_state == "CHARGING"
    assert row.next_poll_at == clock.now + timedelta(seconds=settings.POLL_INTERVAL_CHARGING)
    assert row.calls_this_month == 4
    assert len(smartcar_api.calls) == 1


def test_e2e_the_outcome_pointer_and_calls_are_one_update(linked_vehicle, smartcar_api):
    smartcar_api.post(BATCH_URL, json=json.loads((FIXTURES / "v2_batch_ok.json").read_text()))

    with CaptureQueriesContext(connection) as queries:
        real_cycle()

    state_updates = [
        q["sql"]
        for q in queries.captured_queries
        if q["sql"].startswith('UPDATE "telemetry_telemetrystate"') and "last_outcome" in q["sql"]
    ]
    assert len(state_updates) == 1
    assert "latest_reading_id" in state_updates[0]
    assert "calls_this_month" in state_updates[0]
    row = state(linked_vehicle)
    assert (row.last_outcome, row.calls_this_month) == ("ok", 4)
    assert row.latest_reading == Reading.objects.get()


def test_e2e_a_failed_poll_counts_its_calls_with_the_outcome(linked_vehicle, smartcar_api):
    smartcar_api.post(
        BATCH_URL,
        status=500,
        json={"type": "SERVER", "code": "INTERNAL", "statusCode": 500, "description": "x"},
    )

    summary = real_cycle()

    row = state(linked_vehicle)
    assert summary.failed == {"failed": 1}
    assert (row.last_outcome, row.calls_this_month, row.latest_reading) == ("failed", 4, None)


def test_e2e_a_lease_lost_during_the_poll_still_keeps_pointer_and_calls(
    linked_vehicle, smartcar_api, caplog
):
    def taken_over_while_in_flight(request):
        TelemetryState.objects.filter(vehicle=linked_vehicle).update(
            lease_owner="host:2:other", lease_until=timezone.now() + timedelta(seconds=300)
        )
        return 200, {}, (FIXTURES / "v2_batch_ok.json").read_text()

    smartcar_api.add_callback("POST", BATCH_URL, callback=taken_over_while_in_flight)

    with caplog.at_level(logging.WARNING, logger="telemetry.services.polling"):
        real_cycle()

    row = state(linked_vehicle)
    assert "lease on vehicle" in caplog.text
    assert (row.lease_owner, row.last_outcome) == ("host:2:other", "")  # not our outcome
    assert row.latest_reading == Reading.objects.get()  # but the reading and the calls
    assert row.calls_this_month == 4


def test_e2e_a_crash_while_recording_still_keeps_pointer_and_calls(
    linked_vehicle, smartcar_api, monkeypatch
):
    smartcar_api.post(BATCH_URL, json=json.loads((FIXTURES / "v2_batch_ok.json").read_text()))

    def broken_plan(**kwargs):
        raise RuntimeError("a bug in the schedule")

    monkeypatch.setattr(polling.schedule, "plan_next_poll", broken_plan)

    summary = real_cycle()

    row = state(linked_vehicle)
    assert summary.failed == {"internal": 1}
    assert row.latest_reading == Reading.objects.get()
    assert row.calls_this_month == 4


def test_e2e_vehicle_rate_limit_honours_retry_after(linked_vehicle, smartcar_api):
    smartcar_api.post(
        BATCH_URL,
        status=429,
        json={"type": "RATE_LIMIT", "code": "VEHICLE", "statusCode": 429, "description": "x"},
        headers={"Retry-After": "5000", "SC-Request-Id": "req-rl"},
    )
    clock = Clock(timezone.now())
    summary = real_cycle(clock)
    row = state(linked_vehicle)
    assert summary.failed == {"rate_limited": 1}
    assert row.next_poll_at == clock.now + timedelta(seconds=5000)
    assert row.last_error == "RATE_LIMIT:VEHICLE request_id=req-rl"
    assert not AppThrottle.objects.filter(paused_until__isnull=False).exists()

    clock.advance(4999)
    assert real_cycle(clock).polled == 0
    assert len(smartcar_api.calls) == 1


def test_e2e_app_rate_limit_pauses_the_app(linked_vehicle, smartcar_api):
    smartcar_api.post(
        BATCH_URL,
        status=429,
        json={"type": "RATE_LIMIT", "code": "SMARTCAR_API", "statusCode": 429, "description": "x"},
        headers={"Retry-After": "90"},
    )
    clock = Clock(timezone.now())
    real_cycle(clock)
    assert AppThrottle.objects.get(pk=1).paused_until == clock.now + timedelta(seconds=90)
    summary = real_cycle(clock, ignore_schedule=True)
    assert summary.polled == 0
    assert summary.paused_until == clock.now + timedelta(seconds=90)
    assert len(smartcar_api.calls) == 1


def test_e2e_billing_parks_the_vehicle_until_next_month(linked_vehicle, smartcar_api):
    smartcar_api.post(
        BATCH_URL,
        status=430,
        json={
            "type": "BILLING",
            "code": "VEHICLE_REQUEST_LIMIT",
            "statusCode": 430,
            "description": "Upgrade your plan",
        },
    )
    clock = Clock(timezone.now())
    summary = real_cycle(clock)
    row = state(linked_vehicle)
    assert row.last_outcome == "billing"
    assert row.next_poll_at.day == 1
    assert row.next_poll_at > clock.now
    assert row.last_error == "BILLING:VEHICLE_REQUEST_LIMIT"
    assert summary.needs_operator


def test_e2e_bad_client_credentials_need_an_operator(linked_vehicle, smartcar_api):
    SmartcarAccount.objects.filter(pk=linked_vehicle.account_id).update(
        access_expires_at=timezone.now()  # forces a token refresh
    )
    smartcar_api.post(
        TOKEN_URL,
        status=401,
        json={"error": "invalid_client", "error_description": "bad client"},
    )
    summary = real_cycle()
    assert summary.failed == {"configuration": 1}
    assert summary.needs_operator
    row = state(linked_vehicle)
    assert row.last_outcome == "failed"
    assert "bad client" not in row.last_error


def test_e2e_invalid_grant_marks_reauth_and_stops_polling(linked_vehicle, smartcar_api):
    SmartcarAccount.objects.filter(pk=linked_vehicle.account_id).update(
        access_expires_at=timezone.now()
    )
    smartcar_api.post(
        TOKEN_URL,
        status=400,
        json={"error": "invalid_grant", "error_description": "Invalid refresh_token: refresh-e2e."},
    )
    summary = real_cycle()
    assert summary.failed == {"reauth": 1}
    assert not summary.needs_operator
    row = state(linked_vehicle)
    assert (row.next_poll_at, row.last_outcome) == (None, "reauth")
    assert "refresh-e2e" not in row.last_error
    assert real_cycle(ignore_schedule=True).polled == 0
    assert len(smartcar_api.calls) == 1


@pytest.mark.django_db(transaction=True)
def test_worker_threads_leave_no_database_connection_open(user):
    if connection.vendor != "postgresql":
        pytest.skip("counts server-side connections, which only PostgreSQL has")
    make_vehicles(user, 16)

    def open_connections() -> int:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            )
            return cursor.fetchone()[0]

    def settled_connections(expected: int) -> int:
        # A closed connection's backend leaves pg_stat_activity a moment after the client hung
        # up (the workers close theirs as the cycle ends): wait for that, a leak stays.
        deadline = time.monotonic() + 5
        while (count := open_connections()) != expected and time.monotonic() < deadline:
            time.sleep(0.05)
        return count

    before = open_connections()
    poll = FakePoll(lambda v: PollResult("unchanged", None, False, 1))
    polling.run_poll_cycle(poll_fn=poll, workers=8, refresh_fn=no_refresh)
    assert len(poll.polled) == 16
    assert settled_connections(before) == before


@pytest.mark.django_db(transaction=True)
def test_each_worker_thread_opens_one_connection_for_the_whole_cycle(
    user, threads_share_the_database
):
    make_vehicles(user, 40)
    opened = []

    def count(sender, connection, **kwargs):
        opened.append(threading.get_ident())

    connection_created.connect(count)
    try:
        poll = FakePoll(lambda v: PollResult("unchanged", None, False, 1))
        summary = polling.run_poll_cycle(poll_fn=poll, workers=4, refresh_fn=no_refresh)
    finally:
        connection_created.disconnect(count)
    assert summary.polled == 40
    assert len(opened) <= 4  # not one per vehicle
    assert len(set(opened)) == len(opened)
