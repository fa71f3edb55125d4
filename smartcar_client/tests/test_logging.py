"""No token, code, secret or Authorization header in any log record, ours or urllib3's.

The loopback test runs the client against a real HTTP server on 127.0.0.1, so urllib3 really
connects and logs (under `responses`, urllib3 never runs and its logging could not be checked).
"""

import base64
import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from smartcar_client.client import SmartcarClient
from smartcar_client.config import SmartcarConfig
from smartcar_client.errors import SmartcarInvalidGrantError, SmartcarRetryLaterError
from smartcar_client.tests.conftest import (
    ACCESS_TOKEN,
    AUTH_CODE,
    CLIENT_SECRET,
    REFRESH_TOKEN,
    VEHICLE_ID,
    load,
)

SECRETS = [
    ACCESS_TOKEN,
    REFRESH_TOKEN,
    AUTH_CODE,
    CLIENT_SECRET,
    base64.b64encode(f"test-client-id:{CLIENT_SECRET}".encode()).decode(),
    load("token_refreshed.json")["access_token"],
    load("token_refreshed.json")["refresh_token"],
]


def _all_logged_text(caplog: pytest.LogCaptureFixture) -> str:
    parts = [caplog.text]
    for record in caplog.records:
        parts.append(record.getMessage())
        parts.append(repr(record.args))
        parts.append(repr(record.__dict__))
    return "\n".join(parts)


def _assert_no_secret(caplog: pytest.LogCaptureFixture) -> None:
    text = _all_logged_text(caplog)
    for secret in SECRETS:
        assert secret not in text
    assert "Bearer " not in text
    assert "Basic " not in text


class _FakeSmartcar(BaseHTTPRequestHandler):
    def log_message(self, format, *args):
        pass

    def _send(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("SC-Request-Id", "loopback-req-1")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        form = self.rfile.read(length).decode()
        if "grant_type=refresh_token" in form:
            # Smartcar echoes the refresh token in its description (API-FACTS §3).
            self._send(
                400,
                {
                    "error": "invalid_grant",
                    "error_description": f"Invalid refresh_token: {REFRESH_TOKEN}.",
                },
            )
        else:
            self._send(200, load("token.json"))

    def do_GET(self):
        if self.path == "/v2.0/user":
            self._send(200, load("user.json"))
        else:
            self._send(503, {"type": "SERVER", "code": "INTERNAL", "statusCode": 503})


@pytest.fixture
def loopback_origin() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeSmartcar)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_real_http_logs_carry_no_secret(
    config: SmartcarConfig, loopback_origin: str, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="urllib3")
    local = SmartcarConfig(
        **{**config.__dict__, "api_origin": loopback_origin, "auth_origin": loopback_origin}
    )
    client = SmartcarClient(local, sleep=lambda _: None)

    tokens = client.exchange_code(AUTH_CODE)
    assert client.get_user_id(tokens.access_token)
    with pytest.raises(SmartcarInvalidGrantError):
        client.refresh_tokens(REFRESH_TOKEN)
    with pytest.raises(SmartcarRetryLaterError):
        client.get_vin(ACCESS_TOKEN, VEHICLE_ID)

    # The logs are real: urllib3 and our own lines are there ...
    assert any(record.name.startswith("urllib3") for record in caplog.records)
    assert "smartcar POST /oauth/token -> 200" in caplog.text
    assert "smartcar GET /v2.0/vehicles/{id}/vin -> 503 SERVER:INTERNAL" in caplog.text
    assert "request_id=loopback-req-1" in caplog.text
    # ... and none of them carries a secret.
    _assert_no_secret(caplog)


def test_mocked_error_paths_log_no_secret(
    client: SmartcarClient, mocked, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG)
    mocked.post(
        "https://auth.smartcar.test/oauth/token",
        status=400,
        json={"error": "invalid_grant", "error_description": f"Invalid code: {AUTH_CODE}."},
    )
    mocked.get(
        f"https://api.smartcar.test/v2.0/vehicles/{VEHICLE_ID}/vin",
        status=401,
        json={
            "type": "AUTHENTICATION",
            "code": None,
            "description": f"Token {ACCESS_TOKEN} is invalid",
            "statusCode": 401,
        },
    )

    with pytest.raises(SmartcarInvalidGrantError) as grant_error:
        client.exchange_code(AUTH_CODE)
    with pytest.raises(Exception) as auth_error:
        client.get_vin(ACCESS_TOKEN, VEHICLE_ID)

    assert "smartcar GET /v2.0/vehicles/{id}/vin -> 401 AUTHENTICATION" in caplog.text
    _assert_no_secret(caplog)
    for error in (grant_error.value, auth_error.value):
        for secret in SECRETS:
            assert secret not in str(error)
            assert secret not in repr(error)
