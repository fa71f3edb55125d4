"""Writes on Smartcar accounts and vehicles.

`account_link` is the one place where a finished Connect becomes rows: the account (keyed by the
Smartcar user id that `/user` returned, never by anything the browser sent) and its vehicles, in
one transaction, so there is never a vehicle without its token row or half a re-link.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from http import HTTPStatus

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from core.errors import (
    ApplicationError,
    ReconnectRequiredError,
    UpstreamError,
    UpstreamTimeoutError,
)
from smartcar_client.errors import TIMEOUT, SmartcarError, SmartcarReauthRequiredError
from smartcar_client.factory import client_from_settings
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


def account_reactivate(*, account: SmartcarAccount, reason: str, now: datetime) -> bool:
    """Undo a needs_reauth set for `reason` once Smartcar says the error is resolved.

    Only while `reason` is still the account's last error, its tokens are readable and its
    refresh token has not expired. Written with update() like `account_mark_needs_reauth`,
    never save(): the row's token fields must not be written back. True if it reactivated.
    """
    access, refresh = account.access_token, account.refresh_token
    if not (isinstance(access, str) and isinstance(refresh, str) and access and refresh):
        return False
    if account.refresh_expires_at is not None and account.refresh_expires_at <= now:
        return False
    # Compare-and-set: only while the webhook error is still the account's reason.
    updated = SmartcarAccount.objects.filter(
        pk=account.pk, status=SmartcarAccount.Status.NEEDS_REAUTH, last_error=reason
    ).update(status=SmartcarAccount.Status.ACTIVE, last_error="", updated_at=now)
    if updated:
        Vehicle.objects.filter(account_id=account.pk, status=Vehicle.Status.NEEDS_REAUTH).update(
            status=Vehicle.Status.ACTIVE, updated_at=now
        )
        account.status, account.last_error = SmartcarAccount.Status.ACTIVE, ""
    return bool(updated)


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


class VehicleDisconnectedError(ApplicationError):
    code = "vehicle_disconnected"
    message = "This vehicle is disconnected. Connect it again first."
    http_status = HTTPStatus.CONFLICT


def vehicle_update(
    *, vehicle: Vehicle, nickname: str | None = None, is_primary: bool | None = None
) -> Vehicle:
    """Rename the vehicle and/or make it (or stop it being) its owner's primary vehicle.

    `None` leaves a field as it is. Making a vehicle primary unsets the owner's other primary in
    the same transaction (the database allows one per owner); a disconnected vehicle cannot
    become primary (VehicleDisconnectedError, 409).
    """
    with transaction.atomic():
        # Lock the owner's vehicles: two requests switching the primary at once must not both
        # pass the "unset the others" step and then trip the one-primary constraint.
        list(Vehicle.objects.select_for_update().filter(owner_id=vehicle.owner_id).values("pk"))
        vehicle.refresh_from_db()
        fields: list[str] = []
        if nickname is not None:
            vehicle.nickname = nickname
            fields.append("nickname")
        if is_primary is True and not vehicle.is_primary:
            if vehicle.status == Vehicle.Status.DISCONNECTED:
                raise VehicleDisconnectedError()
            Vehicle.objects.filter(owner_id=vehicle.owner_id, is_primary=True).exclude(
                pk=vehicle.pk
            ).update(is_primary=False, updated_at=timezone.now())
            vehicle.is_primary = True
            fields.append("is_primary")
        elif is_primary is False and vehicle.is_primary:
            vehicle.is_primary = False
            fields.append("is_primary")
        if fields:
            vehicle.save(update_fields=[*fields, "updated_at"])
    return vehicle


def vehicle_disconnect(*, vehicle: Vehicle) -> Vehicle:
    """Revoke our access at Smartcar (`DELETE …/application`), then mark the vehicle disconnected.

    Smartcar refusing because access is already gone (re-authentication errors, an account that
    needs re-auth or whose tokens cannot be read) still disconnects locally. Smartcar being down
    or refusing for any other reason raises UpstreamError (502) and changes nothing here.
    When no live vehicle is left on the account, its tokens are deleted and it is marked
    disconnected. The primary flag moves to the owner's earliest-connected other live vehicle.
    Disconnecting a disconnected vehicle does nothing. Must not run inside a transaction: the
    Smartcar call may refresh tokens, which other workers must see at once.
    """
    if vehicle.status == Vehicle.Status.DISCONNECTED:
        return vehicle
    account = vehicle.account
    if account is not None and _may_call_smartcar(account):
        _revoke_at_smartcar(account=account, smartcar_vehicle_id=vehicle.smartcar_vehicle_id)
    return _vehicle_mark_disconnected(vehicle=vehicle)


def _may_call_smartcar(account: SmartcarAccount) -> bool:
    # A disconnected account has no tokens; unreadable ones cannot be sent (and must not be
    # "refreshed" into a needs_reauth we would immediately discard).
    return account.status != SmartcarAccount.Status.DISCONNECTED and account.tokens_readable


def _revoke_at_smartcar(*, account: SmartcarAccount, smartcar_vehicle_id: str) -> None:
    # Imported here: vehicles.tokens imports this module.
    from vehicles.tokens import account_call

    client = client_from_settings()
    try:
        account_call(
            account=account,
            call=lambda token: client.disconnect(token, smartcar_vehicle_id),
        )
    except (ReconnectRequiredError, SmartcarReauthRequiredError):
        # Access was already revoked (or the grant is dead): nothing left to revoke there.
        return
    except SmartcarError as exc:
        # Unknown whether Smartcar acted on a request that timed out: nothing changes here
        # either way, and the person may simply try again.
        raise (UpstreamTimeoutError() if exc.type == TIMEOUT else UpstreamError()) from exc


@transaction.atomic
def _vehicle_mark_disconnected(*, vehicle: Vehicle) -> Vehicle:
    now = timezone.now()
    was_primary = (
        Vehicle.objects.select_for_update()
        .filter(pk=vehicle.pk)
        .values_list("is_primary", flat=True)
    ).first()
    vehicle.status = Vehicle.Status.DISCONNECTED
    vehicle.disconnected_at = now
    vehicle.is_primary = False
    vehicle.save(update_fields=["status", "disconnected_at", "is_primary", "updated_at"])
    live = Vehicle.objects.exclude(status=Vehicle.Status.DISCONNECTED)
    if was_primary:
        successor = (
            live.filter(owner_id=vehicle.owner_id).order_by("connected_at", "created_at").first()
        )
        if successor is not None:
            successor.is_primary = True
            successor.save(update_fields=["is_primary", "updated_at"])
    if vehicle.account_id is not None and not live.filter(account_id=vehicle.account_id).exists():
        # update(): never save() an account whose token fields may hold UNREADABLE.
        SmartcarAccount.objects.filter(pk=vehicle.account_id).update(
            status=SmartcarAccount.Status.DISCONNECTED,
            access_token=None,
            refresh_token=None,
            access_expires_at=None,
            refresh_expires_at=None,
            updated_at=now,
        )
    return vehicle
