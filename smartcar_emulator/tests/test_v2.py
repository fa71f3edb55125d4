"""Vehicle API v2.0: shapes, headers, paging, permissions, batch, disconnect, errors."""

import json
import re
import uuid
from http import HTTPStatus

import pytest

from smartcar_emulator import control, simulation
from smartcar_emulator.tests.conftest import ROOT, basic, bearer, tokens, vehicles_of_make

V2 = f"{ROOT}/v2.0"
ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


@pytest.fixture
def session(client):
    teslas = vehicles_of_make("TESLA")
    issued = tokens(client, make="TESLA", vehicles=teslas)
    return {"headers": bearer(issued["access_token"]), "vehicles": teslas, "tokens": issued}


def _assert_error(response, status, type_, code, resolution=None):
    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    body = response.json()
    request_id = response["SC-Request-Id"]
    uuid.UUID(request_id)
    assert body == {
        "type": type_,
        "code": code,
        "description": body["description"],
        "docURL": body["docURL"],
        "statusCode": status,
        "requestId": request_id,
        "resolution": {"type": resolution},
    }
    assert body["description"]
    assert body["docURL"].startswith("https://smartcar.com/docs/errors/api-errors/")
    return body


def test_user_returns_the_grant_user_id(client, session):
    response = client.get(f"{V2}/user", **session["headers"])
    assert response.status_code == HTTPStatus.OK
    assert response.json() == {"id": control.list_grants()[0]["user_id"]}
    uuid.UUID(response["sc-request-id"])


def test_vehicles_pages_with_limit_and_offset(client, session):
    ids = session["vehicles"]
    first = client.get(f"{V2}/vehicles", {"limit": 2}, **session["headers"]).json()
    assert first == {"vehicles": ids[:2], "paging": {"count": 3, "offset": 0}}
    rest = client.get(f"{V2}/vehicles", {"limit": 2, "offset": 2}, **session["headers"]).json()
    assert rest == {"vehicles": ids[2:], "paging": {"count": 3, "offset": 2}}
    default = client.get(f"{V2}/vehicles", **session["headers"]).json()
    assert default == {"vehicles": ids, "paging": {"count": 3, "offset": 0}}


@pytest.mark.parametrize("query", [{"limit": "x"}, {"limit": 0}, {"limit": 51}, {"offset": -1}])
def test_vehicles_rejects_bad_paging(client, session, query):
    response = client.get(f"{V2}/vehicles", query, **session["headers"])
    _assert_error(response, 400, "VALIDATION", "PARAMETER")


def test_every_read_endpoint_shape_and_headers(client, session, fake_clock):
    vid = session["vehicles"][0]
    vehicle = next(v for v in control.list_vehicles() if v["id"] == vid)
    fake_clock.advance(37)  # mid-minute: data age is the car's last report, fetched-at is now
    state = control.vehicle_state(vid)
    expected = {
        "": {"id": vid, "make": "TESLA", "model": "Model 3", "year": 2021},
        "/vin": {"vin": vehicle["vin"]},
        "/battery": {"percentRemaining": state.soc, "range": state.range_km},
        "/battery/capacity": {"capacity": 75.0},
        "/charge": {"isPluggedIn": state.is_plugged_in, "state": state.charge_state},
        "/charge/limit": {"limit": vehicle["charge_limit"]},
        "/location": {"latitude": state.latitude, "longitude": state.longitude},
        "/odometer": {"distance": state.odometer_km},
    }
    for path, body in expected.items():
        response = client.get(f"{V2}/vehicles/{vid}{path}", **session["headers"])
        assert response.status_code == HTTPStatus.OK, path
        assert response["Content-Type"] == "application/json"
        assert response.json() == body, path
        uuid.UUID(response["sc-request-id"])
        assert response["sc-unit-system"] == "metric"
        if path not in ("", "/vin", "/battery/capacity"):
            assert response["sc-data-age"] == "2026-01-01T00:00:00.000Z", path
            assert response["sc-fetched-at"] == "2026-01-01T00:00:37.000Z", path


def test_charge_state_is_one_of_smartcars(client, fake_clock, settings):
    settings.SMARTCAR_EMULATOR_ACCESS_TOKEN_TTL = 86400
    issued = tokens(client, make="TESLA")
    vid = vehicles_of_make("TESLA")[0]
    seen = set()
    for _ in range(24):
        fake_clock.advance(900)
        response = client.get(f"{V2}/vehicles/{vid}/charge", **bearer(issued["access_token"]))
        seen.add(response.json()["state"])
    assert seen <= {"CHARGING", "FULLY_CHARGED", "NOT_CHARGING"}
    assert len(seen) >= 2


def test_request_ids_are_unique(client, session):
    vid = session["vehicles"][0]
    ids = {
        client.get(f"{V2}/vehicles/{vid}/vin", **session["headers"])["sc-request-id"]
        for _ in range(3)
    }
    assert len(ids) == 3


def test_imperial_units_convert_distances(client, session):
    vid = session["vehicles"][0]
    state = control.vehicle_state(vid)
    response = client.get(
        f"{V2}/vehicles/{vid}/odometer", HTTP_SC_UNIT_SYSTEM="imperial", **session["headers"]
    )
    assert response["sc-unit-system"] == "imperial"
    assert response.json() == {"distance": round(state.odometer_km / 1.609344, 1)}


def test_permissions_endpoint_pages(client, session):
    vid = session["vehicles"][0]
    response = client.get(
        f"{V2}/vehicles/{vid}/permissions", {"limit": 2, "offset": 1}, **session["headers"]
    )
    assert response.json() == {
        "permissions": ["read_vin", "read_battery"],
        "paging": {"count": 6, "offset": 1},
    }


@pytest.mark.parametrize(
    ("path", "permission"),
    [
        ("", "read_vehicle_info"),
        ("/vin", "read_vin"),
        ("/battery", "read_battery"),
        ("/charge", "read_charge"),
        ("/location", "read_location"),
    ],
)
def test_scope_is_enforced(client, path, permission):
    issued = tokens(client, make="KIA", vehicles=vehicles_of_make("KIA"), scope="read_odometer")
    vid = vehicles_of_make("KIA")[0]
    response = client.get(f"{V2}/vehicles/{vid}{path}", **bearer(issued["access_token"]))
    body = _assert_error(response, 403, "PERMISSION", None, "REAUTHENTICATE")
    assert permission in body["description"]
    ok = client.get(f"{V2}/vehicles/{vid}/odometer", **bearer(issued["access_token"]))
    assert ok.status_code == HTTPStatus.OK


def test_vehicle_outside_the_grant_is_forbidden(client, session):
    other = vehicles_of_make("FORD")[0]
    response = client.get(f"{V2}/vehicles/{other}/battery", **session["headers"])
    _assert_error(response, 403, "PERMISSION", None, "REAUTHENTICATE")
    assert control.call_counts()["vehicles"] == {}


@pytest.mark.parametrize("auth", [None, "Bearer ", "Bearer not-a-token", "Basic abc", basic()])
def test_missing_or_bad_token_is_authentication_error(client, session, auth):
    headers = {"HTTP_AUTHORIZATION": auth} if auth else {}
    response = client.get(f"{V2}/vehicles", **headers)
    _assert_error(response, 401, "AUTHENTICATION", None)


def test_unknown_paths_are_resource_not_found(client, session):
    vid = session["vehicles"][0]
    for url in (f"{V2}/vehicles/{vid}/tires", f"{V2}/nothing", f"{ROOT}/v9/vehicles"):
        _assert_error(client.get(url, **session["headers"]), 404, "RESOURCE_NOT_FOUND", "PATH")
    _assert_error(client.post(f"{V2}/vehicles/{vid}/nothing"), 404, "RESOURCE_NOT_FOUND", "PATH")


def test_batch_returns_per_item_codes_bodies_and_headers(client, session):
    issued = tokens(client, make="VOLKSWAGEN", scope="read_odometer read_battery read_vehicle_info")
    vid = vehicles_of_make("VOLKSWAGEN")[0]
    control.set_faults(vid, rate_limit="VEHICLE", retry_after=120)
    response = client.post(
        f"{V2}/vehicles/{vid}/batch",
        json.dumps({"requests": [{"path": "/odometer"}, {"path": "/location"}, {"path": "/nope"}]}),
        content_type="application/json",
        **bearer(issued["access_token"]),
    )
    assert response.status_code == HTTPStatus.OK
    request_id = response["sc-request-id"]
    items = response.json()["responses"]
    assert [item["path"] for item in items] == ["/odometer", "/location", "/nope"]
    assert [item["code"] for item in items] == [429, 429, 404]
    assert items[0]["headers"] == {"retry-after": "120"}
    assert items[0]["body"]["type"] == "RATE_LIMIT"
    assert items[0]["body"]["code"] == "VEHICLE"
    assert items[0]["body"]["requestId"] == request_id
    assert items[0]["body"]["statusCode"] == 429
    assert items[2]["body"]["type"] == "RESOURCE_NOT_FOUND"


def test_batch_partial_failure_mixes_success_and_permission_error(client):
    issued = tokens(client, make="VOLKSWAGEN", scope="read_odometer read_vehicle_info")
    vid = vehicles_of_make("VOLKSWAGEN")[0]
    state = control.vehicle_state(vid)
    response = client.post(
        f"{V2}/vehicles/{vid}/batch",
        {"requests": [{"path": "/odometer"}, {"path": "/battery"}, {"path": "/"}]},
        content_type="application/json",
        **bearer(issued["access_token"]),
    )
    first, second, third = response.json()["responses"]
    assert first == {
        "path": "/odometer",
        "code": 200,
        "body": {"distance": state.odometer_km},
        "headers": {
            "sc-unit-system": "metric",
            "sc-data-age": first["headers"]["sc-data-age"],
            "sc-fetched-at": first["headers"]["sc-fetched-at"],
        },
    }
    assert ISO.fullmatch(first["headers"]["sc-data-age"])
    assert second["code"] == 403
    assert second["body"]["type"] == "PERMISSION"
    assert second["headers"] == {}
    assert third["code"] == 200
    assert third["body"]["make"] == "VOLKSWAGEN"
    # Every sub-request is billed to the vehicle; the batch call itself is not.
    assert control.call_counts()["vehicles"] == {vid: 3}
    assert control.call_counts()["paths"][vid] == {"/odometer": 1, "/battery": 1, "/": 1}


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        "[]",
        '{"requests": []}',
        '{"requests": [{"path": "odometer"}]}',
        '{"requests": [1]}',
    ],
)
def test_batch_validates_its_body(client, session, body):
    vid = session["vehicles"][0]
    response = client.post(
        f"{V2}/vehicles/{vid}/batch", body, content_type="application/json", **session["headers"]
    )
    _assert_error(response, 400, "VALIDATION", "PARAMETER")


def test_disconnect_revokes_the_grant(client, session):
    vid = session["vehicles"][0]
    response = client.delete(f"{V2}/vehicles/{vid}/application", **session["headers"])
    assert response.status_code == HTTPStatus.OK
    assert response.json() == {"status": "success"}
    _assert_error(client.get(f"{V2}/vehicles", **session["headers"]), 401, "AUTHENTICATION", None)
    refresh = client.post(
        f"{ROOT}/oauth/token",
        {"grant_type": "refresh_token", "refresh_token": session["tokens"]["refresh_token"]},
        HTTP_AUTHORIZATION=basic(),
    )
    assert refresh.status_code == HTTPStatus.BAD_REQUEST
    assert refresh.json()["error"] == "invalid_grant"
    assert control.list_grants()[0]["revoked"] is True


def test_wrong_method_is_rejected(client, session):
    vid = session["vehicles"][0]
    assert client.post(f"{V2}/vehicles/{vid}/odometer", **session["headers"]).status_code == 405
    assert client.get(f"{V2}/vehicles/{vid}/batch", **session["headers"]).status_code == 405


def test_soc_in_v2_is_a_fraction(client, session):
    vid = session["vehicles"][0]
    body = client.get(f"{V2}/vehicles/{vid}/battery", **session["headers"]).json()
    assert 0 <= body["percentRemaining"] <= 1
    assert body["range"] == pytest.approx(body["percentRemaining"] * 500.0, abs=0.1)
    assert simulation.CHARGING == "CHARGING"


def test_unknown_unit_system_falls_back_to_metric(client, session):
    vid = session["vehicles"][0]
    state = control.vehicle_state(vid)
    response = client.get(
        f"{V2}/vehicles/{vid}/odometer", HTTP_SC_UNIT_SYSTEM="furlongs", **session["headers"]
    )
    assert response["sc-unit-system"] == "metric"
    assert response.json() == {"distance": state.odometer_km}
