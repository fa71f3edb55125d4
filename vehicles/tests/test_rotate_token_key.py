"""`manage.py rotate_token_key` (SECURITY.md D3): every row moves to the first key, counts printed."""

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.models.signals import post_save, pre_save
from django.test.utils import CaptureQueriesContext

from vehicles.crypto import needs_reencryption
from vehicles.fields import UNREADABLE
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


def make_account(n: int, refresh: str | None = REFRESH) -> SmartcarAccount:
    user = get_user_model().objects.create(username=f"user-{n}")
    return SmartcarAccount.objects.create(
        owner=user,
        smartcar_user_id=f"sc-user-{n}",
        access_token=f"{ACCESS}-{n}",
        refresh_token=refresh,
    )


def raw_columns(pk: int) -> tuple[bytes | None, bytes | None]:
    table = connection.ops.quote_name(SmartcarAccount._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT access_token, refresh_token FROM {table} WHERE id = %s",  # noqa: S608
            [pk],
        )
        row = cursor.fetchone()
    return tuple(None if value is None else bytes(value) for value in row)


def rotate(*args: str) -> str:
    out = StringIO()
    call_command("rotate_token_key", *args, stdout=out)
    return out.getvalue()


def test_rotation_reencrypts_every_row_and_old_key_can_then_go(keys):
    keys(KEY_OLD)
    old_rows = [make_account(n) for n in range(3)]
    empty_refresh = make_account(3, refresh=None)
    keys(KEY_NEW, KEY_OLD)
    current = make_account(4)

    output = rotate()

    assert (
        "vehicles.SmartcarAccount.access_token: re-encrypted 4, already current 1, "
        "unreadable 0, empty 0"
    ) in output
    assert (
        "vehicles.SmartcarAccount.refresh_token: re-encrypted 3, already current 1, "
        "unreadable 0, empty 1"
    ) in output
    for row in [*old_rows, empty_refresh, current]:
        access, refresh = raw_columns(row.pk)
        assert needs_reencryption(access) is False
        assert refresh is None or needs_reencryption(refresh) is False
    keys(KEY_NEW)
    loaded = {a.pk: a for a in SmartcarAccount.objects.all()}
    assert len(loaded) == 5
    for n, row in enumerate([*old_rows, empty_refresh, current]):
        assert loaded[row.pk].access_token == f"{ACCESS}-{n}"
        assert loaded[row.pk].refresh_token == (None if row is empty_refresh else REFRESH)
    for secret in (ACCESS, REFRESH, KEY_OLD, KEY_NEW):
        assert secret not in output


def test_rotation_uses_update_without_signals_or_timestamps(keys):
    keys(KEY_OLD)
    account = make_account(1)
    keys(KEY_NEW, KEY_OLD)
    seen: list[object] = []

    def record(sender, **kwargs):
        seen.append(sender)

    pre_save.connect(record, sender=SmartcarAccount)
    post_save.connect(record, sender=SmartcarAccount)
    try:
        rotate()
    finally:
        pre_save.disconnect(record, sender=SmartcarAccount)
        post_save.disconnect(record, sender=SmartcarAccount)
    assert seen == []
    reloaded = SmartcarAccount.objects.get(pk=account.pk)
    assert reloaded.updated_at == account.updated_at
    assert needs_reencryption(raw_columns(account.pk)[0]) is False


def test_rotation_walks_every_batch(keys):
    keys(KEY_OLD)
    rows = [make_account(n) for n in range(5)]
    keys(KEY_NEW, KEY_OLD)
    output = rotate("--batch-size", "2")
    assert "access_token: re-encrypted 5, already current 0" in output
    keys(KEY_NEW)
    assert all(a.tokens_readable for a in SmartcarAccount.objects.all())
    assert SmartcarAccount.objects.count() == len(rows)


def test_dry_run_counts_and_changes_nothing(keys):
    keys(KEY_OLD)
    account = make_account(1)
    before = raw_columns(account.pk)
    keys(KEY_NEW, KEY_OLD)
    output = rotate("--dry-run")
    assert "access_token: would re-encrypt 1, already current 0, unreadable 0, empty 0" in output
    assert "Dry run: nothing was changed." in output
    assert raw_columns(account.pk) == before


def test_unreadable_rows_are_left_alone_and_exit_non_zero(keys):
    keys(KEY_RETIRED)
    lost = make_account(1)
    lost_before = raw_columns(lost.pk)
    keys(KEY_OLD)
    fine = make_account(2)
    keys(KEY_NEW, KEY_OLD)
    out = StringIO()
    with pytest.raises(CommandError, match="2 value\\(s\\) cannot be decrypted"):
        call_command("rotate_token_key", stdout=out)
    assert (
        "access_token: re-encrypted 1, already current 0, unreadable 1, empty 0" in out.getvalue()
    )
    assert raw_columns(lost.pk) == lost_before
    assert needs_reencryption(raw_columns(fine.pk)[0]) is False
    keys(KEY_NEW)
    assert SmartcarAccount.objects.get(pk=fine.pk).access_token == f"{ACCESS}-2"
    assert SmartcarAccount.objects.get(pk=lost.pk).access_token is UNREADABLE


def test_dry_run_also_fails_on_unreadable_rows(keys):
    keys(KEY_RETIRED)
    make_account(1)
    keys(KEY_NEW)
    with pytest.raises(CommandError):
        rotate("--dry-run")


def test_batch_size_must_be_positive(keys):
    keys(KEY_NEW)
    with pytest.raises(CommandError, match="batch-size"):
        rotate("--batch-size", "0")


@pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="SQLite has no row locks; its IMMEDIATE transactions already serialize writers",
)
def test_rotation_locks_each_batch_it_rewrites(keys):
    """A token refreshed while the command runs must not be overwritten with its older value."""
    keys(KEY_OLD)
    make_account(1)
    keys(KEY_NEW, KEY_OLD)
    with CaptureQueriesContext(connection) as queries:
        rotate()
    selects = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("SELECT")]
    assert selects
    assert all("FOR UPDATE" in sql for sql in selects)
