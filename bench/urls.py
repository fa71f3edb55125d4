"""Benchmark-only URLs: the project's, plus `GET /bench/ceiling`.

The ceiling is the least a JWT-authenticated read can do in this stack: a plain Django view that
decodes the Bearer JWT with the project's rules and reads one row. Every API endpoint's
throughput is reported as a ratio of it. Never mounted outside `bench/settings.py`.
"""

from django.conf import settings
from django.contrib.auth import get_user_model
from django.http import HttpRequest, JsonResponse
from django.urls import path

from config.urls import urlpatterns as project_urlpatterns
from core.jwt_tokens import decode_jwt


def ceiling(request: HttpRequest) -> JsonResponse:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return JsonResponse({"error": "unauthenticated"}, status=401)
    try:
        claims = decode_jwt(token)
    except Exception:  # noqa: BLE001 - any bad token is a 401 here
        return JsonResponse({"error": "unauthenticated"}, status=401)
    user = (
        get_user_model()
        .objects.filter(username=claims[settings.JWT_USER_CLAIM])
        .values("id", "email")
        .first()
    )
    if user is None:
        return JsonResponse({"error": "not_found"}, status=404)
    return JsonResponse({"id": user["id"], "email": user["email"]})


urlpatterns = [path("bench/ceiling", ceiling), *project_urlpatterns]
