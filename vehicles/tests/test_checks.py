"""System check vehicles.E00x for TOKEN_ENCRYPTION_KEYS (SECURITY.md D4: fail closed)."""

import pytest
from django.core import checks

from vehicles.checks import check_token_encryption_keys, register_checks

SECRET = "django-secret-key-" + "s" * 50
FALLBACK = "django-old-secret-" + "f" * 50
KEY = "token-key-good-" + "g" * 40


@pytest.fixture
def production(settings):
    settings.DEBUG = False
    settings.SECRET_KEY = SECRET
    settings.SECRET_KEY_FALLBACKS = [FALLBACK]
    return settings


def test_good_keys_pass(production):
    production.TOKEN_ENCRYPTION_KEYS = [KEY, "token-key-older-" + "o" * 40]
    assert check_token_encryption_keys() == []


@pytest.mark.parametrize(
    ("configured", "expected_id"),
    [
        ([], "vehicles.E001"),
        (["too-short-key"], "vehicles.E002"),
        ([SECRET], "vehicles.E003"),
        ([KEY, FALLBACK], "vehicles.E003"),
        ([KEY, KEY], "vehicles.E004"),
        (KEY, "vehicles.E005"),
    ],
)
def test_unfit_keys_are_errors_without_values(production, configured, expected_id):
    production.TOKEN_ENCRYPTION_KEYS = configured
    messages = check_token_encryption_keys()
    assert [m.id for m in messages] == [expected_id]
    assert all(m.level == checks.ERROR for m in messages)
    text = " ".join(f"{m.msg} {m.hint}" for m in messages)
    for value in (SECRET, FALLBACK, KEY, "too-short-key"):
        assert value not in text


def test_debug_reports_nothing(settings):
    settings.DEBUG = True
    settings.TOKEN_ENCRYPTION_KEYS = ["too-short-key"]
    assert check_token_encryption_keys() == []


def test_registered_check_fails_startup_checks(production):
    register_checks()
    register_checks()  # ready() may run twice in tests; registering again is harmless
    production.TOKEN_ENCRYPTION_KEYS = [SECRET]
    errors = [
        m for m in checks.run_checks(tags=[checks.Tags.security]) if m.id.startswith("vehicles.")
    ]
    assert [m.id for m in errors] == ["vehicles.E003"]
    assert all(m.is_serious() for m in errors)
