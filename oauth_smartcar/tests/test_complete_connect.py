"""The recovery path: `POST …/smartcar/complete-connect` with the code and the user's JWT."""

import logging
from http import HTTPStatus

import pytest
import requests
from django.test import Client

from oauth_smartcar.models import ConnectAttempt
from oauth_smartcar.tests import smartcar_mocks as sc
from oauth_smartcar.tests.test_connect_flow import REDIRECT, begin, query_of
from vehicles.models import SmartcarAccount, Vehicle

pytestmark = pytest.mark.django_db

COMPLETE = "/api/v1/smartcar/complete-connect"


def post_code(client, code) -> object:
    return client.post(COMPLETE, {"code": code}, format="json")


def test_complete_connect_links_for_the_jwt_user(api_client, user, smartcar_api):
    sc.link_ok(smartcar_api)

    response = post_code(api_client, "code-123")

    assert response.status_code == HTTPStatus.OK
    body = response.json()
    assert body["linked"] is True
    assert body["smartcarUserId"] == "sc-user-1"
    assert query_of(body["redirectUrl"])["smartcar"] == "ok"
    assert SmartcarAccount.objects.get().owner == user
    assert Vehicle.objects.filter(owner=user).count() == 2
    attempt = ConnectAttempt.objects.get()
    assert attempt.outcome == ConnectAttempt.Outcome.RECOVERED
    assert attempt.channel == ConnectAttempt.Channel.RECOVERY


def test_retried_request_gets_the_same_answer_without_second_exchange(api_client, smartcar_api):
    sc.link_ok(smartcar_api)
    first = post_code(api_client, "code-123")

    second = post_code(api_client, "code-123")

    assert second.status_code == HTTPStatus.OK
    assert second.json() == first.json()
    assert sc.token_calls(smartcar_api) == 1


def test_unauthenticated_is_401_in_seed_shape():
    response = Client().post(COMPLETE, {"code": "x"}, content_type="application/json")

    assert response.status_code == HTTPStatus.UNAUTHORIZED
    assert list(response.json().items()) == [
        ("message", "UnAuthorized Request"),
        ("error", "user_missing"),
    ]


@pytest.mark.parametrize(
    "body", [{}, {"code": ""}, {"code": "   "}, {"code": 123}, {"code": None}, {"code": ["a"]}, []]
)
def test_missing_or_non_string_code_is_code_required(body, api_client, smartcar_api):
    response = api_client.post(COMPLETE, body, format="json")

    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["error"] == "code_required"
    assert len(smartcar_api.calls) == 0


def test_body_that_is_not_json_is_code_required(api_client, smartcar_api):
    response = api_client.post(COMPLETE, "{not json", content_type="application/json")

    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["error"] == "code_required"


def test_malformed_code_is_refused_before_smartcar(api_client, smartcar_api):
    response = post_code(api_client, "code with spaces<script>")

    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["error"] == "invalid_grant"
    assert len(smartcar_api.calls) == 0


def test_invalid_grant_never_passes_smartcar_text_through(api_client, smartcar_api):
    sc.token_error(
        smartcar_api, "invalid_grant", description="Invalid code: code-123. refresh-SECRET"
    )

    response = post_code(api_client, "code-123")

    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["error"] == "invalid_grant"
    assert "SECRET" not in response.content.decode()
    assert "Invalid code" not in response.content.decode()


def test_invalid_grant_is_remembered(api_client, smartcar_api):
    sc.token_error(smartcar_api, "invalid_grant")
    post_code(api_client, "code-123")

    response = post_code(api_client, "code-123")

    assert response.json()["error"] == "invalid_grant"
    assert sc.token_calls(smartcar_api) == 1


def test_invalid_client_is_400_invalid_client(api_client, smartcar_api):
    sc.token_error(smartcar_api, "invalid_client", status=401)

    response = post_code(api_client, "code-123")

    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["error"] == "invalid_client"


@pytest.mark.parametrize(
    "failure",
    [
        {
            "status": 500,
            "json": {
                "type": "SERVER",
                "code": "INTERNAL",
                "statusCode": 500,
                "requestId": "req-42",
            },
        },
        {"body": requests.ConnectTimeout()},
        {"body": requests.ReadTimeout()},
    ],
)
def test_smartcar_failure_is_502_and_changes_nothing(failure, api_client, smartcar_api):
    smartcar_api.post(sc.TOKEN_URL, **failure)

    response = post_code(api_client, "code-123")

    assert response.status_code == HTTPStatus.BAD_GATEWAY
    assert response.json()["error"] == "smartcar_error"
    assert not SmartcarAccount.objects.exists()
    assert not Vehicle.objects.exists()


def test_502_names_smartcar_request_id(api_client, smartcar_api):
    smartcar_api.post(
        sc.TOKEN_URL,
        status=500,
        json={"type": "SERVER", "code": "INTERNAL", "statusCode": 500, "requestId": "req-42"},
    )

    response = post_code(api_client, "code-123")

    assert "req-42" in response.json()["message"]


def test_transient_failure_can_be_retried(api_client, smartcar_api):
    smartcar_api.post(sc.TOKEN_URL, body=requests.ConnectionError())
    post_code(api_client, "code-123")
    smartcar_api.reset()
    sc.link_ok(smartcar_api)

    response = post_code(api_client, "code-123")

    assert response.status_code == HTTPStatus.OK


def test_code_from_another_users_attempt_is_403_without_exchange(
    api_client, other_api_client, smartcar_api
):
    _, state = begin(api_client)
    # The link was opened in a browser without the cookie: the code stays tied to user A.
    Client().get(REDIRECT, {"code": "code-123", "state": state})

    response = post_code(other_api_client, "code-123")

    assert response.status_code == HTTPStatus.FORBIDDEN
    assert response.json()["error"] == "user_mismatch"
    assert len(smartcar_api.calls) == 0
    assert not Vehicle.objects.exists()


def test_own_user_completes_an_attempt_from_another_browser(api_client, user, smartcar_api):
    _, state = begin(api_client)
    Client().get(REDIRECT, {"code": "code-123", "state": state})
    sc.link_ok(smartcar_api)

    response = post_code(api_client, "code-123")

    assert response.status_code == HTTPStatus.OK
    attempt = ConnectAttempt.objects.get()
    assert attempt.outcome == ConnectAttempt.Outcome.RECOVERED
    assert Vehicle.objects.filter(owner=user).count() == 2


def test_code_already_linked_by_browser_is_idempotent_for_its_user(api_client, smartcar_api):
    sc.link_ok(smartcar_api)
    browser, state = begin(api_client)
    browser.get(REDIRECT, {"code": "code-123", "state": state})

    response = post_code(api_client, "code-123")

    assert response.status_code == HTTPStatus.OK
    assert sc.token_calls(smartcar_api) == 1


def test_no_secret_reaches_the_logs(api_client, smartcar_api, caplog):
    caplog.set_level(logging.DEBUG)
    sc.link_ok(smartcar_api)
    browser, state = begin(api_client)
    browser.get(REDIRECT, {"code": "code-SECRET-1", "state": state})
    smartcar_api.reset()
    sc.token_error(smartcar_api, "invalid_grant", description="Invalid code: code-SECRET-2.")
    post_code(api_client, "code-SECRET-2")

    text = "\n".join(record.getMessage() for record in caplog.records)
    for secret in (
        "code-SECRET",
        sc.ACCESS_TOKEN,
        sc.REFRESH_TOKEN,
        "test-client-secret-value",
        state,
    ):
        assert secret not in text
