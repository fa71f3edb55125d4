"""System check for TOKEN_ENCRYPTION_KEYS (SECURITY.md D4: fail closed).

With DEBUG off, keys unfit for production stop `runserver`, `migrate` and `check` with one line
each. With DEBUG on nothing is reported, as in `core.checks`. Messages name key positions and
settings, never values. `vehicles.crypto` refuses to encrypt or decrypt under the same
conditions, so a server started without checks (gunicorn) fails closed too.

    vehicles.E001  TOKEN_ENCRYPTION_KEYS is empty
    vehicles.E002  a key is shorter than 32 characters
    vehicles.E003  a key equals SECRET_KEY or one of SECRET_KEY_FALLBACKS
    vehicles.E004  a key is listed twice
    vehicles.E005  TOKEN_ENCRYPTION_KEYS is not a list of strings
"""

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, register

from vehicles.crypto import configured_key_problems

_HINT = (
    "Generate a key with python -c 'import secrets; print(secrets.token_urlsafe(48))', put it "
    "first in TOKEN_ENCRYPTION_KEYS (comma-separated) and keep older keys after it until "
    "`manage.py rotate_token_key` has run."
)


def check_token_encryption_keys(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    if settings.DEBUG:
        return []
    return [
        Error(message, hint=_HINT, id=f"vehicles.{code}")
        for code, message in configured_key_problems()
    ]


def register_checks() -> None:
    """Called from `VehiclesConfig.ready()`; registering twice is harmless (a set)."""
    register(check_token_encryption_keys, Tags.security)
