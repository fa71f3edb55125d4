"""The backend's own `oauth-done` page in Chromium: the right message, nothing echoed as markup."""

from urllib.parse import urlencode

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SCRIPT = "<script>window.__xss=1;alert(1)</script>"  # 40 characters at most: the page cuts there
IMG = "<img src=x onerror=window.__xss=2;alert(2)>"[:40]
CODE = "c0de-From-Smartcar_1234567890"

CASES = {
    "linked": (
        {"smartcar": "ok", "smartcar_uid": SCRIPT, "make": IMG},
        "Your vehicle is connected",
    ),
    "recovery": (
        {
            "smartcar": "error",
            "reason": "use_post_complete_connect_with_jwt_and_code",
            "recover": "jwt",
            "oauth_code": CODE,
            "smartcar_uid": IMG,
        },
        "One more step to connect your vehicle",
    ),
    "denied": (
        {"smartcar": "error", "reason": "access_denied", "make": SCRIPT},
        "You did not allow access",
    ),
    "incompatible": (
        {"smartcar": "error", "reason": "vehicle_incompatible", "make": IMG, "model": SCRIPT},
        "This vehicle cannot be connected",
    ),
    "failed": (
        {"smartcar": "error", "reason": f"x{IMG}", "make": IMG},
        "Your vehicle could not be connected",
    ),
}


@pytest.mark.parametrize("outcome", list(CASES))
def test_oauth_done_page_shows_the_outcome_and_runs_nothing_echoed(page, site, dialogs, outcome):
    params, heading = CASES[outcome]

    page.goto(f"{site}/api/v1/smartcar/oauth-done?{urlencode(params)}")

    assert page.get_attribute("main", "data-outcome") == outcome
    assert page.text_content("h1") == heading
    assert page.evaluate("typeof window.__xss") == "undefined"
    assert page.locator("script").count() == 0
    assert page.locator("img").count() == 0
    assert dialogs.messages == []
    assert CODE not in page.text_content("body")


def test_incompatible_page_prints_the_vehicle_it_was_given_as_text(page, site):
    params, _ = CASES["incompatible"]

    page.goto(f"{site}/api/v1/smartcar/oauth-done?{urlencode(params)}")

    assert page.text_content("#vehicle").split() == [*IMG.split(), *SCRIPT.split()]
    assert page.evaluate("typeof window.__xss") == "undefined"


def test_failed_page_replaces_an_odd_reason_with_unknown_error(page, site):
    params, _ = CASES["failed"]

    page.goto(f"{site}/api/v1/smartcar/oauth-done?{urlencode(params)}")

    assert page.text_content("#reason") == "unknown_error"
