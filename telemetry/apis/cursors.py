"""Opaque history cursors: a signed (vehicle, recorded_at, id) position.

Signed with SECRET_KEY (django.core.signing, its own salt) so that a client can neither forge a
position nor reuse one vehicle's cursor on another; a cursor that fails any check is a 400 on the
`cursor` field, never a 500. Must never put anything but these three values in a cursor.
"""

from datetime import datetime

from django.core import signing
from rest_framework.exceptions import ValidationError

from telemetry.selectors import HistoryPosition

_SALT = "telemetry.history.cursor"
INVALID_CURSOR = "Invalid cursor."


def cursor_encode(*, vehicle_id: object, position: HistoryPosition) -> str:
    payload = {"v": str(vehicle_id), "t": position.recorded_at.isoformat(), "i": position.id}
    return signing.dumps(payload, salt=_SALT, compress=True)


def cursor_decode(*, vehicle_id: object, cursor: str) -> HistoryPosition:
    """The position in `cursor`; raises a DRF ValidationError naming `cursor` otherwise."""
    position = _position(vehicle_id, cursor)
    if position is None:
        raise ValidationError({"cursor": [INVALID_CURSOR]})
    return position


def _position(vehicle_id: object, cursor: str) -> HistoryPosition | None:
    try:
        payload = signing.loads(cursor, salt=_SALT)
        recorded_at = datetime.fromisoformat(payload["t"])
        reading_id = payload["i"]
        same_vehicle = payload["v"] == str(vehicle_id)
    except (signing.BadSignature, ValueError, KeyError, TypeError):
        return None
    if not same_vehicle or recorded_at.tzinfo is None or type(reading_id) is not int:
        return None
    return HistoryPosition(recorded_at=recorded_at, id=reading_id)
