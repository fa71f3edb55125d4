"""Smartcar webhooks: check a delivery, store it once, then act on it (API-FACTS §7, SECURITY C).

Owns: the signature check on the raw body, the VERIFY answer, parsing of the v4 envelope and the
legacy `version: "2.0"` one, the idempotent store (`WebhookEvent.event_id` is unique), and the
processing of a stored event (readings, vehicle error state). Must never: parse or store a body
whose signature did not match (the one exception is the unsigned VERIFY below), let a processing
failure become a 5xx (the event is kept and marked failed instead), put a key, a signature or
payload text in a log line or an error.

Receiving (`webhook_receive`), in this order:
1. No `SMARTCAR_MANAGEMENT_TOKEN` → 503 (`webhook_not_configured`); nothing can be checked.
2. `SC-Signature` must equal the hex HMAC-SHA256 of the raw bytes under the current or the
   previous management token (rotation), compared in constant time
   (`smartcar_client.webhooks.signature_matches`). Else 401, and the body is not parsed.
3. A valid signature on anything but a JSON object → 400 (`invalid_payload`); nothing stored.
4. VERIFY → `{"challenge": hex HMAC-SHA256(challenge, key=current token)}`; nothing stored.
5. Anything else is stored in one INSERT (inside a caller's transaction, in a savepoint). A
   duplicate `eventId` (a retry, or copies arriving at once) hits the unique constraint and is
   answered 2xx without a second row. A database failure while storing → 503
   (`storage_unavailable`) so that Smartcar retries.

VERIFY without a signature. Smartcar may or may not sign VERIFY (API-FACTS §7a: UNCONFIRMED), so
an unsigned VERIFY is answered, but only for a short token-like challenge (`[A-Za-z0-9_-]{1,128}`)
in a small body (≤ 4 KiB) with NO `SC-Signature` header at all. Why the limit: the answer is
HMAC(key, challenge), and a signature is HMAC(key, body) with the same key. Answering any
challenge would be a signing oracle: send a forged event as the challenge, get back its valid
signature. A token-like challenge holds no `{`, so it can never be a JSON object body, and we only
act on JSON objects. A signed VERIFY (a valid `SC-Signature`) is answered for any challenge
string; a VERIFY whose signature is present but wrong is refused (401) like any other delivery.
Legacy deliveries carry no `eventId` except `eventBased` ones; for them the key is
"sha256:<hex of the raw body>", which stays the same for a byte-identical retry.

Processing (`webhook_event_process`, run once the store commits, by default in a background
thread after the answer (`telemetry.services.webhook_dispatch`), by followers in the worker mode
(`telemetry.services.webhook_worker`), and by `manage.py process_webhooks`) never raises. It is
idempotent, so no transaction spans it: a retried reading is deduplicated by the reading store
(same vehicle time), and the vehicle error updates are compare-and-set. Outcomes: `processed`; `unmatched` (no live vehicle of ours has that
Smartcar id; 2xx all the same, a 4xx would only make Smartcar retry); `ignored` (an event type we
do not act on); `failed` with a short mapped reason, kept for `process_webhooks --retry-failed`.

VEHICLE_ERROR: an error whose resolution is REAUTHENTICATE, or a CONNECTED_SERVICES_ACCOUNT
AUTHENTICATION_FAILED/PERMISSION one (the owner's manufacturer login), marks the account needs_reauth
(`vehicles.services.account_mark_needs_reauth`, reason "webhook:TYPE:CODE"). Any other error is
recorded on the vehicle's TelemetryState (`last_outcome`, `last_error` = "webhook:TYPE:CODE").
RESOLVED clears what that same error set, and only that: TelemetryState only if `last_error`
still holds it; the account goes back to active only if the webhook error is still its reason
(a refresh that failed with invalid_grant is not fixed by the owner fixing the OEM side) and its
tokens are readable and the refresh token is not past its expiry.

Events are kept at least 7 days (Smartcar retries for about 3 minutes; its docs ask receivers to
remember event ids for 7 days): `process_webhooks --prune-days N` refuses N < 7.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http import HTTPStatus
from typing import Any, cast

from django.conf import settings
from django.db import DatabaseError, IntegrityError
from django.db.models import Case, F, Q, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from core.compiled_select import CompiledSelect, CompiledUpdate, Param, RowsUpdate, column
from core.errors import ApplicationError
from core.leases import lease_free
from core.transactions import savepoint_if_in_transaction
from smartcar_client.bodies import NulInBodyError, refuse_nul
from smartcar_client.errors import SmartcarError
from smartcar_client.types import BatchResponse
from smartcar_client.webhooks import challenge_hmac, signature_matches
from telemetry.mapping import (
    CHARGING,
    FULLY_CHARGED,
    NOT_CHARGING,
    ReadingData,
    TelemetryInputError,
    error_note,
    parse_timestamp,
    reading_from_batch,
    reading_from_signals,
)
from telemetry.models import Reading, TelemetryState, WebhookEvent
from telemetry.services.reading_batches import NewReading, telemetry_store_readings
from telemetry.services.readings import telemetry_store_reading
from vehicles.models import Vehicle
from vehicles.services import account_mark_needs_reauth, account_reactivate

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 256 * 1024
UNSIGNED_VERIFY_MAX_BYTES = 4 * 1024
UNSIGNED_CHALLENGE = re.compile(r"[A-Za-z0-9_-]{1,128}")
MIN_RETENTION_DAYS = 7
Status = WebhookEvent.Status
FINAL_STATUSES = frozenset({Status.PROCESSED, Status.UNMATCHED, Status.IGNORED})

V4_VEHICLE_STATE = "VEHICLE_STATE"
V4_VEHICLE_ERROR = "VEHICLE_ERROR"
LEGACY_BATCH_EVENTS = frozenset({"scheduled", "dynamic"})
LEGACY_EVENT_BASED = "eventBased"
_REAUTH_CODES = frozenset({"AUTHENTICATION_FAILED", "PERMISSION"})
_ASLEEP_CODES = frozenset({"ASLEEP", "UNREACHABLE"})
# eventBased charging events (API-FACTS §7c): our charging state, and plugged in or unknown.
_CHARGING_EVENTS: dict[str, tuple[str, bool | None]] = {
    "CHARGING_STARTED": (CHARGING, True),
    "CHARGING_STOPPED": (NOT_CHARGING, None),
    "CHARGING_COMPLETED": (FULLY_CHARGED, True),
}


class WebhookNotConfiguredError(ApplicationError):
    code = "webhook_not_configured"
    message = "Webhooks are not configured on this server (SMARTCAR_MANAGEMENT_TOKEN is unset)."
    http_status = HTTPStatus.SERVICE_UNAVAILABLE


class WebhookSignatureError(ApplicationError):
    code = "invalid_signature"
    message = "The SC-Signature header is missing or does not match the body."
    http_status = HTTPStatus.UNAUTHORIZED


class WebhookPayloadError(ApplicationError):
    code = "invalid_payload"
    message = "The body is not a Smartcar webhook event (a JSON object)."
    http_status = HTTPStatus.BAD_REQUEST


class WebhookTooLargeError(ApplicationError):
    code = "payload_too_large"
    message = f"The body is larger than {MAX_BODY_BYTES // 1024} KiB."
    http_status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE


class WebhookStorageError(ApplicationError):
    code = "storage_unavailable"
    message = "The event could not be stored. Please retry."
    http_status = HTTPStatus.SERVICE_UNAVAILABLE


@dataclass(frozen=True)
class WebhookReceipt:
    """What the endpoint answers: a VERIFY challenge, or the stored event (new or not)."""

    challenge: str | None = None
    event: WebhookEvent | None = None
    created: bool = False


@dataclass(frozen=True)
class _Envelope:
    event_type: str
    challenge: str | None = None
    event_id: str = ""
    delivery_id: str = ""
    vehicle_id: str = ""


# --- receiving ----------------------------------------------------------------------------------


def webhook_receive(*, body: bytes, signature: str) -> WebhookReceipt:
    """Check, parse and store one delivery (`body` = the raw bytes, at most MAX_BODY_BYTES).

    Raises WebhookNotConfiguredError (503), WebhookSignatureError (401), WebhookPayloadError (400),
    WebhookStorageError (503). Does not process the stored event: call `webhook_event_process`.
    """
    current = settings.SMARTCAR_MANAGEMENT_TOKEN
    if not current:
        raise WebhookNotConfiguredError()
    if len(body) > MAX_BODY_BYTES:
        raise WebhookTooLargeError()
    keys = (current, settings.SMARTCAR_MANAGEMENT_TOKEN_PREVIOUS)
    if not signature_matches(keys, body, signature):
        challenge = _unsigned_verify_challenge(body) if not signature.strip() else None
        if challenge is None:
            raise WebhookSignatureError()
        return WebhookReceipt(challenge=challenge_hmac(current, challenge))

    payload = _parse(body)
    envelope = _envelope(payload, body)
    if envelope.challenge is not None:
        return WebhookReceipt(challenge=challenge_hmac(current, envelope.challenge))
    event, created = _store(envelope, payload)
    return WebhookReceipt(event=event, created=created)


def _unsigned_verify_challenge(body: bytes) -> str | None:
    """The challenge of an unsigned VERIFY we may answer (see the module docstring), else None.

    Only small bodies that mention verify are parsed at all; everything else unsigned is refused
    before any parsing.
    """
    if len(body) > UNSIGNED_VERIFY_MAX_BYTES or b"verify" not in body.lower():
        return None
    try:
        payload = _parse(body)
        envelope = _envelope(payload, body)
    except WebhookPayloadError:
        return None
    challenge = envelope.challenge
    if challenge is None or not UNSIGNED_CHALLENGE.fullmatch(challenge):
        return None
    return challenge


def _refuse_constant(name: str) -> Any:
    # NaN and Infinity are not JSON, and PostgreSQL's jsonb refuses them.
    raise ValueError(name)


def _parse(body: bytes) -> dict[str, Any]:
    try:
        text = body.decode("utf-8")
        data = json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise WebhookPayloadError() from exc
    if not isinstance(data, dict):
        raise WebhookPayloadError()
    try:
        refuse_nul(text, data)
    except NulInBodyError:
        # PostgreSQL stores no NUL in text or jsonb: refused here rather than a 503 that
        # Smartcar would retry for ever. No real event carries one.
        raise WebhookPayloadError("The body contains a NUL character.") from None
    return data


def _str(value: Any, limit: int = 100) -> str:
    return value[:limit] if isinstance(value, str) else ""


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _event_key(value: Any, body: bytes) -> str:
    """Smartcar's event id as our unique key; a body hash when there is none; hashed if long."""
    if isinstance(value, str) and value:
        if len(value) <= 100:
            return value
        return "sha256:" + hashlib.sha256(value.encode()).hexdigest()
    return "sha256:" + hashlib.sha256(body).hexdigest()


def _envelope(payload: Mapping[str, Any], body: bytes) -> _Envelope:
    """The fields we index on, from the v4 envelope or the legacy 2.0 one."""
    event_type = payload.get("eventType")
    if isinstance(event_type, str) and event_type:
        data = _dict(payload.get("data"))
        if event_type == "VERIFY":
            return _Envelope(event_type, challenge=_challenge(data))
        event_id = payload.get("eventId")
        if not isinstance(event_id, str) or not event_id:
            raise WebhookPayloadError("The event has no eventId.")
        vehicle_id = _str(payload.get("vehicleId")) or _str(_dict(data.get("vehicle")).get("id"))
        return _Envelope(
            event_type[:40],
            event_id=_event_key(event_id, body),
            delivery_id=_str(_dict(payload.get("meta")).get("deliveryId")),
            vehicle_id=vehicle_id,
        )
    event_name = payload.get("eventName")
    if isinstance(event_name, str) and event_name:
        inner = _dict(payload.get("payload"))
        if event_name.lower() == "verify":
            return _Envelope("verify", challenge=_challenge(inner))
        vehicles = _list(inner.get("vehicles"))
        vehicle_id = _str(inner.get("vehicleId")) or (
            _str(_dict(vehicles[0]).get("vehicleId")) if vehicles else ""
        )
        return _Envelope(
            event_name[:40], event_id=_event_key(inner.get("eventId"), body), vehicle_id=vehicle_id
        )
    raise WebhookPayloadError()


def _challenge(data: Mapping[str, Any]) -> str:
    challenge = data.get("challenge")
    if not isinstance(challenge, str) or not challenge:
        raise WebhookPayloadError("The VERIFY event has no challenge.")
    return challenge


def _store(envelope: _Envelope, payload: dict[str, Any]) -> tuple[WebhookEvent, bool]:
    try:
        # In autocommit (the endpoint's case) a bare INSERT: the path Smartcar waits for.
        with savepoint_if_in_transaction():
            event = WebhookEvent.objects.create(
                event_id=envelope.event_id,
                delivery_id=envelope.delivery_id,
                event_type=envelope.event_type,
                smartcar_vehicle_id=envelope.vehicle_id,
                payload=payload,
                received_at=timezone.now(),
            )
    except IntegrityError:
        # Another delivery of the same event got there first (it has committed by now).
        existing = WebhookEvent.objects.filter(event_id=envelope.event_id).first()
        if existing is None:
            logger.exception("webhook store failed: integrity error without a duplicate")
            raise WebhookStorageError() from None
        return existing, False
    except DatabaseError:
        logger.exception("webhook store failed type=%s", envelope.event_type)
        raise WebhookStorageError() from None
    return event, True


# --- processing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Outcome:
    status: str
    vehicle: Vehicle | None = None
    note: str = ""


class WebhookEventError(Exception):
    """A stored event that cannot be acted on; `code` is short and safe to keep and log."""

    def __init__(self, code: str) -> None:
        self.code = code
        super().__init__(code)


def webhook_event_process(*, event: WebhookEvent, force: bool = False) -> str:
    """Act on a stored event and record the result on it; returns the new status.

    An event already processed/unmatched/ignored is left alone unless `force`. Never raises: a
    failure marks the event `failed` with a short reason (`error`) for a later retry.
    """
    if event.status in FINAL_STATUSES and not force:
        return event.status
    result = _result_of(event)
    _record(event, result)
    return result.status


def webhook_events_process_batch(events: Sequence[WebhookEvent]) -> list[str]:
    """Process several stored events (a follower's claimed batch) as `webhook_event_process`
    does each, in a few statements whatever the batch's size: the vehicles in one query, the
    readings in one INSERT and their latest pointers in one UPDATE
    (`reading_batches.telemetry_store_readings`), the outcomes in one UPDATE (each per 64
    events). Returns the new statuses, in order. Never raises; if writing the outcomes fails
    they stay as they were (`received`: processed again later, idempotently)."""
    todo = [event for event in events if event.status not in FINAL_STATUSES]
    ids = {event.smartcar_vehicle_id for event in todo if event.smartcar_vehicle_id}
    if len(ids) < 2:
        ids = set()  # one vehicle: its compiled lookup is cheaper than building the IN query
    try:
        known = _live_vehicles(ids)
    except DatabaseError:
        logger.exception("webhook batch: reading %d vehicles failed", len(ids))
        known = {}
        ids = set()  # look each one up on its own then
    batch = _Batch(asked=ids, vehicles=known)
    token = _BATCH.set(batch)
    try:
        results = [(event, _result_of(event)) for event in todo]
    finally:
        _BATCH.reset(token)
    _record_many(_with_stored_readings(results, batch.readings))
    return [event.status for event in events]


def _with_stored_readings(
    results: list[tuple[WebhookEvent, _Result]], readings: list[tuple[WebhookEvent, NewReading]]
) -> list[tuple[WebhookEvent, _Result]]:
    """Store the readings a batch's events handed over, together; an event whose reading could
    not be stored fails, as it would have on its own."""
    if not readings:
        return results
    new_readings = [new for _, new in readings]
    try:
        errors = telemetry_store_readings(new_readings, source=Reading.Source.WEBHOOK)
    except Exception as exc:  # noqa: BLE001 - a bug there fails these events, not the follower
        errors = [exc] * len(new_readings)
    failed: dict[Any, Exception] = {}
    for (event, _), error in zip(readings, errors, strict=True):
        if error is not None:
            failed.setdefault(event.pk, error)
    return [
        (event, _failed(event, failed[event.pk]))
        if event.pk in failed and result.status != Status.FAILED
        else (event, result)
        for event, result in results
    ]


@dataclass(frozen=True)
class _Result:
    status: str
    note: str
    processed_at: datetime | None
    vehicle: Vehicle | None = None


def _result_of(event: WebhookEvent) -> _Result:
    """Act on the event; what to record on it. Never raises."""
    now = timezone.now()
    try:
        outcome = _handle(event)
    except Exception as exc:  # noqa: BLE001 - never raises: the event fails, logged by _failed
        return _failed(event, exc)
    return _Result(outcome.status, outcome.note, now, outcome.vehicle)


def _failed(event: WebhookEvent, exc: Exception) -> _Result:
    reason = _failure_reason(exc)
    if isinstance(exc, WebhookEventError | TelemetryInputError | SmartcarError):
        logger.warning("webhook event %s failed: %s", event.pk, reason)
    else:
        logger.error("webhook event %s failed: %s", event.pk, reason, exc_info=exc)
    return _Result(Status.FAILED, reason, None)


def _failure_reason(exc: Exception) -> str:
    if isinstance(exc, WebhookEventError):
        return exc.code
    if isinstance(exc, TelemetryInputError):
        return "invalid_signals"
    if isinstance(exc, SmartcarError):
        return f"invalid_batch:{exc.code}"[:200] if exc.code else "invalid_batch"
    return f"internal_error:{type(exc).__name__}"[:200]


def _record(event: WebhookEvent, result: _Result) -> None:
    fields: dict[str, Any] = {
        "status": result.status,
        "error": result.note[:200],
        "processed_at": result.processed_at,
        "attempts": F("attempts") + 1,
        "lease_until": None,  # a follower's claim ends with the outcome
    }
    if result.vehicle is not None:
        fields["vehicle"] = result.vehicle
    try:
        WebhookEvent.objects.filter(pk=event.pk).update(**fields)
    except DatabaseError:
        # The event stays as it was (received or failed): --retry-failed picks it up again.
        logger.exception("webhook event %s: could not record status %s", event.pk, result.status)
        return
    _remember(event, result)


def _record_many(results: Sequence[tuple[WebhookEvent, _Result]]) -> None:
    """`_record` for many events in one statement per 64 of them. Not `bulk_update`: it wraps
    its UPDATE in a transaction, and on SQLite a low-priority follower holding the write lock
    across three statements held up the webhook answers' INSERTs."""
    for chunk in _OUTCOMES.chunks(results):
        try:
            _OUTCOMES.execute(chunk)
        except DatabaseError:
            logger.exception("webhook batch: could not record %d outcomes", len(chunk))
            continue
        for event, result in chunk:
            _remember(event, result)


def _outcome_values(i: int, outcome: tuple[WebhookEvent, _Result]) -> dict[str, Any]:
    event, result = outcome
    return {
        f"pk{i}": event.pk,
        f"status{i}": result.status,
        f"error{i}": result.note[:200],
        f"processed_at{i}": result.processed_at,
        f"vehicle{i}": None if result.vehicle is None else result.vehicle.pk,
    }


def _outcomes_update(rows: int) -> CompiledUpdate:
    """SET each column to a CASE keyed by id, for `rows` events named by Params "pk0", …"""
    pks = [Param(f"pk{i}", column(WebhookEvent, "id")) for i in range(rows)]

    def by_id(name: str, value: Callable[[Param], Any] = lambda param: param) -> Case:
        field = column(WebhookEvent, name)
        return Case(
            *[
                When(pk=pk, then=value(Param(f"{name}{i}", field, nullable=True)))
                for i, pk in enumerate(pks)
            ],
            output_field=field,
        )

    return CompiledUpdate(
        # The stubs type an __in lookup's values as plain ids, not expressions.
        lambda: WebhookEvent.objects.filter(pk__in=cast("list[Any]", pks)),
        status=by_id("status"),
        error=by_id("error"),
        processed_at=by_id("processed_at"),
        # An event no vehicle was matched to keeps the vehicle it has.
        vehicle=by_id("vehicle", lambda param: Coalesce(param, F("vehicle"))),
        attempts=F("attempts") + 1,
        lease_until=None,  # a follower's claim ends with the outcome
    )


# Built per batch, its CASE expressions cost the follower 60 ms of CPU per 50 events.
_OUTCOMES: RowsUpdate[tuple[WebhookEvent, _Result]] = RowsUpdate(_outcomes_update, _outcome_values)


def _remember(event: WebhookEvent, result: _Result) -> None:
    """Keep the in-memory event in step with what was written."""
    event.status, event.error = result.status, result.note[:200]
    event.processed_at = result.processed_at
    event.attempts += 1
    event.lease_until = None
    if result.vehicle is not None:
        event.vehicle = result.vehicle


def _handle(event: WebhookEvent) -> _Outcome:
    payload = _dict(event.payload)
    if event.event_type == V4_VEHICLE_STATE and "eventType" in payload:
        return _vehicle_state(event, payload)
    if event.event_type == V4_VEHICLE_ERROR and "eventType" in payload:
        return _vehicle_error(event, payload)
    if "eventName" in payload:
        if event.event_type in LEGACY_BATCH_EVENTS:
            return _legacy_batch(event, payload)
        if event.event_type == LEGACY_EVENT_BASED:
            return _legacy_charging(event, payload)
    return _Outcome(Status.IGNORED)


@dataclass
class _Batch:
    """A follower's batch being handled (`webhook_events_process_batch`): the Smartcar ids whose
    vehicles were read in one query, the live vehicles found among them, and the readings its
    events hand over, stored together once every event is handled."""

    asked: set[str]
    vehicles: dict[str, Vehicle]
    readings: list[tuple[WebhookEvent, NewReading]] = field(default_factory=list)


# A context variable rather than a parameter through every event handler; unset outside a batch.
_BATCH: ContextVar[_Batch | None] = ContextVar("webhook_batch", default=None)


def _live_vehicle(smartcar_vehicle_id: str) -> Vehicle | None:
    if not smartcar_vehicle_id:
        return None
    batch = _BATCH.get()
    if batch is not None and smartcar_vehicle_id in batch.asked:
        return batch.vehicles.get(smartcar_vehicle_id)
    found = _LIVE_VEHICLE.fetch(smartcar_vehicle_id=smartcar_vehicle_id)
    return found[0] if found else None


def _live_vehicles(smartcar_vehicle_ids: set[str]) -> dict[str, Vehicle]:
    if not smartcar_vehicle_ids:
        return {}
    rows = _live_vehicles_query().filter(smartcar_vehicle_id__in=sorted(smartcar_vehicle_ids))
    return {vehicle.smartcar_vehicle_id: vehicle for vehicle in rows}


def _live_vehicles_query() -> Any:
    # The same rows and joins as _LIVE_VEHICLE, for many ids at once.
    return (
        Vehicle.objects.select_related("account", "telemetry_state__latest_reading")
        .exclude(status=Vehicle.Status.DISCONNECTED)
        .defer("account__access_token", "account__refresh_token")
    )


# Every delivery reads its vehicle: compiled once per thread (core.compiled_select), with the
# telemetry state the stored reading updates joined in, and without the tokens (decrypted
# only by the rare path that uses them, in one query: SmartcarAccount.refresh_from_db). At
# most one live row per Smartcar vehicle id (a constraint), so no ORDER BY.
_LIVE_VEHICLE: CompiledSelect[Vehicle] = CompiledSelect(
    lambda: _live_vehicles_query().filter(
        smartcar_vehicle_id=Param("smartcar_vehicle_id", column(Vehicle, "smartcar_vehicle_id"))
    )[:1]
)


def _store_reading(event: WebhookEvent, vehicle: Vehicle, data: ReadingData) -> str:
    """Store the event's reading (in a batch: hand it to the batch); a note when nothing came
    through (not a failure: nothing to retry)."""
    if data.is_empty():
        return "no_values"
    batch = _BATCH.get()
    if batch is not None:
        batch.readings.append((event, NewReading(vehicle, data, event.received_at)))
        return ""
    telemetry_store_reading(
        vehicle=vehicle, data=data, source=Reading.Source.WEBHOOK, received_at=event.received_at
    )
    return ""


def trigger_codes(payload: Mapping[str, Any]) -> list[str]:
    """The trigger codes of a VEHICLE_STATE, from either documented shape (API-FACTS §7b):
    `data.triggers[].code`, or top-level `triggers[]` of `{type, signal: {code}}`."""
    codes: list[str] = []
    for trigger in _list(_dict(payload.get("data")).get("triggers")):
        code = _str(_dict(trigger).get("code"))
        if code:
            codes.append(code)
    for trigger in _list(payload.get("triggers")):
        trigger = _dict(trigger)
        code = _str(_dict(trigger.get("signal")).get("code")) or _str(trigger.get("type"))
        if code:
            codes.append(code)
    return codes


def _vehicle_state(event: WebhookEvent, payload: Mapping[str, Any]) -> _Outcome:
    vehicle = _live_vehicle(event.smartcar_vehicle_id)
    if vehicle is None:
        return _Outcome(Status.UNMATCHED)
    # Anything but a list of signals raises TelemetryInputError: the event is marked failed.
    signals: Any = _dict(payload.get("data")).get("signals")
    data = reading_from_signals(signals)
    logger.debug(
        "webhook VEHICLE_STATE vehicle=%s triggers=%s",
        vehicle.pk,
        ",".join(error_note(code) for code in trigger_codes(payload)) or "-",
    )
    return _Outcome(Status.PROCESSED, vehicle, _store_reading(event, vehicle, data))


def _vehicle_error(event: WebhookEvent, payload: Mapping[str, Any]) -> _Outcome:
    vehicle = _live_vehicle(event.smartcar_vehicle_id)
    if vehicle is None:
        return _Outcome(Status.UNMATCHED)
    errors = [_dict(item) for item in _list(_dict(payload.get("data")).get("errors"))]
    if not errors:
        raise WebhookEventError("vehicle_error:no_errors")
    for error in errors:
        state = error.get("state")
        if state not in ("ERROR", "RESOLVED"):
            continue
        note = "webhook:" + error_note(error.get("type"), error.get("code"))
        reauth = _needs_reauth(error)
        if state == "ERROR":
            _error_set(vehicle, note=note, reauth=reauth, code=error.get("code"))
        else:
            _error_resolved(vehicle, note=note, reauth=reauth)
    return _Outcome(Status.PROCESSED, vehicle)


def _needs_reauth(error: Mapping[str, Any]) -> bool:
    if _dict(error.get("resolution")).get("type") == "REAUTHENTICATE":
        return True
    # The owner's manufacturer login failed or was withdrawn: only they can fix it.
    return error.get("type") == "CONNECTED_SERVICES_ACCOUNT" and error.get("code") in _REAUTH_CODES


def _state_row(vehicle: Vehicle) -> None:
    TelemetryState.objects.get_or_create(vehicle=vehicle)


def _error_set(vehicle: Vehicle, *, note: str, reauth: bool, code: Any) -> None:
    now = timezone.now()
    if reauth:
        outcome = TelemetryState.Outcome.REAUTH
        if vehicle.account is not None:
            account_mark_needs_reauth(account=vehicle.account, reason=note)
    elif code in _ASLEEP_CODES:
        outcome = TelemetryState.Outcome.ASLEEP
    else:
        outcome = TelemetryState.Outcome.FAILED
    _state_row(vehicle)
    TelemetryState.objects.filter(vehicle=vehicle).update(
        last_outcome=outcome, last_error=note[:200], updated_at=now
    )


def _error_resolved(vehicle: Vehicle, *, note: str, reauth: bool) -> None:
    now = timezone.now()
    # Compare-and-set: only the error this event resolves is cleared, never a newer one.
    TelemetryState.objects.filter(vehicle=vehicle, last_error=note[:200]).update(
        last_outcome="", last_error="", updated_at=now
    )
    if reauth and vehicle.account is not None:
        account_reactivate(account=vehicle.account, reason=note, now=now)


def _legacy_batch(event: WebhookEvent, payload: Mapping[str, Any]) -> _Outcome:
    """`scheduled`/`dynamic`: each `payload.vehicles[]` item holds v2 batch items in `data`."""
    matched: Vehicle | None = None
    notes: list[str] = []
    for item in _list(_dict(payload.get("payload")).get("vehicles")):
        item = _dict(item)
        vehicle = _live_vehicle(_str(item.get("vehicleId")))
        if vehicle is None:
            continue
        batch = BatchResponse.from_json({"responses": item.get("data")})
        note = _store_reading(event, vehicle, reading_from_batch(batch))
        notes.append(note)
        matched = matched or vehicle
    if matched is None:
        return _Outcome(Status.UNMATCHED)
    return _Outcome(Status.PROCESSED, matched, "no_values" if all(notes) else "")


def _legacy_charging(event: WebhookEvent, payload: Mapping[str, Any]) -> _Outcome:
    """`eventBased` CHARGING_STARTED/STOPPED/COMPLETED: a reading with the charging state only."""
    inner = _dict(payload.get("payload"))
    mapped = _CHARGING_EVENTS.get(_str(inner.get("eventType")))
    if mapped is None:
        return _Outcome(Status.IGNORED)
    vehicle = _live_vehicle(event.smartcar_vehicle_id)
    if vehicle is None:
        return _Outcome(Status.UNMATCHED)
    charging_state, plugged_in = mapped
    data = ReadingData(
        recorded_at=parse_timestamp(inner.get("eventTime")),
        charging_state=charging_state,
        is_plugged_in=plugged_in,
    )
    return _Outcome(Status.PROCESSED, vehicle, _store_reading(event, vehicle, data))


# --- maintenance (manage.py process_webhooks) ---------------------------------------------------


def webhook_events_retry(*, stale_after: timedelta, limit: int) -> dict[str, int]:
    """Process failed events again, and `received` ones older than `stale_after` (the process
    died between storing and processing), except those a follower holds a live claim on
    (`process_webhooks --follow`). Returns a count per resulting status."""
    now = timezone.now()
    cutoff = now - stale_after
    pending = WebhookEvent.objects.filter(
        Q(status=Status.FAILED) | Q(status=Status.RECEIVED, received_at__lt=cutoff),
        lease_free(now),
    )
    counts: dict[str, int] = {}
    for event in pending.order_by("received_at", "pk")[:limit]:
        status = webhook_event_process(event=event)
        counts[status] = counts.get(status, 0) + 1
    return counts


def webhook_events_prune(*, older_than_days: int) -> int:
    """Delete events received more than `older_than_days` ago (at least MIN_RETENTION_DAYS)."""
    if older_than_days < MIN_RETENTION_DAYS:
        raise ValueError(f"events are kept at least {MIN_RETENTION_DAYS} days")
    cutoff = timezone.now() - timedelta(days=older_than_days)
    deleted, _ = WebhookEvent.objects.filter(received_at__lt=cutoff).delete()
    return deleted
