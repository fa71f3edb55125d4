"""The local demo: a one-page SPA at `/` and the endpoint that signs its demo user in.

It exists only beside the Smartcar emulator (`SMARTCAR_EMULATOR`, which the settings allow with
DEBUG only, and in the test settings): every view answers 404 otherwise, even if mounted. The
page talks to the project through its public API only, as a real SPA would.

The token endpoint stands for a product's own login: it mints a short-lived JWT for one fixed
demo user through `core.jwt_tokens.issue_jwt`. It must never accept a user id from the request
(anyone reaching it would become anyone), never answer GET, never run without Django's CSRF check,
and never log the token.
"""

import secrets
from urllib.parse import urlsplit

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.middleware.csrf import get_token
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from core.jwt_tokens import JWTConfigurationError, issue_jwt

DEMO_USER_ID = "demo-user"
DEMO_USER_EMAIL = "demo@example.com"
TOKEN_TTL_SECONDS = 3600


def demo_enabled() -> bool:
    """True only where the emulator runs (never in production settings)."""
    return bool(getattr(settings, "SMARTCAR_EMULATOR", False))


def _require_enabled() -> None:
    if not demo_enabled():
        raise Http404("No demo here.")


def _page_csp(nonce: str) -> str:
    # Inline script and style by nonce only; fetches stay on this origin (the emulator is here).
    return (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
        "connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    )


def _public_origin_mismatch(request: HttpRequest) -> str:
    """PUBLIC_BASE_URL + "/" when the page was opened on another origin, else "".

    The start link, the redirect URI and the handoff all use PUBLIC_BASE_URL; a page opened on
    `localhost` instead of `127.0.0.1` would lose its sessionStorage and cookies on the way back.
    The target comes from settings, never from the request.
    """
    public = settings.PUBLIC_BASE_URL
    if not public:
        return ""
    parts = urlsplit(public)
    here = f"{request.scheme}://{request.get_host()}"
    if f"{parts.scheme}://{parts.netloc}".lower() == here.lower():
        return ""
    return f"{parts.scheme}://{parts.netloc}/"


@never_cache
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    """The demo SPA page (server-rendered shell; everything else happens in its script)."""
    _require_enabled()
    elsewhere = _public_origin_mismatch(request)
    if elsewhere:
        return HttpResponseRedirect(elsewhere)
    nonce = secrets.token_urlsafe(16)
    context = {
        "nonce": nonce,
        "config": {
            "csrfToken": get_token(request),
            "tokenUrl": reverse("demo:token"),
            "loginUrl": reverse("smartcar:login"),
            "completeConnectUrl": reverse("smartcar:complete-connect"),
            "vehiclesUrl": reverse("telemetry:vehicle-list"),
        },
    }
    response = render(request, "demo/home.html", context)
    response["Content-Security-Policy"] = _page_csp(nonce)
    return response


@never_cache
@require_POST
def token(request: HttpRequest) -> JsonResponse:
    """`{"token", "userId", "expiresIn"}` for the fixed demo user (CSRF-checked POST only)."""
    _require_enabled()
    try:
        jwt = issue_jwt(DEMO_USER_ID, email=DEMO_USER_EMAIL, ttl_seconds=TOKEN_TTL_SECONDS)
    except JWTConfigurationError:
        # e.g. JWT_ALGORITHMS is RS*/ES*: the demo cannot sign; the product's login must.
        return JsonResponse(
            {
                "error": "demo_unavailable",
                "message": "The demo can sign tokens only with an HS* JWT_SECRET.",
            },
            status=503,
        )
    # never_cache adds `Cache-Control: no-store`, so no proxy or browser keeps the token.
    return JsonResponse({"token": jwt, "userId": DEMO_USER_ID, "expiresIn": TOKEN_TTL_SECONDS})
