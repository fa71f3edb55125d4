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
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from typing import Any, NamedTuple

from django.contrib.auth.models import User
from django.core.exceptions import ObjectDoesNotExist
from django.db.models import Count, Func, IntegerField, Max, Q, QuerySet, Sum

from core.compiled_select import CompiledRows, CompiledSelect, Param
from core.errors import NotFoundError
from telemetry.models import Reading, ReadingHour, TelemetryState
from telemetry.models_rollup import HOUR_SECONDS
from vehicles.models import SmartcarAccount, Vehicle

# --- Vehicles -----------------------------------------------------------------------------------


def vehicle_list_for_user(*, user: User, include_disconnected: bool = False) -> list[Vehicle]:
    """The user's vehicles, primary first, each with its account and latest reading joined in.

    For listing: of each account only the status is loaded, so a list never decrypts secrets
    it does not send anywhere. Code that works on a vehicle takes `vehicle_get_for_user`.
    """
    select = _EVERY_VEHICLE if include_disconnected else _LIVE_VEHICLES
    return select.fetch(owner_id=user.pk)


def _vehicle_list(owner_id: Any, *, include_disconnected: bool) -> QuerySet[Vehicle]:
    vehicles = _vehicles_joined(owner_id)
    if not include_disconnected:
        vehicles = vehicles.exclude(status=Vehicle.Status.DISCONNECTED)
    return vehicles.order_by("-is_primary", "connected_at", "created_at", "pk")


def _vehicles_joined(owner_id: Any) -> QuerySet[Vehicle]:
    return Vehicle.objects.filter(owner_id=owner_id).select_related(
        "account", "telemetry_state__latest_reading"
    )


# Left out of every read here; a Smartcar call loads the pair on first use (see
# SmartcarAccount.refresh_from_db).
_ACCOUNT_TOKENS = ("account__access_token", "account__refresh_token")
# What a list shows: the vehicle and its latest reading whole, the account's status and the
# state's pointer.
_LISTED_COLUMNS = (
    *(field.name for field in Vehicle._meta.concrete_fields),
    "account__status",
    "telemetry_state__latest_reading",
    *(f"telemetry_state__latest_reading__{field.name}" for field in Reading._meta.concrete_fields),
)


# The reads behind most API requests, built and compiled once per thread (core.compiled_select).
def _listed(*, include_disconnected: bool) -> CompiledSelect[Vehicle]:
    return CompiledSelect(
        lambda: _vehicle_list(
            Param("owner_id", Vehicle._meta.get_field("owner")),
            include_disconnected=include_disconnected,
        ).only(*_LISTED_COLUMNS)
    )


_LIVE_VEHICLES = _listed(include_disconnected=False)
_EVERY_VEHICLE = _listed(include_disconnected=True)
# No ORDER BY: the primary key picks at most one row.
_ONE_VEHICLE: CompiledSelect[Vehicle] = CompiledSelect(
    lambda: (
        _vehicles_joined(Param("owner_id", Vehicle._meta.get_field("owner")))
        .filter(pk=Param("pk", Vehicle._meta.pk))
        .defer(*_ACCOUNT_TOKENS)[:1]
    )
)

_VEHICLE_REF: CompiledSelect[Vehicle] = CompiledSelect(
    lambda: Vehicle.objects.filter(
        owner_id=Param("owner_id", Vehicle._meta.get_field("owner")),
        pk=Param("pk", Vehicle._meta.pk),
    ).only("id")[:1]
)


def vehicle_get_for_user(*, user: User, vehicle_id: str) -> Vehicle:
    """One of the user's vehicles (disconnected ones included), its account's tokens left for
    their first use to load. Raises NotFoundError for an id that is not a UUID, does not exist,
    or belongs to someone else: all three look the same."""
    return _owned(_ONE_VEHICLE, user=user, vehicle_id=vehicle_id)


def vehicle_ref_for_user(*, user: User, vehicle_id: str) -> Vehicle:
    """One of the user's vehicles with only its id loaded, for reads keyed by the vehicle
    (history): a primary-key lookup with no joins. Raises NotFoundError as
    `vehicle_get_for_user` does."""
    return _owned(_VEHICLE_REF, user=user, vehicle_id=vehicle_id)


def _owned(select: CompiledSelect[Vehicle], *, user: User, vehicle_id: str) -> Vehicle:
    try:
        pk = uuid.UUID(str(vehicle_id))
    except ValueError:
        raise NotFoundError() from None
    found = select.fetch(owner_id=user.pk, pk=pk)
    if not found:
        raise NotFoundError()
    return found[0]


def vehicle_get_default_for_user(*, user: User) -> Vehicle | None:
    """The vehicle the first seed's `/v1/ev/me/…` endpoints mean: the primary live vehicle, else
    the earliest-connected live one (linking always sets a primary, so that is a fallback)."""
    vehicles = _vehicle_list(user.pk, include_disconnected=False)
    return vehicles.defer(*_ACCOUNT_TOKENS).first()


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


class HistoryReading(NamedTuple):
    """One reading of a history page: what the page shows of it, and its id (the page's
    position). Rows, not `Reading` instances: a page of 100 spent about a fifth of its time
    building model instances it only read attributes from."""

    id: int
    recorded_at: datetime
    received_at: datetime
    source: str
    soc_pct: float | None
    range_km: float | None
    charging_state: str | None
    is_plugged_in: bool | None
    latitude: float | None
    longitude: float | None
    odometer_km: float | None


@dataclass(frozen=True)
class HistoryPage:
    readings: list[HistoryReading]
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
    # Neither the vehicle (the caller's) nor the per-field errors: left out, they cost no UUID
    # and no JSON document to decode per row.
    rows = readings.order_by("-recorded_at", "-id").values_list(*HistoryReading._fields)
    page = [HistoryReading(*row) for row in rows[: limit + 1]]
    more = len(page) > limit
    del page[limit:]
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


class Bucket(NamedTuple):
    """One bucket's aggregates. A NamedTuple: a week of 1-hour buckets makes 169, and a frozen
    dataclass costs several times as much to create."""

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

    Buckets of whole hours take the whole hours of the range from `ReadingHour` (168 rows for a
    week of 1-hour buckets instead of 10,080 1-minute readings), which holds each hour's last
    position too, and only the partial hours at either end from the readings; other bucket sizes
    aggregate the readings in the database: one scan gives the aggregates with the time of each
    bucket's last reading that has a position, read then by (vehicle, recorded_at), the unique
    index. `charging_share` is the share of readings reporting a charging state that say
    CHARGING (None when none report one).
    """
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    first_hour, end_hour = _ceil_hour(start), _floor_hour(end)
    if bucket_seconds % HOUR_SECONDS or first_hour >= end_hour:
        parts = _reading_parts(vehicle, bucket_seconds, start, end)
    else:
        # The partial hours are at most two hours of readings, each within one bucket.
        later, earlier = _partial_hour_parts(
            vehicle, bucket_seconds, (end_hour, end), (start, first_hour)
        )
        parts = later + _hour_parts(vehicle, bucket_seconds, first_hour, end_hour) + earlier
    totals: dict[int, _Totals] = {}
    for bucket, part in parts:  # newest first: a bucket's first position is its last one
        totals[bucket] = totals[bucket].plus_earlier(part) if bucket in totals else part
    return [
        Bucket(
            start_epoch=bucket,
            readings=t.readings,
            soc_pct_mean=t.soc_sum / t.soc_count if t.soc_count else None,
            charging_share=t.charging / t.with_state if t.with_state else None,
            last_latitude=t.position[0] if t.position else None,
            last_longitude=t.position[1] if t.position else None,
        )
        for bucket, t in sorted(totals.items(), reverse=True)
    ]


class _Totals(NamedTuple):
    """What a bucket's aggregates are made of, in a form that adds up across parts of it. A
    NamedTuple: a week of 1-hour buckets makes a few hundred, and a frozen dataclass costs
    several times as much to create."""

    readings: int
    soc_sum: float
    soc_count: int
    with_state: int
    charging: int
    position: tuple[float, float] | None  # of the part's last reading that has one

    def plus_earlier(self, earlier: _Totals) -> _Totals:
        return _Totals(
            readings=self.readings + earlier.readings,
            soc_sum=self.soc_sum + earlier.soc_sum,
            soc_count=self.soc_count + earlier.soc_count,
            with_state=self.with_state + earlier.with_state,
            charging=self.charging + earlier.charging,
            position=self.position or earlier.position,
        )


def _position(lat: Any, lon: Any) -> tuple[float, float] | None:
    """A position is a latitude and a longitude, both; half of one is none."""
    return None if lat is None or lon is None else (lat, lon)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND = timedelta(seconds=1)


def _floor_hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def _ceil_hour(moment: datetime) -> datetime:
    hour = _floor_hour(moment)
    return hour if hour == moment else hour + timedelta(hours=1)


def _reading_parts(
    vehicle: Vehicle, bucket_seconds: int, start: datetime, end: datetime
) -> list[tuple[int, _Totals]]:
    """The totals of the readings in [start, end) per bucket, newest first, aggregated by the
    database; then each bucket's last position, by (vehicle, recorded_at)."""
    rows = list(
        Reading.objects.filter(vehicle=vehicle, recorded_at__gte=start, recorded_at__lt=end)
        .annotate(bucket=_bucket_start(bucket_seconds))
        .values("bucket")
        .annotate(
            readings=Count("id"),
            soc_sum=Sum("soc_pct", default=0.0),
            soc_count=Count("soc_pct"),
            with_state=Count("charging_state"),
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
    return [
        (
            int(row["bucket"]),
            _Totals(
                readings=row["readings"],
                soc_sum=row["soc_sum"],
                soc_count=row["soc_count"],
                with_state=row["with_state"],
                charging=row["charging"],
                # .get: a prune may delete that reading between the two reads.
                position=position_at.get(row["last_position_at"]),
            ),
        )
        for row in rows
    ]


def _partial_hour_parts(
    vehicle: Vehicle,
    bucket_seconds: int,
    later: tuple[datetime, datetime],
    earlier: tuple[datetime, datetime],
) -> list[list[tuple[int, _Totals]]]:
    """For each of the two [start, end) ranges, each within one hour and so within one bucket
    (whole hours), its readings' totals as one part, or no part when it holds none. Read one by
    one rather than aggregated by the database: for ranges of a few readings this costs less
    than an aggregate query. An empty range (start >= end) matches nothing."""
    rows = _READINGS_IN_TWO_RANGES.fetch(
        vehicle=vehicle.pk,
        later_start=later[0],
        later_end=later[1],
        earlier_start=earlier[0],
        earlier_end=earlier[1],
    )
    rows.sort(key=itemgetter(0), reverse=True)  # newest first, as every part is added up
    parts: list[list[tuple[int, _Totals]]] = []
    for low, high in (later, earlier):
        in_range = [row for row in rows if low <= row[0] < high]
        if not in_range:
            parts.append([])
            continue
        # Whole seconds, floored, as the database's bucket start: integer arithmetic, no float.
        bucket = (in_range[0][0] - _EPOCH) // _SECOND // bucket_seconds * bucket_seconds
        parts.append([(bucket, _totals_of_readings(in_range))])
    return parts


def _totals_of_readings(rows: list[tuple[Any, ...]]) -> _Totals:
    """The totals of (recorded_at, soc_pct, charging_state, latitude, longitude) rows, newest
    first: added up in that order, as `_Totals.plus_earlier` would, so the sums are the same
    to the last bit."""
    soc_sum, soc_count, with_state, charging = 0.0, 0, 0, 0
    position = None
    for _recorded_at, soc_pct, charging_state, lat, lon in rows:
        if soc_pct is not None:
            soc_sum += soc_pct
            soc_count += 1
        if charging_state is not None:
            with_state += 1
            charging += charging_state == Reading.ChargingState.CHARGING
        if position is None:
            position = _position(lat, lon)
    return _Totals(
        readings=len(rows),
        soc_sum=soc_sum,
        soc_count=soc_count,
        with_state=with_state,
        charging=charging,
        position=position,
    )


def _readings_in_two_ranges() -> QuerySet[Reading, tuple[Any, ...]]:
    # The vehicle in each term: SQLite then reads each range off the (vehicle, recorded_at)
    # index (a multi-index OR); with it outside, or with an ORDER BY, it walked the vehicle's
    # whole index. So the few rows are sorted in Python.
    vehicle = Reading._meta.get_field("vehicle")
    recorded_at = Reading._meta.get_field("recorded_at")
    in_range = [
        Q(
            vehicle=Param("vehicle", vehicle),
            recorded_at__gte=Param(f"{which}_start", recorded_at),
            recorded_at__lt=Param(f"{which}_end", recorded_at),
        )
        for which in ("later", "earlier")
    ]
    return (
        Reading.objects.filter(in_range[0] | in_range[1])
        .order_by()
        .values_list("recorded_at", "soc_pct", "charging_state", "latitude", "longitude")
    )


# A chart's two reads, built and compiled once per thread (core.compiled_select).
_READINGS_IN_TWO_RANGES = CompiledRows(_readings_in_two_ranges)


def _hour_parts(
    vehicle: Vehicle, bucket_seconds: int, first_hour: datetime, end_hour: datetime
) -> list[tuple[int, _Totals]]:
    """The totals of each whole hour in [first_hour, end_hour), newest first, from the rollup,
    with the bucket each falls in."""
    rows = _HOURS_IN_RANGE.fetch(
        vehicle=vehicle.pk,
        first_hour=int(first_hour.timestamp()),
        end_hour=int(end_hour.timestamp()),
    )
    return [
        (
            hour // bucket_seconds * bucket_seconds,
            _Totals(
                readings=readings,
                soc_sum=soc_sum,
                soc_count=soc_count,
                with_state=with_state,
                charging=charging,
                position=_position(latitude, longitude),
            ),
        )
        for hour, readings, soc_sum, soc_count, with_state, charging, latitude, longitude in rows
    ]


def _hours_in_range() -> QuerySet[ReadingHour, tuple[Any, ...]]:
    hour_epoch = ReadingHour._meta.get_field("hour_epoch")
    return (
        ReadingHour.objects.filter(
            vehicle=Param("vehicle", ReadingHour._meta.get_field("vehicle")),
            hour_epoch__gte=Param("first_hour", hour_epoch),
            hour_epoch__lt=Param("end_hour", hour_epoch),
        )
        .order_by("-hour_epoch")
        .values_list(
            "hour_epoch",
            "readings",
            "soc_sum",
            "soc_count",
            "with_state",
            "charging",
            "last_latitude",
            "last_longitude",
        )
    )


_HOURS_IN_RANGE = CompiledRows(_hours_in_range)


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
