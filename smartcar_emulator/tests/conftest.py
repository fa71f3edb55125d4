"""Fixtures: the emulator installed and mounted at /_smartcar/, a fresh state, a fake clock."""

import base64
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import Client

from smartcar_emulator import clock, control

ROOT = "/_smartcar"
REDIRECT_URI = "https://app.example.test/smartcar/redirect"
CLIENT_ID = "emulator-client-id"
CLIENT_SECRET = "emulator-client-secret"
ALL_SCOPES = "read_vehicle_info read_vin read_battery read_charge read_location read_odometer"


@pytest.fixture(autouse=True)
def emulator(settings) -> Iterator[clock.FakeClock]:
    if "smartcar_emulator" not in settings.INSTALLED_APPS:
        settings.INSTALLED_APPS = [*settings.INSTALLED_APPS, "smartcar_emulator"]
    settings.ROOT_URLCONF = "smartcar_emulator.tests.urls"
    settings.SMARTCAR_EMULATOR_CLIENT_ID = CLIENT_ID
    settings.SMARTCAR_EMULATOR_CLIENT_SECRET = CLIENT_SECRET
    settings.SMARTCAR_EMULATOR_REDIRECT_URIS = [REDIRECT_URI, "com.example.app://smartcar"]
    settings.SMARTCAR_EMULATOR_SEED = 42
    settings.SMARTCAR_EMULATOR_ACCESS_TOKEN_TTL = 7200
    settings.SMARTCAR_EMULATOR_REFRESH_GRACE_SECONDS = 0
    fake = clock.FakeClock()
    control.use_clock(fake)
    control.reset()
    yield fake
    control.reset_clock()
    control.reset()


@pytest.fixture
def fake_clock(emulator: clock.FakeClock) -> clock.FakeClock:
    return emulator


@pytest.fixture
def client() -> Client:
    return Client()


def basic(client_id: str = CLIENT_ID, secret: str = CLIENT_SECRET) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def authorize_query(**overrides: str) -> dict[str, str]:
    query = {
        "response_type": "code",
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT_URI,
        "approval_prompt": "auto",
        "scope": ALL_SCOPES,
        "mode": "simulated",
        "state": "st-123",
    }
    query.update(overrides)
    return {k: v for k, v in query.items() if v is not None}


def ticket_of(html: str) -> str:
    marker = 'name="ticket" value="'
    start = html.index(marker) + len(marker)
    return html[start : html.index('"', start)]


def vehicles_of_make(make: str) -> list[str]:
    return [v["id"] for v in control.list_vehicles() if v["make"] == make]


def connect(
    client: Client, *, make: str = "TESLA", vehicles: list[str] | None = None, **query: str
) -> str:
    """Run Connect through Allow; return the authorization code."""
    page = client.get(f"{ROOT}/oauth/authorize", authorize_query(make=make, **query))
    assert page.status_code == 200, page.content
    chosen = vehicles if vehicles is not None else vehicles_of_make(make)[:2]
    response = client.post(
        f"{ROOT}/oauth/consent",
        {"ticket": ticket_of(page.content.decode()), "vehicle": chosen, "action": "allow"},
    )
    assert response.status_code == 302, response.content
    return parse_qs(urlsplit(response["Location"]).query)["code"][0]


def exchange(client: Client, code: str, redirect_uri: str = REDIRECT_URI):
    return client.post(
        f"{ROOT}/oauth/token",
        {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri},
        HTTP_AUTHORIZATION=basic(),
    )


def tokens(client: Client, **kwargs) -> dict:
    response = exchange(client, connect(client, **kwargs))
    assert response.status_code == 200, response.content
    return response.json()


def bearer(token: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}
