import pytest

from smartcar_client.client import SmartcarClient
from smartcar_client.factory import client_from_settings, config_from_settings


def test_config_from_test_settings():
    config = config_from_settings()

    assert config.client_id == "test-client-id"
    assert config.client_secret == "test-client-secret-value"
    assert config.redirect_uri == "https://api.example.test/api/v1/smartcar/redirect"
    assert config.api_origin == "https://api.smartcar.test"
    assert config.auth_origin == "https://auth.smartcar.test"
    assert config.connect_origin == "https://connect.smartcar.test"
    assert config.v3_origin == "https://vehicle.api.smartcar.test"
    assert config.mode == "live"
    assert config.scopes == (
        "read_vehicle_info",
        "read_vin",
        "read_battery",
        "read_charge",
        "read_location",
        "read_odometer",
    )
    assert config.timeout == (5.0, 30.0)
    assert config.unit_system == "metric"


def test_same_settings_give_the_same_client():
    first = client_from_settings()

    assert isinstance(first, SmartcarClient)
    assert client_from_settings() is first
    assert client_from_settings()._session is first._session


def test_changed_settings_give_a_fresh_client(settings: pytest.FixtureRequest):
    before = client_from_settings()
    settings.SMARTCAR_BASE_URL = "http://127.0.0.1:9999/_smartcar"
    settings.SMARTCAR_READ_TIMEOUT = 2

    after = client_from_settings()

    assert after is not before
    assert after.config.api_origin == "http://127.0.0.1:9999/_smartcar"
    assert after.config.read_timeout == 2.0


def _pool_maxsize(client: SmartcarClient) -> int:
    adapter = client._session.get_adapter("https://api.smartcar.test")
    return adapter._pool_maxsize  # type: ignore[attr-defined]


def test_the_clients_pool_is_sized_from_the_settings(settings: pytest.FixtureRequest):
    assert _pool_maxsize(client_from_settings()) == 32  # default: the benchmark's 32 workers

    settings.SMARTCAR_HTTP_POOL_MAXSIZE = 48

    client = client_from_settings()
    assert client.config.pool_maxsize == 48
    assert _pool_maxsize(client) == 48


def test_user_agent_comes_from_settings_when_set(settings):
    settings.SMARTCAR_USER_AGENT = "acme-ev/2.1 (+https://acme.example/bot)"

    assert client_from_settings().config.user_agent == "acme-ev/2.1 (+https://acme.example/bot)"
