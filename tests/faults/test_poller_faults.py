"""The poller against a misbehaving Smartcar (issue 8, SECURITY E7/H): the emulator over real
HTTP injects timeouts, 5xx, 429 with Retry-After, malformed and truncated bodies and revoked
access. No crash, no lost vehicle, every failure recorded with its reason, backoff respected
(asserted with the emulator's own call counts).
"""

import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest

from smartcar_emulator import control
from telemetry.models import Reading, TelemetryState
from telemetry.services import polling, readings
from tests.faults.conftest import READ_TIMEOUT, Clock, link_fleet, vehicle_calls
from vehicles.models import SmartcarAccount

pytestmark = pytest.mark.django_db(transaction=True)

# The client's retry policy for GETs (smartcar_client.client): 3 tries for timeouts and 5xx.
GET_ATTEMPTS = 3


def no_idle_refresh(*, account: SmartcarAccount) -> bool:
    return False


def cycle(clock: Clock, **options: object) -> polling.CycleSummary:
    return polling.run_poll_cycle(
        clock=clock,
        refresh_fn=no_idle_refresh,
        workers=4,
        **options,  # type: ignore[arg-type]
    )


def state_of(linked) -> TelemetryState:
    return TelemetryState.objects.get(vehicle=linked.vehicle)


def test_every_fault_is_recorded_with_its_reason_and_no_vehicle_is_lost(emulator, user, settings):
    settings.POLL_INTERVAL_DEFAULT = 10  # failures back off from 10 s, far below Retry-After
    settings.POLL_INTERVAL_PLUGGED_IN = 10
    settings.POLL_INTERVAL_CHARGING = 10
    healthy, slow, broken, limited, malformed, revoked = link_fleet(user, 6)
    control.set_faults(slow.simulated.id, latency_ms=int(READ_TIMEOUT * 1000 * 3))
    control.set_faults(broken.simulated.id, error_rate=1.0)
    control.set_faults(limited.simulated.id, rate_limit="VEHICLE", retry_after=300)
    control.set_faults(malformed.simulated.id, malformed_json=True)
    control.set_faults(revoked.simulated.id, revoked="AUTHENTICATION")
    clock = Clock()

    summary = cycle(clock)

    assert summary.polled == 6  # nobody lost, nothing raised
    assert summary.claimed == 6
    expected = {
        healthy: ("ok", ""),
        slow: ("failed", "TIMEOUT:ReadTimeout"),
        broken: ("failed", "SERVER:INTERNAL"),
        limited: ("rate_limited", "RATE_LIMIT:VEHICLE"),
        malformed: ("failed", "MALFORMED_RESPONSE:json"),
        revoked: ("reauth", "reconnect_required"),
    }
    for linked, (outcome, reason) in expected.items():
        row = state_of(linked)
        assert row.last_polled_at == clock.now
        assert row.lease_until is None
        assert row.last_outcome == outcome, linked.simulated.make
        assert row.last_error.split(" request_id=")[0] == reason
        if outcome in ("failed", "rate_limited"):
            assert row.consecutive_failures == 1
            assert row.next_poll_at > clock.now
    assert Reading.objects.filter(vehicle=healthy.vehicle).count() == 1
    assert Reading.objects.count() == 1
    assert SmartcarAccount.objects.get(pk=revoked.vehicle.account_id).status == "needs_reauth"
    assert state_of(limited).next_poll_at >= clock.now + timedelta(seconds=300)

    # Each car was asked exactly as often as the client's retry policy allows, no more.
    assert vehicle_calls(healthy.simulated) == 1
    assert vehicle_calls(broken.simulated) == GET_ATTEMPTS  # 5xx: retried
    assert vehicle_calls(limited.simulated) == 1  # 429: never retried by the client
    assert vehicle_calls(malformed.simulated) == 1
    assert vehicle_calls(revoked.simulated) == 2  # one forced refresh, one retry, then reauth
    # A timed-out request may still be counted by the emulator once its sleep ends.
    deadline = time.monotonic() + READ_TIMEOUT * 4
    while vehicle_calls(slow.simulated) < GET_ATTEMPTS and time.monotonic() < deadline:
        time.sleep(0.05)
    assert vehicle_calls(slow.simulated) == GET_ATTEMPTS

    # Backoff: just before Retry-After ends the rate-limited car is left alone, while the
    # failed ones (backing off from a 10 s interval) are tried again.
    control.clear_faults()
    before = {linked: vehicle_calls(linked.simulated) for linked in expected}
    clock.advance(299)
    again = cycle(clock)
    assert vehicle_calls(limited.simulated) == before[limited]
    assert vehicle_calls(revoked.simulated) == before[revoked]  # needs_reauth: never polled
    for linked in (broken, malformed, slow):
        assert vehicle_calls(linked.simulated) >= before[linked] + 1
        assert state_of(linked).last_outcome == "ok"
        assert state_of(linked).consecutive_failures == 0
    assert again.polled == 4  # healthy is due again too (10 s interval)

    clock.advance(2)
    assert cycle(clock).polled == 1
    assert vehicle_calls(limited.simulated) == before[limited] + 1
    assert state_of(limited).last_outcome == "ok"


class TruncatingServer:
    """Answers every request with a 200 JSON head that promises more bytes than it sends, then
    hangs up: a body cut off mid-transfer (the emulator can only send short, complete bodies)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.requests = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                self.requests += 1
                body = json.dumps({"data": [], "meta": {"page": 1}}).encode()
                head = (
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body) * 4}\r\nConnection: close\r\n\r\n"
                )
                conn.sendall(head.encode() + body[: len(body) // 2])

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def truncating(settings) -> Iterator[TruncatingServer]:
    server = TruncatingServer()
    yield server
    server.close()


def test_a_truncated_body_is_a_recorded_failure(emulator, user, settings, truncating):
    (linked,) = link_fleet(user, 1)
    settings.SMARTCAR_V3_BASE_URL = truncating.url  # tokens stay fresh: no token call needed
    clock = Clock()

    summary = cycle(clock)

    assert summary.polled == 1
    row = state_of(linked)
    assert row.last_outcome == "failed"
    assert row.last_error.startswith("CONNECTION:")  # a transfer error, not a crash
    assert row.consecutive_failures == 1
    assert truncating.requests == GET_ATTEMPTS  # a broken transfer is retried like a timeout
    assert Reading.objects.count() == 0


def test_a_slow_vehicle_does_not_hold_up_the_others(emulator, user):
    """Upstream slower than the read timeout costs that car its retries, and only that car."""
    slow, *others = link_fleet(user, 5)
    control.set_faults(slow.simulated.id, latency_ms=int(READ_TIMEOUT * 1000 * 4))
    finished: dict[str, float] = {}
    started = time.monotonic()

    def timed_poll(*, vehicle, source="poll"):
        try:
            return readings.telemetry_poll_vehicle(vehicle=vehicle, source=source)
        finally:
            finished[vehicle.smartcar_vehicle_id] = time.monotonic() - started

    summary = polling.run_poll_cycle(
        refresh_fn=no_idle_refresh, workers=4, poll_fn=timed_poll, clock=Clock()
    )

    assert summary.polled == 5
    assert summary.failed == {"failed": 1}
    slowest_other = max(finished[o.simulated.id] for o in others)
    assert slowest_other < READ_TIMEOUT * 2  # done while the slow car still waits
    assert finished[slow.simulated.id] >= READ_TIMEOUT * GET_ATTEMPTS
    for other in others:
        assert state_of(other).last_outcome == "ok"
