"""`reading_buckets` against a plain-Python reference over arbitrary readings.

The aggregate is one SQL scan plus a lookup of each bucket's last position by time; this checks
it on both databases against the definition: readings in [start, end) of this vehicle only,
grouped by epoch-aligned bucket, with count, mean state of charge, charging share and the
position of the newest reading that has one.
"""

from datetime import UTC, datetime, timedelta
from unittest.mock import patch

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from telemetry.models import Reading
from telemetry.selectors import reading_buckets
from telemetry.tests.api_support import link_account
from vehicles.models import Vehicle

pytestmark = pytest.mark.django_db

BASE = datetime(2025, 3, 1, 9, 50, tzinfo=UTC)
STATES = [None, *Reading.ChargingState.values]

readings = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=60),  # minutes after BASE: dense, so buckets are shared
        st.sampled_from([0, 1, 999_999]),  # microseconds: few values, so times coincide
        st.none() | st.floats(min_value=0, max_value=100),
        st.sampled_from(STATES),
        st.booleans(),  # has a position
        st.booleans(),  # belongs to the other vehicle
    ),
    min_size=1,
    max_size=40,
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


@settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    rows=readings,
    bucket_seconds=st.sampled_from([15 * 60, 60 * 60, 24 * 60 * 60]),
    window=st.tuples(st.integers(0, 60), st.integers(1, 70)),
)
def test_buckets_match_the_definition(vehicles, rows, bucket_seconds, window):
    mine, other = vehicles
    Reading.objects.all().delete()
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

    mine_only = [r for r in stored if r.vehicle_id == mine.pk]
    assert got == reference(mine_only, start=start, end=end, bucket_seconds=bucket_seconds)


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
