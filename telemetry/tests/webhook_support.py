"""Helpers for the webhook tests: signing, posting, linked vehicles, v4 and legacy event bodies."""

import hashlib
import hmac
import json
import uuid
from datetime import UTC, datetime
from typing import Any

from django.conf import settings

from smartcar_client.types import TokenSet
from vehicles.services import LinkedVehicleInfo, account_link

KEY = "test-management-token"  # SMARTCAR_MANAGEMENT_TOKEN in config/settings/test.py
URL = f"{settings.API_PREFIX}/smartcar/webhook"
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
T0_MS = int(T0.timestamp() * 1000)


def serialize(event: Any) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode()


def sign(body: bytes, key: str = KEY) -> str:
    return hmac.new(key.encode(), body, hashlib.sha256).hexdigest()


def post(client, body: bytes, signature: str | None = "sign", **extra):
    """POST raw bytes; `signature="sign"` signs them with KEY, None sends no header."""
    headers = dict(extra)
    if signature == "sign":
        signature = sign(body)
    if signature is not None:
        headers["HTTP_SC_SIGNATURE"] = signature
    return client.generic("POST", URL, body, content_type="application/json", **headers)


def send(client, event: Any, **extra):
    return post(client, serialize(event), **extra)


def link(owner, *, vehicle_ids=("vid-1",), smartcar_user_id="sc-user-1"):
    """An active account with live vehicles, as Connect leaves it."""
    tokens = {"access_token": "access-1", "refresh_token": "refresh-1", "expires_in": 7200}
    return account_link(
        owner=owner,
        smartcar_user_id=smartcar_user_id,
        tokens=TokenSet.from_json(tokens),
        scopes=["read_battery", "read_charge", "read_location", "read_odometer"],
        vehicles=[LinkedVehicleInfo(vid, make="TESLA") for vid in vehicle_ids],
    )


def signal(code: str, body: dict[str, Any], oem_ms: int = T0_MS) -> dict[str, Any]:
    return {
        "code": code,
        "name": code,
        "group": code.split("-")[0],
        "body": body,
        "meta": {"oemUpdatedAt": oem_ms, "retrievedAt": oem_ms + 1000},
        "status": {"value": "SUCCESS"},
    }


def state_event(
    vehicle_id: str | None = "vid-1",
    *,
    soc: float = 80,
    oem_ms: int = T0_MS,
    event_id: str | None = None,
    triggers: str = "data",
    vehicle_id_in_data: bool = False,
) -> dict[str, Any]:
    """A v4 VEHICLE_STATE; `triggers` "data" (DOCS shape) or "top" (HA fixture shape)."""
    data: dict[str, Any] = {
        "user": {"id": "sc-user-1"},
        "vehicle": {"id": vehicle_id if vehicle_id_in_data else "other", "make": "TESLA"},
        "signals": [
            signal("tractionbattery-stateofcharge", {"value": soc, "unit": "percent"}, oem_ms),
            signal("tractionbattery-range", {"value": 300, "unit": "kilometers"}, oem_ms),
            signal("charge-ischarging", {"value": False}, oem_ms),
        ],
    }
    event: dict[str, Any] = {
        "eventId": event_id or str(uuid.uuid4()),
        "eventType": "VEHICLE_STATE",
        "data": data,
        "meta": {"version": "4.0", "deliveryId": str(uuid.uuid4()), "deliveredAt": oem_ms},
    }
    if vehicle_id_in_data:
        data["vehicle"]["id"] = vehicle_id
    else:
        event["vehicleId"] = vehicle_id
    trigger = {"code": "tractionbattery-stateofcharge"}
    if triggers == "data":
        data["triggers"] = [trigger]
    else:
        event["triggers"] = [{"type": "SIGNAL_UPDATED", "signal": trigger}]
    return event


def error_event(
    vehicle_id: str = "vid-1",
    *,
    type_: str = "VEHICLE_STATE",
    code: str = "ASLEEP",
    state: str = "ERROR",
    resolution: str | None = None,
) -> dict[str, Any]:
    return {
        "eventId": str(uuid.uuid4()),
        "eventType": "VEHICLE_ERROR",
        "vehicleId": vehicle_id,
        "data": {
            "errors": [
                {
                    "type": type_,
                    "code": code,
                    "state": state,
                    "description": "Upstream text that must never be stored as our error.",
                    "resolution": {"type": resolution},
                }
            ]
        },
        "meta": {"version": "4.0", "deliveryId": str(uuid.uuid4())},
    }


def verify_event(challenge: str) -> dict[str, Any]:
    return {
        "eventId": str(uuid.uuid4()),
        "eventType": "VERIFY",
        "data": {"challenge": challenge},
        "meta": {"version": "4.0", "webhookId": "wh-1", "deliveryId": str(uuid.uuid4())},
    }
