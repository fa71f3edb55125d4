"""The demo page and its token endpoint: on only beside the emulator, POST + CSRF, a working JWT."""

import json
import re
from http import HTTPStatus

import pytest
from django.test import Client
from django.urls import resolve, reverse
from rest_framework.test import APIClient

from core.jwt_tokens import decode_jwt
from demo import views

pytestmark = pytest.mark.django_db

TOKEN_URL = "/_demo/token"


@pytest.fixture(autouse=True)
def demo_on(settings):
    settings.SMARTCAR_EMULATOR = True
    # Django's test client speaks to http://testserver; the page redirects other origins.
    settings.PUBLIC_BASE_URL = "http://testserver"


def page_config(html: str) -> dict:
    match = re.search(r'<script id="demo-config" type="application/json">(.*?)</script>', html)
    assert match, "the page carries its configuration as a JSON data block"
    return json.loads(match.group(1))


def test_demo_is_mounted_at_the_site_root():
    assert resolve("/").func is views.home
    assert reverse("demo:token") == TOKEN_URL


def test_token_endpoint_refuses_get():
    response = Client().get(TOKEN_URL)

    assert response.status_code == HTTPStatus.METHOD_NOT_ALLOWED
    assert b"token" not in response.content


def test_token_is_a_jwt_for_the_demo_user_that_the_api_accepts():
    response = Client().post(TOKEN_URL)

    assert response.status_code == HTTPStatus.OK
    body = response.json()
    assert set(body) == {"token", "userId", "expiresIn"}
    assert body["userId"] == "demo-user"
    assert body["expiresIn"] == 3600
    claims = decode_jwt(body["token"])
    assert claims["sub"] == "demo-user"
    assert claims["exp"] - claims["iat"] == 3600
    assert "no-store" in response["Cache-Control"]

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {body['token']}")
    login = api.get("/api/v1/smartcar/login")
    assert login.status_code == HTTPStatus.OK
    assert login.json()["data"]["userId"] == "demo-user"
    assert login.json()["data"]["email"] == "demo@example.com"


def test_token_ignores_any_user_named_in_the_request():
    response = Client().post(TOKEN_URL, {"user": "admin", "sub": "admin", "userId": "admin"})

    assert decode_jwt(response.json()["token"])["sub"] == "demo-user"


def test_token_endpoint_enforces_csrf():
    browser = Client(enforce_csrf_checks=True)

    refused = browser.post(TOKEN_URL)
    assert refused.status_code == HTTPStatus.FORBIDDEN
    assert b"eyJ" not in refused.content  # no JWT handed out

    csrf = page_config(browser.get("/").content.decode())["csrfToken"]
    accepted = browser.post(TOKEN_URL, HTTP_X_CSRFTOKEN=csrf)
    assert accepted.status_code == HTTPStatus.OK
    assert accepted.json()["userId"] == "demo-user"


@pytest.mark.parametrize(("method", "path"), [("post", TOKEN_URL), ("get", "/")])
def test_everything_is_404_when_the_demo_is_off(settings, method, path):
    settings.SMARTCAR_EMULATOR = False

    response = getattr(Client(), method)(path)

    assert response.status_code == HTTPStatus.NOT_FOUND
    assert b"eyJ" not in response.content


def test_token_endpoint_says_so_when_it_cannot_sign(settings):
    settings.JWT_ALGORITHMS = ["RS256"]

    response = Client().post(TOKEN_URL)

    assert response.status_code == HTTPStatus.SERVICE_UNAVAILABLE
    assert response.json() == {
        "error": "demo_unavailable",
        "message": "The demo can sign tokens only with an HS* JWT_SECRET.",
    }


def test_page_is_self_contained_with_a_nonce_csp():
    response = Client().get("/")

    assert response.status_code == HTTPStatus.OK
    html = response.content.decode()
    csp = response["Content-Security-Policy"]
    nonce = re.search(r"script-src 'nonce-([^']+)'", csp).group(1)
    assert f'<script nonce="{nonce}">' in html
    assert "default-src 'none'" in csp
    assert "connect-src 'self'" in csp
    # Nothing is loaded from anywhere else, and no inline event handlers.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert not re.search(r"\son[a-z]+\s*=", html)
    assert "no-store" in response["Cache-Control"]
    assert page_config(html) == {
        "csrfToken": page_config(html)["csrfToken"],
        "tokenUrl": TOKEN_URL,
        "loginUrl": "/api/v1/smartcar/login",
        "completeConnectUrl": "/api/v1/smartcar/complete-connect",
        "vehiclesUrl": "/api/v1/vehicles",
    }


def test_each_page_gets_its_own_nonce():
    first = Client().get("/")["Content-Security-Policy"]
    second = Client().get("/")["Content-Security-Policy"]

    assert first != second


def test_page_opened_on_another_origin_goes_to_the_public_one(settings):
    # sessionStorage and the Connect cookie belong to one origin: the flow returns to this one.
    settings.PUBLIC_BASE_URL = "http://127.0.0.1:8000"

    response = Client().get("/?smartcar=ok", HTTP_HOST="localhost")

    assert response.status_code == HTTPStatus.FOUND
    assert response["Location"] == "http://127.0.0.1:8000/"


def test_token_endpoint_refuses_other_methods():
    for method in ("put", "delete", "patch"):
        assert getattr(Client(), method)(TOKEN_URL).status_code == HTTPStatus.METHOD_NOT_ALLOWED
