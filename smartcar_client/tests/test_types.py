from datetime import UTC, datetime, timedelta

import pytest

from smartcar_client.errors import (
    SmartcarMalformedResponseError,
    SmartcarNotCapableError,
    SmartcarRetryLaterError,
)
from smartcar_client.tests.conftest import ACCESS_TOKEN, REFRESH_TOKEN, VEHICLE_ID, load
from smartcar_client.types import BatchItem, BatchResponse, TokenSet, VehicleAttributes

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def test_tokenset_from_json_computes_expiry():
    tokens = TokenSet.from_json(load("token.json"), now=NOW)

    assert tokens.access_token == ACCESS_TOKEN
    assert tokens.refresh_token == REFRESH_TOKEN
    assert tokens.token_type == "Bearer"
    assert tokens.expires_at == NOW + timedelta(seconds=7200)
    assert tokens.refresh_expires_at == NOW + timedelta(days=60)
    assert tokens.expires_at.tzinfo is not None


def test_tokenset_default_now_is_aware_utc():
    before = datetime.now(UTC)
    tokens = TokenSet.from_json(load("token.json"))

    assert before + timedelta(seconds=7200) <= tokens.expires_at
    assert tokens.expires_at <= datetime.now(UTC) + timedelta(seconds=7200)


def test_tokenset_repr_and_str_hide_tokens():
    tokens = TokenSet.from_json(load("token.json"), now=NOW)

    for text in (repr(tokens), str(tokens), f"{tokens}"):
        assert ACCESS_TOKEN not in text
        assert REFRESH_TOKEN not in text
    assert "expires_at" in repr(tokens)


@pytest.mark.parametrize(
    "change",
    [
        {"access_token": None},
        {"access_token": ""},
        {"refresh_token": 42},
        {"expires_in": "7200"},
        {"expires_in": 0},
        {"expires_in": True},
        {"token_type": ""},
    ],
)
def test_tokenset_rejects_bad_shapes(change):
    body = {**load("token.json"), **change}

    with pytest.raises(SmartcarMalformedResponseError) as caught:
        TokenSet.from_json(body, now=NOW)

    assert isinstance(caught.value, SmartcarRetryLaterError)
    assert caught.value.type == "MALFORMED_RESPONSE"
    assert REFRESH_TOKEN not in str(caught.value)
    assert ACCESS_TOKEN not in str(caught.value)


def test_tokenset_rejects_non_object():
    with pytest.raises(SmartcarMalformedResponseError):
        TokenSet.from_json(["access_token"], now=NOW)


def test_tokenset_missing_token_type_defaults_to_bearer():
    body = load("token.json")
    del body["token_type"]

    assert TokenSet.from_json(body, now=NOW).token_type == "Bearer"


def test_tokenset_needs_aware_now():
    with pytest.raises(ValueError, match="timezone"):
        TokenSet.from_json(load("token.json"), now=datetime(2025, 1, 1))  # noqa: DTZ001


@pytest.mark.parametrize(
    ("year", "expected"), [("2014", 2014), (2019, 2019), (None, None), ("", None), (True, None)]
)
def test_vehicle_attributes_year(year, expected):
    body = {**load("vehicle_attributes.json"), "year": year}

    assert VehicleAttributes.from_json(body).year == expected


def test_vehicle_attributes_fixture():
    assert VehicleAttributes.from_json(load("vehicle_attributes.json")) == VehicleAttributes(
        id=VEHICLE_ID, make="TESLA", model="Model 3", year=2014
    )


@pytest.mark.parametrize("missing", ["id", "make", "model"])
def test_vehicle_attributes_missing_field(missing):
    body = load("vehicle_attributes.json")
    del body[missing]

    with pytest.raises(SmartcarMalformedResponseError) as caught:
        VehicleAttributes.from_json(body)

    assert caught.value.code == missing


def test_batch_parses_each_item():
    batch = BatchResponse.from_json(load("batch_mixed.json"), request_id="outer-1")

    odometer = batch.get("/odometer")
    assert odometer is not None
    assert odometer.ok
    assert odometer.status == 200
    assert odometer.body == {"distance": 51234.5}
    assert odometer.headers["sc-data-age"] == "2025-03-01T10:12:00.000Z"
    assert batch.body("odometer") == {"distance": 51234.5}

    battery = batch.get("battery")
    assert battery is not None
    assert not battery.ok
    assert isinstance(battery.error, SmartcarRetryLaterError)
    assert battery.error.retry_after == 120
    assert battery.error.request_id == "item-req-0002"
    assert battery.error.code == "VEHICLE"

    charge = batch.get("/charge")
    assert charge is not None
    assert charge.headers == {}
    assert isinstance(charge.error, SmartcarRetryLaterError)
    # No requestId in the item body: the outer response's id stands in.
    assert charge.error.request_id == "outer-1"

    location = batch.get("/location")
    assert location is not None
    assert isinstance(location.error, SmartcarNotCapableError)
    with pytest.raises(SmartcarNotCapableError):
        batch.body("/location")

    assert batch.body("/")["make"] == "TESLA"
    assert batch.request_id == "outer-1"
    assert batch.get("/tires") is None


def test_batch_body_for_missing_path_is_malformed():
    batch = BatchResponse.from_json(load("batch_mixed.json"))

    with pytest.raises(SmartcarMalformedResponseError):
        batch.body("/tires")


def test_batch_item_without_code_uses_body_status_code():
    item = BatchItem.from_json(
        {"path": "/battery", "body": {"type": "RATE_LIMIT", "code": "VEHICLE", "statusCode": 429}}
    )

    assert item.status == 429
    assert isinstance(item.error, SmartcarRetryLaterError)


def test_batch_item_without_any_status_is_malformed():
    item = BatchItem.from_json({"path": "/battery", "body": {"percentRemaining": 0.5}})

    assert item.status == 0
    assert isinstance(item.error, SmartcarMalformedResponseError)


def test_batch_item_success_without_body_is_malformed():
    item = BatchItem.from_json({"path": "/battery", "code": 200})

    assert isinstance(item.error, SmartcarMalformedResponseError)


def test_batch_item_204_without_body_is_ok():
    item = BatchItem.from_json({"path": "/battery", "code": 204})

    assert item.ok
    assert item.body == {}


@pytest.mark.parametrize(
    "body",
    [[], {"responses": None}, {"responses": [{"code": 200}]}, {"responses": ["x"]}],
)
def test_batch_rejects_bad_shapes(body):
    with pytest.raises(SmartcarMalformedResponseError):
        BatchResponse.from_json(body)
