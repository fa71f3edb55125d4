"""The first seed's `/v1/ev/me/…` endpoints: snake_case shapes, your vehicle, live polls."""

from datetime import timedelta
from http import HTTPStatus

import pytest
import requests
from django.utils import timezone

from telemetry.models import Reading, TelemetryState
from telemetry.tests.api_support import (
    API_TEST_MARKS,
    SIGNALS,
    SIGNALS_OK,
    T0,
    add_reading,
    link_account,
)
from vehicles.models import SmartcarAccount, Vehicle

pytestmark = API_TEST_MARKS

LATEST = "/v1/ev/me/telemetry/latest"
VEHICLES = "/v1/ev/me/vehicles"
HISTORY = "/v1/ev/me/telemetry/history"


def iso(value) -> str:
    return value.isoformat().replace("+00:00", "Z")


def by_vid(vid: str) -> Vehicle:
    return Vehicle.objects.get(smartcar_vehicle_id=vid)


@pytest.fixture
def vehicle(user) -> Vehicle:
    link_account(user, vehicle_ids=("vid-1",))
    return Vehicle.objects.get()


# --- latest ----------------------------------------------------------------------------------


def test_latest_fresh_reading_is_served_without_calling_smartcar(api_client, vehicle, smartcar_api):
    now = timezone.now()
    add_reading(vehicle, T0, received_at=now - timedelta(seconds=10), charging_state="CHARGING")

    response = api_client.get(LATEST)

    assert response.status_code == HTTPStatus.OK
    assert response.json() == {
        "recorded_at": "2025-03-01T12:00:00Z",
        "soc_pct": 80.0,
        "charging_state": "CHARGING",
        "latitude": 52.5,
        "longitude": 13.4,
    }
    assert len(smartcar_api.calls) == 0


def test_latest_stale_reading_polls_live(api_client, vehicle, smartcar_api, settings):
    settings.TELEMETRY_LATEST_MAX_AGE = 60
    add_reading(
        vehicle, T0 - timedelta(hours=1), received_at=timezone.now() - timedelta(seconds=61)
    )
    call = smartcar_api.get(SIGNALS.format(vid="vid-1"), json=SIGNALS_OK)

    response = api_client.get(LATEST)

    assert response.status_code == HTTPStatus.OK
    assert call.call_count == 1
    assert response.json() == {
        "recorded_at": "2025-03-01T12:00:00Z",
        "soc_pct": 64.0,
        "charging_state": "CHARGING",
        "latitude": 48.1,
        "longitude": 11.5,
    }
    assert Reading.objects.get(recorded_at=T0).source == "refresh"


def test_latest_without_any_reading_polls_live(api_client, vehicle, smartcar_api):
    call = smartcar_api.get(SIGNALS.format(vid="vid-1"), json=SIGNALS_OK)

    response = api_client.get(LATEST)

    assert response.status_code == HTTPStatus.OK
    assert call.call_count == 1


def test_latest_polls_at_most_once_per_max_age(api_client, vehicle, smartcar_api):
    # A parked car: its data stays old in vehicle time and identical readings are not stored
    # again, so only the poll guard stops every request from calling Smartcar.
    add_reading(vehicle, T0, received_at=timezone.now() - timedelta(hours=1))
    call = smartcar_api.get(
        SIGNALS.format(vid="vid-1"),
        json={"data": [], "meta": {}, "links": {"next": None}},
        status=500,
    )
    assert api_client.get(LATEST).status_code == HTTPStatus.BAD_GATEWAY
    calls_of_one_poll = call.call_count  # the client retries a failed GET itself

    responses_after = [api_client.get(LATEST) for _ in range(3)]

    assert call.call_count == calls_of_one_poll
    assert [r.status_code for r in responses_after] == [HTTPStatus.OK] * 3
    assert responses_after[0].json()["recorded_at"] == "2025-03-01T12:00:00Z"


def test_latest_smartcar_failure_is_502(api_client, vehicle, smartcar_api):
    smartcar_api.get(
        SIGNALS.format(vid="vid-1"),
        status=503,
        json={"type": "UPSTREAM", "code": "UNKNOWN", "description": "x"},
    )

    response = api_client.get(LATEST)

    assert response.status_code == HTTPStatus.BAD_GATEWAY
    assert response.json()["error"] == "smartcar_error"


def test_latest_smartcar_timeout_is_502_as_the_first_seed_documents(
    api_client, vehicle, smartcar_api, settings
):
    settings.SMARTCAR_READ_TIMEOUT = 0.5
    smartcar_api.get(SIGNALS.format(vid="vid-1"), body=requests.ReadTimeout())

    response = api_client.get(LATEST)

    assert response.status_code == HTTPStatus.BAD_GATEWAY
    assert response.json()["error"] == "smartcar_error"


def test_latest_needing_reauth_with_stale_data_is_409(api_client, vehicle, smartcar_api):
    SmartcarAccount.objects.update(status=SmartcarAccount.Status.NEEDS_REAUTH)

    response = api_client.get(LATEST)

    assert response.status_code == HTTPStatus.CONFLICT
    assert response.json()["error"] == "reconnect_required"
    assert len(smartcar_api.calls) == 0


@pytest.mark.parametrize("path", [LATEST, HISTORY])
def test_without_a_connected_vehicle_is_404_no_vehicle(api_client, user, path):
    link_account(user, vehicle_ids=("vid-1",))
    Vehicle.objects.update(status=Vehicle.Status.DISCONNECTED)

    response = api_client.get(path)

    assert response.status_code == HTTPStatus.NOT_FOUND
    assert response.json() == {
        "error": "no_vehicle",
        "message": "No connected vehicle. Connect one first.",
    }


def test_latest_never_serves_another_users_vehicle(other_api_client, vehicle):
    add_reading(vehicle, T0, received_at=timezone.now())

    response = other_api_client.get(LATEST)

    assert response.status_code == HTTPStatus.NOT_FOUND
    assert response.json()["error"] == "no_vehicle"


def test_latest_uses_the_primary_vehicle(api_client, user):
    link_account(user, vehicle_ids=("vid-1", "vid-2"))
    now = timezone.now()
    add_reading(by_vid("vid-1"), T0, received_at=now, soc_pct=11.0)
    add_reading(by_vid("vid-2"), T0, received_at=now, soc_pct=22.0)
    Vehicle.objects.update(is_primary=False)
    Vehicle.objects.filter(smartcar_vehicle_id="vid-2").update(is_primary=True)

    assert api_client.get(LATEST).json()["soc_pct"] == 22.0


def test_latest_without_a_primary_uses_the_only_live_vehicle(api_client, user):
    link_account(user, vehicle_ids=("vid-1", "vid-2"))
    now = timezone.now()
    add_reading(by_vid("vid-1"), T0, received_at=now, soc_pct=11.0)
    add_reading(by_vid("vid-2"), T0, received_at=now, soc_pct=22.0)
    Vehicle.objects.update(is_primary=False)
    Vehicle.objects.filter(smartcar_vehicle_id="vid-1").update(status="disconnected")

    assert api_client.get(LATEST).json()["soc_pct"] == 22.0


def test_latest_requires_a_token(client):
    assert client.get(LATEST).status_code == HTTPStatus.UNAUTHORIZED


# --- vehicles --------------------------------------------------------------------------------


def test_vehicles_snake_case_shape(api_client, vehicle):
    add_reading(vehicle, T0)

    response = api_client.get(VEHICLES)

    assert response.status_code == HTTPStatus.OK
    assert response.json() == {
        "vehicles": [
            {
                "id": str(vehicle.pk),
                "smartcar_vehicle_id": "vid-1",
                "status": "active",
                "make": "TESLA",
                "model": "Model 3",
                "year": 2022,
                "nickname": "",
                "is_primary": True,
                "connected_at": iso(vehicle.connected_at),
                "latest_telemetry": {
                    "recorded_at": "2025-03-01T12:00:00Z",
                    "soc_pct": 80.0,
                    "charging_state": "NOT_CHARGING",
                    "latitude": 52.5,
                    "longitude": 13.4,
                },
            }
        ]
    }


def test_vehicles_only_own_and_live(api_client, other_api_client, user):
    link_account(user, vehicle_ids=("vid-1", "vid-2"))
    Vehicle.objects.filter(smartcar_vehicle_id="vid-2").update(status="disconnected")

    assert [v["smartcar_vehicle_id"] for v in api_client.get(VEHICLES).json()["vehicles"]] == [
        "vid-1"
    ]
    assert other_api_client.get(VEHICLES).json() == {"vehicles": []}


@pytest.mark.parametrize("count", [1, 20])
def test_vehicles_query_count_is_constant(api_client, user, count, django_assert_num_queries):
    link_account(user, vehicle_ids=[f"vid-{n}" for n in range(count)])
    for vehicle in Vehicle.objects.all():
        add_reading(vehicle, T0)

    with django_assert_num_queries(2):
        body = api_client.get(VEHICLES).json()

    assert len(body["vehicles"]) == count


# --- history ---------------------------------------------------------------------------------


def test_history_returns_the_last_days_newest_first(api_client, vehicle):
    now = timezone.now()
    recent = add_reading(vehicle, now - timedelta(days=1), soc_pct=50.0)
    newest = add_reading(vehicle, now - timedelta(hours=1), soc_pct=60.0)
    add_reading(vehicle, now - timedelta(days=8), soc_pct=10.0)

    response = api_client.get(HISTORY)

    assert response.status_code == HTTPStatus.OK
    assert response.json() == {
        "vehicle_id": str(vehicle.pk),
        "days": 7,
        "readings": [
            {
                "recorded_at": iso(reading.recorded_at),
                "soc_pct": reading.soc_pct,
                "charging_state": "NOT_CHARGING",
                "latitude": 52.5,
                "longitude": 13.4,
            }
            for reading in (newest, recent)
        ],
        "next_cursor": None,
    }


def test_history_days_widens_the_window(api_client, vehicle):
    add_reading(vehicle, timezone.now() - timedelta(days=8))

    assert len(api_client.get(HISTORY, {"days": 9}).json()["readings"]) == 1
    assert len(api_client.get(HISTORY, {"days": 7}).json()["readings"]) == 0


def test_history_pages_with_next_cursor(api_client, vehicle):
    now = timezone.now()
    for n in range(5):
        add_reading(vehicle, now - timedelta(minutes=n))

    first = api_client.get(HISTORY, {"limit": 3}).json()
    second = api_client.get(HISTORY, {"limit": 3, "cursor": first["next_cursor"]}).json()

    times = [r["recorded_at"] for r in first["readings"] + second["readings"]]
    assert len(times) == len(set(times)) == 5
    assert second["next_cursor"] is None


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"days": "0"}, "days"),
        ({"days": "91"}, "days"),
        ({"days": "week"}, "days"),
        ({"limit": "0"}, "limit"),
        ({"limit": "5001"}, "limit"),
        ({"cursor": "nope"}, "cursor"),
    ],
)
def test_history_bad_parameter_is_400_naming_it(api_client, vehicle, params, field):
    response = api_client.get(HISTORY, params)

    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["error"] == "validation_error"
    assert list(response.json()["details"]["fields"]) == [field]


def test_history_days_90_is_allowed(api_client, vehicle):
    assert api_client.get(HISTORY, {"days": 90}).status_code == HTTPStatus.OK


@pytest.mark.parametrize("count", [2, 25])
def test_history_query_count_is_constant(api_client, vehicle, count, django_assert_num_queries):
    now = timezone.now()
    for n in range(count):
        add_reading(vehicle, now - timedelta(minutes=n), latest=False)

    with django_assert_num_queries(3):
        body = api_client.get(HISTORY).json()

    assert len(body["readings"]) == count


def test_history_state_pointer_is_not_needed(api_client, vehicle):
    add_reading(vehicle, timezone.now() - timedelta(minutes=1), latest=False)
    assert not TelemetryState.objects.exists()

    assert len(api_client.get(HISTORY).json()["readings"]) == 1
