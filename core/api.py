"""DRF glue shared by every API: one exception handler, one error shape.

Every error leaves as `{"error": "<code>", "message": "<text>"[, "details": {...}]}`. A view may
fix its own 401 body (seed 002 gives `/smartcar/login` and `/smartcar/complete-connect` different
ones) by setting `unauthenticated_error = (code, message)` and, where the seed orders the keys
differently, `unauthenticated_body_order`.
"""

import logging
from collections.abc import Callable, Iterable
from functools import wraps
from http import HTTPStatus
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from rest_framework import exceptions
from rest_framework.decorators import api_view
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.parsers import BaseParser
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.errors import ApplicationError

logger = logging.getLogger(__name__)

DEFAULT_UNAUTHENTICATED = ("unauthenticated", "A valid Bearer token is required.")


def _unauthenticated_body(view: Any) -> dict[str, str]:
    code, message = getattr(view, "unauthenticated_error", DEFAULT_UNAUTHENTICATED)
    if getattr(view, "unauthenticated_message_first", False):
        return {"message": message, "error": code}
    return {"error": code, "message": message}


def _field_details(detail: Any) -> dict[str, Any]:
    if isinstance(detail, dict):
        return {
            "fields": {
                key: [str(item) for item in _as_list(value)] for key, value in detail.items()
            }
        }
    return {"fields": {"non_field_errors": [str(item) for item in _as_list(detail)]}}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    view = context.get("view")
    if isinstance(exc, ApplicationError):
        return Response(exc.body(), status=exc.http_status, headers=exc.headers)
    if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
        headers = {"WWW-Authenticate": 'Bearer realm="api"'}
        return Response(
            _unauthenticated_body(view), status=HTTPStatus.UNAUTHORIZED, headers=headers
        )
    if isinstance(exc, exceptions.ValidationError):
        body = {
            "error": "validation_error",
            "message": "The request is not valid.",
            "details": _field_details(exc.detail),
        }
        return Response(body, status=HTTPStatus.BAD_REQUEST)
    if isinstance(exc, exceptions.ParseError):
        body = {"error": "invalid_json", "message": "The request body is not valid JSON."}
        return Response(body, status=HTTPStatus.BAD_REQUEST)
    if isinstance(exc, Http404 | exceptions.NotFound):
        return Response(
            {"error": "not_found", "message": "Not found."}, status=HTTPStatus.NOT_FOUND
        )
    if isinstance(exc, PermissionDenied | exceptions.PermissionDenied):
        body = {"error": "forbidden", "message": "You may not do this."}
        return Response(body, status=HTTPStatus.FORBIDDEN)
    if isinstance(exc, exceptions.Throttled):
        wait = getattr(exc, "wait", None)
        headers = {"Retry-After": str(int(wait))} if wait else {}
        body = {"error": "rate_limited", "message": "Too many requests. Try again later."}
        return Response(body, status=HTTPStatus.TOO_MANY_REQUESTS, headers=headers)
    if isinstance(exc, exceptions.APIException):
        # Method not allowed, unsupported media type, not acceptable: DRF's status, our shape.
        # `exc.detail` is DRF's formatted message (`default_detail` still has `{method}` in it).
        code = exc.default_code if isinstance(exc.default_code, str) else "error"
        message = exc.detail if isinstance(exc.detail, str) else str(exc.default_detail)
        return Response({"error": code, "message": str(message)}, status=exc.status_code)
    return None


class PublicApi(APIView):
    """An endpoint that takes no Bearer token (Smartcar and the browser call it)."""

    authentication_classes: list[type] = []
    permission_classes: list[type] = []


class FirstRendererNegotiation(BaseContentNegotiation):
    """Ignore Accept: for browser-facing views that build their own HTML or redirect responses,
    so a browser asking only for text/html never gets a 406."""

    def select_parser(self, request: Request, parsers: Iterable[BaseParser]) -> BaseParser | None:
        return next(iter(parsers), None)

    def select_renderer(
        self, request: Request, renderers: Iterable[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        renderer = next(iter(renderers))
        return renderer, renderer.media_type


def browser_view(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """A GET view for the browser or Smartcar: no JWT, not cached, any Accept header, and
    `Referrer-Policy: no-referrer` (its URLs and Locations may carry OAuth codes and states)."""

    @wraps(view)
    def no_referrer(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = view(request, *args, **kwargs)
        response["Referrer-Policy"] = "no-referrer"
        return response

    no_referrer.content_negotiation_class = FirstRendererNegotiation  # type: ignore[attr-defined]
    wrapped = api_view(["GET"])(never_cache(no_referrer))
    wrapped.cls.authentication_classes = []
    wrapped.cls.permission_classes = []
    return wrapped
