"""What every vehicle-API request (v2.0 and v3) goes through: token, vehicle, count, faults.

Order for one vehicle call: Bearer token (401 AUTHENTICATION) → the vehicle belongs to the grant
(403 PERMISSION) → counted (as Smartcar bills it: every call and every batch sub-request that
reaches a vehicle) → injected faults → the caller's permission check and data. Latency and the
malformed-JSON fault apply once per HTTP request; the others per vehicle call.
"""

import functools
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from smartcar_emulator import clock, oauth
from smartcar_emulator.errors import ApiError, api_error_response
from smartcar_emulator.faults import Faults, error_for_call
from smartcar_emulator.fleet import SimulatedVehicle
from smartcar_emulator.store import Grant, locked

UNIT_SYSTEMS = ("metric", "imperial")
KM_PER_MILE = 1.609344


@dataclass(frozen=True)
class ApiContext:
    request_id: str
    grant: Grant
    unit_system: str
    now: float


def iso(epoch_seconds: float) -> str:
    """Smartcar's header timestamp form: 2025-03-01T10:12:00.000Z."""
    moment = datetime.fromtimestamp(epoch_seconds, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def distance(km: float, unit_system: str) -> float:
    return round(km / KM_PER_MILE, 1) if unit_system == "imperial" else round(km, 1)


def effective_faults(vehicle_id: str | None) -> Faults:
    with locked() as state:
        base = state.global_faults
        own = state.vehicle_faults.get(vehicle_id) if vehicle_id else None
    return own.merged_over(base) if own else base


def authenticate(request: HttpRequest, request_id: str) -> ApiContext:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError.authentication()
    grant = oauth.grant_for_access_token(token.strip())
    unit = request.headers.get("SC-Unit-System", "metric").lower()
    return ApiContext(request_id, grant, unit if unit in UNIT_SYSTEMS else "metric", clock.now())


def vehicle_of(ctx: ApiContext, vehicle_id: str) -> SimulatedVehicle:
    with locked() as state:
        vehicle = state.vehicles_by_id.get(vehicle_id)
    if vehicle is None or vehicle_id not in ctx.grant.vehicle_ids:
        raise ApiError.permission("This access token does not grant access to this vehicle.")
    return vehicle


def count_and_check_faults(vehicle_id: str, path: str) -> None:
    """Count one billable vehicle call, then raise the injected fault it must fail with."""
    with locked() as state:
        state.calls[vehicle_id] += 1
        state.path_calls.setdefault(vehicle_id, Counter())[path] += 1
        number, seed = state.calls[vehicle_id], state.seed
    error = error_for_call(
        effective_faults(vehicle_id), seed=seed, scope=vehicle_id, call_number=number
    )
    if error is not None:
        raise error


def check_global_faults(scope: str) -> None:
    """Faults for calls that reach no vehicle (`/user`, the vehicle lists)."""
    with locked() as state:
        state.calls[scope] += 1
        number, seed = state.calls[scope], state.seed
    error = error_for_call(effective_faults(None), seed=seed, scope=scope, call_number=number)
    if error is not None:
        raise error


def require_permission(ctx: ApiContext, permission: str | None) -> None:
    if permission and permission not in ctx.grant.permissions:
        raise ApiError.permission(
            f"Your application has insufficient permissions to access the requested resource. "
            f"Please prompt the user to re-authenticate using Smartcar Connect. ({permission})"
        )


def _malformed(response: HttpResponse) -> HttpResponse:
    # Cut the JSON mid-way: looks like JSON by its content type, fails to parse.
    content = response.content
    response.content = content[: max(1, len(content) // 2)]
    return response


def api_endpoint(
    view: Callable[..., HttpResponse],
) -> Callable[..., HttpResponse]:
    """Give the view a request id and a context; render ApiError; apply latency and malformed."""

    @csrf_exempt  # Bearer-token API, no cookies involved
    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: str, **kwargs: str) -> HttpResponse:
        request_id = str(uuid.uuid4())
        faults = effective_faults(kwargs.get("vehicle_id"))
        try:
            ctx = authenticate(request, request_id)
            if faults.latency_ms:
                clock.sleep(faults.latency_ms / 1000)
            response = view(request, ctx, *args, **kwargs)
        except ApiError as error:
            return api_error_response(error, request_id)
        response["sc-request-id"] = request_id
        if faults.malformed_json and response.status_code == 200:
            return _malformed(response)
        return response

    return wrapper


@csrf_exempt
def not_found(request: HttpRequest, *args: str, **kwargs: str) -> HttpResponse:
    return api_error_response(ApiError.not_found(), str(uuid.uuid4()))


@csrf_exempt
def v3_not_found(request: HttpRequest, *args: str, **kwargs: str) -> HttpResponse:
    error = ApiError(
        404, "RESOURCE_NOT_FOUND", "INVALID_PATH", "The requested path does not exist."
    )
    return api_error_response(error, str(uuid.uuid4()))
