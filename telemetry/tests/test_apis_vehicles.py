"""GET/PATCH/DELETE of the SPA's vehicles: shapes, owner-only 404s, primary switching, disconnect."""

from datetime import timedelta
from http import HTTPStatus
from uuid import uuid4

import pytest
import requests

from telemetry.tests.api_support import API_TEST_MARKS, T0, add_reading, link_account
from vehicles.models import SmartcarAccount, Vehicle

pytestmark = API_TEST_MARKS

LIST = "/api/v1/vehicles"
REVOKE = "https://api.smartcar.test/v2.0/vehicles/{vid}/application"


def detail(vehicle) -> str:
    return f"/api/v1/vehicles/{vehicle.pk}"


def iso(value) -> str:
    return value.isoformat().replace("+00:00", "Z")


def by_vid(vid: str) -> Vehicle:
    return Vehicle.objects.get(smartcar_vehicle_id=vid)


def vehicle_json(vehicle: Vehicle, *, status="active", latest=None) -> dict:
    return {
        "id": str(vehicle.pk),
        "smartcarVehicleId": vehicle.smartcar_vehicle_id,
        "status": status,
        "make": "TESLA",
        "model": "Model 3",
        "year": 2022,
        "nickname": vehicle.nickname,
        "isPrimary": vehicle.is_primary,
        "connectedAt": iso(vehicle.connected_at),
        "latestTelemetry": latest,
    }


READING_JSON = {
    "recordedAt": "2025-03-01T12:00:00Z",
    "receivedAt": "2025-03-01T12:00:05Z",
    "source": "poll",
    "socPct": 80.0,
    "rangeKm": 300.0,
    "chargingState": "NOT_CHARGING",
    "isPluggedIn": False,
    "latitude": 52.5,
    "longitude": 13.4,
    "odometerKm": 12000.0,
}


@pytest.fixture
def two_vehicles(user):
    link_account(user, vehicle_ids=("vid-1", "vid-2"))
    return by_vid("vid-1"), by_vid("vid-2")


# --- list ------------------------------------------------------------------------------------


def test_vehicle_list_returns_vehicles_with_latest_telemetry(api_client, two_vehicles):
    first, second = two_vehicles
    add_reading(first, T0 - timedelta(hours=1))
    add_reading(first, T0)
    # An older reading must not become "latest" just because it exists.
    add_reading(first, T0 - timedelta(hours=2), latest=False)

    response = api_client.get(LIST)

    assert response.status_code == HTTPStatus.OK
    assert response.json() == {
        "vehicles": [vehicle_json(first, latest=READING_JSON), vehicle_json(second)]
    }


def test_vehicle_list_reading_fields_are_null_when_unknown(api_client, two_vehicles):
    first, _ = two_vehicles
    add_reading(
        first,
        T0,
        soc_pct=None,
        range_km=None,
        charging_state=None,
        is_plugged_in=None,
        latitude=None,
        longitude=None,
        odometer_km=None,
        source="webhook",
    )

    latest = api_client.get(LIST).json()["vehicles"][0]["latestTelemetry"]

    assert latest == {
        **dict.fromkeys(READING_JSON, None),
        "recordedAt": "2025-03-01T12:00:00Z",
        "receivedAt": "2025-03-01T12:00:05Z",
        "source": "webhook",
    }


def test_vehicle_list_never_decrypts_tokens(api_client, two_vehicles, monkeypatch):
    def refuse(blob):
        raise AssertionError("the vehicle list decrypted a token")

    monkeypatch.setattr("vehicles.fields.decrypt_text", refuse)
    monkeypatch.setattr("vehicles.crypto.decrypt_text", refuse)

    for url in (LIST, "/v1/ev/me/vehicles"):
        assert api_client.get(url).status_code == HTTPStatus.OK


def test_reads_of_one_vehicle_never_decrypt_tokens(api_client, two_vehicles, monkeypatch):
    first, _ = two_vehicles
    add_reading(first, T0)

    def refuse(blob):
        raise AssertionError("a read of one vehicle decrypted a token")

    monkeypatch.setattr("vehicles.fields.decrypt_text", refuse)
    monkeypatch.setattr("vehicles.crypto.decrypt_text", refuse)

    for url in (
        detail(first),
        f"{detail(first)}/telemetry/latest",
        f"{detail(first)}/telemetry",
        f"{detail(first)}/telemetry?bucket=1h",
        "/v1/ev/me/telemetry/history",
    ):
        assert api_client.get(url).status_code == HTTPStatus.OK, url


def test_vehicle_list_primary_first(api_client, two_vehicles):
    _, second = two_vehicles
    Vehicle.objects.update(is_primary=False)
    Vehicle.objects.filter(pk=second.pk).update(is_primary=True)

    ids = [v["id"] for v in api_client.get(LIST).json()["vehicles"]]

    assert ids[0] == str(second.pk)


def test_vehicle_list_shows_needs_reauth_from_the_account(api_client, two_vehicles):
    SmartcarAccount.objects.update(status=SmartcarAccount.Status.NEEDS_REAUTH)

    statuses = [v["status"] for v in api_client.get(LIST).json()["vehicles"]]

    assert statuses == ["needs_reauth", "needs_reauth"]


def test_vehicle_list_shows_needs_reauth_from_the_vehicle(api_client, two_vehicles):
    Vehicle.objects.filter(smartcar_vehicle_id="vid-2").update(status="needs_reauth")

    statuses = [v["status"] for v in api_client.get(LIST).json()["vehicles"]]

    assert statuses == ["active", "needs_reauth"]


def test_vehicle_list_leaves_out_disconnected_unless_asked(api_client, two_vehicles):
    Vehicle.objects.filter(smartcar_vehicle_id="vid-2").update(status="disconnected")

    default = api_client.get(LIST).json()["vehicles"]
    everything = api_client.get(LIST, {"include": "disconnected"}).json()["vehicles"]

    assert [v["smartcarVehicleId"] for v in default] == ["vid-1"]
    assert [(v["smartcarVehicleId"], v["status"]) for v in everything] == [
        ("vid-1", "active"),
        ("vid-2", "disconnected"),
    ]


def test_vehicle_list_bad_include_is_400(api_client, two_vehicles):
    response = api_client.get(LIST, {"include": "everything"})

    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["error"] == "validation_error"
    assert list(response.json()["details"]["fields"]) == ["include"]


def test_vehicle_list_shows_only_own_vehicles(api_client, other_api_client, two_vehicles):
    assert other_api_client.get(LIST).json() == {"vehicles": []}
    assert len(api_client.get(LIST).json()["vehicles"]) == 2


def test_vehicle_list_requires_a_token(client, two_vehicles):
    response = client.get(LIST)

    assert response.status_code == HTTPStatus.UNAUTHORIZED
    assert response.json()["error"] == "unauthenticated"


@pytest.mark.parametrize("count", [1, 20])
def test_vehicle_list_query_count_is_constant(api_client, user, count, django_assert_num_queries):
    link_account(user, vehicle_ids=[f"vid-{n}" for n in range(count)])
    for vehicle in Vehicle.objects.all():
        add_reading(vehicle, T0)

    # One query for the JWT's user, one for vehicles + account + state + latest reading.
    with django_assert_num_queries(2):
        response = api_client.get(LIST)

    assert len(response.json()["vehicles"]) == count
    assert all(v["latestTelemetry"] for v in response.json()["vehicles"])


# --- detail ----------------------------------------------------------------------------------


def test_vehicle_detail_returns_the_vehicle(api_client, two_vehicles):
    first, _ = two_vehicles
    add_reading(first, T0)

    response = api_client.get(detail(first))

    assert response.status_code == HTTPStatus.OK
    assert response.json() == vehicle_json(first, latest=READING_JSON)


@pytest.mark.parametrize("method", ["get", "patch", "delete"])
def test_vehicle_detail_other_users_vehicle_is_404(
    other_api_client, two_vehicles, smartcar_api, method
):
    first, _ = two_vehicles

    response = getattr(other_api_client, method)(detail(first), {"nickname": "mine"}, format="json")

    assert response.status_code == HTTPStatus.NOT_FOUND
    assert response.json() == {"error": "not_found", "message": "Not found."}
    assert by_vid("vid-1").nickname == ""
    assert by_vid("vid-1").status == "active"
    assert len(smartcar_api.calls) == 0


@pytest.mark.parametrize("vehicle_id", [str(uuid4()), "not-a-uuid", "1"])
def test_vehicle_detail_unknown_or_malformed_id_is_404(api_client, two_vehicles, vehicle_id):
    response = api_client.get(f"{LIST}/{vehicle_id}")

    assert response.status_code == HTTPStatus.NOT_FOUND
    assert response.json() == {"error": "not_found", "message": "Not found."}


def test_vehicle_detail_shows_a_disconnected_vehicle(api_client, two_vehicles):
    _, second = two_vehicles
    Vehicle.objects.filter(pk=second.pk).update(status="disconnected")

    assert api_client.get(detail(second)).json()["status"] == "disconnected"


# --- PATCH -----------------------------------------------------------------------------------


def test_vehicle_patch_nickname_is_stripped(api_client, two_vehicles):
    first, _ = two_vehicles

    response = api_client.patch(detail(first), {"nickname": "  Blue car  "}, format="json")

    assert response.status_code == HTTPStatus.OK
    first.refresh_from_db()
    assert first.nickname == "Blue car"
    assert response.json() == vehicle_json(first)


def test_vehicle_patch_empty_nickname_clears_it(api_client, two_vehicles):
    first, _ = two_vehicles
    Vehicle.objects.filter(pk=first.pk).update(nickname="Old")

    response = api_client.patch(detail(first), {"nickname": ""}, format="json")

    assert response.json()["nickname"] == ""
    assert by_vid("vid-1").nickname == ""


def test_vehicle_patch_primary_switches_the_primary(api_client, two_vehicles):
    _, second = two_vehicles

    response = api_client.patch(detail(second), {"isPrimary": True}, format="json")

    assert response.status_code == HTTPStatus.OK
    assert response.json()["isPrimary"] is True
    listed = api_client.get(LIST).json()["vehicles"]
    assert [(v["smartcarVehicleId"], v["isPrimary"]) for v in listed] == [
        ("vid-2", True),
        ("vid-1", False),
    ]


def test_vehicle_patch_primary_false_unsets_it(api_client, two_vehicles):
    first, _ = two_vehicles

    response = api_client.patch(detail(first), {"isPrimary": False}, format="json")

    assert response.json()["isPrimary"] is False
    assert not Vehicle.objects.filter(is_primary=True).exists()


def test_vehicle_patch_disconnected_vehicle_cannot_become_primary(api_client, two_vehicles):
    _, second = two_vehicles
    Vehicle.objects.filter(pk=second.pk).update(status="disconnected")

    response = api_client.patch(detail(second), {"isPrimary": True}, format="json")

    assert response.status_code == HTTPStatus.CONFLICT
    assert response.json()["error"] == "vehicle_disconnected"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"nickname": "x" * 101}, "nickname"),
        ({"nickname": None}, "nickname"),
        ({"nickname": ["a"]}, "nickname"),
        ({"isPrimary": "maybe"}, "isPrimary"),
        ({"isPrimary": None}, "isPrimary"),
        ({"is_primary": True}, "is_primary"),
        ({"nickname": "ok", "status": "active"}, "status"),
    ],
)
def test_vehicle_patch_bad_field_is_400_naming_it(api_client, two_vehicles, body, field):
    first, _ = two_vehicles

    response = api_client.patch(detail(first), body, format="json")

    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["error"] == "validation_error"
    assert list(response.json()["details"]["fields"]) == [field]
    assert by_vid("vid-1").nickname == ""


def test_vehicle_patch_nickname_of_100_chars_is_fine(api_client, two_vehicles):
    first, _ = two_vehicles

    response = api_client.patch(detail(first), {"nickname": "x" * 100}, format="json")

    assert response.status_code == HTTPStatus.OK


def test_vehicle_patch_non_object_body_is_400(api_client, two_vehicles):
    first, _ = two_vehicles

    response = api_client.patch(detail(first), ["nickname"], format="json")

    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["error"] == "validation_error"


def test_vehicle_patch_invalid_json_is_400(api_client, two_vehicles):
    first, _ = two_vehicles

    response = api_client.patch(detail(first), "{nope", content_type="application/json")

    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["error"] == "invalid_json"


# --- DELETE ----------------------------------------------------------------------------------


def test_vehicle_delete_disconnects_at_smartcar(api_client, two_vehicles, smartcar_api):
    first, _ = two_vehicles
    revoke = smartcar_api.delete(REVOKE.format(vid="vid-1"), json={"status": "success"})

    response = api_client.delete(detail(first))

    assert response.status_code == HTTPStatus.NO_CONTENT
    assert response.content == b""
    assert revoke.call_count == 1
    assert by_vid("vid-1").status == "disconnected"
    assert [v["smartcarVehicleId"] for v in api_client.get(LIST).json()["vehicles"]] == ["vid-2"]
    assert SmartcarAccount.objects.get().access_token == "access-1"


def test_vehicle_delete_last_vehicle_deletes_tokens(api_client, user, smartcar_api):
    link_account(user, vehicle_ids=("vid-1",))
    smartcar_api.delete(REVOKE.format(vid="vid-1"), json={"status": "success"})

    response = api_client.delete(detail(by_vid("vid-1")))

    assert response.status_code == HTTPStatus.NO_CONTENT
    account = SmartcarAccount.objects.get()
    assert (account.status, account.access_token, account.refresh_token) == (
        "disconnected",
        None,
        None,
    )


def test_vehicle_delete_already_revoked_still_disconnects(api_client, user, smartcar_api):
    link_account(user, vehicle_ids=("vid-1",))
    smartcar_api.delete(
        REVOKE.format(vid="vid-1"),
        status=400,
        json={
            "type": "CONNECTED_SERVICES_ACCOUNT",
            "code": "PERMISSION",
            "description": "revoked",
            "resolution": {"type": "REAUTHENTICATE"},
        },
    )

    response = api_client.delete(detail(by_vid("vid-1")))

    assert response.status_code == HTTPStatus.NO_CONTENT
    assert by_vid("vid-1").status == "disconnected"
    assert SmartcarAccount.objects.get().access_token is None


@pytest.mark.parametrize(
    ("answer", "status", "body"),
    [
        (
            {"status": 502, "json": {"type": "UPSTREAM", "code": "UNKNOWN", "description": "x"}},
            HTTPStatus.BAD_GATEWAY,
            {
                "error": "smartcar_error",
                "message": "Smartcar could not complete the request. Please try again later.",
            },
        ),
        (
            {"body": requests.ReadTimeout()},
            HTTPStatus.GATEWAY_TIMEOUT,
            {
                "error": "smartcar_timeout",
                "message": "Smartcar did not answer in time. Please try again later.",
            },
        ),
    ],
    ids=["upstream", "timeout"],
)
def test_vehicle_delete_smartcar_down_is_5xx_and_changes_nothing(
    api_client, two_vehicles, smartcar_api, answer, status, body
):
    first, _ = two_vehicles
    smartcar_api.delete(REVOKE.format(vid="vid-1"), **answer)

    response = api_client.delete(detail(first))

    assert response.status_code == status
    assert response.json() == body
    stored = by_vid("vid-1")
    assert (stored.status, stored.is_primary) == ("active", True)
    assert SmartcarAccount.objects.get().status == "active"
