"""Telemetry readings, each vehicle's polling state, and the app-wide Smartcar throttle.

A `Reading` is one snapshot of a vehicle as Smartcar reported it, in our units (percent, km).
`TelemetryState` is one row per vehicle: the pointer to its latest reading, its poll schedule,
the poller's lease, its failure streak and its Smartcar call count this month. `AppThrottle` is a
single row that every poller process shares, for Smartcar's app-wide rate limit.
"""

from django.db import models

from core.indexes import NullsFirstIndex
from vehicles.models import Vehicle


class Reading(models.Model):
    class Source(models.TextChoices):
        POLL = "poll", "Poll"
        WEBHOOK = "webhook", "Webhook"
        REFRESH = "refresh", "On-demand refresh"

    class ChargingState(models.TextChoices):
        CHARGING = "CHARGING", "Charging"
        FULLY_CHARGED = "FULLY_CHARGED", "Fully charged"
        NOT_CHARGING = "NOT_CHARGING", "Not charging"

    id = models.BigAutoField(primary_key=True)
    # No index of its own: the unique (vehicle, recorded_at) index below starts with the
    # vehicle and serves every lookup by vehicle; a second index only cost every INSERT.
    vehicle = models.ForeignKey(
        Vehicle, on_delete=models.CASCADE, related_name="readings", db_index=False
    )
    # When the vehicle recorded the values (sc-data-age / oemUpdatedAt), or when we received
    # them if Smartcar did not say.
    recorded_at = models.DateTimeField()
    received_at = models.DateTimeField()
    source = models.CharField(max_length=10, choices=Source.choices)
    soc_pct = models.FloatField(null=True, blank=True)
    range_km = models.FloatField(null=True, blank=True)
    # NULL is "unknown", like every other reading field; the API sends it as null.
    charging_state = models.CharField(  # noqa: DJ001
        max_length=20, choices=ChargingState.choices, null=True, blank=True
    )
    is_plugged_in = models.BooleanField(null=True, blank=True)
    latitude = models.FloatField(null=True, blank=True)
    longitude = models.FloatField(null=True, blank=True)
    odometer_km = models.FloatField(null=True, blank=True)
    # Per field, why it is missing: {"location": "PERMISSION", "odometer": "VEHICLE_STATE:ASLEEP"}.
    field_errors = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [
            # One snapshot per vehicle time, whichever path (poll, webhook) stored it first.
            # Its index on (vehicle, recorded_at) also serves history queries, newest first.
            models.UniqueConstraint(
                fields=["vehicle", "recorded_at"], name="unique_reading_per_vehicle_time"
            ),
        ]
        indexes = [models.Index(fields=["recorded_at"], name="reading_recorded")]

    def __str__(self) -> str:
        return f"{self.vehicle_id} at {self.recorded_at:%Y-%m-%d %H:%M:%S}"


class TelemetryState(models.Model):
    """A vehicle's telemetry bookkeeping, kept apart from the vehicle row it belongs to."""

    class Outcome(models.TextChoices):
        OK = "ok", "OK"
        UNCHANGED = "unchanged", "No new data"
        ASLEEP = "asleep", "Vehicle asleep or unreachable"
        RATE_LIMITED = "rate_limited", "Rate limited"
        BILLING = "billing", "Billing limit"
        REAUTH = "reauth", "Needs re-authentication"
        FAILED = "failed", "Failed"

    vehicle = models.OneToOneField(
        Vehicle, on_delete=models.CASCADE, primary_key=True, related_name="telemetry_state"
    )
    latest_reading = models.ForeignKey(
        Reading, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    next_poll_at = models.DateTimeField(null=True, blank=True)
    # A poller's claim: until then no other poller takes the vehicle. A crashed poller's
    # vehicles come back once the lease runs out.
    lease_until = models.DateTimeField(null=True, blank=True)
    lease_owner = models.CharField(max_length=100, blank=True)
    last_polled_at = models.DateTimeField(null=True, blank=True)
    last_outcome = models.CharField(max_length=20, choices=Outcome.choices, blank=True)
    # A mapped error (type:code and Smartcar's request id), never upstream text.
    last_error = models.CharField(max_length=200, blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    # Smartcar calls this calendar month (UTC), counted as Smartcar bills them.
    calls_month = models.DateField(null=True, blank=True)
    calls_this_month = models.PositiveIntegerField(default=0)
    last_manual_refresh_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            # In the poller's claim order (polling._claimable): a claim then reads the first due
            # rows off the index and stops at its batch, where on next_poll_at alone PostgreSQL
            # joined and sorted every state for each batch (6.6 ms against 0.8 at 3,000
            # vehicles half-polled; the cycle's claims grew with the square of the fleet).
            NullsFirstIndex(fields=["next_poll_at", "vehicle"], name="telemetry_state_claim_order")
        ]

    def __str__(self) -> str:
        return f"Telemetry state of {self.vehicle_id}"


class AppThrottle(models.Model):
    """One row (pk=1): when Smartcar's app-wide rate limit lets us call again."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    paused_until = models.DateTimeField(null=True, blank=True)
    reason = models.CharField(max_length=100, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"Smartcar app throttle until {self.paused_until}"


from telemetry.models_rollup import ReadingHour  # noqa: E402,F401
from telemetry.models_webhooks import WebhookEvent  # noqa: E402,F401
