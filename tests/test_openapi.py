"""The OpenAPI schema is valid, warning-free, and describes every endpoint and its errors."""

from io import StringIO

import pytest
import yaml
from django.core.management import call_command

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def schema() -> dict:
    out = StringIO()
    call_command("spectacular", "--validate", "--fail-on-warn", stdout=out)
    return yaml.safe_load(out.getvalue())


@pytest.mark.parametrize(
    ("path", "method", "statuses"),
    [
        ("/api/v1/smartcar/login", "get", {"200", "401"}),
        ("/api/v1/smartcar/complete-connect", "post", {"200", "400", "401", "403", "409", "502"}),
        ("/v1/ev/connect", "get", {"200", "401"}),
        ("/api/v1/smartcar/connect", "get", {"302"}),
        ("/api/v1/smartcar/redirect", "get", {"302"}),
        ("/oauth/smartcar/callback", "get", {"302"}),
        ("/api/v1/smartcar/oauth-done", "get", {"200", "400"}),
        ("/api/v1/smartcar/webhook", "post", {"200", "400", "401", "405", "413", "503"}),
    ],
)
def test_schema_documents_endpoint_and_errors(schema, path, method, statuses):
    operation = schema["paths"][path][method]

    assert statuses <= set(operation["responses"])


def test_schema_declares_bearer_jwt(schema):
    assert schema["components"]["securitySchemes"]["BearerJWT"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
    }


def test_schema_and_docs_are_served(client):
    assert client.get("/api/v1/schema/").status_code == 200
    assert client.get("/api/v1/docs/").status_code == 200
