"""telemetry.services.readings: polling one vehicle over v2 and v3, storing, counting calls."""

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import requests
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone
from responses import matchers

from core.errors import ReconnectRequiredError
from smartcar_client.errors import (
    SmartcarBillingError,
    SmartcarMalformedResponseError,
    SmartcarRetryLaterError,
)
from smartcar_client.types import TokenSet
from telemetry.mapping import ReadingData
from telemetry.models import Reading, TelemetryState
from telemetry.services.readings import (
    PollResult,
    TelemetryUnavailableError,
    telemetry_poll_read,
    telemetry_poll_store,
    telemetry_poll_vehicle,
    telemetry_state_write,
    telemetry_store_reading,
)
from vehicles.models import SmartcarAccount, Vehicle
from vehicles.services import LinkedVehicleInfo, account_link

pytestmark = pytest.mark.django_db

FIXTURES = Path(__file__).parent / "fixtures"
VID = "vid-1"
ACCESS = "access-token-value-1"
BATCH_URL = f"https://api.smartcar.test/v2.0/vehicles/{VID}/batch"
SIGNALS_URL = f"https://vehicle.api.smartcar.test/v3/vehicles/{VID}/signals"
TOKEN_URL = "https://auth.smartcar.test/oauth/token"
ALL_SCOPES = ["read_vehicle_info", "read_battery", "read_charge", "read_location", "read_odometer"]
ALL_PATHS = ["/battery", "/charge", "/location", "/odometer"]


def load(name: str):
    return json.loads((FIXTURES / name).read_text())


def error_body(status: int, error_type: str, code: str | None) -> dict:
    return {"type": error_type, "code": code, "statusCode": status, "description": "text"}


def make_vehicle(user, scopes=ALL_SCOPES) -> Vehicle:
    tokens = TokenSet.from_json(
        {"access_token": ACCESS, "refresh_token": "refresh-token-value-1", "expires_in": 7200}
    )
    result = account_link(
        owner=user,
        smartcar_user_id="sc-user-1",
        tokens=tokens,
        scopes=scopes,
        vehicles=[LinkedVehicleInfo(VID, make="TESLA")],
    )
    return Vehicle.objects.get(pk=result.vehicles[0].pk)


@pytest.fixture
def vehicle(user) -> Vehicle:
    return make_vehicle(user)


@pytest.fixture
def v2(settings):
    settings.SMARTCAR_VEHICLE_API = "v2"


@pytest.fixture
def v3(settings):
    settings.SMARTCAR_VEHICLE_API = "v3"


def mock_answers(smartcar_api) -> None:
    smartcar_api.post(BATCH_URL, json=load("v2_batch_ok.json"))
    smartcar_api.get(SIGNALS_URL, json={**load("v3_signals_page1.json"), "links": {"next": None}})


def state_of(vehicle: Vehicle) -> TelemetryState:
    return TelemetryState.objects.get(vehicle=vehicle)


def this_month() -> date:
    return timezone.now().astimezone(UTC).date().replace(day=1)


# --- v2 -----------------------------------------------------------------------------------------


def test_v2_full_success_one_batch_for_granted_paths(v2, vehicle, smartcar_api):
    smartcar_api.post(
        BATCH_URL,
        json=load("v2_batch_ok.json"),
        match=[matchers.json_params_matcher({"requests": [{"path": p} for p in ALL_PATHS]})],
    )

    result = telemetry_poll_vehicle(vehicle=vehicle)

    assert len(smartcar_api.calls) == 1
    assert smartcar_api.calls[0].request.headers["Authorization"] == f"Bearer {ACCESS}"
    assert (result.outcome, result.stored, result.calls, result.error) == ("ok", True, 4, None)
    reading = Reading.objects.get()
    assert result.reading == reading
    assert reading.soc_pct == pytest.approx(80.0)  # percentRemaining 0.8
    assert (reading.charging_state, reading.is_plugged_in) == ("CHARGING", True)
    assert (reading.latitude, reading.longitude, reading.odometer_km) == (52.52, 13.405, 51234.5)
    assert reading.recorded_at == datetime(2025, 3, 1, 10, 14, 30, tzinfo=UTC)
    assert reading.source == Reading.Source.POLL
    state = state_of(vehicle)
    assert state.latest_reading_id == reading.pk
    assert (state.calls_month, state.calls_this_month) == (this_month(), 4)


def test_v2_batch_asks_only_for_paths_the_scopes_allow(v2, user, smartcar_api):
    vehicle = make_vehicle(user, scopes=["read_battery", "read_location", "read_vin"])
    smartcar_api.post(
        BATCH_URL,
        json={"responses": load("v2_batch_ok.json")["responses"][::2]},
        match=[
            matchers.json_params_matcher(
                {"requests": [{"path": "/battery"}, {"path": "/location"}]}
            )
        ],
    )

    result = telemetry_poll_vehicle(vehicle=vehicle)

    assert (result.outcome, result.calls) == ("ok", 2)
    assert state_of(vehicle).calls_this_month == 2


def test_v2_without_telemetry_scopes_needs_reauth_without_a_call(v2, user, smartcar_api):
    vehicle = make_vehicle(user, scopes=["read_vehicle_info", "read_vin"])
    mock_answers(smartcar_api)

    result = telemetry_poll_vehicle(vehicle=vehicle)

    assert (result.outcome, result.calls) == ("reauth", 0)
    assert isinstance(result.error, ReconnectRequiredError)
    assert len(smartcar_api.calls) == 0


def test_v2_partial_batch_failure_keeps_the_rest(v2, vehicle, smartcar_api):
    smartcar_api.post(BATCH_URL, json=load("v2_batch_partial.json"))

    result = telemetry_poll_vehicle(vehicle=vehicle)

    assert (result.outcome, result.calls) == ("ok", 4)
    reading = result.reading
    assert reading.soc_pct == pytest.approx(45.5)
    assert reading.latitude is None
    assert reading.odometer_km is None
    assert reading.field_errors == {"location": "PERMISSION", "odometer": "VEHICLE_STATE:ASLEEP"}
    # A PERMISSION on one batch item is not a reason to drop the whole grant.
    assert SmartcarAccount.objects.get().status == SmartcarAccount.Status.ACTIVE


def test_v2_every_item_asleep_is_asleep_and_stores_nothing(v2, vehicle, smartcar_api):
    smartcar_api.post(BATCH_URL, json=load("v2_batch_asleep.json"))

    result = telemetry_poll_vehicle(vehicle=vehicle)

    assert (result.outcome, result.stored, result.reading, result.calls) == (
        "asleep",
        False,
        None,
        4,
    )
    assert isinstance(result.error, SmartcarRetryLaterError)
    assert Reading.objects.count() == 0
    assert state_of(vehicle).calls_this_month == 4


def test_v2_every_item_failed_mixed_is_failed_not_asleep(v2, vehicle, smartcar_api):
    body = load("v2_batch_asleep.json")
    body["responses"][2] = {
        "path": "/location",
        "code": 501,
        "body": error_body(501, "COMPATIBILITY", "VEHICLE_NOT_CAPABLE"),
    }
    smartcar_api.post(BATCH_URL, json=body)

    result = telemetry_poll_vehicle(vehicle=vehicle)

    assert result.outcome == "failed"
    assert result.error is not None


def test_v2_every_item_rate_limited_waits_for_the_longest(v2, vehicle, smartcar_api):
    smartcar_api.post(BATCH_URL, json=load("v2_batch_rate_limited.json"))

    result = telemetry_poll_vehicle(vehicle=vehicle)

    assert (result.outcome, result.retry_after, result.app_rate_limited) == (
        "rate_limited",
        300,
        False,
    )


def test_v2_every_item_billing_is_billing(v2, vehicle, smartcar_api):
    item = {"code": 430, "body": error_body(430, "BILLING", "VEHICLE_REQUEST_LIMIT")}
    smartcar_api.post(BATCH_URL, json={"responses": [{"path": p, **item} for p in ALL_PATHS]})

    result = telemetry_poll_vehicle(vehicle=vehicle)

    assert result.outcome == "billing"
    assert isinstance(result.error, SmartcarBillingError)


@pytest.mark.parametrize(("code", "app_limited"), [("VEHICLE", False), ("SMARTCAR_API", True)])
def test_v2_429_honours_retry_after(v2, vehicle, smartcar_api, code, app_limited):
    smartcar_api.post(
        BATCH_URL,
        status=429,
        json=error_body(429, "RATE_LIMIT", code),
        headers={"Retry-After": "120"},
    )

    result = telemetry_poll_vehicle(vehicle=vehicle)

    assert (result.outcome, result.retry_after, result.app_rate_limited) == (
        "rate_limited",
        120,
        app_limited,
    )
    assert len(smartcar_api.calls) == 1
    # The request went out: its sub-requests count against the budget.
    assert (result.calls, state_of(vehicle).calls_this_month) == (4, 4)


def test_v2_430_is_billing(v2, vehicle, smartcar_api):
    smartcar_api.post(
        BATCH_URL, status=430, json=error_body(430, "BILLING", "VEHICLE_REQUEST_LIMIT")
    )

    result = telemetry_poll_vehicle(vehicle=vehicle)

    assert result.outcome == "billing"
    assert isinstance(result.error, SmartcarBillingError)


def test_v2_top_level_asleep_is_asleep(v2, vehicle, smartcar_api):
    smartcar_api.post(BATCH_URL, status=409, json=error_body(409, "VEHICLE_STATE", "ASLEEP"))

    assert telemetry_poll_vehicle(vehicle=vehicle).outcome == "asleep"


def test_v2_5xx_fails_and_is_sent_once(v2, vehicle, smartcar_api):
    smartcar_api.post(BATCH_URL, status=500, json=error_body(500, "SERVER", "INTERNAL"))

    result = telemetry_poll_vehicle(vehicle=vehicle)

    assert result.outcome == "failed"
    assert isinstance(result.error, SmartcarRetryLaterError)
    assert len(smartcar_api.calls) == 1


def test_v2_timeout_fails(v2, vehicle, smartcar_api):
    smartcar_api.post(BATCH_URL, body=requests.exceptions.ReadTimeout("slow"))

    result = telemetry_poll_vehicle(vehicle=vehicle)

    assert result.outcome == "failed"
    assert result.error.type == "TIMEOUT"
    assert Reading.objects.count() == 0


def test_v2_malformed_json_fails(v2, vehicle, smartcar_api):
    smartcar_api.post(BATCH_URL, body="<html>oops</html>", content_type="text/html")

    result = telemetry_poll_vehicle(vehicle=vehicle)

    assert result.outcome == "failed"
    assert isinstance(result.error, SmartcarMalformedResponseError)


def test_v2_authentication_error_refreshes_once_then_reauth(v2, vehicle, smartcar_api):
    smartcar_api.post(BATCH_URL, status=401, json=error_body(401, "AUTHENTICATION", None))
    smartcar_api.post(
        TOKEN_URL,
        json={"access_token": "access-2", "refresh_token": "refresh-2", "expires_in": 7200},
    )

    result = telemetry_poll_vehicle(vehicle=vehicle)

    assert result.outcome == "reauth"
    assert isinstance(result.error, ReconnectRequiredError)
    # Two batches went out (before and after the refresh): both are counted.
    assert (result.calls, state_of(vehicle).calls_this_month) == (8, 8)
    assert SmartcarAccount.objects.get().status == SmartcarAccount.Status.NEEDS_REAUTH


def test_v2_dedupe_same_vehicle_time_is_unchanged(v2, vehicle, smartcar_api):
    smartcar_api.post(BATCH_URL, json=load("v2_batch_ok.json"))

    first = telemetry_poll_vehicle(vehicle=vehicle)
    second = telemetry_poll_vehicle(vehicle=vehicle)

    assert (first.outcome, second.outcome) == ("ok", "unchanged")
    assert (second.stored, second.reading) == (False, first.reading)
    assert Reading.objects.count() == 1
    assert state_of(vehicle).calls_this_month == 8


def test_v2_calls_counter_restarts_at_a_new_month(v2, vehicle, smartcar_api):
    smartcar_api.post(BATCH_URL, json=load("v2_batch_ok.json"))
    last_month = (this_month() - timedelta(days=1)).replace(day=1)
    TelemetryState.objects.create(vehicle=vehicle, calls_month=last_month, calls_this_month=497)

    telemetry_poll_vehicle(vehicle=vehicle)
    assert (state_of(vehicle).calls_month, state_of(vehicle).calls_this_month) == (this_month(), 4)

    telemetry_poll_vehicle(vehicle=vehicle)
    assert state_of(vehicle).calls_this_month == 8


# Transactional, so the poll runs in autocommit as the poller's does (no test savepoints).
@pytest.mark.django_db(transaction=True)
def test_v2_query_count_per_poll_is_small(v2, vehicle, smartcar_api, django_assert_max_num_queries):
    smartcar_api.post(BATCH_URL, json=load("v2_batch_ok.json"))
    TelemetryState.objects.create(vehicle=vehicle)
    fresh = Vehicle.objects.get(pk=vehicle.pk)  # the account is not loaded yet

    with django_assert_max_num_queries(6):
        result = telemetry_poll_vehicle(vehicle=fresh)

    assert result.outcome == "ok"


# --- preconditions ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "status", [SmartcarAccount.Status.NEEDS_REAUTH, SmartcarAccount.Status.DISCONNECTED]
)
def test_inactive_account_is_reauth_without_any_call(v3, vehicle, smartcar_api, status):
    mock_answers(smartcar_api)  # a call, if made, would succeed
    SmartcarAccount.objects.update(status=status)
    vehicle = Vehicle.objects.get(pk=vehicle.pk)

    result = telemetry_poll_vehicle(vehicle=vehicle)

    assert result == PollResult("reauth", None, False, 0, error=result.error)
    assert isinstance(result.error, ReconnectRequiredError)
    assert len(smartcar_api.calls) == 0


def test_vehicle_without_account_is_reauth_without_any_call(v3, vehicle, smartcar_api):
    mock_answers(smartcar_api)  # a call, if made, would succeed
    Vehicle.objects.update(account=None)

    result = telemetry_poll_vehicle(vehicle=Vehicle.objects.get(pk=vehicle.pk))

    assert (result.outcome, result.calls) == ("reauth", 0)
    assert len(smartcar_api.calls) == 0


def test_disconnected_vehicle_is_not_polled(v3, vehicle, smartcar_api):
    mock_answers(smartcar_api)  # a call, if made, would succeed
    Vehicle.objects.update(status=Vehicle.Status.DISCONNECTED)

    result = telemetry_poll_vehicle(vehicle=Vehicle.objects.get(pk=vehicle.pk))

    assert (result.outcome, result.calls) == ("reauth", 0)
    assert len(smartcar_api.calls) == 0


def test_unknown_vehicle_api_setting_is_a_configuration_error(settings, vehicle, smartcar_api):
    settings.SMARTCAR_VEHICLE_API = "v9"

    with pytest.raises(ImproperlyConfigured):
        telemetry_poll_vehicle(vehicle=vehicle)


def test_unknown_source_is_refused(v3, vehicle):
    with pytest.raises(ValueError, match="source"):
        telemetry_poll_vehicle(vehicle=vehicle, source="carrier-pigeon")


# --- v3 -----------------------------------------------------------------------------------------


def mock_two_pages(smartcar_api) -> None:
    smartcar_api.get(
        SIGNALS_URL,
        json=load("v3_signals_page1.json"),
        match=[matchers.query_string_matcher("")],
    )
    smartcar_api.get(
        SIGNALS_URL,
        json=load("v3_signals_page2.json"),
        match=[matchers.query_param_matcher({"page": "2", "pageSize": "4"})],
    )


def test_v3_follows_pages_and_stores_one_reading(v3, vehicle, smartcar_api):
    mock_two_pages(smartcar_api)

    result = telemetry_poll_vehicle(vehicle=vehicle, source=Reading.Source.REFRESH)

    assert len(smartcar_api.calls) == 2
    assert (result.outcome, result.stored) == ("ok", True)
    reading = result.reading
    assert (reading.soc_pct, reading.range_km, reading.charging_state) == (81.5, 402.0, "CHARGING")
    assert (reading.latitude, reading.longitude, reading.odometer_km) == (48.1372, 11.5756, 12034.4)
    assert reading.recorded_at == datetime.fromtimestamp(1740823965, tz=UTC)
    assert reading.source == Reading.Source.REFRESH


def test_v3_counts_one_call_per_page(v3, vehicle, smartcar_api):
    mock_two_pages(smartcar_api)

    result = telemetry_poll_vehicle(vehicle=vehicle)

    assert result.calls == len(smartcar_api.calls) == 2


def test_v3_retried_request_counts_each_attempt(v3, vehicle, smartcar_api):
    """The client retries a GET after a 5xx; each attempt reached Smartcar and may be billed."""
    smartcar_api.get(SIGNALS_URL, status=503, json={"type": "SERVER", "code": "INTERNAL"})
    smartcar_api.get(SIGNALS_URL, json={**load("v3_signals_page1.json"), "links": {"next": None}})

    result = telemetry_poll_vehicle(vehicle=vehicle)

    assert result.outcome == "ok"
    assert result.calls == len(smartcar_api.calls) == 2
    assert state_of(vehicle).calls_this_month == 2


def test_v3_single_page_counts_one_call(v3, vehicle, smartcar_api):
    smartcar_api.get(SIGNALS_URL, json={**load("v3_signals_page1.json"), "links": {"next": None}})

    result = telemetry_poll_vehicle(vehicle=vehicle)

    assert (result.outcome, result.calls, state_of(vehicle).calls_this_month) == ("ok", 1, 1)


def test_v3_miles_are_converted(v3, vehicle, smartcar_api):
    items = [
        {
            "attributes": {
                "code": "tractionbattery-range",
                "status": {"value": "SUCCESS"},
                "body": {"value": 100, "unit": "miles"},
            },
            "meta": {"oemUpdatedAt": 1740823920000},
        },
        {
            "attributes": {
                "code": "odometer-traveleddistance",
                "status": {"value": "SUCCESS"},
                "body": {"value": 1000, "unit": "miles"},
            },
            "meta": {"oemUpdatedAt": 1740823920000},
        },
    ]
    smartcar_api.get(SIGNALS_URL, json={"data": items, "links": {"next": None}})

    reading = telemetry_poll_vehicle(vehicle=vehicle).reading

    assert reading.range_km == pytest.approx(160.9344)
    assert reading.odometer_km == pytest.approx(1609.344)


def test_v3_all_signals_asleep_is_asleep(v3, vehicle, smartcar_api):
    asleep = {"value": "ERROR", "error": {"type": "VEHICLE_STATE", "code": "ASLEEP"}}
    items = [
        {"attributes": {"code": code, "status": asleep}, "meta": {}}
        for code in ("tractionbattery-stateofcharge", "odometer-traveleddistance")
    ]
    smartcar_api.get(SIGNALS_URL, json={"data": items, "links": {"next": None}})

    result = telemetry_poll_vehicle(vehicle=vehicle)

    assert (result.outcome, result.reading, result.calls) == ("asleep", None, 1)
    assert Reading.objects.count() == 0


def test_v3_no_known_signals_fails_with_a_safe_message(v3, vehicle, smartcar_api):
    permission = {"value": "ERROR", "error": {"type": "PERMISSION", "code": None}}
    items = [{"attributes": {"code": "location-preciselocation", "status": permission}}]
    smartcar_api.get(SIGNALS_URL, json={"data": items, "links": {"next": None}})

    result = telemetry_poll_vehicle(vehicle=vehicle)

    assert result.outcome == "failed"
    assert isinstance(result.error, TelemetryUnavailableError)
    assert str(result.error) == "No telemetry in Smartcar's answer (location=PERMISSION)"


@pytest.mark.parametrize(("code", "app_limited"), [("VEHICLE", False), ("SMARTCAR_API", True)])
def test_v3_429_honours_retry_after_and_is_not_retried(
    v3, vehicle, smartcar_api, code, app_limited
):
    smartcar_api.get(
        SIGNALS_URL,
        status=429,
        json=error_body(429, "RATE_LIMIT", code),
        headers={"Retry-After": "60"},
    )

    result = telemetry_poll_vehicle(vehicle=vehicle)

    assert (result.outcome, result.retry_after, result.app_rate_limited) == (
        "rate_limited",
        60,
        app_limited,
    )
    assert len(smartcar_api.calls) == 1


def test_v3_430_is_billing(v3, vehicle, smartcar_api):
    smartcar_api.get(SIGNALS_URL, status=430, json=error_body(430, "BILLING", "VEHICLE_LIMIT"))

    assert telemetry_poll_vehicle(vehicle=vehicle).outcome == "billing"


def test_v3_5xx_fails(v3, vehicle, smartcar_api):
    smartcar_api.get(SIGNALS_URL, status=502, json=error_body(502, "UPSTREAM", "NO_RESPONSE"))

    result = telemetry_poll_vehicle(vehicle=vehicle)

    assert result.outcome == "failed"
    assert result.error.type == "UPSTREAM"


def test_v3_timeout_fails(v3, vehicle, smartcar_api):
    smartcar_api.get(SIGNALS_URL, body=requests.exceptions.ConnectTimeout("slow"))

    result = telemetry_poll_vehicle(vehicle=vehicle)

    assert (result.outcome, result.error.type) == ("failed", "TIMEOUT")


def test_v3_malformed_json_fails(v3, vehicle, smartcar_api):
    smartcar_api.get(SIGNALS_URL, body="{not json")

    result = telemetry_poll_vehicle(vehicle=vehicle)

    assert result.outcome == "failed"
    assert isinstance(result.error, SmartcarMalformedResponseError)


# --- storing ------------------------------------------------------------------------------------


def data_at(when: datetime | None, soc: float = 50.0) -> ReadingData:
    return ReadingData(recorded_at=when, soc_pct=soc)


T0 = datetime(2025, 3, 1, 10, 0, tzinfo=UTC)


def test_store_creates_state_on_demand_and_points_at_reading(vehicle):
    assert not TelemetryState.objects.filter(vehicle=vehicle).exists()

    reading, stored = telemetry_store_reading(
        vehicle=vehicle, data=data_at(T0), source=Reading.Source.WEBHOOK
    )

    assert stored
    assert state_of(vehicle).latest_reading == reading


def test_store_out_of_order_reading_is_kept_but_not_latest(vehicle):
    newer, _ = telemetry_store_reading(vehicle=vehicle, data=data_at(T0), source="poll")

    older, stored = telemetry_store_reading(
        vehicle=vehicle, data=data_at(T0 - timedelta(minutes=5), soc=40), source="webhook"
    )

    assert stored
    assert Reading.objects.count() == 2
    assert state_of(vehicle).latest_reading == newer
    assert older.soc_pct == 40


def test_store_newer_reading_moves_latest_forward(vehicle):
    telemetry_store_reading(vehicle=vehicle, data=data_at(T0), source="poll")

    newer, _ = telemetry_store_reading(
        vehicle=vehicle, data=data_at(T0 + timedelta(seconds=1)), source="poll"
    )

    assert state_of(vehicle).latest_reading == newer


def test_store_pointer_never_moves_back_even_from_a_stale_view(vehicle):
    # Another worker moved the pointer to a newer reading after we read the state row: the
    # conditional UPDATE must still refuse to move it back.
    first, _ = telemetry_store_reading(vehicle=vehicle, data=data_at(T0), source="poll")
    newest = Reading.objects.create(
        vehicle=vehicle, recorded_at=T0 + timedelta(hours=1), received_at=T0, source="poll"
    )
    state = TelemetryState.objects.select_related("latest_reading").get(vehicle=vehicle)
    TelemetryState.objects.filter(vehicle=vehicle).update(latest_reading=newest)
    assert state.latest_reading == first  # the stale view

    middle, stored = telemetry_store_reading(
        vehicle=vehicle, data=data_at(T0 + timedelta(minutes=30)), source="poll"
    )

    assert stored
    assert state_of(vehicle).latest_reading == newest
    assert middle.pk != newest.pk


def test_store_identical_vehicle_time_returns_latest(vehicle):
    first, _ = telemetry_store_reading(vehicle=vehicle, data=data_at(T0), source="poll")

    again, stored = telemetry_store_reading(
        vehicle=vehicle, data=data_at(T0, soc=99), source="poll"
    )

    assert (again, stored) == (first, False)
    assert Reading.objects.count() == 1


def test_store_identical_to_an_older_reading_is_not_stored_twice(vehicle):
    old, _ = telemetry_store_reading(vehicle=vehicle, data=data_at(T0), source="poll")
    telemetry_store_reading(vehicle=vehicle, data=data_at(T0 + timedelta(hours=1)), source="poll")

    again, stored = telemetry_store_reading(vehicle=vehicle, data=data_at(T0), source="webhook")

    assert (again, stored) == (old, False)
    assert Reading.objects.count() == 2


def test_store_without_vehicle_time_uses_received_time(vehicle):
    received = T0 + timedelta(minutes=3)

    reading, _ = telemetry_store_reading(
        vehicle=vehicle, data=data_at(None), source="poll", received_at=received
    )

    assert reading.recorded_at == reading.received_at == received


def test_store_refuses_an_empty_reading(vehicle):
    with pytest.raises(ValueError, match="empty"):
        telemetry_store_reading(
            vehicle=vehicle, data=ReadingData(field_errors={"battery": "INVALID"}), source="poll"
        )
    assert Reading.objects.count() == 0


def test_store_refuses_an_unknown_source(vehicle):
    with pytest.raises(ValueError, match="source"):
        telemetry_store_reading(vehicle=vehicle, data=data_at(T0), source="fax")


def test_poll_does_not_touch_the_pollers_fields(v2, vehicle, smartcar_api):
    smartcar_api.post(BATCH_URL, json=load("v2_batch_ok.json"))
    lease = timezone.now() + timedelta(minutes=5)
    TelemetryState.objects.create(
        vehicle=vehicle, next_poll_at=lease, lease_until=lease, lease_owner="w1", last_outcome="ok"
    )

    telemetry_poll_vehicle(vehicle=vehicle)

    state = state_of(vehicle)
    assert (state.next_poll_at, state.lease_until, state.lease_owner) == (lease, lease, "w1")
    assert (state.last_outcome, state.last_polled_at) == ("ok", None)


def test_calls_are_counted_even_when_storing_fails(v2, vehicle, smartcar_api, monkeypatch):
    smartcar_api.post(BATCH_URL, json=load("v2_batch_ok.json"))

    def broken_store(**kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr("telemetry.services.readings.telemetry_store_reading", broken_store)

    with pytest.raises(RuntimeError):
        telemetry_poll_vehicle(vehicle=vehicle)

    assert state_of(vehicle).calls_this_month == 4


def test_a_concurrent_twin_insert_returns_the_stored_reading(vehicle, monkeypatch):
    """Two writers (a webhook and a poll) storing the same vehicle time: one row, no error."""
    data = ReadingData(recorded_at=datetime(2025, 3, 1, 12, 0, tzinfo=UTC), soc_pct=50.0)
    first, _ = telemetry_store_reading(vehicle=vehicle, data=data, source="poll")
    # The other writer read the state before the first row landed.
    monkeypatch.setattr(
        "telemetry.services.readings._state_for",
        lambda vehicle: TelemetryState(vehicle=vehicle, latest_reading=None),
    )

    second, stored = telemetry_store_reading(vehicle=vehicle, data=data, source="webhook")

    assert (second.pk, stored) == (first.pk, False)
    assert Reading.objects.filter(vehicle=vehicle).count() == 1


# --- the poller's hot path: one UPDATE for pointer and calls, a state carried by the vehicle ----


def carried(vehicle: Vehicle) -> Vehicle:
    """The vehicle as the poller loads it: through its state, which Django caches on it."""
    state = TelemetryState.objects.select_related("vehicle__account", "latest_reading").get(
        vehicle=vehicle
    )
    return state.vehicle


@pytest.mark.django_db(transaction=True)
def test_a_stored_poll_moves_the_pointer_and_counts_its_calls_in_one_update(
    v2, vehicle, smartcar_api, django_assert_num_queries
):
    smartcar_api.post(BATCH_URL, json=load("v2_batch_ok.json"))
    TelemetryState.objects.create(vehicle=vehicle, calls_month=this_month(), calls_this_month=10)
    loaded = carried(vehicle)

    # The state is not read again; INSERT reading, then one UPDATE of the state.
    with django_assert_num_queries(2):
        result = telemetry_poll_vehicle(vehicle=loaded)

    state = state_of(vehicle)
    assert (result.outcome, result.calls) == ("ok", 4)
    assert (state.latest_reading_id, state.calls_this_month) == (result.reading.pk, 14)
    # The caller's in-memory state is in step with the row: it needs no re-read.
    memory = loaded.telemetry_state
    assert (memory.latest_reading, memory.calls_this_month) == (result.reading, 14)


@pytest.mark.django_db(transaction=True)
def test_a_poll_in_two_steps_reads_without_a_statement_and_stores_after(
    v2, vehicle, smartcar_api, django_assert_num_queries
):
    # The poller reads on a worker thread and stores on a writer thread.
    smartcar_api.post(BATCH_URL, json=load("v2_batch_ok.json"))
    TelemetryState.objects.create(vehicle=vehicle)
    loaded = carried(vehicle)

    with django_assert_num_queries(0):
        polled = telemetry_poll_read(vehicle=loaded, defer_state_write=True)
    assert len(smartcar_api.calls) == 1
    with django_assert_num_queries(1):  # the INSERT; the state write is handed back
        result = telemetry_poll_store(polled)

    assert (result.outcome, result.stored, result.calls) == ("ok", True, 4)
    assert result.state_write is not None
    assert (result.state_write.reading_pk, result.state_write.calls) == (result.reading.pk, 4)
    assert Reading.objects.get() == result.reading


def test_a_deferred_poll_whose_store_fails_still_counts_its_calls(
    v2, vehicle, smartcar_api, monkeypatch
):
    smartcar_api.post(BATCH_URL, json=load("v2_batch_ok.json"))
    polled = telemetry_poll_read(vehicle=vehicle, defer_state_write=True)

    def broken_store(**kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr("telemetry.services.readings.telemetry_store_reading", broken_store)
    with pytest.raises(RuntimeError):
        telemetry_poll_store(polled)

    assert state_of(vehicle).calls_this_month == 4


def test_an_older_polled_reading_counts_its_calls_but_leaves_the_pointer(v2, vehicle, smartcar_api):
    smartcar_api.post(BATCH_URL, json=load("v2_batch_ok.json"))
    future = timezone.now() + timedelta(days=365)
    newer = Reading.objects.create(
        vehicle=vehicle, recorded_at=future, received_at=future, source=Reading.Source.WEBHOOK
    )
    TelemetryState.objects.create(vehicle=vehicle, latest_reading=newer)
    loaded = carried(vehicle)

    result = telemetry_poll_vehicle(vehicle=loaded)

    state = state_of(vehicle)
    assert (result.outcome, result.stored) == ("ok", True)
    assert state.latest_reading_id == newer.pk
    assert (state.calls_month, state.calls_this_month) == (this_month(), 4)


def test_a_stale_carried_state_still_moves_the_pointer_only_forward(v2, vehicle, smartcar_api):
    smartcar_api.post(BATCH_URL, json=load("v2_batch_ok.json"))
    TelemetryState.objects.create(vehicle=vehicle)
    loaded = carried(vehicle)  # says: no reading yet
    future = timezone.now() + timedelta(days=365)
    newer = Reading.objects.create(
        vehicle=vehicle, recorded_at=future, received_at=future, source=Reading.Source.WEBHOOK
    )
    TelemetryState.objects.filter(vehicle=vehicle).update(latest_reading=newer)

    result = telemetry_poll_vehicle(vehicle=loaded)

    assert result.stored
    assert state_of(vehicle).latest_reading_id == newer.pk
    assert state_of(vehicle).calls_this_month == 4


def test_a_poll_whose_state_row_vanished_still_counts_its_calls(v2, vehicle, smartcar_api):
    smartcar_api.post(BATCH_URL, json=load("v2_batch_ok.json"))
    TelemetryState.objects.create(vehicle=vehicle)
    loaded = carried(vehicle)
    TelemetryState.objects.filter(vehicle=vehicle).delete()

    result = telemetry_poll_vehicle(vehicle=loaded)

    assert result.outcome == "ok"
    assert state_of(vehicle).calls_this_month == 4


# --- a deferred state write (the poller writes pointer and calls with its outcome) --------------


@pytest.mark.django_db(transaction=True)
def test_a_deferred_poll_writes_only_the_reading_and_hands_back_pointer_and_calls(
    v2, vehicle, smartcar_api, django_assert_num_queries
):
    smartcar_api.post(BATCH_URL, json=load("v2_batch_ok.json"))
    TelemetryState.objects.create(vehicle=vehicle, calls_month=this_month(), calls_this_month=10)
    loaded = carried(vehicle)

    with django_assert_num_queries(1):  # the INSERT only
        result = telemetry_poll_vehicle(vehicle=loaded, defer_state_write=True)

    write = result.state_write
    assert (write.month, write.calls) == (this_month(), 4)
    assert (write.reading_pk, write.recorded) == (result.reading.pk, result.reading.recorded_at)
    untouched = state_of(vehicle)
    assert (untouched.latest_reading_id, untouched.calls_this_month) == (None, 10)
    # In memory as if written: the poller plans from it.
    memory = loaded.telemetry_state
    assert (memory.latest_reading, memory.calls_this_month) == (result.reading, 14)

    telemetry_state_write(vehicle_pk=vehicle.pk, write=write)

    state = state_of(vehicle)
    assert (state.latest_reading_id, state.calls_this_month) == (result.reading.pk, 14)


def test_a_deferred_failed_poll_hands_back_its_calls(v2, vehicle, smartcar_api):
    smartcar_api.post(BATCH_URL, status=500, json=error_body(500, "SERVER", "INTERNAL"))
    TelemetryState.objects.create(vehicle=vehicle)

    result = telemetry_poll_vehicle(vehicle=carried(vehicle), defer_state_write=True)

    assert result.outcome == "failed"
    assert (result.state_write.calls, result.state_write.reading_pk) == (4, None)
    assert state_of(vehicle).calls_this_month == 0
    telemetry_state_write(vehicle_pk=vehicle.pk, write=result.state_write)
    assert state_of(vehicle).calls_this_month == 4


def test_a_deferred_poll_without_calls_has_nothing_to_write(v3, vehicle, smartcar_api):
    SmartcarAccount.objects.filter(pk=vehicle.account_id).update(status="revoked")
    vehicle.refresh_from_db()

    result = telemetry_poll_vehicle(vehicle=vehicle, defer_state_write=True)

    assert (result.outcome, result.state_write) == ("reauth", None)


def test_a_deferred_poll_that_crashes_after_storing_still_writes_pointer_and_calls(
    v2, vehicle, smartcar_api, monkeypatch
):
    smartcar_api.post(BATCH_URL, json=load("v2_batch_ok.json"))
    TelemetryState.objects.create(vehicle=vehicle)
    real_store = telemetry_store_reading

    def store_then_crash(**kwargs):
        real_store(**kwargs)
        raise RuntimeError("crashed after the INSERT")

    monkeypatch.setattr("telemetry.services.readings.telemetry_store_reading", store_then_crash)

    with pytest.raises(RuntimeError):
        telemetry_poll_vehicle(vehicle=carried(vehicle), defer_state_write=True)

    state = state_of(vehicle)
    assert state.latest_reading_id == Reading.objects.get().pk
    assert state.calls_this_month == 4


def test_a_deferred_write_never_moves_the_pointer_back(v2, vehicle, smartcar_api):
    smartcar_api.post(BATCH_URL, json=load("v2_batch_ok.json"))
    TelemetryState.objects.create(vehicle=vehicle)
    result = telemetry_poll_vehicle(vehicle=carried(vehicle), defer_state_write=True)
    # A webhook stored a newer reading between the poll and its deferred write.
    future = timezone.now() + timedelta(days=365)
    newer = Reading.objects.create(
        vehicle=vehicle, recorded_at=future, received_at=future, source=Reading.Source.WEBHOOK
    )
    TelemetryState.objects.filter(vehicle=vehicle).update(latest_reading=newer)

    telemetry_state_write(vehicle_pk=vehicle.pk, write=result.state_write)

    state = state_of(vehicle)
    assert (state.latest_reading_id, state.calls_this_month) == (newer.pk, 4)


def test_a_deferred_write_for_a_vanished_state_row_recreates_it_with_the_calls(
    v2, vehicle, smartcar_api
):
    smartcar_api.post(BATCH_URL, json=load("v2_batch_ok.json"))
    TelemetryState.objects.create(vehicle=vehicle)
    result = telemetry_poll_vehicle(vehicle=carried(vehicle), defer_state_write=True)
    TelemetryState.objects.filter(vehicle=vehicle).delete()

    telemetry_state_write(vehicle_pk=vehicle.pk, write=result.state_write)

    assert state_of(vehicle).calls_this_month == 4
