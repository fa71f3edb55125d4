"""Browser-facing views of the Connect flow: start link, Smartcar's redirect, the oauth-done page.

These never answer 500 for anything the browser or Smartcar sends: every outcome is a redirect
to a handoff URL from settings or a rendered page. Every response here sends
`Referrer-Policy: no-referrer` (core.api.browser_view) and is not cached.
"""

import re
from http import HTTPStatus

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    inline_serializer,
)
from rest_framework import serializers

from core.api import browser_view
from oauth_smartcar import handoff, nonces
from oauth_smartcar.services import ConnectLinkError, connect_attempt_open, connect_callback

BROWSER_COOKIE = "smartcar_connect"
SMARTCAR_DOCS = "https://smartcar.com/docs/connect/handle-the-response"
# The oauth-done page loads nothing from anywhere: inline styles only.
_PAGE_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
_REASON_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_INCOMPATIBLE = {"vehicle_incompatible", "no_vehicles", "invalid_subscription"}
_MAX_PARAM = 200


def _redirect(url: str) -> HttpResponseRedirect:
    # Handoff targets come from settings (https or an app scheme), so allow any scheme.
    response = HttpResponseRedirect(url)
    response.allowed_schemes = ["http", "https", *_app_schemes()]
    return response


def _app_schemes() -> list[str]:
    scheme = settings.APP_DEEPLINK.split(":", 1)[0] if settings.APP_DEEPLINK else ""
    return [scheme] if scheme else []


_REDIRECT_ONLY = {302: OpenApiResponse(description="Redirect; see the README's Connect flow.")}


@extend_schema(
    summary="Open a Connect link (browser)",
    parameters=[OpenApiParameter("ticket", str, required=True, description="From `data.link`.")],
    responses=_REDIRECT_ONLY,
    description="Sets the browser-binding cookie and redirects to Smartcar's authorize URL; a "
    "bad, used or expired ticket redirects to the failure handoff with "
    "`reason=connect_link_invalid|connect_link_used|connect_link_expired`.",
    tags=["smartcar"],
)
@browser_view
def connect_start(request: HttpRequest) -> HttpResponse:
    """Bind this browser to the attempt with a cookie, then send it to Smartcar."""
    try:
        opened = connect_attempt_open(ticket=request.GET.get("ticket", ""))
    except ConnectLinkError as exc:
        return _redirect(handoff.failure_url(exc.reason))
    response = _redirect(opened.authorize_url)
    response.set_cookie(
        BROWSER_COOKIE,
        opened.browser_secret,
        max_age=settings.SMARTCAR_CONNECT_TTL_SECONDS,
        secure=request.is_secure(),
        httponly=True,
        samesite="Lax",
    )
    return response


@extend_schema(
    summary="Smartcar's redirect target (browser)",
    parameters=[
        OpenApiParameter(name, str, required=False)
        for name in ("code", "state", "error", "error_description", "make", "model", "year")
    ],
    responses=_REDIRECT_ONLY,
    description="Never answers 500: every outcome is a 302 to the success, failure or recovery "
    "handoff (see the README).",
    tags=["smartcar"],
)
@browser_view
def oauth_redirect(request: HttpRequest) -> HttpResponse:
    """Smartcar's redirect target (also at the first seed's /oauth/smartcar/callback)."""
    params = {key: str(value)[:_MAX_PARAM] for key, value in request.GET.items()}
    target = connect_callback(params=params, browser_secret=request.COOKIES.get(BROWSER_COOKIE))
    response = _redirect(target)
    response.delete_cookie(BROWSER_COOKIE, samesite="Lax")
    return response


@extend_schema(
    summary="Outcome page after Connect",
    parameters=[
        OpenApiParameter(name, str, required=False)
        for name in ("smartcar", "ok", "reason", "recover", "oauth_code", "smartcar_uid", "format")
    ],
    responses={
        (200, "application/json"): inline_serializer(
            "OauthDone",
            {
                "ok": serializers.BooleanField(),
                "reason": serializers.CharField(allow_null=True),
                "recover": serializers.CharField(allow_null=True),
                "oauthCode": serializers.CharField(allow_null=True),
                "recovery": serializers.CharField(allow_null=True),
                "smartcarConnectDocs": serializers.URLField(),
                "recoveryHandoff": serializers.URLField(required=False),
                "recoveryAppDeeplink": serializers.CharField(required=False),
            },
        ),
        (200, "text/html"): OpenApiResponse(OpenApiTypes.STR, description="The outcome's page."),
        (400, "application/json"): OpenApiResponse(
            OpenApiTypes.OBJECT, description="The same JSON, when not ok."
        ),
        (400, "text/html"): OpenApiResponse(OpenApiTypes.STR, description="The page, when not ok."),
    },
    tags=["smartcar"],
)
@browser_view
def oauth_done(request: HttpRequest) -> HttpResponse:
    """Tell the person what happened; JSON with `format=json` or `Accept: application/json`."""
    query = request.GET
    ok = query.get("smartcar") == "ok" or query.get("ok") in ("1", "true")
    recover = "jwt" if query.get("recover") == "jwt" or "recover-jwt" in query else ""
    code = query.get("oauth_code", "")
    code = code if nonces.is_well_formed(code) else ""
    reason = query.get("reason", "")
    reason = (
        reason if _REASON_RE.fullmatch(reason) else ("" if ok or not reason else "unknown_error")
    )
    recovering = bool(recover and code)

    if _wants_json(request):
        return _done_json(ok=ok, reason=reason, recover=recover, code=code, recovering=recovering)

    if ok:
        outcome = "linked"
    elif recovering:
        outcome = "recovery"
    elif reason == "access_denied":
        outcome = "denied"
    elif reason in _INCOMPATIBLE:
        outcome = "incompatible"
    else:
        outcome = "failed"
    context = {
        "outcome": outcome,
        "reason": reason,
        "smartcar_uid": query.get("smartcar_uid", "")[:_MAX_PARAM],
        "make": query.get("make", "")[:40],
        "model": query.get("model", "")[:40],
        "year": query.get("year", "")[:4],
        "app_link": _app_link(ok=ok, code=code if recovering else ""),
    }
    status = HTTPStatus.OK if ok else HTTPStatus.BAD_REQUEST
    response = render(request, f"oauth_smartcar/oauth_done/{outcome}.html", context, status=status)
    response["Content-Security-Policy"] = _PAGE_CSP
    return response


def _wants_json(request: HttpRequest) -> bool:
    if request.GET.get("format") == "json":
        return True
    return request.headers.get("Accept", "").split(",")[0].strip() == "application/json"


def _app_link(*, ok: bool, code: str) -> str:
    if code:
        return handoff.app_deeplink(handoff.recovery_params(code))
    return handoff.app_deeplink({"smartcar": "ok" if ok else "error"})


def _done_json(*, ok: bool, reason: str, recover: str, code: str, recovering: bool) -> JsonResponse:
    body: dict[str, object] = {
        "ok": ok,
        "reason": reason or None,
        "recover": recover or None,
        "oauthCode": code or None,
        "recovery": None,
        "smartcarConnectDocs": SMARTCAR_DOCS,
    }
    if recovering:
        complete = settings.PUBLIC_BASE_URL + reverse("smartcar:complete-connect")
        body["recovery"] = (
            f'POST {complete} with Authorization: Bearer <your JWT> and body {{"code": "<oauthCode>"}}'
        )
        if handoff.failure_base_url() != handoff.oauth_done_url():
            body["recoveryHandoff"] = handoff.recovery_url(code)
        if settings.APP_DEEPLINK:
            body["recoveryAppDeeplink"] = handoff.app_deeplink(handoff.recovery_params(code))
    status = HTTPStatus.OK if ok else HTTPStatus.BAD_REQUEST
    response = JsonResponse(body, status=status)
    response["Content-Security-Policy"] = _PAGE_CSP
    return response
