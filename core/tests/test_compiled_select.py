"""CompiledSelect returns what the ORM returns, for any values, shape and thread."""

import threading
from datetime import UTC, datetime
from unittest.mock import patch

import pytest
from django.db import connection
from django.db.models import Value
from django.db.models.functions import Coalesce
from django.db.models.sql.compiler import SQLCompiler
from django.test.utils import CaptureQueriesContext

from core.compiled_select import CompiledSelect
from telemetry.models import Reading, TelemetryState
from telemetry.tests.api_support import link_account
from vehicles.models import Vehicle

pytestmark = pytest.mark.django_db(transaction=True)

AT = datetime(2025, 3, 1, 12, tzinfo=UTC)


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
    select = CompiledSelect(lambda owner: joined(owner))

    for owner in (user, other_user, user):
        fetched = select.fetch(owner=owner)
        with CaptureQueriesContext(connection) as reads:
            got = snapshot(fetched)
        assert got == snapshot(list(joined(owner)))
        assert len(reads) == 0  # account, state and reading came with the row
    assert [v.smartcar_vehicle_id for v in select.fetch(owner=user)] == ["vid-a", "vid-b", "vid-c"]
    assert sorted(select.fetch(owner=user)[0].account.get_deferred_fields()) == ["access_token"]


def test_later_calls_run_the_cached_sql_with_their_own_values(fleet):
    user, _ = fleet
    select = CompiledSelect(lambda owner, pk: joined(owner, pk=pk)[:1])
    ids = list(Vehicle.objects.filter(owner=user).values_list("pk", flat=True))

    select.fetch(owner=user, pk=ids[0])
    compile_query = SQLCompiler.as_sql
    with patch.object(SQLCompiler, "as_sql", autospec=True, side_effect=compile_query) as compiled:
        for pk in ids:
            with CaptureQueriesContext(connection) as queries:
                found = select.fetch(owner=user, pk=pk)
            assert [v.pk for v in found] == [pk]
            assert len(queries) == 1

    assert compiled.call_count == 0


def test_a_value_that_changes_the_sql_is_another_shape(fleet):
    user, _ = fleet
    select = CompiledSelect(lambda owner, year: joined(owner, year=year))
    Vehicle.objects.filter(owner=user).update(year=2020)
    Vehicle.objects.filter(smartcar_vehicle_id="vid-c").update(year=None)

    assert [v.smartcar_vehicle_id for v in select.fetch(owner=user, year=2020)] == [
        "vid-a",
        "vid-b",
    ]
    assert select.fetch(owner=user, year=1999) == []
    # None turns `= %s` into `IS NULL`: the cached SQL must not be reused for it.
    assert [v.smartcar_vehicle_id for v in select.fetch(owner=user, year=None)] == ["vid-c"]
    assert len(select.fetch(owner=user, year=2020)) == 2


def test_querysets_it_cannot_reuse_run_through_the_orm(fleet):
    user, _ = fleet
    ordered_by_value = CompiledSelect(
        lambda owner, fallback: Vehicle.objects.filter(owner=owner).order_by(
            Coalesce("nickname", Value(fallback)), "smartcar_vehicle_id"
        )
    )
    empty_in = CompiledSelect(lambda owner: Vehicle.objects.filter(owner=owner, pk__in=[]))
    as_values = CompiledSelect(lambda owner: Vehicle.objects.filter(owner=owner).values("pk"))

    assert len(ordered_by_value.fetch(owner=user, fallback="a")) == 3
    assert empty_in.fetch(owner=user) == []
    assert len(as_values.fetch(owner=user)) == 3


def test_each_thread_compiles_for_its_own_connection(fleet):
    user, other_user = fleet
    select = CompiledSelect(lambda owner: joined(owner))
    expected = {owner.pk: snapshot(list(joined(owner))) for owner in (user, other_user)}
    select.fetch(owner=user)  # this thread's shape
    results, errors = {}, []

    def run(owner):
        try:
            results[owner.pk] = snapshot(select.fetch(owner=owner))
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


def test_a_build_that_varies_more_than_the_where_clause_gets_a_shape_per_variant(fleet):
    user, _ = fleet
    select = CompiledSelect(
        lambda owner, newest_first, limit: Vehicle.objects.filter(owner=owner).order_by(
            "-smartcar_vehicle_id" if newest_first else "smartcar_vehicle_id"
        )[:limit]
    )

    def ids(**values):
        return [v.smartcar_vehicle_id for v in select.fetch(owner=user, **values)]

    assert ids(newest_first=False, limit=3) == ["vid-a", "vid-b", "vid-c"]
    assert ids(newest_first=True, limit=3) == ["vid-c", "vid-b", "vid-a"]
    assert ids(newest_first=True, limit=1) == ["vid-c"]
    assert ids(newest_first=False, limit=3) == ["vid-a", "vid-b", "vid-c"]
