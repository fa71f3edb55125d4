"""System checks for the Bearer JWT settings (SECURITY.md B1, B4, B5, B6).

With DEBUG off, a JWT configuration that would accept forged tokens, or refuse every token,
stops `runserver`, `migrate` and `check` with one line naming the setting. With DEBUG on nothing
is checked, so a developer can try any configuration. Messages name settings, never values.

    core.E001  unknown or empty JWT_ALGORITHMS
    core.E002  JWT_ALGORITHMS mixes key families (HS* beside RS*/ES*)
    core.E003  HS* with a JWT_SECRET shorter than the algorithm needs (32 bytes for HS256)
    core.E004  RS*/ES* with neither JWT_PUBLIC_KEY nor JWT_JWKS_URL
    core.E005  JWT_LEEWAY_SECONDS below 0 or above 60
    core.E006  JWT_PUBLIC_KEY is not a usable public key for JWT_ALGORITHMS
    core.E007  JWT_JWKS_URL is not https
    core.E008  JWT_JWKS_CACHE_SECONDS is not positive
    core.W001  both JWT_PUBLIC_KEY and JWT_JWKS_URL are set (the public key wins)
"""

from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, register
from django.core.checks import Warning as CheckWarning
from jwt.algorithms import get_default_algorithms

from core.jwt_tokens import (
    ALGORITHM_FAMILIES,
    HMAC_MIN_KEY_BYTES,
    MAX_LEEWAY_SECONDS,
    JWTConfigurationError,
    algorithm_family,
)


@register(Tags.security)
def check_jwt_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    if settings.DEBUG:
        return []
    messages: list[CheckMessage] = _leeway_messages() + _jwks_cache_messages()
    algorithms = list(settings.JWT_ALGORITHMS)
    try:
        family = algorithm_family(algorithms)
    except JWTConfigurationError:
        unknown = not algorithms or any(name not in ALGORITHM_FAMILIES for name in algorithms)
        messages.append(_algorithms_error(unknown=unknown))
        return messages
    if family == "HS":
        messages += _secret_messages(algorithms)
    else:
        messages += _asymmetric_key_messages(algorithms)
    return messages


def _algorithms_error(*, unknown: bool) -> Error:
    if unknown:
        return Error(
            "JWT_ALGORITHMS is empty or names an algorithm we do not support.",
            hint="Use one of: " + ", ".join(ALGORITHM_FAMILIES) + '. "none" is never accepted.',
            id="core.E001",
        )
    return Error(
        "JWT_ALGORITHMS mixes HS* with RS*/ES* algorithms.",
        hint="Pin one family (RFC 8725 §3.1): HS256 with JWT_SECRET, or the issuer's one "
        "asymmetric algorithm with JWT_PUBLIC_KEY or JWT_JWKS_URL.",
        id="core.E002",
    )


def _secret_messages(algorithms: list[str]) -> list[CheckMessage]:
    needed = max(HMAC_MIN_KEY_BYTES[name] for name in algorithms)
    if len(str(settings.JWT_SECRET).encode()) >= needed:
        return []
    return [
        Error(
            f"JWT_SECRET is shorter than {needed} bytes.",
            hint=f"Use at least {needed} random bytes for {', '.join(algorithms)} (RFC 7518 §3.2), "
            "e.g. python -c 'import secrets; print(secrets.token_urlsafe(48))'.",
            id="core.E003",
        )
    ]


def _asymmetric_key_messages(algorithms: list[str]) -> list[CheckMessage]:
    public_key, jwks_url = settings.JWT_PUBLIC_KEY, settings.JWT_JWKS_URL
    if not public_key and not jwks_url:
        return [
            Error(
                f"JWT_ALGORITHMS is {', '.join(algorithms)}, but neither JWT_PUBLIC_KEY nor "
                "JWT_JWKS_URL is set.",
                hint="Set the issuer's PEM public key, or the URL of its JWK Set.",
                id="core.E004",
            )
        ]
    messages: list[CheckMessage] = []
    if public_key:
        if not _public_key_usable(public_key, algorithms):
            messages.append(
                Error(
                    "JWT_PUBLIC_KEY is not a PEM public key of the required type and size for "
                    f"{', '.join(algorithms)}.",
                    hint="RSA keys need at least 2048 bits; ES256 needs a P-256 key.",
                    id="core.E006",
                )
            )
        if jwks_url:
            messages.append(
                CheckWarning(
                    "Both JWT_PUBLIC_KEY and JWT_JWKS_URL are set; JWT_PUBLIC_KEY is used.",
                    hint="Unset one of them.",
                    id="core.W001",
                )
            )
    elif urlsplit(jwks_url).scheme != "https":
        messages.append(
            Error(
                "JWT_JWKS_URL must be an https URL.",
                hint="Keys fetched over plain HTTP can be replaced in transit.",
                id="core.E007",
            )
        )
    return messages


def _public_key_usable(public_key: str, algorithms: list[str]) -> bool:
    """True when PyJWT can verify every configured algorithm with this key at full strength."""
    available = get_default_algorithms()
    for name in algorithms:
        algorithm = available[name]
        try:
            prepared = algorithm.prepare_key(public_key)
        except Exception:  # noqa: BLE001  (PyJWT raises several types for an unusable key)
            return False
        if getattr(prepared, "private_numbers", None) is not None:
            # A private key here means the secret half is sitting in the environment.
            return False
        if algorithm.check_key_length(prepared):
            return False
    return True


def _leeway_messages() -> list[CheckMessage]:
    leeway = settings.JWT_LEEWAY_SECONDS
    if isinstance(leeway, int) and 0 <= leeway <= MAX_LEEWAY_SECONDS:
        return []
    return [
        Error(
            f"JWT_LEEWAY_SECONDS must be between 0 and {MAX_LEEWAY_SECONDS}.",
            hint="30 is the default; more lets expired tokens live longer.",
            id="core.E005",
        )
    ]


def _jwks_cache_messages() -> list[CheckMessage]:
    if not settings.JWT_JWKS_URL or settings.JWT_JWKS_CACHE_SECONDS > 0:
        return []
    return [
        Error(
            "JWT_JWKS_CACHE_SECONDS must be positive.",
            hint="300 is the default.",
            id="core.E008",
        )
    ]
