"""EncryptedTextField on SmartcarAccount: ciphertext at rest, SECRET_KEY-independent, rotation-ready,
and a bad row reads as UNREADABLE instead of raising (SECURITY.md D1, D2, D3, D5)."""

import copy
import logging
import pickle

import pytest
from django.contrib.auth import get_user_model
from django.core import serializers
from django.core.exceptions import FieldError, ValidationError
from django.core.serializers.base import DeserializationError
from django.db import connection, transaction
from django.forms import modelform_factory

from vehicles.crypto import needs_reencryption
from vehicles.fields import UNREADABLE, EncryptedTextField, UnreadableValueWriteError
from vehicles.models import SmartcarAccount

pytestmark = pytest.mark.django_db

KEY_OLD = "token-key-old-" + "o" * 40
KEY_NEW = "token-key-new-" + "n" * 40
KEY_RETIRED = "token-key-retired-" + "r" * 40
ACCESS = "tok-PLAIN-123"
REFRESH = "refresh-PLAIN-456"


@pytest.fixture
def keys(settings):
    def use(*values: str) -> None:
        settings.TOKEN_ENCRYPTION_KEYS = list(values)

    return use


def make_account(n: int = 0, access: str | None = ACCESS, refresh: str | None = REFRESH):
    user = get_user_model().objects.create(username=f"user-{n}")
    return SmartcarAccount.objects.create(
        owner=user, smartcar_user_id=f"sc-user-{n}", access_token=access, refresh_token=refresh
    )


def raw_column(account: SmartcarAccount, column: str = "access_token") -> bytes | None:
    table = connection.ops.quote_name(SmartcarAccount._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {connection.ops.quote_name(column)} FROM {table} WHERE id = %s",  # noqa: S608
            [account.pk],
        )
        (value,) = cursor.fetchone()
    return None if value is None else bytes(value)


def write_raw(account: SmartcarAccount, blob: bytes, column: str = "access_token") -> None:
    table = connection.ops.quote_name(SmartcarAccount._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET {connection.ops.quote_name(column)} = %s WHERE id = %s",  # noqa: S608
            [blob, account.pk],
        )


# --- D1, D2, D3 ----------------------------------------------------------------------------------


def test_raw_column_holds_no_plaintext(keys):
    """D1: read the column with raw SQL; the token is not in it."""
    keys(KEY_NEW)
    account = make_account()
    for column, plaintext in (("access_token", ACCESS), ("refresh_token", REFRESH)):
        stored = raw_column(account, column)
        assert stored
        assert plaintext.encode() not in stored
        assert plaintext.encode().hex().encode() not in stored
    reloaded = SmartcarAccount.objects.get(pk=account.pk)
    assert (reloaded.access_token, reloaded.refresh_token) == (ACCESS, REFRESH)


def test_none_is_stored_as_null(keys):
    keys(KEY_NEW)
    account = make_account(access=None, refresh=None)
    assert raw_column(account) is None
    reloaded = SmartcarAccount.objects.get(pk=account.pk)
    assert reloaded.access_token is None
    assert reloaded.refresh_token is None


def test_rotating_secret_key_leaves_every_token_readable(keys, settings):
    """D2: SECRET_KEY moves to the fallbacks, then is dropped; tokens do not care."""
    keys(KEY_NEW)
    accounts = [make_account(n, access=f"{ACCESS}-{n}") for n in range(3)]
    old_secret = settings.SECRET_KEY
    settings.SECRET_KEY = "rotated-secret-key-" + "z" * 50
    settings.SECRET_KEY_FALLBACKS = [old_secret]
    settings.SECRET_KEY_FALLBACKS = []
    loaded = {a.pk: a for a in SmartcarAccount.objects.all()}
    for n, account in enumerate(accounts):
        assert loaded[account.pk].access_token == f"{ACCESS}-{n}"
        assert loaded[account.pk].refresh_token == REFRESH


def test_new_key_first_writes_new_and_reads_old(keys):
    """D3: keys [new, old]: rows under old stay readable, writes go under new."""
    keys(KEY_OLD)
    old_row = make_account(1)
    keys(KEY_NEW, KEY_OLD)
    new_row = make_account(2)
    assert SmartcarAccount.objects.get(pk=old_row.pk).access_token == ACCESS
    assert needs_reencryption(raw_column(old_row)) is True
    assert needs_reencryption(raw_column(new_row)) is False
    keys(KEY_NEW)
    assert SmartcarAccount.objects.get(pk=new_row.pk).access_token == ACCESS


# --- D5: a bad row never raises --------------------------------------------------------------------


def test_row_under_retired_key_reads_as_unreadable_and_logs_without_secrets(keys, caplog):
    keys(KEY_RETIRED)
    account = make_account()
    keys(KEY_NEW)
    with caplog.at_level(logging.WARNING, logger="vehicles.fields"):
        reloaded = SmartcarAccount.objects.get(pk=account.pk)
    assert reloaded.access_token is UNREADABLE
    assert reloaded.refresh_token is UNREADABLE
    assert reloaded.tokens_readable is False
    records = [r for r in caplog.records if r.name == "vehicles.fields"]
    assert len(records) == 2
    assert all(r.levelno == logging.WARNING for r in records)
    assert "vehicles.SmartcarAccount.access_token" in records[0].getMessage()
    for secret in (ACCESS, REFRESH, KEY_RETIRED, KEY_NEW):
        assert secret not in caplog.text
    assert raw_column(account).hex() not in caplog.text


def test_flipped_ciphertext_byte_reads_as_unreadable(keys):
    keys(KEY_NEW)
    account = make_account()
    blob = bytearray(raw_column(account))
    blob[40] ^= 0x01
    write_raw(account, bytes(blob))
    reloaded = SmartcarAccount.objects.get(pk=account.pk)
    assert reloaded.access_token is UNREADABLE
    assert reloaded.refresh_token == REFRESH


def test_queryset_with_bad_rows_still_evaluates(keys):
    keys(KEY_RETIRED)
    retired = make_account(1)
    keys(KEY_NEW)
    good = make_account(2)
    flipped = make_account(3)
    blob = bytearray(raw_column(flipped))
    blob[-1] ^= 0xFF
    write_raw(flipped, bytes(blob))
    tokens = dict(SmartcarAccount.objects.values_list("pk", "access_token"))
    assert tokens == {retired.pk: UNREADABLE, good.pk: ACCESS, flipped.pk: UNREADABLE}
    assert {a.pk for a in SmartcarAccount.objects.all() if a.tokens_readable} == {good.pk}


def test_saving_unreadable_back_raises_and_keeps_the_stored_value(keys):
    keys(KEY_RETIRED)
    account = make_account()
    stored = raw_column(account)
    keys(KEY_NEW)
    reloaded = SmartcarAccount.objects.get(pk=account.pk)
    # Savepoints: a failed save marks the surrounding transaction for rollback.
    with pytest.raises(UnreadableValueWriteError) as caught, transaction.atomic():
        reloaded.save()
    assert "vehicles.SmartcarAccount" in str(caught.value)
    with pytest.raises(UnreadableValueWriteError), transaction.atomic():
        SmartcarAccount.objects.filter(pk=account.pk).update(refresh_token=UNREADABLE)
    assert raw_column(account) == stored


def test_unreadable_rows_can_still_save_other_fields_or_clear_tokens(keys):
    """The lead's needs_reauth marking: update_fields skips the token columns."""
    keys(KEY_RETIRED)
    account = make_account()
    keys(KEY_NEW)
    reloaded = SmartcarAccount.objects.get(pk=account.pk)
    reloaded.status = SmartcarAccount.Status.NEEDS_REAUTH
    reloaded.save(update_fields=["status"])
    reloaded.access_token = None
    reloaded.refresh_token = "fresh-token"
    reloaded.save()
    again = SmartcarAccount.objects.get(pk=account.pk)
    assert (again.status, again.access_token, again.refresh_token) == (
        "needs_reauth",
        None,
        "fresh-token",
    )


def test_unreadable_sentinel_is_safe_falsy_and_a_singleton():
    assert repr(UNREADABLE) == "<unreadable encrypted value>"
    assert str(UNREADABLE) == repr(UNREADABLE)
    assert not UNREADABLE
    assert copy.copy(UNREADABLE) is UNREADABLE
    assert copy.deepcopy(UNREADABLE) is UNREADABLE
    assert pickle.loads(pickle.dumps(UNREADABLE)) is UNREADABLE  # noqa: S301
    assert type(UNREADABLE)() is UNREADABLE


# --- field contract ------------------------------------------------------------------------------


def test_only_isnull_lookup_is_allowed(keys):
    keys(KEY_NEW)
    with_token = make_account(1)
    without = make_account(2, access=None)
    assert list(SmartcarAccount.objects.filter(access_token__isnull=True)) == [without]
    assert list(SmartcarAccount.objects.filter(access_token__isnull=False)) == [with_token]
    for lookup in (
        "access_token",
        "access_token__exact",
        "access_token__in",
        "access_token__contains",
    ):
        with pytest.raises(FieldError):
            SmartcarAccount.objects.filter(**{lookup: ACCESS if "in" not in lookup else [ACCESS]})
    with pytest.raises(FieldError):
        SmartcarAccount.objects.filter(access_token__length=3)


def test_rejects_non_text_values(keys):
    keys(KEY_NEW)
    with pytest.raises(TypeError):
        make_account(access=b"bytes-token")


def test_not_editable_in_forms():
    form_class = modelform_factory(SmartcarAccount, fields="__all__")
    assert "access_token" not in form_class.base_fields
    assert "refresh_token" not in form_class.base_fields


def test_deconstruct_round_trips():
    field = SmartcarAccount._meta.get_field("access_token")
    name, path, args, kwargs = field.deconstruct()
    assert (name, path, args, kwargs) == (
        "access_token",
        "vehicles.fields.EncryptedTextField",
        [],
        {"null": True},
    )
    rebuilt = EncryptedTextField(*args, **kwargs)
    assert rebuilt.null is True
    assert rebuilt.editable is False
    assert EncryptedTextField(editable=True).deconstruct()[3] == {"editable": True}


def test_default_is_text_and_a_text_default_passes_checks():
    assert EncryptedTextField().get_default() == ""
    assert EncryptedTextField(null=True).get_default() is None
    assert EncryptedTextField(default="")._check_str_default_value() == []


def test_full_clean_accepts_text(keys):
    keys(KEY_NEW)
    account = make_account()
    account.access_token = "new-token"
    account.full_clean()
    assert account.access_token == "new-token"


def test_serialization_carries_ciphertext_and_loads_back(keys):
    keys(KEY_NEW)
    account = make_account()
    dumped = serializers.serialize("json", [account])
    assert ACCESS not in dumped
    assert REFRESH not in dumped
    assert "encrypted:" in dumped
    SmartcarAccount.objects.all().delete()
    for obj in serializers.deserialize("json", dumped):
        obj.save()
    loaded = SmartcarAccount.objects.get(pk=account.pk)
    assert (loaded.access_token, loaded.refresh_token) == (ACCESS, REFRESH)


def test_serialized_unreadable_value_fails_to_load_instead_of_storing_garbage(keys):
    keys(KEY_RETIRED)
    account = make_account()
    keys(KEY_NEW)
    dumped = serializers.serialize("json", [SmartcarAccount.objects.get(pk=account.pk)])
    with pytest.raises(DeserializationError):
        list(serializers.deserialize("json", dumped))


def test_to_python_rejects_undecryptable_serialized_form(keys):
    keys(KEY_NEW)
    field = SmartcarAccount._meta.get_field("access_token")
    with pytest.raises(ValidationError):
        field.to_python("encrypted:not-base64!")
    with pytest.raises(ValidationError):
        field.to_python(12)
    assert field.to_python(None) is None
    assert field.to_python(UNREADABLE) is UNREADABLE
