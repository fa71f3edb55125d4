"""ReadingHour, the hourly rollup of readings, and the triggers that keep it (issue 8).

The triggers are the rollup's only writer, so every path that writes readings (the services,
bulk_create, the admin, a cascade delete, raw SQL) keeps it right. An insert adds to its hour in
one upsert; a delete or an update recomputes the hour(s) it touched from the readings (exact,
and cheap: an hour is at most a few dozen readings on the (vehicle, recorded_at) index). The
SQL is written out here, not imported, so that this migration means the same thing forever.
"""

import django.db.models.deletion
from django.db import migrations, models

COLUMNS = (
    "vehicle_id, hour_epoch, readings, soc_sum, soc_count, with_state, charging, last_position_at"
)

# --- SQLite -------------------------------------------------------------------------------------
# Django stores an aware datetime as UTC text ("YYYY-MM-DD HH:MM:SS[.ffffff]"), which
# strftime('%s') reads as UTC and which datetime(..., 'unixepoch') writes in the same form, so
# the hour's bounds compare as text the way the readings' own times do.


def _sqlite_hour(row):
    return f"(CAST(strftime('%s', {row}.recorded_at) AS INTEGER) / 3600 * 3600)"


def _sqlite_recompute(row):
    hour = _sqlite_hour(row)
    return f"""
    DELETE FROM telemetry_readinghour WHERE vehicle_id = {row}.vehicle_id AND hour_epoch = {hour};
    INSERT INTO telemetry_readinghour ({COLUMNS})
    SELECT vehicle_id, {hour}, COUNT(*), TOTAL(soc_pct), COUNT(soc_pct), COUNT(charging_state),
           COUNT(CASE WHEN charging_state = 'CHARGING' THEN 1 END),
           MAX(CASE WHEN latitude IS NOT NULL AND longitude IS NOT NULL THEN recorded_at END)
    FROM telemetry_reading
    WHERE vehicle_id = {row}.vehicle_id
      AND recorded_at >= datetime({hour}, 'unixepoch')
      AND recorded_at < datetime({hour} + 3600, 'unixepoch')
    GROUP BY vehicle_id;"""


SQLITE_CREATE = [
    f"""
CREATE TRIGGER telemetry_reading_rollup_insert AFTER INSERT ON telemetry_reading
BEGIN
    INSERT INTO telemetry_readinghour ({COLUMNS})
    VALUES (
        NEW.vehicle_id, {_sqlite_hour("NEW")}, 1, COALESCE(NEW.soc_pct, 0.0),
        NEW.soc_pct IS NOT NULL, NEW.charging_state IS NOT NULL,
        COALESCE(NEW.charging_state = 'CHARGING', 0),
        CASE WHEN NEW.latitude IS NOT NULL AND NEW.longitude IS NOT NULL
             THEN NEW.recorded_at END
    )
    ON CONFLICT (vehicle_id, hour_epoch) DO UPDATE SET
        readings = readings + 1,
        soc_sum = soc_sum + excluded.soc_sum,
        soc_count = soc_count + excluded.soc_count,
        with_state = with_state + excluded.with_state,
        charging = charging + excluded.charging,
        last_position_at = CASE
            WHEN last_position_at IS NULL OR excluded.last_position_at > last_position_at
            THEN excluded.last_position_at ELSE last_position_at END;
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
CREATE FUNCTION telemetry_readinghour_recompute(vid telemetry_reading.vehicle_id%TYPE, h bigint)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM telemetry_readinghour WHERE vehicle_id = vid AND hour_epoch = h;
    INSERT INTO telemetry_readinghour ({COLUMNS})
    SELECT vid, h, COUNT(*), COALESCE(SUM(soc_pct), 0), COUNT(soc_pct), COUNT(charging_state),
           COUNT(*) FILTER (WHERE charging_state = 'CHARGING'),
           MAX(recorded_at) FILTER (WHERE latitude IS NOT NULL AND longitude IS NOT NULL)
    FROM telemetry_reading
    WHERE vehicle_id = vid AND recorded_at >= to_timestamp(h) AND recorded_at < to_timestamp(h + 3600)
    HAVING COUNT(*) > 0
    ON CONFLICT (vehicle_id, hour_epoch) DO UPDATE SET
        readings = excluded.readings, soc_sum = excluded.soc_sum, soc_count = excluded.soc_count,
        with_state = excluded.with_state, charging = excluded.charging,
        last_position_at = excluded.last_position_at;
END
$$"""

PG_TRIGGER_FUNCTION = f"""
CREATE FUNCTION telemetry_reading_rollup() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO telemetry_readinghour AS r ({COLUMNS})
        VALUES (
            NEW.vehicle_id, {_pg_hour("NEW")}, 1, COALESCE(NEW.soc_pct, 0),
            (NEW.soc_pct IS NOT NULL)::int, (NEW.charging_state IS NOT NULL)::int,
            COALESCE(NEW.charging_state = 'CHARGING', false)::int,
            CASE WHEN NEW.latitude IS NOT NULL AND NEW.longitude IS NOT NULL
                 THEN NEW.recorded_at END
        )
        ON CONFLICT (vehicle_id, hour_epoch) DO UPDATE SET
            readings = r.readings + 1,
            soc_sum = r.soc_sum + excluded.soc_sum,
            soc_count = r.soc_count + excluded.soc_count,
            with_state = r.with_state + excluded.with_state,
            charging = r.charging + excluded.charging,
            last_position_at = GREATEST(r.last_position_at, excluded.last_position_at);
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
    return f"""
INSERT INTO telemetry_readinghour ({COLUMNS})
SELECT vehicle_id, {hour}, COUNT(*), COALESCE(SUM(soc_pct), 0), COUNT(soc_pct),
       COUNT(charging_state), COUNT(CASE WHEN charging_state = 'CHARGING' THEN 1 END),
       MAX(CASE WHEN latitude IS NOT NULL AND longitude IS NOT NULL THEN recorded_at END)
FROM telemetry_reading
GROUP BY vehicle_id, {hour}"""


STATEMENTS = {
    "sqlite": (SQLITE_CREATE + [_backfill(_sqlite_hour("telemetry_reading"))], SQLITE_DROP),
    "postgresql": (PG_CREATE + [_backfill(_pg_hour("telemetry_reading"))], PG_DROP),
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
