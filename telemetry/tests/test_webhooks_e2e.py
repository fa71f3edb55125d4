"""Webhooks end to end: the emulator's signed deliveries over real HTTP to a live server, each
event processed in the background as in production (each delivery waits for that to finish)."""

from io import StringIO

import pytest
import requests
from django.core.management import call_command

from smartcar_client.webhooks import challenge_hmac
from smartcar_emulator import clock, conf, fleet, webhooks
from telemetry.models import Reading, WebhookEvent
from telemetry.tests.conftest import WAIT_SECONDS
from telemetry.tests.webhook_support import KEY, URL, link
from vehicles.models import SmartcarAccount

pytestmark = [
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture
def simulated():
    return fleet.build_fleet(conf.seed())[0]


@pytest.fixture
def target(live_server, background):
    with requests.Session() as session:
        yield f"{live_server.url}{URL}", session, background


def deliver(target, event, *, key=KEY):
    url, session, background = target
    body = webhooks.serialize(event)
    response = webhooks.deliver(url, body, webhooks.sign(body, key), session=session)
    assert background.wait_idle(WAIT_SECONDS)
    return response


def test_verify_signed_and_unsigned(target):
    event = webhooks.verify_event(now=clock.now())
    url, session, _ = target
    expected = {"challenge": challenge_hmac(KEY, event["data"]["challenge"])}

    signed = deliver(target, event)
    unsigned = webhooks.deliver(url, webhooks.serialize(event), "", session=session)

    for response in (signed, unsigned):
        assert response.status_code == 200
        assert response.headers["Content-Type"] == "application/json"
        assert response.json() == expected


def test_vehicle_state_duplicates_and_a_bad_signature(target, user, simulated):
    link(user, vehicle_ids=(simulated.id,))
    event = webhooks.vehicle_state_event(vehicle=simulated, user_id="sc-user-1", now=clock.now())

    first = deliver(target, event)
    again = deliver(target, webhooks.redelivery(event, now=clock.now()))
    forged = webhooks.vehicle_state_event(vehicle=simulated, user_id="u", now=clock.now() + 60)
    refused = deliver(target, forged, key=KEY + "-wrong")

    assert (first.status_code, first.json()) == (200, {"status": "accepted"})
    assert (again.status_code, again.json()) == (200, {"status": "duplicate"})
    assert refused.status_code == 401
    stored = WebhookEvent.objects.get()
    assert (stored.event_id, stored.status) == (event["eventId"], "processed")
    reading = Reading.objects.get()
    soc = next(s for s in event["data"]["signals"] if s["code"] == "tractionbattery-stateofcharge")
    assert reading.soc_pct == pytest.approx(soc["body"]["value"])
    assert reading.source == Reading.Source.WEBHOOK


def test_vehicle_error_needs_reauth_then_resolved(target, user, simulated):
    link(user, vehicle_ids=(simulated.id,))
    now = clock.now()

    error = webhooks.vehicle_error_event(vehicle=simulated, user_id="u", now=now, code="PERMISSION")
    assert deliver(target, error).status_code == 200
    assert SmartcarAccount.objects.get().status == "needs_reauth"

    resolved = webhooks.vehicle_error_event(
        vehicle=simulated, user_id="u", now=now + 60, code="PERMISSION", resolved=True
    )
    assert deliver(target, resolved).status_code == 200
    assert SmartcarAccount.objects.get().status == "active"


def test_emulator_command_delivers_duplicates_and_bad_signatures(
    live_server, background, user, simulated
):
    link(user, vehicle_ids=(simulated.id,))
    url = f"{live_server.url}{URL}"
    out = StringIO()

    call_command(
        "emulator_send_webhook", "--url", url, "--vehicle", simulated.id, "--duplicate", stdout=out
    )
    call_command("emulator_send_webhook", "--url", url, "--bad-signature", stdout=out)

    assert background.wait_idle(WAIT_SECONDS)
    lines = out.getvalue().splitlines()
    assert [line.rsplit(" ", 1)[-1] for line in lines] == ["200", "200", "401"]
    assert WebhookEvent.objects.count() == 1
    assert Reading.objects.count() == 1
