"""Fault injection (Python API and control endpoint), control endpoints, call counts."""

import json
from http import HTTPStatus

import pytest

from smartcar_emulator import control
from smartcar_emulator.tests.conftest import ROOT, bearer, tokens, vehicles_of_make

V2 = f"{ROOT}/v2.0"


@pytest.fixture
def setup(client):
    teslas = vehicles_of_make("TESLA")
    issued = tokens(client, make="TESLA", vehicles=teslas)
    return bearer(issued["access_token"]), teslas


def _battery(client, auth, vid):
    return client.get(f"{V2}/vehicles/{vid}/battery", **auth)


@pytest.mark.parametrize(
    ("faults", "status", "type_", "code", "resolution"),
    [
        ({"revoked": "AUTHENTICATION"}, 401, "AUTHENTICATION", None, None),
        ({"revoked": "PERMISSION"}, 403, "PERMISSION", None, "REAUTHENTICATE"),
        (
            {"revoked": "CONNECTED_SERVICES_ACCOUNT"},
            400,
            "CONNECTED_SERVICES_ACCOUNT",
            "PERMISSION",
            "REAUTHENTICATE",
        ),
        ({"asleep": True}, 409, "VEHICLE_STATE", "ASLEEP", None),
        ({"billing": True}, 430, "BILLING", "VEHICLE_REQUEST_LIMIT", None),
        ({"error_rate": 1.0}, 500, "SERVER", "INTERNAL", "RETRY_LATER"),
        ({"rate_limit": "SMARTCAR_API"}, 429, "RATE_LIMIT", "SMARTCAR_API", "RETRY_LATER"),
    ],
)
def test_fault_errors_have_smartcar_bodies(client, setup, faults, status, type_, code, resolution):
    auth, (vid, other, _) = setup
    control.set_faults(vid, **faults)
    response = _battery(client, auth, vid)
    assert response.status_code == status
    body = response.json()
    assert (body["type"], body["code"], body["statusCode"], body["resolution"]) == (
        type_,
        code,
        status,
        {"type": resolution},
    )
    assert body["requestId"] == response["SC-Request-Id"]
    # Per-vehicle: the other car answers normally.
    assert _battery(client, auth, other).status_code == HTTPStatus.OK


def test_rate_limit_vehicle_sends_retry_after(client, setup):
    auth, (vid, *_) = setup
    control.set_faults(vid, rate_limit="VEHICLE", retry_after=42)
    response = _battery(client, auth, vid)
    assert response.status_code == HTTPStatus.TOO_MANY_REQUESTS
    assert response["Retry-After"] == "42"
    control.set_faults(vid, rate_limit="VEHICLE")
    assert _battery(client, auth, vid)["Retry-After"] == "60"
    control.set_faults(vid, rate_limit="SMARTCAR_API")
    assert "Retry-After" not in _battery(client, auth, vid)


def test_global_faults_hit_every_call_and_vehicle_faults_override(client, setup):
    auth, (vid, other, _) = setup
    control.set_faults(asleep=True)
    assert _battery(client, auth, other).status_code == HTTPStatus.CONFLICT
    assert client.get(f"{V2}/user", **auth).status_code == HTTPStatus.CONFLICT
    control.set_faults(vid, asleep=False)
    assert _battery(client, auth, vid).status_code == HTTPStatus.OK
    control.clear_faults()
    assert _battery(client, auth, other).status_code == HTTPStatus.OK


def test_latency_sleeps_through_the_injectable_clock(client, setup, fake_clock):
    auth, (vid, *_) = setup
    control.set_faults(vid, latency_ms=1500)
    start = fake_clock()
    assert _battery(client, auth, vid).status_code == HTTPStatus.OK
    assert fake_clock.slept == [1.5]
    assert fake_clock() == start + 1.5


def test_malformed_json_fault(client, setup):
    auth, (vid, *_) = setup
    control.set_faults(vid, malformed_json=True)
    response = _battery(client, auth, vid)
    assert response.status_code == HTTPStatus.OK
    assert response["Content-Type"] == "application/json"
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.content)


def test_error_rate_is_reproducible_and_roughly_the_rate(client, setup):
    auth, (vid, *_) = setup
    control.set_faults(vid, error_rate=0.3)
    first = [_battery(client, auth, vid).status_code for _ in range(100)]
    assert 15 <= first.count(500) <= 45
    assert set(first) == {200, 500}
    # Same seed, counts from zero again: the very same calls fail.
    control.reset()
    auth2 = bearer(tokens(client, make="TESLA")["access_token"])
    control.set_faults(vid, error_rate=0.3)
    second = [_battery(client, auth2, vid).status_code for _ in range(100)]
    assert first == second


def test_faults_apply_per_batch_item(client, setup):
    auth, (vid, *_) = setup
    control.set_faults(vid, asleep=True)
    response = client.post(
        f"{V2}/vehicles/{vid}/batch",
        {"requests": [{"path": "/battery"}, {"path": "/odometer"}]},
        content_type="application/json",
        **auth,
    )
    assert response.status_code == HTTPStatus.OK
    assert [item["code"] for item in response.json()["responses"]] == [409, 409]


def test_faults_apply_to_v3(client, setup):
    auth, (vid, *_) = setup
    control.set_faults(vid, rate_limit="VEHICLE", retry_after=9)
    response = client.get(f"{ROOT}/v3/vehicles/{vid}/signals", **auth)
    assert response.status_code == HTTPStatus.TOO_MANY_REQUESTS
    assert response["Retry-After"] == "9"


@pytest.mark.parametrize(
    "faults",
    [
        {"latency_ms": -1},
        {"latency_ms": True},
        {"error_rate": 2},
        {"rate_limit": "OEM"},
        {"revoked": "yes"},
        {"asleep": "true"},
        {"sleepy": True},
        {"vehicle": "not-a-vehicle", "asleep": True},
    ],
)
def test_control_faults_endpoint_validates(client, faults):
    response = client.post(f"{ROOT}/_control/faults", faults, content_type="application/json")
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert control.get_faults() == {"global": {}, "vehicles": {}}


def test_control_faults_endpoint_sets_lists_and_clears(client, setup):
    auth, (vid, *_) = setup
    url = f"{ROOT}/_control/faults"
    response = client.post(
        url, {"vehicle": vid, "asleep": True, "latency_ms": 5}, content_type="application/json"
    )
    assert response.json() == {"global": {}, "vehicles": {vid: {"asleep": True, "latency_ms": 5}}}
    client.post(url, {"error_rate": 0.5}, content_type="application/json")
    assert client.get(url).json() == {
        "global": {"error_rate": 0.5},
        "vehicles": {vid: {"asleep": True, "latency_ms": 5}},
    }
    assert _battery(client, auth, vid).status_code == HTTPStatus.CONFLICT
    assert client.delete(url).json() == {"global": {}, "vehicles": {}}
    assert _battery(client, auth, vid).status_code == HTTPStatus.OK


def test_control_calls_counts_per_vehicle(client, setup):
    auth, (vid, other, _) = setup
    for _ in range(3):
        _battery(client, auth, vid)
    _battery(client, auth, other)
    client.get(f"{ROOT}/v3/vehicles/{other}/signals/tractionbattery-range", **auth)
    body = client.get(f"{ROOT}/_control/calls").json()
    assert body["vehicles"] == {vid: 3, other: 2}
    assert body["paths"][other] == {"/battery": 1, "/v3/signals/tractionbattery-range": 1}


def test_control_reset_forgets_everything(client, setup):
    auth, (vid, *_) = setup
    control.set_faults(vid, asleep=True)
    response = client.post(f"{ROOT}/_control/reset")
    assert response.json() == {"status": "reset"}
    assert control.list_grants() == []
    assert control.get_faults() == {"global": {}, "vehicles": {}}
    assert client.get(f"{V2}/user", **auth).status_code == HTTPStatus.UNAUTHORIZED


def test_control_reset_with_seed_changes_the_fleet(client):
    before = control.list_vehicles()
    client.post(f"{ROOT}/_control/reset", {"seed": 7}, content_type="application/json")
    after = client.get(f"{ROOT}/_control/vehicles").json()["vehicles"]
    assert [v["id"] for v in after] != [v["id"] for v in before]
    assert (
        client.post(
            f"{ROOT}/_control/reset", {"seed": "x"}, content_type="application/json"
        ).status_code
        == 400
    )


def test_control_clock_advances_time(client, setup, fake_clock):
    auth, _ = setup
    response = client.post(
        f"{ROOT}/_control/clock", {"advance": 7200}, content_type="application/json"
    )
    assert response.status_code == HTTPStatus.OK
    assert client.get(f"{V2}/user", **auth).status_code == HTTPStatus.UNAUTHORIZED
    bad = client.post(f"{ROOT}/_control/clock", {"advance": -1}, content_type="application/json")
    assert bad.status_code == HTTPStatus.BAD_REQUEST
