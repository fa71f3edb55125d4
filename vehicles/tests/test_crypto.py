"""vehicles.crypto: keys from TOKEN_ENCRYPTION_KEYS only, rotation, fail-closed validation (D2-D5)."""

from unittest import mock

import pytest
from django.core.exceptions import ImproperlyConfigured

from vehicles import crypto
from vehicles.crypto import (
    TokenDecryptionError,
    decrypt_text,
    encrypt_text,
    needs_reencryption,
    reencrypt,
    token_key_problems,
)

KEY_OLD = "token-key-old-" + "o" * 40
KEY_NEW = "token-key-new-" + "n" * 40
KEY_RETIRED = "token-key-retired-" + "r" * 40
SECRET = "django-secret-key-" + "s" * 50
PLAIN = "tok-PLAIN-123"


@pytest.fixture
def keys(settings):
    """Set TOKEN_ENCRYPTION_KEYS (the settings fixture sends setting_changed, as in production
    reloads through override_settings)."""

    def use(*values: str) -> None:
        settings.TOKEN_ENCRYPTION_KEYS = list(values)

    return use


def test_round_trip_of_text_including_unicode_and_empty(keys):
    keys(KEY_NEW)
    for text in (PLAIN, "", "ключ-🚗-é"):
        assert decrypt_text(encrypt_text(text)) == text


def test_ciphertext_hides_plaintext_and_is_randomised(keys):
    keys(KEY_NEW)
    first, second = encrypt_text(PLAIN), encrypt_text(PLAIN)
    assert PLAIN.encode() not in first
    assert first != second


def test_payload_is_utf8_text_not_pickle(keys):
    keys(KEY_NEW)
    # Opened with the raw cipher, the payload is exactly the UTF-8 bytes: nothing is unpickled.
    assert crypto._keyring()[0].decrypt(encrypt_text(PLAIN)) == PLAIN.encode()


def test_encrypt_refuses_non_text(keys):
    keys(KEY_NEW)
    with pytest.raises(TypeError):
        encrypt_text(b"bytes")  # type: ignore[arg-type]


def test_changing_secret_key_leaves_tokens_readable(keys, settings):
    """D2: django-cryptography would sign with SECRET_KEY; ours never uses it."""
    keys(KEY_NEW)
    blob = encrypt_text(PLAIN)
    settings.SECRET_KEY = "another-secret-key-" + "x" * 50
    settings.SECRET_KEY_FALLBACKS = []
    assert decrypt_text(blob) == PLAIN


def test_aes_and_hmac_keys_are_distinct_derivations_of_the_token_key():
    cipher = crypto._derive_cipher(KEY_NEW)
    aes_key, hmac_key = bytes(cipher.key), bytes(cipher.signer.key)
    assert len(aes_key) == 32
    assert len(hmac_key) == 32
    assert aes_key != hmac_key
    assert KEY_NEW.encode() not in (aes_key, hmac_key)
    # Different token keys give different keys.
    other = crypto._derive_cipher(KEY_OLD)
    assert bytes(other.key) != aes_key


def test_first_key_encrypts_and_every_key_decrypts(keys):
    """D3: writes use the first key; blobs under an older listed key stay readable."""
    keys(KEY_OLD)
    old_blob = encrypt_text(PLAIN)
    keys(KEY_NEW, KEY_OLD)
    new_blob = encrypt_text(PLAIN)
    assert decrypt_text(old_blob) == PLAIN
    assert decrypt_text(new_blob) == PLAIN
    assert needs_reencryption(old_blob) is True
    assert needs_reencryption(new_blob) is False
    keys(KEY_NEW)
    assert decrypt_text(new_blob) == PLAIN
    with pytest.raises(TokenDecryptionError):
        decrypt_text(old_blob)


def test_reencrypt_moves_blob_to_first_key_and_leaves_current_ones(keys):
    keys(KEY_OLD)
    old_blob = encrypt_text(PLAIN)
    keys(KEY_NEW, KEY_OLD)
    fresh = reencrypt(old_blob)
    assert fresh is not None
    assert reencrypt(fresh) is None
    keys(KEY_NEW)
    assert decrypt_text(fresh) == PLAIN


def test_retired_key_raises_error_without_secrets(keys):
    keys(KEY_RETIRED)
    blob = encrypt_text(PLAIN)
    keys(KEY_NEW)
    with pytest.raises(TokenDecryptionError) as caught:
        decrypt_text(blob)
    text = str(caught.value) + repr(caught.value)
    for secret in (PLAIN, KEY_RETIRED, KEY_NEW):
        assert secret not in text
    # Nothing chained either (the library's BadSignature message quotes signature bytes).
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None
    assert needs_reencryption(blob) is False
    with pytest.raises(TokenDecryptionError):
        reencrypt(blob)


@pytest.mark.parametrize("position", [0, 5, 12, 30, -40, -1])
def test_any_flipped_byte_is_rejected(keys, position):
    """D5: version, timestamp, IV, ciphertext and MAC are all authenticated."""
    keys(KEY_NEW)
    blob = bytearray(encrypt_text(PLAIN))
    blob[position] ^= 0x01
    with pytest.raises(TokenDecryptionError):
        decrypt_text(bytes(blob))


@pytest.mark.parametrize("junk", [b"", b"\x80", b"not a token at all", b"\x80" + b"\x00" * 80])
def test_junk_is_rejected(keys, junk):
    keys(KEY_NEW)
    with pytest.raises(TokenDecryptionError):
        decrypt_text(junk)


def test_derivation_runs_once_per_key_set_and_again_after_settings_change(keys):
    keys(KEY_NEW, KEY_OLD)
    with mock.patch.object(crypto, "_derive_cipher", wraps=crypto._derive_cipher) as derive:
        blobs = [encrypt_text(f"{PLAIN}-{i}") for i in range(20)]
        assert [decrypt_text(blob) for blob in blobs] == [f"{PLAIN}-{i}" for i in range(20)]
        assert derive.call_count == 2
        keys(KEY_NEW)
        decrypt_text(blobs[0])
        decrypt_text(blobs[1])
        assert derive.call_count == 3


# --- fail closed ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("configured", "expected"),
    [
        ([], "empty"),
        (["short-key"], "shorter than 32"),
        ([SECRET], "equals SECRET_KEY"),
    ],
)
def test_production_refuses_to_use_unfit_keys(settings, configured, expected):
    settings.DEBUG = False
    settings.SECRET_KEY = SECRET
    settings.TOKEN_ENCRYPTION_KEYS = configured
    with pytest.raises(ImproperlyConfigured, match=expected) as caught:
        encrypt_text(PLAIN)
    assert SECRET not in str(caught.value)
    assert "short-key" not in str(caught.value)


def test_debug_allows_a_short_key_but_never_no_key(settings):
    settings.DEBUG = True
    settings.TOKEN_ENCRYPTION_KEYS = ["short-key"]
    assert decrypt_text(encrypt_text(PLAIN)) == PLAIN
    settings.TOKEN_ENCRYPTION_KEYS = []
    with pytest.raises(ImproperlyConfigured):
        encrypt_text(PLAIN)


def test_a_string_instead_of_a_list_is_refused(settings):
    settings.DEBUG = True
    settings.TOKEN_ENCRYPTION_KEYS = KEY_NEW
    with pytest.raises(ImproperlyConfigured, match="list of strings"):
        encrypt_text(PLAIN)


def test_token_key_problems_accepts_good_keys():
    assert token_key_problems([KEY_NEW, KEY_OLD], [SECRET]) == []


@pytest.mark.parametrize(
    ("configured", "secrets", "expected"),
    [
        ([], [SECRET], "is empty"),
        ([KEY_NEW, "x" * 31], [SECRET], "key #2 is shorter than 32 characters"),
        ([SECRET], [SECRET], "key #1 equals SECRET_KEY"),
        (
            [KEY_NEW, KEY_OLD],
            [SECRET, KEY_OLD],
            "key #2 equals SECRET_KEY or one of SECRET_KEY_FALLBACKS",
        ),
        ([KEY_NEW, KEY_NEW], [SECRET], "key #2 repeats an earlier key"),
        (KEY_NEW, [SECRET], "list of strings"),
        ([KEY_NEW, None], [SECRET], "list of strings"),
    ],
)
def test_token_key_problems_reports_each_problem_without_values(configured, secrets, expected):
    problems = token_key_problems(configured, secrets)
    assert len(problems) == 1
    assert expected in problems[0]
    for value in (KEY_NEW, KEY_OLD, SECRET, "x" * 31):
        assert value not in problems[0]


def test_a_key_of_exactly_32_characters_is_long_enough():
    assert token_key_problems(["k" * 32], [SECRET]) == []


def test_secret_key_change_revalidates_cached_keys(settings, keys):
    """The derived-key cache must not let a key that now equals SECRET_KEY slip through."""
    settings.DEBUG = False
    keys(KEY_NEW)
    encrypt_text(PLAIN)
    settings.SECRET_KEY = KEY_NEW
    with pytest.raises(ImproperlyConfigured, match="equals SECRET_KEY"):
        encrypt_text(PLAIN)
