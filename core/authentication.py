"""DRF authentication: who is calling, from `Authorization: Bearer <JWT>` only.

This module owns reading the header, refusing tokens carried in the query string (RFC 9700
§4.3.2: URLs end up in logs, history and Referer headers) and mapping the verified user claim to
a Django user, found or created with `username = <claim>`. Token rules live in
`core.jwt_tokens`.

It must never echo the token or a library's message: every refusal is an `AuthenticationFailed`
with one generic text, and the API's exception handler renders the view's own 401 body with
`WWW-Authenticate: Bearer`. Logs name only our reason code.
"""

import logging
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db.models import QuerySet
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request

from core.compiled_select import CompiledSelect, Param
from core.jwt_tokens import InvalidJWTError, decode_jwt

logger = logging.getLogger(__name__)

# Query parameters that would carry a bearer token (RFC 6750 §2.3 names `access_token`).
QUERY_TOKEN_PARAMS = frozenset({"access_token", "token", "jwt"})
GENERIC_FAILURE = "Authentication failed."


class JWTAuthentication(BaseAuthentication):
    """`Authorization: Bearer <JWT>` → `(user, claims)`; no header → None (DRF answers 401)."""

    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[AbstractBaseUser, dict[str, Any]] | None:
        if any(name.lower() in QUERY_TOKEN_PARAMS for name in request.query_params):
            # Refused even beside a good header: the token has already leaked into the URL.
            logger.info("JWT refused: token in query string")
            raise AuthenticationFailed(GENERIC_FAILURE)
        header = request.headers.get("Authorization", "")
        if not header:
            return None
        scheme, _, token = header.partition(" ")
        if scheme.lower() != self.keyword.lower():
            # Another scheme (Basic, …) is not ours; without a Bearer token the caller is anonymous.
            return None
        try:
            # decode_jwt refuses an empty, non-ASCII or space-split token as malformed.
            claims = decode_jwt(token.strip())
        except InvalidJWTError as exc:
            logger.info("JWT refused: %s", exc.reason)
            raise AuthenticationFailed(GENERIC_FAILURE) from None
        return user_for_claims(claims), claims

    def authenticate_header(self, request: Request) -> str:
        # Without this DRF turns every 401 into a 403 (RFC 6750 §3 wants the challenge).
        return f'{self.keyword} realm="api"'


def user_for_claims(claims: dict[str, Any]) -> AbstractBaseUser:
    """The active Django user named by the verified claims, created on first sight.

    One query when the user exists and its email is unchanged. The email is updated when the
    token carries a different valid one, and left alone when the token carries none.
    Raises AuthenticationFailed for an inactive user or a user id that does not fit the column.
    """
    user_model = get_user_model()
    username_field = user_model.USERNAME_FIELD
    user_id = claims[settings.JWT_USER_CLAIM]
    max_length = _max_length(user_model, username_field)
    if max_length is not None and len(user_id) > max_length:
        # PostgreSQL would raise on insert (a 500); SQLite would store it silently.
        logger.info("JWT refused: user claim too long")
        raise AuthenticationFailed(GENERIC_FAILURE)
    if "\x00" in user_id:
        # Likewise: PostgreSQL stores no NUL in text.
        logger.info("JWT refused: NUL in user claim")
        raise AuthenticationFailed(GENERIC_FAILURE)
    email = _email_from(claims, max_length=_max_length(user_model, "email"))
    found = _USER_BY_NAME.fetch(username=user_id)
    if found:
        user, created = found[0], False
    else:
        user, created = user_model._default_manager.get_or_create(
            # No password: these users sign in through the product's login, never Django's.
            **{username_field: user_id},
            defaults={"email": email or "", "password": make_password(None)},
        )
    if not user.is_active:
        logger.info("JWT refused: inactive user")
        raise AuthenticationFailed(GENERIC_FAILURE)
    if not created and email and user.email != email:
        user_model._default_manager.filter(pk=user.pk).update(email=email)
        user.email = email
    return user


# Every authenticated request reads its user: built and compiled once per thread
# (core.compiled_select).
def _user_by_name() -> QuerySet[Any]:
    user_model = get_user_model()
    username: Any = user_model._meta.get_field(user_model.USERNAME_FIELD)
    return user_model._default_manager.filter(
        **{user_model.USERNAME_FIELD: Param("username", username)}
    )[:1]


_USER_BY_NAME: CompiledSelect[Any] = CompiledSelect(_user_by_name)


def _max_length(model: type[Any], field_name: str) -> int | None:
    return getattr(model._meta.get_field(field_name), "max_length", None)


def _email_from(claims: dict[str, Any], *, max_length: int | None) -> str | None:
    email = claims.get("email")
    if not isinstance(email, str) or not email:
        return None
    if max_length is not None and len(email) > max_length:
        return None
    try:
        validate_email(email)
    except ValidationError:
        # A bad email is not a reason to refuse the caller; we just do not store it.
        return None
    return email
