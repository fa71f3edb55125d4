"""Helpers for the telemetry API tests: linked vehicles and stored readings."""

from datetime import UTC, datetime, timedelta

import pytest

from smartcar_client.types import TokenSet
from telemetry.models import Reading, TelemetryState
from vehicles.models import Vehicle
from vehicles.services import LinkedVehicleInfo, account_link

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def link_account(owner, *, smartcar_user_id="sc-user-1", vehicle_ids=("vid-1",), suffix="1"):
    """An account (tokens valid for 2 hours) with vehicles, as Connect leaves it."""
    return account_link(
        owner=owner,
        smartcar_user_id=smartcar_user_id,
        tokens=TokenSet.from_json(
            {
                "access_token": f"access-{suffix}",
                "refresh_token": f"refresh-{suffix}",
                "expires_in": 7200,
            }
        ),
        scopes=["read_battery", "read_charge", "read_location", "read_odometer"],
        vehicles=[
            LinkedVehicleInfo(vid, make="TESLA", model="Model 3", year=2022) for vid in vehicle_ids
        ],
    )


def add_reading(vehicle: Vehicle, recorded_at: datetime, *, latest: bool = True, **values):
    """Store a reading; with `latest`, point the vehicle's TelemetryState at it."""
    fields = {
        "soc_pct": 80.0,
        "range_km": 300.0,
        "charging_state": Reading.ChargingState.NOT_CHARGING,
        "is_plugged_in": False,
        "latitude": 52.5,
        "longitude": 13.4,
        "odometer_km": 12000.0,
        "source": Reading.Source.POLL,
        "received_at": recorded_at + timedelta(seconds=5),
        **values,
    }
    reading = Reading.objects.create(vehicle=vehicle, recorded_at=recorded_at, **fields)
    if latest:
        TelemetryState.objects.update_or_create(
            vehicle=vehicle, defaults={"latest_reading": reading}
        )
    return reading


# Every API test module sets this: the telemetry URLs, wired or not yet in config/urls.py.
API_TEST_MARKS = [pytest.mark.django_db]


# --- Smartcar v3 answers -------------------------------------------------------------

SIGNALS = "https://vehicle.api.smartcar.test/v3/vehicles/{vid}/signals"
TOKEN_URL = "https://auth.smartcar.test/oauth/token"
OEM_MS = 1740830400000  # 2025-03-01T12:00:00Z


def signal(code: str, body: dict) -> dict:
    return {
        "id": code,
        "type": "signal",
        "attributes": {"code": code, "status": {"value": "SUCCESS"}, "body": body},
        "meta": {"retrievedAt": OEM_MS + 1000, "oemUpdatedAt": OEM_MS},
    }


SIGNALS_OK = {
    "data": [
        signal("tractionbattery-stateofcharge", {"unit": "percent", "value": 64.0}),
        signal("charge-ischarging", {"value": True}),
        signal("location-preciselocation", {"latitude": 48.1, "longitude": 11.5}),
    ],
    "meta": {"page": 1, "pageSize": 3, "totalCount": 3},
    "links": {"next": None},
}
