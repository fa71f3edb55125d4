"""The Connect flow end to end in Django: login → start link → Smartcar redirect → handoff."""

from datetime import timedelta
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from django.db import connection
from django.test import Client
from django.utils import timezone

from oauth_smartcar.models import ConnectAttempt
from oauth_smartcar.tests import smartcar_mocks as sc
from oauth_smartcar.views import BROWSER_COOKIE
from vehicles.models import SmartcarAccount, Vehicle

pytestmark = pytest.mark.django_db

LOGIN = "/api/v1/smartcar/login"
REDIRECT = "/api/v1/smartcar/redirect"


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def query_of(url: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}


def login_link(api_client) -> str:
    response = api_client.get(LOGIN)
    assert response.status_code == HTTPStatus.OK
    return response.json()["data"]["link"]


def open_link(browser: Client, link: str) -> str:
    """Open the start link in `browser`; return the `state` Smartcar would get."""
    response = browser.get(path_of(link))
    assert response.status_code == HTTPStatus.FOUND
    return query_of(response["Location"])["state"]


def begin(api_client, browser: Client | None = None) -> tuple[Client, str]:
    browser = browser or Client()
    return browser, open_link(browser, login_link(api_client))


# --- login -------------------------------------------------------------------------------------


def test_login_returns_seed_shape_and_start_link(api_client, user):
    response = api_client.get(LOGIN)

    assert response.status_code == HTTPStatus.OK
    body = response.json()
    assert body["message"] == "Smartcar OAuth"
    data = body["data"]
    assert set(data) == {
        "link",
        "userId",
        "email",
        "oauthRedirectUri",
        "redirectUrlExampleOnSuccess",
        "completeConnectPOST",
        "vehicleWebhookCallbackPOST",
        "simpleBrowserRedirectEnabled",
        "workflowNote",
    }
    assert data["link"].startswith("https://api.example.test/api/v1/smartcar/connect?ticket=")
    assert data["userId"] == "user-a"
    assert data["email"] == "a@example.com"
    assert data["oauthRedirectUri"] == "https://api.example.test/api/v1/smartcar/redirect"
    assert data["completeConnectPOST"] == "/api/v1/smartcar/complete-connect"
    assert data["vehicleWebhookCallbackPOST"] == "https://api.example.test/api/v1/smartcar/webhook"
    assert data["simpleBrowserRedirectEnabled"] is True
    attempt = ConnectAttempt.objects.get()
    assert attempt.user == user
    ticket = query_of(data["link"])["ticket"]
    assert ticket not in (attempt.ticket_digest or "")
    assert attempt.expires_at - attempt.created_at <= timedelta(minutes=10)


@pytest.mark.parametrize("header", [None, "Bearer not-a-jwt", "Basic abc"])
def test_login_without_valid_jwt_is_401_missing_user(header):
    client = Client()
    extra = {"HTTP_AUTHORIZATION": header} if header else {}
    response = client.get(LOGIN, **extra)

    assert response.status_code == HTTPStatus.UNAUTHORIZED
    assert response.json() == {
        "error": "missing_user",
        "message": "Smartcar link requires a user id from your JWT (logged-in session).",
    }
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert not ConnectAttempt.objects.exists()


def test_ev_connect_returns_the_same_kind_of_link(api_client):
    response = api_client.get("/v1/ev/connect")

    assert response.status_code == HTTPStatus.OK
    assert response.json()["url"].startswith(
        "https://api.example.test/api/v1/smartcar/connect?ticket="
    )


# --- start link --------------------------------------------------------------------------------


def test_start_link_binds_browser_and_redirects_to_smartcar(api_client, settings):
    settings.ALLOWED_HOSTS = ["*"]  # even behind a permissive proxy, Host is never used
    link = login_link(api_client)
    browser = Client()

    response = browser.get(
        path_of(link), HTTP_HOST="evil.example", HTTP_X_FORWARDED_HOST="evil.example"
    )

    assert response.status_code == HTTPStatus.FOUND
    location = response["Location"]
    assert location.startswith("https://connect.smartcar.test/oauth/authorize?")
    params = query_of(location)
    # A6/A7: redirect_uri and scope come from settings only, byte for byte.
    assert params["redirect_uri"] == "https://api.example.test/api/v1/smartcar/redirect"
    assert (
        params["scope"]
        == "read_vehicle_info read_vin read_battery read_charge read_location read_odometer"
    )
    assert params["client_id"] == "test-client-id"
    assert params["response_type"] == "code"
    assert params["mode"] == "live"
    assert len(params["state"]) >= 43
    assert "test-client-secret-value" not in location
    cookie = response.cookies[BROWSER_COOKIE]
    assert cookie["httponly"]
    assert cookie["samesite"] == "Lax"
    assert response["Referrer-Policy"] == "no-referrer"


def test_start_link_sets_secure_cookie_under_https(api_client):
    link = login_link(api_client)

    response = Client().get(path_of(link), secure=True)

    assert response.cookies[BROWSER_COOKIE]["secure"]


def test_start_link_works_once(api_client):
    link = login_link(api_client)
    open_link(Client(), link)

    response = Client().get(path_of(link))

    assert response.status_code == HTTPStatus.FOUND
    assert query_of(response["Location"])["reason"] == "connect_link_used"
    assert BROWSER_COOKIE not in response.cookies


def test_start_link_expires(api_client):
    link = login_link(api_client)
    ConnectAttempt.objects.update(expires_at=timezone.now() - timedelta(seconds=1))

    response = Client().get(path_of(link))

    assert query_of(response["Location"])["reason"] == "connect_link_expired"
    assert ConnectAttempt.objects.get().outcome == ConnectAttempt.Outcome.EXPIRED


@pytest.mark.parametrize("ticket", ["", "unknown-ticket", "bad ticket<script>", "x" * 600])
def test_start_link_with_bad_ticket_goes_to_failure(ticket, api_client):
    response = Client().get("/api/v1/smartcar/connect", {"ticket": ticket})

    assert response.status_code == HTTPStatus.FOUND
    assert query_of(response["Location"])["reason"] == "connect_link_invalid"


def test_states_are_unique_and_long(api_client):
    states = {begin(api_client)[1] for _ in range(200)}

    assert len(states) == 200
    assert all(len(state) >= 43 for state in states)


# --- the redirect: success ---------------------------------------------------------------------


def test_callback_links_account_and_vehicles(api_client, user, smartcar_api):
    sc.link_ok(smartcar_api)
    browser, state = begin(api_client)

    response = browser.get(REDIRECT, {"code": "code-123", "state": state})

    assert response.status_code == HTTPStatus.FOUND
    location = response["Location"]
    assert location.startswith("https://api.example.test/api/v1/smartcar/oauth-done?")
    params = query_of(location)
    assert params["smartcar"] == "ok"
    assert params["smartcar_uid"] == "sc-user-1"
    assert params["provider"] == "smartcar"
    account = SmartcarAccount.objects.get()
    assert account.owner == user
    assert account.smartcar_user_id == "sc-user-1"
    assert account.access_token == sc.ACCESS_TOKEN
    assert account.refresh_token == sc.REFRESH_TOKEN
    assert account.status == SmartcarAccount.Status.ACTIVE
    assert account.scopes == ["read_vehicle_info", "read_vin"]
    assert account.access_expires_at > timezone.now() + timedelta(minutes=110)
    vehicles = {v.smartcar_vehicle_id: v for v in Vehicle.objects.all()}
    assert set(vehicles) == {"vid-1", "vid-2"}
    assert (vehicles["vid-2"].make, vehicles["vid-2"].model, vehicles["vid-2"].year) == (
        "FORD",
        "Mustang Mach-E",
        2022,
    )
    assert vehicles["vid-1"].vin == "5YJ3E1EA7KF000001"
    assert sum(v.is_primary for v in vehicles.values()) == 1
    assert params["vehicle_id"] == str(vehicles["vid-1"].id)
    attempt = ConnectAttempt.objects.get()
    assert attempt.outcome == ConnectAttempt.Outcome.LINKED
    assert attempt.smartcar_user_id == "sc-user-1"
    assert set(attempt.vehicles.values_list("smartcar_vehicle_id", flat=True)) == {"vid-1", "vid-2"}
    assert sc.token_calls(smartcar_api) == 1
    assert response.cookies[BROWSER_COOKIE].value == ""
    assert response["Referrer-Policy"] == "no-referrer"


def test_code_exchange_sends_secret_only_as_basic_auth(api_client, smartcar_api):
    sc.link_ok(smartcar_api)
    browser, state = begin(api_client)

    browser.get(REDIRECT, {"code": "code-123", "state": state})

    token_request = smartcar_api.calls[0].request
    assert token_request.headers["Authorization"].startswith("Basic ")
    assert "test-client-secret-value" not in token_request.url
    assert "test-client-secret-value" not in (token_request.body or "")
    assert "code=code-123" in token_request.body
    assert (
        "redirect_uri=https%3A%2F%2Fapi.example.test%2Fapi%2Fv1%2Fsmartcar%2Fredirect"
        in token_request.body
    )


def test_first_seed_callback_path_works_too(api_client, smartcar_api):
    sc.link_ok(smartcar_api)
    browser, state = begin(api_client)

    response = browser.get("/oauth/smartcar/callback", {"code": "code-123", "state": state})

    assert query_of(response["Location"])["smartcar"] == "ok"


def test_success_handoff_prefers_settings_in_order(api_client, smartcar_api, settings):
    settings.FRONTEND_URL = "https://spa.example"
    settings.APP_HOME_URL = "https://home.example/dash?tab=cars"
    settings.APP_DEEPLINK = "tanktrack://home"
    sc.link_ok(smartcar_api)
    browser, state = begin(api_client)

    location = browser.get(REDIRECT, {"code": "code-123", "state": state})["Location"]

    assert location.startswith("https://home.example/dash?")
    params = query_of(location)
    assert params["tab"] == "cars"
    assert params["native_deeplink"] == "tanktrack://home?smartcar=ok&smartcar_uid=sc-user-1"


def test_success_handoff_falls_back_to_frontend_url(api_client, smartcar_api, settings):
    settings.FRONTEND_URL = "https://spa.example/"
    sc.link_ok(smartcar_api)
    browser, state = begin(api_client)

    location = browser.get(REDIRECT, {"code": "code-123", "state": state})["Location"]

    assert location.startswith("https://spa.example/vehicle/connected?")


def test_simple_redirect_off_always_lands_on_oauth_done(api_client, smartcar_api, settings):
    settings.SMARTCAR_SIMPLE_OAUTH_REDIRECT = False
    settings.SMARTCAR_APP_HANDOFF_URL = "https://spa.example/return"
    sc.link_ok(smartcar_api)
    browser, state = begin(api_client)

    location = browser.get(REDIRECT, {"code": "code-123", "state": state})["Location"]

    assert location.startswith("https://api.example.test/api/v1/smartcar/oauth-done?")


def test_tokens_are_not_readable_in_the_raw_row(api_client, smartcar_api):
    sc.link_ok(smartcar_api)
    browser, state = begin(api_client)
    browser.get(REDIRECT, {"code": "code-123", "state": state})

    with connection.cursor() as cursor:
        cursor.execute("SELECT access_token, refresh_token FROM vehicles_smartcaraccount")
        raw = b"".join(bytes(value) for value in cursor.fetchone())

    assert b"PLAIN" not in raw
    assert sc.ACCESS_TOKEN.encode() not in raw


# --- the redirect: state problems --------------------------------------------------------------


def assert_recovery(location: str, code: str) -> None:
    params = query_of(location)
    assert params["smartcar"] == "error"
    assert params["reason"] == "use_post_complete_connect_with_jwt_and_code"
    assert params["oauth_code"] == code
    assert params["recover"] == "jwt"


@pytest.mark.parametrize("state", [None, "", "forged-state-value", "x" * 300, "<script>"])
def test_unknown_or_missing_state_goes_to_recovery_without_exchange(state, smartcar_api):
    params = {"code": "code-123"} | ({"state": state} if state is not None else {})

    response = Client().get(REDIRECT, params)

    assert response.status_code == HTTPStatus.FOUND
    assert_recovery(response["Location"], "code-123")
    assert len(smartcar_api.calls) == 0
    assert not SmartcarAccount.objects.exists()


def test_expired_state_goes_to_recovery_and_is_marked(api_client, smartcar_api):
    browser, state = begin(api_client)
    ConnectAttempt.objects.update(expires_at=timezone.now() - timedelta(seconds=1))

    response = browser.get(REDIRECT, {"code": "code-123", "state": state})

    assert_recovery(response["Location"], "code-123")
    assert len(smartcar_api.calls) == 0
    attempt = ConnectAttempt.objects.get()
    assert attempt.outcome == ConnectAttempt.Outcome.EXPIRED
    assert attempt.code_digest


def test_reused_state_is_not_exchanged_twice(api_client, smartcar_api):
    sc.link_ok(smartcar_api)
    browser, state = begin(api_client)
    browser.get(REDIRECT, {"code": "code-123", "state": state})

    response = browser.get(REDIRECT, {"code": "code-123", "state": state})

    assert sc.token_calls(smartcar_api) == 1
    assert query_of(response["Location"])["smartcar"] == "error"


def test_valid_state_in_another_browser_links_nothing(api_client, smartcar_api):
    _, state = begin(api_client)

    response = Client().get(REDIRECT, {"code": "code-123", "state": state})

    assert_recovery(response["Location"], "code-123")
    assert len(smartcar_api.calls) == 0
    assert not Vehicle.objects.exists()
    attempt = ConnectAttempt.objects.get()
    assert attempt.outcome == ""
    assert attempt.error_code == "browser_mismatch"


def test_wrong_browser_cookie_links_nothing(api_client, smartcar_api):
    _, state = begin(api_client)
    stranger = Client()
    stranger.cookies[BROWSER_COOKIE] = "some-other-browser-secret"

    response = stranger.get(REDIRECT, {"code": "code-123", "state": state})

    assert_recovery(response["Location"], "code-123")
    assert len(smartcar_api.calls) == 0


def test_missing_code_without_error_fails_cleanly(api_client, smartcar_api):
    browser, state = begin(api_client)

    response = browser.get(REDIRECT, {"state": state})

    assert query_of(response["Location"])["reason"] == "missing_code"
    assert len(smartcar_api.calls) == 0
    assert ConnectAttempt.objects.get().outcome == ConnectAttempt.Outcome.FAILED


# --- the redirect: Smartcar's errors -----------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        ("access_denied", ConnectAttempt.Outcome.DENIED),
        ("vehicle_incompatible", ConnectAttempt.Outcome.INCOMPATIBLE),
        ("no_vehicles", ConnectAttempt.Outcome.INCOMPATIBLE),
        ("invalid_subscription", ConnectAttempt.Outcome.INCOMPATIBLE),
        ("configuration_error", ConnectAttempt.Outcome.FAILED),
        ("server_error", ConnectAttempt.Outcome.FAILED),
        ("user_manually_returned_to_application", ConnectAttempt.Outcome.FAILED),
    ],
)
def test_smartcar_connect_errors_are_recorded_and_handed_off(
    error, outcome, api_client, smartcar_api
):
    browser, state = begin(api_client)

    response = browser.get(
        REDIRECT,
        {"error": error, "error_description": "<script>alert(1)</script>", "state": state},
    )

    params = query_of(response["Location"])
    assert params == {"smartcar": "error", "reason": error}
    assert len(smartcar_api.calls) == 0
    attempt = ConnectAttempt.objects.get()
    assert attempt.outcome == outcome
    assert attempt.error_code == error


def test_incompatible_vehicle_extras_are_passed_on(api_client):
    browser, state = begin(api_client)

    response = browser.get(
        REDIRECT,
        {
            "error": "vehicle_incompatible",
            "state": state,
            "make": "TESLA",
            "model": "Roadster",
            "year": "2010",
            "vin": "X",
        },
    )

    params = query_of(response["Location"])
    assert params == {
        "smartcar": "error",
        "reason": "vehicle_incompatible",
        "make": "TESLA",
        "model": "Roadster",
        "year": "2010",
    }
    assert ConnectAttempt.objects.get().details == {
        "make": "TESLA",
        "model": "Roadster",
        "year": "2010",
    }


def test_unknown_error_values_are_not_reflected():
    response = Client().get(REDIRECT, {"error": "<b>evil</b>", "make": "<script>"})

    assert query_of(response["Location"]) == {"smartcar": "error", "reason": "unknown_error"}


# --- the redirect: exchange failures -----------------------------------------------------------


@pytest.mark.parametrize(
    ("register", "reason"),
    [
        (
            lambda m: sc.token_error(m, "invalid_grant", description="Invalid code: code-123."),
            "invalid_grant",
        ),
        (lambda m: sc.token_error(m, "invalid_client", status=401), "invalid_client"),
        (lambda m: m.post(sc.TOKEN_URL, status=503, body="upstream down"), "smartcar_unavailable"),
        (lambda m: m.post(sc.TOKEN_URL, body=requests.ReadTimeout()), "smartcar_unavailable"),
        (lambda m: m.post(sc.TOKEN_URL, body=requests.ConnectionError()), "smartcar_unavailable"),
    ],
)
def test_exchange_failures_hand_off_without_500(register, reason, api_client, smartcar_api):
    register(smartcar_api)
    browser, state = begin(api_client)

    response = browser.get(REDIRECT, {"code": "code-123", "state": state})

    assert response.status_code == HTTPStatus.FOUND
    assert query_of(response["Location"]) == {"smartcar": "error", "reason": reason}
    assert sc.token_calls(smartcar_api) == 1
    assert not SmartcarAccount.objects.exists()
    attempt = ConnectAttempt.objects.get()
    assert attempt.outcome == ConnectAttempt.Outcome.FAILED
    assert attempt.error_code == reason


def test_vehicle_listing_failure_after_exchange_writes_nothing(api_client, smartcar_api):
    sc.token_ok(smartcar_api)
    smartcar_api.get(f"{sc.API}/user", json={"id": "sc-user-1"})
    smartcar_api.get(f"{sc.API}/vehicles", body=requests.ReadTimeout())
    browser, state = begin(api_client)

    response = browser.get(REDIRECT, {"code": "code-123", "state": state})

    assert query_of(response["Location"])["reason"] == "smartcar_unavailable"
    assert not SmartcarAccount.objects.exists()
    assert not Vehicle.objects.exists()
    assert ConnectAttempt.objects.get().outcome == ConnectAttempt.Outcome.FAILED


# --- re-linking ----------------------------------------------------------------------------------


def test_relinking_updates_instead_of_duplicating(api_client, smartcar_api):
    sc.link_ok(smartcar_api)
    browser, state = begin(api_client)
    browser.get(REDIRECT, {"code": "code-1", "state": state})
    first_ids = set(Vehicle.objects.values_list("id", flat=True))
    smartcar_api.reset()
    sc.token_ok(smartcar_api, access="access-NEW", refresh="refresh-NEW")
    sc.discovery_ok(smartcar_api)
    browser, state = begin(api_client)

    browser.get(REDIRECT, {"code": "code-2", "state": state})

    assert SmartcarAccount.objects.count() == 1
    assert SmartcarAccount.objects.get().access_token == "access-NEW"
    assert set(Vehicle.objects.values_list("id", flat=True)) == first_ids


def test_vehicle_moves_to_the_user_who_links_it_last(
    api_client, other_api_client, other_user, user, smartcar_api
):
    one_car = {"vid-1": sc.VEHICLES["vid-1"]}
    sc.link_ok(smartcar_api, user_id="sc-user-a", vehicles=one_car)
    browser, state = begin(api_client)
    browser.get(REDIRECT, {"code": "code-1", "state": state})
    smartcar_api.reset()
    sc.link_ok(smartcar_api, user_id="sc-user-b", vehicles=one_car)
    browser, state = begin(other_api_client)

    browser.get(REDIRECT, {"code": "code-2", "state": state})

    old = Vehicle.objects.get(owner=user)
    new = Vehicle.objects.get(owner=other_user)
    assert old.status == Vehicle.Status.DISCONNECTED
    assert old.disconnected_at is not None
    assert not old.is_primary
    assert new.status == Vehicle.Status.ACTIVE
    assert new.id != old.id
    latest = ConnectAttempt.objects.filter(user=other_user).get()
    assert latest.vehicles_moved_from_other_user == 1


# --- no open redirect ----------------------------------------------------------------------------

OPEN_REDIRECT_VECTORS = [
    "//evil.com",
    "/\\evil.com",
    "http:/\\/evil.com",
    "\x08//evil.com",
    "javascript:alert(1)",
    "http://good.example\\@evil.com",
    "https://evil.com",
]


@pytest.mark.parametrize("target", OPEN_REDIRECT_VECTORS)
def test_no_input_changes_where_the_browser_goes(target, api_client, smartcar_api, settings):
    settings.SMARTCAR_APP_HANDOFF_URL = "https://spa.example/return"
    sc.link_ok(smartcar_api)
    browser, state = begin(api_client)
    hostile = dict.fromkeys(("next", "return_to", "redirect_uri", "redirect", "url"), target)

    response = browser.get(REDIRECT, {"code": "code-123", "state": state, **hostile})

    assert response["Location"].startswith("https://spa.example/return?")
    assert "evil" not in response["Location"]


def test_login_links_never_come_from_request_headers(api_client, settings):
    settings.ALLOWED_HOSTS = ["*"]

    response = api_client.get(LOGIN, HTTP_HOST="evil.example", HTTP_X_FORWARDED_HOST="evil.example")

    data = response.json()["data"]
    for key in ("link", "oauthRedirectUri", "vehicleWebhookCallbackPOST"):
        assert data[key].startswith("https://api.example.test/"), key
