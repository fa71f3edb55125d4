"""The Smartcar Connect handshake: start, open, browser callback, and JWT recovery.

Flow: `connect_attempt_start` (the SPA's `…/smartcar/login`) creates an attempt and a one-time
start ticket. `connect_attempt_open` (the browser opens the ticket link) makes the `state`, binds
the browser with a cookie secret and returns Smartcar's authorize URL. `connect_callback` handles
Smartcar's redirect and decides where the browser goes next. `connect_complete_with_code` is the
recovery path: the SPA posts the code with its JWT.

Rules kept here: a state works once and for SMARTCAR_CONNECT_TTL_SECONDS; a code is exchanged at
most once; a code that belongs to a known attempt is exchanged only for that attempt's user;
Smartcar's own error text is never passed on; network calls happen outside transactions and the
rows are written in one transaction after them. Nothing here logs a code, state or token.
"""

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from oauth_smartcar import handoff, nonces
from oauth_smartcar.errors import (
    CodeRequiredError,
    ConnectInProgressError,
    InvalidClientError,
    InvalidGrantError,
    SmartcarUnavailableError,
    UserMismatchError,
)
from oauth_smartcar.models import ConnectAttempt
from smartcar_client.client import SmartcarClient
from smartcar_client.errors import (
    SmartcarConfigurationError,
    SmartcarError,
    SmartcarInvalidGrantError,
    SmartcarNotCapableError,
    SmartcarReauthRequiredError,
    SmartcarUserActionRequiredError,
)
from smartcar_client.factory import client_from_settings
from smartcar_client.types import BatchItem, TokenSet
from vehicles.services import LinkedVehicleInfo, LinkResult, account_link

logger = logging.getLogger(__name__)

Outcome = ConnectAttempt.Outcome

# Smartcar Connect error codes that mean "this car or account cannot be linked".
_INCOMPATIBLE_ERRORS = {"vehicle_incompatible", "no_vehicles", "invalid_subscription"}
_ERROR_CODE_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_EXTRA_RE = re.compile(r"^[\w .\-]{1,40}$")
# Batch item errors that only mean "this car or grant cannot give that field".
_FIELD_UNAVAILABLE = (
    SmartcarNotCapableError,
    SmartcarReauthRequiredError,
    SmartcarUserActionRequiredError,
)
# A claim older than this is a crashed request's; another request may take the attempt over.
_CLAIM_TIMEOUT = timedelta(minutes=2)


class ConnectLinkError(Exception):
    """The start link cannot be used; `reason` is a stable code for the failure handoff."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True)
class StartedAttempt:
    attempt: ConnectAttempt
    ticket: str = field(repr=False)


@dataclass(frozen=True)
class OpenedAttempt:
    authorize_url: str = field(repr=False)
    browser_secret: str = field(repr=False)


@dataclass(frozen=True)
class CompletedConnect:
    smartcar_user_id: str
    redirect_url: str


def connect_attempt_start(*, user: User) -> StartedAttempt:
    ticket = nonces.new_nonce()
    attempt = ConnectAttempt.objects.create(
        user=user,
        expires_at=timezone.now() + timedelta(seconds=settings.SMARTCAR_CONNECT_TTL_SECONDS),
        ticket_digest=nonces.digest(ticket),
    )
    return StartedAttempt(attempt=attempt, ticket=ticket)


def connect_attempt_open(*, ticket: str) -> OpenedAttempt:
    """Turn a start ticket (usable once) into Smartcar's authorize URL and a browser secret.

    Raises ConnectLinkError("connect_link_invalid" | "connect_link_expired" | "connect_link_used").
    """
    if not nonces.is_well_formed(ticket):
        raise ConnectLinkError("connect_link_invalid")
    now = timezone.now()
    state, browser_secret = nonces.new_nonce(), nonces.new_nonce()
    attempt = ConnectAttempt.objects.filter(ticket_digest=nonces.digest(ticket)).first()
    if attempt is None:
        raise ConnectLinkError("connect_link_invalid")
    if attempt.expires_at <= now:
        _finish_unclaimed(attempt, Outcome.EXPIRED, error_code="connect_link_expired")
        raise ConnectLinkError("connect_link_expired")
    # Compare-and-set, so two browsers opening the same link at once cannot both get a state.
    opened = ConnectAttempt.objects.filter(pk=attempt.pk, opened_at__isnull=True).update(
        opened_at=now,
        state_digest=nonces.digest(state),
        browser_digest=nonces.digest(browser_secret),
    )
    if not opened:
        raise ConnectLinkError("connect_link_used")
    url = client_from_settings().connect_url(state=state)
    return OpenedAttempt(authorize_url=url, browser_secret=browser_secret)


def connect_callback(*, params: Mapping[str, str], browser_secret: str | None) -> str:
    """Handle Smartcar's redirect; return where the browser goes next. Never raises for input.

    - Smartcar's error → failure handoff with `reason=<error>` (and make/model/year).
    - No usable state, or a valid state without this browser's cookie → nothing is exchanged;
      recovery handoff with the code, which the attempt (if known) keeps for its own user.
    - Valid state and cookie → exchange, link, success handoff.
    """
    state, code, error = params.get("state", ""), params.get("code", ""), params.get("error", "")
    attempt = _attempt_for_state(state)
    if error:
        return _callback_error(attempt, error, params)
    if not nonces.is_well_formed(code):
        if attempt is not None and _claim(attempt):
            _finish(attempt, Outcome.FAILED, error_code="missing_code")
        return handoff.failure_url("missing_code")

    if attempt is None or not _remember_code(attempt, code):
        return handoff.recovery_url(code)
    if attempt.expires_at <= timezone.now():
        _finish_unclaimed(attempt, Outcome.EXPIRED, error_code="state_expired")
        return handoff.recovery_url(code)
    if not (browser_secret and nonces.digests_match(browser_secret, attempt.browser_digest)):
        # Opened in another browser (perhaps someone else's): link nothing here. The code stays
        # tied to this attempt, so only its own user can finish through complete-connect.
        _note(attempt, error_code="browser_mismatch")
        return handoff.recovery_url(code)
    if not _claim(attempt):
        return handoff.failure_url("state_already_used")
    try:
        result = _exchange_and_link(attempt, code, Outcome.LINKED)
    except SmartcarError as exc:
        return handoff.failure_url(_failure_reason(exc))
    return result.redirect_url


def connect_complete_with_code(*, user: User, code: object) -> CompletedConnect:
    """The recovery path: link with a code the SPA received, for the JWT's user.

    Raises CodeRequiredError, UserMismatchError, InvalidGrantError, InvalidClientError,
    ConnectInProgressError or SmartcarUnavailableError. A retry of a request that already
    succeeded gets the same answer without a second exchange.
    """
    if not isinstance(code, str) or not code.strip():
        raise CodeRequiredError()
    if not nonces.is_well_formed(code):
        raise InvalidGrantError()
    attempt = _attempt_for_code(user=user, code=code)
    if attempt.user_id != user.pk:
        raise UserMismatchError()
    if attempt.outcome in (Outcome.LINKED, Outcome.RECOVERED):
        return CompletedConnect(attempt.smartcar_user_id, attempt.redirect_url)
    if attempt.is_completed and attempt.error_code in ("invalid_grant", "state_already_used"):
        raise InvalidGrantError()
    if not _claim(attempt, allow_completed=True):
        raise ConnectInProgressError()
    try:
        return _exchange_and_link(attempt, code, Outcome.RECOVERED)
    except SmartcarInvalidGrantError as exc:
        raise InvalidGrantError() from exc
    except SmartcarConfigurationError as exc:
        raise InvalidClientError() from exc
    except SmartcarError as exc:
        raise SmartcarUnavailableError(exc.request_id) from exc


# --- internals -------------------------------------------------------------------------------------


def _attempt_for_state(state: str) -> ConnectAttempt | None:
    if not nonces.is_well_formed(state):
        return None
    return ConnectAttempt.objects.filter(state_digest=nonces.digest(state)).first()


def _attempt_for_code(*, user: User, code: str) -> ConnectAttempt:
    code_digest = nonces.digest(code)
    attempt = ConnectAttempt.objects.filter(code_digest=code_digest).first()
    if attempt is not None:
        return attempt
    try:
        with transaction.atomic():
            return ConnectAttempt.objects.create(
                user=user,
                channel=ConnectAttempt.Channel.RECOVERY,
                expires_at=timezone.now()
                + timedelta(seconds=settings.SMARTCAR_CONNECT_TTL_SECONDS),
                returned_at=timezone.now(),
                code_digest=code_digest,
            )
    except IntegrityError:
        # A concurrent request recorded the same code first.
        return ConnectAttempt.objects.get(code_digest=code_digest)


def _remember_code(attempt: ConnectAttempt, code: str) -> bool:
    """Tie the code to the attempt (first code wins). False when the attempt is already done."""
    if attempt.is_completed or attempt.claimed_at is not None:
        return False
    try:
        with transaction.atomic():
            updated = ConnectAttempt.objects.filter(
                pk=attempt.pk, code_digest__isnull=True, completed_at__isnull=True
            ).update(code_digest=nonces.digest(code), returned_at=timezone.now())
    except IntegrityError:
        return False  # the same code is already tied to another attempt
    if updated:
        attempt.code_digest = nonces.digest(code)
        attempt.returned_at = timezone.now()
        return True
    return attempt.code_digest == nonces.digest(code)


def _claim(attempt: ConnectAttempt, *, allow_completed: bool = False) -> bool:
    """Take the attempt for one exchange, atomically; False if another request holds it."""
    now = timezone.now()
    free = Q(claimed_at__isnull=True) | Q(claimed_at__lt=now - _CLAIM_TIMEOUT)
    if not allow_completed:
        free &= Q(completed_at__isnull=True)
    taken = ConnectAttempt.objects.filter(free, pk=attempt.pk).update(claimed_at=now)
    if taken:
        attempt.claimed_at = now
    return bool(taken)


def _exchange_and_link(attempt: ConnectAttempt, code: str, outcome: str) -> CompletedConnect:
    client = client_from_settings()
    try:
        tokens = client.exchange_code(code)
        discovery = _discover(client, tokens)
    except SmartcarError as exc:
        _finish(
            attempt,
            Outcome.FAILED,
            error_code=_failure_reason(exc),
            request_id=exc.request_id or "",
            release_claim=not isinstance(exc, SmartcarInvalidGrantError),
        )
        logger.warning("Smartcar Connect failed for attempt %s: %s", attempt.pk, type(exc).__name__)
        raise
    with transaction.atomic():
        smartcar_user_id = discovery.smartcar_user_id
        result = account_link(
            owner=attempt.user,
            smartcar_user_id=smartcar_user_id,
            tokens=tokens,
            scopes=discovery.granted_scopes,
            vehicles=discovery.vehicles,
        )
        first_vehicle = str(result.vehicles[0].pk) if result.vehicles else None
        redirect_url = handoff.success_url(
            smartcar_user_id=smartcar_user_id, first_vehicle_id=first_vehicle
        )
        _record_link(attempt, result, outcome, smartcar_user_id, redirect_url)
    return CompletedConnect(smartcar_user_id, redirect_url)


@dataclass(frozen=True)
class _Discovery:
    smartcar_user_id: str
    vehicles: list[LinkedVehicleInfo]
    granted_scopes: list[str]


def _discover(client: SmartcarClient, tokens: TokenSet) -> _Discovery:
    """Read the Smartcar user and every vehicle's attributes, VIN and granted permissions.

    One batch call per vehicle. Permissions Smartcar does not report fall back to the scopes we
    asked for.
    """
    smartcar_user_id = client.get_user_id(tokens.access_token)
    vehicles = []
    granted: set[str] = set()
    for vehicle_id in client.list_vehicle_ids(tokens.access_token):
        batch = client.batch(tokens.access_token, vehicle_id, ["/", "/vin", "/permissions"])
        attributes = _item_body(batch.get("/"))
        vin = _item_body(batch.get("/vin")).get("vin")
        permissions = _item_body(batch.get("/permissions"), optional=True).get("permissions")
        if isinstance(permissions, list):
            granted.update(str(name) for name in permissions if isinstance(name, str))
        year = attributes.get("year")
        vehicles.append(
            LinkedVehicleInfo(
                smartcar_vehicle_id=vehicle_id,
                make=str(attributes.get("make") or "")[:100],
                model=str(attributes.get("model") or "")[:100],
                year=int(year) if isinstance(year, int | str) and str(year).isdigit() else None,
                vin=str(vin)[:17] if isinstance(vin, str) else "",
            )
        )
    scopes = sorted(granted) if granted else list(client.config.scopes)
    return _Discovery(smartcar_user_id, vehicles, scopes)


def _item_body(item: BatchItem | None, *, optional: bool = False) -> dict:
    """A batch item's body; a field the car or grant cannot give stays empty, others raise."""
    if item is None:
        return {}
    error = item.error
    if error is not None:
        if optional or isinstance(error, _FIELD_UNAVAILABLE):
            return {}
        raise error
    return item.body if isinstance(item.body, dict) else {}


def _record_link(
    attempt: ConnectAttempt,
    result: LinkResult,
    outcome: str,
    smartcar_user_id: str,
    redirect_url: str,
) -> None:
    attempt.smartcar_user_id = smartcar_user_id
    attempt.vehicles_moved_from_other_user = result.moved_from_other_user
    attempt.redirect_url = redirect_url
    _finish(attempt, outcome, error_code="")
    attempt.vehicles.set(result.vehicles)


def _finish(
    attempt: ConnectAttempt,
    outcome: str,
    *,
    error_code: str,
    request_id: str = "",
    release_claim: bool = False,
) -> None:
    attempt.outcome = outcome
    attempt.completed_at = timezone.now()
    attempt.error_code = error_code
    attempt.smartcar_request_id = request_id[:100]
    if release_claim:
        # A transient failure: the same user may try the same code again.
        attempt.claimed_at = None
    attempt.save(
        update_fields=[
            "outcome",
            "completed_at",
            "error_code",
            "error_description",
            "smartcar_request_id",
            "smartcar_user_id",
            "details",
            "vehicles_moved_from_other_user",
            "redirect_url",
            "claimed_at",
        ]
    )


def _finish_unclaimed(attempt: ConnectAttempt, outcome: str, *, error_code: str) -> None:
    ConnectAttempt.objects.filter(pk=attempt.pk, completed_at__isnull=True).update(
        outcome=outcome, completed_at=timezone.now(), error_code=error_code
    )


def _note(attempt: ConnectAttempt, *, error_code: str) -> None:
    ConnectAttempt.objects.filter(pk=attempt.pk).update(error_code=error_code)


def _callback_error(attempt: ConnectAttempt | None, error: str, params: Mapping[str, str]) -> str:
    reason = error if _ERROR_CODE_RE.fullmatch(error) else "unknown_error"
    extras = {
        key: params[key]
        for key in ("make", "model", "year")
        if _EXTRA_RE.fullmatch(params.get(key, "") or "")
    }
    if attempt is not None and _claim(attempt):
        if reason == "access_denied":
            outcome = Outcome.DENIED
        elif reason in _INCOMPATIBLE_ERRORS:
            outcome = Outcome.INCOMPATIBLE
        else:
            outcome = Outcome.FAILED
        attempt.error_description = _printable(params.get("error_description", ""))[:500]
        attempt.details = extras
        _finish(attempt, outcome, error_code=reason)
    return handoff.failure_url(reason, extras)


def _printable(text: str) -> str:
    return "".join(ch for ch in text if ch.isprintable())


def _failure_reason(exc: SmartcarError) -> str:
    if isinstance(exc, SmartcarInvalidGrantError):
        return "invalid_grant"
    if isinstance(exc, SmartcarConfigurationError):
        return "invalid_client"
    return "smartcar_unavailable"
