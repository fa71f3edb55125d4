"""The SPA's vehicle and telemetry endpoints, under API_PREFIX (namespace `telemetry`)."""

from django.urls import path

from telemetry.apis.readings import TelemetryHistoryApi, TelemetryLatestApi
from telemetry.apis.vehicles import VehicleDetailApi, VehicleListApi

app_name = "telemetry"

urlpatterns = [
    path("vehicles", VehicleListApi.as_view(), name="vehicle-list"),
    # <str:>, not <uuid:>: a malformed id must be our JSON 404, not Django's HTML one.
    path("vehicles/<str:vehicle_id>", VehicleDetailApi.as_view(), name="vehicle-detail"),
    path(
        "vehicles/<str:vehicle_id>/telemetry/latest",
        TelemetryLatestApi.as_view(),
        name="telemetry-latest",
    ),
    path(
        "vehicles/<str:vehicle_id>/telemetry",
        TelemetryHistoryApi.as_view(),
        name="telemetry-history",
    ),
]
