"""Errors our services raise for the API layer to render.

An `ApplicationError` carries a stable snake_case `code` the SPA can switch on, a human `message`
that is safe to show (never upstream text, never a secret), the HTTP status, optional `details`
and extra response headers (Retry-After). `core.api.exception_handler` turns it into
`{"error": code, "message": message[, "details": …]}`.
"""

from http import HTTPStatus
from typing import Any


class ApplicationError(Exception):
    code = "application_error"
    message = "The request could not be completed."
    http_status = HTTPStatus.BAD_REQUEST

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        http_status: int | None = None,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.message = message or self.message
        self.code = code or self.code
        self.http_status = HTTPStatus(http_status or self.http_status)
        self.details = details
        self.headers = headers or {}
        super().__init__(self.message)

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body


class NotFoundError(ApplicationError):
    code = "not_found"
    message = "Not found."
    http_status = HTTPStatus.NOT_FOUND


class UpstreamError(ApplicationError):
    """Smartcar failed or could not be reached; the message names its request id at most."""

    code = "smartcar_error"
    message = "Smartcar could not complete the request. Please try again later."
    http_status = HTTPStatus.BAD_GATEWAY


class UpstreamTimeoutError(UpstreamError):
    """Smartcar did not answer within our read timeout (a 504: we were the gateway)."""

    code = "smartcar_timeout"
    message = "Smartcar did not answer in time. Please try again later."
    http_status = HTTPStatus.GATEWAY_TIMEOUT


class ReconnectRequiredError(ApplicationError):
    """The Smartcar grant cannot be used any more; the person must run Connect again."""

    code = "reconnect_required"
    message = "This vehicle's Smartcar connection must be renewed. Connect the vehicle again."
    http_status = HTTPStatus.CONFLICT
