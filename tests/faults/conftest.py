"""Fault tests: the project's real client and poller against the emulator over real HTTP.

`live_server` runs Django (with the emulator mounted at `/_smartcar`) in a thread of this
process, so the emulator's in-memory state (grants, faults, call counts) is shared with the
tests. The Smartcar origins point at it and the read timeout is short, so a "slow Smartcar" costs
the suite about a second.
"""

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from smartcar_client.factory import client_from_settings
from smartcar_client.types import TokenSet
from smartcar_emulator import conf, control, oauth, store
from smartcar_emulator.fleet import SimulatedVehicle
from vehicles.models import Vehicle
from vehicles.services import LinkedVehicleInfo, account_link

READ_TIMEOUT = 1.0
_SEEDS = itertools.count(8000)
PERMISSIONS = ["read_battery", "read_charge", "read_location", "read_odometer", "read_vehicle_info"]


@dataclass(frozen=True, eq=False)
class Linked:
    simulated: SimulatedVehicle
    vehicle: Vehicle


class Clock:
    """The poller's clock, started at the real now (tokens expire in real time)."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def emulator(live_server: Any, settings: Any) -> Iterator[str]:
    """The emulator's base URL; every Smartcar origin points at it, read timeout 1 s."""
    base = f"{live_server.url}/_smartcar"
    settings.SMARTCAR_BASE_URL = base
    settings.SMARTCAR_AUTH_URL = base
    settings.SMARTCAR_CONNECT_URL = base
    settings.SMARTCAR_V3_BASE_URL = base
    settings.SMARTCAR_VEHICLE_API = "v3"
    settings.SMARTCAR_READ_TIMEOUT = READ_TIMEOUT
    settings.SMARTCAR_CONNECT_TIMEOUT = READ_TIMEOUT
    settings.SMARTCAR_EMULATOR_CLIENT_ID = settings.SMARTCAR_CLIENT_ID
    settings.SMARTCAR_EMULATOR_CLIENT_SECRET = settings.SMARTCAR_CLIENT_SECRET
    # A fresh seed, so fresh vehicle ids: a slow request of an earlier test that is still
    # sleeping in a server thread cannot add to this test's call counts when it wakes up.
    control.reset(seed=next(_SEEDS))
    yield base
    control.reset()
    # Pooled keep-alive connections to the live server would outlive it.
    client_from_settings()._session.close()


def link_fleet(owner: Any, count: int) -> list[Linked]:
    """`count` emulator vehicles, each with its own grant and account (fresh tokens)."""
    redirect_uri = conf.redirect_uris()[0]
    linked = []
    with store.locked() as state:
        assert count <= len(state.fleet)
        simulated = list(state.fleet[:count])
    for index, vehicle in enumerate(simulated):
        code = oauth.grant_create(
            client_id=conf.client_id(),
            user_id=f"fault-user-{index}",
            make=vehicle.make,
            vehicle_ids=[vehicle.id],
            permissions=PERMISSIONS,
            mode="simulated",
            redirect_uri=redirect_uri,
        )
        pair = oauth.code_exchange(client_id=conf.client_id(), code=code, redirect_uri=redirect_uri)
        result = account_link(
            owner=owner,
            smartcar_user_id=f"fault-user-{index}",
            tokens=TokenSet.from_json(pair.as_json()),
            scopes=PERMISSIONS,
            vehicles=[LinkedVehicleInfo(vehicle.id, make=vehicle.make, model=vehicle.model)],
        )
        linked.append(Linked(vehicle, result.vehicles[0]))
    return linked


def vehicle_calls(simulated: SimulatedVehicle) -> int:
    return int(control.call_counts()["vehicles"].get(simulated.id, 0))
