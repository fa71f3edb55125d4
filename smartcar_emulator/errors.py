"""Smartcar's error bodies: the v2 vehicle-API schema (also used by v3) and OAuth errors.

Owns the exact shapes from API-FACTS §5 and §3: `type`, `code`, `description`, `docURL`,
`statusCode` (always equal to the HTTP status), `requestId`, `resolution {type}`; JSON content type
and `SC-Request-Id` on every error, `Retry-After` on 429 when known.
"""

import json
from typing import Any

from django.http import HttpResponse

_DOC_ROOT = "https://smartcar.com/docs/errors/api-errors"


class ApiError(Exception):
    """One vehicle-API error, raised inside the emulator and rendered by `api_error_response`."""

    def __init__(
        self,
        status: int,
        type_: str,
        code: str | None,
        description: str,
        *,
        resolution: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(f"{type_}:{code}")
        self.status = status
        self.type = type_
        self.code = code
        self.description = description
        self.resolution = resolution
        self.retry_after = retry_after

    @classmethod
    def authentication(cls) -> "ApiError":
        return cls(
            401,
            "AUTHENTICATION",
            None,
            "The request is missing a valid access token, or the token has expired or been revoked.",
        )

    @classmethod
    def permission(cls, description: str) -> "ApiError":
        return cls(403, "PERMISSION", None, description, resolution="REAUTHENTICATE")

    @classmethod
    def rate_limit(cls, code: str, retry_after: int | None) -> "ApiError":
        text = {
            "VEHICLE": "You have reached the throttling rate limit for this vehicle.",
            "SMARTCAR_API": "You have reached the rate limit for your application.",
        }[code]
        return cls(429, "RATE_LIMIT", code, text, resolution="RETRY_LATER", retry_after=retry_after)

    @classmethod
    def not_found(cls, code: str = "PATH") -> "ApiError":
        return cls(404, "RESOURCE_NOT_FOUND", code, "The requested resource does not exist.")

    @classmethod
    def validation(cls, description: str) -> "ApiError":
        return cls(400, "VALIDATION", "PARAMETER", description)

    def body(self, request_id: str) -> dict[str, Any]:
        page = self.type.lower().replace("_", "-") + "-errors"
        anchor = f"#{self.code.lower().replace('_', '-')}" if self.code else ""
        return {
            "type": self.type,
            "code": self.code,
            "description": self.description,
            "docURL": f"{_DOC_ROOT}/{page}{anchor}",
            "statusCode": self.status,
            "requestId": request_id,
            "resolution": {"type": self.resolution},
        }

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)} if self.retry_after is not None else {}


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> HttpResponse:
    response = HttpResponse(
        json.dumps(body, separators=(",", ":")), status=status, content_type="application/json"
    )
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def api_error_response(error: ApiError, request_id: str) -> HttpResponse:
    headers = {"sc-request-id": request_id, **error.headers()}
    return json_response(error.body(request_id), status=error.status, headers=headers)


def oauth_error_response(status: int, error: str, description: str) -> HttpResponse:
    response = json_response({"error": error, "error_description": description}, status=status)
    if status == 401:
        response["WWW-Authenticate"] = 'Basic realm="smartcar"'
    return response
