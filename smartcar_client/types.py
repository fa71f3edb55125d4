"""Frozen values the client returns; each Smartcar body is parsed once, here.

`from_json` checks the documented shape and raises `SmartcarMalformedResponseError` (a
`SmartcarRetryLaterError`) for anything else, so no `KeyError`/`TypeError` escapes the client.
`TokenSet` keeps its tokens out of `repr()`; nothing here logs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeGuard

from smartcar_client.errors import SmartcarError, error_from_body, malformed

# Smartcar sends no refresh TTL; the SDKs assume 60 days from receipt (API-FACTS §3, §9).
REFRESH_TOKEN_LIFETIME = timedelta(days=60)


def _fail(what: str) -> SmartcarError:
    # `what` names a field, never a value: values may be tokens.
    return malformed(code=what)


def _require_dict(data: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise _fail(what)
    return data


def _require_str(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise _fail(key)
    return value


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class TokenSet:
    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_at: datetime
    refresh_expires_at: datetime
    token_type: str = "Bearer"  # noqa: S105  (a scheme name, not a secret)

    @classmethod
    def from_json(cls, data: Any, *, now: datetime | None = None) -> TokenSet:
        body = _require_dict(data, "token_response")
        expires_in = body.get("expires_in")
        if not _is_int(expires_in) or expires_in <= 0:
            raise _fail("expires_in")
        token_type = body.get("token_type", "Bearer")
        if not isinstance(token_type, str) or not token_type:
            raise _fail("token_type")
        received = now or datetime.now(UTC)
        if received.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        return cls(
            access_token=_require_str(body, "access_token"),
            refresh_token=_require_str(body, "refresh_token"),
            expires_at=received + timedelta(seconds=expires_in),
            refresh_expires_at=received + REFRESH_TOKEN_LIFETIME,
            token_type=token_type,
        )


@dataclass(frozen=True)
class VehicleAttributes:
    id: str
    make: str
    model: str
    year: int | None

    @classmethod
    def from_json(cls, data: Any) -> VehicleAttributes:
        body = _require_dict(data, "vehicle")
        return cls(
            id=_require_str(body, "id"),
            make=_require_str(body, "make"),
            model=_require_str(body, "model"),
            year=_parse_year(body.get("year")),
        )


def _parse_year(value: Any) -> int | None:
    # Typed as an integer, but the docs' own example sends "2014" (API-FACTS §4).
    if _is_int(value):
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


@dataclass(frozen=True)
class BatchItem:
    path: str
    status: int
    body: dict[str, Any] | None
    headers: dict[str, str]
    error: SmartcarError | None

    @property
    def ok(self) -> bool:
        return self.error is None

    @classmethod
    def from_json(cls, data: Any, *, request_id: str | None = None) -> BatchItem:
        item = _require_dict(data, "batch_item")
        path = normalize_path(_require_str(item, "path"))
        raw_headers = item.get("headers")
        headers = (
            {str(k).lower(): str(v) for k, v in raw_headers.items()}
            if isinstance(raw_headers, Mapping)
            else {}
        )
        raw_body = item.get("body")
        body = dict(raw_body) if isinstance(raw_body, Mapping) else None
        status = item.get("code")
        if not _is_int(status) and body is not None:
            status = body.get("statusCode")
        if not _is_int(status):
            # No status at all: we cannot tell success from failure, so treat it as a bad answer.
            return cls(path, 0, body, headers, _fail("batch_item.code"))
        error: SmartcarError | None = None
        if not 200 <= status < 300:
            error = error_from_body(status, body, headers, request_id=request_id)
        elif body is None and status == 204:
            body = {}
        elif body is None:
            error = _fail("batch_item.body")
        return cls(path=path, status=status, body=body, headers=headers, error=error)


@dataclass(frozen=True)
class BatchResponse:
    items: tuple[BatchItem, ...]
    request_id: str | None

    @classmethod
    def from_json(cls, data: Any, *, request_id: str | None = None) -> BatchResponse:
        body = _require_dict(data, "batch")
        responses = body.get("responses")
        if not isinstance(responses, list):
            raise _fail("responses")
        items = tuple(BatchItem.from_json(item, request_id=request_id) for item in responses)
        return cls(items=items, request_id=request_id)

    def get(self, path: str) -> BatchItem | None:
        wanted = normalize_path(path)
        return next((item for item in self.items if item.path == wanted), None)

    def body(self, path: str) -> dict[str, Any]:
        """The body for `path`, or raise that item's error (malformed if Smartcar left it out)."""
        item = self.get(path)
        if item is None:
            raise _fail(f"batch_item_missing:{normalize_path(path)}")
        if item.error is not None:
            raise item.error
        if item.body is None:  # unreachable: from_json gives every error-free item a body
            raise _fail("batch_item.body")
        return item.body


def normalize_path(path: str) -> str:
    """Batch paths compare with one leading slash: "odometer" and "/odometer" are the same."""
    return "/" + path.strip().lstrip("/")
