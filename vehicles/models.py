"""Smartcar accounts (one per Smartcar user, holding the encrypted token pair) and vehicles.

Models hold data and small properties only; every write goes through `vehicles.services`.
"""

import uuid
from collections.abc import Iterable

from django.conf import settings
from django.db import models
from django.db.models import Q

from vehicles.fields import UNREADABLE, EncryptedTextField

TOKEN_FIELDS = frozenset({"access_token", "refresh_token"})


class SmartcarAccount(models.Model):
    """One Smartcar user's grant to us: the token pair that covers every vehicle they shared.

    Reads that only show an account leave the token columns out (no decryption per request);
    the first use of either token then loads both in one query (`refresh_from_db`).
    """

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        NEEDS_REAUTH = "needs_reauth", "Needs re-authentication"
        DISCONNECTED = "disconnected", "Disconnected"

    smartcar_user_id = models.CharField(max_length=100, unique=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="smartcar_accounts"
    )
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.ACTIVE)
    access_token = EncryptedTextField(null=True)
    refresh_token = EncryptedTextField(null=True)
    access_expires_at = models.DateTimeField(null=True, blank=True)
    refresh_expires_at = models.DateTimeField(null=True, blank=True)
    scopes = models.JSONField(default=list, blank=True)
    last_refreshed_at = models.DateTimeField(null=True, blank=True)
    # While set in the future, one worker is refreshing the token pair; others wait and re-read.
    # (SQLite has no row locks, so this compare-and-set lease is what makes refresh single-flight.)
    refresh_lease_until = models.DateTimeField(null=True, blank=True)
    # A mapped error code and Smartcar's request id only: never upstream text (it can echo tokens).
    last_error = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["owner", "status"], name="account_owner_status")]

    def __str__(self) -> str:
        return f"Smartcar user {self.smartcar_user_id}"

    def refresh_from_db(
        self,
        using: str | None = None,
        fields: Iterable[str] | None = None,
        from_queryset: models.QuerySet["SmartcarAccount"] | None = None,
    ) -> None:
        # Django loads a deferred field alone on first access: the pair comes in one query.
        if fields is not None:
            fields = list(fields)
            if TOKEN_FIELDS.intersection(fields):
                fields = [*fields, *(TOKEN_FIELDS & self.get_deferred_fields()).difference(fields)]
        super().refresh_from_db(using=using, fields=fields, from_queryset=from_queryset)

    @property
    def tokens_readable(self) -> bool:
        return self.access_token is not UNREADABLE and self.refresh_token is not UNREADABLE


class Vehicle(models.Model):
    """A vehicle as one of our users linked it.

    Only one live (not disconnected) row exists per Smartcar vehicle id. When another user links
    the same car, the earlier row is marked disconnected and a new row starts for the new owner,
    so that one owner never sees the previous owner's history.
    """

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        NEEDS_REAUTH = "needs_reauth", "Needs re-authentication"
        DISCONNECTED = "disconnected", "Disconnected"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    smartcar_vehicle_id = models.CharField(max_length=100)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="vehicles"
    )
    account = models.ForeignKey(
        SmartcarAccount,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="vehicles",
    )
    make = models.CharField(max_length=100, blank=True)
    model = models.CharField(max_length=100, blank=True)
    year = models.PositiveSmallIntegerField(null=True, blank=True)
    vin = models.CharField("VIN", max_length=17, blank=True)
    nickname = models.CharField(max_length=100, blank=True)
    is_primary = models.BooleanField(default=False)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.ACTIVE)
    connected_at = models.DateTimeField(null=True, blank=True)
    disconnected_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["smartcar_vehicle_id"],
                condition=~Q(status="disconnected"),
                name="unique_live_smartcar_vehicle",
            ),
            models.UniqueConstraint(
                fields=["owner"],
                condition=Q(is_primary=True),
                name="one_primary_vehicle_per_user",
            ),
        ]
        indexes = [models.Index(fields=["owner", "status"], name="vehicle_owner_status")]
        # The admin's "poll now": the support group has it, changing data stays superuser-only.
        permissions = [("poll_vehicle", "Can poll a vehicle now from the admin")]

    def __str__(self) -> str:
        label = " ".join(str(part) for part in (self.year, self.make, self.model) if part)
        return self.nickname or label or self.smartcar_vehicle_id
