"""ReadingHour, the hourly rollup of readings, and the triggers that keep it (issue 8).

The triggers are the rollup's only writer, so every path that writes readings (the services,
bulk_create, the admin, a cascade delete, raw SQL) keeps it right. An insert adds to its hour in
one upsert; a delete or an update recomputes the hour(s) it touched from the readings (exact,
and cheap: an hour is at most a few dozen readings on the (vehicle, recorded_at) index). The
SQL is written out here, not imported, so that this migration means the same thing forever.
"""

import django.db.models.deletion
from django.db import migrations, models

ROLLUP = "telemetry_readinghour"
AGGREGATED = "readings, soc_sum, soc_count, with_state, charging, last_position_at"
POSITION = ("last_position_at", "last_latitude", "last_longitude")


def _upsert_new_reading(hour, old):
    """The insert trigger's statement: NEW's hour gains one reading. `old` prefixes the stored
    row's columns in DO UPDATE (PostgreSQL needs the table alias, SQLite takes bare names)."""
    newer = (
        f"excluded.last_position_at IS NOT NULL AND ({old}last_position_at IS NULL"
        f" OR excluded.last_position_at > {old}last_position_at)"
    )
    position = ",\n        ".join(
        f"{column} = CASE WHEN {newer} THEN excluded.{column} ELSE {old}{column} END"
        for column in POSITION
    )
    return f"""INSERT INTO {ROLLUP} {"AS r " if old else ""}(
        vehicle_id, hour_epoch, {AGGREGATED}, last_latitude, last_longitude)
    VALUES (
        NEW.vehicle_id, {hour}, 1, COALESCE(NEW.soc_pct, 0),
        CASE WHEN NEW.soc_pct IS NULL THEN 0 ELSE 1 END,
        CASE WHEN NEW.charging_state IS NULL THEN 0 ELSE 1 END,
        CASE WHEN NEW.charging_state = 'CHARGING' THEN 1 ELSE 0 END,
        CASE WHEN NEW.latitude IS NOT NULL AND NEW.longitude IS NOT NULL
             THEN NEW.recorded_at END,
        CASE WHEN NEW.latitude IS NOT NULL AND NEW.longitude IS NOT NULL
             THEN NEW.latitude END,
        CASE WHEN NEW.latitude IS NOT NULL AND NEW.longitude IS NOT NULL
             THEN NEW.longitude END
    )
    ON CONFLICT (vehicle_id, hour_epoch) DO UPDATE SET
        readings = {old}readings + 1,
        soc_sum = {old}soc_sum + excluded.soc_sum,
        soc_count = {old}soc_count + excluded.soc_count,
        with_state = {old}with_state + excluded.with_state,
        charging = {old}charging + excluded.charging,
        {position};"""


def _aggregate(vehicle, hour, where):
    """SELECT of the rollup's aggregated columns over the readings matching `where`."""
    return f"""SELECT {vehicle}, {hour}, COUNT(*), COALESCE(SUM(soc_pct), 0), COUNT(soc_pct),
           COUNT(charging_state), COUNT(CASE WHEN charging_state = 'CHARGING' THEN 1 END),
           MAX(CASE WHEN latitude IS NOT NULL AND longitude IS NOT NULL THEN recorded_at END)
    FROM telemetry_reading WHERE {where}"""


def _fill_positions(where):
    """UPDATEs that set each matching row's position to that of the reading its
    last_position_at names (unique by vehicle and time)."""
    return [
        f"""UPDATE {ROLLUP} SET last_{column} = (
        SELECT p.{column} FROM telemetry_reading AS p
        WHERE p.vehicle_id = {ROLLUP}.vehicle_id AND p.recorded_at = {ROLLUP}.last_position_at)
    WHERE last_position_at IS NOT NULL AND {where}"""
        for column in ("latitude", "longitude")
    ]


def _recompute(vehicle, hour, hour_start, hour_end):
    """Statements that rebuild one (vehicle, hour) row from the readings (none if it has none)."""
    fill_positions = ";\n    ".join(
        _fill_positions(f"vehicle_id = {vehicle} AND hour_epoch = {hour}")
    )
    return f"""
    DELETE FROM {ROLLUP} WHERE vehicle_id = {vehicle} AND hour_epoch = {hour};
    INSERT INTO {ROLLUP} (vehicle_id, hour_epoch, {AGGREGATED})
    {_aggregate(vehicle, hour, f"vehicle_id = {vehicle} AND recorded_at >= {hour_start} AND recorded_at < {hour_end}")}
    GROUP BY vehicle_id;
    {fill_positions};"""


# --- SQLite -------------------------------------------------------------------------------------
# Django stores an aware datetime as UTC text ("YYYY-MM-DD HH:MM:SS[.ffffff]"), which
# strftime('%s') reads as UTC and which datetime(..., 'unixepoch') writes in the same form, so
# the hour's bounds compare as text the way the readings' own times do.


def _sqlite_hour(row):
    return f"(CAST(strftime('%s', {row}.recorded_at) AS INTEGER) / 3600 * 3600)"


def _sqlite_recompute(row):
    hour = _sqlite_hour(row)
    return _recompute(
        f"{row}.vehicle_id",
        hour,
        f"datetime({hour}, 'unixepoch')",
        f"datetime({hour} + 3600, 'unixepoch')",
    )


SQLITE_CREATE = [
    f"""
CREATE TRIGGER telemetry_reading_rollup_insert AFTER INSERT ON telemetry_reading
BEGIN
    {_upsert_new_reading(_sqlite_hour("NEW"), old="")}
END""",
    f"""
CREATE TRIGGER telemetry_reading_rollup_delete AFTER DELETE ON telemetry_reading
BEGIN{_sqlite_recompute("OLD")}
END""",
    f"""
CREATE TRIGGER telemetry_reading_rollup_update
AFTER UPDATE OF vehicle_id, recorded_at, soc_pct, charging_state, latitude, longitude
ON telemetry_reading
BEGIN{_sqlite_recompute("OLD")}{_sqlite_recompute("NEW")}
END""",
]
SQLITE_DROP = [
    "DROP TRIGGER IF EXISTS telemetry_reading_rollup_insert",
    "DROP TRIGGER IF EXISTS telemetry_reading_rollup_delete",
    "DROP TRIGGER IF EXISTS telemetry_reading_rollup_update",
]

# --- PostgreSQL ---------------------------------------------------------------------------------
# AFTER ROW triggers run once the statement is done, so a multi-row DELETE recomputes each hour
# from what the statement left. A concurrent insert into a recomputed hour either waits on the
# DELETE's row lock and then upserts into the recomputed row, or commits first and is counted by
# the recompute's own (later) snapshot; ON CONFLICT covers an insert landing in between.


def _pg_hour(row):
    return f"(CAST(FLOOR(date_part('epoch', {row}.recorded_at)) AS BIGINT) / 3600 * 3600)"


PG_RECOMPUTE_FUNCTION = f"""
CREATE FUNCTION telemetry_readinghour_recompute(vid uuid, h bigint)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN{_recompute("vid", "h", "to_timestamp(h)", "to_timestamp(h + 3600)")}
END
$$"""

PG_TRIGGER_FUNCTION = f"""
CREATE FUNCTION telemetry_reading_rollup() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        {_upsert_new_reading(_pg_hour("NEW"), old="r.")}
        RETURN NULL;
    END IF;
    PERFORM telemetry_readinghour_recompute(OLD.vehicle_id, {_pg_hour("OLD")});
    IF TG_OP = 'UPDATE' AND (NEW.vehicle_id, {_pg_hour("NEW")})
            IS DISTINCT FROM (OLD.vehicle_id, {_pg_hour("OLD")}) THEN
        PERFORM telemetry_readinghour_recompute(NEW.vehicle_id, {_pg_hour("NEW")});
    END IF;
    RETURN NULL;
END
$$"""

PG_CREATE = [
    PG_RECOMPUTE_FUNCTION,
    PG_TRIGGER_FUNCTION,
    """
CREATE TRIGGER telemetry_reading_rollup
AFTER INSERT OR DELETE OR UPDATE OF vehicle_id, recorded_at, soc_pct, charging_state, latitude, longitude
ON telemetry_reading FOR EACH ROW EXECUTE FUNCTION telemetry_reading_rollup()""",
]
PG_DROP = [
    "DROP TRIGGER IF EXISTS telemetry_reading_rollup ON telemetry_reading",
    "DROP FUNCTION IF EXISTS telemetry_reading_rollup()",
    "DROP FUNCTION IF EXISTS telemetry_readinghour_recompute(uuid, bigint)",
]

# --- Both ---------------------------------------------------------------------------------------


def _backfill(hour):
    return [
        f"""INSERT INTO {ROLLUP} (vehicle_id, hour_epoch, {AGGREGATED})
    {_aggregate("vehicle_id", hour, "TRUE")}
    GROUP BY vehicle_id, {hour}""",
        *_fill_positions("TRUE"),
    ]


STATEMENTS = {
    "sqlite": (SQLITE_CREATE + _backfill(_sqlite_hour("telemetry_reading")), SQLITE_DROP),
    "postgresql": (PG_CREATE + _backfill(_pg_hour("telemetry_reading")), PG_DROP),
}


def _run(schema_editor, which):
    vendor = schema_editor.connection.vendor
    if vendor not in STATEMENTS:
        raise NotImplementedError(
            f"the reading rollup has triggers for SQLite and PostgreSQL, not {vendor}"
        )
    for statement in STATEMENTS[vendor][which]:
        schema_editor.execute(statement, params=None)


def create_triggers(apps, schema_editor):
    _run(schema_editor, 0)


def drop_triggers(apps, schema_editor):
    _run(schema_editor, 1)


class Migration(migrations.Migration):
    dependencies = [
        ("telemetry", "0004_reading_vehicle_index_in_unique"),
        ("vehicles", "0003_vehicle_poll_permission"),
    ]

    operations = [
        migrations.CreateModel(
            name="ReadingHour",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("hour_epoch", models.BigIntegerField()),
                ("readings", models.PositiveIntegerField()),
                ("soc_sum", models.FloatField()),
                ("soc_count", models.PositiveIntegerField()),
                ("with_state", models.PositiveIntegerField()),
                ("charging", models.PositiveIntegerField()),
                ("last_position_at", models.DateTimeField(null=True)),
                ("last_latitude", models.FloatField(null=True)),
                ("last_longitude", models.FloatField(null=True)),
                (
                    "vehicle",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="vehicles.vehicle",
                    ),
                ),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(
                        fields=("vehicle", "hour_epoch"), name="unique_reading_hour_per_vehicle"
                    )
                ],
            },
        ),
        migrations.RunPython(create_triggers, drop_triggers),
    ]
