"""The support admin for vehicles and readings: columns, filters, search, the vehicle page,
"poll now" and "disconnect", who may do what, the admin log, and constant query counts."""

import json
import re
import uuid
from datetime import timedelta
from http import HTTPStatus
from pathlib import Path

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from conftest import browser_for
from oauth_smartcar.models import ConnectAttempt
from telemetry.admin_charts import BOTTOM, HEIGHT, LEFT, MAX_POINTS, TOP, WIDTH, soc_chart_svg
from telemetry.admin_display import masked_vin
from telemetry.models import Reading, TelemetryState, WebhookEvent
from telemetry.tests.api_support import add_reading, link_account
from telemetry.tests.webhook_support import state_event
from vehicles.models import SmartcarAccount, Vehicle

pytestmark = pytest.mark.django_db

FIXTURES = Path(__file__).parent / "fixtures"
BATCH_URL = "https://api.smartcar.test/v2.0/vehicles/vid-1/batch"
DISCONNECT_URL = "https://api.smartcar.test/v2.0/vehicles/vid-1/application"
VIN = "5YJ3E1EA7KF317000"


@pytest.fixture
def vehicle(user):
    vehicle = link_account(user).vehicles[0]
    Vehicle.objects.filter(pk=vehicle.pk).update(vin=VIN)
    vehicle.refresh_from_db()
    return vehicle


def change_url(vehicle: Vehicle) -> str:
    return f"/admin/vehicles/vehicle/{vehicle.pk}/change/"


def poll_url(vehicle: Vehicle) -> str:
    return f"/admin/vehicles/vehicle/{vehicle.pk}/poll/"


def disconnect_url(vehicle: Vehicle) -> str:
    return f"/admin/vehicles/vehicle/{vehicle.pk}/disconnect/"


def messages_of(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def count_queries(browser: Client, url: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = browser.get(url)
    assert response.status_code == HTTPStatus.OK, url
    return len(queries)


def make_vehicles(owner, count: int, *, start: int = 0) -> list[Vehicle]:
    """`count` vehicles of `owner`, each with a latest reading, the way the poller leaves them."""
    now = timezone.now()
    vehicles = Vehicle.objects.bulk_create(
        Vehicle(smartcar_vehicle_id=f"bulk-{start + i}", owner=owner, make="KIA", vin=f"V{i:016}")
        for i in range(count)
    )
    readings = Reading.objects.bulk_create(
        Reading(
            vehicle=v,
            recorded_at=now - timedelta(minutes=i),
            received_at=now,
            source="poll",
            soc_pct=50,
            charging_state="CHARGING",
        )
        for i, v in enumerate(vehicles)
    )
    TelemetryState.objects.bulk_create(
        TelemetryState(vehicle=v, latest_reading=r, next_poll_at=now, calls_this_month=3)
        for v, r in zip(vehicles, readings, strict=True)
    )
    return vehicles


# --- The chart ---------------------------------------------------------------------------------


def window():
    end = timezone.now().replace(microsecond=0)
    return end - timedelta(days=7), end


def polylines(svg: str) -> list[list[tuple[float, float]]]:
    return [
        [tuple(map(float, pair.split(","))) for pair in points.split()]
        for points in re.findall(r'<polyline points="([^"]+)"', svg)
    ]


def test_chart_maps_time_to_x_and_percent_to_y():
    start, end = window()
    svg = soc_chart_svg([(start, 0.0), (start + timedelta(hours=1), 100.0)], start=start, end=end)

    [[(x0, y0), (x1, y1)]] = polylines(svg)
    assert (x0, y0) == (LEFT, HEIGHT - BOTTOM)  # 0 % at the bottom left
    assert y1 == TOP  # 100 % at the top
    assert x1 == pytest.approx(LEFT + (WIDTH - LEFT - 12) / (7 * 24), abs=0.1)


def test_chart_clamps_values_and_drops_points_outside_the_window():
    start, end = window()
    svg = soc_chart_svg(
        [
            (start - timedelta(minutes=1), 50.0),
            (start + timedelta(hours=1), 150.0),
            (start + timedelta(hours=2), -5.0),
            (end + timedelta(minutes=1), 50.0),
        ],
        start=start,
        end=end,
    )

    [[(_, top), (_, bottom)]] = polylines(svg)
    assert (top, bottom) == (TOP, HEIGHT - BOTTOM)


def test_chart_breaks_the_line_at_long_gaps():
    start, end = window()
    points = [(start + timedelta(hours=h), 50.0) for h in (1, 2, 20, 21, 40)]

    svg = soc_chart_svg(points, start=start, end=end)

    assert [len(line) for line in polylines(svg)] == [2, 2]
    assert svg.count("<circle ") == 1  # the lone reading is a dot


def test_chart_without_data_says_so():
    start, end = window()

    svg = soc_chart_svg([], start=start, end=end)

    assert "No state of charge reported in this period" in svg
    assert "<polyline" not in svg


def test_chart_thins_out_many_points():
    start, end = window()
    points = [(start + timedelta(seconds=30 * i), 50.0) for i in range(20_000)]

    svg = soc_chart_svg(points, start=start, end=end)

    assert sum(len(line) for line in polylines(svg)) <= MAX_POINTS + 1


def test_chart_is_self_contained_markup():
    start, end = window()

    svg = soc_chart_svg([(start + timedelta(hours=1), 50.0)], start=start, end=end)

    assert svg.startswith("<svg ")
    assert svg.endswith("</svg>")
    for forbidden in ("<script", "href", "url(", "@import", "<image", "<foreignObject"):
        assert forbidden not in svg
    assert not re.search(r"\son\w+=", svg)  # no event handler attributes


def test_chart_refuses_an_empty_window():
    start, _ = window()

    with pytest.raises(ValueError, match="end after it starts"):
        soc_chart_svg([], start=start, end=start)


# --- The vehicle list --------------------------------------------------------------------------


def test_vehicle_list_shows_owner_masked_vin_and_latest_telemetry(superuser_browser, vehicle):
    add_reading(
        vehicle, timezone.now() - timedelta(minutes=3), soc_pct=64.4, charging_state="CHARGING"
    )
    TelemetryState.objects.filter(vehicle=vehicle).update(
        calls_month=timezone.now().date().replace(day=1), calls_this_month=17
    )

    html = superuser_browser.get("/admin/vehicles/vehicle/").content.decode()

    assert "a@example.com" in html
    assert masked_vin(VIN) in html
    assert "317000" in html
    assert VIN not in html
    assert '<td class="field-soc">64</td>' in html
    assert "Charging" in html
    assert '<td class="field-calls_this_month">17</td>' in html


def test_calls_counted_in_an_earlier_month_show_as_zero(superuser_browser, vehicle):
    add_reading(vehicle, timezone.now())
    TelemetryState.objects.filter(vehicle=vehicle).update(
        calls_month=(timezone.now() - timedelta(days=40)).date().replace(day=1),
        calls_this_month=17,
    )

    html = superuser_browser.get("/admin/vehicles/vehicle/").content.decode()

    assert '<td class="field-calls_this_month">0</td>' in html


def test_masked_vin_shows_only_the_last_six():
    assert masked_vin(VIN) == "•" * 11 + "317000"
    assert masked_vin("") == "-"
    assert masked_vin("ABC") == "ABC"


def changelist_ids(browser: Client, query: dict) -> set[str]:
    response = browser.get("/admin/vehicles/vehicle/", query)
    assert response.status_code == HTTPStatus.OK
    return {str(v.pk) for v in response.context["cl"].result_list}


def test_stale_filter_finds_vehicles_without_a_reading_in_24_hours(superuser_browser, user):
    fresh, old, never = link_account(user, vehicle_ids=("v-fresh", "v-old", "v-never")).vehicles
    add_reading(fresh, timezone.now() - timedelta(hours=23))
    add_reading(old, timezone.now() - timedelta(hours=25))

    assert changelist_ids(superuser_browser, {"stale": "yes"}) == {str(old.pk), str(never.pk)}
    assert changelist_ids(superuser_browser, {"stale": "no"}) == {str(fresh.pk)}


def test_charging_state_filter_uses_the_latest_reading(superuser_browser, user):
    charging, idle, unknown = link_account(user, vehicle_ids=("v-c", "v-i", "v-u")).vehicles
    add_reading(charging, timezone.now(), charging_state="CHARGING")
    add_reading(idle, timezone.now(), charging_state="NOT_CHARGING")

    assert changelist_ids(superuser_browser, {"charging": "CHARGING"}) == {str(charging.pk)}
    assert changelist_ids(superuser_browser, {"charging": "none"}) == {str(unknown.pk)}


def test_status_and_make_filters(superuser_browser, user):
    tesla, kia = link_account(user, vehicle_ids=("v-t", "v-k")).vehicles
    Vehicle.objects.filter(pk=kia.pk).update(make="KIA", status=Vehicle.Status.NEEDS_REAUTH)

    assert changelist_ids(superuser_browser, {"make": "KIA"}) == {str(kia.pk)}
    assert changelist_ids(superuser_browser, {"status": "active"}) == {str(tesla.pk)}


@pytest.mark.parametrize(
    "term", ["a@example.com", "317000", "vid-1", "sc-user-1", "OWNER_ID"], ids=str
)
def test_search_by_owner_vin_and_smartcar_ids(superuser_browser, vehicle, other_user, term):
    link_account(other_user, smartcar_user_id="sc-other", vehicle_ids=("vid-other",), suffix="2")
    term = str(vehicle.owner_id) if term == "OWNER_ID" else term

    assert changelist_ids(superuser_browser, {"q": term}) == {str(vehicle.pk)}


def test_search_by_a_non_numeric_term_does_not_break_the_owner_id_lookup(
    superuser_browser, vehicle
):
    assert changelist_ids(superuser_browser, {"q": "x' OR 1=1"}) == set()


# --- The vehicle page --------------------------------------------------------------------------


def test_vehicle_page_shows_chart_readings_position_and_attempts(superuser_browser, vehicle):
    now = timezone.now()
    for hours in (3, 2, 1):
        add_reading(vehicle, now - timedelta(hours=hours), soc_pct=100 - 10 * hours)
    add_reading(vehicle, now - timedelta(days=9), soc_pct=11)  # outside the chart window
    add_reading(vehicle, now, latitude=48.8566, longitude=2.3522)
    attempt = ConnectAttempt.objects.create(
        user=vehicle.owner,
        expires_at=now,
        outcome="failed",
        error_code="<b>server_error</b>",
        error_description='<script>alert("x")</script> Smartcar said no',
    )

    response = superuser_browser.get(change_url(vehicle))
    html = response.content.decode()

    assert response.status_code == HTTPStatus.OK
    chart = re.search(r'<svg [^>]*class="soc-chart".*?</svg>', html, re.S).group(0)
    polyline = re.search(r'<polyline points="([^"]+)"', chart).group(1)
    assert len(polyline.split()) == 4  # the 9-day-old reading is left out
    assert "<script" not in chart
    assert "href" not in chart
    assert 'href="https://www.openstreetmap.org/?mlat=48.85660&amp;mlon=2.35220' in html
    assert "48.85660, 2.35220" in html
    assert html.count('href="/admin/telemetry/reading/') >= 5
    assert f"/admin/oauth_smartcar/connectattempt/{attempt.pk}/change/" in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; Smartcar said no" in html
    assert "&lt;b&gt;server_error&lt;/b&gt;" in html
    assert '<script>alert("x")' not in html
    assert VIN not in html


def test_vehicle_page_loads_nothing_from_elsewhere(superuser_browser, vehicle):
    add_reading(vehicle, timezone.now())

    html = superuser_browser.get(change_url(vehicle)).content.decode()

    sources = re.findall(r'(?:src|href)="([^"]+)"', html)
    external = [s for s in sources if s.startswith(("http:", "https:", "//"))]
    assert external == [s for s in external if s.startswith("https://www.openstreetmap.org/?mlat=")]
    # The one external URL is a link, never a loaded resource.
    assert not re.search(r'src="(https?:)?//', html)


def test_vehicle_page_lists_only_attempts_of_this_vehicle_or_that_linked_nothing(
    superuser_browser, user, vehicle
):
    other_vehicle = link_account(user, smartcar_user_id="sc-2", vehicle_ids=("vid-9",)).vehicles[0]
    mine = ConnectAttempt.objects.create(user=user, expires_at=timezone.now(), outcome="linked")
    mine.vehicles.add(vehicle)
    theirs = ConnectAttempt.objects.create(user=user, expires_at=timezone.now(), outcome="linked")
    theirs.vehicles.add(other_vehicle)
    denied = ConnectAttempt.objects.create(user=user, expires_at=timezone.now(), outcome="denied")

    response = superuser_browser.get(change_url(vehicle))

    assert {a.pk for a in response.context["connect_attempts"]} == {mine.pk, denied.pk}


def test_vehicle_page_links_to_its_readings_filtered_by_vehicle(superuser_browser, vehicle, user):
    other = link_account(user, smartcar_user_id="sc-2", vehicle_ids=("vid-9",)).vehicles[0]
    own = add_reading(vehicle, timezone.now())
    add_reading(other, timezone.now())

    html = superuser_browser.get(change_url(vehicle)).content.decode()
    link = f"/admin/telemetry/reading/?vehicle={vehicle.pk}"
    response = superuser_browser.get(link)

    assert link in html
    assert [r.pk for r in response.context["cl"].result_list] == [own.pk]
    assert str(vehicle) in response.content.decode()  # the filter names the chosen vehicle


def test_reading_list_with_a_malformed_vehicle_id_is_an_error_not_a_crash(superuser_browser):
    response = superuser_browser.get("/admin/telemetry/reading/", {"vehicle": "nope"})

    assert response.status_code == HTTPStatus.FOUND
    assert "e=1" in response["Location"]


def test_reading_filter_by_source(superuser_browser, vehicle):
    polled = add_reading(vehicle, timezone.now() - timedelta(hours=1))
    add_reading(vehicle, timezone.now(), source="webhook")

    response = superuser_browser.get("/admin/telemetry/reading/", {"source__exact": "poll"})

    assert [r.pk for r in response.context["cl"].result_list] == [polled.pk]


# --- Poll now ----------------------------------------------------------------------------------


@pytest.fixture
def v2(settings):
    settings.SMARTCAR_VEHICLE_API = "v2"


def test_support_polls_now_stores_a_refresh_reading_and_logs_it(
    support_browser, vehicle, smartcar_api, v2
):
    smartcar_api.post(BATCH_URL, json=json.loads((FIXTURES / "v2_batch_ok.json").read_text()))

    response = support_browser.post(poll_url(vehicle), follow=True)

    assert response.redirect_chain[-1][0] == change_url(vehicle)
    reading = Reading.objects.get(vehicle=vehicle)
    assert reading.source == Reading.Source.REFRESH
    assert reading.soc_pct == pytest.approx(80)
    [message] = messages_of(response)
    assert message.startswith("Poll now: OK; 4 Smartcar call(s); reading of ")
    entry = LogEntry.objects.get(object_id=str(vehicle.pk))
    assert entry.action_flag == CHANGE
    assert entry.user.username == "helpdesk"
    assert entry.change_message == message


def test_poll_now_reports_a_rate_limit_as_a_warning(support_browser, vehicle, smartcar_api, v2):
    smartcar_api.post(
        BATCH_URL,
        status=429,
        json={"type": "RATE_LIMIT", "code": "VEHICLE", "description": "Bearer secret-ish text"},
        headers={"Retry-After": "120"},
    )

    response = support_browser.post(poll_url(vehicle), follow=True)

    [message] = response.context["messages"]
    assert message.level_tag == "warning"
    assert "Rate limited" in str(message)
    assert "retry after 120 s" in str(message)
    assert "secret-ish" not in response.content.decode()  # Smartcar's text is never shown
    assert not Reading.objects.exists()


def test_poll_now_is_post_only(support_browser, vehicle, smartcar_api):
    assert support_browser.get(poll_url(vehicle)).status_code == HTTPStatus.METHOD_NOT_ALLOWED
    assert len(smartcar_api.calls) == 0


def test_poll_now_needs_the_poll_permission(vehicle, smartcar_api):
    viewer = get_user_model().objects.create_user("viewer", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_vehicle"))

    response = browser_for(viewer).post(poll_url(vehicle))

    assert response.status_code == HTTPStatus.FORBIDDEN
    assert len(smartcar_api.calls) == 0
    assert not LogEntry.objects.exists()


def test_poll_now_does_not_call_smartcar_for_a_disconnected_vehicle(
    support_browser, vehicle, smartcar_api
):
    Vehicle.objects.filter(pk=vehicle.pk).update(status=Vehicle.Status.DISCONNECTED)

    response = support_browser.post(poll_url(vehicle), follow=True)

    assert messages_of(response) == ["A disconnected vehicle is not polled."]
    assert len(smartcar_api.calls) == 0


def test_poll_now_for_an_unknown_vehicle_is_404(support_browser, smartcar_api):
    response = support_browser.post(f"/admin/vehicles/vehicle/{uuid.uuid4()}/poll/")

    assert response.status_code == HTTPStatus.NOT_FOUND


# --- Disconnect and changes: superusers only -----------------------------------------------------


def test_support_sees_poll_now_but_not_disconnect(support_browser, vehicle):
    html = support_browser.get(change_url(vehicle)).content.decode()

    assert 'id="poll-now"' in html
    assert 'id="disconnect"' not in html
    assert 'name="_save"' not in html


def test_superuser_sees_both_actions(superuser_browser, vehicle):
    html = superuser_browser.get(change_url(vehicle)).content.decode()

    assert 'id="poll-now"' in html
    assert 'id="disconnect"' in html


@pytest.mark.parametrize("method", ["get", "post"])
def test_support_cannot_disconnect(support_browser, vehicle, smartcar_api, method):
    response = getattr(support_browser, method)(disconnect_url(vehicle))

    assert response.status_code == HTTPStatus.FORBIDDEN
    vehicle.refresh_from_db()
    assert vehicle.status == Vehicle.Status.ACTIVE
    assert len(smartcar_api.calls) == 0


def test_disconnect_asks_for_confirmation_first(superuser_browser, vehicle, smartcar_api):
    response = superuser_browser.get(disconnect_url(vehicle))

    assert response.status_code == HTTPStatus.OK
    html = response.content.decode()
    assert 'value="Yes, disconnect"' in html
    assert masked_vin(VIN) in html
    vehicle.refresh_from_db()
    assert vehicle.status == Vehicle.Status.ACTIVE
    assert len(smartcar_api.calls) == 0


def test_superuser_disconnects_after_confirming(superuser_browser, vehicle, smartcar_api):
    smartcar_api.delete(DISCONNECT_URL, json={"status": "success"})

    response = superuser_browser.post(disconnect_url(vehicle), follow=True)

    vehicle.refresh_from_db()
    assert vehicle.status == Vehicle.Status.DISCONNECTED
    assert len(smartcar_api.calls) == 1
    assert messages_of(response) == [f"{vehicle} is disconnected."]
    entry = LogEntry.objects.get(object_id=str(vehicle.pk))
    assert (entry.user.username, entry.change_message) == ("root", "Disconnected from the admin")
    assert SmartcarAccount.objects.get().status == SmartcarAccount.Status.DISCONNECTED


def test_disconnect_that_smartcar_refuses_changes_nothing(superuser_browser, vehicle, smartcar_api):
    smartcar_api.delete(DISCONNECT_URL, status=500, json={"type": "SERVER", "code": "INTERNAL"})

    response = superuser_browser.post(disconnect_url(vehicle), follow=True)

    vehicle.refresh_from_db()
    assert vehicle.status == Vehicle.Status.ACTIVE
    [message] = response.context["messages"]
    assert message.level_tag == "error"
    assert str(message).startswith("Not disconnected: ")
    assert not LogEntry.objects.exists()


def test_support_cannot_change_a_vehicle(support_browser, vehicle):
    response = support_browser.post(change_url(vehicle), {"nickname": "mine", "_save": "1"})

    assert response.status_code == HTTPStatus.FORBIDDEN
    vehicle.refresh_from_db()
    assert vehicle.nickname == ""


def test_a_staff_user_with_the_change_permission_still_cannot_change(vehicle):
    staff = get_user_model().objects.create_user("editor", is_staff=True)
    staff.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_vehicle", "change_vehicle"])
    )

    response = browser_for(staff).post(change_url(vehicle), {"nickname": "mine", "_save": "1"})

    assert response.status_code == HTTPStatus.FORBIDDEN
    vehicle.refresh_from_db()
    assert vehicle.nickname == ""


def test_superuser_renames_through_the_service_and_it_is_logged(superuser_browser, vehicle):
    response = superuser_browser.post(
        change_url(vehicle), {"nickname": "Blue car", "is_primary": "on", "_save": "1"}
    )

    assert response.status_code == HTTPStatus.FOUND
    vehicle.refresh_from_db()
    assert vehicle.nickname == "Blue car"
    assert LogEntry.objects.get(object_id=str(vehicle.pk)).get_change_message() == (
        "Changed Nickname."
    )


def test_making_another_vehicle_primary_moves_the_flag(superuser_browser, user):
    first, second = link_account(user, vehicle_ids=("v-1", "v-2")).vehicles
    assert Vehicle.objects.get(pk=first.pk).is_primary

    response = superuser_browser.post(change_url(second), {"is_primary": "on", "_save": "1"})

    assert response.status_code == HTTPStatus.FOUND
    assert list(Vehicle.objects.filter(is_primary=True).values_list("pk", flat=True)) == [second.pk]


def test_a_disconnected_vehicle_cannot_be_made_primary(superuser_browser, vehicle):
    Vehicle.objects.filter(pk=vehicle.pk).update(
        status=Vehicle.Status.DISCONNECTED, is_primary=False
    )

    response = superuser_browser.post(change_url(vehicle), {"is_primary": "on", "_save": "1"})

    assert response.status_code == HTTPStatus.OK
    assert "A disconnected vehicle cannot be the primary one." in response.content.decode()
    vehicle.refresh_from_db()
    assert vehicle.is_primary is False


@pytest.mark.parametrize(
    "url",
    [
        "/admin/vehicles/vehicle/add/",
        "/admin/telemetry/reading/add/",
        "/admin/vehicles/smartcaraccount/add/",
    ],
)
def test_nobody_adds_rows_through_the_admin(superuser_browser, url):
    assert superuser_browser.get(url).status_code == HTTPStatus.FORBIDDEN


def test_nobody_deletes_vehicles_or_readings(superuser_browser, vehicle):
    reading = add_reading(vehicle, timezone.now())

    for url in (
        f"/admin/vehicles/vehicle/{vehicle.pk}/delete/",
        f"/admin/telemetry/reading/{reading.pk}/delete/",
    ):
        assert superuser_browser.post(url, {"post": "yes"}).status_code == HTTPStatus.FORBIDDEN
    assert Reading.objects.filter(pk=reading.pk).exists()
    assert Vehicle.objects.filter(pk=vehicle.pk).exists()


def test_support_can_view_every_support_list(support_browser, vehicle):
    add_reading(vehicle, timezone.now())
    for url in (
        "/admin/vehicles/vehicle/",
        "/admin/vehicles/smartcaraccount/",
        "/admin/oauth_smartcar/connectattempt/",
        "/admin/telemetry/reading/",
        "/admin/telemetry/webhookevent/",
        "/admin/telemetry/appthrottle/",
    ):
        assert support_browser.get(url).status_code == HTTPStatus.OK, url


# --- Webhook events --------------------------------------------------------------------------


def stored_event(payload, *, status=WebhookEvent.Status.FAILED, vehicle=None, n=0):
    return WebhookEvent.objects.create(
        event_id=payload.get("eventId", f"ev-{n}"),
        event_type=payload.get("eventType", "VEHICLE_STATE"),
        smartcar_vehicle_id=payload.get("vehicleId", "vid-1"),
        vehicle=vehicle,
        payload=payload,
        received_at=timezone.now() - timedelta(minutes=n),
        status=status,
        error="internal_error:OperationalError",
    )


def run_action(browser: Client, action: str, events) -> object:
    return browser.post(
        "/admin/telemetry/webhookevent/",
        {"action": action, "_selected_action": [str(e.pk) for e in events]},
        follow=True,
    )


def test_superuser_reprocesses_a_failed_event_and_it_is_logged(superuser_browser, vehicle):
    event = stored_event(state_event("vid-1", soc=55))

    response = run_action(superuser_browser, "reprocess", [event])

    event.refresh_from_db()
    assert event.status == WebhookEvent.Status.PROCESSED
    assert Reading.objects.get(vehicle=vehicle).soc_pct == pytest.approx(55)
    assert messages_of(response) == ["Reprocessed 1 event(s): 1 processed."]
    entry = LogEntry.objects.get(object_id=str(event.pk))
    assert entry.change_message == "Reprocessed from the admin: processed"


def test_reprocess_reports_failures_as_a_warning(superuser_browser, vehicle):
    broken = state_event("vid-1")
    broken["data"]["signals"] = "not a list"
    event = stored_event(broken)

    response = run_action(superuser_browser, "reprocess", [event])

    [message] = response.context["messages"]
    assert (message.level_tag, str(message)) == ("warning", "Reprocessed 1 event(s): 1 failed.")


def test_support_is_not_offered_reprocess_and_cannot_post_it(support_browser, vehicle):
    event = stored_event(state_event("vid-1"))

    html = support_browser.get("/admin/telemetry/webhookevent/").content.decode()
    run_action(support_browser, "reprocess", [event])

    assert 'value="reprocess"' not in html
    event.refresh_from_db()
    assert event.status == WebhookEvent.Status.FAILED
    assert not Reading.objects.exists()
    assert not LogEntry.objects.exists()


def test_reprocess_refuses_more_than_a_bounded_batch(superuser_browser, vehicle):
    events = [stored_event(state_event("vid-1"), n=n) for n in range(101)]

    response = run_action(superuser_browser, "reprocess", events)

    assert messages_of(response)[0].startswith("Select at most 100 events at a time")
    assert not WebhookEvent.objects.exclude(status=WebhookEvent.Status.FAILED).exists()


def test_webhook_event_page_shows_the_payload_escaped(superuser_browser, vehicle):
    payload = state_event("vid-1")
    payload["data"]["vehicle"]["make"] = "<script>alert(1)</script>"
    event = stored_event(payload)

    html = superuser_browser.get(
        f"/admin/telemetry/webhookevent/{event.pk}/change/"
    ).content.decode()

    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>alert(1)" not in html


def test_webhook_events_filter_by_vehicle(superuser_browser, vehicle, user):
    other = link_account(user, smartcar_user_id="sc-2", vehicle_ids=("vid-9",)).vehicles[0]
    mine = stored_event(state_event("vid-1"), vehicle=vehicle)
    stored_event(state_event("vid-9"), vehicle=other)

    response = superuser_browser.get("/admin/telemetry/webhookevent/", {"vehicle": str(vehicle.pk)})

    assert [e.pk for e in response.context["cl"].result_list] == [mine.pk]


# --- Scale: the same number of queries for 1 row and for a full page --------------------------


def test_vehicle_changelist_query_count_does_not_grow_with_rows(superuser_browser, user):
    make_vehicles(user, 1)
    one = count_queries(superuser_browser, "/admin/vehicles/vehicle/")
    make_vehicles(user, 29, start=1)

    many = count_queries(superuser_browser, "/admin/vehicles/vehicle/")

    assert many == one
    assert one <= 8


def test_vehicle_changelist_with_filters_and_search_is_constant_too(superuser_browser, user):
    url = "/admin/vehicles/vehicle/?stale=no&charging=CHARGING&make=KIA&q=bulk"
    make_vehicles(user, 1)
    one = count_queries(superuser_browser, url)
    make_vehicles(user, 29, start=1)

    assert count_queries(superuser_browser, url) == one


def test_reading_changelist_query_count_does_not_grow_with_rows(superuser_browser, user):
    make_vehicles(user, 1)
    one = count_queries(superuser_browser, "/admin/telemetry/reading/")
    make_vehicles(user, 29, start=1)

    assert count_queries(superuser_browser, "/admin/telemetry/reading/") == one


def test_webhook_changelist_query_count_does_not_grow_with_rows(superuser_browser, user):
    vehicles = make_vehicles(user, 30)
    stored_event(state_event("bulk-0"), vehicle=vehicles[0])
    one = count_queries(superuser_browser, "/admin/telemetry/webhookevent/")
    for n, v in enumerate(vehicles[1:], start=1):
        stored_event(state_event(v.smartcar_vehicle_id), vehicle=v, n=n)

    assert count_queries(superuser_browser, "/admin/telemetry/webhookevent/") == one


@pytest.mark.postgres_only
@pytest.mark.skipif(connection.vendor != "postgresql", reason="volume check runs on PostgreSQL")
def test_vehicle_changelist_at_ten_thousand_vehicles(superuser_browser, user):
    make_vehicles(user, 30)
    baseline = count_queries(superuser_browser, "/admin/vehicles/vehicle/")
    make_vehicles(user, 9_970, start=30)

    with CaptureQueriesContext(connection) as queries:
        response = superuser_browser.get("/admin/vehicles/vehicle/")

    assert response.status_code == HTTPStatus.OK
    assert len(queries) == baseline
    assert len(response.context["cl"].result_list) == 50
    # No query counts the whole table: the full count is off and the page count is the only one.
    counts = [q["sql"] for q in queries.captured_queries if "COUNT(" in q["sql"].upper()]
    assert len(counts) == 1
