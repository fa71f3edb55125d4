"""Vehicle API v3 signals: which exist, what permission each needs, and their JSON:API item form.

Codes are `<group>-<name>` lower-cased (API-FACTS §10); lookups also accept the camelCase form
(`tractionBatteryStateOfCharge`). Times in `meta` are epoch milliseconds.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from smartcar_emulator import simulation
from smartcar_emulator.fleet import SimulatedVehicle

KM_PER_MILE = 1.609344


@dataclass(frozen=True)
class SignalSpec:
    code: str
    name: str
    group: str
    permission: str
    body: Callable[[SimulatedVehicle, simulation.VehicleState, str], dict[str, Any]]


def _distance(km: float, unit_system: str) -> dict[str, Any]:
    if unit_system == "imperial":
        return {"value": round(km / KM_PER_MILE, 1), "unit": "miles"}
    return {"value": round(km, 1), "unit": "kilometers"}


def _detailed(state: simulation.VehicleState) -> str:
    return state.charge_state


SIGNALS: tuple[SignalSpec, ...] = (
    SignalSpec(
        "tractionbattery-stateofcharge",
        "StateOfCharge",
        "TractionBattery",
        "read_battery",
        lambda v, s, u: {"value": round(s.soc * 100, 2), "unit": "percent"},
    ),
    SignalSpec(
        "tractionbattery-range",
        "Range",
        "TractionBattery",
        "read_battery",
        lambda v, s, u: _distance(s.range_km, u),
    ),
    SignalSpec(
        "charge-ischarging",
        "IsCharging",
        "Charge",
        "read_charge",
        lambda v, s, u: {"value": s.charge_state == simulation.CHARGING},
    ),
    SignalSpec(
        "charge-ischargingcableconnected",
        "IsChargingCableConnected",
        "Charge",
        "read_charge",
        lambda v, s, u: {"value": s.is_plugged_in},
    ),
    SignalSpec(
        "charge-detailedchargingstatus",
        "DetailedChargingStatus",
        "Charge",
        "read_charge",
        lambda v, s, u: {"value": _detailed(s)},
    ),
    SignalSpec(
        "location-preciselocation",
        "PreciseLocation",
        "Location",
        "read_location",
        lambda v, s, u: {"latitude": s.latitude, "longitude": s.longitude, "unit": "degrees"},
    ),
    SignalSpec(
        "odometer-traveleddistance",
        "TraveledDistance",
        "Odometer",
        "read_odometer",
        lambda v, s, u: _distance(s.odometer_km, u),
    ),
    SignalSpec(
        "vehicleidentification-vin",
        "Vin",
        "VehicleIdentification",
        "read_vin",
        lambda v, s, u: {"value": v.vin},
    ),
)

_BY_KEY = {spec.code.replace("-", ""): spec for spec in SIGNALS}


def find(code: str) -> SignalSpec | None:
    """The signal for a kebab-case or camelCase code, or None."""
    return _BY_KEY.get(code.replace("-", "").lower())


def item(
    spec: SignalSpec,
    vehicle: SimulatedVehicle,
    state: simulation.VehicleState,
    *,
    unit_system: str,
    now: float,
    self_link: str,
) -> dict[str, Any]:
    return {
        "id": spec.code,
        "type": "signal",
        "attributes": {
            "code": spec.code,
            "name": spec.name,
            "group": spec.group,
            "status": {"value": "SUCCESS"},
            "body": spec.body(vehicle, state, unit_system),
        },
        "meta": {
            "retrievedAt": int(now * 1000),
            "oemUpdatedAt": int(state.oem_updated_at * 1000),
        },
        "links": {"self": self_link},
    }
