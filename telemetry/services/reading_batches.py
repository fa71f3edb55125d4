"""Storing many readings at once, as `telemetry_store_reading` would store them one by one.

A webhook follower's claimed batch (`webhook_events_process_batch`) carries a reading per event.
One at a time, each costs the database an INSERT and a pointer UPDATE, each its own commit;
those statements were most of what a follower's PostgreSQL backend did while the webhook
answers waited for the same CPUs (issue 8, docs/performance.md). Here the batch's new readings
go in with one INSERT and the vehicles' latest pointers move with one UPDATE per 64 vehicles
(`core.compiled_select.RowsUpdate`).

Same results as one by one, in order: a reading at the vehicle time of the latest one, or of
one before it in the batch, is not stored again; the pointer only moves forward, decided against
the live row. What the batch cannot decide from the state its vehicles were loaded with (a
reading older than the latest, which needs the twin check in history; a vehicle loaded without
its state) is stored alone afterwards. If the INSERT fails (a poll stored one of those vehicle
times a moment ago, or the database is down) every reading is stored alone, so each reports its
own outcome.

Owns: `telemetry_store_readings`. Must never: store a twin, move a pointer backwards, or raise
for one reading's failure (it is returned, in that reading's place).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import DatabaseError
from django.db.models import Case, OuterRef, Q, Subquery, When
from django.db.models.lookups import LessThan
from django.utils import timezone

from core.compiled_select import CompiledUpdate, Param, RowsUpdate, column
from core.transactions import savepoint_if_in_transaction
from telemetry.mapping import ReadingData
from telemetry.models import Reading, TelemetryState
from telemetry.services.readings import (
    cached_state,
    check_reading_source,
    reading_row,
    telemetry_store_reading,
)
from vehicles.models import Vehicle


@dataclass(frozen=True)
class NewReading:
    """One reading to store: the vehicle (loaded with its telemetry state, ideally), the values,
    and when we received them (the vehicle time, if the values carry none)."""

    vehicle: Vehicle
    data: ReadingData
    received_at: datetime


def telemetry_store_readings(
    readings: Sequence[NewReading], *, source: str
) -> list[Exception | None]:
    """Store `readings` (none empty) as `telemetry_store_reading` would, one after another.

    Returns, per reading and in order, None (stored, or held already) or the exception storing
    it raised; never raises itself for a reading's failure. An unknown `source` or an empty
    reading is refused (ValueError) before anything is written.
    """
    check_reading_source(source)
    outcomes: list[Exception | None] = [None] * len(readings)
    together, alone = _plan(readings)
    if len(together) == 1:  # one row needs no bulk INSERT (nor the transaction it takes)
        alone, together = sorted(alone + together), []
    if together:
        rows = [_row(readings[i], source) for i in together]
        try:
            with savepoint_if_in_transaction():
                # In key order: two followers inserting the same vehicle times then wait for
                # each other in one order, never in a cycle (a deadlock, then stored alone).
                Reading.objects.bulk_create(
                    sorted(rows, key=lambda row: (row.vehicle_id, row.recorded_at))
                )
        except DatabaseError:
            alone = sorted(alone + together)
        else:
            error = _move_pointers(rows)
            for i in together:
                outcomes[i] = error
            if error is None:
                _remember_latest(rows, [readings[i].vehicle for i in together])
    for i in alone:
        new = readings[i]
        try:
            telemetry_store_reading(
                vehicle=new.vehicle, data=new.data, source=source, received_at=new.received_at
            )
        except Exception as exc:  # noqa: BLE001 - handed back in the reading's place
            outcomes[i] = exc
    return outcomes


def _plan(readings: Sequence[NewReading]) -> tuple[list[int], list[int]]:
    """Which readings go in together (new and newer than their vehicle's latest), which alone;
    the rest are held already and need nothing."""
    together: list[int] = []
    alone: list[int] = []
    latest: dict[Any, datetime | None] = {}  # per vehicle, as of the readings planned so far
    seen: set[tuple[Any, datetime]] = set()
    for i, new in enumerate(readings):
        if new.data.is_empty():
            raise ValueError("an empty reading is not stored")
        vehicle_pk = new.vehicle.pk
        recorded = new.data.recorded_at or new.received_at
        if (vehicle_pk, recorded) in seen:
            continue  # the same vehicle time earlier in this batch
        seen.add((vehicle_pk, recorded))
        if vehicle_pk not in latest:
            state = cached_state(new.vehicle)
            if state is None:
                alone.append(i)  # its state is read (or created) the usual way
                continue
            held = state.latest_reading
            latest[vehicle_pk] = None if held is None else held.recorded_at
        newest = latest[vehicle_pk]
        if newest is not None and recorded < newest:
            alone.append(i)  # older than the latest: the twin check in history, alone
        elif newest is None or newest < recorded:
            together.append(i)
            latest[vehicle_pk] = recorded
    return together, alone


def _row(new: NewReading, source: str) -> Reading:
    return reading_row(
        vehicle=new.vehicle, data=new.data, source=source, received_at=new.received_at
    )


def _newest_per_vehicle(rows: Sequence[Reading]) -> list[Reading]:
    newest: dict[Any, Reading] = {}
    for row in rows:
        held = newest.get(row.vehicle_id)
        if held is None or held.recorded_at < row.recorded_at:
            newest[row.vehicle_id] = row
    return list(newest.values())


def _move_pointers(rows: Sequence[Reading]) -> Exception | None:
    """Move each vehicle's latest pointer to its newest stored row, where that is newer."""
    try:
        for chunk in _POINTERS.chunks(_newest_per_vehicle(rows)):
            _POINTERS.execute(chunk, now=timezone.now())
    except DatabaseError as exc:
        return exc
    return None


def _remember_latest(rows: Sequence[Reading], vehicles: Sequence[Vehicle]) -> None:
    """Keep the vehicles' cached states in step with the pointers, as one by one would."""
    newest = {row.vehicle_id: row for row in _newest_per_vehicle(rows)}
    for vehicle in vehicles:
        state = cached_state(vehicle)
        row = newest[vehicle.pk]
        if state is not None and (
            state.latest_reading is None or state.latest_reading.recorded_at < row.recorded_at
        ):
            state.latest_reading = row


def _pointer_values(i: int, row: Reading) -> dict[str, Any]:
    return {f"vehicle{i}": row.vehicle_id, f"reading{i}": row.pk, f"recorded{i}": row.recorded_at}


def _pointers_update(size: int) -> CompiledUpdate:
    """Rows of `size` vehicles whose pointer is empty or older than their reading's time (the
    live row decides, as in `telemetry_store_reading`) get that reading; others are untouched."""
    pointer = column(TelemetryState, "latest_reading")
    latest_time = Reading.objects.filter(pk=OuterRef("latest_reading_id")).values("recorded_at")
    moves = Q()
    readings = []
    for i in range(size):
        vehicle = Param(f"vehicle{i}", column(TelemetryState, "vehicle"))
        # A scalar subquery, not EXISTS: PostgreSQL turns 64 EXISTS inside an OR into hashed
        # subplans, each a scan of every reading (40 ms a batch); this is a pk lookup a row.
        older_latest = LessThan(
            Subquery(latest_time), Param(f"recorded{i}", column(Reading, "recorded_at"))
        )
        moves |= Q(vehicle=vehicle) & (Q(latest_reading__isnull=True) | Q(older_latest))
        readings.append(When(vehicle=vehicle, then=Param(f"reading{i}", pointer)))
    return CompiledUpdate(
        lambda: TelemetryState.objects.filter(moves),
        latest_reading=Case(*readings, output_field=pointer),
        updated_at=Param("now", column(TelemetryState, "updated_at")),
    )


_POINTERS: RowsUpdate[Reading] = RowsUpdate(_pointers_update, _pointer_values)
