"""The simulated vehicles: a fixed catalogue, made concrete (ids, VINs, places) from a seed.

Everything here is a pure function of the seed: the same seed always yields the same fleet, with the
same vehicle ids, VINs and home/work places. How a vehicle's state moves over time lives in
`simulation`.
"""

import math
import random
import uuid
from dataclasses import dataclass

# (make, model, year, WMI + VDS (8 chars), usable battery kWh, full range km)
_CATALOGUE: tuple[tuple[str, str, int, str, float, float], ...] = (
    ("TESLA", "Model 3", 2021, "5YJ3E1EA", 75.0, 500.0),
    ("TESLA", "Model Y", 2023, "7SAYGDEE", 75.0, 455.0),
    ("TESLA", "Model S", 2022, "5YJSA1E5", 95.0, 600.0),
    ("FORD", "Mustang Mach-E", 2022, "3FMTK3SU", 88.0, 440.0),
    ("FORD", "F-150 Lightning", 2023, "1FTVW1EL", 98.0, 370.0),
    ("VOLKSWAGEN", "ID.4", 2022, "WVGDMPE2", 77.0, 420.0),
    ("VOLKSWAGEN", "ID.3", 2021, "WVWZZZE1", 58.0, 390.0),
    ("HYUNDAI", "Ioniq 5", 2023, "KM8KN4AE", 74.0, 430.0),
    ("KIA", "EV6", 2022, "KNDC34LA", 74.0, 480.0),
    ("BMW", "i4", 2023, "WBY73AW0", 81.0, 520.0),
    ("NISSAN", "Leaf", 2020, "1N4AZ1CP", 40.0, 240.0),
)

# Home regions (lat, lon) the vehicles live around; which one is picked depends on the seed.
_REGIONS = (
    (37.7749, -122.4194),  # San Francisco
    (52.5200, 13.4050),  # Berlin
    (52.3676, 4.9041),  # Amsterdam
    (42.3314, -83.0458),  # Detroit
    (48.1351, 11.5820),  # Munich
)

_YEAR_CODES = {2019: "K", 2020: "L", 2021: "M", 2022: "N", 2023: "P", 2024: "R", 2025: "S"}
_VIN_VALUES = {
    **{str(d): d for d in range(10)},
    **dict(zip("ABCDEFGH", range(1, 9), strict=True)),
    **dict(zip("JKLMN", range(1, 6), strict=True)),
    "P": 7,
    "R": 9,
    **dict(zip("STUVWXYZ", range(2, 10), strict=True)),
}
_VIN_WEIGHTS = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)


@dataclass(frozen=True)
class SimulatedVehicle:
    id: str
    make: str
    model: str
    year: int
    vin: str
    capacity_kwh: float
    full_range_km: float
    home: tuple[float, float]
    work: tuple[float, float]
    odometer_base_km: float
    charge_limit: float
    phase_offset_s: float
    charge_rate_per_min: float

    @property
    def trip_km(self) -> float:
        # Roads are longer than the straight line between home and work.
        return 1.3 * _distance_km(self.home, self.work)


def _distance_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    lat = math.radians((a[0] + b[0]) / 2)
    dy = (a[0] - b[0]) * 111.32
    dx = (a[1] - b[1]) * 111.32 * math.cos(lat)
    return math.hypot(dx, dy)


def vin_check_digit(vin17: str) -> str:
    """The ISO 3779 / North American check digit (position 9) for a 17-character VIN."""
    total = sum(_VIN_VALUES[ch] * weight for ch, weight in zip(vin17, _VIN_WEIGHTS, strict=True))
    remainder = total % 11
    return "X" if remainder == 10 else str(remainder)


def _make_vin(rng: random.Random, prefix8: str, year: int) -> str:
    plant = rng.choice("ABCFGPRU")
    serial = f"{rng.randrange(100_000, 999_999)}"
    draft = f"{prefix8}0{_YEAR_CODES[year]}{plant}{serial}"
    return draft[:8] + vin_check_digit(draft) + draft[9:]


def build_fleet(seed: int) -> tuple[SimulatedVehicle, ...]:
    """Every simulated vehicle for this seed, in catalogue order."""
    vehicles = []
    for index, (make, model, year, prefix, capacity, full_range) in enumerate(_CATALOGUE):
        rng = random.Random(f"smartcar-emulator:{seed}:{index}")  # noqa: S311 - seeded on purpose
        region = rng.choice(_REGIONS)
        home = (region[0] + rng.uniform(-0.08, 0.08), region[1] + rng.uniform(-0.08, 0.08))
        # Work is 15-40 km away, so a commute visibly costs state of charge.
        work = (
            home[0] + rng.uniform(0.1, 0.22) * rng.choice((-1, 1)),
            home[1] + rng.uniform(0.1, 0.22) * rng.choice((-1, 1)),
        )
        vehicles.append(
            SimulatedVehicle(
                id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                make=make,
                model=model,
                year=year,
                vin=_make_vin(rng, prefix, year),
                capacity_kwh=capacity,
                full_range_km=full_range,
                home=(round(home[0], 6), round(home[1], 6)),
                work=(round(work[0], 6), round(work[1], 6)),
                odometer_base_km=round(rng.uniform(3_000, 30_000), 1),
                charge_limit=rng.choice((0.8, 0.9, 1.0)),
                phase_offset_s=rng.uniform(0, 6 * 3600),
                charge_rate_per_min=rng.uniform(0.004, 0.007),
            )
        )
    return tuple(vehicles)


def makes(fleet: tuple[SimulatedVehicle, ...]) -> list[str]:
    return sorted({vehicle.make for vehicle in fleet})


def user_id_for(seed: int, make: str, account: str) -> str:
    """The stable Smartcar user id of an OEM account; the webhook command derives the same one."""
    rng = random.Random(f"smartcar-emulator-user:{seed}:{make}:{account}")  # noqa: S311
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))
