"""Injected faults: what they are, how they are validated, and which error one call gets.

A `Faults` value applies either to every API call (global) or to one vehicle; a vehicle's own
value replaces the global one field by field where set. The decision for one call is a pure
function of the faults, the seed, the vehicle and the call's number, so error rates are
reproducible.
"""

import random
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from smartcar_emulator.errors import ApiError

RATE_LIMIT_KINDS = ("VEHICLE", "SMARTCAR_API")
REVOKED_KINDS = ("AUTHENTICATION", "PERMISSION", "CONNECTED_SERVICES_ACCOUNT")


@dataclass(frozen=True)
class Faults:
    latency_ms: int | None = None
    error_rate: float | None = None
    rate_limit: str | None = None
    retry_after: int | None = None
    revoked: str | None = None
    asleep: bool | None = None
    billing: bool | None = None
    malformed_json: bool | None = None

    def merged_over(self, base: "Faults") -> "Faults":
        """This value's set fields on top of `base`."""
        own = {name: value for name, value in asdict(self).items() if value is not None}
        return replace(base, **own)

    def as_dict(self) -> dict[str, Any]:
        return {name: value for name, value in asdict(self).items() if value is not None}


def parse_faults(data: dict[str, Any]) -> Faults:
    """A `Faults` from JSON-like input; raises ValueError naming the first bad field."""
    known = {f.name for f in fields(Faults)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown fault field(s): {', '.join(unknown)}")
    values: dict[str, Any] = {}
    for name in ("latency_ms", "retry_after"):
        if data.get(name) is not None:
            value = data[name]
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer")
            values[name] = value
    if data.get("error_rate") is not None:
        rate = data["error_rate"]
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
            raise ValueError("error_rate must be a number between 0 and 1")
        values["error_rate"] = float(rate)
    for name, allowed in (("rate_limit", RATE_LIMIT_KINDS), ("revoked", REVOKED_KINDS)):
        if data.get(name) is not None:
            if data[name] not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}")
            values[name] = data[name]
    for name in ("asleep", "billing", "malformed_json"):
        if data.get(name) is not None:
            if not isinstance(data[name], bool):
                raise ValueError(f"{name} must be true or false")
            values[name] = data[name]
    return Faults(**values)


def error_for_call(faults: Faults, *, seed: int, scope: str, call_number: int) -> ApiError | None:
    """The error this call must fail with, or None. Checked in Smartcar's likely order."""
    if faults.revoked == "AUTHENTICATION":
        return ApiError.authentication()
    if faults.revoked == "PERMISSION":
        return ApiError.permission("The vehicle owner revoked this application's access.")
    if faults.revoked == "CONNECTED_SERVICES_ACCOUNT":
        return ApiError(
            400,
            "CONNECTED_SERVICES_ACCOUNT",
            "PERMISSION",
            "The vehicle owner has revoked Smartcar's access in the manufacturer's portal.",
            resolution="REAUTHENTICATE",
        )
    if faults.billing:
        return ApiError(
            430,
            "BILLING",
            "VEHICLE_REQUEST_LIMIT",
            "This vehicle has exceeded the number of requests allowed by your plan.",
        )
    if faults.rate_limit == "VEHICLE":
        return ApiError.rate_limit("VEHICLE", retry_after=faults.retry_after or 60)
    if faults.rate_limit == "SMARTCAR_API":
        return ApiError.rate_limit("SMARTCAR_API", retry_after=faults.retry_after)
    if faults.asleep:
        return ApiError(
            409,
            "VEHICLE_STATE",
            "ASLEEP",
            "The vehicle is asleep and could not be woken up to answer the request.",
        )
    if faults.error_rate:
        draw = random.Random(f"{seed}:{scope}:{call_number}").random()  # noqa: S311 - reproducible, not secret
        if draw < faults.error_rate:
            return ApiError(
                500,
                "SERVER",
                "INTERNAL",
                "Smartcar experienced an unexpected server error.",
                resolution="RETRY_LATER",
            )
    return None
