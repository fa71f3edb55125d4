"""Writes on Smartcar accounts and vehicles.

`account_link` is the one place where a finished Connect becomes rows: the account (keyed by the
Smartcar user id that `/user` returned, never by anything the browser sent) and its vehicles, in
one transaction, so there is never a vehicle without its token row or half a re-link.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from core.errors import ReconnectRequiredError
from smartcar_client.types import TokenSet
from vehicles.models import SmartcarAccount, Vehicle


@dataclass(frozen=True)
class LinkedVehicleInfo:
    smartcar_vehicle_id: str
    make: str = ""
    model: str = ""
    year: int | None = None
    vin: str = ""


@dataclass(frozen=True)
class LinkResult:
    account: SmartcarAccount
    vehicles: list[Vehicle]
    moved_from_other_user: int


@transaction.atomic
def account_link(
    *,
    owner: User,
    smartcar_user_id: str,
    tokens: TokenSet,
    scopes: Sequence[str],
    vehicles: Sequence[LinkedVehicleInfo],
) -> LinkResult:
    """Create or update the account and its vehicles for `owner`.

    Linking again updates tokens and vehicles instead of duplicating them. A vehicle that is live
    under another of our users moves to `owner`: the earlier row is marked disconnected (its
    history stays with its owner) and counted in `moved_from_other_user`.
    """
    now = timezone.now()
    account, _ = SmartcarAccount.objects.select_for_update().get_or_create(
        smartcar_user_id=smartcar_user_id, defaults={"owner": owner}
    )
    previous_owner_id = account.owner_id
    account.owner = owner
    account.status = SmartcarAccount.Status.ACTIVE
    account.access_token = tokens.access_token
    account.refresh_token = tokens.refresh_token
    account.access_expires_at = tokens.expires_at
    account.refresh_expires_at = tokens.refresh_expires_at
    account.last_refreshed_at = now
    account.scopes = list(scopes)
    account.last_error = ""
    account.save()

    linked: list[Vehicle] = []
    moved = 0
    for info in vehicles:
        vehicle, was_moved = _vehicle_link(owner=owner, account=account, info=info, now=now)
        linked.append(vehicle)
        moved += was_moved

    if previous_owner_id != owner.pk:
        # The previous owner's other cars on this grant can no longer use its tokens.
        (
            Vehicle.objects.filter(account=account, owner_id=previous_owner_id)
            .exclude(status=Vehicle.Status.DISCONNECTED)
            .update(
                status=Vehicle.Status.DISCONNECTED,
                disconnected_at=now,
                is_primary=False,
                updated_at=now,
            )
        )

    _ensure_primary(owner=owner, candidates=linked)
    return LinkResult(account=account, vehicles=linked, moved_from_other_user=moved)


def _vehicle_link(
    *, owner: User, account: SmartcarAccount, info: LinkedVehicleInfo, now: datetime
) -> tuple[Vehicle, bool]:
    live = (
        Vehicle.objects.select_for_update()
        .filter(smartcar_vehicle_id=info.smartcar_vehicle_id)
        .exclude(status=Vehicle.Status.DISCONNECTED)
        .first()
    )
    moved = False
    if live is not None and live.owner_id != owner.pk:
        live.status = Vehicle.Status.DISCONNECTED
        live.disconnected_at = now
        live.is_primary = False
        live.save(update_fields=["status", "disconnected_at", "is_primary", "updated_at"])
        live, moved = None, True
    vehicle = live or (
        Vehicle.objects.select_for_update()
        .filter(smartcar_vehicle_id=info.smartcar_vehicle_id, owner=owner)
        .order_by("-created_at")
        .first()
    )
    if vehicle is None:
        vehicle = Vehicle(smartcar_vehicle_id=info.smartcar_vehicle_id, owner=owner)
    if vehicle.status != Vehicle.Status.ACTIVE or vehicle.connected_at is None:
        vehicle.connected_at = now
    vehicle.account = account
    vehicle.status = Vehicle.Status.ACTIVE
    vehicle.disconnected_at = None
    vehicle.make = info.make or vehicle.make
    vehicle.model = info.model or vehicle.model
    vehicle.year = info.year or vehicle.year
    vehicle.vin = info.vin or vehicle.vin
    vehicle.save()
    return vehicle, moved


def _ensure_primary(*, owner: User, candidates: Sequence[Vehicle]) -> None:
    if not candidates:
        return
    has_primary = (
        Vehicle.objects.filter(owner=owner, is_primary=True)
        .exclude(status=Vehicle.Status.DISCONNECTED)
        .exists()
    )
    if not has_primary:
        # A disconnected row may still hold the flag; the constraint allows one per owner.
        Vehicle.objects.filter(owner=owner, is_primary=True).update(is_primary=False)
        first = candidates[0]
        first.is_primary = True
        first.save(update_fields=["is_primary", "updated_at"])


@dataclass(frozen=True)
class AccountTokens:
    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)


def account_mark_needs_reauth(*, account: SmartcarAccount, reason: str) -> None:
    """Flag the account and its live vehicles: the person must run Connect again.

    Written with update() so that an account whose token row cannot be decrypted is never
    saved back (the field refuses to write an unreadable value).
    """
    now = timezone.now()
    SmartcarAccount.objects.filter(pk=account.pk).update(
        status=SmartcarAccount.Status.NEEDS_REAUTH, last_error=reason[:200], updated_at=now
    )
    Vehicle.objects.filter(account_id=account.pk, status=Vehicle.Status.ACTIVE).update(
        status=Vehicle.Status.NEEDS_REAUTH, updated_at=now
    )
    account.status = SmartcarAccount.Status.NEEDS_REAUTH
    account.last_error = reason[:200]


def account_tokens(*, account: SmartcarAccount) -> AccountTokens:
    """The account's token pair, for a Smartcar call.

    Raises ReconnectRequiredError when the account is not active or its tokens cannot be
    decrypted (a retired key, a damaged row); the latter also marks it needs_reauth.
    """
    if account.status != SmartcarAccount.Status.ACTIVE:
        raise ReconnectRequiredError()
    access, refresh = account.access_token, account.refresh_token
    # Anything but two non-empty strings (UNREADABLE, None) means the pair cannot be used.
    if not (isinstance(access, str) and isinstance(refresh, str) and access and refresh):
        account_mark_needs_reauth(account=account, reason="tokens_unreadable")
        raise ReconnectRequiredError()
    return AccountTokens(access_token=access, refresh_token=refresh)
