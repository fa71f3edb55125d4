"""The server-rendered `oauth-done` page and its JSON form."""

import re
from http import HTTPStatus

import pytest
from django.test import Client

DONE = "/api/v1/smartcar/oauth-done"


def get(params: dict, **extra):
    return Client().get(DONE, params, **extra)


@pytest.mark.parametrize(
    ("params", "outcome", "status", "text"),
    [
        (
            {"smartcar": "ok", "smartcar_uid": "u1"},
            "linked",
            HTTPStatus.OK,
            "Your vehicle is connected",
        ),
        (
            {
                "smartcar": "error",
                "reason": "use_post_complete_connect_with_jwt_and_code",
                "oauth_code": "c1",
                "recover": "jwt",
            },
            "recovery",
            HTTPStatus.BAD_REQUEST,
            "One more step",
        ),
        (
            {"smartcar": "error", "reason": "access_denied"},
            "denied",
            HTTPStatus.BAD_REQUEST,
            "You did not allow access",
        ),
        (
            {
                "smartcar": "error",
                "reason": "vehicle_incompatible",
                "make": "TESLA",
                "model": "Roadster",
                "year": "2010",
            },
            "incompatible",
            HTTPStatus.BAD_REQUEST,
            "2010 TESLA Roadster",
        ),
        (
            {"smartcar": "error", "reason": "no_vehicles"},
            "incompatible",
            HTTPStatus.BAD_REQUEST,
            "found no vehicles",
        ),
        (
            {"smartcar": "error", "reason": "smartcar_unavailable"},
            "failed",
            HTTPStatus.BAD_REQUEST,
            "could not be reached",
        ),
        ({}, "failed", HTTPStatus.BAD_REQUEST, "could not be connected"),
    ],
)
def test_page_tells_what_happened(params, outcome, status, text):
    response = get(params)

    assert response.status_code == status
    html = response.content.decode()
    assert f'data-outcome="{outcome}"' in html
    assert text in html
    assert response["Referrer-Policy"] == "no-referrer"
    assert "default-src 'none'" in response["Content-Security-Policy"]


def test_page_loads_nothing_from_other_hosts():
    html = get({"smartcar": "ok"}).content.decode()

    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "<script" not in html


def test_page_escapes_everything_it_echoes():
    response = get(
        {
            "smartcar": "error",
            "reason": "vehicle_incompatible",
            "make": "<script>alert(1)</script>",
            "model": '"><img src=x onerror=alert(1)>',
        }
    )

    html = response.content.decode()
    assert "<script>alert(1)</script>" not in html
    assert "<img src=x" not in html
    assert "&lt;script&gt;" in html


def test_unknown_reason_is_not_echoed():
    html = get({"smartcar": "error", "reason": "<b>x</b>"}).content.decode()

    assert "<b>x</b>" not in html
    assert "unknown_error" in html


def test_app_button_appears_only_with_deeplink(settings):
    assert 'id="open-app"' not in get({"smartcar": "ok"}).content.decode()
    settings.APP_DEEPLINK = "tanktrack://home"

    html = get(
        {"smartcar": "error", "reason": "x", "oauth_code": "c1", "recover": "jwt"}
    ).content.decode()

    assert 'href="tanktrack://home?oauth_code=c1&amp;recover=jwt"' in html


def test_json_recovery_shape(settings):
    settings.SMARTCAR_OAUTH_FAILURE_URL = "https://spa.example/smartcar-return"
    settings.APP_DEEPLINK = "tanktrack://home"

    response = get({"ok": "0", "recover": "jwt", "oauth_code": "code-1", "format": "json"})

    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json() == {
        "ok": False,
        "reason": None,
        "recover": "jwt",
        "oauthCode": "code-1",
        "recovery": "POST https://api.example.test/api/v1/smartcar/complete-connect with "
        'Authorization: Bearer <your JWT> and body {"code": "<oauthCode>"}',
        "smartcarConnectDocs": "https://smartcar.com/docs/connect/handle-the-response",
        "recoveryHandoff": "https://spa.example/smartcar-return?smartcar=error&reason="
        "use_post_complete_connect_with_jwt_and_code&oauth_code=code-1&recover=jwt",
        "recoveryAppDeeplink": "tanktrack://home?oauth_code=code-1&recover=jwt",
    }


def test_json_by_accept_header_and_recover_jwt_alias():
    response = get({"recover-jwt": "", "oauth_code": "code-1"}, HTTP_ACCEPT="application/json")

    body = response.json()
    assert body["recover"] == "jwt"
    assert body["oauthCode"] == "code-1"
    assert "recoveryHandoff" not in body
    assert "recoveryAppDeeplink" not in body


def test_json_success_is_200():
    response = get({"smartcar": "ok", "format": "json"})

    assert response.status_code == HTTPStatus.OK
    assert response.json()["ok"] is True


def test_malformed_code_is_not_echoed():
    body = get({"recover": "jwt", "oauth_code": "<script>", "format": "json"}).json()

    assert body["oauthCode"] is None


def test_browser_asking_only_for_html_gets_the_page():
    response = get({"smartcar": "ok"}, HTTP_ACCEPT="text/html")

    assert response.status_code == HTTPStatus.OK
    assert response["Content-Type"].startswith("text/html")
    assert "no-store" in response["Cache-Control"] or "max-age=0" in response["Cache-Control"]


def test_other_methods_are_405():
    response = Client().post(DONE)

    assert response.status_code == HTTPStatus.METHOD_NOT_ALLOWED
    assert response.json()["error"] == "method_not_allowed"
