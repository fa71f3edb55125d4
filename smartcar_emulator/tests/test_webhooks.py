"""Webhook envelope, signing and the emulator_send_webhook command."""

import hashlib
import hmac
import json
from io import StringIO

import pytest
import responses
from django.core.management import CommandError, call_command

from smartcar_emulator import webhooks
from smartcar_emulator.fleet import build_fleet, user_id_for

TARGET = "https://api.example.test/api/v1/smartcar/webhooks"
KEY = "test-management-token"


def test_sign_matches_rfc4231_vector():
    # RFC 4231 test case 2: HMAC-SHA256(key="Jefe", data="what do ya want for nothing?").
    assert webhooks.sign(b"what do ya want for nothing?", "Jefe") == (
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    )


def test_serialize_is_compact_utf8():
    assert webhooks.serialize({"a": [1, {"b": "é"}]}) == '{"a":[1,{"b":"é"}]}'.encode()


def test_verify_event_shape():
    event = webhooks.verify_event(now=1_761_896_351.529, challenge="abc")
    assert event["eventType"] == "VERIFY"
    assert event["data"] == {"challenge": "abc"}
    assert "vehicleId" not in event
    assert event["meta"]["version"] == "4.0"
    assert event["meta"]["deliveredAt"] == 1761896351529


def test_vehicle_state_event_shape():
    vehicle = build_fleet(42)[0]
    event = webhooks.vehicle_state_event(vehicle=vehicle, user_id="u-1", now=1_767_225_630.0)
    assert event["eventType"] == "VEHICLE_STATE"
    assert event["vehicleId"] == vehicle.id
    assert event["data"]["user"] == {"id": "u-1"}
    assert event["data"]["vehicle"]["make"] == "TESLA"
    codes = [s["code"] for s in event["data"]["signals"]]
    assert "tractionbattery-stateofcharge" in codes
    assert "location-preciselocation" in codes
    soc = event["data"]["signals"][0]
    assert soc["body"]["unit"] == "percent"
    assert 0 <= soc["body"]["value"] <= 100
    assert soc["meta"] == {"oemUpdatedAt": 1767225600000, "retrievedAt": 1767225630000}
    assert soc["status"] == {"value": "SUCCESS"}
    assert event["meta"]["signalCount"] == len(codes)


def test_vehicle_error_event_shape():
    vehicle = build_fleet(42)[1]
    event = webhooks.vehicle_error_event(vehicle=vehicle, user_id="u", now=0, code="PERMISSION")
    (error,) = event["data"]["errors"]
    assert error["type"] == "CONNECTED_SERVICES_ACCOUNT"
    assert error["state"] == "ERROR"
    assert error["resolution"] == {"type": "REAUTHENTICATE"}


def _delivered(call):
    body = call.request.body
    return body, json.loads(body), call.request.headers


@responses.activate
def test_command_sends_signed_exact_bytes(settings):
    settings.SMARTCAR_MANAGEMENT_TOKEN = KEY
    responses.post(TARGET, status=200)
    out = StringIO()
    call_command("emulator_send_webhook", "--url", TARGET, stdout=out)
    (call,) = responses.calls
    body, event, headers = _delivered(call)
    assert headers["SC-Signature"] == hmac.new(KEY.encode(), body, hashlib.sha256).hexdigest()
    assert headers["Content-Type"] == "application/json"
    assert body == webhooks.serialize(event)
    assert event["eventType"] == "VEHICLE_STATE"
    vehicle = build_fleet(42)[0]
    assert event["vehicleId"] == vehicle.id
    assert event["data"]["user"]["id"] == user_id_for(42, "TESLA", "driver")
    assert "HTTP 200" in out.getvalue()
    assert KEY not in out.getvalue()
    assert headers["SC-Signature"] not in out.getvalue()


@responses.activate
def test_command_duplicate_keeps_event_id_with_new_delivery(settings):
    settings.SMARTCAR_MANAGEMENT_TOKEN = KEY
    responses.post(TARGET, status=200)
    call_command(
        "emulator_send_webhook",
        "--url",
        TARGET,
        "--duplicate",
        "--event",
        "vehicle_error",
        stdout=StringIO(),
    )
    first, second = (_delivered(call) for call in responses.calls)
    assert first[1]["eventId"] == second[1]["eventId"]
    assert first[1]["meta"]["deliveryId"] != second[1]["meta"]["deliveryId"]
    for body, _, headers in (first, second):
        assert headers["SC-Signature"] == webhooks.sign(body, KEY)


@responses.activate
def test_command_bad_signature(settings):
    settings.SMARTCAR_MANAGEMENT_TOKEN = KEY
    responses.post(TARGET, status=401)
    out = StringIO()
    call_command("emulator_send_webhook", "--url", TARGET, "--bad-signature", stdout=out)
    body, _, headers = _delivered(responses.calls[0])
    assert headers["SC-Signature"] != webhooks.sign(body, KEY)
    assert len(headers["SC-Signature"]) == 64
    assert "HTTP 401" in out.getvalue()


@responses.activate
def test_command_verify_with_challenge_and_vehicle_by_vin(settings):
    settings.SMARTCAR_MANAGEMENT_TOKEN = KEY
    settings.SMARTCAR_EMULATOR_WEBHOOK_URL = TARGET
    responses.post(TARGET, status=200)
    call_command(
        "emulator_send_webhook", "--event", "VERIFY", "--challenge", "xyz", stdout=StringIO()
    )
    assert _delivered(responses.calls[0])[1]["data"] == {"challenge": "xyz"}
    vehicle = build_fleet(42)[4]
    call_command("emulator_send_webhook", "--vehicle", vehicle.vin, stdout=StringIO())
    assert _delivered(responses.calls[1])[1]["vehicleId"] == vehicle.id


def test_command_refuses_without_management_token(settings):
    settings.SMARTCAR_MANAGEMENT_TOKEN = ""
    with pytest.raises(CommandError, match="SMARTCAR_MANAGEMENT_TOKEN"):
        call_command("emulator_send_webhook", "--url", TARGET)


def test_command_needs_a_url(settings):
    settings.SMARTCAR_MANAGEMENT_TOKEN = KEY
    settings.SMARTCAR_EMULATOR_WEBHOOK_URL = ""
    with pytest.raises(CommandError, match="--url"):
        call_command("emulator_send_webhook")


def test_command_unknown_vehicle(settings):
    settings.SMARTCAR_MANAGEMENT_TOKEN = KEY
    with pytest.raises(CommandError, match="Unknown vehicle"):
        call_command("emulator_send_webhook", "--url", TARGET, "--vehicle", "nope")


@responses.activate
def test_command_connection_error_is_a_command_error(settings):
    settings.SMARTCAR_MANAGEMENT_TOKEN = KEY
    with pytest.raises(CommandError, match="Delivery 1 failed"):
        call_command("emulator_send_webhook", "--url", TARGET)
