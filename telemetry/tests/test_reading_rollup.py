"""The hourly rollup (`ReadingHour`) follows every write to the readings, on both databases.

test_selectors_buckets.py checks it against a plain-Python definition over arbitrary inserts,
deletes and updates; this file covers the writers around it: the migration's backfill and its
reversal, pruning, a vehicle's cascade delete, the poller's own store path, and concurrent
inserts into one hour on PostgreSQL.
"""

import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection, connections
from django.db.migrations.executor import MigrationExecutor
from django.db.models import Sum

from telemetry.mapping import ReadingData
from telemetry.models import Reading, ReadingHour
from telemetry.services.pruning import telemetry_prune
from telemetry.services.readings import telemetry_store_reading
from telemetry.tests.test_polling import make_vehicles
from telemetry.tests.test_selectors_buckets import hourly_reference, rollup_table

pytestmark = pytest.mark.django_db

HOUR = datetime(2025, 6, 1, 12, tzinfo=UTC)


def add_readings(vehicle, minutes, *, soc=50.0, positioned=True):
    return Reading.objects.bulk_create(
        Reading(
            vehicle=vehicle,
            recorded_at=HOUR + timedelta(minutes=m),
            received_at=HOUR,
            source=Reading.Source.POLL,
            soc_pct=soc,
            charging_state=Reading.ChargingState.CHARGING,
            latitude=float(m) if positioned else None,  # tells the readings' positions apart
            longitude=2.0 if positioned else None,
        )
        for m in minutes
    )


def rollup_matches_the_readings() -> bool:
    return rollup_table() == hourly_reference(Reading.objects.all())


def test_prune_leaves_the_rollup_matching_the_readings(user):
    (vehicle,) = make_vehicles(user, 1)
    cutoff = datetime.now(UTC) - timedelta(days=30)
    Reading.objects.bulk_create(
        Reading(
            vehicle=vehicle,
            recorded_at=cutoff + timedelta(minutes=m),
            received_at=cutoff,
            source=Reading.Source.POLL,
            soc_pct=float(m),
            latitude=1.0,
            longitude=2.0,
        )
        for m in range(-150, 90, 7)  # hours wholly and partly before the cutoff, and after it
    )

    deleted = telemetry_prune(older_than_days=30, batch_size=5)

    assert deleted == 22
    assert Reading.objects.count() == 13
    assert rollup_matches_the_readings()
    assert sum(readings for readings, *_ in rollup_table().values()) == 13


def test_deleting_a_vehicle_deletes_its_hours(user):
    a, b = make_vehicles(user, 2)
    add_readings(a, range(0, 120, 10))
    add_readings(b, range(0, 120, 10))

    a.delete()

    assert {vehicle for vehicle, _ in rollup_table()} == {b.pk}
    assert rollup_matches_the_readings()


def test_the_store_service_feeds_the_rollup(user):
    (vehicle,) = make_vehicles(user, 1)
    for minute, soc in ((5, 40.0), (65, 60.0), (6, None)):  # the last one arrives out of order
        telemetry_store_reading(
            vehicle=vehicle,
            data=ReadingData(
                recorded_at=HOUR + timedelta(minutes=minute), soc_pct=soc, range_km=100.0
            ),
            source=Reading.Source.WEBHOOK,
        )

    hour = int(HOUR.timestamp())
    assert rollup_table() == {
        (vehicle.pk, hour): (2, 40.0, 1, 0, 0, None, None, None),
        (vehicle.pk, hour + 3600): (1, 60.0, 1, 0, 0, None, None, None),
    }


@pytest.mark.django_db(transaction=True)
def test_migration_backfills_the_rollup_and_reverses_cleanly(user):
    (vehicle,) = make_vehicles(user, 1)
    executor = MigrationExecutor(connection)
    before = [
        ("telemetry", "0004_reading_vehicle_index_in_unique"),
        ("core", "0002_support_webhook_events"),
    ]
    latest = executor.loader.graph.leaf_nodes()
    try:
        executor.migrate(before)
        # Without the triggers, readings stored now are only counted by the backfill.
        add_readings(vehicle, [1, 2, 61], soc=30.0)
        add_readings(vehicle, [3], soc=None, positioned=False)
        executor.loader.build_graph()
        executor.migrate(latest)

        hour = int(HOUR.timestamp())
        assert rollup_table() == {
            (vehicle.pk, hour): (3, 60.0, 2, 3, 3, HOUR + timedelta(minutes=2), 2.0, 2.0),
            (vehicle.pk, hour + 3600): (1, 30.0, 1, 1, 1, HOUR + timedelta(minutes=61), 61.0, 2.0),
        }
        add_readings(vehicle, [4])  # the triggers are in place again
        assert rollup_matches_the_readings()
    finally:
        executor.loader.build_graph()
        executor.migrate(latest)


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_concurrent_inserts_into_one_hour_all_count(user):
    if connection.vendor != "postgresql":
        pytest.skip("SQLite serialises writers; PostgreSQL's concurrent upserts are the race")
    (vehicle,) = make_vehicles(user, 1)
    threads, per_thread = 8, 20
    barrier = threading.Barrier(threads)

    def insert(worker: int) -> None:
        try:
            barrier.wait()
            for n in range(per_thread):
                Reading.objects.create(
                    vehicle=vehicle,
                    recorded_at=HOUR + timedelta(seconds=worker * per_thread + n),
                    received_at=HOUR,
                    source=Reading.Source.POLL,
                    soc_pct=1.0,
                )
        finally:
            connections.close_all()

    workers = [threading.Thread(target=insert, args=(w,)) for w in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()

    totals = ReadingHour.objects.aggregate(readings=Sum("readings"), soc=Sum("soc_sum"))
    assert totals == {"readings": threads * per_thread, "soc": threads * per_thread * 1.0}
    assert ReadingHour.objects.count() == 1
