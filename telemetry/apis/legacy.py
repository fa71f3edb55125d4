"""The first seed's `/v1/ev/me/…` endpoints, in its snake_case shapes.

They act on "your vehicle": the primary live one, else the earliest-connected live one. Must
never serve another user's data, and never poll Smartcar more than once per
TELEMETRY_LATEST_MAX_AGE per vehicle however often `latest` is called.
"""

from datetime import timedelta

from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.errors import NotFoundError
from core.serialization import represent
from telemetry.apis.common import UNAUTHENTICATED, error, request_user
from telemetry.apis.cursors import cursor_decode, cursor_encode
from telemetry.selectors import reading_history, vehicle_get_default_for_user, vehicle_list_for_user
from telemetry.serializers import LegacyReadingSerializer, LegacyVehicleSerializer
from telemetry.services.refresh import telemetry_latest_or_poll
from vehicles.models import Vehicle

MAX_DAYS = 90
DEFAULT_LIMIT = 1000
MAX_LIMIT = 5000


class NoVehicleError(NotFoundError):
    code = "no_vehicle"
    message = "No connected vehicle. Connect one first."


NO_VEHICLE = "`no_vehicle`: you have no connected vehicle."


def _your_vehicle(request: Request) -> Vehicle:
    vehicle = vehicle_get_default_for_user(user=request_user(request))
    if vehicle is None:
        raise NoVehicleError()
    return vehicle


class EvTelemetryLatestApi(APIView):
    @extend_schema(
        operation_id="ev_me_telemetry_latest",
        summary="Your vehicle's latest telemetry (first seed)",
        description="Your primary (or only) vehicle's latest reading; polled live at Smartcar "
        "when the stored one was received over TELEMETRY_LATEST_MAX_AGE seconds ago.",
        responses={
            200: LegacyReadingSerializer,
            401: error(UNAUTHENTICATED),
            404: error(f"{NO_VEHICLE} `no_telemetry`: no reading could be had yet."),
            409: error("`reconnect_required`: the Smartcar connection must be renewed."),
            502: error("`smartcar_error`: Smartcar failed or could not be reached."),
        },
        tags=["ev"],
    )
    def get(self, request: Request) -> Response:
        reading = telemetry_latest_or_poll(vehicle=_your_vehicle(request))
        return Response(represent(LegacyReadingSerializer, reading))


class EvVehicleListApi(APIView):
    @extend_schema_serializer(component_name="EvVehicleList")
    class OutputSerializer(serializers.Serializer):
        vehicles = LegacyVehicleSerializer(many=True)

    @extend_schema(
        operation_id="ev_me_vehicles_list",
        summary="Your connected vehicles (first seed)",
        responses={200: OutputSerializer, 401: error(UNAUTHENTICATED)},
        tags=["ev"],
    )
    def get(self, request: Request) -> Response:
        vehicles = vehicle_list_for_user(user=request_user(request))
        return Response(represent(self.OutputSerializer, {"vehicles": vehicles}))


class EvTelemetryHistoryApi(APIView):
    class FilterSerializer(serializers.Serializer):
        days = serializers.IntegerField(required=False, default=7, min_value=1, max_value=MAX_DAYS)
        limit = serializers.IntegerField(
            required=False, default=DEFAULT_LIMIT, min_value=1, max_value=MAX_LIMIT
        )
        cursor = serializers.CharField(required=False, max_length=1000)

    @extend_schema_serializer(component_name="EvTelemetryHistory")
    class OutputSerializer(serializers.Serializer):
        vehicle_id = serializers.UUIDField()
        days = serializers.IntegerField()
        readings = LegacyReadingSerializer(many=True)
        next_cursor = serializers.CharField(
            allow_null=True, help_text="Pass as `cursor` (same `days`) for older readings."
        )

    @extend_schema(
        operation_id="ev_me_telemetry_history",
        summary="Your vehicle's telemetry history (first seed)",
        description="Your primary (or only) vehicle's readings of the last `days` days, newest "
        "first, at most `limit` per page.",
        parameters=[
            OpenApiParameter("days", int, description="1-90, default 7."),
            OpenApiParameter("limit", int, description="1-5000, default 1000."),
            OpenApiParameter("cursor", str, description="`next_cursor` of the previous page."),
        ],
        responses={
            200: OutputSerializer,
            400: error("`validation_error`: `details.fields` names each bad parameter."),
            401: error(UNAUTHENTICATED),
            404: error(NO_VEHICLE),
        },
        tags=["ev"],
    )
    def get(self, request: Request) -> Response:
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        params = filters.validated_data
        vehicle = _your_vehicle(request)
        after = None
        if "cursor" in params:
            after = cursor_decode(vehicle_id=vehicle.pk, cursor=params["cursor"])
        page = reading_history(
            vehicle=vehicle,
            start=timezone.now() - timedelta(days=params["days"]),
            end=None,
            limit=params["limit"],
            after=after,
        )
        next_cursor = (
            cursor_encode(vehicle_id=vehicle.pk, position=page.next_position)
            if page.next_position is not None
            else None
        )
        body = {
            "vehicle_id": vehicle.pk,
            "days": params["days"],
            "readings": page.readings,
            "next_cursor": next_cursor,
        }
        return Response(represent(self.OutputSerializer, body))
