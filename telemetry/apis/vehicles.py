"""The SPA's vehicle endpoints: list, read, rename / make primary, disconnect.

Owner-only: every lookup goes through `telemetry.selectors.vehicle_get_for_user`, so another
user's vehicle is a 404 exactly like a missing one. Writes go through `vehicles.services`.
"""

from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_serializer,
)
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.serialization import represent
from telemetry.apis.common import (
    UNAUTHENTICATED,
    VEHICLE_ID,
    VEHICLE_NOT_FOUND,
    StrictInputSerializer,
    error,
    request_user,
)
from telemetry.selectors import vehicle_get_for_user, vehicle_list_for_user
from telemetry.serializers import VehicleSerializer
from vehicles.services import vehicle_disconnect, vehicle_update

NICKNAME_MAX_LENGTH = 100


class VehicleListApi(APIView):
    class FilterSerializer(serializers.Serializer):
        include = serializers.ChoiceField(choices=["disconnected"], required=False)

    @extend_schema_serializer(component_name="VehicleList")
    class OutputSerializer(serializers.Serializer):
        vehicles = VehicleSerializer(many=True)

    @extend_schema(
        operation_id="vehicles_list",
        summary="List your vehicles",
        description="Your vehicles, primary first, each with its latest reading (`null` before "
        "the first). Disconnected vehicles are left out unless `include=disconnected`.",
        parameters=[
            OpenApiParameter(
                "include",
                str,
                enum=["disconnected"],
                description="`disconnected` also lists vehicles you disconnected.",
            )
        ],
        responses={
            200: OutputSerializer,
            400: error("`validation_error`: bad `include`."),
            401: error(UNAUTHENTICATED),
        },
        tags=["vehicles"],
    )
    def get(self, request: Request) -> Response:
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        vehicles = vehicle_list_for_user(
            user=request_user(request),
            include_disconnected=filters.validated_data.get("include") == "disconnected",
        )
        return Response(represent(self.OutputSerializer, {"vehicles": vehicles}))


class VehicleDetailApi(APIView):
    @extend_schema_serializer(component_name="VehicleUpdate")
    class InputSerializer(StrictInputSerializer):
        nickname = serializers.CharField(
            max_length=NICKNAME_MAX_LENGTH,
            allow_blank=True,
            required=False,
            help_text="Trimmed; empty clears it.",
        )
        isPrimary = serializers.BooleanField(  # noqa: N815  (the API's field name)
            required=False,
            help_text="`true` makes this your primary vehicle (the previous one stops being it).",
        )

    @extend_schema(
        operation_id="vehicles_retrieve",
        summary="Read one of your vehicles",
        parameters=[VEHICLE_ID],
        responses={
            200: VehicleSerializer,
            401: error(UNAUTHENTICATED),
            404: error(VEHICLE_NOT_FOUND),
        },
        tags=["vehicles"],
    )
    def get(self, request: Request, vehicle_id: str) -> Response:
        vehicle = vehicle_get_for_user(user=request_user(request), vehicle_id=vehicle_id)
        return Response(represent(VehicleSerializer, vehicle))

    @extend_schema(
        operation_id="vehicles_update",
        summary="Rename a vehicle or make it your primary one",
        parameters=[VEHICLE_ID],
        request=InputSerializer,
        responses={
            200: VehicleSerializer,
            400: error("`validation_error`, naming each bad or unknown field; `invalid_json`."),
            401: error(UNAUTHENTICATED),
            404: error(VEHICLE_NOT_FOUND),
            409: error("`vehicle_disconnected`: a disconnected vehicle cannot become primary."),
        },
        tags=["vehicles"],
    )
    def patch(self, request: Request, vehicle_id: str) -> Response:
        user = request_user(request)
        vehicle = vehicle_get_for_user(user=user, vehicle_id=vehicle_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        vehicle_update(
            vehicle=vehicle,
            nickname=data.validated_data.get("nickname"),
            is_primary=data.validated_data.get("isPrimary"),
        )
        # Read back through the selector: the response shows the row as it is now.
        return Response(
            represent(VehicleSerializer, vehicle_get_for_user(user=user, vehicle_id=vehicle_id))
        )

    @extend_schema(
        operation_id="vehicles_disconnect",
        summary="Disconnect a vehicle",
        description="Revokes our access at Smartcar, then marks the vehicle disconnected (its "
        "history stays). When it was the last live vehicle of its Smartcar account, the "
        "account's tokens are deleted. If Smartcar says access was already revoked, the vehicle "
        "is disconnected anyway; if Smartcar is down, nothing changes (502, or 504 when it did not answer in time). Repeating it is a "
        "no-op.",
        parameters=[VEHICLE_ID],
        request=None,
        responses={
            204: OpenApiResponse(description="Disconnected."),
            401: error(UNAUTHENTICATED),
            404: error(VEHICLE_NOT_FOUND),
            502: error("`smartcar_error`: Smartcar failed or could not be reached; try again."),
            504: error("`smartcar_timeout`: Smartcar did not answer in time; try again."),
        },
        tags=["vehicles"],
    )
    def delete(self, request: Request, vehicle_id: str) -> Response:
        vehicle = vehicle_get_for_user(user=request_user(request), vehicle_id=vehicle_id)
        vehicle_disconnect(vehicle=vehicle)
        return Response(status=status.HTTP_204_NO_CONTENT)
