"""Vehicle API v2.0: user, vehicle list, attributes, vin, battery, charge, location, odometer,
permissions, batch and disconnect, with Smartcar's response headers (API-FACTS §4)."""

import json
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_http_methods

from smartcar_emulator import oauth, simulation
from smartcar_emulator.errors import ApiError, json_response
from smartcar_emulator.fleet import SimulatedVehicle
from smartcar_emulator.views.common import (
    ApiContext,
    api_endpoint,
    check_global_faults,
    count_and_check_faults,
    distance,
    iso,
    require_permission,
    vehicle_of,
)

Body = dict[str, Any]


def _attributes(v: SimulatedVehicle, s: simulation.VehicleState, unit: str) -> Body:
    return {"id": v.id, "make": v.make, "model": v.model, "year": v.year}


# path → (permission, does it carry vehicle data (sc-data-age), body builder)
_READS: dict[
    str, tuple[str, bool, Callable[[SimulatedVehicle, simulation.VehicleState, str], Body]]
] = {
    "/": ("read_vehicle_info", False, _attributes),
    "/vin": ("read_vin", False, lambda v, s, u: {"vin": v.vin}),
    "/battery": (
        "read_battery",
        True,
        lambda v, s, u: {"percentRemaining": s.soc, "range": distance(s.range_km, u)},
    ),
    "/battery/capacity": ("read_battery", False, lambda v, s, u: {"capacity": v.capacity_kwh}),
    "/charge": (
        "read_charge",
        True,
        lambda v, s, u: {"isPluggedIn": s.is_plugged_in, "state": s.charge_state},
    ),
    "/charge/limit": ("read_charge", True, lambda v, s, u: {"limit": v.charge_limit}),
    "/location": (
        "read_location",
        True,
        lambda v, s, u: {"latitude": s.latitude, "longitude": s.longitude},
    ),
    "/odometer": (
        "read_odometer",
        True,
        lambda v, s, u: {"distance": distance(s.odometer_km, u)},
    ),
}


def _paging(request: HttpRequest, default_limit: int, max_limit: int) -> tuple[int, int]:
    try:
        limit = int(request.GET.get("limit", default_limit))
        offset = int(request.GET.get("offset", 0))
    except ValueError as exc:
        raise ApiError.validation("limit and offset must be integers.") from exc
    if not 1 <= limit <= max_limit or offset < 0:
        raise ApiError.validation(f"limit must be 1-{max_limit} and offset non-negative.")
    return limit, offset


def read_one(ctx: ApiContext, vehicle: SimulatedVehicle, path: str) -> tuple[Body, dict[str, str]]:
    """One billable read of `path` (already known to exist): body and Smartcar's data headers."""
    permission, is_data, build = _READS[path]
    count_and_check_faults(vehicle.id, path)
    require_permission(ctx, permission)
    state = simulation.state_at(vehicle, ctx.now)
    headers = {"sc-unit-system": ctx.unit_system}
    if is_data:
        headers["sc-data-age"] = iso(state.oem_updated_at)
        headers["sc-fetched-at"] = iso(ctx.now)
    return build(vehicle, state, ctx.unit_system), headers


@api_endpoint
@require_http_methods(["GET"])
def user(request: HttpRequest, ctx: ApiContext) -> HttpResponse:
    check_global_faults("/user")
    return json_response({"id": ctx.grant.user_id})


@api_endpoint
@require_http_methods(["GET"])
def vehicles(request: HttpRequest, ctx: ApiContext) -> HttpResponse:
    check_global_faults("/vehicles")
    limit, offset = _paging(request, default_limit=10, max_limit=50)
    ids = ctx.grant.vehicle_ids
    body = {
        "vehicles": ids[offset : offset + limit],
        "paging": {"count": len(ids), "offset": offset},
    }
    return json_response(body)


@api_endpoint
@require_http_methods(["GET"])
def vehicle_read(
    request: HttpRequest, ctx: ApiContext, vehicle_id: str, path: str = ""
) -> HttpResponse:
    path = "/" + path
    if path not in _READS:
        raise ApiError.not_found()
    vehicle = vehicle_of(ctx, vehicle_id)
    body, headers = read_one(ctx, vehicle, path)
    return json_response(body, headers=headers)


@api_endpoint
@require_http_methods(["GET"])
def permissions(request: HttpRequest, ctx: ApiContext, vehicle_id: str) -> HttpResponse:
    vehicle = vehicle_of(ctx, vehicle_id)
    limit, offset = _paging(request, default_limit=25, max_limit=100)
    count_and_check_faults(vehicle.id, "/permissions")
    granted = ctx.grant.permissions
    body = {
        "permissions": granted[offset : offset + limit],
        "paging": {"count": len(granted), "offset": offset},
    }
    return json_response(body)


def _batch_requests(request: HttpRequest) -> list[str]:
    try:
        payload = json.loads(request.body or b"null")
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError.validation("The request body is not valid JSON.") from exc
    items = payload.get("requests") if isinstance(payload, dict) else None
    if not isinstance(items, list) or not items:
        raise ApiError.validation('"requests" must be a non-empty array.')
    paths = []
    for item in items:
        path = item.get("path") if isinstance(item, dict) else None
        if not isinstance(path, str) or not path.startswith("/"):
            raise ApiError.validation('Every request needs a "path" starting with "/".')
        paths.append(path)
    return paths


@api_endpoint
@require_http_methods(["POST"])
def batch(request: HttpRequest, ctx: ApiContext, vehicle_id: str) -> HttpResponse:
    vehicle = vehicle_of(ctx, vehicle_id)
    responses = []
    for path in _batch_requests(request):
        normalised = path.rstrip("/") or "/"
        try:
            if normalised not in _READS:
                raise ApiError.not_found()
            body, headers = read_one(ctx, vehicle, normalised)
            responses.append({"path": path, "code": 200, "body": body, "headers": headers})
        except ApiError as error:
            item_headers = {k.lower(): v for k, v in error.headers().items()}
            responses.append(
                {
                    "path": path,
                    "code": error.status,
                    "body": error.body(ctx.request_id),
                    "headers": item_headers,
                }
            )
    return json_response({"responses": responses})


@api_endpoint
@require_http_methods(["DELETE"])
def application(request: HttpRequest, ctx: ApiContext, vehicle_id: str) -> HttpResponse:
    vehicle_of(ctx, vehicle_id)
    oauth.grant_revoke(ctx.grant.id)
    return json_response({"status": "success"})
