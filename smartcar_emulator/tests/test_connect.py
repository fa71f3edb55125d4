"""Connect: authorize validation, the consent page, and the exact redirects back to the app."""

import re
from http import HTTPStatus
from urllib.parse import quote

import pytest

from smartcar_emulator import control
from smartcar_emulator.tests.conftest import (
    REDIRECT_URI,
    ROOT,
    authorize_query,
    ticket_of,
    vehicles_of_make,
)

AUTHORIZE = f"{ROOT}/oauth/authorize"
CONSENT = f"{ROOT}/oauth/consent"


def _page(client, **query):
    return client.get(AUTHORIZE, authorize_query(**query))


def _post(client, page, **data):
    return client.post(CONSENT, {"ticket": ticket_of(page.content.decode()), **data})


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"client_id": "nope"}, "Invalid parameter client_id: nope"),
        ({"client_id": None}, "Invalid parameter client_id: "),
        (
            {"redirect_uri": "https://evil.example/cb"},
            "Invalid parameter redirect_uri: https://evil.example/cb",
        ),
        ({"redirect_uri": REDIRECT_URI + "/"}, "Invalid parameter redirect_uri: "),
        ({"redirect_uri": None}, "Invalid parameter redirect_uri: "),
    ],
)
def test_authorize_bad_client_or_redirect_is_a_400_page_without_exit(client, override, message):
    response = _page(client, **override)
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "Location" not in response
    html = response.content.decode()
    assert message in html
    assert 'id="exit"' not in html
    assert "code=" not in html


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"response_type": "token"}, "Invalid parameter response_type: token"),
        ({"scope": "read_battery read_everything"}, "Invalid parameter scope: read_everything"),
        ({"scope": None}, "Invalid parameter scope: "),
        ({"mode": "sandbox"}, "Invalid parameter mode: sandbox"),
        ({"approval_prompt": "always"}, "Invalid parameter approval_prompt: always"),
        ({"single_select": "yes"}, "Invalid parameter single_select: yes"),
        ({"single_select_vin": "5YJ3E1EA2MC241184"}, "requires single_select=true"),
    ],
)
def test_authorize_other_bad_parameters_show_400_page_with_exit_link(client, override, message):
    response = _page(client, **override)
    assert response.status_code == HTTPStatus.BAD_REQUEST
    html = response.content.decode()
    assert message in html
    exit_href = re.search(r'id="exit" href="([^"]+)"', html).group(1).replace("&amp;", "&")
    assert exit_href.startswith(REDIRECT_URI + "?error=configuration_error&error_description=")
    assert "&status_code=400&error_message=" in exit_href
    assert exit_href.endswith("&state=st-123")


def test_authorize_error_page_escapes_reflected_input(client):
    response = _page(client, client_id="<script>alert(1)</script>")
    html = response.content.decode()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


@pytest.mark.parametrize(
    "scope",
    [
        "read_battery read_odometer",
        "read_battery+read_odometer",
        "required:read_battery read_odometer",
    ],
)
def test_authorize_accepts_space_plus_and_required_prefix(client, scope):
    # Django's test client encodes the dict; also send a raw `+` (urlencode style) and %20.
    assert _page(client, scope=scope).status_code == HTTPStatus.OK
    raw = f"{AUTHORIZE}?response_type=code&client_id=emulator-client-id&redirect_uri={quote(REDIRECT_URI, safe='')}&scope={scope.replace(' ', '+')}"
    assert client.get(raw).status_code == HTTPStatus.OK


def test_authorize_without_make_shows_brand_picker_with_links(client):
    response = _page(client)
    html = response.content.decode()
    assert response.status_code == HTTPStatus.OK
    assert 'id="brand-tesla"' in html
    assert 'name="vehicle"' not in html
    link = re.search(r'id="brand-ford" href="([^"]+)"', html).group(1).replace("&amp;", "&")
    follow = client.get(AUTHORIZE + link)
    for vehicle_id in vehicles_of_make("FORD"):
        assert f'id="vehicle-{vehicle_id}"' in follow.content.decode()


def test_consent_page_lists_brand_vehicles_with_stable_ids_and_sets_nonce_cookie(client):
    response = _page(client, make="tesla")
    html = response.content.decode()
    teslas = vehicles_of_make("TESLA")
    assert len(teslas) == 3
    for vehicle_id in teslas:
        assert (
            f'<input type="checkbox" name="vehicle" id="vehicle-{vehicle_id}" value="{vehicle_id}">'
            in html
        )
    assert vehicles_of_make("FORD")[0] not in html
    assert 'id="allow"' in html
    assert 'id="deny"' in html
    assert 'id="simulate"' in html
    cookie = response.cookies["smartcar_emulator_consent"]
    assert cookie["httponly"]
    assert cookie["samesite"] == "Lax"


def test_allow_redirects_with_code_and_state_exactly(client):
    page = _page(client, make="TESLA")
    chosen = vehicles_of_make("TESLA")[:2]
    response = _post(client, page, vehicle=chosen, action="allow")
    assert response.status_code == HTTPStatus.FOUND
    location = response["Location"]
    match = re.fullmatch(re.escape(REDIRECT_URI) + r"\?code=([0-9a-f-]{36})&state=st-123", location)
    assert match, location
    (grant,) = control.list_grants()
    assert grant["vehicle_ids"] == chosen
    assert grant["make"] == "TESLA"
    assert grant["mode"] == "simulated"
    assert grant["permissions"] == [
        "read_vehicle_info",
        "read_vin",
        "read_battery",
        "read_charge",
        "read_location",
        "read_odometer",
    ]


def test_allow_without_state_sends_no_state(client):
    page = _page(client, make="TESLA", state=None)
    response = _post(client, page, vehicle=vehicles_of_make("TESLA")[:1], action="allow")
    assert re.fullmatch(re.escape(REDIRECT_URI) + r"\?code=[0-9a-f-]{36}", response["Location"])


def test_allow_to_a_custom_scheme_redirect_uri(client):
    page = _page(client, make="KIA", redirect_uri="com.example.app://smartcar")
    response = _post(client, page, vehicle=vehicles_of_make("KIA"), action="allow")
    assert response["Location"].startswith("com.example.app://smartcar?code=")


def test_state_is_percent_encoded_in_the_redirect(client):
    page = _page(client, make="TESLA", state="a b&c=d/é")
    response = _post(client, page, action="deny")
    assert response["Location"] == (
        REDIRECT_URI
        + "?error=access_denied&error_description=User%20denied%20access%20to%20application."
        "&state=a%20b%26c%3Dd%2F%C3%A9"
    )


def test_deny_redirects_with_access_denied_exactly(client):
    page = _page(client, make="TESLA")
    response = _post(client, page, action="deny")
    assert response.status_code == HTTPStatus.FOUND
    assert response["Location"] == (
        REDIRECT_URI
        + "?error=access_denied&error_description=User%20denied%20access%20to%20application.&state=st-123"
    )
    assert control.list_grants() == []


@pytest.mark.parametrize(
    ("outcome", "tail"),
    [
        (
            "no_vehicles",
            "error=no_vehicles&error_description=No%20vehicles%20were%20found%20on%20the%20user%27s%20connected%20services%20account.",
        ),
        (
            "server_error",
            "error=server_error&error_description=Unexpected%20server%20error.%20Please%20try%20again.",
        ),
        (
            "invalid_subscription",
            "error=invalid_subscription&error_description=The%20vehicle%27s%20connected%20services%20subscription%20is%20inactive.",
        ),
        (
            "user_manually_returned_to_application",
            "error=user_manually_returned_to_application&error_description=The%20user%20returned%20to%20the%20application.",
        ),
        (
            "configuration_error",
            "error=configuration_error&error_description=The%20user%20encountered%20an%20error%20and%20chose%20to%20return%20to%20the%20application.&status_code=400&error_message=Simulated%20configuration%20error.",
        ),
    ],
)
def test_simulated_outcomes_redirect_exactly(client, outcome, tail):
    page = _page(client, make="TESLA")
    response = _post(client, page, action="simulate", outcome=outcome)
    assert response.status_code == HTTPStatus.FOUND
    assert response["Location"] == f"{REDIRECT_URI}?{tail}&state=st-123"
    assert control.list_grants() == []


def test_simulated_vehicle_incompatible_carries_vehicle_extras(client):
    page = _page(client, make="FORD")
    ford = next(v for v in control.list_vehicles() if v["model"] == "F-150 Lightning")
    response = _post(
        client, page, action="simulate", outcome="vehicle_incompatible", vehicle=[ford["id"]]
    )
    assert response["Location"] == (
        f"{REDIRECT_URI}?error=vehicle_incompatible"
        "&error_description=The%20vehicle%20is%20not%20compatible%20with%20this%20application."
        f"&vin={ford['vin']}&make=FORD&model=F-150%20Lightning&year=2023&state=st-123"
    )


def test_simulate_is_available_on_the_brand_picker(client):
    page = _page(client)
    response = _post(client, page, action="simulate", outcome="no_vehicles")
    assert response["Location"].startswith(f"{REDIRECT_URI}?error=no_vehicles&")


def test_simulate_with_unknown_outcome_rerenders(client):
    page = _page(client, make="TESLA")
    response = _post(client, page, action="simulate", outcome="<b>x</b>")
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "Pick an outcome." in response.content.decode()


def test_consent_ticket_is_single_use(client):
    page = _page(client, make="TESLA")
    vehicle = vehicles_of_make("TESLA")[:1]
    assert _post(client, page, vehicle=vehicle, action="allow").status_code == HTTPStatus.FOUND
    replay = _post(client, page, vehicle=vehicle, action="allow")
    assert replay.status_code == HTTPStatus.BAD_REQUEST
    assert "Location" not in replay
    assert len(control.list_grants()) == 1


def test_consent_needs_the_nonce_cookie_of_the_browser_that_loaded_it(client):
    from django.test import Client

    page = _page(client, make="TESLA")
    other_browser = Client()
    response = other_browser.post(
        CONSENT,
        {
            "ticket": ticket_of(page.content.decode()),
            "vehicle": vehicles_of_make("TESLA")[:1],
            "action": "allow",
        },
    )
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert control.list_grants() == []


def test_consent_rejects_a_forged_ticket(client):
    _page(client, make="TESLA")
    response = client.post(CONSENT, {"ticket": "forged", "action": "deny"})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "Location" not in response


def test_consent_ticket_expires(client, fake_clock):
    page = _page(client, make="TESLA")
    fake_clock.advance(1800)
    response = _post(client, page, action="deny")
    assert response.status_code == HTTPStatus.BAD_REQUEST


def test_allow_needs_a_vehicle_and_keeps_the_ticket_usable(client):
    page = _page(client, make="TESLA")
    response = _post(client, page, action="allow")
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "Select at least one of the vehicles shown." in response.content.decode()
    again = _post(client, page, action="allow", vehicle=vehicles_of_make("TESLA")[:1])
    assert again.status_code == HTTPStatus.FOUND


def test_allow_rejects_a_vehicle_of_another_brand(client):
    page = _page(client, make="TESLA")
    response = _post(client, page, action="allow", vehicle=vehicles_of_make("FORD")[:1])
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert control.list_grants() == []


def test_single_select_uses_radios_and_refuses_two(client):
    page = _page(client, make="TESLA", single_select="true")
    assert 'type="radio" name="vehicle"' in page.content.decode()
    response = _post(client, page, action="allow", vehicle=vehicles_of_make("TESLA")[:2])
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "Select only one vehicle." in response.content.decode()


def test_single_select_vin_offers_only_that_vehicle_and_wins_over_make(client):
    target = next(v for v in control.list_vehicles() if v["model"] == "ID.4")
    page = _page(client, make="TESLA", single_select="true", single_select_vin=target["vin"])
    html = page.content.decode()
    assert f'id="vehicle-{target["id"]}"' in html
    assert html.count('name="vehicle"') == 1


def test_unknown_make_is_escaped_and_falls_back_to_brand_picker(client):
    page = _page(client, make="<img src=x>")
    html = page.content.decode()
    assert page.status_code == HTTPStatus.OK
    assert "<IMG SRC=X>" not in html
    assert "<img src=x>" not in html
    assert 'id="brand-tesla"' in html


def test_consent_page_loads_no_external_resources(client):
    html = _page(client, make="TESLA").content.decode()
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert "<script" not in html


def test_different_accounts_give_different_user_ids(client):
    ids = []
    for account in ("alice", "bob"):
        page = _page(client, make="TESLA")
        _post(client, page, action="allow", vehicle=vehicles_of_make("TESLA")[:1], account=account)
    ids = [grant["user_id"] for grant in control.list_grants()]
    assert ids[0] != ids[1]


@pytest.mark.parametrize("account", ["", "   ", "x" * 65])
def test_allow_validates_the_account_name(client, account):
    page = _page(client, make="TESLA")
    response = _post(
        client, page, action="allow", vehicle=vehicles_of_make("TESLA")[:1], account=account
    )
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert control.list_grants() == []


def test_nonce_cookie_is_secure_over_https(client):
    response = client.get(AUTHORIZE, authorize_query(make="TESLA"), secure=True)
    assert response.cookies["smartcar_emulator_consent"]["secure"]
    plain = _page(client, make="TESLA")
    assert plain.status_code == HTTPStatus.OK


def test_the_same_browser_keeps_one_nonce_across_pages(client):
    first = _page(client, make="TESLA")
    second = _page(client, make="FORD")
    assert (
        first.cookies["smartcar_emulator_consent"].value
        == second.cookies["smartcar_emulator_consent"].value
    )
    # Both open pages stay usable.
    assert _post(client, first, action="deny").status_code == HTTPStatus.FOUND
    assert _post(client, second, action="deny").status_code == HTTPStatus.FOUND
