"""The pooled session: pool size, no urllib3 retries, default headers."""

import pytest
import requests
import responses

from smartcar_client.session import DEFAULT_POOL_MAXSIZE, new_session


def test_the_pool_keeps_as_many_connections_as_asked():
    session = new_session("agent/1", pool_maxsize=40)
    for scheme in ("https://", "http://"):
        adapter = session.get_adapter(f"{scheme}vehicle.api.smartcar.test")
        assert adapter._pool_maxsize == 40
        assert adapter.poolmanager.connection_pool_kw["maxsize"] == 40
        assert adapter.max_retries.total == 0


def test_the_default_pool_fits_32_workers():
    adapter = new_session("agent/1").get_adapter("https://vehicle.api.smartcar.test")
    assert adapter._pool_maxsize == DEFAULT_POOL_MAXSIZE >= 32


def test_an_empty_pool_is_refused():
    with pytest.raises(ValueError, match="pool_maxsize"):
        new_session("agent/1", pool_maxsize=0)


def test_headers_carry_no_credentials():
    session = new_session("agent/1")
    assert session.headers["User-Agent"] == "agent/1"
    assert "Authorization" not in session.headers


def _merge(session, url="https://vehicle.api.smartcar.test/v3/vehicles/1/signals"):
    return session.merge_environment_settings(url, {}, None, None, None)


def test_environment_proxies_and_ca_bundle_are_honoured(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "auth.smartcar.test")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/corp.pem")
    session = new_session("agent/1")

    merged = _merge(session)
    assert merged["proxies"]["https"] == "http://proxy.internal:3128"
    assert merged["verify"] == "/etc/ssl/corp.pem"
    bypassed = _merge(session, "https://auth.smartcar.test/oauth/token")
    assert "https" not in bypassed["proxies"]


def test_the_environment_is_read_once_per_host(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    session = new_session("agent/1")
    calls = []
    real = requests.sessions.get_environ_proxies

    def counting(url, no_proxy=None):
        calls.append(url)
        return real(url, no_proxy=no_proxy)

    monkeypatch.setattr(requests.sessions, "get_environ_proxies", counting)
    for vehicle in range(5):
        _merge(session, f"https://vehicle.api.smartcar.test/v3/vehicles/{vehicle}/signals")
    _merge(session, "https://auth.smartcar.test/oauth/token")
    assert len(calls) == 2

    # The memo is not handed out: an adapter editing its proxies cannot change the next request.
    _merge(session)["proxies"]["https"] = "http://elsewhere:1"
    assert _merge(session)["proxies"]["https"] == "http://proxy.internal:3128"


def test_a_request_with_its_own_proxies_is_not_memoised(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    session = new_session("agent/1")
    own = session.merge_environment_settings(
        "https://vehicle.api.smartcar.test/", {"https": "http://mine:8080"}, None, None, None
    )
    assert own["proxies"]["https"] == "http://mine:8080"
    assert _merge(session)["proxies"]["https"] == "http://proxy.internal:3128"


@responses.activate
def test_requests_still_go_through_the_memoised_session():
    responses.get("https://vehicle.api.smartcar.test/v3/ping", json={"ok": True})
    session = new_session("agent/1")
    for _ in range(3):
        assert session.get("https://vehicle.api.smartcar.test/v3/ping").json() == {"ok": True}
    assert len(responses.calls) == 3
