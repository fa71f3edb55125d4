"""JSON endpoints of the Connect flow, shaped exactly as seed 002 (and the first seed) give them."""

from typing import cast

from django.conf import settings
from django.contrib.auth.models import User
from django.urls import reverse
from drf_spectacular.utils import (
    OpenApiResponse,
    extend_schema,
    extend_schema_serializer,
    inline_serializer,
)
from rest_framework import serializers
from rest_framework.exceptions import ParseError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from oauth_smartcar import handoff
from oauth_smartcar.errors import CodeRequiredError
from oauth_smartcar.services import connect_attempt_start, connect_complete_with_code

ErrorSerializer = inline_serializer(
    "Error",
    {"error": serializers.CharField(), "message": serializers.CharField()},
)


def _error(description: str) -> OpenApiResponse:
    return OpenApiResponse(ErrorSerializer, description=description)


def _user(request: Request) -> User:
    # IsAuthenticated ran first, and JWTAuthentication only ever yields real users.
    return cast(User, request.user)


def start_link(request: Request) -> str:
    """The URL the SPA opens: our start endpoint with a fresh one-time ticket."""
    started = connect_attempt_start(user=_user(request))
    path = reverse("smartcar:connect-start")
    return f"{settings.PUBLIC_BASE_URL}{path}?ticket={started.ticket}"


class SmartcarLoginApi(APIView):
    unauthenticated_error = (
        "missing_user",
        "Smartcar link requires a user id from your JWT (logged-in session).",
    )

    @extend_schema_serializer(component_name="SmartcarLogin")
    class OutputSerializer(serializers.Serializer):
        message = serializers.CharField()
        data = inline_serializer(  # type: ignore[assignment]
            "SmartcarLoginData",
            {
                "link": serializers.URLField(),
                "userId": serializers.CharField(),
                "email": serializers.CharField(allow_blank=True),
                "oauthRedirectUri": serializers.URLField(),
                "redirectUrlExampleOnSuccess": serializers.URLField(),
                "completeConnectPOST": serializers.CharField(),
                "vehicleWebhookCallbackPOST": serializers.URLField(),
                "simpleBrowserRedirectEnabled": serializers.BooleanField(),
                "workflowNote": serializers.CharField(),
            },
        )

    @extend_schema(
        summary="Start Smartcar Connect",
        description="Creates a Connect attempt and returns `data.link`, the URL to open in the "
        "same browser. The link works once and for 10 minutes.",
        responses={200: OutputSerializer, 401: _error("No valid Bearer JWT (`missing_user`).")},
        tags=["smartcar"],
    )
    def get(self, request: Request) -> Response:
        api = settings.PUBLIC_BASE_URL
        data = {
            "link": start_link(request),
            "userId": _user(request).get_username(),
            "email": _user(request).email or "",
            "oauthRedirectUri": settings.SMARTCAR_REDIRECT_URI,
            "redirectUrlExampleOnSuccess": handoff.success_url(
                smartcar_user_id="<smartcar-user-id>", first_vehicle_id=None
            ),
            "completeConnectPOST": reverse("smartcar:complete-connect"),
            # Where Smartcar's signed webhooks are received (the webhook endpoint's URL).
            "vehicleWebhookCallbackPOST": f"{api}{settings.API_PREFIX}/smartcar/webhook",
            "simpleBrowserRedirectEnabled": settings.SMARTCAR_SIMPLE_OAUTH_REDIRECT,
            "workflowNote": (
                "Open data.link in the same browser. Smartcar returns to oauthRedirectUri, which "
                "redirects to the app with smartcar=ok, or with recover=jwt&oauth_code=… when the "
                "browser could not be tied to you: then POST {code} to completeConnectPOST with "
                "this JWT. The link works once and for 10 minutes."
            ),
        }
        return Response({"message": "Smartcar OAuth", "data": data})


class SmartcarCompleteConnectApi(APIView):
    unauthenticated_error = ("user_missing", "UnAuthorized Request")
    unauthenticated_message_first = True

    @extend_schema_serializer(component_name="CompleteConnectRequest")
    class InputSerializer(serializers.Serializer):
        code = serializers.CharField(help_text="The one-time code from Smartcar's redirect.")

    @extend_schema_serializer(component_name="CompleteConnect")
    class OutputSerializer(serializers.Serializer):
        linked = serializers.BooleanField()
        smartcarUserId = serializers.CharField()  # noqa: N815  (the seed's field name)
        redirectUrl = serializers.URLField()  # noqa: N815

    @extend_schema(
        summary="Finish Connect with the code (recovery)",
        request=InputSerializer,
        responses={
            200: OutputSerializer,
            400: _error("`code_required`, `invalid_grant` or `invalid_client`."),
            401: OpenApiResponse(
                ErrorSerializer, description='`{"message": "UnAuthorized Request", ...}`'
            ),
            403: _error("`user_mismatch`: the code belongs to another user's attempt."),
            409: _error("`connect_in_progress`: the same code is being exchanged right now."),
            502: _error("`smartcar_error`: Smartcar failed or could not be reached."),
        },
        tags=["smartcar"],
    )
    def post(self, request: Request) -> Response:
        try:
            body = request.data
        except ParseError as exc:
            raise CodeRequiredError() from exc
        code = body.get("code") if isinstance(body, dict) else None
        result = connect_complete_with_code(user=_user(request), code=code)
        return Response(
            {
                "linked": True,
                "smartcarUserId": result.smartcar_user_id,
                "redirectUrl": result.redirect_url,
            }
        )


class EvConnectApi(APIView):
    """The first seed's `GET /v1/ev/connect`: the same link as `…/smartcar/login`."""

    @extend_schema(
        summary="Connect URL (first seed)",
        responses={
            200: inline_serializer("EvConnect", {"url": serializers.URLField()}),
            401: _error("No valid Bearer JWT."),
        },
        tags=["ev"],
    )
    def get(self, request: Request) -> Response:
        return Response({"url": start_link(request)})
