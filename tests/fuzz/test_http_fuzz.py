"""Property tests over HTTP (Django's test client): webhook bodies and the OAuth redirect.

- Webhook: arbitrary bytes or JSON, unsigned, wrongly signed or validly signed: never a 5xx,
  and nothing is stored without a valid signature.
- The Smartcar redirect (and the first seed's callback path) with arbitrary query strings:
  always a 302, never a 500, and the Location never points off our configured handoff origins.
"""

import json
from urllib.parse import urlencode, urlsplit

import pytest
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oauth_smartcar.views import BROWSER_COOKIE
from telemetry.models import WebhookEvent
from telemetry.tests.webhook_support import post

pytestmark = pytest.mark.django_db

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=15,
)
event_like = st.fixed_dictionaries(
    {},
    optional={
        "eventId": st.text(max_size=40) | scalars,
        "eventType": st.sampled_from(["VERIFY", "VEHICLE_STATE", "VEHICLE_ERROR"]) | scalars,
        "data": json_values,
        "meta": json_values,
        "vehicleId": scalars,
    },
)
bodies = st.binary(max_size=400) | (event_like | json_values).map(lambda v: json.dumps(v).encode())


@SETTINGS
@given(body=bodies, signature=st.none() | st.text(max_size=80))
def test_unsigned_or_wrongly_signed_bodies_are_refused_and_never_stored(body, signature):
    response = post(Client(), body, signature=signature)
    assert response.status_code < 500
    if response.status_code == 200:
        # Only VERIFY is answered unsigned (its challenge is HMAC'd with our key).
        assert set(response.json()) == {"challenge"}
    assert WebhookEvent.objects.count() == 0


@SETTINGS
@given(body=bodies)
def test_signed_arbitrary_bodies_never_fail_the_server(body):
    response = post(Client(), body, signature="sign")
    assert response.status_code < 500
    assert response["Content-Type"] == "application/json"


# A cookie header carries bytes; the test client can only send latin-1 text.
cookie_values = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=40)
REDIRECT_PATHS = ["/api/v1/smartcar/redirect", "/oauth/smartcar/callback"]
query_values = st.text(max_size=60) | st.sampled_from(["", "access_denied", "x" * 2000])
queries = st.dictionaries(
    st.sampled_from(["code", "state", "error", "error_description", "vin", "ticket", "x"])
    | st.text(max_size=10),
    query_values,
    max_size=5,
)


@SETTINGS
@given(path=st.sampled_from(REDIRECT_PATHS), query=queries, cookie=st.none() | cookie_values)
def test_the_redirect_always_answers_302_to_our_own_pages(path, query, cookie, settings):
    client = Client()
    if cookie is not None:
        client.cookies[BROWSER_COOKIE] = cookie
    response = client.get(f"{path}?{urlencode(query)}")
    assert response.status_code == 302
    target = urlsplit(response["Location"])
    allowed = {urlsplit(settings.PUBLIC_BASE_URL).netloc, ""}
    assert target.netloc in allowed
