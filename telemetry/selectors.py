"""Reads for the telemetry API: a user's vehicles with their latest reading, history, aggregates.

Owns the query shape of every read the API makes: the owner filter (another user's vehicle is
indistinguishable from a missing one), `select_related` so that a list costs the same number of
queries for 1 or 1,000 vehicles, keyset pagination over (recorded_at, id) on the
(vehicle, -recorded_at) index, and bucket aggregates computed in the database.

Must never: write, call Smartcar, or return a row the user does not own.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.contrib.auth.models import User
from django.core.exceptions import ObjectDoesNotExist
from django.db.models import Avg, Count, Func, IntegerField, Max, Q, QuerySet

from core.compiled_select import CompiledSelect
from core.errors import NotFoundError
from telemetry.models import Reading, TelemetryState
from vehicles.models import SmartcarAccount, Vehicle

# --- Vehicles -----------------------------------------------------------------------------------


def vehicle_list_for_user(*, user: User, include_disconnected: bool = False) -> list[Vehicle]:
    """The user's vehicles, primary first, each with its account and latest reading joined in.

    For listing: the accounts' token columns are not loaded, so a list never decrypts secrets
    it does not send anywhere. Code that calls Smartcar takes `vehicle_get_for_user`.
    """
    return _VEHICLE_LIST.fetch(user=user, include_disconnected=include_disconnected)


def _vehicles_for_user(*, user: User, include_disconnected: bool) -> QuerySet[Vehicle]:
    vehicles = _vehicles_joined(user)
    if not include_disconnected:
        vehicles = vehicles.exclude(status=Vehicle.Status.DISCONNECTED)
    return vehicles.order_by("-is_primary", "connected_at", "created_at", "pk")


def _vehicles_joined(user: User) -> QuerySet[Vehicle]:
    return Vehicle.objects.filter(owner=user).select_related(
        "account", "telemetry_state__latest_reading"
    )


# The two reads behind most API requests, compiled once per thread (see core.compiled_select).
_VEHICLE_LIST = CompiledSelect(
    lambda user, include_disconnected: _vehicles_for_user(
        user=user, include_disconnected=include_disconnected
    ).defer("account__access_token", "account__refresh_token")
)
# No ORDER BY: the primary key picks at most one row.
_ONE_VEHICLE = CompiledSelect(lambda user, pk: _vehicles_joined(user).filter(pk=pk)[:1])


def vehicle_get_for_user(*, user: User, vehicle_id: str) -> Vehicle:
    """One of the user's vehicles (disconnected ones included). Raises NotFoundError for an id
    that is not a UUID, does not exist, or belongs to someone else: all three look the same."""
    try:
        pk = uuid.UUID(str(vehicle_id))
    except ValueError:
        raise NotFoundError() from None
    found = _ONE_VEHICLE.fetch(user=user, pk=pk)
    if not found:
        raise NotFoundError()
    return found[0]


def vehicle_get_default_for_user(*, user: User) -> Vehicle | None:
    """The vehicle the first seed's `/v1/ev/me/…` endpoints mean: the primary live vehicle, else
    the earliest-connected live one (linking always sets a primary, so that is a fallback)."""
    return _vehicles_for_user(user=user, include_disconnected=False).first()


def vehicle_api_status(vehicle: Vehicle) -> str:
    """What the SPA sees: a live vehicle on an account that needs re-auth needs re-auth too."""
    account = vehicle.account
    if (
        vehicle.status == Vehicle.Status.ACTIVE
        and account is not None
        and account.status == SmartcarAccount.Status.NEEDS_REAUTH
    ):
        return str(Vehicle.Status.NEEDS_REAUTH)
    return str(vehicle.status)


def vehicle_latest_reading(vehicle: Vehicle) -> Reading | None:
    """The vehicle's latest reading through TelemetryState's pointer (joined in by the list)."""
    try:
        state: TelemetryState = vehicle.telemetry_state
    except ObjectDoesNotExist:
        return None
    return state.latest_reading


# --- History ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HistoryPosition:
    """Where a page ends: the last reading returned, in (recorded_at, id) order."""

    recorded_at: datetime
    id: int


@dataclass(frozen=True)
class HistoryPage:
    readings: list[Reading]
    next_position: HistoryPosition | None


def reading_history(
    *,
    vehicle: Vehicle,
    start: datetime | None,
    end: datetime | None,
    limit: int,
    after: HistoryPosition | None = None,
) -> HistoryPage:
    """Readings with start <= recorded_at < end, newest first, `limit` per page.

    Keyset pagination on (recorded_at, id), both descending: a reading stored while someone
    pages never shifts a page (no duplicates, no gaps), and each page is one index range scan.
    """
    readings = Reading.objects.filter(vehicle=vehicle)
    if start is not None:
        readings = readings.filter(recorded_at__gte=start)
    if end is not None:
        readings = readings.filter(recorded_at__lt=end)
    if after is not None:
        readings = readings.filter(
            Q(recorded_at__lt=after.recorded_at) | Q(recorded_at=after.recorded_at, id__lt=after.id)
        )
    rows = list(readings.order_by("-recorded_at", "-id")[: limit + 1])
    page = rows[:limit]
    more = len(rows) > limit
    position = HistoryPosition(page[-1].recorded_at, page[-1].id) if more else None
    return HistoryPage(readings=page, next_position=position)


# --- Buckets ------------------------------------------------------------------------------------


class EpochSeconds(Func):
    """Whole seconds since 1970-01-01 UTC of a datetime column, on SQLite and PostgreSQL."""

    output_field = IntegerField()

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        # Django stores aware datetimes as UTC text, which both functions read as UTC.
        # unixepoch() (SQLite 3.38+) costs well under half of strftime('%s') per row: ~1.4 ms of
        # a week of 1-minute readings.
        if sqlite_has_unixepoch(connection):
            return self.as_sql(compiler, connection, template="unixepoch(%(expressions)s)")
        return self.as_sql(
            compiler, connection, template="CAST(strftime('%%%%s', %(expressions)s) AS INTEGER)"
        )

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        # date_part() is double precision; EXTRACT() is numeric since PostgreSQL 14, slower per
        # row. A double holds today's epochs to the microsecond, so FLOOR is exact.
        return self.as_sql(
            compiler,
            connection,
            template="CAST(FLOOR(date_part('epoch', %(expressions)s)) AS BIGINT)",
        )


def sqlite_has_unixepoch(connection: Any) -> bool:
    return bool(connection.Database.sqlite_version_info >= (3, 38, 0))


def _bucket_start(bucket_seconds: int) -> Any:
    # Integer division floors for the positive epochs we store, on both databases.
    return (EpochSeconds("recorded_at") / bucket_seconds) * bucket_seconds


@dataclass(frozen=True)
class Bucket:
    start_epoch: int
    readings: int
    soc_pct_mean: float | None
    charging_share: float | None
    last_latitude: float | None
    last_longitude: float | None

    @property
    def start(self) -> datetime:
        return datetime.fromtimestamp(self.start_epoch, UTC)


def reading_buckets(
    *, vehicle: Vehicle, start: datetime, end: datetime, bucket_seconds: int
) -> list[Bucket]:
    """One aggregate per bucket (aligned to the Unix epoch, UTC) holding readings in [start, end),
    newest first; buckets without readings are left out.

    One scan of the range: the aggregates, with the time of each bucket's last reading that has
    a position. Those positions are then read by (vehicle, recorded_at), the unique index, a
    few hundred buckets per query (two queries for a week of hours). `charging_share` is the
    share of readings reporting a charging state that say CHARGING (None when none report one).
    """
    rows = list(
        Reading.objects.filter(vehicle=vehicle, recorded_at__gte=start, recorded_at__lt=end)
        .annotate(bucket=_bucket_start(bucket_seconds))
        .values("bucket")
        .annotate(
            readings=Count("id"),
            soc_pct_mean=Avg("soc_pct"),
            with_state=Count("id", filter=Q(charging_state__isnull=False)),
            charging=Count("id", filter=Q(charging_state=Reading.ChargingState.CHARGING)),
            # Unique per vehicle (the constraint), so this names exactly one reading.
            last_position_at=Max(
                "recorded_at", filter=Q(latitude__isnull=False, longitude__isnull=False)
            ),
        )
        .order_by("-bucket")
    )
    position_at = _positions_at(
        vehicle, [row["last_position_at"] for row in rows if row["last_position_at"]]
    )
    buckets = []
    for row in rows:
        lat, lon = position_at.get(row["last_position_at"], (None, None))
        share = row["charging"] / row["with_state"] if row["with_state"] else None
        buckets.append(
            Bucket(
                start_epoch=int(row["bucket"]),
                readings=row["readings"],
                soc_pct_mean=row["soc_pct_mean"],
                charging_share=share,
                last_latitude=lat,
                last_longitude=lon,
            )
        )
    return buckets


# Below SQLite's historical limit of 999 parameters per statement, with room for the vehicle.
_POSITIONS_PER_QUERY = 900


def _positions_at(vehicle: Vehicle, times: list[datetime]) -> dict[datetime, tuple[Any, Any]]:
    positions: dict[datetime, tuple[Any, Any]] = {}
    for first in range(0, len(times), _POSITIONS_PER_QUERY):
        chunk = times[first : first + _POSITIONS_PER_QUERY]
        found = Reading.objects.filter(vehicle=vehicle, recorded_at__in=chunk).values_list(
            "recorded_at", "latitude", "longitude"
        )
        positions.update({at: (lat, lon) for at, lat, lon in found})
    return positions
