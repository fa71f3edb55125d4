"""Smartcar webhook deliveries as we received them: one row per Smartcar event.

`event_id` is unique in the database: it is the idempotency key (Smartcar keeps `eventId` across
retries), so a redelivery or several concurrent copies store one row. The raw payload is kept so
that a failed event can be processed again (`manage.py process_webhooks --retry-failed`). Rows are
kept at least 7 days, the window Smartcar asks receivers to remember event ids for.
Holds data only; `telemetry.services.webhooks` does every write.
"""

from django.db import models

from vehicles.models import Vehicle


class WebhookEvent(models.Model):
    class Status(models.TextChoices):
        RECEIVED = "received", "Received, not processed yet"
        PROCESSED = "processed", "Processed"
        FAILED = "failed", "Processing failed"
        UNMATCHED = "unmatched", "No vehicle of ours"
        IGNORED = "ignored", "Event type we do not act on"

    id = models.BigAutoField(primary_key=True)
    # Smartcar's eventId; for a legacy delivery without one, "sha256:<hex of the raw body>".
    event_id = models.CharField(max_length=100, unique=True)
    # New on every delivery attempt: the one that was stored first.
    delivery_id = models.CharField(max_length=100, blank=True)
    event_type = models.CharField(max_length=40)
    smartcar_vehicle_id = models.CharField(max_length=100, blank=True)
    vehicle = models.ForeignKey(
        Vehicle,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="webhook_events",
    )
    payload = models.JSONField()
    received_at = models.DateTimeField()
    processed_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.RECEIVED)
    # A mapped code ("vehicle_state:invalid_signals"), never upstream text or a payload value.
    error = models.CharField(max_length=200, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    # `process_webhooks --follow` (SMARTCAR_WEBHOOK_PROCESSING=worker): a follower's claim on a
    # `received` event, live while lease_until is in the future, as the poller's on a vehicle.
    lease_until = models.DateTimeField(null=True, blank=True)
    lease_owner = models.CharField(max_length=100, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["status", "received_at"], name="webhook_status_received"),
            models.Index(fields=["received_at"], name="webhook_received"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.event_id}"
