"""core.leases: the lease owner name and the "no live lease" condition."""

from datetime import UTC, datetime, timedelta

import pytest

from core.leases import lease_free, lease_owner
from telemetry.models import TelemetryState, WebhookEvent


def test_each_claimer_gets_its_own_owner_name_that_fits_both_columns():
    names = {lease_owner() for _ in range(50)}
    assert len(names) == 50
    limit = min(
        TelemetryState._meta.get_field("lease_owner").max_length,
        WebhookEvent._meta.get_field("lease_owner").max_length,
    )
    assert all(len(name) <= limit for name in names)


@pytest.mark.django_db
def test_only_rows_without_a_live_lease_are_free():
    now = datetime(2026, 1, 1, tzinfo=UTC)
    for n, until in enumerate([None, now - timedelta(seconds=1), now, now + timedelta(1)]):
        WebhookEvent.objects.create(
            event_id=f"e{n}",
            event_type="VEHICLE_STATE",
            payload={},
            received_at=now,
            lease_until=until,
        )
    free = WebhookEvent.objects.filter(lease_free(now)).order_by("event_id")
    assert list(free.values_list("event_id", flat=True)) == ["e0", "e1"]
