"""The ONE place that maps Smartcar answers (v2 batch, v3 signals, webhook signals) to our telemetry.

Owns: units (state of charge in percent, distances in km), our three charging states, the
vehicle time of a reading, and the per-group error notes in `ReadingData.field_errors`.

Must never: raise on a strange value from Smartcar (a field with the wrong type, NaN, a huge
number or out of range is dropped and noted as "INVALID"; only a top-level answer that is not a
list of signals raises `TelemetryInputError`, a `ValueError`), nor copy free text from Smartcar
into a note (notes are "TYPE:CODE" built from identifier-like strings only).

Decisions (each is tested in telemetry/tests/test_mapping.py):
- `field_errors` is keyed by field group: "battery" (soc_pct, range_km), "charge" (charging_state,
  is_plugged_in), "location", "odometer", and "recorded_at" for an unusable vehicle time. A failed
  signal or sub-path keeps every other field; the first note for a group wins.
- v2 `/battery` `percentRemaining` is a 0..1 fraction: times 100. Within 0.001 outside [0, 1] it is
  clamped (float noise); further out it is INVALID (a 0..100 value cannot be told from noise).
- Vehicle time is the NEWEST time among the items that gave us values (v2 `sc-data-age`, v3 and
  webhooks `meta.oemUpdatedAt`; for v3 without any oemUpdatedAt, the newest `retrievedAt` /
  `fetchedAt`). Newest, because a reading is one row with one time and is deduplicated on it: with
  the oldest, a fresh value next to a stale one would look identical to the last reading and be
  dropped. None when Smartcar gave no usable time (the store then uses the time we received it).
- Times are ISO 8601 or epoch numbers; an epoch above 1e11 is milliseconds (1e11 s is the year
  5138, 1e11 ms is 1973). A time before 2000 or more than a day ahead of now is ignored and noted:
  a far-future time would otherwise pin a vehicle's "latest" reading forever.
- v3/webhook charging state: `charge-ischarging` True → CHARGING. Otherwise, when we know anything
  about charging (is-charging False, or a detailed status): FULLY_CHARGED if the detailed status
  says so or the state of charge is at or above the charge limit (`charge-chargelimit`, percent);
  else CHARGING if only a detailed status says it is charging; else NOT_CHARGING. Nothing known
  → None.
- Distances: v2 follows the item's `sc-unit-system` header (imperial → miles); v3 follows the
  body's `unit` ("miles"/"mi" converted, "kilometers"/"km"/absent kept, anything else INVALID).
- Signal codes are matched case-insensitively without dashes or underscores, so
  `tractionbattery-stateofcharge` and `tractionBatteryStateOfCharge` are the same signal.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from smartcar_client.errors import SmartcarError
from smartcar_client.types import BatchItem, BatchResponse

BATTERY = "battery"
CHARGE = "charge"
LOCATION = "location"
ODOMETER = "odometer"
RECORDED_AT = "recorded_at"
INVALID = "INVALID"

CHARGING = "CHARGING"
FULLY_CHARGED = "FULLY_CHARGED"
NOT_CHARGING = "NOT_CHARGING"
CHARGING_STATES = frozenset({CHARGING, FULLY_CHARGED, NOT_CHARGING})

KM_PER_MILE = 1.609344
# Bounds that no real car reaches; beyond them a value is garbage, not a record.
MAX_RANGE_KM = 5_000.0
MAX_ODOMETER_KM = 10_000_000.0
FRACTION_TOLERANCE = 0.001
EARLIEST_TIME = datetime(2000, 1, 1, tzinfo=UTC)
MAX_CLOCK_SKEW = timedelta(days=1)
EPOCH_MS_THRESHOLD = 1e11

# v2 sub-path per granted scope, in the order we ask for them.
SCOPE_PATHS: tuple[tuple[str, str], ...] = (
    ("read_battery", "/battery"),
    ("read_charge", "/charge"),
    ("read_location", "/location"),
    ("read_odometer", "/odometer"),
)
_PATH_GROUPS = {
    "/battery": BATTERY,
    "/charge": CHARGE,
    "/location": LOCATION,
    "/odometer": ODOMETER,
}

_SAFE_TOKEN = re.compile(r"[A-Za-z0-9_.\-]{1,50}")

# Detailed charging statuses (normalised: upper case, "_" for spaces and dashes).
_DETAILED_CHARGING = frozenset(
    {
        "CHARGING",
        "CHARGING_IN_PROGRESS",
        "IN_PROGRESS",
        "FAST_CHARGING",
        "AC_CHARGING",
        "DC_CHARGING",
    }
)
_DETAILED_FULL = frozenset(
    {"FULLY_CHARGED", "CHARGE_COMPLETE", "CHARGING_COMPLETE", "COMPLETE", "COMPLETED", "FULL"}
)
_DETAILED_NOT_CHARGING = frozenset(
    {"NOT_CHARGING", "STOPPED", "IDLE", "DISCONNECTED", "PLUGGED_IN", "NOT_PLUGGED_IN", "ERROR"}
)


class TelemetryInputError(ValueError):
    """The answer as a whole is not a list of signals; nothing can be read from it."""


@dataclass(frozen=True)
class ReadingData:
    recorded_at: datetime | None = None  # vehicle time; None → the store uses received time
    soc_pct: float | None = None
    range_km: float | None = None
    charging_state: str | None = None
    is_plugged_in: bool | None = None
    latitude: float | None = None
    longitude: float | None = None
    odometer_km: float | None = None
    field_errors: dict[str, str] = field(default_factory=dict)

    def is_empty(self) -> bool:
        """True when no telemetry value at all came through (errors alone do not count)."""
        return all(
            value is None
            for value in (
                self.soc_pct,
                self.range_km,
                self.charging_state,
                self.is_plugged_in,
                self.latitude,
                self.longitude,
                self.odometer_km,
            )
        )


def v2_paths_for_scopes(scopes: Sequence[str]) -> list[str]:
    """The v2 sub-paths the granted scopes allow (a `required:` prefix is ignored)."""
    if isinstance(scopes, str):
        scopes = scopes.split()
    granted = {s.removeprefix("required:") for s in scopes if isinstance(s, str)}
    return [path for scope, path in SCOPE_PATHS if scope in granted]


# --- shared value checks ------------------------------------------------------------------------


def _number(value: Any) -> float | None:
    """A finite float, or None for anything else (bool, str, NaN, inf, ints too big for a float)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _in_range(value: Any, low: float, high: float) -> float | None:
    number = _number(value)
    if number is None or not low <= number <= high:
        return None
    return number


def _bool(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _token(value: Any) -> str | None:
    return value if isinstance(value, str) and _SAFE_TOKEN.fullmatch(value) else None


def error_note(error_type: Any, code: Any = None) -> str:
    """ "TYPE:CODE" from identifier-like strings only; anything else becomes "UNKNOWN"."""
    kind = _token(error_type) or "UNKNOWN"
    detail = _token(code)
    return f"{kind}:{detail}" if detail else kind


def parse_timestamp(value: Any, *, now: datetime | None = None) -> datetime | None:
    """An aware UTC datetime from epoch seconds/ms or ISO 8601; None if absent or unbelievable."""
    when: datetime | None = None
    number = _number(value)
    if number is not None:
        seconds = number / 1000 if abs(number) >= EPOCH_MS_THRESHOLD else number
        try:
            when = datetime.fromtimestamp(seconds, tz=UTC)
        except (OverflowError, OSError, ValueError):
            return None
    elif isinstance(value, str) and 0 < len(value) <= 64:
        try:
            when = datetime.fromisoformat(value.strip())
        except ValueError:
            return None
        when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    if when is None:
        return None
    latest_believable = (now or datetime.now(UTC)) + MAX_CLOCK_SKEW
    if not EARLIEST_TIME <= when <= latest_believable:
        return None
    return when


def _distance_km(value: Any, unit: Any, *, imperial_default: bool = False) -> float | None:
    number = _number(value)
    if number is None:
        return None
    if unit is None:
        miles = imperial_default
    elif isinstance(unit, str) and unit.strip().lower() in {"miles", "mile", "mi"}:
        miles = True
    elif isinstance(unit, str) and unit.strip().lower() in {"kilometers", "kilometres", "km"}:
        miles = False
    else:
        return None
    return number * KM_PER_MILE if miles else number


class _Builder:
    """Collects values and notes; the first note per group wins."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.errors: dict[str, str] = {}
        self.times: list[datetime] = []
        self.fallback_times: list[datetime] = []

    def note(self, group: str, text: str) -> None:
        self.errors.setdefault(group, text)

    def set(self, group: str, name: str, value: Any) -> bool:
        if value is None:
            self.note(group, INVALID)
            return False
        self.values[name] = value
        return True

    def build(self, **extra: Any) -> ReadingData:
        times = self.times or self.fallback_times
        return ReadingData(
            recorded_at=max(times) if times else None,
            field_errors=dict(self.errors),
            **self.values,
            **extra,
        )


# --- v2 batch -----------------------------------------------------------------------------------


def reading_from_batch(batch: BatchResponse, *, now: datetime | None = None) -> ReadingData:
    """Map a v2 `POST /batch` answer; each failed sub-path is noted and the others kept."""
    builder = _Builder()
    for item in batch.items:
        group = _PATH_GROUPS.get(item.path)
        if group is None:
            continue
        if item.error is not None:
            builder.note(group, _note_for(item.error))
            continue
        body = item.body or {}
        imperial = item.headers.get("sc-unit-system", "").strip().lower() == "imperial"
        if _map_v2_item(builder, group, body, imperial=imperial):
            _add_time(builder, item, now=now)
    return builder.build()


def _note_for(error: SmartcarError) -> str:
    return error_note(error.type, error.code)


def _add_time(builder: _Builder, item: BatchItem, *, now: datetime | None) -> None:
    raw = item.headers.get("sc-data-age")
    if raw is None:
        return
    when = parse_timestamp(raw, now=now)
    if when is None:
        builder.note(RECORDED_AT, INVALID)
    else:
        builder.times.append(when)


def _map_v2_item(builder: _Builder, group: str, body: Mapping[str, Any], *, imperial: bool) -> bool:
    """Set the item's fields; True when at least one value came through."""
    got = False
    if group == BATTERY:
        got |= builder.set(BATTERY, "soc_pct", _percent_from_fraction(body.get("percentRemaining")))
        if "range" in body:
            got |= builder.set(
                BATTERY,
                "range_km",
                _checked_km(body.get("range"), None, MAX_RANGE_KM, imperial_default=imperial),
            )
    elif group == CHARGE:
        state = body.get("state")
        got |= builder.set(
            CHARGE,
            "charging_state",
            state if isinstance(state, str) and state in CHARGING_STATES else None,
        )
        got |= builder.set(CHARGE, "is_plugged_in", _bool(body.get("isPluggedIn")))
    elif group == LOCATION:
        got |= _set_location(builder, body)
    elif group == ODOMETER:
        got |= builder.set(
            ODOMETER,
            "odometer_km",
            _checked_km(body.get("distance"), None, MAX_ODOMETER_KM, imperial_default=imperial),
        )
    return got


def _percent_from_fraction(value: Any) -> float | None:
    number = _number(value)
    if number is None or not -FRACTION_TOLERANCE <= number <= 1 + FRACTION_TOLERANCE:
        return None
    return min(max(number, 0.0), 1.0) * 100


def _checked_km(
    value: Any, unit: Any, high: float, *, imperial_default: bool = False
) -> float | None:
    km = _distance_km(value, unit, imperial_default=imperial_default)
    if km is None or not 0 <= km <= high:
        return None
    return km


def _set_location(builder: _Builder, body: Mapping[str, Any]) -> bool:
    latitude = _in_range(body.get("latitude"), -90.0, 90.0)
    longitude = _in_range(body.get("longitude"), -180.0, 180.0)
    if latitude is None or longitude is None:
        # Half a position is no position.
        builder.note(LOCATION, INVALID)
        return False
    builder.values["latitude"] = latitude
    builder.values["longitude"] = longitude
    return True


# --- v3 and webhook signals ---------------------------------------------------------------------


def _key(code: str) -> str:
    return code.replace("-", "").replace("_", "").lower()


_SOC = _key("tractionbattery-stateofcharge")
_RANGE = _key("tractionbattery-range")
_IS_CHARGING = _key("charge-ischarging")
_CABLE = _key("charge-ischargingcableconnected")
_DETAILED = _key("charge-detailedchargingstatus")
_CHARGING_STATE = _key("charge-chargingstate")
_LIMIT = _key("charge-chargelimit")
_LOCATION = _key("location-preciselocation")
_ODOMETER = _key("odometer-traveleddistance")

_SIGNAL_GROUPS = {
    _SOC: BATTERY,
    _RANGE: BATTERY,
    _IS_CHARGING: CHARGE,
    _CABLE: CHARGE,
    _DETAILED: CHARGE,
    _CHARGING_STATE: CHARGE,
    _LIMIT: CHARGE,
    _LOCATION: LOCATION,
    _ODOMETER: ODOMETER,
}


@dataclass(frozen=True)
class _Signal:
    key: str
    body: Mapping[str, Any] | None
    error: str | None  # a note, when the signal failed
    meta: Mapping[str, Any]


def _parse_signal(raw: Any) -> _Signal | None:
    """One signal in the v3 item shape or the webhook shape; None for anything unrecognisable."""
    if not isinstance(raw, Mapping):
        return None
    attributes = raw.get("attributes")
    source = attributes if isinstance(attributes, Mapping) else raw
    code = source.get("code")
    if not isinstance(code, str) or not code or len(code) > 100:
        return None
    key = _key(code)
    meta = raw.get("meta")
    if not isinstance(meta, Mapping):
        meta = source.get("meta")
    meta = meta if isinstance(meta, Mapping) else {}
    status = source.get("status")
    status_value = status.get("value") if isinstance(status, Mapping) else status
    if status_value is not None and status_value != "SUCCESS":
        error = status.get("error") if isinstance(status, Mapping) else None
        if isinstance(error, Mapping):
            note = error_note(error.get("type"), error.get("code"))
        else:
            note = error_note(status_value if isinstance(status_value, str) else None)
        return _Signal(key, None, note, meta)
    body = source.get("body")
    return _Signal(key, body if isinstance(body, Mapping) else None, None, meta)


def reading_from_signals(
    signals: Sequence[Mapping[str, Any]], *, now: datetime | None = None
) -> ReadingData:
    """Map v3 `/signals` items or a webhook's `data.signals`; failed signals are noted per group.

    Unknown codes are ignored. When a code appears twice (overlapping pages, a repeated signal),
    the later one wins.
    """
    if isinstance(signals, str | bytes) or not isinstance(signals, Sequence):
        raise TelemetryInputError("signals must be a list")
    by_key: dict[str, _Signal] = {}
    for raw in signals:
        signal = _parse_signal(raw)
        if signal is not None and signal.key in _SIGNAL_GROUPS:
            by_key[signal.key] = signal

    builder = _Builder()
    facts: dict[str, Any] = {}
    for key, signal in by_key.items():
        group = _SIGNAL_GROUPS[key]
        if signal.error is not None:
            builder.note(group, signal.error)
            continue
        if signal.body is None:
            builder.note(group, INVALID)
            continue
        if _map_signal(builder, facts, key, signal.body):
            _add_signal_time(builder, signal.meta, now=now)

    charging_state = _charging_state(
        is_charging=facts.get("is_charging"),
        detailed=facts.get("detailed"),
        soc=builder.values.get("soc_pct"),
        limit=facts.get("limit"),
    )
    extra = {"charging_state": charging_state} if charging_state is not None else {}
    return builder.build(**extra)


def _map_signal(
    builder: _Builder, facts: dict[str, Any], key: str, body: Mapping[str, Any]
) -> bool:
    """Set what this signal carries; True when a value came through."""
    value = body.get("value")
    unit = body.get("unit")
    if key == _SOC:
        return builder.set(BATTERY, "soc_pct", _percent(value, unit))
    if key == _RANGE:
        return builder.set(BATTERY, "range_km", _checked_km(value, unit, MAX_RANGE_KM))
    if key == _ODOMETER:
        return builder.set(ODOMETER, "odometer_km", _checked_km(value, unit, MAX_ODOMETER_KM))
    if key == _LOCATION:
        return _set_location(builder, body)
    if key == _CABLE:
        return builder.set(CHARGE, "is_plugged_in", _bool(value))
    if key == _IS_CHARGING:
        facts["is_charging"] = _bool(value)
        if facts["is_charging"] is None:
            builder.note(CHARGE, INVALID)
        return facts["is_charging"] is not None
    if key in (_DETAILED, _CHARGING_STATE):
        detailed = _detailed_status(value)
        if detailed is None:
            builder.note(CHARGE, INVALID)
            return False
        facts["detailed"] = detailed
        return True
    if key == _LIMIT:
        # Only an input to the charging state, so it never dates the reading.
        facts["limit"] = _percent(value, unit)
        return False
    return False  # pragma: no cover  (every key in _SIGNAL_GROUPS is handled above)


def _percent(value: Any, unit: Any) -> float | None:
    if unit is not None and unit not in ("percent", "%"):
        return None
    return _in_range(value, 0.0, 100.0)


def _detailed_status(value: Any) -> str | None:
    if not isinstance(value, str) or len(value) > 60:
        return None
    normalised = re.sub(r"[\s\-]+", "_", value.strip().upper())
    if normalised in _DETAILED_CHARGING:
        return CHARGING
    if normalised in _DETAILED_FULL:
        return FULLY_CHARGED
    if normalised in _DETAILED_NOT_CHARGING:
        return NOT_CHARGING
    return None


def _charging_state(
    *, is_charging: bool | None, detailed: str | None, soc: float | None, limit: float | None
) -> str | None:
    if is_charging is True:
        return CHARGING
    if is_charging is None and detailed is None:
        return None
    if detailed == FULLY_CHARGED or (soc is not None and limit is not None and soc >= limit):
        return FULLY_CHARGED
    if is_charging is None and detailed == CHARGING:
        return CHARGING
    return NOT_CHARGING


def _add_signal_time(builder: _Builder, meta: Mapping[str, Any], *, now: datetime | None) -> None:
    if "oemUpdatedAt" in meta:
        when = parse_timestamp(meta.get("oemUpdatedAt"), now=now)
        if when is None:
            builder.note(RECORDED_AT, INVALID)
        else:
            builder.times.append(when)
        return
    for name in ("retrievedAt", "fetchedAt"):
        if name in meta:
            fallback = parse_timestamp(meta.get(name), now=now)
            if fallback is not None:
                builder.fallback_times.append(fallback)
            return
