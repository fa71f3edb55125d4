"""Vehicle API v3: vehicles, signals (paged via links.next), one signal, errors."""

from http import HTTPStatus
from urllib.parse import urljoin

import pytest

from smartcar_emulator import control
from smartcar_emulator.tests.conftest import ROOT, bearer, tokens, vehicles_of_make

V3 = f"{ROOT}/v3"
ALL_CODES = [
    "tractionbattery-stateofcharge",
    "tractionbattery-range",
    "charge-ischarging",
    "charge-ischargingcableconnected",
    "charge-detailedchargingstatus",
    "location-preciselocation",
    "odometer-traveleddistance",
    "vehicleidentification-vin",
]


@pytest.fixture
def auth(client):
    return bearer(tokens(client, make="HYUNDAI")["access_token"])


@pytest.fixture
def vid():
    return vehicles_of_make("HYUNDAI")[0]


def test_vehicles_list_and_one_vehicle(client, auth, vid):
    listing = client.get(f"{V3}/vehicles", **auth)
    assert listing.status_code == HTTPStatus.OK
    body = listing.json()
    assert body["data"] == [
        {
            "id": vid,
            "type": "vehicle",
            "attributes": {
                "make": "HYUNDAI",
                "model": "Ioniq 5",
                "year": 2023,
                "powertrainType": "BEV",
            },
            "links": {"self": f"{ROOT}/v3/vehicles/{vid}"},
        }
    ]
    assert body["meta"] == {"page": 1, "pageSize": 10, "totalCount": 1}
    one = client.get(f"{V3}/vehicles/{vid}", **auth)
    assert one.json() == {"data": body["data"][0]}


def test_signals_are_paged_and_links_next_resolves_against_the_emulator_root(
    client, auth, vid, fake_clock
):
    url = f"{V3}/vehicles/{vid}/signals?pageSize=3"
    codes, pages = [], 0
    while url:
        response = client.get(url, **auth)
        assert response.status_code == HTTPStatus.OK
        body = response.json()
        pages += 1
        codes += [item["attributes"]["code"] for item in body["data"]]
        assert body["meta"]["totalCount"] == len(ALL_CODES)
        assert body["included"]["vehicle"]["id"] == vid
        nxt = body["links"]["next"]
        if nxt:
            assert nxt == f"{ROOT}/v3/vehicles/{vid}/signals?page={pages + 1}&pageSize=3"
            # Resolvable as any client would: against the URL of the page it came from.
            assert urljoin(f"http://testserver{url}", nxt) == f"http://testserver{nxt}"
        url = nxt
    assert pages == 3
    assert codes == ALL_CODES
    assert body["links"]["previous"] == f"{ROOT}/v3/vehicles/{vid}/signals?page=2&pageSize=3"
    assert body["links"]["last"] == f"{ROOT}/v3/vehicles/{vid}/signals?page=3&pageSize=3"
    assert body["links"]["first"] == f"{ROOT}/v3/vehicles/{vid}/signals?page=1&pageSize=3"


def test_signal_items_carry_status_body_unit_and_epoch_ms(client, auth, vid, fake_clock):
    fake_clock.advance(90)
    state = control.vehicle_state(vid)
    items = {
        item["attributes"]["code"]: item
        for item in client.get(f"{V3}/vehicles/{vid}/signals?pageSize=100", **auth).json()["data"]
    }
    soc = items["tractionbattery-stateofcharge"]
    assert soc == {
        "id": "tractionbattery-stateofcharge",
        "type": "signal",
        "attributes": {
            "code": "tractionbattery-stateofcharge",
            "name": "StateOfCharge",
            "group": "TractionBattery",
            "status": {"value": "SUCCESS"},
            "body": {"value": round(state.soc * 100, 2), "unit": "percent"},
        },
        "meta": {"retrievedAt": 1767225690000, "oemUpdatedAt": 1767225660000},
        "links": {"self": f"{ROOT}/v3/vehicles/{vid}/signals/tractionbattery-stateofcharge"},
    }
    assert items["tractionbattery-range"]["attributes"]["body"] == {
        "value": state.range_km,
        "unit": "kilometers",
    }
    assert items["odometer-traveleddistance"]["attributes"]["body"] == {
        "value": state.odometer_km,
        "unit": "kilometers",
    }
    assert items["location-preciselocation"]["attributes"]["body"] == {
        "latitude": state.latitude,
        "longitude": state.longitude,
        "unit": "degrees",
    }
    assert items["charge-ischarging"]["attributes"]["body"] == {
        "value": state.charge_state == "CHARGING"
    }
    assert items["charge-ischargingcableconnected"]["attributes"]["body"] == {
        "value": state.is_plugged_in
    }
    assert items["charge-detailedchargingstatus"]["attributes"]["body"] == {
        "value": state.charge_state
    }


def test_signals_only_include_what_the_grant_allows(client):
    issued = tokens(client, make="BMW", scope="read_battery read_location")
    vid = vehicles_of_make("BMW")[0]
    body = client.get(f"{V3}/vehicles/{vid}/signals", **bearer(issued["access_token"])).json()
    assert [item["id"] for item in body["data"]] == [
        "tractionbattery-stateofcharge",
        "tractionbattery-range",
        "location-preciselocation",
    ]
    denied = client.get(
        f"{V3}/vehicles/{vid}/signals/odometer-traveleddistance", **bearer(issued["access_token"])
    )
    assert denied.status_code == HTTPStatus.FORBIDDEN
    assert denied.json()["type"] == "PERMISSION"


def test_one_signal_in_kebab_and_camel_case(client, auth, vid):
    kebab = client.get(f"{V3}/vehicles/{vid}/signals/tractionbattery-stateofcharge", **auth)
    camel = client.get(f"{V3}/vehicles/{vid}/signals/tractionBatteryStateOfCharge", **auth)
    assert kebab.status_code == camel.status_code == HTTPStatus.OK
    assert kebab.json()["data"] == camel.json()["data"]
    assert kebab.json()["data"]["id"] == "tractionbattery-stateofcharge"


def test_imperial_signals(client, auth, vid):
    body = client.get(
        f"{V3}/vehicles/{vid}/signals/odometer-traveleddistance",
        HTTP_SC_UNIT_SYSTEM="imperial",
        **auth,
    ).json()
    assert body["data"]["attributes"]["body"]["unit"] == "miles"


@pytest.mark.parametrize(
    "path",
    [
        "/vehicles/{vid}/signals/charge-voltage-x",
        "/vehicles/{vid}/charge",
        "/vehicles/{vid}/odometer",
        "/nothing",
    ],
)
def test_unknown_v3_paths_are_404_invalid_path(client, auth, vid, path):
    response = client.get(V3 + path.format(vid=vid), **auth)
    assert response.status_code == HTTPStatus.NOT_FOUND
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["type"] == "RESOURCE_NOT_FOUND"
    assert body["code"] == "INVALID_PATH"
    assert body["statusCode"] == 404
    assert body["requestId"] == response["SC-Request-Id"]


@pytest.mark.parametrize("query", ["page=0", "pageSize=0", "pageSize=101", "page=x"])
def test_signals_paging_is_validated(client, auth, vid, query):
    response = client.get(f"{V3}/vehicles/{vid}/signals?{query}", **auth)
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["type"] == "VALIDATION"


def test_v3_needs_a_valid_token(client, vid):
    response = client.get(f"{V3}/vehicles/{vid}/signals", HTTP_AUTHORIZATION="Bearer nope")
    assert response.status_code == HTTPStatus.UNAUTHORIZED
    assert response.json()["type"] == "AUTHENTICATION"


def test_v3_vehicle_outside_grant_is_forbidden(client, auth):
    other = vehicles_of_make("NISSAN")[0]
    assert client.get(f"{V3}/vehicles/{other}/signals", **auth).status_code == HTTPStatus.FORBIDDEN
