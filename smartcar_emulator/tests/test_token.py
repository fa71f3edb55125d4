"""Token endpoint: Basic client auth, code exchange (10 min, single use), refresh rotation."""

from http import HTTPStatus

import pytest

from smartcar_emulator import control
from smartcar_emulator.tests.conftest import (
    REDIRECT_URI,
    ROOT,
    basic,
    bearer,
    connect,
    exchange,
    tokens,
)

TOKEN = f"{ROOT}/oauth/token"


def _refresh(client, refresh_token, auth=None):
    return client.post(
        TOKEN,
        {"grant_type": "refresh_token", "refresh_token": refresh_token},
        HTTP_AUTHORIZATION=auth or basic(),
    )


def test_code_exchange_returns_smartcar_token_shape(client):
    response = exchange(client, connect(client))
    assert response.status_code == HTTPStatus.OK
    assert response["Content-Type"] == "application/json"
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "refresh_token"}
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 7200
    assert body["access_token"] != body["refresh_token"]


@pytest.mark.parametrize(
    "auth",
    [
        None,
        basic(secret="wrong"),
        basic(client_id="other"),
        "Basic not-base64!!",
        "Bearer emulator-client-secret",
        "Basic " + __import__("base64").b64encode(b"emulator-client-id").decode(),
    ],
)
def test_token_requires_valid_basic_client_auth(client, auth):
    code = connect(client)
    headers = {"HTTP_AUTHORIZATION": auth} if auth else {}
    response = client.post(
        TOKEN,
        {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI},
        **headers,
    )
    assert response.status_code == HTTPStatus.UNAUTHORIZED
    assert response.json() == {
        "error": "invalid_client",
        "error_description": "Invalid client credentials.",
    }
    assert response["WWW-Authenticate"] == 'Basic realm="smartcar"'
    # The code was not spent by the failed attempt.
    assert exchange(client, code).status_code == HTTPStatus.OK


def test_code_works_once(client):
    code = connect(client)
    assert exchange(client, code).status_code == HTTPStatus.OK
    again = exchange(client, code)
    assert again.status_code == HTTPStatus.BAD_REQUEST
    assert again.json() == {"error": "invalid_grant", "error_description": f"Invalid code: {code}."}


def test_unknown_code_is_invalid_grant(client):
    response = exchange(client, "not-a-code")
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json() == {
        "error": "invalid_grant",
        "error_description": "Invalid code: not-a-code.",
    }


def test_code_lives_ten_minutes(client, fake_clock):
    fresh = connect(client)
    stale = connect(client)
    fake_clock.advance(599)
    assert exchange(client, fresh).status_code == HTTPStatus.OK
    fake_clock.advance(1)
    response = exchange(client, stale)
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["error"] == "invalid_grant"


def test_code_with_other_redirect_uri_is_invalid_grant_and_not_spent(client):
    code = connect(client)
    response = exchange(client, code, redirect_uri="com.example.app://smartcar")
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json() == {
        "error": "invalid_grant",
        "error_description": "Unauthorized redirect_uri: com.example.app://smartcar",
    }
    assert exchange(client, code).status_code == HTTPStatus.OK


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"grant_type": "password"}, "unsupported_grant_type"),
        ({}, "unsupported_grant_type"),
        ({"grant_type": "authorization_code", "redirect_uri": REDIRECT_URI}, "invalid_request"),
        ({"grant_type": "authorization_code", "code": "x"}, "invalid_request"),
        ({"grant_type": "refresh_token"}, "invalid_request"),
    ],
)
def test_token_rejects_malformed_requests(client, data, error):
    response = client.post(TOKEN, data, HTTP_AUTHORIZATION=basic())
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["error"] == error


def test_token_endpoint_is_post_only(client):
    assert (
        client.get(TOKEN, HTTP_AUTHORIZATION=basic()).status_code == HTTPStatus.METHOD_NOT_ALLOWED
    )


def test_refresh_rotates_both_tokens_and_kills_the_old_refresh_token(client):
    first = tokens(client)
    response = _refresh(client, first["refresh_token"])
    assert response.status_code == HTTPStatus.OK
    second = response.json()
    assert second["token_type"] == "Bearer"
    assert second["expires_in"] == 7200
    assert second["access_token"] != first["access_token"]
    assert second["refresh_token"] != first["refresh_token"]
    old = _refresh(client, first["refresh_token"])
    assert old.status_code == HTTPStatus.BAD_REQUEST
    assert old.json() == {
        "error": "invalid_grant",
        "error_description": f"Invalid refresh_token: {first['refresh_token']}.",
    }
    # The new refresh token works; the old access token keeps working until it expires.
    assert _refresh(client, second["refresh_token"]).status_code == HTTPStatus.OK
    assert client.get(f"{ROOT}/v2.0/user", **bearer(first["access_token"])).status_code == 200


def test_refresh_grace_lets_the_old_token_work_for_a_while(client, fake_clock, settings):
    settings.SMARTCAR_EMULATOR_REFRESH_GRACE_SECONDS = 60
    first = tokens(client)
    assert _refresh(client, first["refresh_token"]).status_code == HTTPStatus.OK
    fake_clock.advance(59)
    assert _refresh(client, first["refresh_token"]).status_code == HTTPStatus.OK
    fake_clock.advance(1)
    assert _refresh(client, first["refresh_token"]).status_code == HTTPStatus.BAD_REQUEST


def test_refresh_needs_client_auth(client):
    first = tokens(client)
    response = _refresh(client, first["refresh_token"], auth=basic(secret="nope"))
    assert response.status_code == HTTPStatus.UNAUTHORIZED
    assert _refresh(client, first["refresh_token"]).status_code == HTTPStatus.OK


def test_refresh_token_lives_sixty_days(client, fake_clock):
    first = tokens(client)
    fake_clock.advance(60 * 24 * 3600)
    assert _refresh(client, first["refresh_token"]).status_code == HTTPStatus.BAD_REQUEST


def test_access_token_expires_after_ttl(client, fake_clock, settings):
    settings.SMARTCAR_EMULATOR_ACCESS_TOKEN_TTL = 300
    first = tokens(client)
    assert first["expires_in"] == 300
    fake_clock.advance(299)
    assert client.get(f"{ROOT}/v2.0/user", **bearer(first["access_token"])).status_code == 200
    fake_clock.advance(1)
    response = client.get(f"{ROOT}/v2.0/user", **bearer(first["access_token"]))
    assert response.status_code == HTTPStatus.UNAUTHORIZED
    assert response.json()["type"] == "AUTHENTICATION"


def test_grants_listing_never_exposes_tokens(client):
    issued = tokens(client)
    listing = client.get(f"{ROOT}/_control/grants")
    text = listing.content.decode()
    assert issued["access_token"] not in text
    assert issued["refresh_token"] not in text
    (grant,) = listing.json()["grants"]
    assert grant["access_tokens"] == 1
    assert grant["refresh_tokens"] == 1
    assert grant["revoked"] is False
    assert control.list_grants()[0]["id"] == grant["id"]


def test_code_and_refresh_token_are_bound_to_the_client(client, settings):
    code = connect(client)
    issued = tokens(client)
    settings.SMARTCAR_EMULATOR_CLIENT_ID = "another-client"
    other = basic(client_id="another-client")
    response = client.post(
        TOKEN,
        {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI},
        HTTP_AUTHORIZATION=other,
    )
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["error"] == "invalid_grant"
    assert (
        _refresh(client, issued["refresh_token"], auth=other).status_code == HTTPStatus.BAD_REQUEST
    )


def test_code_of_a_revoked_grant_is_invalid(client):
    from smartcar_emulator import oauth

    code = connect(client)
    oauth.grant_revoke(control.list_grants()[0]["id"])
    response = exchange(client, code)
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json() == {
        "error": "invalid_grant",
        "error_description": f"Invalid code: {code}.",
    }
