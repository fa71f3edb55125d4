"""`SmartcarClient`: the one place that speaks HTTP to Smartcar (OAuth token endpoint, v2.0, v3).

Owns: building requests (timeouts, User-Agent, `sc-unit-system`, credentials), the retry policy,
and turning every answer into a frozen value from `smartcar_client.types` or exactly one
`SmartcarError` subclass from `smartcar_client.errors`. Nothing else in the project imports
`requests` for Smartcar.

Retry policy: idempotent GETs get at most `max_attempts` tries, with short exponential backoff,
and only after a timeout, a connection error or a 500/502/503/504 (never after a 429, which the
caller schedules, nor after UPSTREAM:RATE_LIMIT). No retry starts once `retry_window` seconds have
passed since the first try, so a slow Smartcar costs at most about one read timeout more. POSTs
and DELETEs are sent once: an authorization code is single-use, and a refresh token rotates.

Must never: log or put into an exception a token, a code, the client secret or an Authorization
header; follow a redirect or a pagination link off the configured origins (the Bearer token would
go with it); let a raw `requests` exception, `KeyError` or `ValueError` escape.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import quote, urljoin, urlsplit

import requests
from requests.auth import AuthBase, HTTPBasicAuth

from smartcar_client.bodies import response_json
from smartcar_client.config import SmartcarConfig
from smartcar_client.connect import build_connect_url
from smartcar_client.errors import (
    SmartcarError,
    SmartcarMalformedResponseError,
    SmartcarRetryLaterError,
    malformed,
    parse_error,
    transport_error,
)
from smartcar_client.session import new_session
from smartcar_client.types import BatchResponse, TokenSet, VehicleAttributes, normalize_path

logger = logging.getLogger(__name__)

T = TypeVar("T")

TOKEN_PATH = "/oauth/token"  # noqa: S105  (a path, not a secret)
V2_PREFIX = "/v2.0"
V3_PREFIX = "/v3"
VEHICLES_PAGE_SIZE = 50
# Pagination guards: Smartcar bugs (or a hostile answer) must not keep a worker looping forever.
MAX_PAGES = 100
RETRYABLE_STATUSES = frozenset({500, 502, 503, 504})


class _BearerAuth(AuthBase):
    """Sets the Bearer header per request; as an auth object it also stops requests from
    replacing it with ~/.netrc credentials, and its repr hides the token."""

    def __init__(self, token: str) -> None:
        if not token:
            raise ValueError("an access token is required")
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._token}"
        return request

    def __repr__(self) -> str:
        return "_BearerAuth(<redacted>)"


class SmartcarClient:
    def __init__(
        self,
        config: SmartcarConfig,
        session: requests.Session | None = None,
        *,
        max_attempts: int = 3,
        backoff_seconds: float = 0.25,
        retry_window: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.config = config
        self._session = (
            session
            if session is not None
            else new_session(config.user_agent, pool_maxsize=config.pool_maxsize)
        )
        self._max_attempts = max_attempts
        self._backoff_seconds = backoff_seconds
        self._retry_window = retry_window
        self._sleep = sleep
        self._clock = clock

    def __repr__(self) -> str:
        return f"SmartcarClient(api_origin={self.config.api_origin!r}, mode={self.config.mode!r})"

    # --- Connect and OAuth -------------------------------------------------------------------

    def connect_url(
        self,
        *,
        state: str,
        make: str | None = None,
        single_select: bool = False,
        force_prompt: bool = False,
    ) -> str:
        """The Smartcar Connect authorize URL for this state; redirect URI and scopes from config."""
        return build_connect_url(
            self.config,
            state=state,
            make=make,
            single_select=single_select,
            force_prompt=force_prompt,
        )

    def exchange_code(self, code: str) -> TokenSet:
        """Trade an authorization code for tokens. Sent once, never retried (codes are single-use).

        Raises `SmartcarInvalidGrantError` for a bad, expired or used code (or a redirect URI
        mismatch), `SmartcarConfigurationError` for bad client credentials, `SmartcarRetryLaterError`
        for timeouts, 5xx and unreadable answers.
        """
        if not code:
            raise ValueError("an authorization code is required")
        return self._token_request(
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": self.config.redirect_uri,
            }
        )

    def refresh_tokens(self, refresh_token: str) -> TokenSet:
        """Rotate the token pair. Sent once: the caller must persist BOTH new tokens.

        Raises `SmartcarInvalidGrantError` when the refresh token is dead (the user must reconnect).
        """
        if not refresh_token:
            raise ValueError("a refresh token is required")
        return self._token_request({"grant_type": "refresh_token", "refresh_token": refresh_token})

    def _token_request(self, form: dict[str, str]) -> TokenSet:
        response = self._send(
            "POST",
            self.config.auth_origin + TOKEN_PATH,
            template=TOKEN_PATH,
            # HTTP Basic: the secret travels only in the Authorization header, never in the form.
            auth=HTTPBasicAuth(self.config.client_id, self.config.client_secret),
            data=form,
            token_endpoint=True,
        )
        return self._decode(response, TokenSet.from_json)

    # --- Vehicle API v2.0 --------------------------------------------------------------------

    def get_user_id(self, access_token: str) -> str:
        """The Smartcar user id of the account owner behind this token (`GET /v2.0/user`)."""
        response = self._get(access_token, self._v2("/user"), template="/v2.0/user")
        return self._decode(response, lambda body: _require_str(body, "id"))

    def list_vehicle_ids(self, access_token: str) -> list[str]:
        """Every vehicle id on this grant, all pages read, in Smartcar's order, without repeats."""
        ids: list[str] = []
        offset = 0
        for _ in range(MAX_PAGES):
            response = self._get(
                access_token,
                self._v2("/vehicles"),
                template="/v2.0/vehicles",
                params={"limit": VEHICLES_PAGE_SIZE, "offset": offset},
            )
            page, total = self._decode(response, _parse_vehicles_page)
            ids.extend(vehicle_id for vehicle_id in page if vehicle_id not in ids)
            offset += len(page)
            # Without paging.count, a short page is the last one.
            last = offset >= total if total is not None else len(page) < VEHICLES_PAGE_SIZE
            if not page or last:
                return ids
        raise malformed(code="paging.count")

    def get_vehicle_attributes(self, access_token: str, vehicle_id: str) -> VehicleAttributes:
        """Make, model and year (`GET /v2.0/vehicles/{id}`, needs `read_vehicle_info`)."""
        response = self._get(
            access_token, self._vehicle_url(vehicle_id, ""), template="/v2.0/vehicles/{id}"
        )
        return self._decode(response, VehicleAttributes.from_json)

    def get_vin(self, access_token: str, vehicle_id: str) -> str:
        """The VIN (`GET /v2.0/vehicles/{id}/vin`, needs `read_vin`)."""
        response = self._get(
            access_token,
            self._vehicle_url(vehicle_id, "/vin"),
            template="/v2.0/vehicles/{id}/vin",
        )
        return self._decode(response, lambda body: _require_str(body, "vin"))

    def batch(self, access_token: str, vehicle_id: str, paths: Sequence[str]) -> BatchResponse:
        """Several reads in one request. Each item carries its own status and, if it failed, its
        own `SmartcarError`; the call itself raises only when the whole request failed. Sent once:
        every sub-request counts against the plan's quota."""
        if isinstance(paths, str) or not paths:
            raise ValueError("batch needs a non-empty sequence of paths")
        response = self._send(
            "POST",
            self._vehicle_url(vehicle_id, "/batch"),
            template="/v2.0/vehicles/{id}/batch",
            auth=_BearerAuth(access_token),
            json={"requests": [{"path": normalize_path(path)} for path in paths]},
            headers=self._unit_header(),
        )
        request_id = response.headers.get("SC-Request-Id")
        return self._decode(
            response, lambda body: BatchResponse.from_json(body, request_id=request_id)
        )

    def disconnect(self, access_token: str, vehicle_id: str) -> None:
        """Revoke our access to this vehicle (`DELETE …/application`); the token stops working."""
        self._send(
            "DELETE",
            self._vehicle_url(vehicle_id, "/application"),
            template="/v2.0/vehicles/{id}/application",
            auth=_BearerAuth(access_token),
        )

    # --- Vehicle API v3 ----------------------------------------------------------------------

    def list_signals(
        self,
        access_token: str,
        vehicle_id: str,
        *,
        on_request: Callable[[], None] | None = None,
    ) -> list[dict[str, Any]]:
        """Every signal item the grant allows (`GET /v3/vehicles/{id}/signals`), all pages.

        Items are returned as Smartcar sent them (`attributes.code`, `attributes.body`, `meta` …);
        an item whose `status.value` is not SUCCESS is kept for the caller to skip. `on_request`
        is called before every HTTP request sent, retries included, so callers can count
        billable calls (a request that then fails was still sent).
        """
        url: str | None = f"{self._v3_root()}/vehicles/{_quote_id(vehicle_id)}/signals"
        signals: list[dict[str, Any]] = []
        visited: set[str] = set()
        pages = 0
        while url is not None:
            # Two separate guards: a link back to a page already read, and too many pages.
            if url in visited or pages >= MAX_PAGES:
                raise malformed(code="links.next")
            visited.add(url)
            pages += 1
            response = self._get(
                access_token,
                url,
                template="/v3/vehicles/{id}/signals",
                unit_header=False,
                on_request=on_request,
            )
            items, next_link = self._decode(response, _parse_signals_page)
            signals.extend(items)
            url = self._resolve_v3_link(next_link, current=url) if next_link else None
        return signals

    def _resolve_v3_link(self, link: str, *, current: str) -> str:
        root = self._v3_root()
        parts = urlsplit(link)
        if parts.scheme or parts.netloc:
            resolved = link
        elif link.startswith("/"):
            root_parts = urlsplit(root)
            if link.startswith(root_parts.path + "/"):
                resolved = f"{root_parts.scheme}://{root_parts.netloc}{link}"
            else:
                # Smartcar's documented links ("/vehicles/{id}/signals?page=2") are relative to /v3.
                resolved = root + link
        else:
            resolved = urljoin(current, link)
        # The Bearer token goes wherever this points: it must stay under our configured v3 root.
        if not resolved.startswith(root + "/") or "/../" in urlsplit(resolved).path:
            raise malformed(code="links.next")
        return resolved

    # --- plumbing ----------------------------------------------------------------------------

    def _v2(self, path: str) -> str:
        return f"{self.config.api_origin}{V2_PREFIX}{path}"

    def _v3_root(self) -> str:
        return f"{self.config.v3_origin}{V3_PREFIX}"

    def _vehicle_url(self, vehicle_id: str, suffix: str) -> str:
        return self._v2(f"/vehicles/{_quote_id(vehicle_id)}{suffix}")

    def _unit_header(self) -> dict[str, str]:
        return {"sc-unit-system": self.config.unit_system}

    def _get(
        self,
        access_token: str,
        url: str,
        *,
        template: str,
        params: Mapping[str, Any] | None = None,
        unit_header: bool = True,
        on_request: Callable[[], None] | None = None,
    ) -> requests.Response:
        return self._send(
            "GET",
            url,
            template=template,
            auth=_BearerAuth(access_token),
            params=params,
            headers=self._unit_header() if unit_header else None,
            retry=True,
            on_request=on_request,
        )

    def _send(
        self,
        method: str,
        url: str,
        *,
        template: str,
        auth: AuthBase,
        params: Mapping[str, Any] | None = None,
        data: Mapping[str, str] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        retry: bool = False,
        token_endpoint: bool = False,
        on_request: Callable[[], None] | None = None,
    ) -> requests.Response:
        """Send one request (retrying GETs per the module policy); return a 2xx response or raise
        exactly one `SmartcarError`."""
        request_headers = {"User-Agent": self.config.user_agent, **(headers or {})}
        attempts = self._max_attempts if retry else 1
        started = self._clock()
        for attempt in range(1, attempts + 1):
            error: SmartcarError
            if on_request is not None:
                on_request()
            try:
                response = self._session.request(
                    method,
                    url,
                    params=params,
                    data=data,
                    json=json,
                    headers=request_headers,
                    auth=auth,
                    timeout=self.config.timeout,
                    # A redirect would carry our credentials to wherever it points.
                    allow_redirects=False,
                )
            except requests.RequestException as exc:
                error = transport_error(exc)
                retryable = True
                self._log(logging.WARNING, method, template, None, error, attempt)
            else:
                if 200 <= response.status_code < 300:
                    self._log(logging.DEBUG, method, template, response, None, attempt)
                    return response
                error = parse_error(response, token_endpoint=token_endpoint)
                retryable = (
                    response.status_code in RETRYABLE_STATUSES
                    and isinstance(error, SmartcarRetryLaterError)
                    and error.code != "RATE_LIMIT"
                )
                self._log(logging.WARNING, method, template, response, error, attempt)
            if not (retryable and self._may_retry(attempt, attempts, started)):
                raise error
            self._sleep(self._backoff_seconds * 2 ** (attempt - 1))
        raise AssertionError("unreachable")  # pragma: no cover

    def _may_retry(self, attempt: int, attempts: int, started: float) -> bool:
        return attempt < attempts and self._clock() - started < self._retry_window

    def _decode(self, response: requests.Response, parse: Callable[[Any], T]) -> T:
        try:
            body = response_json(response)
        except ValueError:  # not JSON, or JSON holding NUL (smartcar_client.bodies)
            raise malformed(response, code="json") from None
        try:
            return parse(body)
        except SmartcarMalformedResponseError as exc:
            raise malformed(response, code=exc.code) from None

    @staticmethod
    def _log(
        level: int,
        method: str,
        template: str,
        response: requests.Response | None,
        error: SmartcarError | None,
        attempt: int,
    ) -> None:
        # Method, path template, status, request id and error class only: never URLs (vehicle ids
        # and queries), headers or bodies, which is where tokens and codes live.
        logger.log(
            level,
            "smartcar %s %s -> %s %s request_id=%s attempt=%d",
            method,
            template,
            response.status_code if response is not None else "no-response",
            f"{error.type}:{error.code}" if error is not None else "ok",
            (
                response.headers.get("SC-Request-Id")
                if response is not None
                else (error.request_id if error is not None else None)
            ),
            attempt,
        )


def _quote_id(vehicle_id: str) -> str:
    if not vehicle_id:
        raise ValueError("a vehicle id is required")
    # Quote everything, "/" included, so an id can never walk to another path ("../user").
    return quote(vehicle_id, safe="")


def _require_str(body: Any, key: str) -> str:
    if not isinstance(body, Mapping):
        raise malformed(code=key)
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise malformed(code=key)
    return value


def _parse_vehicles_page(body: Any) -> tuple[list[str], int | None]:
    if not isinstance(body, Mapping):
        raise malformed(code="vehicles")
    vehicles = body.get("vehicles")
    if not isinstance(vehicles, list) or not all(isinstance(v, str) and v for v in vehicles):
        raise malformed(code="vehicles")
    paging = body.get("paging")
    count = paging.get("count") if isinstance(paging, Mapping) else None
    if count is None:
        return vehicles, None
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise malformed(code="paging.count")
    return vehicles, count


def _parse_signals_page(body: Any) -> tuple[list[dict[str, Any]], str | None]:
    if not isinstance(body, Mapping):
        raise malformed(code="data")
    data = body.get("data")
    if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
        raise malformed(code="data")
    links = body.get("links")
    next_link = links.get("next") if isinstance(links, Mapping) else None
    if next_link is not None and not isinstance(next_link, str):
        raise malformed(code="links.next")
    return data, next_link or None
