"""Account services: linking over an unreadable row, token access, needs_reauth."""

import pytest
from django.db import connection

from core.errors import ReconnectRequiredError
from smartcar_client.types import TokenSet
from vehicles.fields import UNREADABLE
from vehicles.models import SmartcarAccount, Vehicle
from vehicles.services import LinkedVehicleInfo, account_link, account_tokens

pytestmark = pytest.mark.django_db


def tokens(suffix: str = "1") -> TokenSet:
    return TokenSet.from_json(
        {
            "access_token": f"access-{suffix}",
            "refresh_token": f"refresh-{suffix}",
            "expires_in": 7200,
        }
    )


def link(user, suffix: str = "1"):
    return account_link(
        owner=user,
        smartcar_user_id="sc-user-1",
        tokens=tokens(suffix),
        scopes=["read_vin"],
        vehicles=[LinkedVehicleInfo("vid-1", make="TESLA")],
    )


def corrupt_tokens() -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE vehicles_smartcaraccount SET access_token = %s, refresh_token = %s",
            [b"not a ciphertext", b"not a ciphertext"],
        )


def test_account_tokens_returns_the_pair(user):
    account = link(user).account

    pair = account_tokens(account=SmartcarAccount.objects.get(pk=account.pk))

    assert (pair.access_token, pair.refresh_token) == ("access-1", "refresh-1")
    assert "access-1" not in repr(pair)


def test_unreadable_tokens_mark_account_and_vehicles_needs_reauth(user):
    link(user)
    corrupt_tokens()
    account = SmartcarAccount.objects.get()
    assert account.access_token is UNREADABLE

    with pytest.raises(ReconnectRequiredError):
        account_tokens(account=account)

    assert SmartcarAccount.objects.get().status == SmartcarAccount.Status.NEEDS_REAUTH
    assert SmartcarAccount.objects.get().last_error == "tokens_unreadable"
    assert Vehicle.objects.get().status == Vehicle.Status.NEEDS_REAUTH


def test_account_needing_reauth_gives_no_tokens(user):
    account = link(user).account
    SmartcarAccount.objects.update(status=SmartcarAccount.Status.NEEDS_REAUTH)
    account.refresh_from_db()

    with pytest.raises(ReconnectRequiredError):
        account_tokens(account=account)


def test_relinking_replaces_unreadable_tokens_and_reactivates(user):
    link(user)
    corrupt_tokens()
    account_tokens_error = pytest.raises(ReconnectRequiredError)
    with account_tokens_error:
        account_tokens(account=SmartcarAccount.objects.get())

    link(user, suffix="2")

    account = SmartcarAccount.objects.get()
    assert account.status == SmartcarAccount.Status.ACTIVE
    assert account.access_token == "access-2"
    assert Vehicle.objects.get().status == Vehicle.Status.ACTIVE


def test_deferred_tokens_load_together_on_first_use(user, django_assert_num_queries):
    account = link(user).account
    shown = SmartcarAccount.objects.defer("access_token", "refresh_token").get(pk=account.pk)

    with django_assert_num_queries(1):
        pair = account_tokens(account=shown)

    assert (pair.access_token, pair.refresh_token) == ("access-1", "refresh-1")
    assert shown.get_deferred_fields() == set()


def test_loading_one_deferred_token_keeps_other_fields_as_they_were(user):
    account = link(user).account
    shown = SmartcarAccount.objects.defer("access_token", "refresh_token", "scopes").get(
        pk=account.pk
    )

    shown.refresh_from_db(fields=["refresh_token"])

    assert shown.get_deferred_fields() == {"scopes"}
    assert (shown.access_token, shown.refresh_token) == ("access-1", "refresh-1")
