from urllib.parse import parse_qs, urlsplit

import pytest

from smartcar_client.client import SmartcarClient
from smartcar_client.config import SmartcarConfig
from smartcar_client.tests.conftest import CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, SCOPES


def _query(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query, keep_blank_values=True)


def test_connect_url_has_exact_params(client: SmartcarClient):
    url = client.connect_url(state="s" * 43)

    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == (
        "https://connect.smartcar.test/oauth/authorize"
    )
    assert _query(url) == {
        "response_type": ["code"],
        "client_id": [CLIENT_ID],
        "redirect_uri": [REDIRECT_URI],
        "approval_prompt": ["auto"],
        "scope": [" ".join(SCOPES)],
        "mode": ["live"],
        "state": ["s" * 43],
    }


def test_connect_url_never_contains_the_secret(client: SmartcarClient):
    url = client.connect_url(state="abc", make="TESLA", single_select=True, force_prompt=True)

    assert CLIENT_SECRET not in url
    assert "secret" not in url


def test_connect_url_options(client: SmartcarClient):
    query = _query(
        client.connect_url(state="abc", make="TESLA", single_select=True, force_prompt=True)
    )

    assert query["approval_prompt"] == ["force"]
    assert query["make"] == ["TESLA"]
    assert query["single_select"] == ["true"]


def test_connect_url_omits_unset_options(client: SmartcarClient):
    query = _query(client.connect_url(state="abc"))

    assert "make" not in query
    assert "single_select" not in query


def test_connect_url_mode_and_origin_with_path_prefix(config: SmartcarConfig):
    emulator = SmartcarConfig(
        **{
            **config.__dict__,
            "mode": "simulated",
            "connect_origin": "http://127.0.0.1:8000/_smartcar/",
        }
    )

    url = SmartcarClient(emulator).connect_url(state="abc")

    assert url.startswith("http://127.0.0.1:8000/_smartcar/oauth/authorize?")
    assert _query(url)["mode"] == ["simulated"]


def test_connect_url_requires_state(client: SmartcarClient):
    with pytest.raises(ValueError, match="state"):
        client.connect_url(state="")


def test_connect_url_state_is_encoded(client: SmartcarClient):
    url = client.connect_url(state="a&scope=control_security")

    assert _query(url)["state"] == ["a&scope=control_security"]
    assert _query(url)["scope"] == [" ".join(SCOPES)]
