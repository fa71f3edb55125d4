"""SECURITY.md part H: 10,000 random body/signature pairs, 0 accepted.

A fixed seed, so a failure reproduces. The pairs go to `webhook_receive`, the service the
endpoint hands every delivery to (the endpoint itself is fuzzed over HTTP in
test_http_fuzz.py), in the near misses an attacker would try: random hex, our HMAC under
another key, of another body, one digit off, cut short, run on, in other cases, padded.
A control with the right signatures shows the same bodies are accepted once signed.
"""

import json
import random

import pytest

from telemetry.models import WebhookEvent
from telemetry.services.webhooks import (
    WebhookPayloadError,
    WebhookSignatureError,
    WebhookTooLargeError,
    webhook_receive,
)
from telemetry.tests.webhook_support import serialize, sign, state_event

pytestmark = pytest.mark.django_db

PAIRS = 10_000
REFUSED = (WebhookSignatureError, WebhookPayloadError, WebhookTooLargeError)


def random_body(rng: random.Random, n: int) -> bytes:
    """Half real-looking events (each with its own eventId), half arbitrary bytes or JSON."""
    kind = n % 4
    if kind in (0, 1):
        return serialize(state_event(soc=rng.randint(0, 100), event_id=f"fuzz-{n}"))
    if kind == 2:
        return rng.randbytes(rng.randint(0, 300))
    return json.dumps(
        {"eventType": "VEHICLE_STATE", "eventId": f"j-{n}", "x": rng.random()}
    ).encode()


def near_miss(rng: random.Random, body: bytes, n: int) -> str:
    right = sign(body)
    kind = n % 9
    if kind == 0:
        return "".join(rng.choice("0123456789abcdef") for _ in range(64))
    if kind == 1:
        return sign(body, key="not-the-management-token")
    if kind == 2:
        return sign(body + b" ")
    if kind == 3:
        i = rng.randrange(64)
        return (
            right[:i] + format((int(right[i], 16) + rng.randint(1, 15)) % 16, "x") + right[i + 1 :]
        )
    if kind == 4:
        return right[: rng.randrange(64)]
    if kind == 5:
        return right + rng.choice("0123456789abcdef")
    if kind == 6:
        return "sha256=" + right
    if kind == 7:
        return right[:32] + " " + right[32:]
    return sign(body, key="test-management-token ")


def test_ten_thousand_random_pairs_are_all_refused_and_nothing_is_stored():
    rng = random.Random(20261206)
    accepted = []
    for n in range(PAIRS):
        body = random_body(rng, n)
        try:
            receipt = webhook_receive(body=body, signature=near_miss(rng, body, n))
        except REFUSED:
            continue
        accepted.append((n, receipt))

    assert accepted == []
    assert WebhookEvent.objects.count() == 0


def test_control_the_same_bodies_signed_right_are_accepted():
    rng = random.Random(20261206)
    bodies = [random_body(rng, n) for n in range(200)]
    events = [body for n, body in enumerate(bodies) if n % 4 in (0, 1)]

    for body in events:
        assert webhook_receive(body=body, signature=sign(body)).created

    assert WebhookEvent.objects.count() == len(events) == 100
