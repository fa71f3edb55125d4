"""vehicle_update (nickname, primary switching) and vehicle_disconnect (Smartcar revoke)."""

import pytest
import requests
from django.db import connection

from core.errors import UpstreamError
from smartcar_client.types import TokenSet
from vehicles.fields import UNREADABLE
from vehicles.models import SmartcarAccount, Vehicle
from vehicles.services import (
    LinkedVehicleInfo,
    VehicleDisconnectedError,
    account_link,
    vehicle_disconnect,
    vehicle_update,
)

pytestmark = pytest.mark.django_db

API = "https://api.smartcar.test/v2.0"
TOKEN_URL = "https://auth.smartcar.test/oauth/token"


def link(user, vehicle_ids=("vid-1", "vid-2"), smartcar_user_id="sc-user-1"):
    return account_link(
        owner=user,
        smartcar_user_id=smartcar_user_id,
        tokens=TokenSet.from_json(
            {"access_token": "access-1", "refresh_token": "refresh-1", "expires_in": 7200}
        ),
        scopes=["read_battery"],
        vehicles=[LinkedVehicleInfo(vid) for vid in vehicle_ids],
    )


def by_vid(vid: str) -> Vehicle:
    return Vehicle.objects.get(smartcar_vehicle_id=vid)


def revoke_url(vid: str) -> str:
    return f"{API}/vehicles/{vid}/application"


# --- vehicle_update ---------------------------------------------------------------------------


def test_vehicle_update_sets_nickname_only(user):
    link(user)

    vehicle_update(vehicle=by_vid("vid-2"), nickname="Blue")

    assert by_vid("vid-2").nickname == "Blue"
    assert (by_vid("vid-1").is_primary, by_vid("vid-2").is_primary) == (True, False)


def test_vehicle_update_primary_moves_the_flag(user):
    link(user)

    vehicle_update(vehicle=by_vid("vid-2"), is_primary=True)

    assert (by_vid("vid-1").is_primary, by_vid("vid-2").is_primary) == (False, True)


def test_vehicle_update_primary_false_just_unsets(user):
    link(user)

    vehicle_update(vehicle=by_vid("vid-1"), is_primary=False)

    assert Vehicle.objects.filter(is_primary=True).count() == 0


def test_vehicle_update_primary_clears_flag_left_on_a_disconnected_row(user):
    link(user)
    # A disconnected row still holding the flag (as an old link may leave it).
    Vehicle.objects.filter(smartcar_vehicle_id="vid-1").update(status="disconnected")

    vehicle_update(vehicle=by_vid("vid-2"), is_primary=True)

    assert (by_vid("vid-1").is_primary, by_vid("vid-2").is_primary) == (False, True)


def test_vehicle_update_disconnected_vehicle_cannot_become_primary(user):
    link(user)
    Vehicle.objects.filter(smartcar_vehicle_id="vid-2").update(status="disconnected")

    with pytest.raises(VehicleDisconnectedError):
        vehicle_update(vehicle=by_vid("vid-2"), is_primary=True)

    assert by_vid("vid-1").is_primary is True


def test_vehicle_update_leaves_other_owners_primary_alone(user, other_user):
    link(user)
    link(other_user, vehicle_ids=("vid-9",), smartcar_user_id="sc-user-9")

    vehicle_update(vehicle=by_vid("vid-2"), is_primary=True)

    assert by_vid("vid-9").is_primary is True


# --- vehicle_disconnect -----------------------------------------------------------------------


def test_vehicle_disconnect_revokes_at_smartcar_and_keeps_tokens_for_the_other_vehicle(
    user, smartcar_api
):
    link(user)
    call = smartcar_api.delete(revoke_url("vid-1"), json={"status": "success"})

    vehicle = vehicle_disconnect(vehicle=by_vid("vid-1"))

    assert call.call_count == 1
    assert call.calls[0].request.headers["Authorization"] == "Bearer access-1"
    assert vehicle.status == Vehicle.Status.DISCONNECTED
    stored = by_vid("vid-1")
    assert stored.status == Vehicle.Status.DISCONNECTED
    assert stored.disconnected_at is not None
    assert stored.is_primary is False
    # The primary flag moves to the remaining live vehicle.
    assert by_vid("vid-2").is_primary is True
    account = SmartcarAccount.objects.get()
    assert account.status == SmartcarAccount.Status.ACTIVE
    assert account.access_token == "access-1"


def test_vehicle_disconnect_last_vehicle_deletes_the_tokens(user, smartcar_api):
    link(user, vehicle_ids=("vid-1",))
    smartcar_api.delete(revoke_url("vid-1"), json={"status": "success"})

    vehicle_disconnect(vehicle=by_vid("vid-1"))

    account = SmartcarAccount.objects.get()
    assert account.status == SmartcarAccount.Status.DISCONNECTED
    assert (account.access_token, account.refresh_token) == (None, None)
    assert (account.access_expires_at, account.refresh_expires_at) == (None, None)


def test_vehicle_disconnect_already_revoked_permission_still_disconnects(user, smartcar_api):
    link(user, vehicle_ids=("vid-1",))
    smartcar_api.delete(
        revoke_url("vid-1"),
        status=403,
        json={"type": "PERMISSION", "code": None, "description": "no", "requestId": "r1"},
    )

    vehicle_disconnect(vehicle=by_vid("vid-1"))

    assert by_vid("vid-1").status == Vehicle.Status.DISCONNECTED
    assert SmartcarAccount.objects.get().access_token is None


def test_vehicle_disconnect_authentication_then_dead_grant_still_disconnects(user, smartcar_api):
    link(user, vehicle_ids=("vid-1",))
    revoke = smartcar_api.delete(
        revoke_url("vid-1"),
        status=401,
        json={"type": "AUTHENTICATION", "code": None, "description": "x", "requestId": "r1"},
    )
    refresh = smartcar_api.post(
        TOKEN_URL, status=400, json={"error": "invalid_grant", "error_description": "gone"}
    )

    vehicle_disconnect(vehicle=by_vid("vid-1"))

    assert (revoke.call_count, refresh.call_count) == (1, 1)
    assert by_vid("vid-1").status == Vehicle.Status.DISCONNECTED
    assert SmartcarAccount.objects.get().status == SmartcarAccount.Status.DISCONNECTED


@pytest.mark.parametrize(
    "answer",
    [
        {"status": 500, "json": {"type": "SERVER", "code": None, "description": "x"}},
        {"status": 429, "json": {"type": "RATE_LIMIT", "code": "VEHICLE", "description": "x"}},
        {"body": requests.ConnectTimeout()},
    ],
    ids=["server", "rate-limit", "timeout"],
)
def test_vehicle_disconnect_smartcar_down_changes_nothing(user, smartcar_api, answer):
    link(user)
    smartcar_api.delete(revoke_url("vid-1"), **answer)

    with pytest.raises(UpstreamError):
        vehicle_disconnect(vehicle=by_vid("vid-1"))

    stored = by_vid("vid-1")
    assert (stored.status, stored.is_primary, stored.disconnected_at) == ("active", True, None)
    account = SmartcarAccount.objects.get()
    assert (account.status, account.access_token) == ("active", "access-1")


def test_vehicle_disconnect_unreadable_tokens_skips_smartcar(user, smartcar_api):
    link(user, vehicle_ids=("vid-1",))
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE vehicles_smartcaraccount SET access_token = %s, refresh_token = %s",
            [b"not a ciphertext", b"not a ciphertext"],
        )
    vehicle = by_vid("vid-1")
    assert vehicle.account is not None
    assert vehicle.account.access_token is UNREADABLE

    vehicle_disconnect(vehicle=vehicle)  # smartcar_api fails any unmocked call

    assert len(smartcar_api.calls) == 0
    assert by_vid("vid-1").status == Vehicle.Status.DISCONNECTED
    account = SmartcarAccount.objects.get()
    assert (account.status, account.access_token) == ("disconnected", None)


def test_vehicle_disconnect_account_needing_reauth_disconnects_locally(user, smartcar_api):
    link(user, vehicle_ids=("vid-1",))
    SmartcarAccount.objects.update(status=SmartcarAccount.Status.NEEDS_REAUTH)

    vehicle_disconnect(vehicle=by_vid("vid-1"))

    assert len(smartcar_api.calls) == 0
    assert by_vid("vid-1").status == Vehicle.Status.DISCONNECTED


def test_vehicle_disconnect_twice_is_a_no_op(user, smartcar_api):
    link(user, vehicle_ids=("vid-1",))
    call = smartcar_api.delete(revoke_url("vid-1"), json={"status": "success"})
    vehicle_disconnect(vehicle=by_vid("vid-1"))

    vehicle_disconnect(vehicle=by_vid("vid-1"))

    assert call.call_count == 1
