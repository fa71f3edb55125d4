"""telemetry.mapping: units, charging states, vehicle time, per-group notes, hostile input."""

import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from smartcar_client.types import BatchResponse
from telemetry.mapping import (
    KM_PER_MILE,
    ReadingData,
    TelemetryInputError,
    error_note,
    parse_timestamp,
    reading_from_batch,
    reading_from_signals,
    v2_paths_for_scopes,
)

FIXTURES = Path(__file__).parent / "fixtures"
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def load(name: str):
    return json.loads((FIXTURES / name).read_text())


def batch(*items) -> BatchResponse:
    return BatchResponse.from_json({"responses": list(items)})


def ok_item(path: str, body, headers=None) -> dict:
    return {"path": path, "code": 200, "body": body, "headers": headers or {}}


def signal(code: str, body=None, *, status=None, meta=None, webhook: bool = False) -> dict:
    attributes = {"code": code, "status": status or {"value": "SUCCESS"}}
    if body is not None:
        attributes["body"] = body
    meta = meta if meta is not None else {"oemUpdatedAt": 1740823920000}
    if webhook:
        return {**attributes, "meta": meta}
    return {"attributes": attributes, "meta": meta}


# --- v2 paths -----------------------------------------------------------------------------------


def test_v2_paths_follow_granted_scopes_in_fixed_order():
    scopes = ["read_odometer", "read_vin", "required:read_battery", "read_location"]

    assert v2_paths_for_scopes(scopes) == ["/battery", "/location", "/odometer"]


@pytest.mark.parametrize(
    ("scopes", "expected"),
    [
        ([], []),
        (["read_vehicle_info", "read_vin"], []),
        ([None, 3, {"x": 1}, "read_charge"], ["/charge"]),
        ("read_battery read_charge", ["/battery", "/charge"]),
    ],
)
def test_v2_paths_ignore_garbage_scopes(scopes, expected):
    assert v2_paths_for_scopes(scopes) == expected


# --- v2 batch -----------------------------------------------------------------------------------


def test_batch_full_success_maps_every_field_in_our_units():
    data = reading_from_batch(BatchResponse.from_json(load("v2_batch_ok.json")), now=NOW)

    assert data == ReadingData(
        # The newest sc-data-age among the items (the /charge one), not the first or oldest.
        recorded_at=datetime(2025, 3, 1, 10, 14, 30, tzinfo=UTC),
        soc_pct=80.0,
        range_km=320.5,
        charging_state="CHARGING",
        is_plugged_in=True,
        latitude=52.52,
        longitude=13.405,
        odometer_km=51234.5,
        field_errors={},
    )


def test_batch_partial_failure_keeps_other_groups_and_notes_type_and_code():
    data = reading_from_batch(BatchResponse.from_json(load("v2_batch_partial.json")), now=NOW)

    assert data.soc_pct == pytest.approx(45.5)
    assert data.charging_state == "NOT_CHARGING"
    assert data.is_plugged_in is False
    assert (data.latitude, data.longitude, data.odometer_km) == (None, None, None)
    assert data.field_errors == {"location": "PERMISSION", "odometer": "VEHICLE_STATE:ASLEEP"}


@pytest.mark.parametrize(
    ("fraction", "percent"),
    [(0, 0.0), (0.3, 30.0), (1, 100.0), (1.0004, 100.0), (-0.0004, 0.0)],
)
def test_batch_fraction_becomes_percent_and_float_noise_is_clamped(fraction, percent):
    data = reading_from_batch(batch(ok_item("/battery", {"percentRemaining": fraction})))

    assert data.soc_pct == pytest.approx(percent)
    assert data.field_errors == {}


@pytest.mark.parametrize("fraction", [1.5, 80, -0.2, 100])
def test_batch_fraction_out_of_range_is_invalid_not_guessed(fraction):
    data = reading_from_batch(batch(ok_item("/battery", {"percentRemaining": fraction})))

    assert data.soc_pct is None
    assert data.field_errors == {"battery": "INVALID"}


def test_batch_imperial_item_converts_miles_to_km():
    data = reading_from_batch(
        batch(
            ok_item(
                "/battery", {"percentRemaining": 0.5, "range": 100}, {"SC-Unit-System": "imperial"}
            ),
            ok_item("/odometer", {"distance": 1000}, {"sc-unit-system": "imperial"}),
        )
    )

    assert data.range_km == pytest.approx(100 * KM_PER_MILE)
    assert data.odometer_km == pytest.approx(1000 * KM_PER_MILE)


def test_batch_without_data_age_has_no_vehicle_time():
    data = reading_from_batch(batch(ok_item("/odometer", {"distance": 10})))

    assert data.recorded_at is None
    assert data.odometer_km == 10


def test_batch_data_age_of_a_failed_item_does_not_date_the_reading():
    data = reading_from_batch(
        batch(
            ok_item("/odometer", {"distance": 10}, {"sc-data-age": "2025-03-01T10:00:00Z"}),
            # A value we dropped must not make the reading look newer than its values are.
            ok_item("/charge", {"state": "BOGUS"}, {"sc-data-age": "2025-03-01T11:00:00Z"}),
        ),
        now=NOW,
    )

    assert data.recorded_at == datetime(2025, 3, 1, 10, 0, tzinfo=UTC)
    assert data.field_errors == {"charge": "INVALID"}


@pytest.mark.parametrize("age", ["yesterday", "2999-01-01T00:00:00Z", "1970-01-01T00:00:00Z", ""])
def test_batch_unbelievable_data_age_is_ignored_and_noted(age):
    data = reading_from_batch(
        batch(ok_item("/odometer", {"distance": 10}, {"sc-data-age": age})), now=NOW
    )

    assert data.recorded_at is None
    assert data.odometer_km == 10
    assert data.field_errors == {"recorded_at": "INVALID"}


def test_batch_ignores_paths_we_did_not_ask_for():
    data = reading_from_batch(batch(ok_item("/", {"id": "x", "make": "TESLA"})))

    assert data.is_empty()
    assert data.field_errors == {}


@pytest.mark.parametrize(
    ("path", "body", "group"),
    [
        ("/battery", {"percentRemaining": "80"}, "battery"),
        ("/battery", {"percentRemaining": True}, "battery"),
        ("/battery", {"percentRemaining": float("nan")}, "battery"),
        ("/battery", {"percentRemaining": 10**400}, "battery"),
        ("/battery", {}, "battery"),
        ("/charge", {"state": "charging", "isPluggedIn": True}, "charge"),
        ("/charge", {"state": ["CHARGING"], "isPluggedIn": True}, "charge"),
        ("/charge", {"state": "CHARGING", "isPluggedIn": "yes"}, "charge"),
        ("/location", {"latitude": 91, "longitude": 0}, "location"),
        ("/location", {"latitude": 0, "longitude": -180.5}, "location"),
        ("/location", {"latitude": None, "longitude": 10}, "location"),
        ("/location", {"latitude": 1e308 * 10, "longitude": 10}, "location"),
        ("/odometer", {"distance": -1}, "odometer"),
        ("/odometer", {"distance": 1e12}, "odometer"),
        ("/odometer", {"distance": {"value": 10}}, "odometer"),
        ("/odometer", {}, "odometer"),
    ],
)
def test_batch_garbage_field_is_dropped_and_noted(path, body, group):
    data = reading_from_batch(batch(ok_item(path, body)))

    assert data.field_errors == {group: "INVALID"}
    assert data.latitude is None or group != "location"
    if group == "location":
        assert (data.latitude, data.longitude) == (None, None)
    if group == "odometer":
        assert data.odometer_km is None


def test_batch_garbage_in_one_field_keeps_its_neighbour():
    data = reading_from_batch(
        batch(ok_item("/charge", {"state": "FULLY_CHARGED", "isPluggedIn": "maybe"}))
    )

    assert data.charging_state == "FULLY_CHARGED"
    assert data.is_plugged_in is None
    assert data.field_errors == {"charge": "INVALID"}


def test_batch_item_error_notes_only_identifier_like_strings():
    hostile = {
        "path": "/battery",
        "code": 409,
        "body": {"type": "VEHICLE_STATE", "code": "token=abc secret", "statusCode": 409},
    }

    data = reading_from_batch(batch(hostile))

    assert data.field_errors == {"battery": "VEHICLE_STATE"}


# --- v3 and webhook signals ---------------------------------------------------------------------


def test_signals_pages_map_to_one_reading_dated_by_newest_mapped_signal():
    items = load("v3_signals_page1.json")["data"] + load("v3_signals_page2.json")["data"]

    data = reading_from_signals(items, now=NOW)

    assert data == ReadingData(
        # location's oemUpdatedAt; the VIN signal is newer but gives us no telemetry.
        recorded_at=datetime.fromtimestamp(1740823965, tz=UTC),
        soc_pct=81.5,
        range_km=402.0,
        charging_state="CHARGING",
        is_plugged_in=True,
        latitude=48.1372,
        longitude=11.5756,
        odometer_km=12034.4,
        field_errors={},
    )


def test_webhook_shape_and_camel_case_codes_are_accepted():
    signals = [
        signal("tractionBatteryStateOfCharge", {"value": 55, "unit": "percent"}, webhook=True),
        signal("Location_PreciseLocation", {"latitude": 1.5, "longitude": 2.5}, webhook=True),
        signal("chargeIsCharging", {"value": False}, webhook=True),
    ]

    data = reading_from_signals(signals, now=NOW)

    assert (data.soc_pct, data.latitude, data.longitude) == (55, 1.5, 2.5)
    assert data.charging_state == "NOT_CHARGING"


@pytest.mark.parametrize("unit", ["miles", "mi", "Miles"])
def test_signals_in_miles_become_km(unit):
    data = reading_from_signals(
        [
            signal("tractionbattery-range", {"value": 200, "unit": unit}),
            signal("odometer-traveleddistance", {"value": 10000, "unit": unit}),
        ],
        now=NOW,
    )

    assert data.range_km == pytest.approx(200 * KM_PER_MILE)
    assert data.odometer_km == pytest.approx(10000 * KM_PER_MILE)


def test_signal_with_unknown_unit_is_invalid():
    data = reading_from_signals(
        [signal("odometer-traveleddistance", {"value": 10, "unit": "furlongs"})], now=NOW
    )

    assert data.odometer_km is None
    assert data.field_errors == {"odometer": "INVALID"}


def test_failed_signal_is_noted_and_others_kept():
    signals = [
        signal("tractionbattery-stateofcharge", {"value": 70}),
        signal(
            "location-preciselocation",
            status={"value": "ERROR", "error": {"type": "PERMISSION", "code": None}},
        ),
        signal(
            "odometer-traveleddistance",
            status={"value": "ERROR", "error": {"type": "VEHICLE_STATE", "code": "ASLEEP"}},
        ),
    ]

    data = reading_from_signals(signals, now=NOW)

    assert data.soc_pct == 70
    assert data.field_errors == {"location": "PERMISSION", "odometer": "VEHICLE_STATE:ASLEEP"}


@pytest.mark.parametrize(
    ("is_charging", "detailed", "soc", "limit", "expected"),
    [
        (True, None, 50, None, "CHARGING"),
        (True, "FULLY_CHARGED", 100, 80, "CHARGING"),
        (False, None, 50, None, "NOT_CHARGING"),
        (False, None, 80, 80, "FULLY_CHARGED"),
        (False, None, 79.9, 80, "NOT_CHARGING"),
        (False, "CHARGE_COMPLETE", 70, None, "FULLY_CHARGED"),
        (False, "charging", 50, None, "NOT_CHARGING"),
        (None, "CHARGING", 50, None, "CHARGING"),
        (None, "Fully Charged", 50, None, "FULLY_CHARGED"),
        (None, "NOT_CHARGING", 50, None, "NOT_CHARGING"),
        (None, None, 90, 80, None),
    ],
)
def test_signals_charging_state_rules(is_charging, detailed, soc, limit, expected):
    signals = [signal("tractionbattery-stateofcharge", {"value": soc, "unit": "percent"})]
    if is_charging is not None:
        signals.append(signal("charge-ischarging", {"value": is_charging}))
    if detailed is not None:
        signals.append(signal("charge-detailedchargingstatus", {"value": detailed}))
    if limit is not None:
        signals.append(signal("charge-chargelimit", {"value": limit, "unit": "percent"}))

    assert reading_from_signals(signals, now=NOW).charging_state == expected


def test_unknown_detailed_status_is_noted_and_not_guessed():
    data = reading_from_signals(
        [signal("charge-detailedchargingstatus", {"value": "WARP_DRIVE"})], now=NOW
    )

    assert data.charging_state is None
    assert data.field_errors == {"charge": "INVALID"}


@pytest.mark.parametrize(
    "value",
    [1740823920, 1740823920000, 1740823920.0, "2025-03-01T10:12:00Z", "2025-03-01T11:12:00+01:00"],
)
def test_timestamps_in_seconds_ms_or_iso_mean_the_same_instant(value):
    assert parse_timestamp(value, now=NOW) == datetime(2025, 3, 1, 10, 12, tzinfo=UTC)


def test_naive_iso_timestamp_is_read_as_utc():
    assert parse_timestamp("2025-03-01T10:12:00", now=NOW) == datetime(
        2025, 3, 1, 10, 12, tzinfo=UTC
    )


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        "soon",
        "x" * 65,
        float("nan"),
        float("inf"),
        10**400,
        -1,
        0,
        (NOW + timedelta(days=2)).timestamp(),
        "9999-12-31T23:59:59Z",
        [1740823920],
    ],
)
def test_unbelievable_timestamps_are_none(value):
    assert parse_timestamp(value, now=NOW) is None


def test_a_day_of_clock_skew_is_tolerated():
    ahead = NOW + timedelta(hours=23)

    assert parse_timestamp(ahead.isoformat(), now=NOW) == ahead


def test_signals_without_oem_time_fall_back_to_retrieved_or_fetched_time():
    signals = [
        signal("tractionbattery-stateofcharge", {"value": 40}, meta={"retrievedAt": 1740823000}),
        signal("odometer-traveleddistance", {"value": 5}, meta={"fetchedAt": 1740824000000}),
    ]

    data = reading_from_signals(signals, now=NOW)

    assert data.recorded_at == datetime.fromtimestamp(1740824000, tz=UTC)


def test_oem_time_wins_over_retrieved_time():
    signals = [
        signal("tractionbattery-stateofcharge", {"value": 40}, meta={"retrievedAt": 1740823999}),
        signal("odometer-traveleddistance", {"value": 5}, meta={"oemUpdatedAt": 1740823000}),
    ]

    data = reading_from_signals(signals, now=NOW)

    assert data.recorded_at == datetime.fromtimestamp(1740823000, tz=UTC)


def test_future_oem_time_is_ignored_and_noted():
    future = (NOW + timedelta(days=400)).timestamp()
    signals = [
        signal("tractionbattery-stateofcharge", {"value": 40}, meta={"oemUpdatedAt": future})
    ]

    data = reading_from_signals(signals, now=NOW)

    assert data.soc_pct == 40
    assert data.recorded_at is None
    assert data.field_errors == {"recorded_at": "INVALID"}


def test_repeated_signal_code_takes_the_later_item():
    signals = [
        signal("tractionbattery-stateofcharge", {"value": 40}),
        signal("tractionbattery-stateofcharge", {"value": 41}),
    ]

    assert reading_from_signals(signals, now=NOW).soc_pct == 41


@pytest.mark.parametrize(
    ("code", "body", "group"),
    [
        ("tractionbattery-stateofcharge", {"value": 101}, "battery"),
        ("tractionbattery-stateofcharge", {"value": -3}, "battery"),
        ("tractionbattery-stateofcharge", {"value": "80"}, "battery"),
        ("tractionbattery-stateofcharge", {"value": 80, "unit": "fraction"}, "battery"),
        ("tractionbattery-stateofcharge", {"value": float("nan")}, "battery"),
        ("tractionbattery-stateofcharge", {"value": 10**400}, "battery"),
        ("tractionbattery-range", {"value": 1e9}, "battery"),
        ("tractionbattery-range", {"value": False}, "battery"),
        ("tractionbattery-range", {"value": 10, "unit": 5}, "battery"),
        ("charge-ischarging", {"value": "true"}, "charge"),
        ("charge-ischargingcableconnected", {"value": 1}, "charge"),
        ("charge-detailedchargingstatus", {"value": 3}, "charge"),
        ("charge-detailedchargingstatus", {"value": "C" * 500}, "charge"),
        ("location-preciselocation", {"latitude": "52", "longitude": 13}, "location"),
        ("location-preciselocation", {"latitude": 52}, "location"),
        ("location-preciselocation", {"latitude": 52, "longitude": float("-inf")}, "location"),
        ("odometer-traveleddistance", {"value": None}, "odometer"),
        ("odometer-traveleddistance", {"value": [1, 2]}, "odometer"),
        ("odometer-traveleddistance", {}, "odometer"),
    ],
)
def test_signal_garbage_value_is_dropped_and_noted(code, body, group):
    data = reading_from_signals([signal(code, body)], now=NOW)

    assert data.is_empty()
    assert data.field_errors == {group: "INVALID"}


@pytest.mark.parametrize(
    "item",
    [
        None,
        42,
        "tractionbattery-stateofcharge",
        [],
        {},
        {"attributes": None},
        {"attributes": {"code": None}},
        {"attributes": {"code": 12, "body": {"value": 50}}},
        {"attributes": {"code": "x" * 1000, "body": {"value": 50}}},
        {"code": "unknown-signal", "body": {"value": 50}},
    ],
)
def test_unrecognisable_signal_items_are_skipped(item):
    data = reading_from_signals([item, signal("odometer-traveleddistance", {"value": 7})], now=NOW)

    assert data.odometer_km == 7
    assert data.field_errors == {}


@pytest.mark.parametrize(
    "raw",
    [
        {"attributes": {"code": "odometer-traveleddistance", "body": [7]}},
        {"attributes": {"code": "odometer-traveleddistance", "body": "7"}},
        {"attributes": {"code": "odometer-traveleddistance"}},
        {"attributes": {"code": "odometer-traveleddistance", "status": 5, "body": {"value": 7}}},
        {
            "attributes": {
                "code": "odometer-traveleddistance",
                "status": {"value": "ERROR", "error": "Bearer abc.def leaked"},
            }
        },
    ],
)
def test_malformed_signal_structure_is_noted_never_raised(raw):
    data = reading_from_signals([raw], now=NOW)

    assert data.odometer_km is None
    assert data.field_errors["odometer"] in {"INVALID", "UNKNOWN", "ERROR"}


def test_failed_signal_note_never_carries_free_text():
    raw = signal(
        "odometer-traveleddistance",
        status={"value": "ERROR", "error": {"type": "VEHICLE STATE", "code": "refresh_token: x y"}},
    )

    assert reading_from_signals([raw], now=NOW).field_errors == {"odometer": "UNKNOWN"}


def test_meta_garbage_does_not_raise():
    raw = {"attributes": {"code": "odometer-traveleddistance", "body": {"value": 7}}, "meta": [1]}

    data = reading_from_signals([raw], now=NOW)

    assert (data.odometer_km, data.recorded_at) == (7, None)


@pytest.mark.parametrize("signals", [None, "signals", b"x", 5, {"data": []}])
def test_signals_that_are_not_a_list_raise_a_value_error(signals):
    with pytest.raises(TelemetryInputError) as raised:
        reading_from_signals(signals, now=NOW)

    assert isinstance(raised.value, ValueError)


def test_empty_signal_list_is_an_empty_reading():
    data = reading_from_signals([], now=NOW)

    assert data.is_empty()
    assert data.recorded_at is None


def test_is_empty_counts_values_not_notes():
    assert ReadingData(field_errors={"battery": "INVALID"}).is_empty()
    assert not ReadingData(is_plugged_in=False).is_empty()
    assert not ReadingData(soc_pct=0.0).is_empty()


@pytest.mark.parametrize(
    ("error_type", "code", "note"),
    [
        ("RATE_LIMIT", "VEHICLE", "RATE_LIMIT:VEHICLE"),
        ("PERMISSION", None, "PERMISSION"),
        (None, "X", "UNKNOWN:X"),
        ("has space", None, "UNKNOWN"),
        ("A" * 51, None, "UNKNOWN"),
        ("OK", "a/b", "OK"),
    ],
)
def test_error_note_is_built_from_safe_tokens(error_type, code, note):
    assert error_note(error_type, code) == note


def test_nan_never_reaches_a_value():
    data = reading_from_batch(
        batch(ok_item("/location", {"latitude": math.nan, "longitude": math.nan}))
    )

    assert (data.latitude, data.longitude) == (None, None)
