"""Verify (and, for local use, mint) the Bearer JWTs that the product's own login issues.

This module owns the rules a token must meet: one algorithm family pinned by `JWT_ALGORITHMS`
(RFC 8725 §3.1: never HS* beside RS*/ES*, so a public key can never be used as an HMAC secret),
`exp`, `iat` and the user claim required, `nbf`/`iat` checked with a leeway of at most 60 s,
`JWT_AUDIENCE`/`JWT_ISSUER` enforced when set, short keys refused, asymmetric keys from
`JWT_PUBLIC_KEY` or a JWK Set chosen by `kid` only. `jku`, `x5u` and `jwk` headers are never
followed: the key always comes from settings.

It must never put a token, a key or PyJWT's own message text into an exception, a log line or a
repr: a refused token raises `InvalidJWTError`, whose `reason` is a short code from our own list.
Configuration mistakes raise `JWTConfigurationError` (the system checks in `core.checks` stop
start-up on the same mistakes when DEBUG is off).
"""

import functools
import logging
import time
from collections.abc import Sequence
from typing import Any

import jwt
import requests
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver
from jwt.exceptions import InvalidSubjectError, PyJWKClientConnectionError

logger = logging.getLogger(__name__)

# The algorithms we accept in JWT_ALGORITHMS and the key family each one needs. PS* verify with
# an RSA key, so they share the RS family. "none" and EdDSA are deliberately absent.
ALGORITHM_FAMILIES: dict[str, str] = {
    "HS256": "HS",
    "HS384": "HS",
    "HS512": "HS",
    "RS256": "RS",
    "RS384": "RS",
    "RS512": "RS",
    "PS256": "RS",
    "PS384": "RS",
    "PS512": "RS",
    "ES256": "ES",
    "ES384": "ES",
    "ES512": "ES",
}
# RFC 7518 §3.2: an HMAC key at least as long as the hash output. PyJWT enforces the same
# figure when `enforce_minimum_key_length` is on, so a shorter secret refuses every token.
HMAC_MIN_KEY_BYTES: dict[str, int] = {"HS256": 32, "HS384": 48, "HS512": 64}
MAX_LEEWAY_SECONDS = 60
# Far above any real token (a few hundred bytes), far below a DoS-sized header.
MAX_TOKEN_LENGTH = 8192
# (connect, read) for the JWK Set fetch: it holds PyJWKClient's lock, so it must be short.
JWKS_TIMEOUT = (3.05, 5.0)


class InvalidJWTError(Exception):
    """The token was refused. `reason` is a short code from our own list, safe to log."""

    def __init__(self, reason: str = "invalid") -> None:
        self.reason = reason
        super().__init__(f"The bearer token is not valid ({reason}).")


class JWTConfigurationError(ImproperlyConfigured):
    """The JWT settings cannot work (mixed families, no key, unknown algorithm)."""


def algorithm_family(algorithms: Sequence[str]) -> str:
    """The one key family ("HS", "RS" or "ES") that `algorithms` pins, or raise.

    Raises JWTConfigurationError for an empty list, an unknown algorithm or a mix of families.
    """
    if not algorithms:
        raise JWTConfigurationError("JWT_ALGORITHMS is empty.")
    unknown = [name for name in algorithms if name not in ALGORITHM_FAMILIES]
    if unknown:
        raise JWTConfigurationError(
            f"JWT_ALGORITHMS has unsupported algorithm(s): {', '.join(map(str, unknown))}."
        )
    families = {ALGORITHM_FAMILIES[name] for name in algorithms}
    if len(families) > 1:
        raise JWTConfigurationError(
            "JWT_ALGORITHMS mixes key families "
            f"({', '.join(sorted(families))}); pin one family only."
        )
    return families.pop()


def configured_audiences() -> list[str]:
    """JWT_AUDIENCE as a list (comma-separated); empty when no audience is enforced."""
    return [part.strip() for part in str(settings.JWT_AUDIENCE).split(",") if part.strip()]


def decode_jwt(token: str) -> dict[str, Any]:
    """Verify `token` against the JWT settings and return its claims.

    The user claim (`JWT_USER_CLAIM`) must be a non-empty string: RFC 7519 makes `sub` a string,
    PyJWT ≥2.10 refuses a numeric `sub`, and we refuse numbers under any other claim name too,
    so that "42" and 42 never name two different users.

    Raises InvalidJWTError for any token that is not acceptable (including a JWK Set that cannot
    be fetched), JWTConfigurationError when the settings cannot verify anything.
    """
    algorithms = list(settings.JWT_ALGORITHMS)
    family = algorithm_family(algorithms)
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH:
        raise InvalidJWTError("malformed")
    user_claim = settings.JWT_USER_CLAIM
    audiences = configured_audiences()
    issuer = settings.JWT_ISSUER or None
    # PyJWT requires `aud` and `iss` itself whenever an audience or issuer is passed in.
    required = ["exp", "iat", user_claim]
    try:
        key = _verification_key(token, family)
        decoded = jwt.decode_complete(
            token,
            key=key,
            algorithms=algorithms,
            audience=_audience_argument(audiences),
            issuer=issuer,
            leeway=settings.JWT_LEEWAY_SECONDS,
            options={
                "require": required,
                # RFC 8725 §3.9: with one audience, `aud` must be exactly it (no list tricks).
                "strict_aud": len(audiences) == 1,
                "enforce_minimum_key_length": True,
            },
        )
    except jwt.PyJWTError as exc:
        # `from None`: PyJWT's text can quote attacker-chosen header values (a `kid`).
        raise InvalidJWTError(_reason(exc)) from None
    _check_type(decoded["header"])
    claims: dict[str, Any] = decoded["payload"]
    user_id = claims.get(user_claim)
    if not isinstance(user_id, str) or not user_id.strip():
        raise InvalidJWTError("user_claim")
    return claims


def issue_jwt(user_id: str, *, email: str | None = None, ttl_seconds: int = 3600) -> str:
    """Sign a token for `user_id` with JWT_SECRET, for local use and tests.

    It signs with the first algorithm of JWT_ALGORITHMS, which must be HS*, and adds `iss` and
    `aud` when configured, so that `decode_jwt` accepts the result.
    Raises JWTConfigurationError when no usable HS secret is configured, ValueError for a bad
    user id or TTL.
    """
    algorithms = list(settings.JWT_ALGORITHMS)
    if algorithm_family(algorithms) != "HS":
        raise JWTConfigurationError(
            "Tokens can be issued only with an HS* algorithm; JWT_ALGORITHMS is "
            f"{', '.join(algorithms)}."
        )
    algorithm = algorithms[0]
    secret = settings.JWT_SECRET
    if not secret:
        raise JWTConfigurationError("JWT_SECRET is not set, so no token can be issued.")
    if len(secret.encode()) < HMAC_MIN_KEY_BYTES[algorithm]:
        raise JWTConfigurationError(
            f"JWT_SECRET is shorter than the {HMAC_MIN_KEY_BYTES[algorithm]} bytes {algorithm} needs."
        )
    if not isinstance(user_id, str) or not user_id.strip():
        raise ValueError("The user id must be a non-empty string.")
    if ttl_seconds <= 0:
        raise ValueError("The TTL must be a positive number of seconds.")
    now = int(time.time())
    claims: dict[str, Any] = {
        settings.JWT_USER_CLAIM: user_id,
        "iat": now,
        "exp": now + ttl_seconds,
    }
    if email:
        claims["email"] = email
    if settings.JWT_ISSUER:
        claims["iss"] = settings.JWT_ISSUER
    audiences = configured_audiences()
    if audiences:
        claims["aud"] = audiences[0]
    required_type = _required_type()
    headers = {"typ": required_type} if required_type else None
    return jwt.encode(claims, secret, algorithm=algorithm, headers=headers)


def reset_jwks_client() -> None:
    """Forget the cached JWK Set client (and its keys); the next token builds a new one."""
    _jwks_client.cache_clear()


class _RequestsJWKClient(jwt.PyJWKClient):
    """PyJWKClient that fetches with `requests`: connect and read timeouts, no redirects.

    PyJWKClient itself uses urllib with one 30 s timeout while holding its lock; fetching through
    `requests` gives short timeouts and lets tests mock the endpoint with `responses`.
    """

    def fetch_data(self) -> Any:
        try:
            response = requests.get(
                self.uri, headers=self.headers, timeout=JWKS_TIMEOUT, allow_redirects=False
            )
            if response.status_code != 200:
                raise PyJWKClientConnectionError("The JWKS endpoint did not answer 200.")
            jwk_set = response.json()
        except (requests.RequestException, ValueError) as exc:
            raise PyJWKClientConnectionError("The JWKS endpoint could not be read.") from exc
        if not isinstance(jwk_set, dict):
            raise PyJWKClientConnectionError("The JWKS endpoint did not return a JSON object.")
        if self.jwk_set_cache is not None:
            self.jwk_set_cache.put(jwk_set)
        # The base class reads this to rate-limit refetches caused by unknown `kid`s.
        self._last_successful_fetch = time.monotonic()
        return jwk_set


@functools.cache
def _jwks_client() -> jwt.PyJWKClient:
    # One client per process, so the JWK Set is fetched once per JWT_JWKS_CACHE_SECONDS.
    return _RequestsJWKClient(
        settings.JWT_JWKS_URL,
        lifespan=settings.JWT_JWKS_CACHE_SECONDS,
        headers={"User-Agent": "smartcar-ev-backend/jwks"},
    )


@receiver(setting_changed)
def _reset_on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting in {"JWT_JWKS_URL", "JWT_JWKS_CACHE_SECONDS"}:
        reset_jwks_client()


def _verification_key(token: str, family: str) -> Any:
    if family == "HS":
        if not settings.JWT_SECRET:
            raise JWTConfigurationError("JWT_SECRET is not set for an HS* algorithm.")
        return settings.JWT_SECRET
    if settings.JWT_PUBLIC_KEY:
        return settings.JWT_PUBLIC_KEY
    if settings.JWT_JWKS_URL:
        # The key is looked up by the token's `kid` in our own JWK Set, never fetched from a
        # URL or key the token names. No `kid`, or one not in the set: PyJWKClientError.
        return _jwks_client().get_signing_key_from_jwt(token)
    raise JWTConfigurationError(
        f"JWT_ALGORITHMS is {family}*, but neither JWT_PUBLIC_KEY nor JWT_JWKS_URL is set."
    )


def _audience_argument(audiences: list[str]) -> str | list[str] | None:
    # A single audience goes in as a string: PyJWT's strict mode accepts only that form.
    if not audiences:
        return None
    return audiences[0] if len(audiences) == 1 else audiences


def _required_type() -> str:
    return str(getattr(settings, "JWT_TYP", "") or "")


def _normalized_type(value: str) -> str:
    # RFC 7515 §4.1.9: media types compare case-insensitively, "application/" may be omitted.
    value = value.strip().lower()
    return value.removeprefix("application/")


def _check_type(header: dict[str, Any]) -> None:
    """RFC 8725 §3.11: when JWT_TYP is set, refuse other kinds of JWT (ID tokens, …)."""
    required = _required_type()
    if not required:
        return
    typ = header.get("typ")
    if not isinstance(typ, str) or _normalized_type(typ) != _normalized_type(required):
        raise InvalidJWTError("type")


_REASONS: tuple[tuple[type[Exception], str], ...] = (
    (jwt.ExpiredSignatureError, "expired"),
    (jwt.ImmatureSignatureError, "not_yet_valid"),
    (jwt.InvalidAudienceError, "audience"),
    (jwt.InvalidIssuerError, "issuer"),
    (jwt.MissingRequiredClaimError, "missing_claim"),
    (InvalidSubjectError, "user_claim"),
    (jwt.InvalidAlgorithmError, "algorithm"),
    (jwt.InvalidSignatureError, "signature"),
    (jwt.InvalidKeyError, "key"),
    (PyJWKClientConnectionError, "jwks_unavailable"),
    (jwt.PyJWKClientError, "unknown_key"),
    (jwt.PyJWKError, "key"),
    (jwt.PyJWKSetError, "jwks_invalid"),
    (jwt.DecodeError, "malformed"),
)


def _reason(exc: Exception) -> str:
    for exc_type, reason in _REASONS:
        if isinstance(exc, exc_type):
            return reason
    return "invalid"
