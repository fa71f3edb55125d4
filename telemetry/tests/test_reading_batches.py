"""telemetry.services.reading_batches: many readings stored at once, as one by one would."""

import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import OperationalError, connection
from django.test.utils import CaptureQueriesContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from telemetry.mapping import ReadingData
from telemetry.models import Reading, TelemetryState
from telemetry.services.reading_batches import NewReading, telemetry_store_readings
from telemetry.services.readings import telemetry_store_reading
from telemetry.tests.webhook_support import link
from vehicles.models import Vehicle

pytestmark = pytest.mark.django_db

BASE = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
WEBHOOK = Reading.Source.WEBHOOK


def at(minute: int) -> datetime:
    return BASE + timedelta(minutes=minute)


def loaded(vehicle_ids) -> list[Vehicle]:
    """The vehicles as a webhook batch loads them: with their state and latest reading."""
    by_id = {
        v.smartcar_vehicle_id: v
        for v in Vehicle.objects.select_related("telemetry_state__latest_reading").filter(
            smartcar_vehicle_id__in=vehicle_ids
        )
    }
    return [by_id[vid] for vid in vehicle_ids]


def held(vehicle) -> list[tuple]:
    return list(
        Reading.objects.filter(vehicle=vehicle)
        .order_by("recorded_at")
        .values_list("recorded_at", "soc_pct", "received_at", "source")
    )


def pointer(vehicle) -> tuple | None:
    state = TelemetryState.objects.filter(vehicle=vehicle).select_related("latest_reading").first()
    if state is None:
        return None
    latest = state.latest_reading
    return (True, None if latest is None else (latest.recorded_at, latest.soc_pct))


def cached_latest(vehicle) -> datetime | None:
    if not Vehicle.telemetry_state.is_cached(vehicle):
        return None
    try:
        latest = vehicle.telemetry_state.latest_reading
    except TelemetryState.DoesNotExist:  # cached as "no row"
        return None
    return None if latest is None else latest.recorded_at


@pytest.fixture
def pairs(user):
    """Three vehicles stored in batches, three twins stored one by one."""
    link(user, vehicle_ids=("a0", "a1", "a2", "b0", "b1", "b2"))
    return ("a0", "a1", "a2"), ("b0", "b1", "b2")


# Per vehicle: no state row / a state without a reading / a latest reading at minute m; and
# whether a poll moves the live pointer to minute m + 3 after the batch loaded the vehicle.
starts = st.tuples(
    st.one_of(st.none(), st.just(-1), st.integers(0, 6)),
    st.booleans(),
)
# Readings: vehicle index, vehicle minute (None: no vehicle time, the received time is used), soc.
batches = st.lists(
    st.tuples(st.integers(0, 2), st.one_of(st.none(), st.integers(0, 8)), st.integers(0, 100)),
    min_size=1,
    max_size=12,
)


def prepare(vehicle_ids, start_of) -> None:
    for vid, (start, _) in zip(vehicle_ids, start_of, strict=True):
        vehicle = Vehicle.objects.get(smartcar_vehicle_id=vid)
        if start is None:
            continue
        state = TelemetryState.objects.create(vehicle=vehicle)
        if start >= 0:
            state.latest_reading = Reading.objects.create(
                vehicle=vehicle, recorded_at=at(start), received_at=BASE, source="poll", soc_pct=1
            )
            state.save()


def poll_meanwhile(vehicles, start_of) -> None:
    """A poll stores a newer reading and moves the live pointer after the batch loaded them."""
    for vehicle, (start, moves) in zip(vehicles, start_of, strict=True):
        if moves and start is not None and start >= 0:
            telemetry_store_reading(
                vehicle=Vehicle.objects.get(pk=vehicle.pk),
                data=ReadingData(recorded_at=at(start + 3), soc_pct=2),
                source="poll",
                received_at=BASE,
            )


@settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(start_of=st.tuples(starts, starts, starts), readings=batches)
def test_a_batch_ends_as_the_same_readings_stored_one_by_one(pairs, start_of, readings):
    Reading.objects.all().delete()
    TelemetryState.objects.all().delete()
    batch_ids, twin_ids = pairs
    prepare(batch_ids, start_of)
    prepare(twin_ids, start_of)
    batch_side, twin_side = loaded(batch_ids), loaded(twin_ids)
    poll_meanwhile(batch_side, start_of)
    poll_meanwhile(twin_side, start_of)

    def new(vehicles, index, minute, soc, n):
        received = at(20 + n)  # each reading received at its own time
        data = ReadingData(recorded_at=None if minute is None else at(minute), soc_pct=soc)
        return NewReading(vehicles[index], data, received)

    outcomes = telemetry_store_readings(
        [new(batch_side, i, m, soc, n) for n, (i, m, soc) in enumerate(readings)], source=WEBHOOK
    )
    for n, (i, m, soc) in enumerate(readings):
        one = new(twin_side, i, m, soc, n)
        telemetry_store_reading(
            vehicle=one.vehicle, data=one.data, source=WEBHOOK, received_at=one.received_at
        )

    assert outcomes == [None] * len(readings)
    for ours, twin in zip(batch_side, twin_side, strict=True):
        assert held(ours) == held(twin)
        assert pointer(ours) == pointer(twin)
        assert cached_latest(ours) == cached_latest(twin)


def test_new_readings_of_many_vehicles_take_one_insert_and_one_update_per_64(user):
    vehicle_ids = tuple(f"vid-{n}" for n in range(130))
    linked = link(user, vehicle_ids=vehicle_ids)
    TelemetryState.objects.bulk_create([TelemetryState(vehicle=v) for v in linked.vehicles])
    vehicles = loaded(vehicle_ids)
    readings = [
        NewReading(v, ReadingData(recorded_at=at(n % 7), soc_pct=n), BASE)
        for n, v in enumerate(vehicles)
    ]

    with CaptureQueriesContext(connection) as captured:
        outcomes = telemetry_store_readings(readings, source=WEBHOOK)

    statements = [q["sql"].split(" ", 1)[0] for q in captured.captured_queries]
    # Inside the test's transaction the INSERT takes a savepoint (in autocommit, none). Django
    # splits it in two on SQLite, which takes at most 999 parameters a statement.
    assert set(statements) == {"SAVEPOINT", "INSERT", "RELEASE", "UPDATE"}
    assert statements.count("INSERT") <= 2
    assert statements.count("UPDATE") == 3  # pointers, 64 vehicles a statement
    assert outcomes == [None] * len(readings)
    states = TelemetryState.objects.select_related("latest_reading", "vehicle")
    assert {(s.vehicle.smartcar_vehicle_id, s.latest_reading.soc_pct) for s in states} == {
        (f"vid-{n}", n) for n in range(130)
    }


def test_a_vehicle_time_a_poll_stored_meanwhile_sends_the_batch_one_by_one(user):
    link(user, vehicle_ids=("vid-1", "vid-2"))
    first, second = loaded(("vid-1", "vid-2"))
    # Stored after the batch loaded its vehicles: the batch's INSERT meets the unique index.
    poll = Reading.objects.create(
        vehicle=first, recorded_at=at(5), received_at=BASE, source="poll", soc_pct=10
    )
    readings = [
        NewReading(first, ReadingData(recorded_at=at(5), soc_pct=99), BASE),
        NewReading(second, ReadingData(recorded_at=at(5), soc_pct=40), BASE),
    ]

    outcomes = telemetry_store_readings(readings, source=WEBHOOK)

    assert outcomes == [None, None]
    assert list(Reading.objects.filter(vehicle=first)) == [poll]  # no twin, the poll's kept
    assert Reading.objects.get(vehicle=second).soc_pct == 40
    assert TelemetryState.objects.get(vehicle=second).latest_reading.soc_pct == 40


def fail(prefix: str):
    def wrapper(execute, sql, params, many, context):
        if sql.startswith(prefix):
            raise OperationalError("server closed the connection unexpectedly")
        return execute(sql, params, many, context)

    return wrapper


def test_a_database_failure_is_handed_back_in_each_readings_place(user):
    link(user, vehicle_ids=("vid-1", "vid-2"))
    vehicles = loaded(("vid-1", "vid-2"))
    readings = [NewReading(v, ReadingData(recorded_at=at(1), soc_pct=5), BASE) for v in vehicles]

    with connection.execute_wrapper(fail(f'INSERT INTO "{Reading._meta.db_table}"')):
        outcomes = telemetry_store_readings(readings, source=WEBHOOK)

    assert [type(outcome) for outcome in outcomes] == [OperationalError, OperationalError]
    assert not Reading.objects.exists()


def test_pointers_that_cannot_be_moved_fail_the_readings_that_needed_them(user):
    link(user, vehicle_ids=("vid-1",))
    (vehicle,) = loaded(("vid-1",))
    TelemetryState.objects.create(vehicle=vehicle)
    (vehicle,) = loaded(("vid-1",))
    readings = [NewReading(vehicle, ReadingData(recorded_at=at(1), soc_pct=5), BASE)]

    with connection.execute_wrapper(fail(f'UPDATE "{TelemetryState._meta.db_table}"')):
        outcomes = telemetry_store_readings(readings, source=WEBHOOK)

    assert [type(outcome) for outcome in outcomes] == [OperationalError]
    assert Reading.objects.count() == 1  # stored; a retry finds it and stores no twin
    assert cached_latest(vehicle) is None  # the cached state follows what was written


def test_an_empty_reading_or_unknown_source_is_refused_before_anything_is_written(user):
    link(user, vehicle_ids=("vid-1",))
    (vehicle,) = loaded(("vid-1",))
    readings = [
        NewReading(vehicle, ReadingData(recorded_at=at(1), soc_pct=5), BASE),
        NewReading(vehicle, ReadingData(recorded_at=at(2)), BASE),
    ]

    with pytest.raises(ValueError, match="empty"):
        telemetry_store_readings(readings, source=WEBHOOK)
    with pytest.raises(ValueError, match="unknown reading source"):
        telemetry_store_readings(readings[:1], source="carrier-pigeon")
    assert not Reading.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_two_batches_storing_the_same_vehicle_times_at_once_store_each_once(user):
    # Two followers (or a follower and a retry) with the same readings, in opposite orders.
    if connection.vendor == "sqlite" and connection.is_in_memory_db():
        pytest.skip("the in-memory SQLite test database fails concurrent writers")
    vehicle_ids = tuple(f"vid-{n}" for n in range(20))
    linked = link(user, vehicle_ids=vehicle_ids)
    TelemetryState.objects.bulk_create([TelemetryState(vehicle=v) for v in linked.vehicles])
    barrier = threading.Barrier(2)
    outcomes: list[list] = []
    errors: list[BaseException] = []

    def follower(reverse: bool) -> None:
        try:
            vehicles = loaded(vehicle_ids)
            readings = [
                NewReading(v, ReadingData(recorded_at=at(minute), soc_pct=minute), BASE)
                for v in vehicles
                for minute in (1, 2)
            ]
            barrier.wait(timeout=10)
            outcomes.append(
                telemetry_store_readings(readings[::-1] if reverse else readings, source=WEBHOOK)
            )
        except BaseException as exc:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=follower, args=(reverse,)) for reverse in (False, True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert not errors
    assert outcomes == [[None] * 40, [None] * 40]
    assert Reading.objects.count() == 40  # no twin
    states = TelemetryState.objects.select_related("latest_reading")
    assert {s.latest_reading.recorded_at for s in states} == {at(2)}
