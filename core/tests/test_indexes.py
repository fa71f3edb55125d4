"""`NullsFirstIndex`: NULLS FIRST where the database can say it, a plain index where NULLs come
first anyway (SQLite)."""

import pytest
from django.db import connection

from core.indexes import NullsFirstIndex
from telemetry.models import TelemetryState


def test_it_survives_a_migration_round_trip():
    index = NullsFirstIndex(fields=["next_poll_at", "vehicle"], name="claim_order")
    path, args, kwargs = index.deconstruct()
    assert path == "core.indexes.NullsFirstIndex"
    assert (args, kwargs) == ((), {"fields": ["next_poll_at", "vehicle"], "name": "claim_order"})
    assert index.clone() == index


def test_the_sql_says_nulls_first_only_where_the_database_takes_it():
    index = NullsFirstIndex(fields=["next_poll_at", "vehicle"], name="claim_order")
    # Only the statement is built: no schema editor session (SQLite's needs no transaction).
    editor = connection.schema_editor(collect_sql=True)
    sql = str(index.create_sql(TelemetryState, editor))
    if connection.vendor == "sqlite":
        assert "NULLS" not in sql
        assert '("next_poll_at", "vehicle_id")' in sql
    else:
        assert '("next_poll_at" ASC NULLS FIRST, "vehicle_id")' in sql


@pytest.mark.django_db
def test_the_migrated_table_has_it():
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(
            cursor, TelemetryState._meta.db_table
        )
    assert constraints["telemetry_state_claim_order"]["columns"] == ["next_poll_at", "vehicle_id"]
    assert "telemetry_state_due" not in constraints  # the index it replaced
