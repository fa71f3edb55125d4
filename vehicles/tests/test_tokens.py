"""Token service: when it refreshes, what it persists, and how it gives up (SECURITY E1-E6).

The token endpoint is mocked with `responses` as a strict server: each refresh token works once
(zero grace, API-FACTS §3), a reused one gets `invalid_grant` with its value echoed back, as
Smartcar's description does.
"""

import json
import logging
from datetime import timedelta
from urllib.parse import parse_qs

import pytest
import requests
import responses
from django.db import connection
from django.utils import timezone

from core.errors import ReconnectRequiredError
from smartcar_client.errors import (
    SmartcarConfigurationError,
    SmartcarRetryLaterError,
)
from smartcar_client.factory import client_from_settings
from smartcar_client.types import TokenSet
from vehicles import tokens as token_service
from vehicles.models import SmartcarAccount, Vehicle
from vehicles.services import LinkedVehicleInfo, account_link
from vehicles.tokens import (
    REFRESH_BUSY,
    account_access_token,
    account_call,
    account_refresh_if_idle,
)

pytestmark = pytest.mark.django_db

TOKEN_URL = "https://auth.smartcar.test/oauth/token"
BATCH_URL = "https://api.smartcar.test/v2.0/vehicles/vid-1/batch"
BATCH_OK = {"responses": [{"path": "/odometer", "code": 200, "body": {"distance": 1.0}}]}
MARGIN = 300  # SMARTCAR_TOKEN_REFRESH_MARGIN_SECONDS default


class StrictTokenServer:
    """Smartcar's token endpoint with zero grace: every refresh token works exactly once."""

    def __init__(self, mock: responses.RequestsMock, valid: str = "refresh-1") -> None:
        self.valid = {valid}
        self.used: list[str] = []
        self.issued = 1
        mock.add_callback(responses.POST, TOKEN_URL, callback=self)

    def __call__(self, request):
        form = parse_qs(request.body)
        assert form["grant_type"] == ["refresh_token"]
        token = form["refresh_token"][0]
        self.used.append(token)
        if token not in self.valid:
            body = {
                "error": "invalid_grant",
                "error_description": f"Invalid refresh_token: {token}.",
            }
            return 400, {"SC-Request-Id": "req-invalid"}, json.dumps(body)
        self.valid.discard(token)
        self.issued += 1
        self.valid.add(f"refresh-{self.issued}")
        body = {
            "access_token": f"access-{self.issued}",
            "refresh_token": f"refresh-{self.issued}",
            "token_type": "Bearer",
            "expires_in": 7200,
        }
        return 200, {"SC-Request-Id": f"req-{self.issued}"}, json.dumps(body)


@pytest.fixture
def token_server(smartcar_api):
    return StrictTokenServer(smartcar_api)


@pytest.fixture
def account(user):
    pair = TokenSet.from_json(
        {"access_token": "access-1", "refresh_token": "refresh-1", "expires_in": 7200}
    )
    linked = account_link(
        owner=user,
        smartcar_user_id="sc-user-1",
        tokens=pair,
        scopes=["read_odometer"],
        vehicles=[LinkedVehicleInfo("vid-1", make="TESLA")],
    )
    return linked.account


def expire_in(seconds: float) -> SmartcarAccount:
    SmartcarAccount.objects.update(access_expires_at=timezone.now() + timedelta(seconds=seconds))
    return SmartcarAccount.objects.get()


def stored() -> SmartcarAccount:
    return SmartcarAccount.objects.get()


def token_calls(mock: responses.RequestsMock) -> int:
    return sum(1 for call in mock.calls if call.request.url == TOKEN_URL)


def batch_call(token: str):
    return client_from_settings().batch(token, "vid-1", ["/odometer"])


def error_body(status: int, type_: str, code: str | None = None, resolution: str | None = None):
    return {
        "type": type_,
        "code": code,
        "description": "Invalid token access-1",
        "statusCode": status,
        "requestId": f"req-{type_.lower()}",
        "resolution": {"type": resolution},
    }


# --- when to refresh --------------------------------------------------------------------------


def test_fresh_token_is_returned_without_any_http_call(account, smartcar_api):
    assert account_access_token(account=account) == "access-1"
    assert len(smartcar_api.calls) == 0


def test_token_outside_the_margin_is_not_refreshed(account, smartcar_api):
    account = expire_in(MARGIN + 30)

    assert account_access_token(account=account) == "access-1"
    assert len(smartcar_api.calls) == 0


def test_token_inside_the_margin_is_refreshed(account, token_server, smartcar_api):
    account = expire_in(MARGIN - 30)

    assert account_access_token(account=account) == "access-2"
    assert token_calls(smartcar_api) == 1
    assert token_server.used == ["refresh-1"]


def test_margin_comes_from_settings(account, token_server, smartcar_api, settings):
    settings.SMARTCAR_TOKEN_REFRESH_MARGIN_SECONDS = 3600
    account = expire_in(1800)

    assert account_access_token(account=account) == "access-2"


def test_missing_expiry_counts_as_expired(account, token_server, smartcar_api):
    SmartcarAccount.objects.update(access_expires_at=None)

    assert account_access_token(account=stored()) == "access-2"


def test_force_refresh_refreshes_a_fresh_token(account, token_server, smartcar_api):
    assert account_access_token(account=account, force_refresh=True) == "access-2"
    assert token_calls(smartcar_api) == 1


def test_force_refresh_uses_a_pair_refreshed_since_the_account_was_loaded(
    account, token_server, smartcar_api
):
    stale = stored()
    assert account_access_token(account=stored(), force_refresh=True) == "access-2"

    # `stale` still holds the rejected token; another worker already replaced it.
    assert account_access_token(account=stale, force_refresh=True) == "access-2"
    assert token_calls(smartcar_api) == 1
    assert stale.access_token == "access-2"


# --- what a refresh persists ------------------------------------------------------------------


def test_rotated_pair_is_persisted_with_new_expiries(account, token_server, smartcar_api):
    before = timezone.now()
    old = expire_in(60)
    linked_at = old.last_refreshed_at

    account_access_token(account=old)

    row = stored()  # a fresh query decrypts what is in the database
    assert (row.access_token, row.refresh_token) == ("access-2", "refresh-2")
    assert before + timedelta(seconds=7200) <= row.access_expires_at
    assert row.access_expires_at <= timezone.now() + timedelta(seconds=7200)
    assert row.refresh_expires_at >= before + timedelta(days=60)
    assert row.last_refreshed_at >= before
    assert row.last_refreshed_at > linked_at
    assert row.refresh_lease_until is None
    assert row.status == SmartcarAccount.Status.ACTIVE
    # The caller's instance follows the row.
    assert old.access_token == "access-2"
    assert old.refresh_token == "refresh-2"


def test_refresh_sends_client_credentials_and_the_refresh_token(
    account, token_server, smartcar_api
):
    account_access_token(account=account, force_refresh=True)

    request = smartcar_api.calls[0].request
    assert request.headers["Authorization"].startswith("Basic ")
    assert parse_qs(request.body) == {
        "grant_type": ["refresh_token"],
        "refresh_token": ["refresh-1"],
    }


def test_two_refreshes_in_a_row_chain_the_rotated_tokens(account, token_server, smartcar_api):
    account_access_token(account=account, force_refresh=True)
    account_access_token(account=stored(), force_refresh=True)

    assert token_server.used == ["refresh-1", "refresh-2"]
    assert stored().refresh_token == "refresh-3"


# --- giving up: needs_reauth ------------------------------------------------------------------


def test_invalid_grant_marks_account_and_vehicles_needs_reauth(account, smartcar_api, caplog):
    StrictTokenServer(smartcar_api, valid="someone-elses-token")
    caplog.set_level(logging.DEBUG)

    with pytest.raises(ReconnectRequiredError) as excinfo:
        account_access_token(account=account, force_refresh=True)

    row = stored()
    assert row.status == SmartcarAccount.Status.NEEDS_REAUTH
    assert row.last_error == "invalid_grant"
    assert row.refresh_lease_until is None
    assert Vehicle.objects.get().status == Vehicle.Status.NEEDS_REAUTH
    assert token_calls(smartcar_api) == 1
    assert "refresh-1" not in str(excinfo.value)
    assert "refresh-1" not in caplog.text
    assert "req-invalid" in caplog.text

    # No retry loop: the dead grant is never sent again.
    with pytest.raises(ReconnectRequiredError):
        account_access_token(account=row, force_refresh=True)
    assert token_calls(smartcar_api) == 1


def test_unreadable_tokens_mark_needs_reauth_without_http(account, smartcar_api):
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE vehicles_smartcaraccount SET access_token = %s, refresh_token = %s",
            [b"not a ciphertext", b"not a ciphertext"],
        )
    account = expire_in(0)

    with pytest.raises(ReconnectRequiredError):
        account_access_token(account=account)

    assert stored().status == SmartcarAccount.Status.NEEDS_REAUTH
    assert Vehicle.objects.get().status == Vehicle.Status.NEEDS_REAUTH
    assert len(smartcar_api.calls) == 0


@pytest.mark.parametrize(
    "status", [SmartcarAccount.Status.NEEDS_REAUTH, SmartcarAccount.Status.DISCONNECTED]
)
def test_inactive_account_gets_no_token(account, smartcar_api, status):
    SmartcarAccount.objects.update(status=status)

    with pytest.raises(ReconnectRequiredError):
        account_access_token(account=stored(), force_refresh=True)
    assert len(smartcar_api.calls) == 0


def test_account_marked_needs_reauth_by_another_worker_stops_a_refresh(account, smartcar_api):
    stale = expire_in(0)
    SmartcarAccount.objects.update(status=SmartcarAccount.Status.NEEDS_REAUTH)

    with pytest.raises(ReconnectRequiredError):
        account_access_token(account=stale)
    assert len(smartcar_api.calls) == 0


# --- transient failures: propagate, stay active, free the lease -------------------------------


@pytest.mark.parametrize(
    ("status", "headers", "body"),
    [
        (429, {"Retry-After": "30"}, {"error": "rate_limited", "error_description": "slow"}),
        (500, {}, {"error": "server_error", "error_description": "boom"}),
        (503, {}, "<html>maintenance</html>"),
    ],
)
def test_transient_token_endpoint_error_propagates_and_frees_the_lease(
    account, smartcar_api, status, headers, body
):
    smartcar_api.add(
        responses.POST,
        TOKEN_URL,
        status=status,
        headers=headers,
        body=body if isinstance(body, str) else json.dumps(body),
    )

    with pytest.raises(SmartcarRetryLaterError) as excinfo:
        account_access_token(account=account, force_refresh=True)

    if status == 429:
        assert excinfo.value.retry_after == 30
    row = stored()
    assert row.status == SmartcarAccount.Status.ACTIVE
    assert (row.access_token, row.refresh_token) == ("access-1", "refresh-1")
    assert row.refresh_lease_until is None
    assert token_calls(smartcar_api) == 1  # a refresh is never retried by the client


def test_timeout_on_refresh_propagates_and_next_attempt_refreshes(account, smartcar_api):
    smartcar_api.add(responses.POST, TOKEN_URL, body=requests.ReadTimeout("slow"))

    with pytest.raises(SmartcarRetryLaterError):
        account_access_token(account=account, force_refresh=True)
    assert stored().refresh_lease_until is None

    smartcar_api.remove(responses.POST, TOKEN_URL)
    StrictTokenServer(smartcar_api)
    # The freed lease lets the next attempt go straight to Smartcar.
    assert account_access_token(account=stored(), force_refresh=True) == "access-2"


def test_bad_client_credentials_propagate_and_leave_the_account_active(account, smartcar_api):
    smartcar_api.add(
        responses.POST,
        TOKEN_URL,
        status=401,
        json={"error": "invalid_client", "error_description": "bad secret"},
    )

    with pytest.raises(SmartcarConfigurationError):
        account_access_token(account=account, force_refresh=True)
    assert stored().status == SmartcarAccount.Status.ACTIVE


# --- single-flight (one thread; the concurrency file runs real threads and processes) ---------


def commit_refresh_by_other_worker(access: str = "access-9", refresh: str = "refresh-9") -> None:
    now = timezone.now()
    SmartcarAccount.objects.update(
        access_token=access,
        refresh_token=refresh,
        access_expires_at=now + timedelta(hours=2),
        last_refreshed_at=now,
        refresh_lease_until=None,
    )


def test_waiter_uses_the_pair_the_lease_holder_commits(account, smartcar_api, monkeypatch):
    SmartcarAccount.objects.update(refresh_lease_until=timezone.now() + timedelta(seconds=60))
    waits = []

    def other_worker_finishes(seconds):
        waits.append(seconds)
        commit_refresh_by_other_worker()

    monkeypatch.setattr(token_service.time, "sleep", other_worker_finishes)

    assert account_access_token(account=expire_in(0)) == "access-9"
    assert len(smartcar_api.calls) == 0
    assert waits == [token_service.WAIT_POLL_SECONDS]


def test_winner_rereads_the_row_after_taking_the_lease(account, smartcar_api, monkeypatch):
    """Another worker commits between our check and our lease: we must not refresh again."""
    token_server = StrictTokenServer(smartcar_api, valid="refresh-9")
    real_take_lease = token_service._take_lease

    def take_lease_after_other_worker(account, lease_seconds):
        commit_refresh_by_other_worker()
        return real_take_lease(account, lease_seconds)

    monkeypatch.setattr(token_service, "_take_lease", take_lease_after_other_worker)

    assert account_access_token(account=expire_in(0)) == "access-9"
    assert token_server.used == []
    assert stored().refresh_lease_until is None


def test_expired_lease_of_a_crashed_worker_is_taken_over(account, token_server, smartcar_api):
    SmartcarAccount.objects.update(refresh_lease_until=timezone.now() - timedelta(seconds=1))

    assert account_access_token(account=expire_in(0)) == "access-2"
    assert token_calls(smartcar_api) == 1


def test_live_lease_that_never_frees_ends_in_retry_later(account, smartcar_api, settings):
    settings.SMARTCAR_REFRESH_LEASE_SECONDS = 0  # bounds the wait at about one second
    SmartcarAccount.objects.update(refresh_lease_until=timezone.now() + timedelta(hours=1))

    with pytest.raises(SmartcarRetryLaterError) as excinfo:
        account_access_token(account=expire_in(0))

    assert excinfo.value.type == REFRESH_BUSY
    assert len(smartcar_api.calls) == 0


def test_lease_taken_over_during_our_refresh_is_left_to_its_holder(account, smartcar_api):
    """Our lease ran out mid-call and another worker took the next one: we store the pair (the
    only one that works now) but must not clear their lease."""
    theirs = timezone.now() + timedelta(seconds=30)
    server = StrictTokenServer(smartcar_api)

    def refresh_while_lease_is_taken_over(request):
        SmartcarAccount.objects.update(refresh_lease_until=theirs)
        return server(request)

    smartcar_api.remove(responses.POST, TOKEN_URL)
    smartcar_api.add_callback(responses.POST, TOKEN_URL, callback=refresh_while_lease_is_taken_over)

    assert account_access_token(account=account, force_refresh=True) == "access-2"
    row = stored()
    assert row.refresh_token == "refresh-2"
    assert row.refresh_lease_until == theirs


# --- persist before use (E3) ------------------------------------------------------------------


class SimulatedCrash(BaseException):
    """Stands for the process dying: not an Exception, so no handler in our code swallows it."""


def test_crash_before_commit_ends_in_needs_reauth_never_silently_broken(
    account, token_server, smartcar_api, monkeypatch
):
    real_store = token_service._store_rotated
    crashes = []

    def crash_once(*args, **kwargs):
        if not crashes:
            crashes.append(1)
            raise SimulatedCrash
        return real_store(*args, **kwargs)

    monkeypatch.setattr(token_service, "_store_rotated", crash_once)

    with pytest.raises(SimulatedCrash):
        account_access_token(account=expire_in(0))
    # Smartcar rotated the pair, but we never committed it.
    row = stored()
    assert row.refresh_token == "refresh-1"
    assert row.last_refreshed_at == account.last_refreshed_at
    # A dead process leaves its lease behind until it expires.
    SmartcarAccount.objects.update(refresh_lease_until=timezone.now() - timedelta(seconds=1))

    with pytest.raises(ReconnectRequiredError):
        account_access_token(account=stored())

    assert token_server.used == ["refresh-1", "refresh-1"]
    assert stored().status == SmartcarAccount.Status.NEEDS_REAUTH
    assert stored().last_error == "invalid_grant"


def test_new_token_is_committed_before_the_call_uses_it(account, token_server, smartcar_api):
    seen_in_db = []

    def call(token):
        seen_in_db.append((token, SmartcarAccount.objects.get().access_token))
        return token

    account_call(account=expire_in(0), call=call)

    assert seen_in_db == [("access-2", "access-2")]


# --- account_call ----------------------------------------------------------------------------


def test_account_call_passes_the_token_and_returns_the_result(account, smartcar_api):
    smartcar_api.add(responses.POST, BATCH_URL, json=BATCH_OK)

    result = account_call(account=account, call=batch_call)

    assert result.body("/odometer") == {"distance": 1.0}
    assert smartcar_api.calls[0].request.headers["Authorization"] == "Bearer access-1"


def test_authentication_error_refreshes_once_and_retries_once(account, token_server, smartcar_api):
    smartcar_api.add(responses.POST, BATCH_URL, status=401, json=error_body(401, "AUTHENTICATION"))
    smartcar_api.add(responses.POST, BATCH_URL, json=BATCH_OK)

    result = account_call(account=account, call=batch_call)

    assert result.body("/odometer") == {"distance": 1.0}
    batch_auth = [
        call.request.headers["Authorization"]
        for call in smartcar_api.calls
        if call.request.url == BATCH_URL
    ]
    assert batch_auth == ["Bearer access-1", "Bearer access-2"]
    assert token_calls(smartcar_api) == 1
    assert stored().status == SmartcarAccount.Status.ACTIVE


def test_authentication_error_after_the_refresh_means_needs_reauth(
    account, token_server, smartcar_api
):
    smartcar_api.add(responses.POST, BATCH_URL, status=401, json=error_body(401, "AUTHENTICATION"))

    with pytest.raises(ReconnectRequiredError):
        account_call(account=account, call=batch_call)

    assert sum(1 for call in smartcar_api.calls if call.request.url == BATCH_URL) == 2
    assert token_calls(smartcar_api) == 1
    row = stored()
    assert row.status == SmartcarAccount.Status.NEEDS_REAUTH
    assert row.last_error == "AUTHENTICATION"
    assert Vehicle.objects.get().status == Vehicle.Status.NEEDS_REAUTH


def test_invalid_grant_during_the_retry_refresh_means_needs_reauth(account, smartcar_api):
    StrictTokenServer(smartcar_api, valid="not-ours")
    smartcar_api.add(responses.POST, BATCH_URL, status=401, json=error_body(401, "AUTHENTICATION"))

    with pytest.raises(ReconnectRequiredError):
        account_call(account=account, call=batch_call)

    assert sum(1 for call in smartcar_api.calls if call.request.url == BATCH_URL) == 1
    assert stored().last_error == "invalid_grant"


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        (
            400,
            error_body(
                400, "CONNECTED_SERVICES_ACCOUNT", "AUTHENTICATION_FAILED", "REAUTHENTICATE"
            ),
            "CONNECTED_SERVICES_ACCOUNT:AUTHENTICATION_FAILED",
        ),
        (403, error_body(403, "PERMISSION", None, "REAUTHENTICATE"), "PERMISSION"),
        (
            501,
            error_body(501, "COMPATIBILITY", "PLATFORM_NOT_CAPABLE", "REAUTHENTICATE"),
            "COMPATIBILITY:PLATFORM_NOT_CAPABLE",
        ),
        (401, error_body(401, "AUTHENTICATION", None, "REAUTHENTICATE"), "AUTHENTICATION"),
    ],
)
def test_reauthenticate_resolution_means_needs_reauth_without_refresh(
    account, token_server, smartcar_api, status, body, reason
):
    smartcar_api.add(responses.POST, BATCH_URL, status=status, json=body)

    with pytest.raises(ReconnectRequiredError):
        account_call(account=account, call=batch_call)

    assert token_calls(smartcar_api) == 0
    assert sum(1 for call in smartcar_api.calls if call.request.url == BATCH_URL) == 1
    row = stored()
    assert row.status == SmartcarAccount.Status.NEEDS_REAUTH
    assert row.last_error == reason
    assert Vehicle.objects.get().status == Vehicle.Status.NEEDS_REAUTH


@pytest.mark.parametrize(
    ("status", "body", "retry_after"),
    [
        (429, error_body(429, "RATE_LIMIT", "VEHICLE", "RETRY_LATER"), 60),
        (502, error_body(502, "UPSTREAM", "NO_RESPONSE", "RETRY_LATER"), None),
        (500, error_body(500, "SERVER", "INTERNAL", "RETRY_LATER"), None),
    ],
)
def test_transient_vehicle_errors_propagate_and_the_account_stays_active(
    account, token_server, smartcar_api, status, body, retry_after
):
    headers = {"Retry-After": "60"} if retry_after else {}
    smartcar_api.add(responses.POST, BATCH_URL, status=status, json=body, headers=headers)

    with pytest.raises(SmartcarRetryLaterError) as excinfo:
        account_call(account=account, call=batch_call)

    assert excinfo.value.retry_after == retry_after
    assert token_calls(smartcar_api) == 0
    assert stored().status == SmartcarAccount.Status.ACTIVE
    assert Vehicle.objects.get().status == Vehicle.Status.ACTIVE


def test_batch_item_errors_are_returned_not_raised(account, token_server, smartcar_api):
    body = {
        "responses": [
            {"path": "/odometer", "code": 200, "body": {"distance": 1.0}},
            {"path": "/location", "code": 403, "body": error_body(403, "PERMISSION")},
        ]
    }
    smartcar_api.add(responses.POST, BATCH_URL, json=body)

    result = account_call(account=account, call=batch_call)

    assert result.get("/location").error is not None
    assert stored().status == SmartcarAccount.Status.ACTIVE


# --- idle grants (E4) ------------------------------------------------------------------------


def set_last_refreshed(days: float) -> SmartcarAccount:
    SmartcarAccount.objects.update(last_refreshed_at=timezone.now() - timedelta(days=days))
    return stored()


def test_idle_grant_is_refreshed_after_50_days(account, token_server, smartcar_api):
    idle = set_last_refreshed(50.01)

    assert account_refresh_if_idle(account=idle) is True
    assert token_calls(smartcar_api) == 1
    assert stored().refresh_token == "refresh-2"
    assert stored().last_refreshed_at > timezone.now() - timedelta(minutes=1)


def test_recently_refreshed_grant_is_left_alone(account, smartcar_api):
    assert account_refresh_if_idle(account=set_last_refreshed(49.9)) is False
    assert len(smartcar_api.calls) == 0


def test_idle_days_come_from_settings(account, token_server, smartcar_api, settings):
    settings.SMARTCAR_IDLE_REFRESH_DAYS = 10

    assert account_refresh_if_idle(account=set_last_refreshed(11)) is True


def test_idle_check_skips_inactive_accounts(account, smartcar_api):
    set_last_refreshed(55)
    SmartcarAccount.objects.update(status=SmartcarAccount.Status.NEEDS_REAUTH)

    assert account_refresh_if_idle(account=stored()) is False
    assert len(smartcar_api.calls) == 0


def test_idle_refresh_with_a_dead_grant_means_needs_reauth(account, smartcar_api):
    StrictTokenServer(smartcar_api, valid="not-ours")

    with pytest.raises(ReconnectRequiredError):
        account_refresh_if_idle(account=set_last_refreshed(55))
    assert stored().status == SmartcarAccount.Status.NEEDS_REAUTH


# --- leakage ---------------------------------------------------------------------------------


def test_no_token_reaches_the_logs(account, token_server, smartcar_api, caplog):
    caplog.set_level(logging.DEBUG)
    smartcar_api.add(responses.POST, BATCH_URL, status=401, json=error_body(401, "AUTHENTICATION"))
    smartcar_api.add(responses.POST, BATCH_URL, json=BATCH_OK)

    account_call(account=account, call=batch_call)

    assert "outcome=refreshed" in caplog.text
    assert f"account={account.pk}" in caplog.text
    for secret in ("access-1", "access-2", "refresh-1", "refresh-2", "test-client-secret-value"):
        assert secret not in caplog.text
