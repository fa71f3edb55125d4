"""Smartcar v4 webhook deliveries: building the envelope, signing the exact bytes, sending them.

Signature (API-FACTS §7a): lower-case hex HMAC-SHA256 of the exact body bytes, keyed by the
application management token, in header `SC-Signature`. Bodies are compact JSON and are sent
unchanged after signing. Never logs or prints the key or the signature.
"""

import hashlib
import hmac
import json
import secrets
import uuid
from typing import Any

import requests

from smartcar_emulator import signals, simulation
from smartcar_emulator.fleet import SimulatedVehicle

EVENT_TYPES = ("VERIFY", "VEHICLE_STATE", "VEHICLE_ERROR")
WEBHOOK_ID = "00000000-0000-4000-8000-00000000beef"
WEBHOOK_NAME = "Emulator webhook"
USER_AGENT = "Smartcar/emulator"
TIMEOUT_S = 15.0


def serialize(event: dict[str, Any]) -> bytes:
    """The compact JSON bytes that are signed and sent."""
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def sign(body: bytes, key: str) -> str:
    return hmac.new(key.encode("utf-8"), body, hashlib.sha256).hexdigest()


def _meta(delivered_at_ms: int, *, signal_count: int | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "version": "4.0",
        "webhookId": WEBHOOK_ID,
        "webhookName": WEBHOOK_NAME,
        "deliveryId": str(uuid.uuid4()),
        "deliveredAt": delivered_at_ms,
        "mode": "LIVE",
    }
    if signal_count is not None:
        meta["signalCount"] = signal_count
    return meta


def verify_event(*, now: float, challenge: str | None = None) -> dict[str, Any]:
    return {
        "eventId": str(uuid.uuid4()),
        "eventType": "VERIFY",
        "data": {"challenge": challenge or secrets.token_hex(16)},
        "meta": _meta(int(now * 1000)),
    }


def _vehicle(vehicle: SimulatedVehicle) -> dict[str, Any]:
    return {
        "id": vehicle.id,
        "make": vehicle.make,
        "model": vehicle.model,
        "year": vehicle.year,
        "powertrainType": "BEV",
    }


def vehicle_state_event(
    *, vehicle: SimulatedVehicle, user_id: str, now: float, first_delivery: bool = False
) -> dict[str, Any]:
    state = simulation.state_at(vehicle, now)
    items = []
    for spec in signals.SIGNALS:
        items.append(
            {
                "code": spec.code,
                "name": spec.name,
                "group": spec.group,
                "body": spec.body(vehicle, state, "metric"),
                "meta": {
                    "oemUpdatedAt": int(state.oem_updated_at * 1000),
                    "retrievedAt": int(now * 1000),
                },
                "status": {"value": "SUCCESS"},
            }
        )
    trigger = (
        {"code": "FIRST_DELIVERY"}
        if first_delivery
        else {
            "code": "tractionbattery-stateofcharge",
            "name": "StateOfCharge",
            "group": "TractionBattery",
        }
    )
    return {
        "eventId": str(uuid.uuid4()),
        "eventType": "VEHICLE_STATE",
        "vehicleId": vehicle.id,
        "data": {
            "user": {"id": user_id},
            "vehicle": _vehicle(vehicle),
            "signals": items,
            "triggers": [trigger],
        },
        "meta": _meta(int(now * 1000), signal_count=len(items)),
    }


# code → (type, description, resolution type)
VEHICLE_ERRORS: dict[str, tuple[str, str, str | None]] = {
    "ASLEEP": ("VEHICLE_STATE", "The vehicle is asleep.", None),
    "UNREACHABLE": ("VEHICLE_STATE", "The vehicle is not reachable.", None),
    "PERMISSION": (
        "CONNECTED_SERVICES_ACCOUNT",
        "The vehicle owner revoked access in the manufacturer's portal.",
        "REAUTHENTICATE",
    ),
    "AUTHENTICATION_FAILED": (
        "CONNECTED_SERVICES_ACCOUNT",
        "The owner's connected services credentials are no longer valid.",
        "REAUTHENTICATE",
    ),
}


def vehicle_error_event(
    *,
    vehicle: SimulatedVehicle,
    user_id: str,
    now: float,
    code: str = "ASLEEP",
    resolved: bool = False,
) -> dict[str, Any]:
    type_, description, resolution = VEHICLE_ERRORS[code]
    error = {
        "type": type_,
        "code": code,
        "state": "RESOLVED" if resolved else "ERROR",
        "description": description,
        "suggestedUserMessage": description,
        "docURL": "https://smartcar.com/docs/errors/api-errors",
        "resolution": {"type": resolution},
        "signals": [
            {"code": spec.code, "name": spec.name, "group": spec.group} for spec in signals.SIGNALS
        ],
    }
    return {
        "eventId": str(uuid.uuid4()),
        "eventType": "VEHICLE_ERROR",
        "vehicleId": vehicle.id,
        "data": {"user": {"id": user_id}, "vehicle": _vehicle(vehicle), "errors": [error]},
        "meta": _meta(int(now * 1000)),
    }


def redelivery(event: dict[str, Any], *, now: float) -> dict[str, Any]:
    """The same event as a retry: same eventId, new deliveryId and deliveredAt."""
    again = json.loads(json.dumps(event))
    again["meta"]["deliveryId"] = str(uuid.uuid4())
    again["meta"]["deliveredAt"] = int(now * 1000)
    return again


def deliver(
    url: str, body: bytes, signature: str, *, session: requests.Session | None = None
) -> requests.Response:
    """POST the exact signed bytes as Smartcar does."""
    headers = {
        "Content-Type": "application/json",
        "SC-Signature": signature,
        "User-Agent": USER_AGENT,
    }
    sender = session or requests
    return sender.post(url, data=body, headers=headers, timeout=TIMEOUT_S)
