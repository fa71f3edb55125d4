"""On-demand polls from the API: `?refresh=true` and the first seed's stale-reading poll.

Owns the per-vehicle guard that keeps people (and scripts) from spending the vehicle's Smartcar
call budget: at most one on-demand poll per window, claimed by compare-and-set on
`TelemetryState.last_manual_refresh_at` (an UPDATE … WHERE, rowcount 1 = ours), so two requests
at the same instant, in any number of processes, poll once. The poll itself is
`telemetry_poll_vehicle` (tokens single-flight through `vehicles.tokens`).

Must never: call Smartcar for a disconnected vehicle or one that needs re-auth, or inside a
database transaction; hand Smartcar's error text to the client.
"""

import math
from datetime import timedelta
from http import HTTPStatus

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from core.errors import (
    ApplicationError,
    NotFoundError,
    ReconnectRequiredError,
    UpstreamError,
    UpstreamTimeoutError,
)
from smartcar_client.errors import TIMEOUT, SmartcarError
from telemetry.models import Reading, TelemetryState
from telemetry.selectors import vehicle_api_status, vehicle_latest_reading
from telemetry.services.readings import PollResult, telemetry_poll_vehicle
from vehicles.models import Vehicle
from vehicles.services import VehicleDisconnectedError


class RefreshRateLimitedError(ApplicationError):
    code = "rate_limited"
    message = "This vehicle was refreshed a moment ago. Try again later."
    http_status = HTTPStatus.TOO_MANY_REQUESTS


class NoTelemetryError(NotFoundError):
    code = "no_telemetry"
    message = "No telemetry has been received for this vehicle yet."


_OK_OUTCOMES = {TelemetryState.Outcome.OK, TelemetryState.Outcome.UNCHANGED}


def telemetry_refresh(*, vehicle: Vehicle) -> Reading:
    """Poll the vehicle now and return its newest reading.

    Raises VehicleDisconnectedError / ReconnectRequiredError (409) when it cannot be polled,
    RefreshRateLimitedError (429, Retry-After) within TELEMETRY_MANUAL_REFRESH_SECONDS of the
    last on-demand poll, UpstreamTimeoutError (504) when Smartcar did not answer in time,
    UpstreamError (502) when it failed otherwise, NoTelemetryError (404) when the poll succeeded
    but nothing was ever stored.
    """
    _check_pollable(vehicle)
    window = settings.TELEMETRY_MANUAL_REFRESH_SECONDS
    if not _claim(vehicle, window):
        raise RefreshRateLimitedError(headers={"Retry-After": str(_seconds_left(vehicle, window))})
    return _poll(vehicle, timeout_is_504=True)


def telemetry_latest_or_poll(*, vehicle: Vehicle) -> Reading:
    """The first seed's `latest`: the stored reading if we received it within
    TELEMETRY_LATEST_MAX_AGE seconds, else a live poll. Another on-demand poll within that age
    (this one's or `?refresh=true`'s) counts as fresh: we return what we have instead of calling
    Smartcar again. Raises like `telemetry_refresh`, but never 429, and a timeout is a 502 as
    the first seed documents ("Smartcar API error or network failure")."""
    max_age = settings.TELEMETRY_LATEST_MAX_AGE
    latest = vehicle_latest_reading(vehicle)
    if latest is not None and latest.received_at >= timezone.now() - timedelta(seconds=max_age):
        return latest
    _check_pollable(vehicle)
    if not _claim(vehicle, max_age):
        if latest is None:
            raise NoTelemetryError()
        return latest
    return _poll(vehicle, timeout_is_504=False)


def _check_pollable(vehicle: Vehicle) -> None:
    status = vehicle_api_status(vehicle)
    if status == Vehicle.Status.DISCONNECTED:
        raise VehicleDisconnectedError()
    if status == Vehicle.Status.NEEDS_REAUTH:
        raise ReconnectRequiredError()


def _claim(vehicle: Vehicle, window_seconds: int) -> bool:
    TelemetryState.objects.get_or_create(vehicle=vehicle)
    now = timezone.now()
    cutoff = now - timedelta(seconds=window_seconds)
    won = (
        TelemetryState.objects.filter(vehicle=vehicle)
        .filter(Q(last_manual_refresh_at__isnull=True) | Q(last_manual_refresh_at__lte=cutoff))
        .update(last_manual_refresh_at=now)
    )
    return won == 1


def _seconds_left(vehicle: Vehicle, window_seconds: int) -> int:
    last = (
        TelemetryState.objects.filter(vehicle=vehicle)
        .values_list("last_manual_refresh_at", flat=True)
        .first()
    )
    if last is None:
        return 1
    left = (last + timedelta(seconds=window_seconds) - timezone.now()).total_seconds()
    return max(1, math.ceil(left))


def _poll(vehicle: Vehicle, *, timeout_is_504: bool) -> Reading:
    result = telemetry_poll_vehicle(vehicle=vehicle, source=Reading.Source.REFRESH)
    if result.outcome in _OK_OUTCOMES:
        reading = result.reading or _stored_latest(vehicle)
        if reading is None:
            raise NoTelemetryError()
        return reading
    raise _poll_error(result, timeout_is_504=timeout_is_504)


def _stored_latest(vehicle: Vehicle) -> Reading | None:
    state = TelemetryState.objects.filter(vehicle=vehicle).select_related("latest_reading").first()
    return state.latest_reading if state is not None else None


def _poll_error(result: PollResult, *, timeout_is_504: bool) -> ApplicationError:
    if result.outcome == TelemetryState.Outcome.REAUTH or isinstance(
        result.error, ReconnectRequiredError
    ):
        return ReconnectRequiredError()
    headers = {"Retry-After": str(result.retry_after)} if result.retry_after else None
    if timeout_is_504 and isinstance(result.error, SmartcarError) and result.error.type == TIMEOUT:
        return UpstreamTimeoutError(headers=headers)
    return UpstreamError(headers=headers)
