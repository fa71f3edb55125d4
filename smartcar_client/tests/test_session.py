"""The pooled session: pool size, no urllib3 retries, default headers."""

import pytest

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
