"""A vehicle's latest reading (and on-demand refresh), its paged history and bucket aggregates."""

from datetime import UTC, datetime, timedelta
from http import HTTPStatus

import pytest
import requests
from django.utils import timezone

from telemetry.models import Reading, TelemetryState
from telemetry.tests.api_support import (
    API_TEST_MARKS,
    SIGNALS,
    SIGNALS_OK,
    T0,
    TOKEN_URL,
    add_reading,
    link_account,
)
from vehicles.models import SmartcarAccount, Vehicle

pytestmark = API_TEST_MARKS


def latest_url(vehicle) -> str:
    return f"/api/v1/vehicles/{vehicle.pk}/telemetry/latest"


def history_url(vehicle) -> str:
    return f"/api/v1/vehicles/{vehicle.pk}/telemetry"


@pytest.fixture
def vehicle(user) -> Vehicle:
    link_account(user, vehicle_ids=("vid-1",))
    return Vehicle.objects.get()


# --- latest ----------------------------------------------------------------------------------


def test_latest_returns_the_newest_reading(api_client, vehicle):
    add_reading(vehicle, T0 - timedelta(minutes=5))
    add_reading(vehicle, T0, soc_pct=55.5, charging_state="CHARGING", is_plugged_in=True)

    response = api_client.get(latest_url(vehicle))

    assert response.status_code == HTTPStatus.OK
    assert response.json() == {
        "recordedAt": "2025-03-01T12:00:00Z",
        "receivedAt": "2025-03-01T12:00:05Z",
        "source": "poll",
        "socPct": 55.5,
        "rangeKm": 300.0,
        "chargingState": "CHARGING",
        "isPluggedIn": True,
        "latitude": 52.5,
        "longitude": 13.4,
        "odometerKm": 12000.0,
    }


def test_latest_before_any_reading_is_404_no_telemetry(api_client, vehicle):
    response = api_client.get(latest_url(vehicle))

    assert response.status_code == HTTPStatus.NOT_FOUND
    assert response.json()["error"] == "no_telemetry"


def test_latest_of_another_users_vehicle_is_404(other_api_client, vehicle, smartcar_api):
    add_reading(vehicle, T0)

    plain = other_api_client.get(latest_url(vehicle))
    refresh = other_api_client.get(latest_url(vehicle), {"refresh": "true"})

    assert plain.status_code == refresh.status_code == HTTPStatus.NOT_FOUND
    assert plain.json() == {"error": "not_found", "message": "Not found."}
    assert len(smartcar_api.calls) == 0


def test_latest_refresh_polls_and_returns_the_new_reading(api_client, vehicle, smartcar_api):
    add_reading(vehicle, T0 - timedelta(hours=1))
    call = smartcar_api.get(SIGNALS.format(vid="vid-1"), json=SIGNALS_OK)

    response = api_client.get(latest_url(vehicle), {"refresh": "true"})

    assert response.status_code == HTTPStatus.OK
    assert call.call_count == 1
    body = response.json()
    assert body["recordedAt"] == "2025-03-01T12:00:00Z"
    assert (body["source"], body["socPct"], body["chargingState"]) == ("refresh", 64.0, "CHARGING")
    assert (body["latitude"], body["longitude"]) == (48.1, 11.5)
    # The plain GET now serves the same reading.
    assert api_client.get(latest_url(vehicle)).json() == body


def test_latest_refresh_twice_within_the_window_is_429(api_client, vehicle, smartcar_api):
    call = smartcar_api.get(SIGNALS.format(vid="vid-1"), json=SIGNALS_OK)
    assert api_client.get(latest_url(vehicle), {"refresh": "true"}).status_code == HTTPStatus.OK

    response = api_client.get(latest_url(vehicle), {"refresh": "true"})

    assert response.status_code == HTTPStatus.TOO_MANY_REQUESTS
    assert response.json()["error"] == "rate_limited"
    assert 1 <= int(response["Retry-After"]) <= 60
    assert call.call_count == 1


def test_latest_refresh_allowed_again_after_the_window(api_client, vehicle, smartcar_api, settings):
    settings.TELEMETRY_MANUAL_REFRESH_SECONDS = 60
    call = smartcar_api.get(SIGNALS.format(vid="vid-1"), json=SIGNALS_OK)
    api_client.get(latest_url(vehicle), {"refresh": "true"})
    TelemetryState.objects.update(last_manual_refresh_at=timezone.now() - timedelta(seconds=61))

    response = api_client.get(latest_url(vehicle), {"refresh": "true"})

    assert response.status_code == HTTPStatus.OK
    assert call.call_count == 2


def test_latest_refresh_retry_after_counts_down(api_client, vehicle, smartcar_api, settings):
    settings.TELEMETRY_MANUAL_REFRESH_SECONDS = 60
    TelemetryState.objects.create(
        vehicle=vehicle, last_manual_refresh_at=timezone.now() - timedelta(seconds=45)
    )

    response = api_client.get(latest_url(vehicle), {"refresh": "true"})

    assert response.status_code == HTTPStatus.TOO_MANY_REQUESTS
    assert 14 <= int(response["Retry-After"]) <= 15
    assert len(smartcar_api.calls) == 0


def test_latest_refresh_smartcar_failure_is_502(api_client, vehicle, smartcar_api):
    smartcar_api.get(
        SIGNALS.format(vid="vid-1"),
        status=500,
        json={"type": "SERVER", "code": None, "description": "boom"},
    )

    response = api_client.get(latest_url(vehicle), {"refresh": "true"})

    assert response.status_code == HTTPStatus.BAD_GATEWAY
    assert response.json() == {
        "error": "smartcar_error",
        "message": "Smartcar could not complete the request. Please try again later.",
    }


def test_latest_refresh_smartcar_timeout_is_504(api_client, vehicle, smartcar_api, settings):
    settings.SMARTCAR_READ_TIMEOUT = 0.5  # a fresh client, so no retry fits the retry window
    smartcar_api.get(SIGNALS.format(vid="vid-1"), body=requests.ReadTimeout())

    response = api_client.get(latest_url(vehicle), {"refresh": "true"})

    assert response.status_code == HTTPStatus.GATEWAY_TIMEOUT
    assert response.json() == {
        "error": "smartcar_timeout",
        "message": "Smartcar did not answer in time. Please try again later.",
    }


def test_latest_refresh_smartcar_rate_limit_is_502_with_retry_after(
    api_client, vehicle, smartcar_api
):
    smartcar_api.get(
        SIGNALS.format(vid="vid-1"),
        status=429,
        headers={"Retry-After": "120"},
        json={"type": "RATE_LIMIT", "code": "VEHICLE", "description": "slow down"},
    )

    response = api_client.get(latest_url(vehicle), {"refresh": "true"})

    assert response.status_code == HTTPStatus.BAD_GATEWAY
    assert response["Retry-After"] == "120"


def test_latest_refresh_dead_grant_is_409_reconnect(api_client, vehicle, smartcar_api):
    smartcar_api.get(
        SIGNALS.format(vid="vid-1"),
        status=401,
        json={"type": "AUTHENTICATION", "code": None, "description": "x"},
    )
    smartcar_api.post(
        TOKEN_URL, status=400, json={"error": "invalid_grant", "error_description": "x"}
    )

    response = api_client.get(latest_url(vehicle), {"refresh": "true"})

    assert response.status_code == HTTPStatus.CONFLICT
    assert response.json()["error"] == "reconnect_required"
    assert api_client.get("/api/v1/vehicles").json()["vehicles"][0]["status"] == "needs_reauth"


def test_latest_refresh_account_needing_reauth_is_409_without_a_call(
    api_client, vehicle, smartcar_api
):
    SmartcarAccount.objects.update(status=SmartcarAccount.Status.NEEDS_REAUTH)

    response = api_client.get(latest_url(vehicle), {"refresh": "true"})

    assert response.status_code == HTTPStatus.CONFLICT
    assert response.json()["error"] == "reconnect_required"
    assert len(smartcar_api.calls) == 0
    # Refused before claiming: the person may refresh right after reconnecting.
    assert not TelemetryState.objects.filter(last_manual_refresh_at__isnull=False).exists()


def test_latest_refresh_disconnected_vehicle_is_409(api_client, vehicle, smartcar_api):
    add_reading(vehicle, T0)
    Vehicle.objects.update(status=Vehicle.Status.DISCONNECTED)

    refresh = api_client.get(latest_url(vehicle), {"refresh": "true"})
    plain = api_client.get(latest_url(vehicle))

    assert refresh.status_code == HTTPStatus.CONFLICT
    assert refresh.json()["error"] == "vehicle_disconnected"
    assert plain.status_code == HTTPStatus.OK
    assert len(smartcar_api.calls) == 0


def test_latest_bad_refresh_is_400(api_client, vehicle):
    response = api_client.get(latest_url(vehicle), {"refresh": "sometimes"})

    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert list(response.json()["details"]["fields"]) == ["refresh"]


# --- history: pages --------------------------------------------------------------------------


def reading_json(reading: Reading) -> dict:
    def iso(value):
        return value.isoformat().replace("+00:00", "Z")

    return {
        "recordedAt": iso(reading.recorded_at),
        "receivedAt": iso(reading.received_at),
        "source": reading.source,
        "socPct": reading.soc_pct,
        "rangeKm": reading.range_km,
        "chargingState": reading.charging_state,
        "isPluggedIn": reading.is_plugged_in,
        "latitude": reading.latitude,
        "longitude": reading.longitude,
        "odometerKm": reading.odometer_km,
    }


def test_history_page_shape(api_client, vehicle):
    older = add_reading(vehicle, T0 - timedelta(minutes=1), soc_pct=70.0)
    newer = add_reading(vehicle, T0, soc_pct=71.0)

    response = api_client.get(history_url(vehicle))

    assert response.status_code == HTTPStatus.OK
    assert response.json() == {
        "readings": [reading_json(newer), reading_json(older)],
        "nextCursor": None,
    }


def test_history_pages_through_everything_without_duplicates_or_gaps(api_client, vehicle):
    # (recorded_at is unique per vehicle, so pages are ordered by time alone.)
    readings = [add_reading(vehicle, T0 - timedelta(minutes=n)) for n in range(25)]
    expected = sorted(readings, key=lambda r: (r.recorded_at, r.id), reverse=True)

    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 10, **({"cursor": cursor} if cursor else {})}
        body = api_client.get(history_url(vehicle), params).json()
        pages += 1
        seen += body["readings"]
        cursor = body["nextCursor"]
        if cursor is None:
            break

    assert pages == 3
    assert seen == [reading_json(r) for r in expected]
    assert len(seen) == 25


def test_history_exact_multiple_of_limit_ends_with_null_cursor(api_client, vehicle):
    for n in range(4):
        add_reading(vehicle, T0 - timedelta(minutes=n))

    first = api_client.get(history_url(vehicle), {"limit": 2}).json()
    second = api_client.get(history_url(vehicle), {"limit": 2, "cursor": first["nextCursor"]})

    assert len(second.json()["readings"]) == 2
    assert second.json()["nextCursor"] is None


def test_history_from_is_inclusive_and_to_exclusive(api_client, vehicle):
    for n in range(5):
        add_reading(vehicle, T0 + timedelta(minutes=n))

    body = api_client.get(
        history_url(vehicle),
        {"from": "2025-03-01T12:01:00Z", "to": "2025-03-01T12:03:00+00:00"},
    ).json()

    assert [r["recordedAt"] for r in body["readings"]] == [
        "2025-03-01T12:02:00Z",
        "2025-03-01T12:01:00Z",
    ]


def test_history_accepts_other_timezones(api_client, vehicle):
    add_reading(vehicle, T0)

    body = api_client.get(
        history_url(vehicle),
        {"from": "2025-03-01T13:00:00+01:00", "to": "2025-03-01T13:00:01+01:00"},
    ).json()

    assert len(body["readings"]) == 1


def test_history_default_limit_is_100(api_client, vehicle):
    Reading.objects.bulk_create(
        Reading(
            vehicle=vehicle,
            recorded_at=T0 - timedelta(minutes=n),
            received_at=T0,
            source="poll",
        )
        for n in range(101)
    )

    body = api_client.get(history_url(vehicle)).json()

    assert len(body["readings"]) == 100
    assert body["nextCursor"] is not None


@pytest.mark.parametrize("query", [{"bucket": "1h"}, {}], ids=["buckets", "page"])
def test_history_of_another_users_vehicle_is_404(other_api_client, vehicle, query):
    add_reading(vehicle, T0)

    response = other_api_client.get(history_url(vehicle), query)

    assert response.status_code == HTTPStatus.NOT_FOUND
    assert response.json()["error"] == "not_found"


@pytest.mark.parametrize("vehicle_id", ["not-a-uuid", "00000000-0000-0000-0000-000000000000"])
def test_history_of_an_unknown_vehicle_is_404(api_client, vehicle_id):
    response = api_client.get(f"/api/v1/vehicles/{vehicle_id}/telemetry")

    assert response.status_code == HTTPStatus.NOT_FOUND
    assert response.json()["error"] == "not_found"


def test_history_cursor_of_another_vehicle_is_400(api_client, user, vehicle):
    link_account(user, smartcar_user_id="sc-user-2", vehicle_ids=("vid-2",), suffix="2")
    other = Vehicle.objects.get(smartcar_vehicle_id="vid-2")
    for n in range(3):
        add_reading(other, T0 - timedelta(minutes=n))
    cursor = api_client.get(history_url(other), {"limit": 1}).json()["nextCursor"]

    response = api_client.get(history_url(vehicle), {"cursor": cursor})

    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["details"]["fields"] == {"cursor": ["Invalid cursor."]}


def test_history_tampered_cursor_is_400(api_client, vehicle):
    for n in range(3):
        add_reading(vehicle, T0 - timedelta(minutes=n))
    cursor = api_client.get(history_url(vehicle), {"limit": 1}).json()["nextCursor"]
    tampered = cursor[:-2] + ("AA" if not cursor.endswith("AA") else "BB")

    response = api_client.get(history_url(vehicle), {"cursor": tampered})

    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert list(response.json()["details"]["fields"]) == ["cursor"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": "yesterday"}, "from"),
        ({"from": "2025-03-01T12:00:00"}, "from"),  # no timezone
        ({"from": "2025-03-01T12:00:00 01:00"}, "from"),  # an unencoded '+'
        ({"to": "2025-13-01T00:00:00Z"}, "to"),
        ({"from": "2025-03-02T00:00:00Z", "to": "2025-03-01T00:00:00Z"}, "to"),
        ({"from": "2024-01-01T00:00:00Z", "to": "2025-01-02T00:00:01Z"}, "from"),
        ({"limit": "0"}, "limit"),
        ({"limit": "501"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"cursor": "garbage"}, "cursor"),
        ({"bucket": "5m"}, "bucket"),
        ({"bucket": "1h", "cursor": "x"}, "cursor"),
        ({"bucket": "1h", "from": "2025-03-02T00:00:00Z", "to": "2025-03-01T00:00:00Z"}, "to"),
        ({"bucket": "15m", "from": "2024-01-01T00:00:00Z", "to": "2024-06-01T00:00:00Z"}, "bucket"),
        ({"bucket": "1d", "from": "2023-01-01T00:00:00Z", "to": "2025-01-01T00:00:00Z"}, "from"),
    ],
)
def test_history_bad_parameter_is_400_naming_it(api_client, vehicle, params, field):
    response = api_client.get(history_url(vehicle), params)

    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["error"] == "validation_error"
    assert list(response.json()["details"]["fields"]) == [field]


def test_history_range_of_exactly_366_days_is_allowed(api_client, vehicle):
    response = api_client.get(
        history_url(vehicle), {"from": "2024-01-01T00:00:00Z", "to": "2025-01-01T00:00:00Z"}
    )

    assert response.status_code == HTTPStatus.OK


def test_history_from_alone_is_bounded_by_now(api_client, vehicle):
    too_old = (timezone.now() - timedelta(days=367)).isoformat()

    response = api_client.get(history_url(vehicle), {"from": too_old})

    assert list(response.json()["details"]["fields"]) == ["from"]


@pytest.mark.parametrize("count", [3, 30])
def test_history_query_count_is_constant(api_client, vehicle, count, django_assert_num_queries):
    for n in range(count):
        add_reading(vehicle, T0 - timedelta(minutes=n), latest=False)

    # The JWT's user, the vehicle, the page of readings.
    with django_assert_num_queries(3):
        body = api_client.get(history_url(vehicle), {"limit": 500}).json()

    assert len(body["readings"]) == count


# --- history: buckets ------------------------------------------------------------------------


def test_history_buckets_aggregate_each_hour(api_client, vehicle):
    base = datetime(2025, 3, 1, 10, 0, tzinfo=UTC)
    # 10:00 bucket: soc 50/60/70, two of three CHARGING; the last reading has no position,
    # so the bucket's last position is the 10:40 one.
    add_reading(
        vehicle,
        base + timedelta(minutes=5),
        soc_pct=50.0,
        charging_state="CHARGING",
        latitude=1.0,
        longitude=2.0,
    )
    add_reading(
        vehicle,
        base + timedelta(minutes=40),
        soc_pct=60.0,
        charging_state="CHARGING",
        latitude=3.0,
        longitude=4.0,
    )
    add_reading(
        vehicle,
        base + timedelta(minutes=59, seconds=59),
        soc_pct=70.0,
        charging_state="NOT_CHARGING",
        latitude=None,
        longitude=None,
    )
    # 12:00 bucket: one reading with no soc and no charging state. 11:00 has none: left out.
    add_reading(
        vehicle,
        base + timedelta(hours=2, minutes=1),
        soc_pct=None,
        charging_state=None,
        latitude=5.0,
        longitude=6.0,
    )
    # Outside the range.
    add_reading(vehicle, base - timedelta(minutes=1), soc_pct=1.0)
    add_reading(vehicle, base + timedelta(hours=3), soc_pct=1.0)

    response = api_client.get(
        history_url(vehicle),
        {"bucket": "1h", "from": "2025-03-01T10:00:00Z", "to": "2025-03-01T13:00:00Z"},
    )

    assert response.status_code == HTTPStatus.OK
    assert response.json() == {
        "bucket": "1h",
        "from": "2025-03-01T10:00:00Z",
        "to": "2025-03-01T13:00:00Z",
        "buckets": [
            {
                "bucketStart": "2025-03-01T12:00:00Z",
                "socPctMean": None,
                "lastLatitude": 5.0,
                "lastLongitude": 6.0,
                "chargingShare": None,
                "readings": 1,
            },
            {
                "bucketStart": "2025-03-01T10:00:00Z",
                "socPctMean": 60.0,
                "lastLatitude": 3.0,
                "lastLongitude": 4.0,
                "chargingShare": pytest.approx(2 / 3),
                "readings": 3,
            },
        ],
    }


def test_history_buckets_of_15_minutes_and_1_day(api_client, vehicle):
    base = datetime(2025, 3, 1, 23, 50, tzinfo=UTC)
    add_reading(vehicle, base, soc_pct=10.0)  # 23:45 bucket, 1 March
    add_reading(vehicle, base + timedelta(minutes=20), soc_pct=20.0)  # 00:00, 2 March
    window = {"from": "2025-03-01T00:00:00Z", "to": "2025-03-03T00:00:00Z"}

    quarter = api_client.get(history_url(vehicle), {"bucket": "15m", **window}).json()
    day = api_client.get(history_url(vehicle), {"bucket": "1d", **window}).json()

    assert [(b["bucketStart"], b["socPctMean"]) for b in quarter["buckets"]] == [
        ("2025-03-02T00:00:00Z", 20.0),
        ("2025-03-01T23:45:00Z", 10.0),
    ]
    assert [(b["bucketStart"], b["socPctMean"]) for b in day["buckets"]] == [
        ("2025-03-02T00:00:00Z", 20.0),
        ("2025-03-01T00:00:00Z", 10.0),
    ]


def test_history_buckets_default_to_the_last_7_days(api_client, vehicle):
    now = timezone.now()
    add_reading(vehicle, now - timedelta(days=6), soc_pct=40.0)
    add_reading(vehicle, now - timedelta(days=8), soc_pct=90.0)

    body = api_client.get(history_url(vehicle), {"bucket": "1d"}).json()

    assert [b["socPctMean"] for b in body["buckets"]] == [40.0]
    start = datetime.fromisoformat(body["from"])
    end = datetime.fromisoformat(body["to"])
    assert end - start == timedelta(days=7)


@pytest.mark.parametrize("hours", [2, 48])
def test_history_buckets_query_count_is_constant(
    api_client, vehicle, hours, django_assert_num_queries
):
    Reading.objects.bulk_create(
        Reading(
            vehicle=vehicle,
            recorded_at=T0 - timedelta(minutes=10 * n),
            received_at=T0,
            source="poll",
            soc_pct=50.0,
            latitude=1.0,
            longitude=2.0,
        )
        for n in range(hours * 6)
    )
    params = {
        "bucket": "1h",
        "from": (T0 - timedelta(days=3)).isoformat(),
        "to": (T0 + timedelta(minutes=1)).isoformat(),
    }

    # The JWT's user, the vehicle, the partial hours' readings, the whole hours' totals (the
    # rollup, with their last positions).
    with django_assert_num_queries(4):
        body = api_client.get(history_url(vehicle), params).json()

    assert len(body["buckets"]) == hours + 1
