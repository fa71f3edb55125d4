"""The first seed's telemetry paths, at the root (not under API_PREFIX), snake_case."""

from django.urls import path

from telemetry.apis.legacy import EvTelemetryHistoryApi, EvTelemetryLatestApi, EvVehicleListApi

urlpatterns = [
    path("v1/ev/me/telemetry/latest", EvTelemetryLatestApi.as_view(), name="ev-telemetry-latest"),
    path(
        "v1/ev/me/telemetry/history", EvTelemetryHistoryApi.as_view(), name="ev-telemetry-history"
    ),
    path("v1/ev/me/vehicles", EvVehicleListApi.as_view(), name="ev-vehicles"),
]
