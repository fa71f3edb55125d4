"""Errors of the Connect flow, in the shapes seed 002 gives `complete-connect`."""

import re
from http import HTTPStatus

from core.errors import ApplicationError

# Smartcar request ids are UUID-like; anything else is not echoed back.
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9-]{1,100}$")


class CodeRequiredError(ApplicationError):
    code = "code_required"
    message = 'Send a JSON body {"code": "<the one-time code from Smartcar>"}.'
    http_status = HTTPStatus.BAD_REQUEST


class InvalidGrantError(ApplicationError):
    code = "invalid_grant"
    message = (
        "This Smartcar code is invalid, expired or already used. Start Connect again "
        "(GET …/smartcar/login)."
    )
    http_status = HTTPStatus.BAD_REQUEST


class InvalidClientError(ApplicationError):
    code = "invalid_client"
    message = "Smartcar refused this server's client credentials. The server must be reconfigured."
    http_status = HTTPStatus.BAD_REQUEST


class UserMismatchError(ApplicationError):
    code = "user_mismatch"
    message = "This code belongs to a Connect attempt started by another user."
    http_status = HTTPStatus.FORBIDDEN


class ConnectInProgressError(ApplicationError):
    code = "connect_in_progress"
    message = "This code is being exchanged by another request. Retry in a moment."
    http_status = HTTPStatus.CONFLICT

    def __init__(self) -> None:
        super().__init__(headers={"Retry-After": "2"})


class SmartcarUnavailableError(ApplicationError):
    code = "smartcar_error"
    http_status = HTTPStatus.BAD_GATEWAY

    def __init__(self, request_id: str | None = None) -> None:
        message = "Smartcar could not complete the request. Please try again later."
        if request_id and _REQUEST_ID_RE.fullmatch(request_id):
            message += f" (Smartcar request id: {request_id})"
        super().__init__(message)
