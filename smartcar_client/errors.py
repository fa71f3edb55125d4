"""Smartcar failures, sorted by what the caller should do about them.

Every transport failure and every non-2xx answer from Smartcar becomes exactly one `SmartcarError`
subclass (Zulip's classification; API-FACTS §5, §9):

- `SmartcarReauthRequiredError`: the grant is dead or lacks a permission; the user must go through
  Connect again (`SmartcarInvalidGrantError` for an OAuth `invalid_grant`).
- `SmartcarConfigurationError`: our client id/secret/redirect URI are wrong, or the app may not do this.
- `SmartcarRetryLaterError`: rate limits, Smartcar/OEM outages, sleeping cars, timeouts, connection
  errors and success bodies we cannot read. `retry_after` is set when Smartcar said how long.
- `SmartcarUserActionRequiredError`: the owner must fix something at the car maker (subscription,
  virtual key, remote access); retrying or reconnecting alone will not help.
- `SmartcarNotCapableError`: this car cannot do this; stop asking.
- `SmartcarBillingError`: our Smartcar plan is exhausted; alert ops.
- `SmartcarRequestError`: Smartcar says our request is wrong; a bug on our side.

The message of every error is built only from status, type, code and request id. Smartcar's own
`description` is never kept: it can echo secrets ("Invalid refresh_token: <token>.").
"""

from __future__ import annotations

import email.utils
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TypeGuard

import requests

from smartcar_client.bodies import response_json

# Retry-After beyond a day is nonsense or hostile; cap it so a scheduler never parks a car forever.
MAX_RETRY_AFTER_SECONDS = 86_400

# Synthetic types for failures that never reached a Smartcar error body.
TIMEOUT = "TIMEOUT"
CONNECTION = "CONNECTION"
MALFORMED_RESPONSE = "MALFORMED_RESPONSE"
UNEXPECTED_STATUS = "UNEXPECTED_STATUS"


class SmartcarError(Exception):
    default_type: str | None = None

    def __init__(
        self,
        *,
        status: int | None = None,
        type: str | None = None,  # Smartcar's own field name
        code: str | None = None,
        request_id: str | None = None,
        retry_after: int | None = None,
        resolution_type: str | None = None,
        resolution_url: str | None = None,
        oauth_error: str | None = None,
    ) -> None:
        self.status = status
        self.type = type or self.default_type
        self.code = code
        self.request_id = request_id
        self.retry_after = retry_after
        self.resolution_type = resolution_type
        self.resolution_url = resolution_url
        self.oauth_error = oauth_error
        super().__init__(self.message)

    @property
    def message(self) -> str:
        kind = self.type or self.oauth_error or "UNKNOWN"
        if self.code:
            kind = f"{kind}:{self.code}"
        text = f"Smartcar error {kind}"
        if self.status is not None:
            text += f" (HTTP {self.status})"
        if self.request_id:
            text += f" [request id {self.request_id}]"
        return text

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status!r}, type={self.type!r}, "
            f"code={self.code!r}, request_id={self.request_id!r}, "
            f"retry_after={self.retry_after!r}, oauth_error={self.oauth_error!r})"
        )


class SmartcarReauthRequiredError(SmartcarError):
    pass


class SmartcarInvalidGrantError(SmartcarReauthRequiredError):
    pass


class SmartcarConfigurationError(SmartcarError):
    pass


class SmartcarRetryLaterError(SmartcarError):
    pass


class SmartcarUserActionRequiredError(SmartcarError):
    pass


class SmartcarMalformedResponseError(SmartcarRetryLaterError):
    """A 2xx whose body is not the documented shape; `code` names the field, never its value."""

    default_type = MALFORMED_RESPONSE


class SmartcarNotCapableError(SmartcarError):
    pass


class SmartcarBillingError(SmartcarError):
    pass


class SmartcarRequestError(SmartcarError):
    pass


_REAUTH_TYPES = {"AUTHENTICATION", "PERMISSION"}
_REAUTH_ACCOUNT_CODES = {"AUTHENTICATION_FAILED", "PERMISSION"}
_RETRY_TYPES = {"RATE_LIMIT", "UPSTREAM", "SERVER"}
# VEHICLE_STATE codes the car will not leave by itself.
_USER_ACTION_VEHICLE_STATE_CODES = {"REMOTE_ACCESS_DISABLED"}
_REQUEST_TYPES = {"VALIDATION", "RESOURCE_NOT_FOUND"}


def parse_error(response: requests.Response, *, token_endpoint: bool = False) -> SmartcarError:
    """Turn a non-2xx response into one `SmartcarError`; never raises.

    Reads a v2 error body (`type`), an OAuth body (`error` + `error_description`) or, for anything
    else (HTML from a proxy, empty body), the HTTP status alone. `token_endpoint` marks answers
    from `/oauth/token`, where a 401 means our client credentials are wrong, not the user's grant.
    """
    body = _json_object(response)
    return error_from_body(
        response.status_code,
        body,
        response.headers,
        token_endpoint=token_endpoint,
    )


def error_from_body(
    http_status: int,
    body: Mapping[str, Any] | None,
    headers: Mapping[str, str] | None = None,
    *,
    request_id: str | None = None,
    token_endpoint: bool = False,
) -> SmartcarError:
    """Classify one error answer; also used for the items of a batch response."""
    headers = _lower_keys(headers or {})
    body = body or {}
    request_id = _str(body.get("requestId")) or headers.get("sc-request-id") or request_id
    retry_after = parse_retry_after(headers.get("retry-after"))

    oauth_error = _str(body.get("error"))
    if oauth_error and ("error_description" in body or token_endpoint) and "type" not in body:
        return _oauth_error(http_status, oauth_error, request_id, retry_after)

    error_type = _str(body.get("type"))
    if error_type:
        body_status = body.get("statusCode")
        status = body_status if _is_int(body_status) else http_status
        resolution_type, resolution_url = _resolution(body.get("resolution"))
        error_class = _class_for_v2(error_type, _str(body.get("code")), resolution_type, status)
        if token_endpoint and status == 401:
            error_class = SmartcarConfigurationError
        return error_class(
            status=status,
            type=error_type,
            code=_str(body.get("code")),
            request_id=request_id,
            retry_after=retry_after,
            resolution_type=resolution_type,
            resolution_url=resolution_url,
        )

    error_class, synthetic_type = _class_for_status(http_status, token_endpoint=token_endpoint)
    return error_class(
        status=http_status,
        type=synthetic_type,
        request_id=request_id,
        retry_after=retry_after,
    )


_DELTA_SECONDS = re.compile(r"[0-9]+")


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> int | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date), capped; None if unreadable."""
    if value is None:
        return None
    value = value.strip()
    seconds: float
    if _DELTA_SECONDS.fullmatch(value):
        # ASCII digits only: str.isdigit() also accepts "¹" or "٣", which int() refuses or
        # reads as another number. Anything over the cap is the cap, however many digits.
        seconds = int(value) if len(value) <= 12 else MAX_RETRY_AFTER_SECONDS
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(math.ceil(seconds), 0), MAX_RETRY_AFTER_SECONDS)


def transport_error(exc: requests.RequestException) -> SmartcarRetryLaterError:
    """A request that never got an HTTP answer. The exception text is dropped: it holds the URL."""
    is_timeout = isinstance(exc, requests.Timeout)
    return SmartcarRetryLaterError(
        type=TIMEOUT if is_timeout else CONNECTION,
        code=type(exc).__name__,
    )


def malformed(
    response: requests.Response | None = None, *, code: str | None = None
) -> SmartcarMalformedResponseError:
    """A 2xx whose body is not what Smartcar documents: treat it as a passing Smartcar fault."""
    return SmartcarMalformedResponseError(
        status=response.status_code if response is not None else None,
        code=code,
        request_id=response.headers.get("SC-Request-Id") if response is not None else None,
    )


def _oauth_error(
    status: int, oauth_error: str, request_id: str | None, retry_after: int | None
) -> SmartcarError:
    error_class: type[SmartcarError]
    if status >= 500 or status == 429:
        error_class = SmartcarRetryLaterError
    elif oauth_error == "invalid_grant":
        error_class = SmartcarInvalidGrantError
    else:
        # invalid_client, unauthorized_client, invalid_request, …: nothing the user can fix.
        error_class = SmartcarConfigurationError
    return error_class(
        status=status,
        type="OAUTH",
        code=oauth_error,
        request_id=request_id,
        retry_after=retry_after,
        oauth_error=oauth_error,
    )


def _class_for_v2(
    error_type: str, code: str | None, resolution_type: str | None, status: int
) -> type[SmartcarError]:
    if error_type in _REAUTH_TYPES or resolution_type == "REAUTHENTICATE":
        return SmartcarReauthRequiredError
    if error_type == "CONNECTED_SERVICES_ACCOUNT":
        if code in _REAUTH_ACCOUNT_CODES:
            return SmartcarReauthRequiredError
        return SmartcarUserActionRequiredError
    if error_type in _RETRY_TYPES:
        return SmartcarRetryLaterError
    if error_type == "VEHICLE_STATE":
        if code in _USER_ACTION_VEHICLE_STATE_CODES:
            return SmartcarUserActionRequiredError
        return SmartcarRetryLaterError
    if error_type == "COMPATIBILITY":
        return SmartcarNotCapableError
    if error_type == "BILLING":
        return SmartcarBillingError
    if error_type in _REQUEST_TYPES:
        return SmartcarRequestError
    return _class_for_status(status, token_endpoint=False)[0]


def _class_for_status(status: int, *, token_endpoint: bool) -> tuple[type[SmartcarError], str]:
    if token_endpoint and status == 401:
        return SmartcarConfigurationError, "AUTHENTICATION"
    if status == 401:
        return SmartcarReauthRequiredError, "AUTHENTICATION"
    if status == 403:
        return SmartcarReauthRequiredError, "PERMISSION"
    if status in (408, 429) or status >= 500:
        return SmartcarRetryLaterError, UNEXPECTED_STATUS
    if status == 430:
        return SmartcarBillingError, "BILLING"
    return SmartcarRequestError, UNEXPECTED_STATUS


def _resolution(value: Any) -> tuple[str | None, str | None]:
    # Seen as an object {"type", "url"}, as a bare string, and as null (API-FACTS §5, §9).
    if isinstance(value, str):
        return value or None, None
    if isinstance(value, Mapping):
        return _str(value.get("type")), _str(value.get("url"))
    return None, None


def _json_object(response: requests.Response) -> dict[str, Any] | None:
    try:
        body = response_json(response)
    except ValueError:  # not JSON, or JSON holding NUL: judged by its status alone
        return None
    return body if isinstance(body, dict) else None


def _lower_keys(headers: Mapping[str, Any]) -> dict[str, str]:
    return {str(key).lower(): str(value) for key, value in headers.items()}


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)
