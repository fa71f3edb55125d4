"""The SPA's on-demand refresh against a Smartcar slower than our read timeout (SECURITY H,
"Upstream faults"): a 5xx JSON error within the client's timeout budget, never a hang or an HTML
500, and the poller keeps polling other vehicles meanwhile.
"""

import threading
import time

import pytest

from smartcar_emulator import control
from telemetry.models import TelemetryState
from telemetry.services import polling
from tests.faults.conftest import READ_TIMEOUT, Clock, link_fleet, vehicle_calls

pytestmark = pytest.mark.django_db(transaction=True)

GET_ATTEMPTS = 3
# Three read timeouts plus the client's two backoff sleeps (0.25 s, 0.5 s), plus slack for a
# busy CI machine.
BUDGET = GET_ATTEMPTS * READ_TIMEOUT + 0.75 + 1.5


def latest_url(vehicle) -> str:
    return f"/api/v1/vehicles/{vehicle.pk}/telemetry/latest?refresh=true"


def test_refresh_of_a_slow_vehicle_answers_5xx_json_within_the_budget(emulator, user, api_client):
    (slow,) = link_fleet(user, 1)
    control.set_faults(slow.simulated.id, latency_ms=int(READ_TIMEOUT * 1000 * 4))

    started = time.monotonic()
    response = api_client.get(latest_url(slow.vehicle))
    elapsed = time.monotonic() - started

    assert elapsed < BUDGET
    # We were the gateway and Smartcar did not answer in time: 504, with a stable code.
    assert response.status_code == 504
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"] == "smartcar_timeout"
    assert set(response.json()) == {"error", "message"}
    assert TelemetryState.objects.get(vehicle=slow.vehicle).latest_reading is None


def test_a_stuck_refresh_does_not_hold_up_polls_of_other_vehicles(emulator, user, api_client):
    slow, *others = link_fleet(user, 3)
    control.set_faults(slow.simulated.id, latency_ms=int(READ_TIMEOUT * 1000 * 4))
    answers = []

    def refresh() -> None:
        answers.append(api_client.get(latest_url(slow.vehicle)).status_code)

    request = threading.Thread(target=refresh)
    request.start()
    time.sleep(0.1)  # the refresh is now waiting on Smartcar
    started = time.monotonic()
    summary = polling.run_poll_cycle(
        vehicle_ids=[o.vehicle.pk for o in others],
        workers=2,
        clock=Clock(),
        refresh_fn=lambda *, account: False,
    )
    poll_seconds = time.monotonic() - started
    still_waiting = request.is_alive()
    request.join(timeout=BUDGET + 5)

    assert summary.polled == 2
    assert summary.failed == {}
    assert poll_seconds < READ_TIMEOUT * 2
    assert still_waiting  # the polls finished while the refresh was still stuck
    assert answers == [504]
    for other in others:
        assert vehicle_calls(other.simulated) == 1
