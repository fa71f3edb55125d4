"""Smartcar accounts in the admin, the `support` group, and the one rule above all: no admin
page ever shows a token, in plaintext or ciphertext, to anyone."""

from http import HTTPStatus

import pytest
from django.contrib import admin
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from oauth_smartcar.models import ConnectAttempt
from telemetry.models import AppThrottle, Reading, TelemetryState, WebhookEvent
from vehicles.models import SmartcarAccount, Vehicle

pytestmark = pytest.mark.django_db

ACCESS = "access-PLAIN-admin-0001"
REFRESH = "refresh-PLAIN-admin-0001"
CODE = "code-PLAIN-admin-0001"
ACCOUNTS_URL = "/admin/vehicles/smartcaraccount/"
SUPPORT_APPS = {"vehicles", "oauth_smartcar", "telemetry"}


@pytest.fixture
def account(user):
    """One row of everything the admin shows, around an account holding a token pair."""
    now = timezone.now()
    account = SmartcarAccount.objects.create(
        smartcar_user_id="sc-user-1",
        owner=user,
        access_token=ACCESS,
        refresh_token=REFRESH,
        last_error="AUTHENTICATION:INVALID_TOKEN [request id r-1]",
    )
    vehicle = Vehicle.objects.create(
        smartcar_vehicle_id="vid-1", owner=user, account=account, make="TESLA"
    )
    attempt = ConnectAttempt.objects.create(
        user=user,
        expires_at=now,
        outcome="recovered",
        # The recovery hand-off URL carries the authorization code: never shown.
        redirect_url=f"https://app.example.test/done?oauth_code={CODE}",
    )
    attempt.vehicles.add(vehicle)
    reading = Reading.objects.create(
        vehicle=vehicle, recorded_at=now, received_at=now, source="poll", soc_pct=70
    )
    TelemetryState.objects.create(vehicle=vehicle, latest_reading=reading)
    WebhookEvent.objects.create(
        event_id="ev-1",
        event_type="VEHICLE_STATE",
        smartcar_vehicle_id="vid-1",
        vehicle=vehicle,
        payload={"eventId": "ev-1"},
        received_at=now,
    )
    AppThrottle.objects.create(reason="RATE_LIMIT:SMARTCAR_API")
    return account


def ciphertexts() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT access_token, refresh_token FROM vehicles_smartcaraccount")
        row = cursor.fetchone()
    return [bytes(value).hex() for value in row] + [bytes(value).decode("latin-1") for value in row]


def every_admin_page() -> list[str]:
    """Index, app pages, and for every model admin of our apps: its list, a search for a token,
    and the change and history page of every row. New admins are covered without editing this."""
    pages = ["/admin/", *(f"/admin/{app}/" for app in sorted(SUPPORT_APPS))]
    for model in admin.site._registry:
        opts = model._meta
        if opts.app_label not in SUPPORT_APPS:
            continue
        base = f"/admin/{opts.app_label}/{opts.model_name}/"
        # (A search for the whole token echoes it in the search box; see the test below.)
        pages += [base, f"{base}?q=PLAIN"]
        for obj in model._default_manager.all():
            pages += [f"{base}{obj.pk}/change/", f"{base}{obj.pk}/history/"]
    vehicle = Vehicle.objects.get()
    pages.append(f"/admin/vehicles/vehicle/{vehicle.pk}/disconnect/")
    return pages


@pytest.mark.parametrize("who", ["superuser", "support"])
def test_no_admin_page_contains_a_token_or_the_code(request, account, who):
    browser = request.getfixturevalue(f"{who}_browser")
    vehicle = Vehicle.objects.get()
    # Put entries in the admin log (history pages, "recent actions") as real actions would.
    LogEntry.objects.log_actions(
        user_id=get_user_model()
        .objects.get(username="root" if who == "superuser" else "helpdesk")
        .pk,
        queryset=[vehicle, account],
        action_flag=CHANGE,
        change_message="Poll now: OK",
    )
    secrets = [ACCESS, REFRESH, CODE, *ciphertexts()]
    pages = every_admin_page()
    assert len(pages) >= 29  # 6 model admins, 6 rows

    for page in pages:
        response = browser.get(page)
        expected = (
            HTTPStatus.FORBIDDEN
            if who == "support" and page.endswith("/disconnect/")
            else HTTPStatus.OK
        )
        assert response.status_code == expected, page
        html = response.content.decode()
        for secret in secrets:
            assert secret not in html, page


def test_searching_any_list_for_a_token_finds_nothing(superuser_browser, account):
    lists = [
        f"/admin/{m._meta.app_label}/{m._meta.model_name}/"
        for m, model_admin in admin.site._registry.items()
        if m._meta.app_label in SUPPORT_APPS and model_admin.search_fields
    ]
    assert len(lists) >= 4

    for url in lists:
        for token in (ACCESS, REFRESH, CODE):
            response = superuser_browser.get(url, {"q": token})
            assert response.status_code == HTTPStatus.OK, url
            assert list(response.context["cl"].result_list) == [], url


def test_account_pages_never_decrypt_the_tokens(superuser_browser, account, monkeypatch):
    """The token columns are deferred: a page that never loads them cannot leak them."""
    import vehicles.fields

    def refuse(*args, **kwargs):
        raise AssertionError("a token was decrypted for an admin page")

    monkeypatch.setattr(vehicles.fields, "decrypt_text", refuse)

    for page in (ACCOUNTS_URL, f"{ACCOUNTS_URL}{account.pk}/change/"):
        assert superuser_browser.get(page).status_code == HTTPStatus.OK


def test_admin_renders_an_account_whose_tokens_cannot_be_decrypted(superuser_browser, account):
    with connection.cursor() as cursor:
        cursor.execute("UPDATE vehicles_smartcaraccount SET access_token = %s", [b"garbage"])

    for page in (ACCOUNTS_URL, f"{ACCOUNTS_URL}{account.pk}/change/"):
        assert superuser_browser.get(page).status_code == HTTPStatus.OK


def test_account_list_shows_owner_status_and_live_vehicle_count(superuser_browser, account, user):
    Vehicle.objects.create(smartcar_vehicle_id="vid-2", owner=user, account=account)
    Vehicle.objects.create(
        smartcar_vehicle_id="vid-3", owner=user, account=account, status="disconnected"
    )

    response = superuser_browser.get(ACCOUNTS_URL)
    html = response.content.decode()

    [row] = response.context["cl"].result_list
    assert row.live_vehicles == 2
    assert '<td class="field-vehicle_count">2</td>' in html
    assert f'<td class="field-owner_id_display">{user.pk}</td>' in html
    assert "a@example.com" in html
    assert "AUTHENTICATION:INVALID_TOKEN [request id r-1]" in html


@pytest.mark.parametrize("term", ["a@example.com", "sc-user-1", "OWNER_ID"])
def test_account_search_by_owner_email_id_or_smartcar_user_id(
    superuser_browser, account, other_user, term
):
    SmartcarAccount.objects.create(smartcar_user_id="sc-other", owner=other_user)
    term = str(account.owner_id) if term == "OWNER_ID" else term

    response = superuser_browser.get(ACCOUNTS_URL, {"q": term})

    assert [a.pk for a in response.context["cl"].result_list] == [account.pk]


def test_account_list_query_count_does_not_grow_with_rows(superuser_browser, user):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert superuser_browser.get(ACCOUNTS_URL).status_code == HTTPStatus.OK
        return len(captured)

    SmartcarAccount.objects.create(smartcar_user_id="sc-0", owner=user)
    one = queries()
    for i in range(1, 30):
        account = SmartcarAccount.objects.create(smartcar_user_id=f"sc-{i}", owner=user)
        Vehicle.objects.create(smartcar_vehicle_id=f"v-{i}", owner=user, account=account)

    assert queries() == one


def test_nobody_changes_or_deletes_an_account(superuser_browser, support_browser, account):
    for browser in (superuser_browser, support_browser):
        change = browser.post(
            f"{ACCOUNTS_URL}{account.pk}/change/", {"status": "disconnected", "_save": "1"}
        )
        delete = browser.post(f"{ACCOUNTS_URL}{account.pk}/delete/", {"post": "yes"})
        assert change.status_code == HTTPStatus.FORBIDDEN
        assert delete.status_code == HTTPStatus.FORBIDDEN
    account.refresh_from_db()
    assert account.status == SmartcarAccount.Status.ACTIVE


def test_support_group_can_view_and_poll_and_nothing_else():
    group = Group.objects.get(name="support")
    granted = set(group.permissions.values_list("content_type__app_label", "codename"))

    models = [
        ct.model_class()
        for ct in ContentType.objects.filter(app_label__in=SUPPORT_APPS)
        if ct.model_class() is not None
    ]
    views = {(m._meta.app_label, f"view_{m._meta.model_name}") for m in models}
    assert granted == views | {("vehicles", "poll_vehicle")}
    assert ("telemetry", "view_webhookevent") in granted
    assert not any(code.startswith(("add_", "change_", "delete_")) for _, code in granted)


def test_admin_pages_let_browsers_send_their_origin_on_form_posts(client):
    """Under `Referrer-Policy: no-referrer` a browser posts `Origin: null` and Django's CSRF
    check refuses every admin form; the site-wide policy is same-origin (only the Connect views
    send no-referrer)."""
    response = client.get("/admin/login/")

    assert response["Referrer-Policy"] == "same-origin"
