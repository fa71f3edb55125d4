"""The webhook endpoint: signature on the raw body, VERIFY, limits, idempotent store (SECURITY C)."""

import io
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus

import pytest
from django.core.handlers.asgi import ASGIRequest
from django.db import IntegrityError, OperationalError, connection
from django.test import Client

from smartcar_client import webhooks as crypto
from telemetry.models import Reading, WebhookEvent
from telemetry.services import webhooks as service
from telemetry.tests.webhook_support import (
    KEY,
    URL,
    error_event,
    link,
    post,
    send,
    serialize,
    sign,
    state_event,
    verify_event,
)
from telemetry.webhooks_api import SmartcarWebhookApi

pytestmark = pytest.mark.django_db

# HMAC-SHA256(key="test-management-token", msg=challenge), computed once with Python's hmac.
VECTOR_CHALLENGE = "a1b2c3d4e5f60718"
VECTOR_ANSWER = "fbd1af3f948a77b2f74102753b970e4b1b9c022dcb9cf94cb99bf6519a586323"
LEGACY_CHALLENGE = "9f86d081-884c-4d63-9b2a-chal"
LEGACY_ANSWER = "4f1d0756e7dffc6e644bbb06a2774a9df4f7c6e7a385a8cbdb9c215e16747d88"

UNAUTHORIZED = {
    "error": "invalid_signature",
    "message": "The SC-Signature header is missing or does not match the body.",
}
INVALID = {
    "error": "invalid_payload",
    "message": "The body is not a Smartcar webhook event (a JSON object).",
}


@pytest.fixture
def vehicle(user):
    return link(user).vehicles[0]


# --- VERIFY ---------------------------------------------------------------------------------------


def test_settings_key_is_the_one_the_vector_was_computed_with(settings):
    assert settings.SMARTCAR_MANAGEMENT_TOKEN == KEY


def test_signed_verify_answers_the_known_vector(client):
    response = send(client, verify_event(VECTOR_CHALLENGE))

    assert response.status_code == HTTPStatus.OK
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"challenge": VECTOR_ANSWER}
    assert WebhookEvent.objects.count() == 0


def test_unsigned_verify_with_a_token_challenge_is_answered(client):
    response = send(client, verify_event(VECTOR_CHALLENGE), signature=None)

    assert response.status_code == HTTPStatus.OK
    assert response.json() == {"challenge": VECTOR_ANSWER}


def test_legacy_verify_envelope_is_answered(client):
    body = {"version": "2.0", "webhookId": "w", "eventName": "verify"}
    body["payload"] = {"challenge": LEGACY_CHALLENGE}

    response = send(client, body, signature=None)

    assert response.status_code == HTTPStatus.OK
    assert response.json() == {"challenge": LEGACY_ANSWER}


def test_verify_answer_is_json_whatever_accept_says(client):
    response = send(client, verify_event(VECTOR_CHALLENGE), HTTP_ACCEPT="text/html")

    assert response.status_code == HTTPStatus.OK
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"challenge": VECTOR_ANSWER}


def test_unsigned_verify_never_signs_a_body_shaped_challenge(client, vehicle):
    forged = serialize(state_event("vid-1", soc=1))
    response = send(client, verify_event(forged.decode()), signature=None)

    assert response.status_code == HTTPStatus.UNAUTHORIZED
    assert sign(forged) not in response.content.decode()
    # Had it answered, that answer would be a valid signature for the forged event:
    assert post(client, forged, signature=sign(forged)).status_code == HTTPStatus.OK


def test_unsigned_verify_answer_cannot_be_replayed_as_a_body(client):
    """A token-like challenge can still be valid JSON ("null", "123"): never an event."""
    for challenge in ("null", "123", "true"):
        answer = send(client, verify_event(challenge), signature=None).json()["challenge"]

        response = post(client, challenge.encode(), signature=answer)

        assert response.status_code == HTTPStatus.BAD_REQUEST
        assert response.json() == INVALID
    assert WebhookEvent.objects.count() == 0


def test_verify_with_a_wrong_signature_is_refused(client):
    response = send(client, verify_event(VECTOR_CHALLENGE), signature=sign(b"other"))

    assert response.status_code == HTTPStatus.UNAUTHORIZED
    assert response.json() == UNAUTHORIZED


def test_large_unsigned_verify_is_refused(client):
    event = verify_event(VECTOR_CHALLENGE)
    event["padding"] = "x" * service.UNSIGNED_VERIFY_MAX_BYTES

    assert send(client, event, signature=None).status_code == HTTPStatus.UNAUTHORIZED
    assert send(client, event).json() == {"challenge": VECTOR_ANSWER}


def test_signed_verify_answers_any_challenge(client):
    challenge = '{"eventType":"VEHICLE_STATE"}'

    response = send(client, verify_event(challenge))

    assert response.json() == {"challenge": crypto.challenge_hmac(KEY, challenge)}


@pytest.mark.parametrize("data", [{}, {"challenge": ""}, {"challenge": 12}])
def test_verify_without_a_challenge_is_invalid(client, data):
    event = verify_event("x")
    event["data"] = data

    response = send(client, event)

    assert response.status_code == HTTPStatus.BAD_REQUEST


# --- signature --------------------------------------------------------------------------------------


def test_valid_signature_is_accepted_and_stored(client, vehicle):
    event = state_event()

    response = send(client, event)

    assert response.status_code == HTTPStatus.OK
    assert response.json() == {"status": "accepted"}
    stored = WebhookEvent.objects.get()
    assert (stored.event_id, stored.event_type) == (event["eventId"], "VEHICLE_STATE")
    assert stored.delivery_id == event["meta"]["deliveryId"]
    assert stored.payload == event


def test_one_flipped_byte_is_refused_and_nothing_stored(client, vehicle):
    body = serialize(state_event(soc=80))
    flipped = body.replace(b'"value":80', b'"value":90', 1)
    assert flipped != body

    response = post(client, flipped, signature=sign(body))

    assert response.status_code == HTTPStatus.UNAUTHORIZED
    assert response.json() == UNAUTHORIZED
    assert WebhookEvent.objects.count() == 0
    assert Reading.objects.count() == 0


@pytest.mark.parametrize("header", [None, "", "   "])
def test_missing_or_empty_signature_is_refused(client, vehicle, header):
    response = post(client, serialize(state_event()), signature=header)

    assert response.status_code == HTTPStatus.UNAUTHORIZED
    assert WebhookEvent.objects.count() == 0


def test_reserialized_json_is_refused(client, vehicle):
    event = state_event()
    signature = sign(serialize(event))
    pretty = json.dumps(event, indent=2).encode()

    response = post(client, pretty, signature=signature)

    assert response.status_code == HTTPStatus.UNAUTHORIZED
    assert WebhookEvent.objects.count() == 0


def test_previous_token_is_accepted_and_a_third_is_not(client, vehicle, settings):
    settings.SMARTCAR_MANAGEMENT_TOKEN_PREVIOUS = "old-management-token"
    old = serialize(state_event())
    third = serialize(state_event())

    assert post(client, old, signature=sign(old, "old-management-token")).status_code == 200
    assert post(client, third, signature=sign(third, "third-token")).status_code == 401
    assert WebhookEvent.objects.count() == 1


def test_previous_token_does_not_answer_verify(client, settings):
    settings.SMARTCAR_MANAGEMENT_TOKEN_PREVIOUS = "old-management-token"
    body = serialize(verify_event(VECTOR_CHALLENGE))

    response = post(client, body, signature=sign(body, "old-management-token"))

    # The challenge is always answered with the current token, the one Smartcar now holds.
    assert response.json() == {"challenge": VECTOR_ANSWER}


def test_bad_signature_body_is_never_parsed(client, monkeypatch):
    def no_parsing(body):
        raise AssertionError("parsed before the signature was checked")

    monkeypatch.setattr(service, "_parse", no_parsing)

    response = post(client, serialize(state_event()), signature=sign(b"something else"))

    assert response.status_code == HTTPStatus.UNAUTHORIZED


def test_signature_is_compared_with_compare_digest(client, vehicle, monkeypatch):
    calls = []
    real = crypto.hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(crypto.hmac, "compare_digest", spy)

    assert send(client, state_event()).status_code == HTTPStatus.OK
    assert calls


# --- malformed, limits, methods, configuration ----------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b'{"eventType": "VEHICLE_STATE", ',
        b"[1, 2]",
        b'"a string"',
        b'{"eventId": "e", "eventType": "VEHICLE_STATE", "x": NaN}',
        b'{"eventId": "e", "eventType": "VEHICLE_STATE", "x": "\xff"}',
        b"[" * 50_000 + b"]" * 50_000,
        b'{"eventType": "VEHICLE_STATE", "vehicleId": "vid-1"}',
        b'{"something": "else"}',
    ],
    ids=["truncated", "array", "string", "nan", "not-utf8", "deep", "no-event-id", "no-type"],
)
def test_signed_but_malformed_is_400_and_nothing_stored(client, body):
    response = post(client, body)

    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["error"] == "invalid_payload"
    assert WebhookEvent.objects.count() == 0


@pytest.mark.parametrize(
    "body",
    [
        b'{"eventId": "e\\u0000", "eventType": "VEHICLE_STATE", "data": {}}',
        b'{"eventId": "e", "eventType": "VEHICLE_STATE", "data": {"a": [1, {"b": "\\u0000"}]}}',
        b'{"eventId": "e", "eventType": "VEHICLE_STATE", "data": {"k\\u0000": 1}}',
    ],
    ids=["event-id", "nested-value", "key"],
)
def test_a_signed_body_holding_nul_is_400_on_every_database(client, body):
    # PostgreSQL cannot store NUL in text or jsonb: without this check, a 503 retried for ever.
    response = post(client, body)

    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["error"] == "invalid_payload"
    assert WebhookEvent.objects.count() == 0


def test_an_escaped_backslash_before_u0000_is_not_nul(client):
    event = state_event()
    event["meta"] = {"note": "\\u0000"}

    assert send(client, event).status_code == HTTPStatus.OK
    assert WebhookEvent.objects.count() == 1


def padded(size: int) -> bytes:
    event = state_event("nobody")
    event["padding"] = ""
    filler = size - len(serialize(event))
    event["padding"] = "x" * filler
    body = serialize(event)
    assert len(body) == size
    return body


def test_body_of_exactly_256_kib_is_accepted(client):
    response = post(client, padded(256 * 1024))

    assert response.status_code == HTTPStatus.OK


def test_body_over_256_kib_is_413(client):
    response = post(client, padded(256 * 1024 + 1))

    assert response.status_code == HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    assert response.json() == {
        "error": "payload_too_large",
        "message": "The body is larger than 256 KiB.",
    }
    assert WebhookEvent.objects.count() == 0


def test_body_over_djangos_upload_limit_is_413_not_a_django_error(client):
    response = post(client, b"x" * (3 * 1024 * 1024))

    assert response.status_code == HTTPStatus.REQUEST_ENTITY_TOO_LARGE


def test_actual_length_is_bounded_without_content_length():
    """Under ASGI a body can come without Content-Length: it is still read only up to the limit."""
    body = padded(256 * 1024 + 10_000)
    stream = io.BytesIO(body)
    scope = {
        "type": "http",
        "method": "POST",
        "path": URL,
        "query_string": b"",
        "headers": [
            (b"content-type", b"application/json"),
            (b"sc-signature", sign(body).encode()),
        ],
    }
    request = ASGIRequest(scope, stream)
    assert "CONTENT_LENGTH" not in request.META

    response = SmartcarWebhookApi.as_view()(request)

    assert response.status_code == HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    assert stream.tell() == 256 * 1024 + 1  # never more than one byte past the limit
    assert WebhookEvent.objects.count() == 0


def test_declared_length_over_the_limit_is_refused_unread():
    body = padded(256 * 1024 + 1)
    stream = io.BytesIO(body)
    scope = {
        "type": "http",
        "method": "POST",
        "path": URL,
        "query_string": b"",
        "headers": [(b"content-length", str(len(body)).encode()), (b"sc-signature", b"x")],
    }

    response = SmartcarWebhookApi.as_view()(ASGIRequest(scope, stream))

    assert response.status_code == HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    assert stream.tell() == 0


def test_service_refuses_an_oversized_body_too():
    body = padded(256 * 1024 + 1)

    with pytest.raises(service.WebhookTooLargeError):
        service.webhook_receive(body=body, signature=sign(body))


@pytest.mark.parametrize("method", ["get", "put", "patch", "delete", "options", "head"])
def test_other_methods_are_405(client, method):
    response = getattr(client, method)(URL)

    assert response.status_code == HTTPStatus.METHOD_NOT_ALLOWED
    assert response["Allow"] == "POST"
    if method != "head":
        assert response.json() == {
            "error": "method_not_allowed",
            "message": "Only POST is allowed on the webhook endpoint.",
        }


def test_no_management_token_is_503(client, settings):
    settings.SMARTCAR_MANAGEMENT_TOKEN = ""
    body = serialize(verify_event(VECTOR_CHALLENGE))

    for signature in (None, sign(body, "")):
        response = post(client, body, signature=signature)

        assert response.status_code == HTTPStatus.SERVICE_UNAVAILABLE
        assert response.json()["error"] == "webhook_not_configured"


def test_csrf_is_not_required():
    client = Client(enforce_csrf_checks=True)

    assert send(client, verify_event(VECTOR_CHALLENGE)).status_code == HTTPStatus.OK


def test_a_failure_while_storing_is_503_so_smartcar_retries(client, vehicle, monkeypatch):
    def broken(**kwargs):
        raise OperationalError("database is locked")

    monkeypatch.setattr(WebhookEvent.objects, "create", broken)

    response = send(client, state_event())

    assert response.status_code == HTTPStatus.SERVICE_UNAVAILABLE
    assert response.json()["error"] == "storage_unavailable"
    assert "locked" not in response.content.decode()


def test_an_integrity_error_that_is_not_a_duplicate_is_503(client, vehicle, monkeypatch):
    def broken(**kwargs):
        raise IntegrityError("NOT NULL constraint failed")

    monkeypatch.setattr(WebhookEvent.objects, "create", broken)

    response = send(client, state_event())

    assert response.status_code == HTTPStatus.SERVICE_UNAVAILABLE
    assert response.json()["error"] == "storage_unavailable"


# --- idempotency and the hot path -------------------------------------------------------------------


def test_redeliveries_store_one_event_and_one_reading(client, vehicle):
    event = state_event()
    answers = []
    for attempt in range(5):
        event["meta"]["deliveryId"] = f"delivery-{attempt}"
        answers.append(send(client, event).json()["status"])

    assert answers == ["accepted"] + ["duplicate"] * 4
    stored = WebhookEvent.objects.get()
    assert stored.delivery_id == "delivery-0"
    assert stored.attempts == 1
    assert Reading.objects.count() == 1


def test_legacy_event_without_an_id_is_deduplicated_by_its_body(client):
    body = {
        "version": "2.0",
        "webhookId": "w",
        "eventName": "scheduled",
        "mode": "live",
        "payload": {"vehicles": [{"vehicleId": "nobody", "requestId": "r", "data": []}]},
    }

    assert send(client, body).json() == {"status": "accepted"}
    assert send(client, body).json() == {"status": "duplicate"}
    assert WebhookEvent.objects.get().event_id.startswith("sha256:")


def test_a_long_event_id_is_kept_as_its_hash(client):
    event = error_event("nobody")
    event["eventId"] = "e" * 300

    assert send(client, event).status_code == HTTPStatus.OK
    assert send(client, event).json() == {"status": "duplicate"}
    assert WebhookEvent.objects.get().event_id.startswith("sha256:")


def test_a_state_delivery_never_decrypts_the_accounts_tokens(client, vehicle, monkeypatch):
    def refuse(blob):
        raise AssertionError("a webhook delivery decrypted a token")

    monkeypatch.setattr("vehicles.fields.decrypt_text", refuse)
    monkeypatch.setattr("vehicles.crypto.decrypt_text", refuse)

    assert send(client, state_event()).status_code == HTTPStatus.OK
    assert WebhookEvent.objects.get().status == "processed"


# Transactional, so each delivery runs in autocommit as in production (no test savepoints).
@pytest.mark.django_db(transaction=True)
def test_two_hundred_deliveries_stay_on_a_small_query_budget(
    client, vehicle, django_assert_max_num_queries
):
    send(client, state_event(oem_ms=1_740_000_000_000))  # the vehicle's state row exists
    for n in range(200):
        event = state_event(soc=n % 100, oem_ms=1_740_000_000_000 + (n + 1) * 60_000)
        # Store the event, read the vehicle with its state, store the reading, move the
        # pointer, mark the event processed (and the transaction's statements).
        with django_assert_max_num_queries(7):
            response = send(client, event)
        assert response.status_code == HTTPStatus.OK
    assert WebhookEvent.objects.filter(status="processed").count() == 201
    assert Reading.objects.count() == 201


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_five_concurrent_copies_store_one_event(user):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: SQLite serialises writers, so there is no real race")
    link(user)
    body = serialize(state_event())
    barrier = threading.Barrier(5)

    def deliver() -> tuple[int, str]:
        try:
            barrier.wait(timeout=10)
            response = post(Client(), body)
            return response.status_code, response.json()["status"]
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=5) as pool:
        futures = [pool.submit(deliver) for _ in range(5)]
        results = [future.result(timeout=30) for future in futures]

    assert sorted(results) == [(200, "accepted")] + [(200, "duplicate")] * 4
    assert WebhookEvent.objects.count() == 1
    assert Reading.objects.count() == 1
