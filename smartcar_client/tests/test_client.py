import base64
import json
from urllib.parse import parse_qs

import pytest
import requests
import responses
from responses import matchers

from smartcar_client.client import SmartcarClient
from smartcar_client.config import DEFAULT_USER_AGENT, SmartcarConfig
from smartcar_client.errors import (
    SmartcarConfigurationError,
    SmartcarError,
    SmartcarInvalidGrantError,
    SmartcarMalformedResponseError,
    SmartcarNotCapableError,
    SmartcarReauthRequiredError,
    SmartcarRequestError,
    SmartcarRetryLaterError,
)
from smartcar_client.tests.conftest import (
    ACCESS_TOKEN,
    API,
    AUTH,
    AUTH_CODE,
    CLIENT_ID,
    CLIENT_SECRET,
    REDIRECT_URI,
    REFRESH_TOKEN,
    V3,
    VEHICLE_ID,
    FakeClock,
    load,
)

TOKEN_URL = f"{AUTH}/oauth/token"
VEHICLE_URL = f"{API}/v2.0/vehicles/{VEHICLE_ID}"
SIGNALS_URL = f"{V3}/v3/vehicles/{VEHICLE_ID}/signals"
V2_ERRORS = load("v2_errors.json")


def _form(call) -> dict[str, list[str]]:
    return parse_qs(call.request.body)


def _basic(call) -> tuple[str, str]:
    scheme, _, value = call.request.headers["Authorization"].partition(" ")
    assert scheme == "Basic"
    user, _, password = base64.b64decode(value).decode().partition(":")
    return user, password


# --- token endpoint -------------------------------------------------------------------------


def test_exchange_code_sends_basic_auth_and_form(client: SmartcarClient, mocked):
    mocked.post(TOKEN_URL, json=load("token.json"))

    tokens = client.exchange_code(AUTH_CODE)

    assert tokens.access_token == load("token.json")["access_token"]
    assert tokens.refresh_token == REFRESH_TOKEN
    call = mocked.calls[0]
    assert _basic(call) == (CLIENT_ID, CLIENT_SECRET)
    assert call.request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert _form(call) == {
        "grant_type": ["authorization_code"],
        "code": [AUTH_CODE],
        "redirect_uri": [REDIRECT_URI],
    }
    # The secret travels only inside the Basic header.
    assert CLIENT_SECRET not in call.request.body
    assert CLIENT_SECRET not in call.request.url
    assert call.request.url == TOKEN_URL
    assert call.request.headers["User-Agent"] == DEFAULT_USER_AGENT
    assert "sc-unit-system" not in call.request.headers
    assert call.request.req_kwargs["timeout"] == (5.0, 30.0)


def test_refresh_sends_refresh_grant(client: SmartcarClient, mocked):
    mocked.post(TOKEN_URL, json=load("token_refreshed.json"))

    tokens = client.refresh_tokens(REFRESH_TOKEN)

    assert tokens.refresh_token == load("token_refreshed.json")["refresh_token"]
    call = mocked.calls[0]
    assert _basic(call) == (CLIENT_ID, CLIENT_SECRET)
    assert _form(call) == {"grant_type": ["refresh_token"], "refresh_token": [REFRESH_TOKEN]}


def test_exchange_code_invalid_grant(client: SmartcarClient, mocked):
    mocked.post(TOKEN_URL, status=400, json=load("oauth_invalid_grant_code.json"))

    with pytest.raises(SmartcarInvalidGrantError) as caught:
        client.exchange_code(AUTH_CODE)

    assert AUTH_CODE not in str(caught.value)


def test_refresh_invalid_grant(client: SmartcarClient, mocked):
    mocked.post(TOKEN_URL, status=400, json=load("oauth_invalid_grant_refresh.json"))

    with pytest.raises(SmartcarInvalidGrantError) as caught:
        client.refresh_tokens(REFRESH_TOKEN)

    assert REFRESH_TOKEN not in str(caught.value)
    assert REFRESH_TOKEN not in repr(caught.value)


def test_exchange_code_invalid_client(client: SmartcarClient, mocked):
    mocked.post(TOKEN_URL, status=401, json=load("oauth_invalid_client.json"))

    with pytest.raises(SmartcarConfigurationError) as caught:
        client.exchange_code(AUTH_CODE)

    assert caught.value.oauth_error == "invalid_client"
    assert CLIENT_SECRET not in str(caught.value)


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_token_endpoint_5xx_is_not_retried(client: SmartcarClient, mocked, clock, status):
    mocked.post(TOKEN_URL, status=status, body="upstream down")

    with pytest.raises(SmartcarRetryLaterError):
        client.exchange_code(AUTH_CODE)

    assert len(mocked.calls) == 1
    assert clock.sleeps == []


@pytest.mark.parametrize("exc", [requests.ReadTimeout, requests.ConnectTimeout])
def test_token_endpoint_timeout_is_not_retried(client: SmartcarClient, mocked, exc):
    mocked.post(TOKEN_URL, body=exc("timed out"))

    with pytest.raises(SmartcarRetryLaterError) as caught:
        client.refresh_tokens(REFRESH_TOKEN)

    assert caught.value.type == "TIMEOUT"
    assert len(mocked.calls) == 1


def test_token_response_not_json_is_malformed(client: SmartcarClient, mocked):
    mocked.post(TOKEN_URL, body="<html>ok</html>", headers={"SC-Request-Id": "tok-1"})

    with pytest.raises(SmartcarMalformedResponseError) as caught:
        client.exchange_code(AUTH_CODE)

    assert isinstance(caught.value, SmartcarRetryLaterError)
    assert caught.value.type == "MALFORMED_RESPONSE"
    assert caught.value.status == 200
    assert caught.value.request_id == "tok-1"


def test_token_response_missing_field_is_malformed(client: SmartcarClient, mocked):
    body = load("token.json")
    del body["refresh_token"]
    mocked.post(TOKEN_URL, json=body)

    with pytest.raises(SmartcarRetryLaterError) as caught:
        client.exchange_code(AUTH_CODE)

    assert caught.value.type == "MALFORMED_RESPONSE"
    assert caught.value.code == "refresh_token"
    assert body["access_token"] not in str(caught.value)


@pytest.mark.parametrize("method", ["exchange_code", "refresh_tokens"])
def test_token_calls_refuse_empty_input(client: SmartcarClient, method):
    with pytest.raises(ValueError, match="required"):
        getattr(client, method)("")


# --- v2.0 reads -----------------------------------------------------------------------------


def test_get_user_id(client: SmartcarClient, mocked):
    mocked.get(f"{API}/v2.0/user", json=load("user.json"))

    assert client.get_user_id(ACCESS_TOKEN) == load("user.json")["id"]
    call = mocked.calls[0]
    assert call.request.headers["Authorization"] == f"Bearer {ACCESS_TOKEN}"
    assert call.request.headers["User-Agent"] == DEFAULT_USER_AGENT
    assert call.request.headers["sc-unit-system"] == "metric"
    assert call.request.req_kwargs["timeout"] == (5.0, 30.0)


def test_user_agent_is_sent_with_a_caller_supplied_session(config: SmartcarConfig, mocked):
    client = SmartcarClient(config, session=requests.Session())
    mocked.get(f"{API}/v2.0/user", json=load("user.json"))

    client.get_user_id(ACCESS_TOKEN)

    assert mocked.calls[0].request.headers["User-Agent"] == DEFAULT_USER_AGENT


def test_unit_system_header_follows_config(config: SmartcarConfig, mocked):
    imperial = SmartcarClient(SmartcarConfig(**{**config.__dict__, "unit_system": "imperial"}))
    mocked.get(f"{VEHICLE_URL}/vin", json=load("vin.json"))

    imperial.get_vin(ACCESS_TOKEN, VEHICLE_ID)

    assert mocked.calls[0].request.headers["sc-unit-system"] == "imperial"


def test_get_user_id_missing_id_is_malformed(client: SmartcarClient, mocked):
    mocked.get(f"{API}/v2.0/user", json={"user": "x"})

    with pytest.raises(SmartcarRetryLaterError) as caught:
        client.get_user_id(ACCESS_TOKEN)

    assert caught.value.type == "MALFORMED_RESPONSE"


def test_list_vehicle_ids_reads_every_page(client: SmartcarClient, mocked):
    for offset, name in [
        (0, "vehicles_page1.json"),
        (2, "vehicles_page2.json"),
        (4, "vehicles_page3.json"),
    ]:
        mocked.get(
            f"{API}/v2.0/vehicles",
            json=load(name),
            match=[matchers.query_param_matcher({"limit": "50", "offset": str(offset)})],
        )

    ids = client.list_vehicle_ids(ACCESS_TOKEN)

    expected = [
        *load("vehicles_page1.json")["vehicles"],
        *load("vehicles_page2.json")["vehicles"],
        *load("vehicles_page3.json")["vehicles"],
    ]
    assert ids == expected
    assert len(mocked.calls) == 3


def test_list_vehicle_ids_single_page(client: SmartcarClient, mocked):
    mocked.get(
        f"{API}/v2.0/vehicles", json={"vehicles": [VEHICLE_ID], "paging": {"count": 1, "offset": 0}}
    )

    assert client.list_vehicle_ids(ACCESS_TOKEN) == [VEHICLE_ID]
    assert len(mocked.calls) == 1


def test_list_vehicle_ids_empty(client: SmartcarClient, mocked):
    mocked.get(f"{API}/v2.0/vehicles", json={"vehicles": [], "paging": {"count": 0, "offset": 0}})

    assert client.list_vehicle_ids(ACCESS_TOKEN) == []


def test_list_vehicle_ids_stops_on_empty_page_despite_count(client: SmartcarClient, mocked):
    mocked.get(
        f"{API}/v2.0/vehicles", json={"vehicles": [VEHICLE_ID], "paging": {"count": 9, "offset": 0}}
    )
    mocked.get(f"{API}/v2.0/vehicles", json={"vehicles": [], "paging": {"count": 9, "offset": 1}})

    assert client.list_vehicle_ids(ACCESS_TOKEN) == [VEHICLE_ID]
    assert len(mocked.calls) == 2


def test_list_vehicle_ids_without_count_stops_on_short_page(client: SmartcarClient, mocked):
    mocked.get(f"{API}/v2.0/vehicles", json={"vehicles": [VEHICLE_ID]})

    assert client.list_vehicle_ids(ACCESS_TOKEN) == [VEHICLE_ID]
    assert len(mocked.calls) == 1


def test_list_vehicle_ids_drops_repeats(client: SmartcarClient, mocked):
    first = [f"v-{i}" for i in range(50)]
    mocked.get(
        f"{API}/v2.0/vehicles", json={"vehicles": first, "paging": {"count": 51, "offset": 0}}
    )
    mocked.get(
        f"{API}/v2.0/vehicles", json={"vehicles": ["v-0"], "paging": {"count": 51, "offset": 50}}
    )

    assert client.list_vehicle_ids(ACCESS_TOKEN) == first


def test_list_vehicle_ids_page_guard(client: SmartcarClient, mocked, monkeypatch):
    monkeypatch.setattr("smartcar_client.client.MAX_PAGES", 3)
    page = {"vehicles": [f"v-{i}" for i in range(50)], "paging": {"count": 10_000, "offset": 0}}
    mocked.get(f"{API}/v2.0/vehicles", json=page)

    with pytest.raises(SmartcarMalformedResponseError):
        client.list_vehicle_ids(ACCESS_TOKEN)

    assert len(mocked.calls) == 3


@pytest.mark.parametrize(
    "body",
    [
        {"vehicles": "36ab27d0"},
        {"vehicles": [1, 2]},
        {"vehicles": [VEHICLE_ID], "paging": {"count": "1"}},
        ["36ab27d0"],
    ],
)
def test_list_vehicle_ids_malformed(client: SmartcarClient, mocked, body):
    mocked.get(f"{API}/v2.0/vehicles", json=body)

    with pytest.raises(SmartcarMalformedResponseError):
        client.list_vehicle_ids(ACCESS_TOKEN)


def test_get_vehicle_attributes(client: SmartcarClient, mocked):
    mocked.get(VEHICLE_URL, json=load("vehicle_attributes.json"))

    attributes = client.get_vehicle_attributes(ACCESS_TOKEN, VEHICLE_ID)

    assert (attributes.make, attributes.model, attributes.year) == ("TESLA", "Model 3", 2014)
    assert mocked.calls[0].request.headers["sc-unit-system"] == "metric"


def test_get_vin(client: SmartcarClient, mocked):
    mocked.get(f"{VEHICLE_URL}/vin", json=load("vin.json"))

    assert client.get_vin(ACCESS_TOKEN, VEHICLE_ID) == "5YJ3E1EA7KF000000"


def test_vehicle_id_cannot_escape_its_path(client: SmartcarClient, mocked):
    mocked.get(f"{API}/v2.0/vehicles/..%2Fuser/vin", json=load("vin.json"))

    client.get_vin(ACCESS_TOKEN, "../user")

    assert mocked.calls[0].request.url == f"{API}/v2.0/vehicles/..%2Fuser/vin"


def test_empty_vehicle_id_is_refused(client: SmartcarClient):
    with pytest.raises(ValueError, match="vehicle id"):
        client.get_vin(ACCESS_TOKEN, "")


def test_empty_access_token_is_refused(client: SmartcarClient):
    with pytest.raises(ValueError, match="access token"):
        client.get_vin("", VEHICLE_ID)


# --- errors and retries on GET --------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("AUTHENTICATION", SmartcarReauthRequiredError),
        ("PERMISSION", SmartcarReauthRequiredError),
        ("COMPATIBILITY:VEHICLE_NOT_CAPABLE", SmartcarNotCapableError),
        ("VALIDATION", SmartcarRequestError),
        ("VEHICLE_STATE:ASLEEP", SmartcarRetryLaterError),
    ],
)
def test_get_raises_typed_error_without_retry(client: SmartcarClient, mocked, key, expected):
    body = V2_ERRORS[key]
    mocked.get(f"{VEHICLE_URL}/vin", status=body["statusCode"], json=body)

    with pytest.raises(expected):
        client.get_vin(ACCESS_TOKEN, VEHICLE_ID)

    assert len(mocked.calls) == 1


def test_429_is_never_retried_and_carries_retry_after(client: SmartcarClient, mocked, clock):
    body = V2_ERRORS["RATE_LIMIT:VEHICLE"]
    mocked.get(f"{VEHICLE_URL}/vin", status=429, json=body, headers={"Retry-After": "60"})

    with pytest.raises(SmartcarRetryLaterError) as caught:
        client.get_vin(ACCESS_TOKEN, VEHICLE_ID)

    assert caught.value.retry_after == 60
    assert len(mocked.calls) == 1
    assert clock.sleeps == []


def test_upstream_rate_limit_is_not_retried(client: SmartcarClient, mocked):
    body = V2_ERRORS["UPSTREAM:RATE_LIMIT"]
    mocked.get(f"{VEHICLE_URL}/vin", status=502, json=body)

    with pytest.raises(SmartcarRetryLaterError):
        client.get_vin(ACCESS_TOKEN, VEHICLE_ID)

    assert len(mocked.calls) == 1


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_get_5xx_retried_then_succeeds(client: SmartcarClient, mocked, clock, status):
    mocked.get(f"{VEHICLE_URL}/vin", status=status, body="oops")
    mocked.get(f"{VEHICLE_URL}/vin", status=status, json=V2_ERRORS["SERVER:INTERNAL"])
    mocked.get(f"{VEHICLE_URL}/vin", json=load("vin.json"))

    assert client.get_vin(ACCESS_TOKEN, VEHICLE_ID) == "5YJ3E1EA7KF000000"
    assert len(mocked.calls) == 3
    assert clock.sleeps == [0.25, 0.5]


def test_get_5xx_gives_up_after_three_attempts(client: SmartcarClient, mocked, clock):
    mocked.get(f"{VEHICLE_URL}/vin", status=503, body="down", headers={"SC-Request-Id": "last"})

    with pytest.raises(SmartcarRetryLaterError) as caught:
        client.get_vin(ACCESS_TOKEN, VEHICLE_ID)

    assert len(mocked.calls) == 3
    assert caught.value.status == 503
    assert caught.value.request_id == "last"
    assert clock.sleeps == [0.25, 0.5]


def test_501_is_not_retried(client: SmartcarClient, mocked):
    mocked.get(f"{VEHICLE_URL}/vin", status=501, body="not implemented")

    with pytest.raises(SmartcarRetryLaterError):
        client.get_vin(ACCESS_TOKEN, VEHICLE_ID)

    assert len(mocked.calls) == 1


@pytest.mark.parametrize(
    ("exc", "error_type"),
    [
        (requests.ConnectTimeout, "TIMEOUT"),
        (requests.ReadTimeout, "TIMEOUT"),
        (requests.ConnectionError, "CONNECTION"),
    ],
)
def test_get_transport_errors_retried_then_mapped(client: SmartcarClient, mocked, exc, error_type):
    mocked.get(f"{API}/v2.0/user", body=exc(f"failed for {API}/v2.0/user"))

    with pytest.raises(SmartcarRetryLaterError) as caught:
        client.get_user_id(ACCESS_TOKEN)

    assert caught.value.type == error_type
    assert caught.value.code == exc.__name__
    assert not isinstance(caught.value, requests.RequestException)
    assert len(mocked.calls) == 3


def test_get_transport_error_then_success(client: SmartcarClient, mocked):
    mocked.get(f"{API}/v2.0/user", body=requests.ConnectTimeout("slow"))
    mocked.get(f"{API}/v2.0/user", json=load("user.json"))

    assert client.get_user_id(ACCESS_TOKEN) == load("user.json")["id"]
    assert len(mocked.calls) == 2


def test_no_retry_after_the_retry_window(config: SmartcarConfig, mocked, clock: FakeClock):
    client = SmartcarClient(config, sleep=clock.sleep, clock=clock, retry_window=10.0)

    def slow_timeout(request):
        clock.now += 30.0  # a read timeout burns the whole read timeout
        raise requests.ReadTimeout("slow")

    mocked.add_callback(responses.GET, f"{API}/v2.0/user", callback=slow_timeout)

    with pytest.raises(SmartcarRetryLaterError):
        client.get_user_id(ACCESS_TOKEN)

    assert len(mocked.calls) == 1
    assert clock.sleeps == []


def test_max_attempts_is_configurable(config: SmartcarConfig, mocked, clock: FakeClock):
    client = SmartcarClient(config, sleep=clock.sleep, clock=clock, max_attempts=1)
    mocked.get(f"{API}/v2.0/user", status=503)

    with pytest.raises(SmartcarRetryLaterError):
        client.get_user_id(ACCESS_TOKEN)

    assert len(mocked.calls) == 1


def test_max_attempts_must_be_positive(config: SmartcarConfig):
    with pytest.raises(ValueError, match="max_attempts"):
        SmartcarClient(config, max_attempts=0)


def test_redirect_is_not_followed(client: SmartcarClient, mocked):
    mocked.get(f"{API}/v2.0/user", status=302, headers={"Location": "https://evil.example/steal"})

    with pytest.raises(SmartcarRequestError):
        client.get_user_id(ACCESS_TOKEN)

    assert len(mocked.calls) == 1


def test_get_malformed_json_is_retry_later(client: SmartcarClient, mocked):
    mocked.get(f"{VEHICLE_URL}/vin", body="{not json", content_type="application/json")

    with pytest.raises(SmartcarRetryLaterError) as caught:
        client.get_vin(ACCESS_TOKEN, VEHICLE_ID)

    assert caught.value.type == "MALFORMED_RESPONSE"
    assert len(mocked.calls) == 1


def test_unexpected_exception_types_never_escape(client: SmartcarClient, mocked):
    mocked.get(f"{VEHICLE_URL}/vin", json={"vin": None})

    with pytest.raises(SmartcarError):
        client.get_vin(ACCESS_TOKEN, VEHICLE_ID)


# --- batch and disconnect -------------------------------------------------------------------


def test_batch_posts_paths_and_parses_items(client: SmartcarClient, mocked):
    mocked.post(
        f"{VEHICLE_URL}/batch", json=load("batch_mixed.json"), headers={"SC-Request-Id": "b-1"}
    )

    batch = client.batch(
        ACCESS_TOKEN, VEHICLE_ID, ["odometer", "/battery", "/charge", "/location", "/"]
    )

    call = mocked.calls[0]
    assert json.loads(call.request.body) == {
        "requests": [
            {"path": "/odometer"},
            {"path": "/battery"},
            {"path": "/charge"},
            {"path": "/location"},
            {"path": "/"},
        ]
    }
    assert call.request.headers["Authorization"] == f"Bearer {ACCESS_TOKEN}"
    assert call.request.headers["sc-unit-system"] == "metric"
    assert batch.request_id == "b-1"
    assert batch.body("/odometer") == {"distance": 51234.5}
    battery = batch.get("/battery")
    assert battery is not None
    assert isinstance(battery.error, SmartcarRetryLaterError)
    assert battery.error.retry_after == 120


def test_batch_is_not_retried(client: SmartcarClient, mocked):
    mocked.post(f"{VEHICLE_URL}/batch", status=503, body="down")

    with pytest.raises(SmartcarRetryLaterError):
        client.batch(ACCESS_TOKEN, VEHICLE_ID, ["/odometer"])

    assert len(mocked.calls) == 1


def test_batch_whole_request_error(client: SmartcarClient, mocked):
    mocked.post(f"{VEHICLE_URL}/batch", status=401, json=V2_ERRORS["AUTHENTICATION"])

    with pytest.raises(SmartcarReauthRequiredError):
        client.batch(ACCESS_TOKEN, VEHICLE_ID, ["/odometer"])


def test_batch_malformed(client: SmartcarClient, mocked):
    mocked.post(f"{VEHICLE_URL}/batch", json={"results": []})

    with pytest.raises(SmartcarMalformedResponseError):
        client.batch(ACCESS_TOKEN, VEHICLE_ID, ["/odometer"])


@pytest.mark.parametrize("paths", [[], "/odometer"])
def test_batch_needs_a_sequence_of_paths(client: SmartcarClient, paths):
    with pytest.raises(ValueError, match="paths"):
        client.batch(ACCESS_TOKEN, VEHICLE_ID, paths)


def test_disconnect(client: SmartcarClient, mocked):
    mocked.delete(f"{VEHICLE_URL}/application", json=load("disconnect.json"))

    assert client.disconnect(ACCESS_TOKEN, VEHICLE_ID) is None

    call = mocked.calls[0]
    assert call.request.headers["Authorization"] == f"Bearer {ACCESS_TOKEN}"
    assert "sc-unit-system" not in call.request.headers


def test_disconnect_tolerates_empty_body(client: SmartcarClient, mocked):
    mocked.delete(f"{VEHICLE_URL}/application", status=204)

    client.disconnect(ACCESS_TOKEN, VEHICLE_ID)


def test_disconnect_not_retried(client: SmartcarClient, mocked):
    mocked.delete(f"{VEHICLE_URL}/application", status=500, body="x")

    with pytest.raises(SmartcarRetryLaterError):
        client.disconnect(ACCESS_TOKEN, VEHICLE_ID)

    assert len(mocked.calls) == 1


# --- v3 signals -----------------------------------------------------------------------------


def test_list_signals_follows_relative_and_absolute_next_links(client: SmartcarClient, mocked):
    mocked.get(
        SIGNALS_URL, json=load("signals_page1.json"), match=[matchers.query_param_matcher({})]
    )
    mocked.get(
        SIGNALS_URL,
        json=load("signals_page2.json"),
        match=[matchers.query_param_matcher({"page": "2", "pageSize": "2"})],
    )
    mocked.get(
        SIGNALS_URL,
        json=load("signals_page3.json"),
        match=[matchers.query_param_matcher({"page": "3", "pageSize": "2"})],
    )

    pages: list[int] = []
    signals = client.list_signals(ACCESS_TOKEN, VEHICLE_ID, on_request=lambda: pages.append(1))

    assert len(pages) == 3
    assert [item["id"] for item in signals] == ["sig-1", "sig-2", "sig-3", "sig-4", "sig-5"]
    assert signals[0]["attributes"]["body"] == {"unit": "percent", "value": 81}
    assert len(mocked.calls) == 3
    for call in mocked.calls:
        assert call.request.headers["Authorization"] == f"Bearer {ACCESS_TOKEN}"


def test_list_signals_link_with_v3_prefix(client: SmartcarClient, mocked):
    first = {"data": [{"id": "a"}], "links": {"next": f"/v3/vehicles/{VEHICLE_ID}/signals?page=2"}}
    mocked.get(SIGNALS_URL, json=first, match=[matchers.query_param_matcher({})])
    mocked.get(
        SIGNALS_URL,
        json={"data": [{"id": "b"}], "links": {"next": None}},
        match=[matchers.query_param_matcher({"page": "2"})],
    )

    assert [item["id"] for item in client.list_signals(ACCESS_TOKEN, VEHICLE_ID)] == ["a", "b"]


def test_list_signals_origin_with_path_prefix(config: SmartcarConfig, mocked):
    origin = "http://127.0.0.1:8000/_smartcar"
    client = SmartcarClient(SmartcarConfig(**{**config.__dict__, "v3_origin": origin}))
    url = f"{origin}/v3/vehicles/{VEHICLE_ID}/signals"
    first = {
        "data": [{"id": "a"}],
        "links": {"next": f"/_smartcar/v3/vehicles/{VEHICLE_ID}/signals?page=2"},
    }
    second = {"data": [{"id": "b"}], "links": {"next": f"/vehicles/{VEHICLE_ID}/signals?page=3"}}
    mocked.get(url, json=first, match=[matchers.query_param_matcher({})])
    mocked.get(url, json=second, match=[matchers.query_param_matcher({"page": "2"})])
    mocked.get(
        url, json={"data": [{"id": "c"}]}, match=[matchers.query_param_matcher({"page": "3"})]
    )

    assert [item["id"] for item in client.list_signals(ACCESS_TOKEN, VEHICLE_ID)] == ["a", "b", "c"]


@pytest.mark.parametrize(
    "next_link",
    [
        "https://evil.example/v3/vehicles/x/signals?page=2",
        "https://vehicle.api.smartcar.test.evil.example/v3/vehicles/x/signals",
        "http://vehicle.api.smartcar.test/v3/vehicles/x/signals?page=2",
        "//evil.example/v3/vehicles/x/signals",
        "https://api.smartcar.test/v2.0/user",
        "../../../../other",
        "/v3/../admin",
    ],
)
def test_list_signals_refuses_links_off_the_v3_origin(client: SmartcarClient, mocked, next_link):
    mocked.get(SIGNALS_URL, json={"data": [{"id": "a"}], "links": {"next": next_link}})

    with pytest.raises(SmartcarMalformedResponseError) as caught:
        client.list_signals(ACCESS_TOKEN, VEHICLE_ID)

    assert caught.value.code == "links.next"
    assert len(mocked.calls) == 1


def test_list_signals_stops_on_a_link_loop(client: SmartcarClient, mocked):
    loop = {"data": [{"id": "a"}], "links": {"next": f"/vehicles/{VEHICLE_ID}/signals"}}
    mocked.get(SIGNALS_URL, json=loop)

    with pytest.raises(SmartcarMalformedResponseError):
        client.list_signals(ACCESS_TOKEN, VEHICLE_ID)

    assert len(mocked.calls) == 1


def test_list_signals_page_cap(client: SmartcarClient, mocked, monkeypatch):
    monkeypatch.setattr("smartcar_client.client.MAX_PAGES", 3)

    def endless(request):
        page = int(request.params.get("page", "1"))
        body = {
            "data": [{"id": str(page)}],
            "links": {"next": f"/vehicles/{VEHICLE_ID}/signals?page={page + 1}"},
        }
        return 200, {}, json.dumps(body)

    mocked.add_callback(responses.GET, SIGNALS_URL, callback=endless)

    with pytest.raises(SmartcarMalformedResponseError):
        client.list_signals(ACCESS_TOKEN, VEHICLE_ID)

    assert len(mocked.calls) == 3


@pytest.mark.parametrize(
    "body", [{"data": None}, {"data": ["x"]}, {"data": [], "links": {"next": 3}}, []]
)
def test_list_signals_malformed(client: SmartcarClient, mocked, body):
    mocked.get(SIGNALS_URL, json=body)

    with pytest.raises(SmartcarMalformedResponseError):
        client.list_signals(ACCESS_TOKEN, VEHICLE_ID)


def test_list_signals_error_uses_v2_schema(client: SmartcarClient, mocked):
    mocked.get(
        SIGNALS_URL,
        status=404,
        json={"type": "RESOURCE_NOT_FOUND", "code": "INVALID_PATH", "statusCode": 404},
    )

    with pytest.raises(SmartcarRequestError):
        client.list_signals(ACCESS_TOKEN, VEHICLE_ID)


def test_client_repr_has_no_secret(client: SmartcarClient):
    assert CLIENT_SECRET not in repr(client)


def test_list_signals_reports_every_request_sent_retries_included(client: SmartcarClient, mocked):
    mocked.get(SIGNALS_URL, status=502, json={"type": "UPSTREAM", "code": "UNKNOWN_ISSUE"})
    mocked.get(SIGNALS_URL, json={**load("signals_page1.json"), "links": {"next": None}})
    sent: list[int] = []

    client.list_signals(ACCESS_TOKEN, VEHICLE_ID, on_request=lambda: sent.append(1))

    assert len(sent) == len(mocked.calls) == 2


# --- NUL in a body (nothing we keep may hold one: PostgreSQL stores none) -----------------------


def test_a_success_body_holding_nul_is_malformed(client: SmartcarClient, mocked):
    mocked.get(f"{API}/v2.0/vehicles", json={"vehicles": ["vid\x00-1"]})

    with pytest.raises(SmartcarRetryLaterError) as caught:
        client.list_vehicle_ids(ACCESS_TOKEN)

    assert caught.value.type == "MALFORMED_RESPONSE"


def test_an_error_body_holding_nul_is_judged_by_its_status(client: SmartcarClient, mocked):
    body = {**V2_ERRORS["AUTHENTICATION"], "type": "VEHICLE_STATE", "code": "ASLEEP\x00"}
    mocked.get(f"{VEHICLE_URL}/vin", json=body, status=409)

    with pytest.raises(SmartcarError) as caught:
        client.get_vin(ACCESS_TOKEN, VEHICLE_ID)

    assert "\x00" not in (caught.value.code or "")
    assert caught.value.type != "VEHICLE_STATE"
