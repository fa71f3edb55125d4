"""The SPA's telemetry endpoints: a vehicle's latest reading (optionally polled now) and its
history, paged or aggregated into time buckets for charts.

Parses and bounds the query (every bad parameter is a 400 naming it), then calls one selector or
the on-demand poll. Owner-only through `vehicle_get_for_user`.
"""

from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone
from drf_spectacular.utils import (
    OpenApiParameter,
    PolymorphicProxySerializer,
    extend_schema,
    extend_schema_serializer,
)
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.serialization import represent
from telemetry.apis.common import (
    UNAUTHENTICATED,
    VEHICLE_ID,
    VEHICLE_NOT_FOUND,
    AwareDateTimeField,
    error,
    request_user,
)
from telemetry.apis.cursors import cursor_decode, cursor_encode
from telemetry.selectors import (
    reading_buckets,
    reading_history,
    vehicle_get_for_user,
    vehicle_latest_reading,
    vehicle_ref_for_user,
)
from telemetry.serializers import BucketSerializer, ReadingSerializer
from telemetry.services.refresh import NoTelemetryError, telemetry_refresh

MAX_RANGE = timedelta(days=366)
DEFAULT_BUCKET_RANGE = timedelta(days=7)
BUCKET_SECONDS = {"15m": 15 * 60, "1h": 60 * 60, "1d": 24 * 60 * 60}
# A chart needs no more points than this; it also bounds the aggregate query's result.
MAX_BUCKETS = 10_000
DEFAULT_LIMIT = 100
MAX_LIMIT = 500


class TelemetryLatestApi(APIView):
    class FilterSerializer(serializers.Serializer):
        refresh = serializers.BooleanField(required=False, default=False)

    @extend_schema(
        operation_id="vehicles_telemetry_latest",
        summary="A vehicle's latest reading",
        description="The newest stored reading. With `refresh=true`, polls the vehicle at "
        "Smartcar first, at most once a minute per vehicle (429 with Retry-After past that).",
        parameters=[
            VEHICLE_ID,
            OpenApiParameter("refresh", bool, description="Poll the vehicle now."),
        ],
        responses={
            200: ReadingSerializer,
            400: error("`validation_error`: bad `refresh`."),
            401: error(UNAUTHENTICATED),
            404: error(f"{VEHICLE_NOT_FOUND} `no_telemetry`: no reading yet."),
            409: error(
                "`reconnect_required`: the Smartcar connection must be renewed; "
                "`vehicle_disconnected`: the vehicle was disconnected (refresh only)."
            ),
            429: error("`rate_limited`: refreshed moments ago; see the Retry-After header."),
            502: error("`smartcar_error`: Smartcar failed or could not be reached (refresh only)."),
            504: error("`smartcar_timeout`: Smartcar did not answer in time (refresh only)."),
        },
        tags=["telemetry"],
    )
    def get(self, request: Request, vehicle_id: str) -> Response:
        vehicle = vehicle_get_for_user(user=request_user(request), vehicle_id=vehicle_id)
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        if filters.validated_data["refresh"]:
            reading = telemetry_refresh(vehicle=vehicle)
        else:
            latest = vehicle_latest_reading(vehicle)
            if latest is None:
                raise NoTelemetryError()
            reading = latest
        return Response(represent(ReadingSerializer, reading))


class TelemetryHistoryApi(APIView):
    class FilterSerializer(serializers.Serializer):
        # `from` is a Python keyword: the field is declared under its query name below.
        to = AwareDateTimeField(required=False)
        limit = serializers.IntegerField(
            required=False, default=DEFAULT_LIMIT, min_value=1, max_value=MAX_LIMIT
        )
        cursor = serializers.CharField(required=False, max_length=1000)
        bucket = serializers.ChoiceField(choices=list(BUCKET_SECONDS), required=False)

        def get_fields(self) -> dict[str, serializers.Field]:
            fields = super().get_fields()
            fields["from"] = AwareDateTimeField(required=False)
            return fields

        def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
            start, end = attrs.get("from"), attrs.get("to")
            bucket = attrs.get("bucket")
            if bucket is not None:
                if "cursor" in attrs:
                    raise serializers.ValidationError({"cursor": ["Not used with bucket."]})
                end = end or timezone.now()
                start = start or end - DEFAULT_BUCKET_RANGE
                attrs["from"], attrs["to"] = start, end
            if start is None:
                return attrs
            if end is not None and start > end:
                raise serializers.ValidationError({"to": ["Must not be before from."]})
            span = (end or timezone.now()) - start
            if span > MAX_RANGE:
                raise serializers.ValidationError(
                    {"from": ["The range from-to must not exceed 366 days."]}
                )
            if (
                bucket is not None
                and span / timedelta(seconds=BUCKET_SECONDS[bucket]) > MAX_BUCKETS
            ):
                raise serializers.ValidationError(
                    {
                        "bucket": [
                            f"Over {MAX_BUCKETS} buckets: widen the bucket or narrow the range."
                        ]
                    }
                )
            return attrs

    @extend_schema_serializer(component_name="TelemetryHistoryPage")
    class PageSerializer(serializers.Serializer):
        readings = ReadingSerializer(many=True)
        nextCursor = serializers.CharField(  # noqa: N815  (the API's field name)
            allow_null=True,
            help_text="Pass as `cursor` for the next (older) page; null at the end.",
        )

    @extend_schema_serializer(component_name="TelemetryBuckets")
    class BucketsSerializer(serializers.Serializer):
        bucket = serializers.ChoiceField(choices=list(BUCKET_SECONDS))
        to = serializers.DateTimeField()
        buckets = BucketSerializer(many=True)

        def get_fields(self) -> dict[str, serializers.Field]:
            fields = super().get_fields()
            fields["from"] = serializers.DateTimeField()
            return fields

    @extend_schema(
        operation_id="vehicles_telemetry_history",
        summary="A vehicle's telemetry history",
        description="Readings with `from` <= recordedAt < `to`, newest first, `limit` per page; "
        "follow `nextCursor` (keep the other parameters). With `bucket`, one aggregate per "
        "bucket instead (UTC-aligned, newest first, empty buckets left out); `from`/`to` then "
        "default to the last 7 days. Ranges over 366 days are refused.",
        parameters=[
            VEHICLE_ID,
            OpenApiParameter("from", datetime, description="ISO 8601 with timezone; inclusive."),
            OpenApiParameter("to", datetime, description="ISO 8601 with timezone; exclusive."),
            OpenApiParameter("limit", int, description="1-500, default 100 (pages only)."),
            OpenApiParameter("cursor", str, description="`nextCursor` of the previous page."),
            OpenApiParameter("bucket", str, enum=list(BUCKET_SECONDS), description="Aggregate."),
        ],
        responses={
            200: PolymorphicProxySerializer(
                component_name="TelemetryHistory",
                serializers=[PageSerializer, BucketsSerializer],
                resource_type_field_name=None,
            ),
            400: error("`validation_error`: `details.fields` names each bad parameter."),
            401: error(UNAUTHENTICATED),
            404: error(VEHICLE_NOT_FOUND),
        },
        tags=["telemetry"],
    )
    def get(self, request: Request, vehicle_id: str) -> Response:
        vehicle = vehicle_ref_for_user(user=request_user(request), vehicle_id=vehicle_id)
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        params = filters.validated_data
        if "bucket" in params:
            buckets = reading_buckets(
                vehicle=vehicle,
                start=params["from"],
                end=params["to"],
                bucket_seconds=BUCKET_SECONDS[params["bucket"]],
            )
            body = {"bucket": params["bucket"], "from": params["from"], "to": params["to"]}
            return Response(represent(self.BucketsSerializer, {**body, "buckets": buckets}))
        after = None
        if "cursor" in params:
            after = cursor_decode(vehicle_id=vehicle.pk, cursor=params["cursor"])
        page = reading_history(
            vehicle=vehicle,
            start=params.get("from"),
            end=params.get("to"),
            limit=params["limit"],
            after=after,
        )
        next_cursor = (
            cursor_encode(vehicle_id=vehicle.pk, position=page.next_position)
            if page.next_position is not None
            else None
        )
        return Response(
            represent(self.PageSerializer, {"readings": page.readings, "nextCursor": next_cursor})
        )
