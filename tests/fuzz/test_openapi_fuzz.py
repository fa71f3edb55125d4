"""schemathesis against our own OpenAPI schema (issue 8, SECURITY H): every operation, a valid
JWT, a bounded number of examples. Checks: never a 5xx, status code, content type and body as
the schema documents them.

The WSGI app is called in-process. Two passes: every operation as generated (random path ids,
so mostly 404s and validation errors), and the vehicle operations again with the path pointing
at a real vehicle of the caller, so the 200 bodies are validated too.
"""

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import hypothesis
import pytest
import responses
import schemathesis
from django.utils import timezone
from hypothesis import HealthCheck
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from config.wsgi import application
from core.jwt_tokens import issue_jwt
from telemetry.models import TelemetryState
from telemetry.services import refresh
from telemetry.services.readings import PollResult
from telemetry.tests.api_support import add_reading, link_account

schema = schemathesis.openapi.from_wsgi("/api/v1/schema/?format=json", application)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
FUZZ = hypothesis.settings(
    max_examples=15,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
USERNAME = "fuzz-user"

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def smartcar() -> Iterator[responses.RequestsMock]:
    """Smartcar's token endpoint refuses every fuzzed code, as the real one would; any other
    Smartcar request is unmocked and fails (a 502 the checks catch)."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.post(
            "https://auth.smartcar.test/oauth/token",
            status=400,
            json={"error": "invalid_grant", "error_description": "Invalid code."},
        )
        yield mock


@pytest.fixture
def owner_vehicle(django_user_model: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The JWT's user with one vehicle and a fresh reading; an on-demand poll returns it (the
    poll itself is tested elsewhere; here no request may reach Smartcar)."""
    owner = django_user_model.objects.create(username=USERNAME)
    vehicle = link_account(owner).vehicles[0]
    reading = add_reading(vehicle, timezone.now() - timedelta(seconds=10))
    reading.received_at = timezone.now()
    reading.save(update_fields=["received_at"])

    def poll(*, vehicle: Any, source: str = "refresh") -> PollResult:
        latest = TelemetryState.objects.get(vehicle=vehicle).latest_reading
        return PollResult("unchanged", latest, False, 1)

    monkeypatch.setattr(refresh, "telemetry_poll_vehicle", poll)
    return vehicle


def auth_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_jwt(USERNAME)}"}


@schema.parametrize()
@FUZZ
def test_every_operation(case: Any, owner_vehicle: Any) -> None:
    response = case.call(headers=auth_headers())
    case.validate_response(response, checks=CHECKS)


@schema.include(path_regex=r"\{vehicle_id\}").exclude(method="DELETE").parametrize()
@FUZZ
def test_vehicle_operations_on_a_real_vehicle(case: Any, owner_vehicle: Any) -> None:
    case.path_parameters = {**(case.path_parameters or {}), "vehicle_id": str(owner_vehicle.pk)}
    response = case.call(headers=auth_headers())
    case.validate_response(response, checks=CHECKS)
