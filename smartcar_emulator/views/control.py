"""`_control/…` endpoints: reset, faults, grants, call counts, vehicles, clock.

For tests, benchmarks and demos on a local server; the emulator is never mounted in production.
"""

import json
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from smartcar_emulator import control
from smartcar_emulator.errors import json_response


def _json_body(request: HttpRequest) -> dict[str, Any]:
    body = request.body.strip()
    # Plain `curl -X POST` or an empty form post: no options.
    if not body or (request.content_type != "application/json" and not body.startswith(b"{")):
        return {}
    data = json.loads(body)
    if not isinstance(data, dict):
        raise TypeError("body must be a JSON object")
    return data


def _bad(message: str) -> HttpResponse:
    return json_response({"error": "invalid_request", "message": message}, status=400)


@csrf_exempt
@require_POST
def reset(request: HttpRequest) -> HttpResponse:
    try:
        seed = _json_body(request).get("seed")
    except (ValueError, TypeError):
        return _bad("body must be a JSON object")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        return _bad("seed must be an integer")
    control.reset(seed)
    return json_response({"status": "reset"})


@csrf_exempt
@require_http_methods(["GET", "POST", "DELETE"])
def faults(request: HttpRequest) -> HttpResponse:
    """GET: current faults. POST {"vehicle": id?, ...fields}: replace that scope. DELETE: clear."""
    if request.method == "POST":
        try:
            data = _json_body(request)
            vehicle = data.pop("vehicle", None)
            control.set_faults(vehicle, **data)
        except (ValueError, TypeError) as exc:
            return _bad(str(exc))
    elif request.method == "DELETE":
        control.clear_faults()
    return json_response(control.get_faults())


@require_GET
def grants(request: HttpRequest) -> HttpResponse:
    return json_response({"grants": control.list_grants()})


@require_GET
def calls(request: HttpRequest) -> HttpResponse:
    return json_response(control.call_counts())


@require_GET
def vehicles(request: HttpRequest) -> HttpResponse:
    return json_response({"vehicles": control.list_vehicles()})


@csrf_exempt
@require_POST
def clock(request: HttpRequest) -> HttpResponse:
    """POST {"advance": seconds}: move the emulator's time forward (token expiry in live tests)."""
    try:
        seconds = _json_body(request).get("advance")
    except (ValueError, TypeError):
        return _bad("body must be a JSON object")
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
        return _bad("advance must be a non-negative number of seconds")
    control.advance_clock(seconds)
    return json_response({"status": "advanced", "seconds": seconds})
