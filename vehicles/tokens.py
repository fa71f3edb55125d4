"""The token service: a usable Smartcar access token for an account, refreshed single-flight.

Owns: deciding when an account's token pair must be refreshed (near expiry, forced after an
AUTHENTICATION error, or idle for SMARTCAR_IDLE_REFRESH_DAYS), making sure only one worker per
account talks to the token endpoint at a time, and persisting the rotated pair before anyone uses
it. Smartcar rotates the refresh token on every refresh and the used one dies within a minute
(API-FACTS §3, SECURITY E1-E3), so two workers refreshing with the same refresh token would break
the grant by our own hand.

Single-flight works the same on SQLite and PostgreSQL (SQLite has no row locks): a compare-and-set
lease on `SmartcarAccount.refresh_lease_until`. The winner re-reads the row (another worker may
have refreshed meanwhile), calls Smartcar WITHOUT holding a transaction or row lock, commits both
new tokens with their expiries, and only then returns. Losers poll the row until the winner is
done, and take over once its lease has expired (a crashed winner).

Callers must not hold a database transaction around these calls: the lease and the new pair must
be visible to other workers at once.

Must never: log, raise or repr a token; retry a refresh after `invalid_grant` (the grant is dead
and the user must run Connect again); hold a lock while waiting on Smartcar.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import NoReturn, TypeVar

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from core.errors import ReconnectRequiredError
from smartcar_client.errors import (
    SmartcarError,
    SmartcarReauthRequiredError,
    SmartcarRetryLaterError,
)
from smartcar_client.factory import client_from_settings
from smartcar_client.types import TokenSet
from vehicles.models import SmartcarAccount
from vehicles.services import account_mark_needs_reauth, account_tokens

logger = logging.getLogger(__name__)

T = TypeVar("T")

# How often a worker waiting for another one's refresh re-reads the row.
WAIT_POLL_SECONDS = 0.05
# Synthetic error type when a refresh lease never freed up while we waited (see _refresh).
REFRESH_BUSY = "TOKEN_REFRESH_BUSY"

_ROW_FIELDS = (
    "status",
    "access_token",
    "refresh_token",
    "access_expires_at",
    "refresh_expires_at",
    "last_refreshed_at",
    "refresh_lease_until",
    "last_error",
)


def account_access_token(*, account: SmartcarAccount, force_refresh: bool = False) -> str:
    """A usable access token for `account`, refreshing first when needed.

    Refreshes when the access token expires within SMARTCAR_TOKEN_REFRESH_MARGIN_SECONDS, or when
    `force_refresh` (Smartcar just rejected the token) and nobody has refreshed since `account`
    was loaded. `account` is updated in place with the row as it is after the call.

    Raises `ReconnectRequiredError` when the account is not active, its tokens cannot be read, or
    Smartcar answers `invalid_grant` (the last two also mark it needs_reauth). Any other
    `SmartcarError` from the token endpoint (timeouts, 5xx, 429, bad client credentials)
    propagates unchanged with the account left active, for the caller to back off.
    """
    tokens = account_tokens(account=account)
    if not force_refresh and not _expires_soon(account):
        return tokens.access_token
    return _refresh(account, force=force_refresh, seen_refreshed_at=account.last_refreshed_at)


def account_call(*, account: SmartcarAccount, call: Callable[[str], T]) -> T:
    """`call(access_token)`, with one forced refresh and one retry on an AUTHENTICATION error.

    An AUTHENTICATION error again after the refresh, or any other re-authentication error raised
    by `call` (PERMISSION, CONNECTED_SERVICES_ACCOUNT:AUTHENTICATION_FAILED, resolution
    REAUTHENTICATE) marks the account needs_reauth and raises `ReconnectRequiredError`. Errors of
    single batch items are not this function's business: `call` should return them, not raise.
    Every other exception propagates unchanged.
    """
    token = account_access_token(account=account)
    try:
        return call(token)
    except SmartcarReauthRequiredError as exc:
        if not _is_authentication(exc):
            _give_up(account, exc)
        logger.info(
            "smartcar account=%s call rejected the access token (request_id=%s); refreshing once",
            account.pk,
            exc.request_id,
        )
    token = account_access_token(account=account, force_refresh=True)
    try:
        return call(token)
    except SmartcarReauthRequiredError as exc:
        _give_up(account, exc)


def account_refresh_if_idle(*, account: SmartcarAccount) -> bool:
    """Refresh an active account whose pair was last refreshed SMARTCAR_IDLE_REFRESH_DAYS ago.

    A refresh token lives 60 days from its issue and only a refresh renews it, so a grant nobody
    uses must be refreshed before then (SECURITY E4). Returns True when the pair was renewed
    (by this call or by a worker it waited for), False when nothing was due or the account is not
    active. Raises as `account_access_token` does.
    """
    if account.status != SmartcarAccount.Status.ACTIVE:
        return False
    idle_since = timezone.now() - timedelta(days=settings.SMARTCAR_IDLE_REFRESH_DAYS)
    seen = account.last_refreshed_at
    if seen is not None and seen > idle_since:
        return False
    account_access_token(account=account, force_refresh=True)
    return account.last_refreshed_at != seen


def _expires_soon(account: SmartcarAccount) -> bool:
    if account.access_expires_at is None:
        return True
    margin = timedelta(seconds=settings.SMARTCAR_TOKEN_REFRESH_MARGIN_SECONDS)
    return account.access_expires_at <= timezone.now() + margin


def _refreshed_meanwhile(
    account: SmartcarAccount, *, force: bool, seen_refreshed_at: datetime | None
) -> bool:
    """Whether the row (just re-read) already holds a pair we may use without refreshing."""
    if account.last_refreshed_at != seen_refreshed_at:
        return True
    # A forced refresh means Smartcar rejected the token we hold: its expiry proves nothing.
    return not force and not _expires_soon(account)


def _refresh(account: SmartcarAccount, *, force: bool, seen_refreshed_at: datetime | None) -> str:
    lease_seconds = settings.SMARTCAR_REFRESH_LEASE_SECONDS
    # A waiter may see one lease expire and another worker take the next one; beyond two lease
    # lengths something is wrong (clock skew, a stuck worker) and the caller should back off.
    give_up_at = time.monotonic() + 2 * lease_seconds + 1
    while True:
        account.refresh_from_db(fields=_ROW_FIELDS)
        tokens = account_tokens(account=account)  # not active / unreadable -> Reconnect
        if _refreshed_meanwhile(account, force=force, seen_refreshed_at=seen_refreshed_at):
            return tokens.access_token
        lease = _take_lease(account, lease_seconds)
        if lease is not None:
            return _refresh_holding_lease(
                account, lease=lease, force=force, seen_refreshed_at=seen_refreshed_at
            )
        if time.monotonic() >= give_up_at:
            logger.warning(
                "smartcar account=%s token refresh outcome=busy: lease never freed", account.pk
            )
            raise SmartcarRetryLaterError(type=REFRESH_BUSY, retry_after=lease_seconds)
        time.sleep(WAIT_POLL_SECONDS)


def _take_lease(account: SmartcarAccount, lease_seconds: int) -> datetime | None:
    """Compare-and-set: the lease is ours only if no live lease was there (rowcount 1)."""
    now = timezone.now()
    lease = now + timedelta(seconds=lease_seconds)
    won = (
        SmartcarAccount.objects.filter(pk=account.pk)
        .filter(Q(refresh_lease_until__isnull=True) | Q(refresh_lease_until__lt=now))
        .update(refresh_lease_until=lease)
    )
    return lease if won == 1 else None


def _release_lease(account: SmartcarAccount, lease: datetime) -> None:
    # Only our own lease: if ours ran out and another worker took the next, that one is theirs.
    released = SmartcarAccount.objects.filter(pk=account.pk, refresh_lease_until=lease).update(
        refresh_lease_until=None
    )
    if released:
        account.refresh_lease_until = None


def _refresh_holding_lease(
    account: SmartcarAccount,
    *,
    lease: datetime,
    force: bool,
    seen_refreshed_at: datetime | None,
) -> str:
    try:
        # Re-read after winning: the previous holder may have committed just before we took it.
        account.refresh_from_db(fields=_ROW_FIELDS)
        old = account_tokens(account=account)
        if _refreshed_meanwhile(account, force=force, seen_refreshed_at=seen_refreshed_at):
            return old.access_token
        try:
            new = client_from_settings().refresh_tokens(old.refresh_token)
        except SmartcarReauthRequiredError as exc:
            _log_refresh(account, "needs_reauth", exc)
            account_mark_needs_reauth(account=account, reason=_reauth_reason(exc))
            raise ReconnectRequiredError() from None
        except SmartcarError as exc:
            _log_refresh(account, "failed", exc)
            raise
        _store_rotated(account, new)
        _log_refresh(account, "refreshed", None)
        return new.access_token
    finally:
        _release_lease(account, lease)


def _store_rotated(account: SmartcarAccount, tokens: TokenSet) -> None:
    """Commit the new pair; only then may anyone use the new access token.

    Written even if our lease ran out meanwhile: Smartcar has already retired the old refresh
    token, so the pair we hold is the only one that still works.
    """
    now = timezone.now()
    # One UPDATE, autocommitted: both tokens and their expiries become visible together.
    SmartcarAccount.objects.filter(pk=account.pk).update(
        access_token=tokens.access_token,
        refresh_token=tokens.refresh_token,
        access_expires_at=tokens.expires_at,
        refresh_expires_at=tokens.refresh_expires_at,
        last_refreshed_at=now,
        last_error="",
        updated_at=now,
    )
    account.access_token = tokens.access_token
    account.refresh_token = tokens.refresh_token
    account.access_expires_at = tokens.expires_at
    account.refresh_expires_at = tokens.refresh_expires_at
    account.last_refreshed_at = now
    account.last_error = ""


def _is_authentication(exc: SmartcarError) -> bool:
    return exc.type == "AUTHENTICATION" and exc.resolution_type != "REAUTHENTICATE"


def _give_up(account: SmartcarAccount, exc: SmartcarError) -> NoReturn:
    logger.warning(
        "smartcar account=%s outcome=needs_reauth error=%s request_id=%s",
        account.pk,
        _reauth_reason(exc),
        exc.request_id,
    )
    account_mark_needs_reauth(account=account, reason=_reauth_reason(exc))
    raise ReconnectRequiredError() from None


def _reauth_reason(exc: SmartcarError) -> str:
    if exc.oauth_error == "invalid_grant":
        return "invalid_grant"
    kind = exc.type or exc.oauth_error or "UNKNOWN"
    return f"{kind}:{exc.code}" if exc.code else kind


def _log_refresh(account: SmartcarAccount, outcome: str, exc: SmartcarError | None) -> None:
    logger.log(
        logging.INFO if exc is None else logging.WARNING,
        "smartcar account=%s token refresh outcome=%s error=%s request_id=%s",
        account.pk,
        outcome,
        _reauth_reason(exc) if exc is not None else "-",
        exc.request_id if exc is not None else None,
    )
