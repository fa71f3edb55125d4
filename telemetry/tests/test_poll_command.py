"""`manage.py poll_telemetry`: options, output, exit status and signal handling."""

import io
import json
import os
import signal
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from smartcar_client.errors import SmartcarBillingError, SmartcarConfigurationError
from telemetry.management.commands.poll_telemetry import Command
from telemetry.models import TelemetryState
from telemetry.services import polling
from telemetry.services.readings import PollResult
from telemetry.tests.test_polling import (
    FakePoll,
    make_vehicles,
    ok_result,
    stand_in_for_the_real_poll,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def fake_poll(monkeypatch) -> FakePoll:
    poll = FakePoll()
    stand_in_for_the_real_poll(monkeypatch.setattr, poll)
    return poll


def run(*args, command=None, stdout=None):
    out = stdout or io.StringIO()
    call_command(command or Command(), *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_once_is_the_default_and_prints_a_one_line_summary(user, fake_poll):
    vehicles = make_vehicles(user, 2)
    output = run("--workers", "1")
    assert sorted(fake_poll.polled) == sorted(v.pk for v in vehicles)
    lines = output.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("polled 2, stored 2, skipped 0, failed 0 in ")
    assert "vehicles/s" in lines[0]
    assert "\r" not in output  # no progress bar when stdout is not a terminal


def test_json_prints_the_summary_as_json(user, fake_poll, monkeypatch):
    a, _ = make_vehicles(user, 2)
    error = SmartcarBillingError(status=430, type="BILLING", code="VEHICLE_REQUEST_LIMIT")
    fake_poll.answer = lambda v: (
        ok_result(v) if v.pk == a.pk else PollResult("billing", None, False, 1, error=error)
    )
    summary = json.loads(run("--once", "--json", "--workers", "1"))
    assert summary["polled"] == 2
    assert summary["stored"] == 1
    assert summary["failed"] == {"billing": 1}
    assert summary["outcomes"] == {"billing": 1, "ok": 1}
    assert summary["skipped"] == {}
    assert summary["needsOperator"] is False
    assert summary["pausedUntil"] is None
    assert isinstance(summary["durationSeconds"], float)
    assert isinstance(summary["vehiclesPerSecond"], float)


def test_all_ignores_the_schedule(user, fake_poll):
    (vehicle,) = make_vehicles(user, 1)
    TelemetryState.objects.create(vehicle=vehicle, next_poll_at=timezone.now() + timedelta(hours=1))
    run("--workers", "1")
    assert fake_poll.polled == []
    run("--all", "--workers", "1")
    assert fake_poll.polled == [vehicle.pk]


def test_vehicle_option_takes_our_id_or_the_smartcar_id_and_repeats(user, fake_poll):
    a, _, c = make_vehicles(user, 3)
    run("--vehicle", str(a.pk), "--vehicle", c.smartcar_vehicle_id, "--workers", "1")
    assert sorted(fake_poll.polled) == sorted([a.pk, c.pk])


def test_vehicle_option_without_all_still_follows_the_schedule(user, fake_poll):
    (vehicle,) = make_vehicles(user, 1)
    TelemetryState.objects.create(vehicle=vehicle, next_poll_at=timezone.now() + timedelta(hours=1))
    run("--vehicle", str(vehicle.pk), "--workers", "1")
    assert fake_poll.polled == []
    run("--vehicle", str(vehicle.pk), "--all", "--workers", "1")
    assert fake_poll.polled == [vehicle.pk]


def test_an_unknown_vehicle_is_an_error(user, fake_poll):
    make_vehicles(user, 1)
    with pytest.raises(CommandError, match="Unknown vehicle: nope"):
        run("--vehicle", "nope")
    assert fake_poll.polled == []


def test_workers_must_be_positive(fake_poll):
    with pytest.raises(CommandError):
        run("--workers", "0")


def test_loop_and_all_cannot_be_combined(fake_poll):
    with pytest.raises(CommandError, match="--all cannot be combined with --loop"):
        run("--loop", "--all")


def test_once_and_loop_are_exclusive(fake_poll):
    with pytest.raises(CommandError):
        run("--once", "--loop")


def test_workers_option_reaches_the_cycle(user, fake_poll, monkeypatch):
    seen = {}
    real = polling.run_poll_cycle

    def spy(**options):
        seen.update(options)
        return real(**{**options, "workers": 1})

    monkeypatch.setattr(polling, "run_poll_cycle", spy)
    run("--workers", "3")
    assert seen["workers"] == 3


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_progress_bar_only_on_a_terminal(user, fake_poll):
    make_vehicles(user, 3)
    output = run("--workers", "1", stdout=FakeTerminal())
    assert "\r[" in output
    assert "3/3" in output
    assert output.rstrip().splitlines()[-1].startswith("polled 3,")


# --- exit status --------------------------------------------------------------------------------


def test_exit_status_two_when_every_poll_hit_bad_credentials(user, fake_poll):
    make_vehicles(user, 2)
    error = SmartcarConfigurationError(status=401, type="OAUTH", code="invalid_client")
    fake_poll.answer = lambda v: PollResult("failed", None, False, 0, error=error)
    out = io.StringIO()
    with pytest.raises(CommandError) as raised:
        run("--workers", "1", stdout=out)
    assert raised.value.returncode == 2
    assert "failed 2 (configuration 2)" in out.getvalue()


def test_exit_status_two_when_every_poll_hit_billing(user, fake_poll):
    make_vehicles(user, 1)
    error = SmartcarBillingError(status=430, type="BILLING", code="VEHICLE_LIMIT")
    fake_poll.answer = lambda v: PollResult("billing", None, False, 1, error=error)
    with pytest.raises(CommandError) as raised:
        run("--json", "--workers", "1")
    assert raised.value.returncode == 2


def test_exit_status_zero_when_nothing_is_due_or_failures_are_transient(user, fake_poll):
    run()  # nothing at all
    make_vehicles(user, 1)
    fake_poll.answer = lambda v: PollResult("asleep", None, False, 1)
    assert "failed 1 (asleep 1)" in run("--workers", "1")


# --- signals ------------------------------------------------------------------------------------


def test_sigterm_handler_finishes_in_flight_work_releases_claims_and_exits_zero(user, fake_poll):
    make_vehicles(user, 3)
    command = Command()
    handlers = []

    def first_poll_gets_sigterm(vehicle):
        handlers.append(signal.getsignal(signal.SIGTERM))
        command.handle_stop_signal(signal.SIGTERM, None)
        return ok_result(vehicle)

    fake_poll.answer = first_poll_gets_sigterm
    previous = signal.getsignal(signal.SIGTERM)

    output = run("--loop", "--workers", "1", command=command)  # returns: exit status 0

    assert handlers == [command.handle_stop_signal]
    assert signal.getsignal(signal.SIGTERM) == previous  # restored
    assert len(fake_poll.polled) == 1
    assert "skipped 2 (stopping 2)" in output
    assert TelemetryState.objects.filter(last_outcome="ok").count() == 1
    assert not TelemetryState.objects.filter(lease_until__isnull=False).exists()


def test_a_real_sigint_stops_a_once_run_cleanly(user, fake_poll):
    make_vehicles(user, 2)

    def interrupted(vehicle):
        os.kill(os.getpid(), signal.SIGINT)  # delivered to our handler, not KeyboardInterrupt
        return ok_result(vehicle)

    fake_poll.answer = interrupted
    output = run("--workers", "1")
    assert len(fake_poll.polled) == 1
    assert "skipped 1 (stopping 1)" in output
    assert not TelemetryState.objects.filter(lease_until__isnull=False).exists()


def test_loop_runs_cycles_until_stopped(user, fake_poll, monkeypatch):
    make_vehicles(user, 1)
    command = Command()
    cycles = []
    monkeypatch.setattr(polling, "seconds_until_next_due", lambda **kw: 0)
    monkeypatch.setattr(polling, "LOOP_MIN_SLEEP_SECONDS", 0.01)
    real = polling.run_poll_cycle

    def counting(**options):
        summary = real(**options)
        cycles.append(summary.polled)
        if len(cycles) == 3:
            command.handle_stop_signal(signal.SIGTERM, None)
        return summary

    monkeypatch.setattr(polling, "run_poll_cycle", counting)
    output = run("--loop", "--workers", "1", command=command)
    assert cycles == [1, 0, 0]  # polled once, then not due again
    assert output.strip().splitlines() == [output.strip()]  # idle cycles print nothing
    assert output.startswith("polled 1,")
