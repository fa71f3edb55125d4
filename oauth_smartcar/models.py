"""Connect attempts: one row per "Connect a vehicle" started by a user.

Support staff read these to answer "why did my car not link?". Secrets are never stored: the
start ticket, the `state`, the browser binding and the authorization code are kept as SHA-256
digests only, which is enough to recognise them and useless to anyone reading the table.
"""

import uuid

from django.conf import settings
from django.db import models


class ConnectAttempt(models.Model):
    class Outcome(models.TextChoices):
        PENDING = "", "Pending"
        LINKED = "linked", "Linked"
        RECOVERED = "recovered", "Linked through recovery"
        DENIED = "denied", "Denied by the user"
        INCOMPATIBLE = "incompatible", "Incompatible vehicle"
        FAILED = "failed", "Failed"
        EXPIRED = "expired", "Expired"

    class Channel(models.TextChoices):
        BROWSER = "browser", "Browser redirect"
        RECOVERY = "recovery", "Recovery (complete-connect)"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="connect_attempts"
    )
    channel = models.CharField(max_length=10, choices=Channel.choices, default=Channel.BROWSER)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    opened_at = models.DateTimeField(null=True, blank=True)
    returned_at = models.DateTimeField(null=True, blank=True)
    # Set while one request exchanges the code, so a concurrent duplicate cannot exchange it too.
    claimed_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=20, choices=Outcome.choices, blank=True, default="")

    # NULL, not "", for "none yet": unique columns allow many NULLs but only one "".
    ticket_digest = models.CharField(max_length=64, unique=True, null=True, editable=False)  # noqa: DJ001
    state_digest = models.CharField(max_length=64, unique=True, null=True, editable=False)  # noqa: DJ001
    browser_digest = models.CharField(max_length=64, blank=True, editable=False)
    code_digest = models.CharField(max_length=64, unique=True, null=True, editable=False)  # noqa: DJ001

    # Smartcar's Connect error (`error`, `error_description`) or our own code for a failure.
    error_code = models.CharField(max_length=64, blank=True)
    error_description = models.CharField(max_length=500, blank=True)
    smartcar_request_id = models.CharField(max_length=100, blank=True)
    smartcar_user_id = models.CharField(max_length=100, blank=True)
    # Incompatible-vehicle extras Smartcar may add (make, model, year), for support.
    details = models.JSONField(default=dict, blank=True)
    vehicles = models.ManyToManyField(
        "vehicles.Vehicle", blank=True, related_name="connect_attempts"
    )
    vehicles_moved_from_other_user = models.PositiveIntegerField(default=0)
    redirect_url = models.URLField(max_length=2000, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["user", "-created_at"], name="attempt_user_created")]

    def __str__(self) -> str:
        return f"Connect attempt {self.id} ({self.get_outcome_display()})"

    @property
    def is_completed(self) -> bool:
        return self.completed_at is not None
