# ruff: noqa: N802, N815  (the SPA API's field names are camelCase on purpose)
"""Output shapes of the telemetry API: camelCase for the SPA, snake_case for the first seed.

Plain `Serializer`s, not `ModelSerializer`s, so a model change never silently changes the API.
Each has an explicit OpenAPI component name. Must never expose tokens, the VIN or internal
bookkeeping (leases, error texts).
"""

from datetime import UTC, datetime
from typing import Any

from drf_spectacular.utils import extend_schema_field, extend_schema_serializer
from rest_framework import ISO_8601, serializers
from rest_framework.settings import api_settings

from core.serialization import represent
from telemetry.models import Reading
from telemetry.selectors import vehicle_api_status, vehicle_latest_reading
from vehicles.models import Vehicle


class UtcDateTimeField(serializers.DateTimeField):
    """A time as the API sends every time: ISO 8601 in UTC ("...Z"). Named once here rather than
    left to DRF's current time zone (also UTC, settings.TIME_ZONE), which DRF looks up for every
    value it writes: about 1 ms of a week of 1-hour buckets."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(default_timezone=UTC, **kwargs)

    def to_representation(self, value: Any) -> Any:
        # DRF's own steps for an aware datetime in ISO 8601, without its per-value look-ups
        # (a week of 1-hour buckets writes 169 times); anything else goes to DRF.
        if (
            type(value) is datetime
            and value.tzinfo is not None
            and getattr(self, "format", api_settings.DATETIME_FORMAT) == ISO_8601
        ):
            if value.tzinfo is not UTC:  # what we read and build is UTC already: half the cost
                try:
                    value = value.astimezone(UTC)
                except OverflowError:
                    return super().to_representation(value)  # DRF's validation error
            text = value.isoformat()
            return text[:-6] + "Z" if text.endswith("+00:00") else text
        return super().to_representation(value)


@extend_schema_serializer(component_name="TelemetryReading")
class ReadingSerializer(serializers.Serializer):
    """One reading; every field is present, null where the vehicle did not report it."""

    recordedAt = UtcDateTimeField(
        source="recorded_at", help_text="When the vehicle recorded the values."
    )
    receivedAt = UtcDateTimeField(source="received_at", help_text="When we received them.")
    source = serializers.ChoiceField(choices=Reading.Source.choices)  # type: ignore[assignment]
    socPct = serializers.FloatField(source="soc_pct", allow_null=True, help_text="0-100.")
    rangeKm = serializers.FloatField(source="range_km", allow_null=True)
    chargingState = serializers.ChoiceField(
        source="charging_state", choices=Reading.ChargingState.choices, allow_null=True
    )
    isPluggedIn = serializers.BooleanField(source="is_plugged_in", allow_null=True)
    latitude = serializers.FloatField(allow_null=True)
    longitude = serializers.FloatField(allow_null=True)
    odometerKm = serializers.FloatField(source="odometer_km", allow_null=True)


@extend_schema_serializer(component_name="Vehicle")
class VehicleSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    smartcarVehicleId = serializers.CharField(source="smartcar_vehicle_id")
    status = serializers.SerializerMethodField(
        help_text="`needs_reauth` when the vehicle or its Smartcar account must be reconnected."
    )
    make = serializers.CharField()
    model = serializers.CharField()
    year = serializers.IntegerField(allow_null=True)
    nickname = serializers.CharField()
    isPrimary = serializers.BooleanField(source="is_primary")
    connectedAt = UtcDateTimeField(source="connected_at", allow_null=True)
    latestTelemetry = serializers.SerializerMethodField()

    @extend_schema_field(serializers.ChoiceField(choices=Vehicle.Status.choices))
    def get_status(self, vehicle: Vehicle) -> str:
        return vehicle_api_status(vehicle)

    @extend_schema_field(ReadingSerializer(allow_null=True))
    def get_latestTelemetry(self, vehicle: Vehicle) -> dict[str, Any] | None:
        reading = vehicle_latest_reading(vehicle)
        return None if reading is None else represent(ReadingSerializer, reading)


@extend_schema_serializer(component_name="TelemetryBucket")
class BucketSerializer(serializers.Serializer):
    bucketStart = UtcDateTimeField(source="start")
    socPctMean = serializers.FloatField(source="soc_pct_mean", allow_null=True)
    lastLatitude = serializers.FloatField(source="last_latitude", allow_null=True)
    lastLongitude = serializers.FloatField(source="last_longitude", allow_null=True)
    chargingShare = serializers.FloatField(
        source="charging_share",
        allow_null=True,
        help_text="Share (0-1) of the readings reporting a charging state that say CHARGING.",
    )
    readings = serializers.IntegerField()


# --- The first seed's snake_case shapes ---------------------------------------------------------


@extend_schema_serializer(component_name="EvTelemetryLatest")
class LegacyReadingSerializer(serializers.Serializer):
    recorded_at = UtcDateTimeField()
    soc_pct = serializers.FloatField(allow_null=True)
    charging_state = serializers.ChoiceField(choices=Reading.ChargingState.choices, allow_null=True)
    latitude = serializers.FloatField(allow_null=True)
    longitude = serializers.FloatField(allow_null=True)


@extend_schema_serializer(component_name="EvVehicle")
class LegacyVehicleSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    smartcar_vehicle_id = serializers.CharField()
    status = serializers.SerializerMethodField()
    make = serializers.CharField()
    model = serializers.CharField()
    year = serializers.IntegerField(allow_null=True)
    nickname = serializers.CharField()
    is_primary = serializers.BooleanField()
    connected_at = UtcDateTimeField(allow_null=True)
    latest_telemetry = serializers.SerializerMethodField()

    @extend_schema_field(serializers.ChoiceField(choices=Vehicle.Status.choices))
    def get_status(self, vehicle: Vehicle) -> str:
        return vehicle_api_status(vehicle)

    @extend_schema_field(LegacyReadingSerializer(allow_null=True))
    def get_latest_telemetry(self, vehicle: Vehicle) -> dict[str, Any] | None:
        reading = vehicle_latest_reading(vehicle)
        return None if reading is None else represent(LegacyReadingSerializer, reading)
