"""Reading one vehicle from Smartcar, storing readings, and counting the calls we spend.

Owns: `telemetry_poll_vehicle` (one read through the token service, v3 `/signals` or ONE v2
`POST /batch`, classified into a `PollResult`; also as its two steps, `telemetry_poll_read` and
`telemetry_poll_store`, for the poller, whose workers read and whose writer threads store),
`telemetry_store_reading` (dedupe, forward-only latest pointer) and the per-vehicle monthly call
counter on `TelemetryState`.

Must never: raise for Smartcar trouble (every `SmartcarError` and `ReconnectRequiredError` becomes
an outcome); touch the poller's fields (next_poll_at, lease_until, lease_owner, last_outcome…);
call Smartcar for a vehicle whose account is missing or not active; hold a database transaction
around a Smartcar call (the token service needs its lease visible to other workers).

Call counting (what `PollResult.calls` and `calls_this_month` hold): v2 counts every batch
sub-request, as Smartcar bills them (API-FACTS §4, §6), each time a batch is sent, including a
retry after a token refresh and a batch that failed as a whole (we cannot know whether Smartcar
billed it, so the budget errs on the safe side). v3 is assumed to bill one call per page of
`/signals` (UNCONFIRMED in the facts); every request sent is counted, a retried or failed one
included, since each reached Smartcar.

Statements per poll (the poller's hot path, issue 8): a poll that stores a reading moves the
latest pointer and adds the calls in ONE UPDATE; other outcomes add the calls in one UPDATE. The
poller asks for neither (`defer_state_write=True`): the poll then hands that write back as a
`StateWrite`, which the poller folds into its outcome UPDATE (`state_write_columns`), one
statement and one commit less per poll, or applies alone (`telemetry_state_write`). A
vehicle that carries its state (the poller reads the state with `select_related("vehicle")`,
which caches it on the vehicle too) is not read again, and that in-memory state is kept in step
with what we write (latest pointer, month's calls), so the caller needs no re-read either.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError
from django.db.models import Case, Exists, F, OuterRef, Q, Value, When
from django.utils import timezone

from core.compiled_select import CompiledUpdate, Param, column
from core.errors import ReconnectRequiredError
from core.transactions import savepoint_if_in_transaction
from smartcar_client.errors import SmartcarBillingError, SmartcarError
from smartcar_client.factory import client_from_settings
from smartcar_client.types import BatchResponse
from telemetry.mapping import (
    RECORDED_AT,
    ReadingData,
    TelemetryInputError,
    reading_from_batch,
    reading_from_signals,
    v2_paths_for_scopes,
)
from telemetry.models import Reading, TelemetryState
from telemetry.schedule import month_start
from vehicles import tokens
from vehicles.models import SmartcarAccount, Vehicle

logger = logging.getLogger(__name__)

Outcome = TelemetryState.Outcome
ASLEEP_NOTES = frozenset({"VEHICLE_STATE:ASLEEP", "VEHICLE_STATE:UNREACHABLE"})


class TelemetryUnavailableError(Exception):
    """Smartcar answered, but no field came through. The message holds only the per-group notes
    (identifier-like "TYPE:CODE" strings), never upstream text."""

    def __init__(self, field_errors: dict[str, str]) -> None:
        self.field_errors = dict(field_errors)
        detail = ", ".join(f"{group}={note}" for group, note in sorted(self.field_errors.items()))
        super().__init__(f"No telemetry in Smartcar's answer ({detail or 'no known signals'})")


@dataclass(frozen=True)
class StateWrite:
    """What a poll left for its caller to write on the vehicle's TelemetryState: this month's
    calls and, when a reading was stored, the latest pointer's candidate (moved only if newer)."""

    month: date
    calls: int
    reading_pk: Any = None
    recorded: datetime | None = None


@dataclass(frozen=True)
class PollResult:
    outcome: str  # a TelemetryState.Outcome value
    reading: Reading | None  # the stored reading, or the latest one when unchanged; else None
    stored: bool  # False when identical in vehicle time to the last one (or nothing to store)
    calls: int  # billable Smartcar calls made (batch sub-requests counted)
    retry_after: int | None = None  # seconds, from Retry-After
    error: Exception | None = None  # the SmartcarError / ReconnectRequiredError, if any
    app_rate_limited: bool = False  # RATE_LIMIT:SMARTCAR_API: the whole app must wait
    # Only with defer_state_write: the pointer and calls the caller must still write.
    state_write: StateWrite | None = None


@dataclass
class _CallCounter:
    calls: int = 0
    item_errors: list[SmartcarError] = field(default_factory=list)
    counted: bool = False  # the calls were added to the state already (with the stored reading)
    defer: bool = False  # leave the state write to the caller (`pending`)
    pending: StateWrite | None = None


def telemetry_poll_vehicle(
    *, vehicle: Vehicle, source: str = Reading.Source.POLL, defer_state_write: bool = False
) -> PollResult:
    """Read `vehicle` from Smartcar now, store what came back, and count the calls spent.

    With `defer_state_write` the reading is stored but the latest pointer and the call count are
    not written: they come back as `PollResult.state_write`, which the caller must apply (in its
    own UPDATE, or with `telemetry_state_write`). The vehicle's cached state is updated in
    memory as if they were written. If the poll raises, they are written before it propagates.

    Outcomes: OK (stored) / UNCHANGED (same vehicle time as the latest reading); ASLEEP (every
    field failed with VEHICLE_STATE ASLEEP/UNREACHABLE, top level or every item); RATE_LIMITED
    (429, with `retry_after`; `app_rate_limited` for RATE_LIMIT:SMARTCAR_API); BILLING (430);
    REAUTH (ReconnectRequiredError, or an account that is missing or not active: then no HTTP
    call at all); FAILED (anything else Smartcar did, with the error).
    """
    return telemetry_poll_store(
        telemetry_poll_read(vehicle=vehicle, source=source, defer_state_write=defer_state_write)
    )


@dataclass
class PolledRead:
    """One poll's Smartcar read, before anything is stored: `telemetry_poll_vehicle` in two
    steps, so a caller can store on another thread than the one that waited for Smartcar."""

    vehicle: Vehicle
    source: str
    counter: _CallCounter
    data: ReadingData | None = None  # what to store; None when `result` is already final
    result: PollResult | None = None  # a failure, or nothing came through
    no_account: bool = False  # no usable account: no call made, `result` is returned as is


def telemetry_poll_read(
    *, vehicle: Vehicle, source: str = Reading.Source.POLL, defer_state_write: bool = False
) -> PolledRead:
    """The Smartcar half of `telemetry_poll_vehicle`: the read and its classification, nothing
    stored (a token refresh aside). Hand the value to `telemetry_poll_store`, exactly once."""
    check_reading_source(source)
    counter = _CallCounter(defer=defer_state_write)
    account = _usable_account(vehicle)
    if account is None:
        no_call = PollResult(Outcome.REAUTH, None, False, 0, error=ReconnectRequiredError())
        return PolledRead(vehicle, source, counter, result=no_call, no_account=True)
    try:
        return _read_and_classify(vehicle=vehicle, account=account, source=source, counter=counter)
    except BaseException:
        # Calls were spent even if classifying failed: count them whatever happens next.
        _settle(vehicle, counter)
        raise


def telemetry_poll_store(polled: PolledRead) -> PollResult:
    """The database half of `telemetry_poll_vehicle`: store the reading, count the calls (or,
    deferred, hand them back as `PollResult.state_write`), log the outcome."""
    vehicle, counter = polled.vehicle, polled.counter
    if polled.no_account and polled.result is not None:
        return polled.result  # nothing spent, nothing to write
    try:
        result = polled.result or _store(polled)
    except BaseException:
        # Calls were spent even if storing failed: count them whatever happens next.
        _settle(vehicle, counter)
        raise
    if counter.defer:
        if counter.pending is None and counter.calls > 0:
            counter.pending = StateWrite(month=_this_month(), calls=counter.calls)
            _remember_calls(cached_state(vehicle), counter.pending.month, counter.calls)
        result = replace(result, state_write=counter.pending)
    else:
        _settle(vehicle, counter)
    logger.info(
        "telemetry poll vehicle=%s outcome=%s calls=%d error=%s",
        vehicle.pk,
        result.outcome,
        result.calls,
        _error_label(result.error),
    )
    return result


def _store(polled: PolledRead) -> PollResult:
    assert polled.data is not None  # noqa: S101 - PolledRead carries data or a result
    reading, stored = telemetry_store_reading(
        vehicle=polled.vehicle, data=polled.data, source=polled.source, counter=polled.counter
    )
    outcome = Outcome.OK if stored else Outcome.UNCHANGED
    return PollResult(outcome, reading, stored, polled.counter.calls)


def telemetry_state_write(*, vehicle_pk: Any, write: StateWrite) -> None:
    """Apply a poll's deferred state write on its own: the pointer (if newer) and the calls."""
    if write.reading_pk is not None and write.recorded is not None:
        moved = _move_latest_and_count(
            vehicle_pk=vehicle_pk,
            reading_pk=write.reading_pk,
            recorded=write.recorded,
            month=write.month,
            calls=write.calls,
        )
        if moved == 1:
            return
    # No reading, or the state row vanished: count the calls the usual way (it recreates it).
    _count_calls_for(vehicle_pk, write.month, write.calls, state=None)


def state_write_columns(*, with_reading: bool) -> dict[str, Any]:
    """The SET columns of a deferred `StateWrite`, for a caller's own compiled UPDATE of the
    TelemetryState row: `Param`s named "month" and "calls", and with a reading "reading" and
    "recorded" (the pointer moves only if that reading is newer than the live row's)."""
    columns = _calls_columns()
    if with_reading:
        columns["latest_reading"] = _pointer_column()
    return columns


def telemetry_store_reading(
    *,
    vehicle: Vehicle,
    data: ReadingData,
    source: str,
    received_at: datetime | None = None,
    counter: _CallCounter | None = None,
) -> tuple[Reading, bool]:
    """Store `data` unless it is identical in vehicle time to a reading we already hold.

    Returns (reading, stored). Identical in vehicle time = the same `recorded_at` as the latest
    reading (or, for an out-of-order answer, as any earlier reading of the vehicle). An older
    reading is kept in history but never replaces the latest: the pointer only moves forward,
    also when two workers store at once (the move is one conditional UPDATE). `counter` is this
    module's own (a poll's): a stored reading then adds the poll's calls to the month's count in
    the UPDATE that moves the pointer, and marks them counted.
    """
    check_reading_source(source)
    if data.is_empty():
        raise ValueError("an empty reading is not stored")
    received = received_at or timezone.now()
    recorded = data.recorded_at or received
    state = _state_for(vehicle)
    latest = state.latest_reading
    if latest is not None and latest.recorded_at == recorded:
        return latest, False
    if latest is not None and recorded < latest.recorded_at:
        # Rare path (webhook retries, out-of-order answers): one more query to avoid a twin.
        twin = Reading.objects.filter(vehicle_id=vehicle.pk, recorded_at=recorded).first()
        if twin is not None:
            return twin, False
    reading = reading_row(vehicle=vehicle, data=data, source=source, received_at=received)
    try:
        _insert(reading)
    except IntegrityError:
        # A webhook and a poll stored the same vehicle time at the same instant: one row wins.
        return Reading.objects.get(vehicle_id=vehicle.pk, recorded_at=recorded), False
    if counter is not None and counter.defer and counter.calls > 0:
        month = _this_month()
        counter.pending = StateWrite(
            month=month, calls=counter.calls, reading_pk=reading.pk, recorded=recorded
        )
        counter.counted = True
        _remember_calls(state, month, counter.calls)
    elif counter is None or counter.calls <= 0:
        # The condition is checked against the row as it is when the UPDATE runs, not as we read
        # it.
        _MOVE_LATEST.execute(
            vehicle=vehicle.pk, reading=reading.pk, recorded=recorded, now=timezone.now()
        )
    else:
        # One UPDATE for the pointer and the calls: the row is updated whether the pointer moves
        # or not, so the pointer's condition moves into a CASE.
        month = _this_month()
        moved = _move_latest_and_count(
            vehicle_pk=vehicle.pk,
            reading_pk=reading.pk,
            recorded=recorded,
            month=month,
            calls=counter.calls,
        )
        counter.counted = moved == 1  # else the row vanished: counted again in the usual way
        if counter.counted:
            _remember_calls(state, month, counter.calls)
    if latest is None or latest.recorded_at < recorded:
        state.latest_reading = reading  # in step with the pointer (the caller's state, if cached)
    return reading, True


def reading_row(
    *, vehicle: Vehicle, data: ReadingData, source: str, received_at: datetime
) -> Reading:
    """The (unsaved) row for `data`; its vehicle time, or `received_at` if it carries none."""
    return Reading(
        vehicle=vehicle,
        recorded_at=data.recorded_at or received_at,
        received_at=received_at,
        source=source,
        soc_pct=data.soc_pct,
        range_km=data.range_km,
        charging_state=data.charging_state,
        is_plugged_in=data.is_plugged_in,
        latitude=data.latitude,
        longitude=data.longitude,
        odometer_km=data.odometer_km,
        field_errors=dict(data.field_errors),
    )


def _move_latest_and_count(
    *, vehicle_pk: Any, reading_pk: Any, recorded: datetime, month: date, calls: int
) -> int:
    """One UPDATE: move the latest pointer to `reading_pk` if it is newer (or there is none),
    and add `calls` to this month's count. Returns the rows updated (0 if the state vanished)."""
    return _MOVE_LATEST_AND_COUNT.execute(
        vehicle=vehicle_pk,
        reading=reading_pk,
        recorded=recorded,
        month=month,
        calls=calls,
        now=timezone.now(),
    )


def _move_latest_and_count_update() -> CompiledUpdate:
    # The poller's hottest statement: built and compiled on every poll (a CASE holding an
    # EXISTS subquery) it cost more CPU than anything else in a poll (issue 8,
    # docs/performance.md), so it is kept compiled. Column references in SET read the row as it
    # was before the UPDATE, and the pointer's condition is checked against the live row, not
    # the one we read.
    return CompiledUpdate(
        lambda: TelemetryState.objects.filter(
            vehicle=Param("vehicle", column(TelemetryState, "vehicle"))
        ),
        **state_write_columns(with_reading=True),
        updated_at=Param("now", column(TelemetryState, "updated_at")),
    )


def _pointer_column() -> Case:
    reading = Param("reading", column(TelemetryState, "latest_reading"))
    return Case(
        When(latest_reading__isnull=True, then=reading),
        When(_older_latest(), then=reading),
        default=F("latest_reading"),
        output_field=column(TelemetryState, "latest_reading"),
    )


def _older_latest() -> Exists:
    """The live row's latest reading is older than the Param "recorded" (decided when the
    UPDATE runs, not from the row we read)."""
    return Exists(
        Reading.objects.filter(
            pk=OuterRef("latest_reading_id"),
            recorded_at__lt=Param("recorded", column(Reading, "recorded_at")),
        )
    )


def _calls_columns() -> dict[str, Any]:
    month = Param("month", column(TelemetryState, "calls_month"))
    calls = Param("calls", column(TelemetryState, "calls_this_month"))
    return {
        "calls_this_month": Case(
            When(calls_month=month, then=F("calls_this_month") + calls),
            default=calls,
        ),
        "calls_month": month,
    }


_MOVE_LATEST_AND_COUNT = _move_latest_and_count_update()


def _move_latest_update() -> CompiledUpdate:
    # A webhook's reading (no calls to count): the pointer moves, and the row is touched, only
    # if the reading is newer. Compiled once for the same reason as the one above: built per
    # call it was a webhook follower's largest CPU cost (docs/performance.md).
    reading = Param("reading", column(TelemetryState, "latest_reading"))
    older_latest = _older_latest()  # built once: the lambda runs per thread
    return CompiledUpdate(
        lambda: TelemetryState.objects.filter(
            Q(latest_reading__isnull=True) | older_latest,
            vehicle=Param("vehicle", column(TelemetryState, "vehicle")),
        ),
        latest_reading=reading,
        updated_at=Param("now", column(TelemetryState, "updated_at")),
    )


_MOVE_LATEST = _move_latest_update()


def _insert(reading: Reading) -> None:
    with savepoint_if_in_transaction():
        reading.save(force_insert=True)


# --- reading ------------------------------------------------------------------------------------


def _read_and_classify(
    *, vehicle: Vehicle, account: SmartcarAccount, source: str, counter: _CallCounter
) -> PolledRead:
    def final(result: PollResult) -> PolledRead:
        return PolledRead(vehicle, source, counter, result=result)

    try:
        data = _read(vehicle=vehicle, account=account, counter=counter)
    except ReconnectRequiredError as exc:
        return final(_failure(Outcome.REAUTH, counter, exc))
    except SmartcarError as exc:
        return final(_from_error(exc, counter))
    except TelemetryInputError as exc:
        return final(_failure(Outcome.FAILED, counter, exc))
    if data.is_empty():
        return final(_from_empty(data, counter))
    return PolledRead(vehicle, source, counter, data=data)


def _error_label(error: Exception | None) -> str:
    # Type and code only: the class name for anything that is not a SmartcarError.
    if error is None:
        return "-"
    if isinstance(error, SmartcarError):
        return f"{error.type}:{error.code}" if error.code else str(error.type)
    return type(error).__name__


def _usable_account(vehicle: Vehicle) -> SmartcarAccount | None:
    if vehicle.status != Vehicle.Status.ACTIVE or vehicle.account_id is None:
        return None
    account = vehicle.account
    if account is None or account.status != SmartcarAccount.Status.ACTIVE:
        return None
    return account


def _read(*, vehicle: Vehicle, account: SmartcarAccount, counter: _CallCounter) -> ReadingData:
    client = client_from_settings()
    api = settings.SMARTCAR_VEHICLE_API
    vehicle_id = vehicle.smartcar_vehicle_id
    if api == "v2":
        paths = v2_paths_for_scopes(account.scopes if isinstance(account.scopes, list) else [])
        if not paths:
            # Nothing we may read: the person must reconnect granting the telemetry scopes.
            raise ReconnectRequiredError()

        def batch(token: str) -> BatchResponse:
            counter.calls += len(paths)
            return client.batch(token, vehicle_id, paths)

        answer = tokens.account_call(account=account, call=batch)
        counter.item_errors.extend(item.error for item in answer.items if item.error)
        return reading_from_batch(answer)
    if api == "v3":

        def count_request() -> None:
            counter.calls += 1

        def signals(token: str) -> list[dict[str, Any]]:
            return client.list_signals(token, vehicle_id, on_request=count_request)

        return reading_from_signals(tokens.account_call(account=account, call=signals))
    raise ImproperlyConfigured("SMARTCAR_VEHICLE_API must be 'v3' or 'v2'")


# --- classification -----------------------------------------------------------------------------


def _failure(outcome: str, counter: _CallCounter, error: Exception | None) -> PollResult:
    return PollResult(outcome, None, False, counter.calls, error=error)


def _is_rate_limit(error: SmartcarError) -> bool:
    return error.type == "RATE_LIMIT" or error.status == 429


def _is_asleep(error: SmartcarError) -> bool:
    return f"{error.type}:{error.code}" in ASLEEP_NOTES


def _from_error(error: SmartcarError, counter: _CallCounter) -> PollResult:
    if isinstance(error, SmartcarBillingError):
        return _failure(Outcome.BILLING, counter, error)
    if _is_rate_limit(error):
        return PollResult(
            Outcome.RATE_LIMITED,
            None,
            False,
            counter.calls,
            retry_after=error.retry_after,
            error=error,
            app_rate_limited=error.code == "SMARTCAR_API",
        )
    if _is_asleep(error):
        return _failure(Outcome.ASLEEP, counter, error)
    return _failure(Outcome.FAILED, counter, error)


def _from_empty(data: ReadingData, counter: _CallCounter) -> PollResult:
    """No field came through: say why, from the per-item errors (v2) or the notes (v3)."""
    notes = {group: note for group, note in data.field_errors.items() if group != RECORDED_AT}
    errors = counter.item_errors
    fallback = TelemetryUnavailableError(notes)
    if notes and set(notes.values()) <= ASLEEP_NOTES:
        return _failure(Outcome.ASLEEP, counter, errors[0] if errors else fallback)
    billing = next((e for e in errors if isinstance(e, SmartcarBillingError)), None)
    if billing is not None:
        return _failure(Outcome.BILLING, counter, billing)
    limited = [e for e in errors if _is_rate_limit(e)]
    if limited:
        waits = [e.retry_after for e in limited if e.retry_after is not None]
        return PollResult(
            Outcome.RATE_LIMITED,
            None,
            False,
            counter.calls,
            retry_after=max(waits) if waits else None,
            error=limited[0],
            app_rate_limited=any(e.code == "SMARTCAR_API" for e in limited),
        )
    return _failure(Outcome.FAILED, counter, errors[0] if errors else fallback)


# --- state rows ---------------------------------------------------------------------------------


def check_reading_source(source: str) -> None:
    if source not in Reading.Source.values:
        raise ValueError(f"unknown reading source {source!r}")


def cached_state(vehicle: Vehicle) -> TelemetryState | None:
    """The state the caller loaded with this vehicle (no query), if it did."""
    if not Vehicle.telemetry_state.is_cached(vehicle):
        return None
    try:
        return vehicle.telemetry_state
    except TelemetryState.DoesNotExist:  # cached as "no row"
        return None


def _state_for(vehicle: Vehicle) -> TelemetryState:
    # A state the caller loaded a moment ago may be stale, and that is safe: the INSERT's unique
    # (vehicle, recorded_at) and the pointer's conditional UPDATE decide against the live row.
    state = cached_state(vehicle)
    if state is not None:
        return state
    state = (
        TelemetryState.objects.select_related("latest_reading")
        .filter(vehicle_id=vehicle.pk)
        .first()
    )
    if state is None:
        state, _ = TelemetryState.objects.select_related("latest_reading").get_or_create(
            vehicle=vehicle
        )
    return state


def _this_month() -> date:
    return month_start(timezone.now()).date()


def _settle(vehicle: Vehicle, counter: _CallCounter) -> None:
    """Write what the poll spent and has not written yet: a deferred write, or the calls."""
    if counter.pending is not None:
        telemetry_state_write(vehicle_pk=vehicle.pk, write=counter.pending)
        counter.pending = None
    elif not counter.counted:
        _count_calls(vehicle=vehicle, calls=counter.calls)


def _count_calls(*, vehicle: Vehicle, calls: int) -> None:
    """Add `calls` to this month's count in one UPDATE (F(), so concurrent adds never collide);
    a row still on an earlier month starts again from `calls`."""
    _count_calls_for(vehicle.pk, _this_month(), calls, state=cached_state(vehicle))


def _count_calls_for(
    vehicle_pk: Any, month: date, calls: int, *, state: TelemetryState | None
) -> None:
    if calls <= 0:
        return
    counted = _add_calls(vehicle_pk, month, calls)
    if counted == 0:
        _, created = TelemetryState.objects.get_or_create(
            vehicle_id=vehicle_pk, defaults={"calls_month": month, "calls_this_month": calls}
        )
        if not created:
            _add_calls(vehicle_pk, month, calls)
        return
    _remember_calls(state, month, calls)


def _add_calls(vehicle_pk: Any, month: date, calls: int) -> int:
    return TelemetryState.objects.filter(vehicle_id=vehicle_pk).update(
        **_calls_update(month, calls)
    )


def _calls_update(month: date, calls: int) -> dict[str, Any]:
    return {
        "calls_this_month": Case(
            When(calls_month=month, then=F("calls_this_month") + calls),
            default=Value(calls),
        ),
        "calls_month": month,
        "updated_at": timezone.now(),
    }


def _remember_calls(state: TelemetryState | None, month: date, calls: int) -> None:
    # Keep the caller's in-memory state in step with the UPDATE (concurrent adds aside).
    if state is None:
        return
    before = state.calls_this_month if state.calls_month == month else 0
    state.calls_month, state.calls_this_month = month, before + calls
