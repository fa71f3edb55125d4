"""The emulator's control surface as Python functions (tests) — the `_control/` views call these.

`reset`, `set_faults`, `clear_faults`, `get_faults`, `list_grants`, `call_counts`, `list_vehicles`,
`vehicle_state`, `use_clock`, `advance_clock`. Nothing here returns a token or a code.
"""

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from smartcar_emulator import clock, simulation, store
from smartcar_emulator.faults import Faults, parse_faults
from smartcar_emulator.store import locked


def reset(seed: int | None = None) -> None:
    """Forget all grants, tokens, codes, faults and counts; rebuild the fleet from `seed`."""
    store.reset(seed)


def set_faults(vehicle_id: str | None = None, **faults: Any) -> Faults:
    """Replace the faults of one vehicle (or the global ones when `vehicle_id` is None).

    Fields: latency_ms, error_rate (0-1), rate_limit ("VEHICLE"|"SMARTCAR_API"), retry_after,
    revoked ("AUTHENTICATION"|"PERMISSION"|"CONNECTED_SERVICES_ACCOUNT"), asleep, billing,
    malformed_json. Raises ValueError on an unknown field or value, or an unknown vehicle.
    """
    parsed = parse_faults(faults)
    with locked() as state:
        if vehicle_id is None:
            state.global_faults = parsed
        elif vehicle_id in state.vehicles_by_id:
            state.vehicle_faults[vehicle_id] = parsed
        else:
            raise ValueError("unknown vehicle")
    return parsed


def clear_faults() -> None:
    with locked() as state:
        state.global_faults = Faults()
        state.vehicle_faults.clear()


def get_faults() -> dict[str, Any]:
    with locked() as state:
        return {
            "global": state.global_faults.as_dict(),
            "vehicles": {vid: f.as_dict() for vid, f in state.vehicle_faults.items()},
        }


def list_grants() -> list[dict[str, Any]]:
    """Every grant issued since the last reset, oldest first (no tokens)."""
    with locked() as state:
        grants = []
        for grant in state.grants.values():
            grants.append(
                {
                    **asdict(grant),
                    "access_tokens": sum(
                        1 for t in state.access_tokens.values() if t.grant_id == grant.id
                    ),
                    "refresh_tokens": sum(
                        1 for t in state.refresh_tokens.values() if t.grant_id == grant.id
                    ),
                }
            )
        return grants


def call_counts() -> dict[str, Any]:
    """Billable calls per vehicle id (batch sub-requests each count), and per path."""
    with locked() as state:
        vehicle_ids = set(state.vehicles_by_id)
        return {
            "vehicles": {k: v for k, v in state.calls.items() if k in vehicle_ids},
            "paths": {vid: dict(paths) for vid, paths in state.path_calls.items()},
            "other": {k: v for k, v in state.calls.items() if k not in vehicle_ids},
        }


def list_vehicles() -> list[dict[str, Any]]:
    with locked() as state:
        fleet = state.fleet
    return [
        {
            "id": v.id,
            "make": v.make,
            "model": v.model,
            "year": v.year,
            "vin": v.vin,
            "charge_limit": v.charge_limit,
        }
        for v in fleet
    ]


def vehicle_state(vehicle_id: str, at: float | None = None) -> simulation.VehicleState:
    with locked() as state:
        vehicle = state.vehicles_by_id[vehicle_id]
    return simulation.state_at(vehicle, clock.now() if at is None else at)


def use_clock(now_fn: Callable[[], float], sleep_fn: Callable[[float], None] | None = None) -> None:
    """Make the emulator read time from `now_fn` (e.g. a `clock.FakeClock`)."""
    clock.use_clock(now_fn, sleep_fn)


def advance_clock(seconds: float) -> None:
    clock.advance(seconds)


def reset_clock() -> None:
    clock.reset_clock()
