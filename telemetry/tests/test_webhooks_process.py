"""Acting on stored webhook events: readings, vehicle errors, legacy shapes, failures, the command."""

from datetime import timedelta
from http import HTTPStatus
from io import StringIO

import pytest
from django.core.checks import run_checks
from django.core.management import CommandError, call_command
from django.db import OperationalError, connection
from django.db.models import QuerySet
from django.utils import timezone

from telemetry.models import Reading, TelemetryState, WebhookEvent
from telemetry.services import webhooks as service
from telemetry.tests.webhook_support import (
    T0,
    T0_MS,
    error_event,
    link,
    send,
    state_event,
)
from telemetry.webhook_checks import check_webhook_settings, register_checks
from vehicles.models import SmartcarAccount, Vehicle

pytestmark = pytest.mark.django_db


@pytest.fixture
def vehicle(user):
    return link(user).vehicles[0]


def accepted(client, event) -> WebhookEvent:
    response = send(client, event)
    assert response.status_code == HTTPStatus.OK
    assert response.json() == {"status": "accepted"}
    return WebhookEvent.objects.get(event_id=event["eventId"])


def state_of(vehicle) -> TelemetryState:
    return TelemetryState.objects.get(vehicle=vehicle)


# --- VEHICLE_STATE ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("triggers", "in_data"), [("data", False), ("top", True)], ids=["docs-shape", "ha-shape"]
)
def test_vehicle_state_becomes_a_webhook_reading(client, vehicle, triggers, in_data):
    event = accepted(client, state_event(triggers=triggers, vehicle_id_in_data=in_data))

    reading = Reading.objects.get()
    assert (reading.vehicle_id, reading.source) == (vehicle.pk, Reading.Source.WEBHOOK)
    assert (reading.soc_pct, reading.range_km) == (80.0, 300.0)
    assert reading.charging_state == Reading.ChargingState.NOT_CHARGING
    assert reading.recorded_at == T0
    assert reading.received_at == event.received_at
    assert state_of(vehicle).latest_reading == reading
    assert (event.status, event.vehicle_id, event.error) == ("processed", vehicle.pk, "")
    assert event.processed_at is not None


def test_trigger_codes_reads_both_documented_shapes():
    assert service.trigger_codes(state_event(triggers="data")) == ["tractionbattery-stateofcharge"]
    assert service.trigger_codes(state_event(triggers="top")) == ["tractionbattery-stateofcharge"]
    first = {"triggers": [{"type": "FIRST_DELIVERY"}], "data": {"triggers": "junk"}}
    assert service.trigger_codes(first) == ["FIRST_DELIVERY"]


def test_older_reading_goes_to_history_and_latest_stays(client, vehicle):
    accepted(client, state_event(soc=70, oem_ms=T0_MS + 600_000))
    accepted(client, state_event(soc=60, oem_ms=T0_MS))

    assert sorted(Reading.objects.values_list("soc_pct", flat=True)) == [60.0, 70.0]
    latest = state_of(vehicle).latest_reading
    assert (latest.soc_pct, latest.recorded_at) == (70.0, T0 + timedelta(minutes=10))


@pytest.mark.parametrize("vehicle_id", ["unknown-vehicle", None])
def test_unknown_vehicle_is_stored_unmatched(client, vehicle, vehicle_id):
    event = accepted(client, state_event(vehicle_id))

    assert (event.status, event.vehicle_id) == ("unmatched", None)
    assert Reading.objects.count() == 0


def test_disconnected_vehicle_is_unmatched(client, vehicle):
    Vehicle.objects.filter(pk=vehicle.pk).update(status=Vehicle.Status.DISCONNECTED)

    assert accepted(client, state_event()).status == "unmatched"


def test_signals_that_all_failed_store_nothing(client, vehicle):
    event = state_event()
    for item in event["data"]["signals"]:
        del item["body"]
        item["status"] = {"value": "ERROR", "error": {"type": "VEHICLE_STATE", "code": "ASLEEP"}}

    stored = accepted(client, event)

    assert (stored.status, stored.error) == ("processed", "no_values")
    assert Reading.objects.count() == 0


def test_signals_that_are_not_a_list_mark_the_event_failed(client, vehicle):
    event = state_event()
    event["data"]["signals"] = {"not": "a list"}

    stored = accepted(client, event)

    assert (stored.status, stored.error, stored.attempts) == ("failed", "invalid_signals", 1)


# --- VEHICLE_ERROR ------------------------------------------------------------------------------


def test_asleep_error_is_recorded_and_resolved(client, vehicle):
    accepted(client, error_event(code="ASLEEP"))

    state = state_of(vehicle)
    assert (state.last_outcome, state.last_error) == ("asleep", "webhook:VEHICLE_STATE:ASLEEP")
    assert Vehicle.objects.get().status == Vehicle.Status.ACTIVE

    accepted(client, error_event(code="ASLEEP", state="RESOLVED"))

    state = state_of(vehicle)
    assert (state.last_outcome, state.last_error) == ("", "")


def test_resolving_one_error_leaves_another_in_place(client, vehicle):
    accepted(client, error_event(code="UNREACHABLE"))
    accepted(client, error_event(code="ASLEEP", state="RESOLVED"))

    assert state_of(vehicle).last_error == "webhook:VEHICLE_STATE:UNREACHABLE"


def test_other_errors_are_recorded_as_failed_without_upstream_text(client, vehicle):
    accepted(client, error_event(type_="CONNECTED_SERVICES_ACCOUNT", code="SUBSCRIPTION"))

    state = state_of(vehicle)
    assert (state.last_outcome, state.last_error) == (
        "failed",
        "webhook:CONNECTED_SERVICES_ACCOUNT:SUBSCRIPTION",
    )
    assert SmartcarAccount.objects.get().status == SmartcarAccount.Status.ACTIVE
    assert "Upstream" not in str(TelemetryState.objects.values().get())


@pytest.mark.parametrize(
    ("type_", "code", "resolution"),
    [
        ("CONNECTED_SERVICES_ACCOUNT", "PERMISSION", "REAUTHENTICATE"),
        ("CONNECTED_SERVICES_ACCOUNT", "AUTHENTICATION_FAILED", None),
        ("PERMISSION", None, "REAUTHENTICATE"),
    ],
)
def test_reauth_errors_mark_the_account_and_resolved_reactivates(
    client, vehicle, type_, code, resolution
):
    accepted(client, error_event(type_=type_, code=code, resolution=resolution))

    account = SmartcarAccount.objects.get()
    reason = f"webhook:{type_}:{code}" if code else f"webhook:{type_}"
    assert (account.status, account.last_error) == ("needs_reauth", reason)
    assert Vehicle.objects.get().status == Vehicle.Status.NEEDS_REAUTH
    assert state_of(vehicle).last_outcome == "reauth"

    accepted(client, error_event(type_=type_, code=code, resolution=resolution, state="RESOLVED"))

    account = SmartcarAccount.objects.get()
    assert (account.status, account.last_error) == ("active", "")
    assert Vehicle.objects.get().status == Vehicle.Status.ACTIVE
    assert state_of(vehicle).last_error == ""


def test_permission_error_without_reauthenticate_does_not_need_reauth(client, vehicle):
    accepted(client, error_event(type_="PERMISSION", code="MISSING_SCOPE", resolution="CONTACT"))

    assert SmartcarAccount.objects.get().status == SmartcarAccount.Status.ACTIVE


def reauth_error(**kwargs):
    return error_event(
        type_="CONNECTED_SERVICES_ACCOUNT", code="PERMISSION", resolution="REAUTHENTICATE", **kwargs
    )


def test_resolved_does_not_undo_a_needs_reauth_it_did_not_cause(client, vehicle):
    SmartcarAccount.objects.update(status="needs_reauth", last_error="invalid_grant")

    accepted(client, reauth_error(state="RESOLVED"))

    assert SmartcarAccount.objects.get().status == SmartcarAccount.Status.NEEDS_REAUTH


def test_resolved_keeps_needs_reauth_when_tokens_are_unreadable(client, vehicle):
    accepted(client, reauth_error())
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE vehicles_smartcaraccount SET access_token = %s, refresh_token = %s",
            [b"not a ciphertext", b"not a ciphertext"],
        )

    accepted(client, reauth_error(state="RESOLVED"))

    assert SmartcarAccount.objects.get().status == SmartcarAccount.Status.NEEDS_REAUTH


def test_resolved_keeps_needs_reauth_when_the_refresh_token_expired(client, vehicle):
    accepted(client, reauth_error())
    SmartcarAccount.objects.update(refresh_expires_at=timezone.now() - timedelta(minutes=1))

    accepted(client, reauth_error(state="RESOLVED"))

    assert SmartcarAccount.objects.get().status == SmartcarAccount.Status.NEEDS_REAUTH


def test_error_event_without_errors_fails_and_unknown_states_are_skipped(client, vehicle):
    empty = error_event()
    empty["data"]["errors"] = []
    odd = error_event(state="PENDING")

    assert accepted(client, empty).error == "vehicle_error:no_errors"
    assert accepted(client, odd).status == "processed"
    assert not TelemetryState.objects.filter(vehicle=vehicle).exclude(last_error="").exists()


def test_unknown_event_type_is_ignored(client, vehicle):
    event = error_event()
    event["eventType"] = "VEHICLE_SOMETHING_NEW"

    assert accepted(client, event).status == "ignored"


# --- legacy 2.0 deliveries ----------------------------------------------------------------------


def legacy(event_name: str, payload: dict) -> dict:
    return {"version": "2.0", "webhookId": "w", "eventName": event_name, "mode": "live"} | {
        "payload": payload
    }


def battery_item(fraction: float, age: str = "2025-03-01T12:00:00.000Z") -> dict:
    return {
        "path": "/battery",
        "code": 200,
        "body": {"percentRemaining": fraction, "range": 200.0},
        "headers": {"sc-data-age": age},
    }


@pytest.mark.parametrize("event_name", ["scheduled", "dynamic"])
def test_legacy_batch_delivery_becomes_readings(client, user, event_name):
    link(user, vehicle_ids=("vid-1", "vid-2"))
    body = legacy(
        event_name,
        {
            "vehicles": [
                {"vehicleId": "vid-1", "requestId": "r1", "data": [battery_item(0.5)]},
                {"vehicleId": "not-ours", "requestId": "r2", "data": [battery_item(0.4)]},
                {"vehicleId": "vid-2", "requestId": "r3", "data": [battery_item(0.25)]},
            ]
        },
    )

    response = send(client, body)

    assert response.status_code == HTTPStatus.OK
    event = WebhookEvent.objects.get()
    assert (event.status, event.event_type, event.vehicle.smartcar_vehicle_id) == (
        "processed",
        event_name,
        "vid-1",
    )
    readings = {r.vehicle.smartcar_vehicle_id: r for r in Reading.objects.select_related("vehicle")}
    assert {vid: r.soc_pct for vid, r in readings.items()} == {"vid-1": 50.0, "vid-2": 25.0}
    assert readings["vid-1"].recorded_at == T0
    assert readings["vid-1"].source == Reading.Source.WEBHOOK


def test_legacy_batch_for_unknown_vehicles_is_unmatched(client, vehicle):
    body = legacy("scheduled", {"vehicles": [{"vehicleId": "x", "data": [battery_item(0.5)]}]})

    send(client, body)

    assert WebhookEvent.objects.get().status == "unmatched"


def test_legacy_batch_with_a_malformed_item_fails(client, vehicle):
    body = legacy("scheduled", {"vehicles": [{"vehicleId": "vid-1", "data": [{"code": 200}]}]})

    send(client, body)

    event = WebhookEvent.objects.get()
    assert (event.status, event.error) == ("failed", "invalid_batch:path")


@pytest.mark.parametrize(
    ("event_type", "charging", "plugged"),
    [
        ("CHARGING_STARTED", "CHARGING", True),
        ("CHARGING_STOPPED", "NOT_CHARGING", None),
        ("CHARGING_COMPLETED", "FULLY_CHARGED", True),
    ],
)
def test_legacy_charging_events(client, vehicle, event_type, charging, plugged):
    payload = {
        "eventId": f"ev-{event_type}",
        "vehicleId": "vid-1",
        "eventType": event_type,
        "eventTime": "2025-03-01T12:00:00Z",
    }

    send(client, legacy("eventBased", payload))

    event = WebhookEvent.objects.get()
    assert (event.event_id, event.status) == (f"ev-{event_type}", "processed")
    reading = Reading.objects.get()
    assert (reading.charging_state, reading.is_plugged_in, reading.recorded_at) == (
        charging,
        plugged,
        T0,
    )
    assert reading.soc_pct is None


def test_legacy_unknown_event_based_type_is_ignored(client, vehicle):
    payload = {"eventId": "e1", "vehicleId": "vid-1", "eventType": "DOOR_OPENED"}

    send(client, legacy("eventBased", payload))

    assert WebhookEvent.objects.get().status == "ignored"
    assert Reading.objects.count() == 0


# --- failures and reprocessing ------------------------------------------------------------------


def test_processing_failure_is_kept_and_reprocessed(client, vehicle, monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("secret-ish detail that must not be stored")

    monkeypatch.setattr(service, "telemetry_store_reading", broken)
    event = accepted(client, state_event())
    assert (event.status, event.error, event.attempts) == (
        "failed",
        "internal_error:RuntimeError",
        1,
    )
    assert event.processed_at is None
    monkeypatch.undo()

    out = StringIO()
    call_command("process_webhooks", "--retry-failed", stdout=out)

    event.refresh_from_db()
    assert (event.status, event.error, event.attempts) == ("processed", "", 2)
    assert Reading.objects.count() == 1
    assert out.getvalue().strip() == "Retried 1 events: processed 1."


def test_a_failure_to_record_the_failure_still_answers_2xx(client, vehicle, monkeypatch):
    def broken(event):
        raise RuntimeError("boom")

    real_update = QuerySet.update

    def update(self, **kwargs):
        if self.model is WebhookEvent:
            raise OperationalError("database went away")
        return real_update(self, **kwargs)

    monkeypatch.setattr(service, "_handle", broken)
    monkeypatch.setattr(QuerySet, "update", update)

    response = send(client, state_event())

    assert response.status_code == HTTPStatus.OK
    assert WebhookEvent.objects.get().status == "received"  # --retry-failed takes it later


def test_retry_takes_stale_received_events_only(client, vehicle):
    stale = WebhookEvent.objects.create(
        event_id="stale",
        event_type="VEHICLE_STATE",
        smartcar_vehicle_id="vid-1",
        payload=state_event(event_id="stale"),
        received_at=timezone.now() - timedelta(minutes=10),
    )
    fresh = WebhookEvent.objects.create(
        event_id="fresh",
        event_type="VEHICLE_STATE",
        smartcar_vehicle_id="vid-1",
        payload=state_event(event_id="fresh", oem_ms=T0_MS + 60_000),
        received_at=timezone.now(),
    )

    call_command("process_webhooks", "--retry-failed", stdout=StringIO())

    stale.refresh_from_db()
    fresh.refresh_from_db()
    assert (stale.status, fresh.status) == ("processed", "received")


def test_processed_event_is_not_processed_again_unless_forced(client, vehicle):
    event = accepted(client, state_event())

    assert service.webhook_event_process(event=event) == "processed"
    event.refresh_from_db()
    assert event.attempts == 1

    out = StringIO()
    call_command("process_webhooks", "--event", event.event_id, stdout=out)
    call_command("process_webhooks", "--event", str(event.pk), stdout=out)

    event.refresh_from_db()
    assert event.attempts == 3
    assert Reading.objects.count() == 1  # the same vehicle time is not stored twice
    assert f"Event {event.pk} (VEHICLE_STATE): processed." in out.getvalue()


@pytest.mark.parametrize(
    "args",
    [[], ["--event", "no-such-event"], ["--prune-days", "6"], ["--retry-failed", "--limit", "0"]],
)
def test_command_refuses_bad_arguments(args):
    with pytest.raises(CommandError):
        call_command("process_webhooks", *args, stdout=StringIO())


def test_prune_keeps_the_last_seven_days():
    now = timezone.now()
    for days in (3, 6, 8, 40):
        WebhookEvent.objects.create(
            event_id=f"e{days}",
            event_type="VEHICLE_STATE",
            payload={},
            received_at=now - timedelta(days=days),
        )

    out = StringIO()
    call_command("process_webhooks", "--prune-days", "7", stdout=out)

    assert sorted(WebhookEvent.objects.values_list("event_id", flat=True)) == ["e3", "e6"]
    assert "Deleted 2 webhook events older than 7 days." in out.getvalue()
    with pytest.raises(ValueError, match="7 days"):
        service.webhook_events_prune(older_than_days=6)


# --- system check -------------------------------------------------------------------------------


def test_check_warns_without_a_management_token(settings):
    settings.DEBUG = False
    settings.SMARTCAR_MANAGEMENT_TOKEN = ""

    assert [m.id for m in check_webhook_settings()] == ["telemetry.W001"]
    settings.DEBUG = True
    assert check_webhook_settings() == []


def test_check_warns_when_previous_equals_current(settings):
    settings.DEBUG = False
    settings.SMARTCAR_MANAGEMENT_TOKEN_PREVIOUS = settings.SMARTCAR_MANAGEMENT_TOKEN

    assert [m.id for m in check_webhook_settings()] == ["telemetry.W002"]
    settings.SMARTCAR_MANAGEMENT_TOKEN_PREVIOUS = "older-token"
    assert check_webhook_settings() == []


def test_registered_check_runs_with_the_system_checks(settings):
    register_checks()
    settings.DEBUG = False
    settings.SMARTCAR_MANAGEMENT_TOKEN = ""

    assert "telemetry.W001" in [m.id for m in run_checks()]
