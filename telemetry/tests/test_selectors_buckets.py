"""`reading_buckets` and the hourly rollup against a plain-Python reference over arbitrary
readings.

Buckets of whole hours add the rollup's hours (kept by database triggers) to the partial hours at
either end, read from the readings; other sizes scan the readings. This checks both paths on both
databases against the definition: readings in [start, end) of this vehicle only, grouped by
epoch-aligned bucket, with count, mean state of charge, charging share and the position of the
newest reading that has one; also after readings were deleted and changed, which the triggers
must follow.
"""

from datetime import UTC, datetime, timedelta
from unittest.mock import patch

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from telemetry.models import Reading, ReadingHour
from telemetry.selectors import reading_buckets
from telemetry.tests.api_support import link_account
from vehicles.models import Vehicle

pytestmark = pytest.mark.django_db

BASE = datetime(2025, 3, 1, 9, 50, tzinfo=UTC)
STATES = [None, *Reading.ChargingState.values]

readings = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=200),  # minutes after BASE: a few whole hours
        st.sampled_from([0, 1, 999_999]),  # microseconds: few values, so times coincide
        st.none() | st.floats(min_value=0, max_value=100),
        st.sampled_from(STATES),
        st.booleans(),  # has a position
        st.booleans(),  # belongs to the other vehicle
    ),
    min_size=1,
    max_size=60,
    unique_by=lambda r: (r[0], r[1], r[5]),
)


def reference(rows, *, start, end, bucket_seconds):
    buckets: dict[int, list] = {}
    for row in rows:
        if start <= row.recorded_at < end:
            epoch = int(row.recorded_at.timestamp()) // bucket_seconds * bucket_seconds
            buckets.setdefault(epoch, []).append(row)
    result = []
    for epoch in sorted(buckets, reverse=True):
        members = buckets[epoch]
        socs = [r.soc_pct for r in members if r.soc_pct is not None]
        with_state = [r for r in members if r.charging_state is not None]
        positioned = [r for r in members if r.latitude is not None and r.longitude is not None]
        last = max(positioned, key=lambda r: r.recorded_at) if positioned else None
        charging = sum(1 for r in with_state if r.charging_state == "CHARGING")
        result.append(
            (
                epoch,
                len(members),
                pytest.approx(sum(socs) / len(socs)) if socs else None,
                charging / len(with_state) if with_state else None,
                (last.latitude, last.longitude) if last else (None, None),
            )
        )
    return result


@pytest.fixture
def vehicles(user):
    link_account(user, vehicle_ids=("vid-1", "vid-2"))
    return list(Vehicle.objects.order_by("smartcar_vehicle_id"))


# What happens to stored readings before the buckets are read: (index into the stored readings,
# change). A moved reading gets a microsecond no generated reading has, so no two collide.
changes = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=59),
        st.sampled_from(["delete", "move", "soc", "unposition"]),
        st.integers(min_value=0, max_value=200),  # the minute a "move" goes to
    ),
    max_size=8,
    unique_by=lambda c: c[0],
)


def rollup_table():
    """ReadingHour's rows, keyed and shaped as `hourly_reference` gives them."""
    return {
        (h.vehicle_id, h.hour_epoch): (
            h.readings,
            h.soc_sum,
            h.soc_count,
            h.with_state,
            h.charging,
            h.last_position_at,
            h.last_latitude,
            h.last_longitude,
        )
        for h in ReadingHour.objects.all()
    }


def hourly_reference(rows):
    """The rollup's definition over `rows`: per (vehicle, UTC hour), the reading count, the
    state-of-charge sum and count, readings with a charging state and those CHARGING, and the
    newest positioned reading's time, latitude and longitude."""
    hours: dict[tuple, list] = {}
    for row in rows:
        hour = int(row.recorded_at.timestamp()) // 3600 * 3600
        hours.setdefault((row.vehicle_id, hour), []).append(row)
    result = {}
    for key, members in hours.items():
        socs = [r.soc_pct for r in members if r.soc_pct is not None]
        positioned = [r for r in members if r.latitude is not None and r.longitude is not None]
        last = max(positioned, key=lambda r: r.recorded_at) if positioned else None
        result[key] = (
            len(members),
            pytest.approx(sum(socs)),
            len(socs),
            sum(1 for r in members if r.charging_state is not None),
            sum(1 for r in members if r.charging_state == "CHARGING"),
            last.recorded_at if last else None,
            last.latitude if last else None,
            last.longitude if last else None,
        )
    return result


def apply_changes(stored, changes):
    """Applies `changes` in the database (one multi-row DELETE, single-row UPDATEs) and to the
    in-memory copies; returns the readings that remain."""
    doomed = {stored[i].pk for i, change, _ in changes if i < len(stored) and change == "delete"}
    Reading.objects.filter(pk__in=doomed).delete()
    for index, change, minute in changes:
        if index >= len(stored) or change == "delete":
            continue
        reading = stored[index]
        if change == "move":
            reading.recorded_at = BASE + timedelta(minutes=minute, microseconds=500_000 + index)
        elif change == "soc":
            reading.soc_pct = None if reading.soc_pct is not None else 42.0
            reading.charging_state = "CHARGING"
        else:
            reading.latitude = reading.longitude = None
        Reading.objects.filter(pk=reading.pk).update(
            recorded_at=reading.recorded_at,
            soc_pct=reading.soc_pct,
            charging_state=reading.charging_state,
            latitude=reading.latitude,
            longitude=reading.longitude,
        )
    return [r for r in stored if r.pk not in doomed]


@settings(
    max_examples=80,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    rows=readings,
    changes=changes,
    bucket_seconds=st.sampled_from([15 * 60, 60 * 60, 24 * 60 * 60]),
    window=st.tuples(st.integers(0, 200), st.integers(1, 250)),
)
def test_buckets_match_the_definition(vehicles, rows, changes, bucket_seconds, window):
    mine, other = vehicles
    Reading.objects.all().delete()
    assert not ReadingHour.objects.exists()
    stored = Reading.objects.bulk_create(
        Reading(
            vehicle=other if is_other else mine,
            recorded_at=BASE + timedelta(minutes=minute, microseconds=micro),
            received_at=BASE,
            source=Reading.Source.POLL,
            soc_pct=soc,
            charging_state=state,
            # Distinct per reading and vehicle, so a wrong pick cannot match by accident.
            latitude=minute + micro / 1e6 + (1000 if is_other else 0) if positioned else None,
            longitude=-minute if positioned else None,
        )
        for minute, micro, soc, state, positioned, is_other in rows
    )
    remaining = apply_changes(stored, changes)
    start = BASE + timedelta(minutes=window[0])
    end = start + timedelta(minutes=window[1])

    got = [
        (
            b.start_epoch,
            b.readings,
            b.soc_pct_mean,
            b.charging_share,
            (b.last_latitude, b.last_longitude),
        )
        for b in reading_buckets(vehicle=mine, start=start, end=end, bucket_seconds=bucket_seconds)
    ]

    mine_only = [r for r in remaining if r.vehicle_id == mine.pk]
    assert got == reference(mine_only, start=start, end=end, bucket_seconds=bucket_seconds)
    assert rollup_table() == hourly_reference(remaining)


@pytest.mark.parametrize("sqlite_before_3_38", [False, True])
def test_bounds_and_positions_at_the_same_time_on_another_vehicle(vehicles, sqlite_before_3_38):
    """Edges the random data rarely hits: a reading exactly at `start` counts, one exactly at
    `end` does not, and another vehicle's reading at the same time never lends its position.
    On SQLite, also with strftime() where unixepoch() is missing (older than 3.38)."""
    if sqlite_before_3_38:
        patcher = patch("telemetry.selectors.sqlite_has_unixepoch", return_value=False)
        patcher.start()
        # Fractional seconds must floor the same way in both expressions.
        start_offset = timedelta(minutes=10, microseconds=999_999)
    else:
        patcher = None
        start_offset = timedelta(minutes=10)
    mine, other = vehicles
    start, end = BASE + start_offset, BASE + timedelta(minutes=70)
    for vehicle, latitude in ((mine, 1.0), (other, 99.0)):
        for at in (start, start + timedelta(minutes=5), end):
            Reading.objects.create(
                vehicle=vehicle,
                recorded_at=at,
                received_at=at,
                source=Reading.Source.POLL,
                soc_pct=50.0,
                latitude=latitude if at != start + timedelta(minutes=5) else None,
                longitude=2.0 if at != start + timedelta(minutes=5) else None,
            )

    try:
        buckets = reading_buckets(vehicle=mine, start=start, end=end, bucket_seconds=3600)
    finally:
        if patcher is not None:
            patcher.stop()

    assert [(b.start, b.readings, b.last_latitude) for b in buckets] == [
        (datetime(2025, 3, 1, 10, tzinfo=UTC), 2, 1.0)
    ]


@pytest.mark.parametrize(
    ("positioned_minutes", "expected_latitude"),
    [
        ((5, 15, 75, 135), 135.0),  # the later edge (12:05, a partial hour) wins
        ((5, 15, 75), 75.0),  # else the newest whole hour (11:05) wins over an older one
        ((5,), 5.0),  # else the earlier edge (09:55)
    ],
)
def test_a_day_bucket_takes_the_newest_position_of_its_parts(
    vehicles, positioned_minutes, expected_latitude
):
    """Random data rarely gives one bucket positions in both edges and several whole hours."""
    mine, _ = vehicles
    for minute in (5, 15, 75, 135, 136):  # 09:55, 10:05, 11:05, 12:05, 12:06
        positioned = minute in positioned_minutes
        Reading.objects.create(
            vehicle=mine,
            recorded_at=BASE + timedelta(minutes=minute),
            received_at=BASE,
            source=Reading.Source.POLL,
            latitude=float(minute) if positioned else None,
            longitude=0.0 if positioned else None,
            soc_pct=10.0,
        )

    (bucket,) = reading_buckets(
        vehicle=mine,
        start=BASE + timedelta(minutes=1),  # 09:51: a partial hour first
        end=BASE + timedelta(minutes=140),  # 12:10: and a partial hour last
        bucket_seconds=24 * 3600,
    )

    assert (bucket.readings, bucket.last_latitude) == (5, expected_latitude)


def test_partial_hours_put_a_reading_at_an_hours_last_microsecond_in_that_hour(vehicles):
    mine, _ = vehicles
    last_of_ten = datetime(2025, 3, 1, 10, 59, 59, 999_999, tzinfo=UTC)
    for at in (
        last_of_ten,
        last_of_ten + timedelta(microseconds=1),
        last_of_ten + timedelta(hours=1),
    ):
        Reading.objects.create(
            vehicle=mine, recorded_at=at, received_at=at, source=Reading.Source.POLL, soc_pct=1.0
        )

    buckets = reading_buckets(
        vehicle=mine,
        start=datetime(2025, 3, 1, 10, 30, tzinfo=UTC),  # 10:30-11:00 is a partial hour
        end=datetime(2025, 3, 1, 12, 30, tzinfo=UTC),  # 11:00-12:00 whole, 12:00-12:30 partial
        bucket_seconds=3600,
    )

    assert [(b.start.hour, b.readings) for b in buckets] == [(11, 2), (10, 1)]
