"""Cross-app fixtures: users, JWT-authenticated API clients, and a mocked Smartcar."""

import pytest
import responses
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import Client
from rest_framework.test import APIClient

from core.jwt_tokens import issue_jwt


@pytest.fixture
def user(db):
    return get_user_model().objects.create(username="user-a", email="a@example.com")


@pytest.fixture
def other_user(db):
    return get_user_model().objects.create(username="user-b", email="b@example.com")


def bearer_client(username: str, email: str | None = None) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issue_jwt(username, email=email)}")
    return client


@pytest.fixture
def api_client(user) -> APIClient:
    return bearer_client(user.username, user.email)


@pytest.fixture
def other_api_client(other_user) -> APIClient:
    return bearer_client(other_user.username, other_user.email)


@pytest.fixture
def smartcar_api():
    """Every HTTP call to Smartcar goes through this mock; unmocked calls fail the test."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def browser_for(user) -> Client:
    browser = Client()
    browser.force_login(user)
    return browser


@pytest.fixture
def superuser_browser() -> Client:
    return browser_for(get_user_model().objects.create_superuser("root", "root@example.com", "x"))


@pytest.fixture
def support_browser() -> Client:
    """A staff user in the `support` group, exactly as the data migration made it."""
    staff = get_user_model().objects.create_user("helpdesk", "help@example.com", is_staff=True)
    staff.groups.add(Group.objects.get(name="support"))
    return browser_for(staff)
