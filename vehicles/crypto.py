"""Encryption of Smartcar tokens at rest, with keys from `TOKEN_ENCRYPTION_KEYS` alone.

Owns: deriving keys from `TOKEN_ENCRYPTION_KEYS` (the first encrypts, every one decrypts),
encrypting and decrypting text, telling which blobs need re-encryption, and validating the keys.
The cipher is django-cryptography's `FernetBytes` (AES-CBC, then HMAC-SHA256 over version,
timestamp, IV and ciphertext), but handed our own AES key and our own `FernetSigner` key: used
as-is, django-cryptography signs with SECRET_KEY, so rotating SECRET_KEY would make every stored
token unreadable (SECURITY.md D2). Values are UTF-8 text, never pickled.

Must never: use SECRET_KEY, put a key or a plaintext in an exception message or a log line,
or import models (settings may import this module to validate keys).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

if TYPE_CHECKING:
    from django_cryptography.utils.crypto import FernetBytes

MIN_KEY_LENGTH = 32

# HKDF turns one configured string into two independent 256-bit keys. The labels are part of the
# stored format: changing one makes every stored token unreadable.
_HKDF_SALT = b"smartcar-ev-backend/token-encryption"
_AES_INFO = b"token-encryption/aes-256-cbc/v1"
_HMAC_INFO = b"token-encryption/hmac-sha256/v1"

# Settings that change which ciphers `_keyring()` builds or whether it may build them.
_CACHE_SETTINGS = frozenset(
    {"TOKEN_ENCRYPTION_KEYS", "SECRET_KEY", "SECRET_KEY_FALLBACKS", "DEBUG"}
)


class TokenDecryptionError(Exception):
    """No configured key opens this blob (retired key, corruption, or not our format)."""

    def __init__(self) -> None:
        super().__init__(
            "stored token cannot be decrypted with any key in TOKEN_ENCRYPTION_KEYS "
            "(retired key or corrupted value)"
        )


# --- key validation (pure; also usable from settings) --------------------------------------------


def token_key_problems(keys: Sequence[str], secret_keys: Sequence[str]) -> list[str]:
    """One human line per problem with `keys`; empty when they are fit for production.

    `secret_keys` is SECRET_KEY followed by SECRET_KEY_FALLBACKS. Lines name key positions,
    never key values.
    """
    return [message for _code, message in _key_problems(keys, secret_keys)]


def _key_problems(keys: Sequence[str], secret_keys: Sequence[str]) -> list[tuple[str, str]]:
    """(code, message) pairs; the code is the stable suffix of the system check id."""
    if isinstance(keys, str) or not all(isinstance(key, str) for key in keys):
        return [("E005", "TOKEN_ENCRYPTION_KEYS must be a list of strings.")]
    if not keys:
        return [("E001", "TOKEN_ENCRYPTION_KEYS is empty: tokens cannot be encrypted.")]
    problems: list[tuple[str, str]] = []
    secrets = {secret for secret in secret_keys if secret}
    seen: set[str] = set()
    for position, key in enumerate(keys, start=1):
        label = f"TOKEN_ENCRYPTION_KEYS key #{position}"
        if len(key) < MIN_KEY_LENGTH:
            problems.append(("E002", f"{label} is shorter than {MIN_KEY_LENGTH} characters."))
            continue
        if key in secrets:
            problems.append(("E003", f"{label} equals SECRET_KEY or one of SECRET_KEY_FALLBACKS."))
        if key in seen:
            problems.append(("E004", f"{label} repeats an earlier key."))
        seen.add(key)
    return problems


def configured_key_problems() -> list[tuple[str, str]]:
    """`_key_problems` for the current settings, as (code, message) pairs for the system check."""
    return _key_problems(_configured_keys(), _secret_keys())


def _configured_keys() -> Sequence[str]:
    return getattr(settings, "TOKEN_ENCRYPTION_KEYS", [])


def _secret_keys() -> list[str]:
    return [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]


# --- derived keys, cached ------------------------------------------------------------------------

_cache: dict[tuple[str, ...], tuple[FernetBytes, ...]] = {}
_cache_lock = threading.Lock()


def _hkdf(material: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=_HKDF_SALT, info=info).derive(material)


def _derive_cipher(key: str) -> FernetBytes:
    """A django-cryptography cipher whose AES key and HMAC key both come from `key` alone."""
    # Imported here: django_cryptography reads Django settings when imported.
    from django_cryptography.core.signing import FernetSigner
    from django_cryptography.utils.crypto import FernetBytes

    material = key.encode("utf-8")
    signer = FernetSigner(key=_hkdf(material, _HMAC_INFO), algorithm="sha256")
    return FernetBytes(key=_hkdf(material, _AES_INFO), signer=signer)


def _keyring() -> tuple[FernetBytes, ...]:
    """The ciphers for TOKEN_ENCRYPTION_KEYS, first one first; derived once per key set."""
    keys = _configured_keys()
    # A str would become a tuple of characters here; validation below refuses it before caching.
    cache_key = tuple(keys)
    ring = _cache.get(cache_key)
    if ring is not None:
        return ring
    with _cache_lock:
        ring = _cache.get(cache_key)
        if ring is None:
            problems = _key_problems(keys, _secret_keys())
            # Fail closed even where system checks do not run (e.g. under gunicorn). With DEBUG on
            # only an unusable key list is refused, so a developer can try any key.
            fatal = (
                problems
                if not settings.DEBUG
                else [p for p in problems if p[0] in {"E001", "E005"}]
            )
            if fatal:
                raise ImproperlyConfigured(" ".join(message for _code, message in fatal))
            ring = tuple(_derive_cipher(key) for key in keys)
            _cache.clear()
            _cache[cache_key] = ring
    return ring


@receiver(setting_changed)
def _drop_cached_keys(*, setting: str, **kwargs: Any) -> None:
    # Tests override these settings; keys derived from the old values must not outlive them.
    if setting in _CACHE_SETTINGS:
        with _cache_lock:
            _cache.clear()


# --- public operations ---------------------------------------------------------------------------


def encrypt_text(plaintext: str) -> bytes:
    """Ciphertext of `plaintext` under the first key (fresh IV each call)."""
    if not isinstance(plaintext, str):
        raise TypeError("encrypt_text() takes str")
    return _keyring()[0].encrypt(plaintext.encode("utf-8"))


def decrypt_text(blob: bytes) -> str:
    """The plaintext of `blob`, trying every key; raises `TokenDecryptionError` if none opens it."""
    return _open(blob)[0]


def needs_reencryption(blob: bytes) -> bool:
    """True when `blob` opens only under a key other than the first (a rotation candidate)."""
    try:
        return _open(blob)[1] > 0
    except TokenDecryptionError:
        return False


def reencrypt(blob: bytes) -> bytes | None:
    """MultiFernet `rotate()` semantics: the blob re-encrypted under the first key, or None when
    it already is. Raises `TokenDecryptionError` when no key opens it."""
    plaintext, index = _open(blob)
    if index == 0:
        return None
    return encrypt_text(plaintext)


def _open(blob: bytes) -> tuple[str, int]:
    # The HMAC is checked before any decryption, so a wrong key or a flipped byte fails there.
    from django_cryptography.core.signing import BadSignature
    from django_cryptography.utils.crypto import InvalidToken

    data = bytes(blob)
    for index, cipher in enumerate(_keyring()):
        try:
            return cipher.decrypt(data).decode("utf-8"), index
        except (BadSignature, InvalidToken, ValueError):
            continue
    raise TokenDecryptionError from None
