"""Pieces every telemetry API module shares: the error body's schema, query-parameter fields."""

from datetime import datetime
from typing import Any, cast

from django.contrib.auth.models import User
from django.utils.dateparse import parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request

ApiErrorSerializer = inline_serializer(
    "ApiError",
    {
        "error": serializers.CharField(help_text="Stable snake_case code."),
        "message": serializers.CharField(),
        "details": serializers.DictField(
            required=False,
            help_text='For `validation_error`: `{"fields": {"<name>": ["<problem>", …]}}`.',
        ),
    },
)

VEHICLE_ID = OpenApiParameter(
    "vehicle_id",
    OpenApiTypes.UUID,
    OpenApiParameter.PATH,
    description="Our vehicle id (`id` in the vehicle list). Another user's id is a 404.",
)

UNAUTHENTICATED = "`unauthenticated`: no valid Bearer JWT."
VEHICLE_NOT_FOUND = "`not_found`: no such vehicle among yours."


def error(description: str) -> OpenApiResponse:
    return OpenApiResponse(ApiErrorSerializer, description=description)


def request_user(request: Request) -> User:
    # IsAuthenticated ran first, and JWTAuthentication only ever yields real users.
    return cast(User, request.user)


class AwareDateTimeField(serializers.DateTimeField):
    """ISO 8601 with an explicit timezone; a naive time is ambiguous, so it is refused."""

    default_error_messages = {
        "invalid": "Use ISO 8601 with a timezone, e.g. 2025-01-31T12:00:00Z "
        "(in a URL, write '+' as %2B).",
    }

    def to_internal_value(self, value: Any) -> datetime:
        if isinstance(value, datetime):
            parsed: datetime | None = value
        else:
            try:
                parsed = parse_datetime(str(value).strip())
            except ValueError:
                parsed = None
        if parsed is None or parsed.tzinfo is None:
            self.fail("invalid")
        return super().to_internal_value(parsed)


class StrictInputSerializer(serializers.Serializer):
    """Refuses fields it does not know, naming them: a typo must not be a silent no-op."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({key: ["Unknown field."] for key in unknown})
        return super().to_internal_value(data)
