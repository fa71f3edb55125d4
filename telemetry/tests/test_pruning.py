"""Pruning old readings: in batches, never a vehicle's latest reading; `manage.py prune_telemetry`."""

import io
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from telemetry.models import Reading, TelemetryState
from telemetry.services.pruning import telemetry_prune
from telemetry.tests.test_polling import make_vehicles

pytestmark = pytest.mark.django_db


def reading(vehicle, days_ago: float) -> Reading:
    when = timezone.now() - timedelta(days=days_ago)
    return Reading.objects.create(
        vehicle=vehicle, recorded_at=when, received_at=when, source=Reading.Source.POLL, soc_pct=1
    )


def test_prune_deletes_only_readings_older_than_the_cutoff(user):
    (vehicle,) = make_vehicles(user, 1)
    old = [reading(vehicle, 40 + n) for n in range(5)]
    recent = [reading(vehicle, 29), reading(vehicle, 1)]
    TelemetryState.objects.create(vehicle=vehicle, latest_reading=recent[-1])

    assert telemetry_prune(older_than_days=30, batch_size=2) == 5

    assert set(Reading.objects.values_list("pk", flat=True)) == {r.pk for r in recent}
    assert len(old) == 5


def test_prune_never_deletes_a_latest_reading(user):
    a, b = make_vehicles(user, 2)
    latest_a = reading(a, 100)  # a vehicle silent for months keeps its last reading
    reading(a, 200)
    reading(b, 100)
    TelemetryState.objects.create(vehicle=a, latest_reading=latest_a)

    assert telemetry_prune(older_than_days=30, batch_size=1) == 2

    assert list(Reading.objects.values_list("pk", flat=True)) == [latest_a.pk]
    assert TelemetryState.objects.get(vehicle=a).latest_reading_id == latest_a.pk


def test_prune_works_in_batches(user):
    (vehicle,) = make_vehicles(user, 1)
    for n in range(7):
        reading(vehicle, 50 + n)
    with CaptureQueriesContext(connection) as queries:
        assert telemetry_prune(older_than_days=30, batch_size=3) == 7
    deletes = [q["sql"] for q in queries if q["sql"].startswith('DELETE FROM "telemetry_reading"')]
    assert len(deletes) == 3  # 3 + 3 + 1
    assert not Reading.objects.exists()


@pytest.mark.parametrize(("days", "batch"), [(0, 10), (-1, 10), (5, 0)])
def test_prune_rejects_nonsense(days, batch):
    with pytest.raises(ValueError):
        telemetry_prune(older_than_days=days, batch_size=batch)


def run(*args) -> str:
    out = io.StringIO()
    call_command("prune_telemetry", *args, stdout=out)
    return out.getvalue()


def test_command_prints_the_count(user):
    (vehicle,) = make_vehicles(user, 1)
    reading(vehicle, 10)
    reading(vehicle, 3)
    assert run("--older-than", "7") == "Deleted 1 readings older than 7 days.\n"
    assert Reading.objects.count() == 1


def test_command_defaults_to_the_retention_setting(user, settings):
    settings.TELEMETRY_RETENTION_DAYS = 5
    (vehicle,) = make_vehicles(user, 1)
    reading(vehicle, 10)
    reading(vehicle, 3)
    assert run() == "Deleted 1 readings older than 5 days.\n"


def test_command_refuses_without_days_or_setting(user, settings):
    settings.TELEMETRY_RETENTION_DAYS = None
    (vehicle,) = make_vehicles(user, 1)
    reading(vehicle, 1000)
    with pytest.raises(CommandError, match="TELEMETRY_RETENTION_DAYS"):
        run()
    assert Reading.objects.count() == 1


def test_command_rejects_zero_days(user):
    with pytest.raises(CommandError, match="at least 1 day"):
        run("--older-than", "0")
