"""Smartcar Connect: the authorize URL, the consent page, and the redirect back to the app.

Parameter errors are shown as a 400 page and never redirect (Smartcar only offers a way back once
the redirect URI is known to be registered). The consent form is not protected by Django's CSRF
middleware (the project's CSRF cookie is Secure-only outside DEBUG); instead each page carries a
signed, one-time ticket bound to a nonce cookie of the browser that loaded it.
"""

import hmac
import secrets
from dataclasses import dataclass
from urllib.parse import quote, urlencode, urlsplit

from django.core import signing
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from smartcar_emulator import conf, fleet, oauth
from smartcar_emulator.fleet import SimulatedVehicle
from smartcar_emulator.permissions import parse_scope
from smartcar_emulator.store import locked

MODES = ("live", "simulated", "test")
APPROVAL_PROMPTS = ("auto", "force")
NONCE_COOKIE = "smartcar_emulator_consent"
_TICKET_SALT = "smartcar_emulator.consent-ticket"
DENIED_DESCRIPTION = "User denied access to application."

# Outcomes the consent page can simulate, with Smartcar's error code and description.
SIMULATED_OUTCOMES: dict[str, str] = {
    "vehicle_incompatible": "The vehicle is not compatible with this application.",
    "no_vehicles": "No vehicles were found on the user's connected services account.",
    "server_error": "Unexpected server error. Please try again.",
    "invalid_subscription": "The vehicle's connected services subscription is inactive.",
    "configuration_error": "The user encountered an error and chose to return to the application.",
    "user_manually_returned_to_application": "The user returned to the application.",
}


class AuthorizeParamError(ValueError):
    def __init__(self, message: str, *, redirect_ok: bool) -> None:
        super().__init__(message)
        self.redirect_ok = redirect_ok


@dataclass(frozen=True)
class AuthorizeRequest:
    params: dict[str, str]  # the raw, accepted query (last value of each key)
    permissions: list[str]
    required: list[str]
    mode: str
    single_select: bool
    make: str | None
    vin: str | None


def with_query(base: str, pairs: list[tuple[str, str]]) -> str:
    """`base` with `pairs` appended to its query, percent-encoded (spaces as %20)."""
    separator = "&" if urlsplit(base).query else "?"
    return base + separator + urlencode(pairs, quote_via=quote)


def parse_authorize(query: QueryDict | dict[str, str]) -> AuthorizeRequest:
    """Validate Connect's query as Smartcar does; raises AuthorizeParamError with the page text."""
    params = {key: query.get(key, "") or "" for key in query}
    client_id = params.get("client_id", "")
    if not hmac.compare_digest(client_id.encode(), conf.client_id().encode()):
        raise AuthorizeParamError(f"Invalid parameter client_id: {client_id}", redirect_ok=False)
    redirect_uri = params.get("redirect_uri", "")
    if redirect_uri not in conf.redirect_uris():
        raise AuthorizeParamError(
            f"Invalid parameter redirect_uri: {redirect_uri}", redirect_ok=False
        )
    if params.get("response_type") != "code":
        raise AuthorizeParamError(
            f"Invalid parameter response_type: {params.get('response_type', '')}", redirect_ok=True
        )
    try:
        permissions, required = parse_scope(params.get("scope", ""))
    except ValueError as exc:
        raise AuthorizeParamError(f"Invalid parameter scope: {exc}", redirect_ok=True) from exc
    mode = params.get("mode") or "live"
    if mode not in MODES:
        raise AuthorizeParamError(f"Invalid parameter mode: {mode}", redirect_ok=True)
    prompt = params.get("approval_prompt") or "auto"
    if prompt not in APPROVAL_PROMPTS:
        raise AuthorizeParamError(f"Invalid parameter approval_prompt: {prompt}", redirect_ok=True)
    single = params.get("single_select", "false").lower()
    if single not in ("true", "false"):
        raise AuthorizeParamError(
            f"Invalid parameter single_select: {params['single_select']}", redirect_ok=True
        )
    vin = params.get("single_select_vin") or None
    if vin and single != "true":
        raise AuthorizeParamError(
            "Invalid parameter single_select_vin: requires single_select=true", redirect_ok=True
        )
    make = (params.get("make") or "").upper() or None
    return AuthorizeRequest(params, permissions, required, mode, single == "true", make, vin)


def _error_page(request: HttpRequest, message: str, exit_url: str | None) -> HttpResponse:
    context = {"status": 400, "message": message, "exit_url": exit_url}
    return render(request, "smartcar_emulator/error.html", context, status=400)


def _configuration_error_url(params: dict[str, str], message: str) -> str:
    pairs = [
        ("error", "configuration_error"),
        ("error_description", SIMULATED_OUTCOMES["configuration_error"]),
        ("status_code", "400"),
        ("error_message", message),
    ]
    if "state" in params:
        pairs.append(("state", params["state"]))
    return with_query(params["redirect_uri"], pairs)


def _vehicles_for(auth: AuthorizeRequest) -> tuple[str | None, list[SimulatedVehicle], str]:
    """(brand shown, vehicles offered, notice) for the consent page."""
    with locked() as state:
        vehicles = state.fleet
    if auth.vin:
        matches = [v for v in vehicles if v.vin == auth.vin.upper()]
        if not matches:
            return None, [], "No vehicle with the requested VIN was found on this account."
        return matches[0].make, matches, ""
    if auth.make and auth.make in fleet.makes(vehicles):
        return auth.make, [v for v in vehicles if v.make == auth.make], ""
    notice = f"Brand {auth.make} is not offered by the emulator." if auth.make else ""
    return None, [], notice


def _render_consent(
    request: HttpRequest,
    auth: AuthorizeRequest,
    ticket_id: str,
    *,
    error: str = "",
    status: int = 200,
) -> HttpResponse:
    brand, vehicles, notice = _vehicles_for(auth)
    with locked() as state:
        all_makes = fleet.makes(state.fleet)
    brand_links = [
        (make, "?" + urlencode({**auth.params, "make": make}, quote_via=quote))
        for make in all_makes
    ]
    context = {
        "auth": auth,
        "brand": brand,
        "vehicles": vehicles,
        "notice": notice,
        "error": error,
        "brand_links": brand_links,
        "ticket": signing.dumps(ticket_id, salt=_TICKET_SALT),
        "outcomes": list(SIMULATED_OUTCOMES),
        "input_type": "radio" if auth.single_select else "checkbox",
        "account": request.POST.get("account", "driver") if request.method == "POST" else "driver",
    }
    return render(request, "smartcar_emulator/consent.html", context, status=status)


@require_GET
def authorize(request: HttpRequest) -> HttpResponse:
    try:
        auth = parse_authorize(request.GET)
    except AuthorizeParamError as exc:
        exit_url = (
            _configuration_error_url(request.GET.dict(), str(exc)) if exc.redirect_ok else None
        )
        return _error_page(request, str(exc), exit_url)
    nonce = request.COOKIES.get(NONCE_COOKIE) or secrets.token_urlsafe(24)
    ticket_id, _ = oauth.ticket_create({**auth.params, "_nonce": nonce})
    response = _render_consent(request, auth, ticket_id)
    response.set_cookie(
        NONCE_COOKIE, nonce, httponly=True, samesite="Lax", secure=request.is_secure()
    )
    response["Cache-Control"] = "no-store"
    return response


def _outcome_url(
    auth: AuthorizeRequest,
    outcome: str,
    chosen: list[SimulatedVehicle],
    offered: list[SimulatedVehicle],
) -> str:
    pairs = [("error", outcome), ("error_description", SIMULATED_OUTCOMES[outcome])]
    if outcome == "vehicle_incompatible":
        with locked() as state:
            fallback = state.fleet[0]
        car = (chosen or offered or [fallback])[0]
        pairs += [
            ("vin", car.vin),
            ("make", car.make),
            ("model", car.model),
            ("year", str(car.year)),
        ]
    if outcome == "configuration_error":
        pairs += [("status_code", "400"), ("error_message", "Simulated configuration error.")]
    if "state" in auth.params:
        pairs.append(("state", auth.params["state"]))
    return with_query(auth.params["redirect_uri"], pairs)


@csrf_exempt  # protected by the signed one-time ticket + browser nonce cookie (module docstring)
@require_POST
def consent(request: HttpRequest) -> HttpResponse:
    try:
        ticket_id = signing.loads(
            request.POST.get("ticket", ""), salt=_TICKET_SALT, max_age=oauth.TICKET_TTL_S
        )
    except signing.BadSignature:
        return _error_page(request, "This consent page is invalid or has expired.", None)
    ticket = oauth.ticket_get(ticket_id)
    cookie = request.COOKIES.get(NONCE_COOKIE, "")
    if ticket is None or not hmac.compare_digest(
        cookie.encode(), ticket.params.get("_nonce", "").encode()
    ):
        return _error_page(request, "This consent page is invalid or has expired.", None)
    params = {k: v for k, v in ticket.params.items() if k != "_nonce"}
    auth = parse_authorize(params)  # validated when the ticket was made
    brand, offered, _ = _vehicles_for(auth)
    chosen_ids = request.POST.getlist("vehicle")
    chosen = [v for v in offered if v.id in chosen_ids]
    action = request.POST.get("action", "")
    account = request.POST.get("account", "driver").strip()

    if action not in ("simulate", "deny", "allow"):
        return _render_consent(request, auth, ticket_id, error="Unknown action.", status=400)
    outcome = request.POST.get("outcome", "")
    problem = ""
    if action == "simulate" and outcome not in SIMULATED_OUTCOMES:
        problem = "Pick an outcome."
    elif action == "allow":
        if brand is None:
            problem = "Pick a brand first."
        elif not chosen or len(chosen) != len(set(chosen_ids)):
            problem = "Select at least one of the vehicles shown."
        elif auth.single_select and len(chosen) > 1:
            problem = "Select only one vehicle."
        elif not account or len(account) > 64:
            problem = "The account name must be 1 to 64 characters."
    if problem:
        return _render_consent(request, auth, ticket_id, error=problem, status=400)
    # Consume before issuing anything, so a replayed form can never mint a second code.
    if oauth.ticket_consume(ticket_id) is None:
        return _error_page(request, "This consent page is invalid or has expired.", None)

    if action == "simulate":
        return _redirect(_outcome_url(auth, outcome, chosen, offered))
    state_pair = [("state", auth.params["state"])] if "state" in auth.params else []
    if action == "deny":
        pairs = [("error", "access_denied"), ("error_description", DENIED_DESCRIPTION)]
        return _redirect(with_query(auth.params["redirect_uri"], pairs + state_pair))
    with locked() as state:
        seed = state.seed
    code = oauth.grant_create(
        client_id=auth.params["client_id"],
        user_id=fleet.user_id_for(seed, brand or "", account),
        make=brand or "",
        vehicle_ids=[v.id for v in chosen],
        permissions=auth.permissions,
        mode=auth.mode,
        redirect_uri=auth.params["redirect_uri"],
    )
    return _redirect(with_query(auth.params["redirect_uri"], [("code", code), *state_pair]))


def _redirect(url: str) -> HttpResponse:
    # Not HttpResponseRedirect: registered redirect URIs may use an app's custom scheme.
    response = HttpResponse(status=302)
    response["Location"] = url
    response["Cache-Control"] = "no-store"
    return response
