"""The telemetry endpoints are in the OpenAPI schema, warning-free, with their error bodies."""

from io import StringIO

import pytest
import yaml
from django.core.management import call_command

pytestmark = pytest.mark.django_db


@pytest.fixture
def schema() -> dict:
    out = StringIO()
    call_command("spectacular", "--validate", "--fail-on-warn", stdout=out)
    return yaml.safe_load(out.getvalue())


ENDPOINTS = [
    ("/api/v1/vehicles", "get", {"200", "400", "401"}),
    ("/api/v1/vehicles/{vehicle_id}", "get", {"200", "401", "404"}),
    ("/api/v1/vehicles/{vehicle_id}", "patch", {"200", "400", "401", "404", "409"}),
    ("/api/v1/vehicles/{vehicle_id}", "delete", {"204", "401", "404", "502"}),
    (
        "/api/v1/vehicles/{vehicle_id}/telemetry/latest",
        "get",
        {"200", "400", "401", "404", "409", "429", "502"},
    ),
    ("/api/v1/vehicles/{vehicle_id}/telemetry", "get", {"200", "400", "401", "404"}),
    ("/v1/ev/me/telemetry/latest", "get", {"200", "401", "404", "409", "502"}),
    ("/v1/ev/me/vehicles", "get", {"200", "401"}),
    ("/v1/ev/me/telemetry/history", "get", {"200", "400", "401", "404"}),
]


def test_schema_documents_every_telemetry_endpoint_and_its_errors(schema):
    for path, method, statuses in ENDPOINTS:
        responses = schema["paths"][path][method]["responses"]
        assert statuses <= set(responses), (path, method)
        for status in statuses - {"200", "204"}:
            content = responses[status]["content"]["application/json"]["schema"]
            assert content == {"$ref": "#/components/schemas/ApiError"}, (path, method, status)


def test_schema_vehicle_id_is_a_uuid_path_parameter(schema):
    parameters = schema["paths"]["/api/v1/vehicles/{vehicle_id}"]["get"]["parameters"]

    described = {key: parameters[0][key] for key in ("in", "name", "required", "schema")}
    assert described == {
        "in": "path",
        "name": "vehicle_id",
        "required": True,
        "schema": {"type": "string", "format": "uuid"},
    }


def test_schema_reading_has_every_field(schema):
    reading = schema["components"]["schemas"]["TelemetryReading"]["properties"]

    assert set(reading) == {
        "recordedAt",
        "receivedAt",
        "source",
        "socPct",
        "rangeKm",
        "chargingState",
        "isPluggedIn",
        "latitude",
        "longitude",
        "odometerKm",
    }


def test_schema_history_documents_pages_and_buckets(schema):
    history = schema["components"]["schemas"]["TelemetryHistory"]

    assert history["oneOf"] == [
        {"$ref": "#/components/schemas/TelemetryHistoryPage"},
        {"$ref": "#/components/schemas/TelemetryBuckets"},
    ]
