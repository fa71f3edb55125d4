"""The support admin's vehicle page in headless Chromium: it renders the state-of-charge chart
drawn on the server, runs no request to any other origin, takes form POSTs (login, "poll now")
as a browser sends them, and is kept as a screenshot (`test-artifacts/admin-vehicle.png`,
gitignored) for people reviewing the page."""

from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from oauth_smartcar.models import ConnectAttempt
from telemetry.models import Reading, TelemetryState
from tests.e2e.conftest import REPO_ROOT
from vehicles.models import SmartcarAccount, Vehicle

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

ARTIFACT = REPO_ROOT / "test-artifacts" / "admin-vehicle.png"
PASSWORD = "e2e-admin-password-1"


def a_week_of_readings(vehicle: Vehicle) -> None:
    """Hourly readings: a night's charge each day, the battery running down in between."""
    now = timezone.now()
    readings = []
    for hour in range(7 * 24, 0, -1):
        at = now - timedelta(hours=hour)
        charging = at.hour < 6
        soc = 35 + 9 * at.hour if charging else 85 - 2.5 * (at.hour - 6)
        readings.append(
            Reading(
                vehicle=vehicle,
                recorded_at=at,
                received_at=at,
                source=Reading.Source.POLL,
                soc_pct=soc,
                range_km=soc * 4.2,
                charging_state="CHARGING" if charging else "NOT_CHARGING",
                is_plugged_in=charging,
                latitude=52.52,
                longitude=13.405,
            )
        )
    Reading.objects.bulk_create(readings)
    latest = Reading.objects.filter(vehicle=vehicle).order_by("-recorded_at").first()
    TelemetryState.objects.create(
        vehicle=vehicle, latest_reading=latest, next_poll_at=now + timedelta(minutes=15)
    )


def test_vehicle_change_page_screenshot(page, site, settings):
    settings.SESSION_COOKIE_SECURE = False  # the live server speaks plain HTTP
    get_user_model().objects.create_superuser("root", "root@example.com", PASSWORD)
    owner = get_user_model().objects.create(username="owner", email="owner@example.com")
    account = SmartcarAccount.objects.create(
        smartcar_user_id="sc-user-e2e", owner=owner, access_token="a", refresh_token="r"
    )
    vehicle = Vehicle.objects.create(
        smartcar_vehicle_id="vid-e2e",
        owner=owner,
        account=account,
        make="TESLA",
        model="Model 3",
        year=2022,
        vin="5YJ3E1EA7KF317000",
        is_primary=True,
        connected_at=timezone.now() - timedelta(days=30),
    )
    a_week_of_readings(vehicle)
    ConnectAttempt.objects.create(
        user=owner, expires_at=timezone.now(), outcome="denied", error_code="access_denied"
    )
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(site))
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))

    page.goto(f"{site}/admin/login/?next=/admin/vehicles/vehicle/{vehicle.pk}/change/")
    page.fill("#id_username", "root")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("#soc-chart svg.soc-chart")

    assert page.locator("#soc-chart polyline").count() >= 1
    assert page.locator("#recent-readings tbody tr").count() == 20
    assert page.locator("#poll-now").is_visible()
    assert page.locator("#disconnect").is_visible()
    assert "317000" in page.text_content("body")
    assert "5YJ3E1EA7KF317000" not in page.text_content("body")
    assert [url for url in requested if not url.startswith(origin)] == []
    ARTIFACT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACT), full_page=True)
    assert ARTIFACT.stat().st_size > 10_000

    # A form POST from an admin page goes through in a real browser (CSRF origin check).
    page.click("#poll-now")
    page.wait_for_selector("ul.messagelist li")
    assert page.text_content("ul.messagelist li").startswith("Poll now: ")
