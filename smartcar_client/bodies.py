"""JSON from Smartcar (API responses, webhook bodies) refused when a string in it holds NUL.

No documented body carries one, and nothing we keep may: PostgreSQL stores no NUL in text or
jsonb, so a NUL that got through would fail the write that stores it (a 500, a 503 retried
for ever, a poll that cannot record its result) instead of the call that brought it.
"""

from typing import Any

import requests

# JSON can spell NUL only as this escape: text without it cannot hold one.
_NUL_ESCAPE = "\\u0000"


class NulInBodyError(ValueError):
    """A JSON body with NUL in a key or a string value."""


def response_json(response: requests.Response) -> Any:
    """`response.json()`; raises ValueError for a body that is not JSON or holds NUL."""
    body = response.json()
    refuse_nul(response.text, body)
    return body


def refuse_nul(text: str, parsed: Any) -> None:
    """Raises NulInBodyError when `parsed` (the JSON document `text`) holds NUL anywhere."""
    if _NUL_ESCAPE in text and _holds_nul(parsed):
        raise NulInBodyError("NUL in a JSON body")


def _holds_nul(data: Any) -> bool:
    pending = [data]
    while pending:  # iterative: nesting as deep as the parser accepts must not recurse here
        value = pending.pop()
        if isinstance(value, str):
            if "\x00" in value:
                return True
        elif isinstance(value, dict):
            pending.extend(value.keys())
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
    return False
