"""Connect attempts in the admin: read-only for everyone, searchable by user, filterable by
outcome and date, Smartcar's error shown as plain (escaped) text, and no secret on the page."""

from datetime import timedelta
from http import HTTPStatus

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from oauth_smartcar.models import ConnectAttempt

pytestmark = pytest.mark.django_db

LIST_URL = "/admin/oauth_smartcar/connectattempt/"
CODE = "c0de-From-Smartcar-admin-1"


def attempt(user, **fields) -> ConnectAttempt:
    return ConnectAttempt.objects.create(user=user, expires_at=timezone.now(), **fields)


def listed(browser: Client, query: dict) -> list:
    response = browser.get(LIST_URL, query)
    assert response.status_code == HTTPStatus.OK
    return [a.pk for a in response.context["cl"].result_list]


def test_smartcar_error_is_shown_as_escaped_text(support_browser, user):
    failed = attempt(
        user,
        outcome="failed",
        error_code="server_error",
        error_description='<img src=x onerror="alert(1)"> Smartcar is down',
        smartcar_request_id="req-42",
    )

    for url in (LIST_URL, f"{LIST_URL}{failed.pk}/change/"):
        html = support_browser.get(url).content.decode()
        assert "server_error" in html
        assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt; Smartcar is down" in html
        assert "<img src=x" not in html


def test_page_never_shows_the_hand_off_url_or_digests(superuser_browser, user):
    row = attempt(
        user,
        outcome="recovered",
        redirect_url=f"https://app.example.test/done?oauth_code={CODE}",
        state_digest="d" * 64,
        code_digest="e" * 64,
    )

    html = superuser_browser.get(f"{LIST_URL}{row.pk}/change/").content.decode()

    assert CODE not in html
    assert "d" * 64 not in html
    assert "e" * 64 not in html


def test_filter_by_outcome(support_browser, user):
    denied = attempt(user, outcome="denied")
    attempt(user, outcome="linked")

    assert listed(support_browser, {"outcome__exact": "denied"}) == [denied.pk]


def test_filter_by_date(support_browser, user):
    today = attempt(user, outcome="failed")
    old = attempt(user, outcome="failed")
    ConnectAttempt.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=400))
    since = str(timezone.now() - timedelta(days=7))  # as the "Past 7 days" link sends it

    assert listed(support_browser, {"created_at__gte": since}) == [today.pk]
    assert listed(support_browser, {"created_at__year": str(timezone.now().year)}) == [today.pk]


@pytest.mark.parametrize("term", ["a@example.com", "user-a", "USER_ID"])
def test_search_by_user(support_browser, user, other_user, term):
    mine = attempt(user)
    attempt(other_user)
    term = str(user.pk) if term == "USER_ID" else term

    assert listed(support_browser, {"q": term}) == [mine.pk]


@pytest.mark.parametrize("who", ["superuser_browser", "support_browser"])
def test_attempts_are_read_only_for_everyone(request, user, who):
    browser = request.getfixturevalue(who)
    row = attempt(user, outcome="failed", error_code="server_error")

    change = browser.post(f"{LIST_URL}{row.pk}/change/", {"outcome": "linked", "_save": "1"})
    delete = browser.post(f"{LIST_URL}{row.pk}/delete/", {"post": "yes"})

    assert change.status_code == HTTPStatus.FORBIDDEN
    assert delete.status_code == HTTPStatus.FORBIDDEN
    assert browser.get(f"{LIST_URL}add/").status_code == HTTPStatus.FORBIDDEN
    row.refresh_from_db()
    assert row.outcome == "failed"


def test_list_query_count_does_not_grow_with_rows(support_browser, user, other_user):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert support_browser.get(LIST_URL).status_code == HTTPStatus.OK
        return len(captured)

    attempt(user, outcome="denied")
    one = queries()
    for i in range(29):
        attempt(other_user if i % 2 else user, outcome="failed", error_code=f"code_{i % 3}")

    assert queries() == one
