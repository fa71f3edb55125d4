"""Smartcar's permission (scope) names and the parsing Connect applies to `scope`."""

import re

READ_PERMISSIONS = (
    "read_alerts",
    "read_battery",
    "read_charge",
    "read_charge_locations",
    "read_charge_records",
    "read_charge_events",
    "read_climate",
    "read_compass",
    "read_diagnostics",
    "read_engine_oil",
    "read_extended_vehicle_info",
    "read_fuel",
    "read_location",
    "read_odometer",
    "read_security",
    "read_service_history",
    "read_speedometer",
    "read_thermometer",
    "read_tires",
    "read_user_profile",
    "read_vehicle_info",
    "read_vin",
)
CONTROL_PERMISSIONS = (
    "control_charge",
    "control_climate",
    "control_navigation",
    "control_security",
    "control_pin",
    "control_trunk",
)
KNOWN = frozenset(READ_PERMISSIONS + CONTROL_PERMISSIONS)
REQUIRED_PREFIX = "required:"


def parse_scope(raw: str) -> tuple[list[str], list[str]]:
    """(granted permission names in order, the subset marked `required:`).

    Accepts space- and `+`-separated lists (a literal `+` survives when the client percent-encodes
    it). Raises ValueError naming the first unknown permission.
    """
    permissions: list[str] = []
    required: list[str] = []
    for item in re.split(r"[\s+]+", raw.strip()):
        if not item:
            continue
        name = item.removeprefix(REQUIRED_PREFIX)
        if name not in KNOWN:
            raise ValueError(item)
        if name not in permissions:
            permissions.append(name)
        if item.startswith(REQUIRED_PREFIX) and name not in required:
            required.append(name)
    if not permissions:
        raise ValueError(raw)
    return permissions, required
