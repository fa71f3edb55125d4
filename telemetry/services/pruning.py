"""Deleting old telemetry readings in batches.

Owns `telemetry_prune`. Must never delete a reading that a `TelemetryState` points to as its
vehicle's latest (the API serves it however old it is), nor hold one long transaction over the
whole table: each batch is its own short statement, so pollers keep writing meanwhile.
"""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from telemetry.models import Reading, TelemetryState

DEFAULT_BATCH_SIZE = 1000


def telemetry_prune(*, older_than_days: int, batch_size: int = DEFAULT_BATCH_SIZE) -> int:
    """Delete readings recorded more than `older_than_days` days ago; returns how many.

    Raises ValueError for a non-positive `older_than_days` or `batch_size`.
    """
    if older_than_days < 1:
        raise ValueError("older_than_days must be at least 1")
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    cutoff = timezone.now() - timedelta(days=older_than_days)
    latest = TelemetryState.objects.filter(latest_reading__isnull=False).values("latest_reading")
    deleted = 0
    while True:
        batch = list(
            Reading.objects.filter(recorded_at__lt=cutoff)
            .exclude(pk__in=latest)
            .order_by("recorded_at", "pk")
            .values_list("pk", flat=True)[:batch_size]
        )
        if not batch:
            return deleted
        # Re-check the latest pointers in the DELETE itself: one may have moved meanwhile.
        count, _ = Reading.objects.filter(pk__in=batch).exclude(pk__in=latest).delete()
        deleted += count
        if count == 0:
            return deleted
