"""How a simulated vehicle's state moves over time: a pure function of (vehicle, epoch seconds).

Each vehicle repeats a six-hour day: parked at home, drives to work, parked at work, drives home,
then charges at home until its charge limit (FULLY_CHARGED afterwards). Driving costs state of
charge in proportion to distance; the odometer only grows; position moves along the trip. Vehicles
are offset in time from each other, so at any moment the fleet shows a mix of states.
"""

import math
from dataclasses import dataclass

from smartcar_emulator.fleet import SimulatedVehicle

CYCLE_S = 6 * 3600
# Odometer cycles are counted from here (2025-06-15), so the distance stays plausible.
_ODOMETER_ANCHOR = 1_750_000_000
_PARK_HOME_S = 60 * 60
_DRIVE_S = 40 * 60
_PARK_WORK_S = 80 * 60
# Data is refreshed by the car once a minute: state is sampled at that report time.
REPORT_INTERVAL_S = 60

CHARGING = "CHARGING"
FULLY_CHARGED = "FULLY_CHARGED"
NOT_CHARGING = "NOT_CHARGING"


@dataclass(frozen=True)
class VehicleState:
    soc: float  # 0..1
    range_km: float
    odometer_km: float
    latitude: float
    longitude: float
    is_plugged_in: bool
    charge_state: str
    phase: str
    oem_updated_at: float  # epoch seconds of the car's report


def _lerp(a: tuple[float, float], b: tuple[float, float], f: float) -> tuple[float, float]:
    return (a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f)


def state_at(vehicle: SimulatedVehicle, t: float) -> VehicleState:
    """The vehicle's state as last reported by the car at (or just before) time `t`."""
    reported = math.floor(t / REPORT_INTERVAL_S) * REPORT_INTERVAL_S
    shifted = reported + vehicle.phase_offset_s
    cycles = math.floor(shifted / CYCLE_S)
    local = shifted - cycles * CYCLE_S

    limit = vehicle.charge_limit
    trip_soc = vehicle.trip_km / vehicle.full_range_km
    drive_end_1 = _PARK_HOME_S + _DRIVE_S
    park_end = drive_end_1 + _PARK_WORK_S
    drive_end_2 = park_end + _DRIVE_S

    soc, position, distance = limit, vehicle.home, 0.0
    plugged, charge_state, phase = False, NOT_CHARGING, "parked_home"
    if local < _PARK_HOME_S:
        pass
    elif local < drive_end_1:
        f = (local - _PARK_HOME_S) / _DRIVE_S
        phase, position, distance = "driving", _lerp(vehicle.home, vehicle.work, f), f
        soc = limit - trip_soc * f
    elif local < park_end:
        phase, position, distance, soc = "parked_work", vehicle.work, 1.0, limit - trip_soc
    elif local < drive_end_2:
        f = (local - park_end) / _DRIVE_S
        phase, position, distance = "driving", _lerp(vehicle.work, vehicle.home, f), 1.0 + f
        soc = limit - trip_soc * (1.0 + f)
    else:
        # The charging window (the rest of the cycle) is long enough for the 2-trip deficit.
        low = limit - 2 * trip_soc
        soc = min(limit, low + vehicle.charge_rate_per_min * (local - drive_end_2) / 60)
        plugged, distance, phase = True, 2.0, "charging"
        charge_state = CHARGING if soc < limit else FULLY_CHARGED

    soc = max(0.0, min(1.0, soc))
    cycles_driven = cycles - math.floor(_ODOMETER_ANCHOR / CYCLE_S)
    odometer = vehicle.odometer_base_km + vehicle.trip_km * (2 * cycles_driven + distance)
    return VehicleState(
        soc=round(soc, 4),
        range_km=round(soc * vehicle.full_range_km, 1),
        odometer_km=round(odometer, 1),
        latitude=round(position[0], 6),
        longitude=round(position[1], 6),
        is_plugged_in=plugged,
        charge_state=charge_state,
        phase=phase,
        oem_updated_at=reported,
    )
