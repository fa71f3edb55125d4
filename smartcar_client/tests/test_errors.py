import json
from datetime import UTC, datetime

import pytest
import requests

from smartcar_client.errors import (
    MAX_RETRY_AFTER_SECONDS,
    SmartcarBillingError,
    SmartcarConfigurationError,
    SmartcarError,
    SmartcarInvalidGrantError,
    SmartcarNotCapableError,
    SmartcarReauthRequiredError,
    SmartcarRequestError,
    SmartcarRetryLaterError,
    SmartcarUserActionRequiredError,
    error_from_body,
    parse_error,
    parse_retry_after,
    transport_error,
)
from smartcar_client.tests.conftest import (
    ACCESS_TOKEN,
    AUTH_CODE,
    CLIENT_SECRET,
    REFRESH_TOKEN,
    load,
)

V2_ERRORS = load("v2_errors.json")

# Every type/code of API-FACTS §5 and the class that says what to do about it.
EXPECTED = {
    "AUTHENTICATION": SmartcarReauthRequiredError,
    "PERMISSION": SmartcarReauthRequiredError,
    "CONNECTED_SERVICES_ACCOUNT:AUTHENTICATION_FAILED": SmartcarReauthRequiredError,
    "CONNECTED_SERVICES_ACCOUNT:PERMISSION": SmartcarReauthRequiredError,
    "CONNECTED_SERVICES_ACCOUNT:NO_VEHICLES": SmartcarUserActionRequiredError,
    "CONNECTED_SERVICES_ACCOUNT:VEHICLE_MISSING": SmartcarUserActionRequiredError,
    "CONNECTED_SERVICES_ACCOUNT:SUBSCRIPTION": SmartcarUserActionRequiredError,
    "CONNECTED_SERVICES_ACCOUNT:ACCOUNT_ISSUE": SmartcarUserActionRequiredError,
    "CONNECTED_SERVICES_ACCOUNT:VIRTUAL_KEY_REQUIRED": SmartcarUserActionRequiredError,
    "RATE_LIMIT:SMARTCAR_API": SmartcarRetryLaterError,
    "RATE_LIMIT:VEHICLE": SmartcarRetryLaterError,
    **{
        f"VEHICLE_STATE:{code}": SmartcarRetryLaterError
        for code in [
            "ASLEEP",
            "UNREACHABLE",
            "CHARGING_IN_PROGRESS",
            "CHARGING_PLUG_CONNECTED",
            "CHARGING_PLUG_NOT_CONNECTED",
            "CHARGE_FAULT",
            "DOOR_OPEN",
            "FULLY_CHARGED",
            "NOT_CHARGING",
            "HOOD_OPEN",
            "IGNITION_ON",
            "IN_MOTION",
            "TRUNK_OPEN",
            "VEHICLE_OFFLINE_FOR_SERVICE",
            "LOW_BATTERY",
            "UNKNOWN",
        ]
    },
    "VEHICLE_STATE:REMOTE_ACCESS_DISABLED": SmartcarUserActionRequiredError,
    "COMPATIBILITY:MAKE_NOT_COMPATIBLE": SmartcarNotCapableError,
    "COMPATIBILITY:SMARTCAR_NOT_CAPABLE": SmartcarNotCapableError,
    "COMPATIBILITY:VEHICLE_NOT_CAPABLE": SmartcarNotCapableError,
    # resolution REAUTHENTICATE wins: a new Connect run may land on a capable platform.
    "COMPATIBILITY:PLATFORM_NOT_CAPABLE": SmartcarReauthRequiredError,
    "UPSTREAM:INVALID_DATA": SmartcarRetryLaterError,
    "UPSTREAM:KNOWN_ISSUE": SmartcarRetryLaterError,
    "UPSTREAM:NO_RESPONSE": SmartcarRetryLaterError,
    "UPSTREAM:RATE_LIMIT": SmartcarRetryLaterError,
    "UPSTREAM:UNKNOWN_ISSUE": SmartcarRetryLaterError,
    "SERVER:INTERNAL": SmartcarRetryLaterError,
    "SERVER:RECORD_NOT_FOUND": SmartcarRetryLaterError,
    "SERVER:MULTIPLE_RECORDS_FOUND": SmartcarRetryLaterError,
    "BILLING:VEHICLE_LIMIT": SmartcarBillingError,
    "BILLING:VEHICLE_REQUEST_LIMIT": SmartcarBillingError,
    "BILLING:INVALID_PLAN": SmartcarBillingError,
    "BILLING:ACCOUNT_SUSPENDED": SmartcarBillingError,
    "RESOURCE_NOT_FOUND:PATH": SmartcarRequestError,
    "RESOURCE_NOT_FOUND:VERSION": SmartcarRequestError,
    "VALIDATION": SmartcarRequestError,
    "VALIDATION:PARAMETER": SmartcarRequestError,
}


def make_response(
    status: int,
    body: object = None,
    *,
    headers: dict[str, str] | None = None,
    text: str | None = None,
    url: str = "https://api.smartcar.test/v2.0/vehicles/x/battery",
) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response.url = url
    if text is not None:
        response._content = text.encode()
        response.headers["Content-Type"] = "text/html"
    elif body is not None:
        response._content = json.dumps(body).encode()
        response.headers["Content-Type"] = "application/json"
    else:
        response._content = b""
    response.headers.update(headers or {})
    return response


def test_fixture_covers_every_expected_case():
    assert set(V2_ERRORS) == set(EXPECTED)


@pytest.mark.parametrize("key", sorted(EXPECTED))
def test_v2_error_maps_to_class(key: str):
    body = V2_ERRORS[key]

    error = parse_error(make_response(body["statusCode"], body))

    assert type(error) is EXPECTED[key]
    assert error.type == body["type"]
    assert error.code == body["code"]
    assert error.status == body["statusCode"]
    assert error.request_id == body["requestId"]


@pytest.mark.parametrize("key", sorted(EXPECTED))
def test_v2_error_text_never_carries_description(key: str):
    error = parse_error(make_response(V2_ERRORS[key]["statusCode"], V2_ERRORS[key]))

    for text in (str(error), repr(error), error.message, *map(str, error.args)):
        assert "Canned" not in text
        assert ACCESS_TOKEN not in text


def test_status_comes_from_body_status_code():
    body = {**V2_ERRORS["VEHICLE_STATE:ASLEEP"], "statusCode": 409}

    error = parse_error(make_response(400, body))

    assert error.status == 409


def test_status_falls_back_to_http_status():
    body = {"type": "VEHICLE_STATE", "code": "ASLEEP"}

    error = parse_error(make_response(409, body))

    assert error.status == 409
    assert isinstance(error, SmartcarRetryLaterError)


def test_resolution_object_keeps_type_and_url():
    body = V2_ERRORS["CONNECTED_SERVICES_ACCOUNT:AUTHENTICATION_FAILED"]

    error = parse_error(make_response(400, body))

    assert error.resolution_type == "REAUTHENTICATE"
    assert error.resolution_url == body["resolution"]["url"]


def test_resolution_as_plain_string():
    body = {"type": "SOMETHING_NEW", "code": "X", "statusCode": 400, "resolution": "REAUTHENTICATE"}

    error = parse_error(make_response(400, body))

    assert isinstance(error, SmartcarReauthRequiredError)
    assert error.resolution_type == "REAUTHENTICATE"
    assert error.resolution_url is None


def test_resolution_null():
    error = parse_error(make_response(501, V2_ERRORS["COMPATIBILITY:VEHICLE_NOT_CAPABLE"]))

    assert error.resolution_type is None
    assert isinstance(error, SmartcarNotCapableError)


def test_unknown_v2_type_falls_back_to_status():
    assert isinstance(
        parse_error(make_response(503, {"type": "BRAND_NEW", "statusCode": 503})),
        SmartcarRetryLaterError,
    )
    assert isinstance(
        parse_error(make_response(422, {"type": "BRAND_NEW", "statusCode": 422})),
        SmartcarRequestError,
    )


def test_retry_after_header_becomes_int():
    error = parse_error(
        make_response(429, V2_ERRORS["RATE_LIMIT:VEHICLE"], headers={"Retry-After": "5000"})
    )

    assert isinstance(error, SmartcarRetryLaterError)
    assert error.retry_after == 5000


def test_retry_after_header_name_is_case_insensitive():
    body = V2_ERRORS["RATE_LIMIT:VEHICLE"]

    error = error_from_body(429, body, {"retry-after": "7"})

    assert error.retry_after == 7


def test_no_retry_after_header_means_none():
    error = parse_error(make_response(429, V2_ERRORS["RATE_LIMIT:SMARTCAR_API"]))

    assert error.retry_after is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120),
        (" 0 ", 0),
        ("Wed, 01 Jan 2025 00:02:00 GMT", 120),
        ("Tue, 31 Dec 2024 23:00:00 GMT", 0),
        ("soon", None),
        ("-5", None),
        ("99999999999", MAX_RETRY_AFTER_SECONDS),
        ("9" * 5000, MAX_RETRY_AFTER_SECONDS),  # past int()'s digit limit
        ("\u00b9", None),  # superscript one: a digit to str.isdigit(), not to int()
        ("\u0663", None),  # Arabic-Indic three: not a delta-seconds value (RFC 9110: DIGIT)
        (None, None),
    ],
)
def test_parse_retry_after(value, expected):
    now = datetime(2025, 1, 1, tzinfo=UTC)

    assert parse_retry_after(value, now=now) == expected


def test_request_id_from_body_first_then_header():
    body = {**V2_ERRORS["SERVER:INTERNAL"], "requestId": "body-1"}
    with_both = parse_error(make_response(500, body, headers={"SC-Request-Id": "hdr-1"}))
    body.pop("requestId")
    header_only = parse_error(make_response(500, body, headers={"sc-request-id": "hdr-2"}))

    assert with_both.request_id == "body-1"
    assert header_only.request_id == "hdr-2"


@pytest.mark.parametrize(
    ("status", "expected", "error_type"),
    [
        (401, SmartcarReauthRequiredError, "AUTHENTICATION"),
        (403, SmartcarReauthRequiredError, "PERMISSION"),
        (408, SmartcarRetryLaterError, "UNEXPECTED_STATUS"),
        (429, SmartcarRetryLaterError, "UNEXPECTED_STATUS"),
        (430, SmartcarBillingError, "BILLING"),
        (500, SmartcarRetryLaterError, "UNEXPECTED_STATUS"),
        (502, SmartcarRetryLaterError, "UNEXPECTED_STATUS"),
        (503, SmartcarRetryLaterError, "UNEXPECTED_STATUS"),
        (404, SmartcarRequestError, "UNEXPECTED_STATUS"),
        (302, SmartcarRequestError, "UNEXPECTED_STATUS"),
    ],
)
def test_non_json_body_maps_by_status(status, expected, error_type):
    response = make_response(
        status, text="<html>Bad gateway</html>", headers={"SC-Request-Id": "r-9"}
    )

    error = parse_error(response)

    assert type(error) is expected
    assert error.status == status
    assert error.type == error_type
    assert error.request_id == "r-9"


def test_json_that_is_not_an_object_maps_by_status():
    response = make_response(502, ["upstream", "down"])

    assert isinstance(parse_error(response), SmartcarRetryLaterError)


def test_empty_body_maps_by_status():
    assert isinstance(parse_error(make_response(503)), SmartcarRetryLaterError)


def test_oauth_invalid_grant_for_code():
    error = parse_error(
        make_response(400, load("oauth_invalid_grant_code.json")), token_endpoint=True
    )

    assert type(error) is SmartcarInvalidGrantError
    assert isinstance(error, SmartcarReauthRequiredError)
    assert error.oauth_error == "invalid_grant"
    assert error.status == 400
    assert AUTH_CODE not in str(error)
    assert AUTH_CODE not in repr(error)


def test_oauth_invalid_grant_for_refresh_token_hides_token():
    error = parse_error(
        make_response(400, load("oauth_invalid_grant_refresh.json")), token_endpoint=True
    )

    assert type(error) is SmartcarInvalidGrantError
    assert REFRESH_TOKEN not in str(error)
    assert REFRESH_TOKEN not in repr(error)
    assert all(REFRESH_TOKEN not in str(arg) for arg in error.args)


def test_oauth_invalid_grant_without_description_on_token_endpoint():
    error = parse_error(make_response(400, {"error": "invalid_grant"}), token_endpoint=True)

    assert type(error) is SmartcarInvalidGrantError


def test_oauth_invalid_client():
    error = parse_error(make_response(401, load("oauth_invalid_client.json")), token_endpoint=True)

    assert type(error) is SmartcarConfigurationError
    assert error.oauth_error == "invalid_client"
    assert error.status == 401
    assert CLIENT_SECRET not in str(error)
    assert CLIENT_SECRET not in repr(error)


def test_oauth_unauthorized_client():
    error = parse_error(make_response(400, load("oauth_unauthorized_client.json")))

    assert type(error) is SmartcarConfigurationError
    assert error.oauth_error == "unauthorized_client"


def test_oauth_error_with_5xx_is_retry_later():
    error = parse_error(
        make_response(503, {"error": "server_error", "error_description": "x"}),
        token_endpoint=True,
    )

    assert type(error) is SmartcarRetryLaterError
    assert error.oauth_error == "server_error"


def test_token_endpoint_401_without_body_is_configuration_error():
    error = parse_error(make_response(401, text="Unauthorized"), token_endpoint=True)

    assert type(error) is SmartcarConfigurationError


def test_token_endpoint_401_v2_body_is_configuration_error():
    error = parse_error(make_response(401, V2_ERRORS["AUTHENTICATION"]), token_endpoint=True)

    assert type(error) is SmartcarConfigurationError


def test_same_401_elsewhere_means_reauthenticate():
    error = parse_error(make_response(401, text="Unauthorized"))

    assert type(error) is SmartcarReauthRequiredError


def test_legacy_v1_body_maps_by_status():
    body = {"error": "authentication_error", "message": "Invalid authorization header"}

    error = parse_error(make_response(401, body))

    assert type(error) is SmartcarReauthRequiredError
    assert error.oauth_error is None


@pytest.mark.parametrize(
    ("exc", "error_type"),
    [
        (requests.ConnectTimeout("connect timed out"), "TIMEOUT"),
        (requests.ReadTimeout("read timed out"), "TIMEOUT"),
        (requests.ConnectionError("refused"), "CONNECTION"),
        (requests.exceptions.ChunkedEncodingError("broken"), "CONNECTION"),
    ],
)
def test_transport_errors_are_retry_later(exc, error_type):
    error = transport_error(exc)

    assert type(error) is SmartcarRetryLaterError
    assert error.type == error_type
    assert error.code == type(exc).__name__
    assert error.status is None


def test_message_is_built_from_safe_fields_only():
    error = SmartcarError(status=409, type="VEHICLE_STATE", code="ASLEEP", request_id="abc")

    assert str(error) == "Smartcar error VEHICLE_STATE:ASLEEP (HTTP 409) [request id abc]"
