"""Admin pages render and never show a token, in plaintext or ciphertext."""

from http import HTTPStatus

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client

from oauth_smartcar.models import ConnectAttempt
from vehicles.models import SmartcarAccount, Vehicle

pytestmark = pytest.mark.django_db

ACCESS = "access-PLAIN-admin-0001"
REFRESH = "refresh-PLAIN-admin-0001"


@pytest.fixture
def staff_browser():
    admin_user = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    browser = Client()
    browser.force_login(admin_user)
    return browser


@pytest.fixture
def account(user):
    account = SmartcarAccount.objects.create(
        smartcar_user_id="sc-user-1", owner=user, access_token=ACCESS, refresh_token=REFRESH
    )
    vehicle = Vehicle.objects.create(
        smartcar_vehicle_id="vid-1", owner=user, account=account, make="TESLA"
    )
    attempt = ConnectAttempt.objects.create(
        user=user, expires_at=account.created_at, outcome="linked"
    )
    attempt.vehicles.add(vehicle)
    return account


def ciphertexts() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT access_token, refresh_token FROM vehicles_smartcaraccount")
        row = cursor.fetchone()
    return [bytes(value).hex() for value in row] + [bytes(value).decode("latin-1") for value in row]


def test_admin_pages_never_contain_tokens(staff_browser, account):
    vehicle = Vehicle.objects.get()
    attempt = ConnectAttempt.objects.get()
    pages = [
        "/admin/vehicles/smartcaraccount/",
        f"/admin/vehicles/smartcaraccount/{account.pk}/change/",
        f"/admin/vehicles/smartcaraccount/{account.pk}/history/",
        "/admin/vehicles/smartcaraccount/?q=PLAIN",
        "/admin/vehicles/vehicle/",
        f"/admin/vehicles/vehicle/{vehicle.pk}/change/",
        "/admin/oauth_smartcar/connectattempt/",
        f"/admin/oauth_smartcar/connectattempt/{attempt.pk}/change/",
    ]
    secrets = [ACCESS, REFRESH, *ciphertexts()]
    for page in pages:
        response = staff_browser.get(page)
        assert response.status_code == HTTPStatus.OK, page
        html = response.content.decode()
        for secret in secrets:
            assert secret not in html, page


def test_token_search_finds_nothing(staff_browser, account):
    response = staff_browser.get("/admin/vehicles/smartcaraccount/", {"q": ACCESS})

    assert "0 results" in response.content.decode()


def test_admin_renders_an_account_whose_tokens_cannot_be_decrypted(staff_browser, account):
    with connection.cursor() as cursor:
        cursor.execute("UPDATE vehicles_smartcaraccount SET access_token = %s", [b"garbage"])

    for page in (
        "/admin/vehicles/smartcaraccount/",
        f"/admin/vehicles/smartcaraccount/{account.pk}/change/",
    ):
        assert staff_browser.get(page).status_code == HTTPStatus.OK
