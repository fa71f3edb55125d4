"""Vehicle API v3: vehicles, one vehicle, its signals (paged) and one signal (API-FACTS §10).

Links (`links.self/first/next/previous/last`, item `links.self`) are host-relative absolute paths
built with `reverse`, so they carry the mount point: `/_smartcar/v3/vehicles/{id}/signals?page=2&
pageSize=10` when mounted at `/_smartcar/`, and exactly Smartcar's `/v3/vehicles/…` when mounted at
the root. Resolve them against the scheme and host of the request (`urljoin(current_url, link)`).
"""

from typing import Any
from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from smartcar_emulator import signals, simulation
from smartcar_emulator.errors import ApiError, json_response
from smartcar_emulator.fleet import SimulatedVehicle
from smartcar_emulator.views.common import (
    ApiContext,
    api_endpoint,
    check_global_faults,
    count_and_check_faults,
    require_permission,
    vehicle_of,
)

DEFAULT_PAGE_SIZE = 10
MAX_PAGE_SIZE = 100


def _page_args(request: HttpRequest) -> tuple[int, int]:
    try:
        page = int(request.GET.get("page", 1))
        size = int(request.GET.get("pageSize", DEFAULT_PAGE_SIZE))
    except ValueError as exc:
        raise ApiError.validation("page and pageSize must be integers.") from exc
    if page < 1 or not 1 <= size <= MAX_PAGE_SIZE:
        raise ApiError.validation(f"page must be >= 1 and pageSize 1-{MAX_PAGE_SIZE}.")
    return page, size


def _paged(path: str, items: list[Any], page: int, size: int) -> dict[str, Any]:
    last = max(1, -(-len(items) // size))

    def link(number: int) -> str:
        return f"{path}?{urlencode({'page': number, 'pageSize': size})}"

    return {
        "data": items[(page - 1) * size : page * size],
        "meta": {"page": page, "pageSize": size, "totalCount": len(items)},
        "links": {
            "self": link(page),
            "first": link(1),
            "previous": link(page - 1) if page > 1 else None,
            "next": link(page + 1) if page < last else None,
            "last": link(last),
        },
    }


def _link(name: str, **kwargs: str) -> str:
    return reverse(f"smartcar_emulator:{name}", kwargs=kwargs)


def _vehicle_resource(vehicle: SimulatedVehicle) -> dict[str, Any]:
    return {
        "id": vehicle.id,
        "type": "vehicle",
        "attributes": {
            "make": vehicle.make,
            "model": vehicle.model,
            "year": vehicle.year,
            "powertrainType": "BEV",
        },
        "links": {"self": _link("v3-vehicle", vehicle_id=vehicle.id)},
    }


@api_endpoint
@require_http_methods(["GET"])
def vehicles(request: HttpRequest, ctx: ApiContext) -> HttpResponse:
    check_global_faults("/v3/vehicles")
    page, size = _page_args(request)
    resources = [_vehicle_resource(vehicle_of(ctx, vid)) for vid in ctx.grant.vehicle_ids]
    return json_response(_paged(_link("v3-vehicles"), resources, page, size))


@api_endpoint
@require_http_methods(["GET"])
def vehicle(request: HttpRequest, ctx: ApiContext, vehicle_id: str) -> HttpResponse:
    found = vehicle_of(ctx, vehicle_id)
    count_and_check_faults(found.id, "/v3/")
    require_permission(ctx, "read_vehicle_info")
    return json_response({"data": _vehicle_resource(found)})


@api_endpoint
@require_http_methods(["GET"])
def signal_list(request: HttpRequest, ctx: ApiContext, vehicle_id: str) -> HttpResponse:
    found = vehicle_of(ctx, vehicle_id)
    page, size = _page_args(request)
    count_and_check_faults(found.id, "/v3/signals")
    state = simulation.state_at(found, ctx.now)
    items = [
        signals.item(
            spec,
            found,
            state,
            unit_system=ctx.unit_system,
            now=ctx.now,
            self_link=_link("v3-signal", vehicle_id=found.id, code=spec.code),
        )
        for spec in signals.SIGNALS
        if spec.permission in ctx.grant.permissions
    ]
    body = _paged(_link("v3-signals", vehicle_id=found.id), items, page, size)
    body["included"] = {"vehicle": _vehicle_resource(found)}
    return json_response(body, headers={"sc-unit-system": ctx.unit_system})


@api_endpoint
@require_http_methods(["GET"])
def signal_one(request: HttpRequest, ctx: ApiContext, vehicle_id: str, code: str) -> HttpResponse:
    found = vehicle_of(ctx, vehicle_id)
    spec = signals.find(code)
    if spec is None:
        raise ApiError(404, "RESOURCE_NOT_FOUND", "INVALID_PATH", "Unknown signal code.")
    count_and_check_faults(found.id, f"/v3/signals/{spec.code}")
    require_permission(ctx, spec.permission)
    state = simulation.state_at(found, ctx.now)
    self_link = _link("v3-signal", vehicle_id=found.id, code=spec.code)
    data = signals.item(
        spec, found, state, unit_system=ctx.unit_system, now=ctx.now, self_link=self_link
    )
    return json_response({"data": data}, headers={"sc-unit-system": ctx.unit_system})
