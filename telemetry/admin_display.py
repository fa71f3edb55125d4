"""How the telemetry admin pages show values: the vehicle's state row, a masked VIN, a map
link and the one-line outcome of "poll now".

Must never put a value into markup unescaped (format_html only) or show upstream text: a poll
error is shown by type and code, as `smartcar_client.errors` builds its message.
"""

from django.utils.html import format_html

from core.errors import ApplicationError
from smartcar_client.errors import SmartcarError
from telemetry.models import Reading, TelemetryState
from telemetry.services.readings import PollResult
from vehicles.models import Vehicle


def telemetry_state(vehicle: Vehicle) -> TelemetryState | None:
    """The vehicle's state row as select_related loaded it (None when it has none yet)."""
    try:
        return vehicle.telemetry_state
    except TelemetryState.DoesNotExist:
        return None


def latest_reading(vehicle: Vehicle) -> Reading | None:
    state = telemetry_state(vehicle)
    return state.latest_reading if state is not None else None


def masked_vin(vin: str) -> str:
    """The last six characters only: enough to tell cars apart on the phone."""
    if not vin:
        return "-"
    return "•" * max(len(vin) - 6, 0) + vin[-6:]


def map_link(latitude: float | None, longitude: float | None) -> str:
    if latitude is None or longitude is None:
        return "-"
    lat, lon = f"{latitude:.5f}", f"{longitude:.5f}"
    return format_html(
        '{}, {} (<a href="https://www.openstreetmap.org/?mlat={}&amp;mlon={}#map=15/{}/{}" '
        'rel="noopener noreferrer" target="_blank">map</a>)',
        lat,
        lon,
        lat,
        lon,
        lat,
        lon,
    )


def describe_poll(result: PollResult) -> str:
    """One line for the admin message: outcome, calls, and a mapped error (never upstream text)."""
    label = TelemetryState.Outcome(result.outcome).label
    text = f"Poll now: {label}; {result.calls} Smartcar call(s)"
    if result.reading is not None:
        text += f"; reading of {result.reading.recorded_at:%Y-%m-%d %H:%M:%S} UTC"
        text += " stored" if result.stored else " (no newer data)"
    error = result.error
    if isinstance(error, SmartcarError):
        # Built only from status, type, code and request id (smartcar_client.errors).
        text += f"; {error}"
    elif isinstance(error, ApplicationError):
        text += f"; {error.code}"
    elif error is not None:
        text += f"; {type(error).__name__}"
    if result.retry_after:
        text += f"; retry after {result.retry_after} s"
    return text
