"""The demo SPA through the emulator's consent page and the real redirect handler, in Chromium."""

import os
import re
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from django.contrib.auth import get_user_model

from oauth_smartcar.models import ConnectAttempt
from smartcar_emulator import control
from tests.e2e.conftest import REPO_ROOT
from vehicles.models import SmartcarAccount, Vehicle

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

AUTHORIZE = re.compile(r"/_smartcar/oauth/authorize\?")
ARTIFACT = REPO_ROOT / "test-artifacts" / "demo.png"  # gitignored, kept by CI runs
README_SHOT = REPO_ROOT / "docs" / "demo.png"  # committed; rewritten only on request


def make_with_two_vehicles() -> tuple[str, list[str]]:
    by_make: dict[str, list[str]] = {}
    for vehicle in control.list_vehicles():
        by_make.setdefault(vehicle["make"], []).append(vehicle["id"])
    make = next(name for name, ids in sorted(by_make.items()) if len(ids) >= 2)
    return make, by_make[make][:2]


def consent(page, *, make: str, vehicle_ids: list[str], action: str = "allow") -> None:
    """On the emulator's consent page: pick the brand, tick the vehicles, press Allow or Deny."""
    page.wait_for_url(AUTHORIZE)
    page.click(f"#brand-{make.lower()}")
    page.wait_for_selector("#allow")
    for vehicle_id in vehicle_ids:
        page.check(f"#vehicle-{vehicle_id}")
    page.click(f"#{action}")


def status(page) -> tuple[str, str]:
    box = page.locator("#status")
    return box.get_attribute("data-state"), page.text_content("#status-title")


def test_happy_path_links_the_chosen_vehicles_and_shows_them(page, site):
    make, vehicle_ids = make_with_two_vehicles()
    page.goto(f"{site}/")
    page.click("#link")

    consent(page, make=make, vehicle_ids=vehicle_ids)

    page.wait_for_url(re.compile(r"/\?.*smartcar=ok"))
    assert page.url.startswith(f"{site}/?")
    page.wait_for_selector("#linked:not([hidden])")
    assert status(page) == ("ok", "Vehicle linked")
    assert page.text_content("#user") == "demo-user"
    shown_uid = page.text_content("#smartcar-uid")
    shown_vehicle = page.text_content("#vehicle-id")

    user = get_user_model().objects.get(username="demo-user")
    account = SmartcarAccount.objects.get(owner=user)
    assert account.smartcar_user_id == shown_uid
    assert account.status == SmartcarAccount.Status.ACTIVE
    vehicles = Vehicle.objects.filter(owner=user, account=account)
    assert sorted(v.smartcar_vehicle_id for v in vehicles) == sorted(vehicle_ids)
    assert all(v.make == make and len(v.vin) == 17 for v in vehicles)
    assert str(vehicles.get(pk=shown_vehicle).pk) == shown_vehicle
    # The page lists the linked vehicles from GET …/vehicles, as a real SPA would.
    page.wait_for_selector("#vehicles li.vehicle")
    listed = page.eval_on_selector_all(
        "#vehicles li.vehicle", "items => items.map(i => i.dataset.vehicleId)"
    )
    assert sorted(listed) == sorted(str(v.pk) for v in vehicles)
    assert make in page.text_content("#vehicles")
    attempt = ConnectAttempt.objects.get(user=user)
    assert attempt.outcome == ConnectAttempt.Outcome.LINKED
    # The redirect handler removes the browser-binding cookie once it has been used.
    assert "smartcar_connect" not in {c["name"] for c in page.context.cookies()}

    targets = [ARTIFACT, README_SHOT] if os.environ.get("E2E_UPDATE_DOCS") == "1" else [ARTIFACT]
    for path in targets:
        path.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(path), full_page=True)
    assert ARTIFACT.stat().st_size > 10_000


def test_recovery_path_finishes_through_complete_connect(page, site):
    make, vehicle_ids = make_with_two_vehicles()
    page.goto(f"{site}/")
    page.click("#recover")

    page.wait_for_url(AUTHORIZE)
    query = parse_qs(urlsplit(page.url).query)
    assert "state" not in query
    assert query["client_id"] == ["test-client-id"]
    consent(page, make=make, vehicle_ids=vehicle_ids[:1])

    # CSS waits only: the page's CSP forbids the eval behind Playwright's wait_for_function.
    page.wait_for_selector("#status[data-state=ok], #status[data-state=error]")
    assert status(page) == ("ok", "Vehicle linked (recovered)")
    assert page.text_content("#recovery-result").startswith("complete-connect → 200")
    # The page took the code out of the address bar before using it.
    assert page.url == f"{site}/"

    user = get_user_model().objects.get(username="demo-user")
    account = SmartcarAccount.objects.get(owner=user)
    assert page.text_content("#smartcar-uid") == account.smartcar_user_id
    linked = Vehicle.objects.get(owner=user)
    assert linked.smartcar_vehicle_id == vehicle_ids[0]
    assert page.text_content("#vehicle-id") == str(linked.pk)
    recovered = ConnectAttempt.objects.get(user=user, outcome=ConnectAttempt.Outcome.RECOVERED)
    assert recovered.channel == ConnectAttempt.Channel.RECOVERY
    # The attempt the start link opened never got a code: its state was dropped on the way.
    opened = ConnectAttempt.objects.get(user=user, channel=ConnectAttempt.Channel.BROWSER)
    assert opened.code_digest is None
    assert opened.outcome == ConnectAttempt.Outcome.PENDING


def test_deny_comes_back_with_access_denied_and_links_nothing(page, site):
    make, vehicle_ids = make_with_two_vehicles()
    page.goto(f"{site}/")
    page.click("#link")

    consent(page, make=make, vehicle_ids=vehicle_ids[:1], action="deny")

    page.wait_for_url(re.compile(r"/\?.*smartcar=error"))
    assert parse_qs(urlsplit(page.url).query)["reason"] == ["access_denied"]
    page.wait_for_selector("#reason-line:not([hidden])")
    assert status(page) == ("error", "Access not granted")
    assert "You chose Deny" in page.text_content("#status-text")
    assert page.text_content("#reason") == "access_denied"
    assert not SmartcarAccount.objects.exists()
    assert not Vehicle.objects.exists()
    attempt = ConnectAttempt.objects.get(user__username="demo-user")
    assert attempt.outcome == ConnectAttempt.Outcome.DENIED


def test_incompatible_vehicle_lands_on_the_oauth_done_page_without_a_handoff(page, site, settings):
    # No SPA configured: the backend's own page tells the person what happened.
    settings.SMARTCAR_APP_HANDOFF_URL = ""
    make, _ = make_with_two_vehicles()
    page.goto(f"{site}/")
    page.click("#link")
    page.wait_for_url(AUTHORIZE)
    page.click(f"#brand-{make.lower()}")
    page.select_option("#outcome", "vehicle_incompatible")
    page.click("#simulate")

    page.wait_for_url(re.compile(r"/api/v1/smartcar/oauth-done\?"))
    assert page.get_attribute("main", "data-outcome") == "incompatible"
    assert page.text_content("h1") == "This vehicle cannot be connected"
    assert make in page.text_content("#vehicle")
    assert page.text_content("#reason") == "vehicle_incompatible"


def test_demo_page_shows_query_values_as_text_only(page, site):
    payload_uid = "<img src=x onerror=window.__xss=1;alert(1)>"
    payload_vehicle = "<script>window.__xss=2;alert(2)</script>"
    query = urlencode(
        {"smartcar": "ok", "smartcar_uid": payload_uid, "vehicle_id": payload_vehicle}
    )
    page.goto(f"{site}/?{query}")

    page.wait_for_selector("#linked:not([hidden])")
    assert page.text_content("#smartcar-uid") == payload_uid
    assert page.text_content("#vehicle-id") == payload_vehicle
    assert page.locator("img").count() == 0
    assert page.evaluate("typeof window.__xss") == "undefined"


def test_demo_page_shows_an_unknown_error_reason_as_text(page, site):
    payload = "<img src=x onerror=window.__xss=1>"
    page.goto(f"{site}/?{urlencode({'smartcar': 'error', 'reason': payload})}")

    page.wait_for_selector("#reason-line:not([hidden])")
    assert status(page) == ("error", "Connect failed")
    assert page.text_content("#reason") == payload
    assert page.locator("img").count() == 0
    assert page.evaluate("typeof window.__xss") == "undefined"
