"""`EncryptedTextField`: a text column stored as ciphertext under `TOKEN_ENCRYPTION_KEYS`.

Owns: the Python <-> database conversion of token columns, and the `UNREADABLE` sentinel that a
row gets when no configured key opens its value. Reading a bad row never raises (one bad account
must not turn a page or the poller into a 500); writing `UNREADABLE` back always raises, so a
token is never overwritten with garbage.

Must never: log or repr a token or a key, pickle values, or allow lookups on the ciphertext
(encryption is randomised, so `exact` could never match and would only leak intent).
"""

from __future__ import annotations

import base64
import binascii
import logging
from typing import Any, Final

# Imported for its side effect, at start-up: django-cryptography's AppConf puts
# CRYPTOGRAPHY_BACKEND on the settings object when first imported, and its signer reads it from
# there. First imported inside override_settings, that attribute would vanish with the override.
import django_cryptography.utils.crypto  # noqa: F401
from django.core.exceptions import ValidationError
from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.lookups import Lookup, Transform

from vehicles.crypto import TokenDecryptionError, decrypt_text, encrypt_text

logger = logging.getLogger(__name__)

# Prefix of the serialized (dumpdata) form: base64 ciphertext, never plaintext.
SERIALIZED_PREFIX: Final = "encrypted:"


class _Unreadable:
    """The value of an encrypted field whose stored ciphertext no configured key opens.

    Falsy, so `if account.access_token:` treats it like a missing token; compare with `is`.
    """

    _instance: _Unreadable | None = None

    def __new__(cls) -> _Unreadable:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "<unreadable encrypted value>"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return False

    # Model instances get copied (forms, tests, admin); the sentinel must stay the same object.
    def __copy__(self) -> _Unreadable:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> _Unreadable:
        return self

    def __reduce__(self) -> str:
        return "UNREADABLE"


UNREADABLE: Final = _Unreadable()


class UnreadableValueWriteError(ValueError):
    """Raised when code tries to store `UNREADABLE` (it would replace a token with garbage)."""


class EncryptedTextField(models.BinaryField):
    """Text (`str | None`) stored encrypted; reads of undecryptable rows give `UNREADABLE`.

    Not editable in forms by default. Only the `isnull` lookup is allowed.
    """

    description = "Text encrypted with TOKEN_ENCRYPTION_KEYS"
    supported_lookups = frozenset({"isnull"})

    # BinaryField already defaults to editable=False and its deconstruct() omits that default.

    def _check_str_default_value(self) -> list[Any]:
        # BinaryField forbids str defaults; ours holds text, so a str default is right.
        return []

    def get_lookup(self, lookup_name: str) -> type[Lookup] | None:
        if lookup_name not in self.supported_lookups:
            return None
        return super().get_lookup(lookup_name)

    def get_transform(self, lookup_name: str) -> type[Transform] | None:
        return None

    def get_default(self) -> Any:
        default = super().get_default()
        # BinaryField's implicit default is b""; ours is text.
        return "" if default == b"" else default

    def get_prep_value(self, value: Any) -> bytes | None:
        value = super().get_prep_value(value)
        if value is None:
            return None
        if value is UNREADABLE:
            raise UnreadableValueWriteError(
                f"Refusing to store an unreadable value in {self._label()}: "
                "set a new value or None instead."
            )
        if not isinstance(value, str):
            raise TypeError(f"{self._label()} stores str or None, not {type(value).__name__}.")
        return encrypt_text(value)

    def from_db_value(
        self, value: Any, expression: Any, connection: BaseDatabaseWrapper
    ) -> str | _Unreadable | None:
        if value is None:
            return None
        try:
            return decrypt_text(bytes(value))
        except TokenDecryptionError:
            # Where and what, never the value: the ciphertext is no secret without a key, but
            # there is nothing to learn from it in a log either.
            logger.warning(
                "Stored value of %s cannot be decrypted with any TOKEN_ENCRYPTION_KEYS key; "
                "it reads as UNREADABLE until replaced.",
                self._label(),
            )
            return UNREADABLE

    def to_python(self, value: Any) -> str | _Unreadable | None:
        # Called by full_clean() with the Python value, and by deserializers with the
        # serialized form (see value_to_string).
        if value is None or value is UNREADABLE:
            return value
        if isinstance(value, str) and value.startswith(SERIALIZED_PREFIX):
            try:
                blob = base64.b64decode(value[len(SERIALIZED_PREFIX) :], validate=True)
                return decrypt_text(blob)
            except (binascii.Error, TokenDecryptionError):
                raise ValidationError(
                    "Serialized value cannot be decrypted.", code="undecryptable"
                ) from None
        if isinstance(value, str):
            return value
        raise ValidationError("Enter text.", code="invalid")

    def value_to_string(self, obj: models.Model) -> str:
        """Serialized form for dumpdata: ciphertext (base64), so fixtures never hold plaintext."""
        value: Any = self.value_from_object(obj)
        if value is None:
            return ""
        if value is UNREADABLE:
            # Loading this back fails loudly (to_python) rather than storing an empty token.
            return SERIALIZED_PREFIX
        return SERIALIZED_PREFIX + base64.b64encode(encrypt_text(value)).decode("ascii")

    def _label(self) -> str:
        model = getattr(self, "model", None)
        if model is None:
            return f"field {self.name}"
        return f"{model._meta.label}.{self.name}"
