"""Property tests: hostile Smartcar answers and hostile `state`/ticket values (issue 8, SECURITY H).

Arbitrary JSON-ish input to every parser gives a value or the parser's one documented error
(`TelemetryInputError`/ValueError, `SmartcarError`), never another exception.
"""

import contextlib
import json
import string
from datetime import datetime

import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from oauth_smartcar.nonces import is_well_formed
from smartcar_client.errors import (
    MAX_RETRY_AFTER_SECONDS,
    SmartcarError,
    parse_error,
    parse_retry_after,
)
from smartcar_client.types import BatchItem, BatchResponse, TokenSet, VehicleAttributes
from telemetry.mapping import (
    ReadingData,
    TelemetryInputError,
    parse_timestamp,
    reading_from_batch,
    reading_from_signals,
)

UNRESERVED = set(string.ascii_letters + string.digits + "-._~")
SETTINGS = settings(max_examples=200, deadline=None, database=None)

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)
# Shapes close to real answers, so the parsers get past their first type check.
signal_like = st.fixed_dictionaries(
    {},
    optional={
        "code": st.sampled_from(
            [
                "tractionbattery-stateofcharge",
                "tractionbattery-range",
                "charge-detailedchargingstatus",
                "charge-ischargingcableconnected",
                "location-preciselocation",
                "odometer-traveleddistance",
            ]
        )
        | st.text(max_size=20),
        "body": json_values,
        "status": json_values,
        "meta": st.fixed_dictionaries(
            {}, optional={"oemUpdatedAt": scalars, "retrievedAt": scalars}
        ),
        "attributes": json_values,
    },
)
batch_like = st.fixed_dictionaries(
    {},
    optional={
        "responses": st.lists(
            st.fixed_dictionaries(
                {},
                optional={
                    "path": st.sampled_from(["/battery", "/charge", "/location", "/odometer"])
                    | st.text(max_size=10),
                    "code": scalars,
                    "body": json_values,
                    "headers": json_values,
                },
            )
            | json_values,
            max_size=5,
        )
        | json_values
    },
)


@SETTINGS
@given(st.lists(signal_like | json_values, max_size=8) | json_values)
def test_signals_give_a_reading_or_a_clear_error(signals):
    try:
        result = reading_from_signals(signals)
    except (TelemetryInputError, ValueError):
        return
    assert isinstance(result, ReadingData)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in result.field_errors.items())
    if result.soc_pct is not None:
        assert 0 <= result.soc_pct <= 100


@SETTINGS
@given(batch_like | json_values)
def test_batch_answers_give_a_reading_or_a_smartcar_error(body):
    try:
        batch = BatchResponse.from_json(body, request_id="req")
    except SmartcarError:
        return
    try:
        result = reading_from_batch(batch)
    except (TelemetryInputError, ValueError):
        return
    assert isinstance(result, ReadingData)


@SETTINGS
@given(json_values)
def test_typed_answers_parse_or_raise_a_smartcar_error(body):
    for parse in (TokenSet.from_json, VehicleAttributes.from_json, BatchItem.from_json):
        with contextlib.suppress(SmartcarError):
            parse(body)


@SETTINGS
@given(scalars | json_values)
def test_timestamps_parse_to_aware_datetimes_or_none(value):
    try:
        result = parse_timestamp(value)
    except (TelemetryInputError, ValueError):
        return
    assert result is None or (isinstance(result, datetime) and result.tzinfo is not None)


def response_of(status: int, content: bytes, headers: dict[str, str]) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = content
    response.headers.update(headers)
    response.url = "https://api.smartcar.test/v2.0/vehicles/x"
    return response


header_values = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40)


@SETTINGS
@given(
    status=st.integers(min_value=100, max_value=599),
    content=st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()),
    headers=st.dictionaries(
        st.sampled_from(["Retry-After", "SC-Request-Id", "Content-Type", "X-Other"]),
        header_values,
        max_size=4,
    ),
    token_endpoint=st.booleans(),
)
def test_any_error_answer_becomes_one_smartcar_error(status, content, headers, token_endpoint):
    error = parse_error(response_of(status, content, headers), token_endpoint=token_endpoint)
    assert isinstance(error, SmartcarError)
    assert error.retry_after is None or 0 <= error.retry_after <= MAX_RETRY_AFTER_SECONDS
    str(error), repr(error)  # never raises either


@SETTINGS
@given(header_values | st.text(max_size=40))
def test_retry_after_is_bounded_or_none(value):
    seconds = parse_retry_after(value)
    assert seconds is None or 0 <= seconds <= MAX_RETRY_AFTER_SECONDS


@SETTINGS
@given(scalars | json_values | st.binary(max_size=50))
def test_state_and_ticket_shape_check_is_total(value):
    result = is_well_formed(value)
    assert isinstance(result, bool)
    if result:
        # RFC 3986 unreserved characters only: safe in a URL and in a cookie, unescaped.
        assert isinstance(value, str)
        assert 1 <= len(value) <= 512
        assert set(value) <= UNRESERVED
