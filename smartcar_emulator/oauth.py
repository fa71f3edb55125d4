"""Grants, authorization codes, access and refresh tokens: issuing, exchanging, rotating, revoking.

Rules copied from Smartcar (API-FACTS §2-3): codes live 10 minutes and work once; access tokens
expire after SMARTCAR_EMULATOR_ACCESS_TOKEN_TTL; every refresh returns a new access and refresh
token, and the used refresh token dies SMARTCAR_EMULATOR_REFRESH_GRACE_SECONDS later; a revoked
grant's tokens stop working. Never logs a token or code.
"""

import secrets
import uuid
from dataclasses import dataclass

from smartcar_emulator import clock, conf
from smartcar_emulator.errors import ApiError
from smartcar_emulator.store import (
    AccessToken,
    AuthCode,
    ConsentTicket,
    Grant,
    RefreshToken,
    locked,
)

CODE_TTL_S = 600
REFRESH_TTL_S = 60 * 24 * 3600
TICKET_TTL_S = 1800


class OAuthError(Exception):
    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.description = description


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int

    def __repr__(self) -> str:
        return f"TokenPair(expires_in={self.expires_in})"

    def as_json(self) -> dict[str, str | int]:
        return {
            "access_token": self.access_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "refresh_token": self.refresh_token,
        }


def ticket_create(params: dict[str, str]) -> tuple[str, str]:
    """A one-time consent ticket for this authorize request: (ticket id, browser nonce)."""
    ticket_id, nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    with locked() as state:
        state.tickets[ticket_id] = ConsentTicket(
            nonce=nonce, params=dict(params), expires_at=clock.now() + TICKET_TTL_S
        )
    return ticket_id, nonce


def ticket_get(ticket_id: str) -> ConsentTicket | None:
    with locked() as state:
        ticket = state.tickets.get(ticket_id)
        if ticket is None or clock.now() >= ticket.expires_at:
            return None
        return ticket


def ticket_consume(ticket_id: str) -> ConsentTicket | None:
    """Remove and return the ticket; None if unknown, expired or already used."""
    with locked() as state:
        ticket = state.tickets.pop(ticket_id, None)
        if ticket is None or clock.now() >= ticket.expires_at:
            return None
        return ticket


def grant_create(
    *,
    client_id: str,
    user_id: str,
    make: str,
    vehicle_ids: list[str],
    permissions: list[str],
    mode: str,
    redirect_uri: str,
) -> str:
    """Record the user's consent and return a fresh authorization code for it."""
    code = str(uuid.uuid4())
    with locked() as state:
        grant = Grant(
            id=str(uuid.uuid4()),
            client_id=client_id,
            user_id=user_id,
            make=make,
            vehicle_ids=list(vehicle_ids),
            permissions=list(permissions),
            mode=mode,
            created_at=clock.now(),
        )
        state.grants[grant.id] = grant
        state.codes[code] = AuthCode(
            grant_id=grant.id,
            client_id=client_id,
            redirect_uri=redirect_uri,
            expires_at=clock.now() + CODE_TTL_S,
        )
    return code


def _issue(grant_id: str) -> TokenPair:
    # Caller holds the lock.
    ttl = conf.access_token_ttl()
    pair = TokenPair(str(uuid.uuid4()), str(uuid.uuid4()), ttl)
    with locked() as state:
        now = clock.now()
        state.access_tokens[pair.access_token] = AccessToken(grant_id, now + ttl)
        state.refresh_tokens[pair.refresh_token] = RefreshToken(grant_id, now + REFRESH_TTL_S)
    return pair


def code_exchange(*, client_id: str, code: str, redirect_uri: str) -> TokenPair:
    with locked() as state:
        record = state.codes.get(code)
        now = clock.now()
        if (
            record is None
            or record.used
            or now >= record.expires_at
            or record.client_id != client_id
            or state.grants[record.grant_id].revoked
        ):
            raise OAuthError(400, "invalid_grant", f"Invalid code: {code}.")
        if redirect_uri != record.redirect_uri:
            raise OAuthError(400, "invalid_grant", f"Unauthorized redirect_uri: {redirect_uri}")
        record.used = True
        return _issue(record.grant_id)


def token_refresh(*, client_id: str, refresh_token: str) -> TokenPair:
    with locked() as state:
        record = state.refresh_tokens.get(refresh_token)
        now = clock.now()
        invalid = OAuthError(400, "invalid_grant", f"Invalid refresh_token: {refresh_token}.")
        if record is None or now >= record.expires_at:
            raise invalid
        grant = state.grants[record.grant_id]
        if grant.revoked or grant.client_id != client_id:
            raise invalid
        if record.used_at is not None and now >= record.used_at + conf.refresh_grace_seconds():
            raise invalid
        if record.used_at is None:
            record.used_at = now
        return _issue(record.grant_id)


def grant_for_access_token(token: str) -> Grant:
    """The live grant behind a Bearer token; raises ApiError(401 AUTHENTICATION) otherwise."""
    with locked() as state:
        record = state.access_tokens.get(token)
        if record is None or clock.now() >= record.expires_at:
            raise ApiError.authentication()
        grant = state.grants[record.grant_id]
        if grant.revoked:
            raise ApiError.authentication()
        return grant


def grant_revoke(grant_id: str) -> None:
    with locked() as state:
        state.grants[grant_id].revoked = True
