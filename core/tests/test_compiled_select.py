"""CompiledSelect returns what the ORM returns, for any values and thread, and refuses what it
cannot keep."""

import threading
from datetime import UTC, datetime
from unittest.mock import patch

import pytest
from django.core.exceptions import FieldDoesNotExist
from django.db import connection
from django.db.models import Case, Count, Q, When
from django.db.models.sql.compiler import SQLCompiler
from django.test.utils import CaptureQueriesContext

from core.compiled_select import (
    CompiledRows,
    CompiledSelect,
    CompiledUpdate,
    Param,
    RowsUpdate,
    column,
)
from telemetry.models import Reading, TelemetryState
from telemetry.tests.api_support import link_account
from vehicles.models import Vehicle

pytestmark = pytest.mark.django_db(transaction=True)

AT = datetime(2025, 3, 1, 12, tzinfo=UTC)


OWNER = Vehicle._meta.get_field("owner")


def joined(owner, **filters):
    return (
        Vehicle.objects.filter(owner=owner, **filters)
        .select_related("account", "telemetry_state__latest_reading")
        .defer("account__access_token")
        .order_by("smartcar_vehicle_id")
    )


def snapshot(vehicles):
    """Everything a caller can read without another query, as plain values."""
    result = []
    for vehicle in vehicles:
        state = getattr(vehicle, "telemetry_state", None)
        latest = state.latest_reading if state else None
        result.append(
            (
                vehicle.pk,
                vehicle.smartcar_vehicle_id,
                vehicle.nickname,
                vehicle.connected_at,
                vehicle.account.pk,
                vehicle.account.smartcar_user_id,
                vehicle.account.scopes,
                sorted(vehicle.account.get_deferred_fields()),
                latest.pk if latest else None,
                latest.recorded_at if latest else None,
                latest.soc_pct if latest else None,
            )
        )
    return result


@pytest.fixture
def fleet(user, other_user):
    link_account(user, vehicle_ids=("vid-a", "vid-b", "vid-c"))
    link_account(other_user, smartcar_user_id="sc-user-2", vehicle_ids=("vid-x",), suffix="2")
    first = Vehicle.objects.get(smartcar_vehicle_id="vid-a")
    reading = Reading.objects.create(
        vehicle=first, recorded_at=AT, received_at=AT, source="poll", soc_pct=61.5
    )
    TelemetryState.objects.update_or_create(vehicle=first, defaults={"latest_reading": reading})
    Vehicle.objects.filter(smartcar_vehicle_id="vid-b").update(nickname="Blue")
    return user, other_user


def test_same_rows_and_related_objects_as_the_orm_for_each_caller(fleet):
    user, other_user = fleet
    select = CompiledSelect(lambda: joined(Param("owner", OWNER)))

    for owner in (user, other_user, user):
        fetched = select.fetch(owner=owner.pk)
        with CaptureQueriesContext(connection) as reads:
            got = snapshot(fetched)
        assert got == snapshot(list(joined(owner)))
        assert len(reads) == 0  # account, state and reading came with the row
    assert [v.smartcar_vehicle_id for v in select.fetch(owner=user.pk)] == [
        "vid-a",
        "vid-b",
        "vid-c",
    ]
    assert sorted(select.fetch(owner=user.pk)[0].account.get_deferred_fields()) == ["access_token"]


def test_later_calls_bind_their_own_values_into_the_kept_sql(fleet):
    user, other_user = fleet
    select = CompiledSelect(
        lambda: joined(Param("owner", OWNER), pk=Param("pk", Vehicle._meta.pk))[:1]
    )
    ids = list(Vehicle.objects.filter(owner=user).values_list("pk", flat=True))

    select.fetch(owner=user.pk, pk=ids[0])
    compile_query = SQLCompiler.as_sql
    with patch.object(SQLCompiler, "as_sql", autospec=True, side_effect=compile_query) as compiled:
        for pk in ids:
            with CaptureQueriesContext(connection) as queries:
                found = select.fetch(owner=user.pk, pk=pk)
            assert [v.pk for v in found] == [pk]
            assert len(queries) == 1
        # The value is converted as the ORM converts it: a UUID's text works as well.
        assert [v.pk for v in select.fetch(owner=user.pk, pk=str(ids[1]))] == [ids[1]]
        # Another owner's vehicle is not found through the same SQL.
        assert select.fetch(owner=other_user.pk, pk=ids[0]) == []

    assert compiled.call_count == 0


def test_constants_in_the_queryset_stay_as_written(fleet):
    user, _ = fleet
    select = CompiledSelect(
        lambda: (
            Vehicle.objects.filter(owner=Param("owner", OWNER))
            .exclude(nickname="Blue")
            .order_by("smartcar_vehicle_id")
        )
    )

    assert [v.smartcar_vehicle_id for v in select.fetch(owner=user.pk)] == ["vid-a", "vid-c"]


def test_none_and_wrong_names_are_refused(fleet):
    user, _ = fleet
    select = CompiledSelect(lambda: Vehicle.objects.filter(owner=Param("owner", OWNER)))

    # `= NULL` would match nothing where the ORM's `IS NULL` matches: never bind None.
    with pytest.raises(ValueError, match="'owner' is None"):
        select.fetch(owner=None)
    with pytest.raises(TypeError, match="takes"):
        select.fetch()
    with pytest.raises(TypeError, match="takes"):
        select.fetch(owner=user.pk, year=2020)
    assert len(select.fetch(owner=user.pk)) == 3


@pytest.mark.parametrize(
    "build",
    [
        lambda: Vehicle.objects.filter(owner=Param("owner", OWNER)).values("pk"),
        lambda: Vehicle.objects.filter(owner=Param("owner", OWNER)).annotate(n=Count("pk")),
        lambda: Vehicle.objects.filter(owner=Param("owner", OWNER)).prefetch_related("readings"),
        lambda: Vehicle.objects.filter(owner=Param("owner", OWNER)).distinct(),
    ],
    ids=["values", "annotate", "prefetch", "distinct"],
)
def test_querysets_whose_results_it_would_not_reproduce_are_refused(fleet, build):
    user, _ = fleet
    with pytest.raises(TypeError, match="cannot keep"):
        CompiledSelect(build).fetch(owner=user.pk)


def test_each_thread_compiles_for_its_own_connection(fleet):
    user, other_user = fleet
    select = CompiledSelect(lambda: joined(Param("owner", OWNER)))
    expected = {owner.pk: snapshot(list(joined(owner))) for owner in (user, other_user)}
    select.fetch(owner=user.pk)  # this thread's shape
    results, errors = {}, []

    def run(owner):
        try:
            results[owner.pk] = snapshot(select.fetch(owner=owner.pk))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(owner,)) for owner in (user, other_user)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert results == expected


def test_the_kept_sql_runs_again_after_the_connection_closed(fleet):
    user, _ = fleet
    select = CompiledSelect(lambda: joined(Param("owner", OWNER)))
    expected = snapshot(select.fetch(owner=user.pk))

    connection.close()

    assert snapshot(select.fetch(owner=user.pk)) == expected


# --- CompiledRows: values_list() tuples -------------------------------------------------------


def reading_rows(vehicle, start, end, *, columns=("recorded_at", "soc_pct", "source")):
    return (
        Reading.objects.filter(vehicle=vehicle, recorded_at__gte=start, recorded_at__lt=end)
        .order_by("-recorded_at")
        .values_list(*columns)
    )


RECORDED_AT = Reading._meta.get_field("recorded_at")


def test_rows_are_the_orms_tuples_for_any_range(fleet):
    first = Vehicle.objects.get(smartcar_vehicle_id="vid-a")
    for minute in range(1, 6):
        at = AT.replace(minute=minute)
        Reading.objects.create(
            vehicle=first, recorded_at=at, received_at=at, source="webhook", soc_pct=minute
        )
    rows = CompiledRows(
        lambda: reading_rows(
            Param("vehicle", Reading._meta.get_field("vehicle")),
            Param("start", RECORDED_AT),
            Param("end", RECORDED_AT),
        )
    )

    for start_minute, end_minute in ((0, 6), (2, 4), (4, 2), (0, 1)):
        start, end = AT.replace(minute=start_minute), AT.replace(minute=end_minute)
        got = rows.fetch(vehicle=first.pk, start=start, end=end)
        assert got == list(reading_rows(first, start, end))
    assert rows.fetch(vehicle=first.pk, start=AT, end=AT.replace(minute=2))[0] == (
        AT.replace(minute=1),  # converted: an aware datetime on both databases
        1.0,
        "webhook",
    )


def test_rows_hold_only_the_columns_asked_for_when_another_orders_them(fleet):
    first = Vehicle.objects.get(smartcar_vehicle_id="vid-a")
    rows = CompiledRows(
        lambda: reading_rows(
            Param("vehicle", Reading._meta.get_field("vehicle")),
            Param("start", RECORDED_AT),
            Param("end", RECORDED_AT),
            columns=("soc_pct",),
        )
    )

    assert rows.fetch(vehicle=first.pk, start=AT, end=AT.replace(hour=13)) == [(61.5,)]


@pytest.mark.parametrize(
    "build",
    [
        lambda: Vehicle.objects.filter(owner=Param("owner", OWNER)),
        lambda: Vehicle.objects.filter(owner=Param("owner", OWNER)).values("pk"),
        lambda: Vehicle.objects.filter(owner=Param("owner", OWNER)).values_list("pk", flat=True),
        lambda: Vehicle.objects.filter(owner=Param("owner", OWNER)).values_list("pk", named=True),
        lambda: (
            Vehicle.objects.filter(owner=Param("owner", OWNER))
            .annotate(n=Count("pk"))
            .values_list("pk", "n")
        ),
    ],
    ids=["models", "values", "flat", "named", "annotate"],
)
def test_rows_refuse_other_querysets(fleet, build):
    user, _ = fleet
    with pytest.raises(TypeError, match="cannot keep"):
        CompiledRows(build).fetch(owner=user.pk)


# --- CompiledUpdate ------------------------------------------------------------------------------

STATE = TelemetryState._meta


def leased_update(**values):
    return CompiledUpdate(
        lambda: TelemetryState.objects.filter(
            vehicle=Param("vehicle", STATE.get_field("vehicle")),
            lease_owner=Param("owner", STATE.get_field("lease_owner")),
        ),
        **values,
    )


def state_row(vehicle):
    return TelemetryState.objects.filter(vehicle=vehicle).values(
        "last_outcome", "last_error", "consecutive_failures", "lease_until", "updated_at"
    )[0]


def test_update_changes_what_the_orms_update_changes(fleet):
    user, _ = fleet
    ours, twin = Vehicle.objects.filter(owner=user).order_by("smartcar_vehicle_id")[:2]
    for vehicle in (ours, twin):
        TelemetryState.objects.update_or_create(
            vehicle=vehicle, defaults={"lease_owner": "me", "lease_until": AT}
        )
    update = leased_update(
        last_outcome=Param("outcome", STATE.get_field("last_outcome")),
        consecutive_failures=Param("failures", STATE.get_field("consecutive_failures")),
        updated_at=Param("now", STATE.get_field("updated_at")),
        last_error="",
        lease_until=None,
    )
    values = {"outcome": "ok", "failures": 3, "now": AT}

    changed = update.execute(vehicle=ours.pk, owner="me", **values)
    orm_changed = TelemetryState.objects.filter(vehicle=twin, lease_owner="me").update(
        last_outcome="ok", consecutive_failures=3, updated_at=AT, last_error="", lease_until=None
    )

    assert changed == orm_changed == 1
    assert state_row(ours) == state_row(twin)
    assert state_row(ours)["lease_until"] is None
    # Another owner's lease, or a later call's own values: the kept SQL binds each call's.
    assert update.execute(vehicle=ours.pk, owner="someone-else", **values) == 0
    assert update.execute(vehicle=ours.pk, owner="me", **{**values, "failures": 7}) == 1
    assert state_row(ours)["consecutive_failures"] == 7


def test_update_refuses_none_and_wrong_names(fleet):
    user, _ = fleet
    vehicle = Vehicle.objects.filter(owner=user).first()
    update = leased_update(last_outcome=Param("outcome", STATE.get_field("last_outcome")))

    with pytest.raises(ValueError, match="outcome"):
        update.execute(vehicle=vehicle.pk, owner="me", outcome=None)
    with pytest.raises(TypeError):
        update.execute(vehicle=vehicle.pk, owner="me")
    with pytest.raises(TypeError):
        update.execute(vehicle=vehicle.pk, owner="me", outcome="ok", extra=1)


def test_a_nullable_param_sets_null_and_a_plain_one_still_refuses_it(fleet):
    user, _ = fleet
    vehicle = Vehicle.objects.filter(owner=user).first()
    TelemetryState.objects.update_or_create(
        vehicle=vehicle, defaults={"lease_owner": "me", "lease_until": AT}
    )
    update = leased_update(
        lease_until=Param("until", STATE.get_field("lease_until"), nullable=True)
    )

    assert update.execute(vehicle=vehicle.pk, owner="me", until=None) == 1
    assert state_row(vehicle)["lease_until"] is None
    assert update.execute(vehicle=vehicle.pk, owner="me", until=AT) == 1
    assert state_row(vehicle)["lease_until"] == AT
    # Only the value set may be None: the filter's own Params still refuse it.
    with pytest.raises(ValueError, match="'owner' is None"):
        update.execute(vehicle=vehicle.pk, owner=None, until=None)


@pytest.mark.parametrize(
    ("build", "values"),
    [
        (lambda: TelemetryState.objects.filter(vehicle__owner_id=1), {"last_error": ""}),
        (lambda: TelemetryState.objects.order_by("vehicle")[:1], {"last_error": ""}),
        (lambda: TelemetryState.objects.order_by("vehicle"), {"last_error": ""}),
        (lambda: TelemetryState.objects.all(), {"vehicle__nickname": "x"}),
    ],
    ids=["join", "slice", "ordering", "related-field"],
)
def test_update_refuses_what_it_cannot_keep(fleet, build, values):
    with pytest.raises((TypeError, FieldDoesNotExist)):
        CompiledUpdate(build, **values).execute()


def test_column_gives_a_models_field_and_refuses_a_reverse_relation():
    assert column(TelemetryState, "latest_reading") is STATE.get_field("latest_reading")
    with pytest.raises(TypeError, match="not a column"):
        column(Vehicle, "readings")  # the readings' foreign key, seen from the vehicle


# --- RowsUpdate ---------------------------------------------------------------------------------


def failures_update(size: int) -> CompiledUpdate:
    """Each of `size` vehicles' state gets its own consecutive_failures."""
    vehicles = [Param(f"vehicle{i}", column(TelemetryState, "vehicle")) for i in range(size)]
    failures = column(TelemetryState, "consecutive_failures")
    rows = Q()
    for vehicle in vehicles:
        rows |= Q(vehicle=vehicle)
    return CompiledUpdate(
        lambda: TelemetryState.objects.filter(rows),
        consecutive_failures=Case(
            *[
                When(vehicle=vehicle, then=Param(f"failures{i}", failures))
                for i, vehicle in enumerate(vehicles)
            ],
            output_field=failures,
        ),
        last_error=Param("note", column(TelemetryState, "last_error")),
    )


@pytest.mark.parametrize("count", [1, 3, 8, 64, 130])
def test_rows_update_gives_each_row_its_own_values_in_statements_of_64(user, count):
    vehicle_ids = tuple(f"vid-{n}" for n in range(count))
    linked = link_account(user, vehicle_ids=vehicle_ids)
    TelemetryState.objects.bulk_create([TelemetryState(vehicle=v) for v in linked.vehicles])
    update = RowsUpdate(
        failures_update,
        lambda i, row: {f"vehicle{i}": row[0], f"failures{i}": row[1]},
    )
    rows = [(vehicle.pk, n + 1) for n, vehicle in enumerate(linked.vehicles)]

    with CaptureQueriesContext(connection) as captured:
        changed = sum(update.execute(chunk, note="x") for chunk in update.chunks(rows))

    assert changed == count  # a padded row is the last one again, not one more
    assert len(captured.captured_queries) == -(-count // 64)
    assert dict(TelemetryState.objects.values_list("vehicle_id", "consecutive_failures")) == dict(
        rows
    )
    assert set(TelemetryState.objects.values_list("last_error", flat=True)) == {"x"}
    # One statement per power of two used, never one per row count.
    assert set(update._updates) <= {1, 2, 4, 8, 16, 32, 64}


def test_rows_update_refuses_no_rows_and_too_many():
    update = RowsUpdate(failures_update, lambda i, row: {}, most=4)
    with pytest.raises(ValueError, match="1 to 4 rows"):
        update.execute([])
    with pytest.raises(ValueError, match="1 to 4 rows"):
        update.execute([1, 2, 3, 4, 5])
    assert update.chunks(list(range(9))) == [[0, 1, 2, 3], [4, 5, 6, 7], [8]]
