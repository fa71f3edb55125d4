"""Fixtures for the Smartcar client tests: a hand-built config, a client that never sleeps, canned
bodies from `fixtures/`, and a strict `responses` mock (no request leaves the process)."""

import json
from pathlib import Path
from typing import Any

import pytest
import responses

from smartcar_client.client import SmartcarClient
from smartcar_client.config import SmartcarConfig

FIXTURES = Path(__file__).parent / "fixtures"

API = "https://api.smartcar.test"
AUTH = "https://auth.smartcar.test"
CONNECT = "https://connect.smartcar.test"
V3 = "https://vehicle.api.smartcar.test"
CLIENT_ID = "test-client-id"
CLIENT_SECRET = "test-client-secret-value"
REDIRECT_URI = "https://api.example.test/api/v1/smartcar/redirect"
SCOPES = ("read_vehicle_info", "read_vin", "read_battery", "read_charge", "read_location")
VEHICLE_ID = "36ab27d0-fd9d-4455-823a-ce30af709ffc"
ACCESS_TOKEN = "acc-3f9d1c2e-1111-4a5b-9c8d-aaaaaaaaaaaa"
REFRESH_TOKEN = "ref-6d2f40aa-2222-4b6c-8d9e-bbbbbbbbbbbb"
AUTH_CODE = "7f1d6a52-aaaa-bbbb-cccc-0123456789ab"


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


class FakeClock:
    """Monotonic clock the client reads; `sleep` advances it instead of waiting."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def config() -> SmartcarConfig:
    return SmartcarConfig(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        redirect_uri=REDIRECT_URI,
        scopes=SCOPES,
        mode="live",
        api_origin=API,
        auth_origin=AUTH,
        connect_origin=CONNECT,
        v3_origin=V3,
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def client(config: SmartcarConfig, clock: FakeClock) -> SmartcarClient:
    return SmartcarClient(config, sleep=clock.sleep, clock=clock)


@pytest.fixture
def mocked():
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield mock
