"""One-time secrets of the Connect flow (start ticket, state, browser binding) and their digests.

Only digests are stored. Lookups go by digest, so comparing a presented value never compares the
secret itself; where two digests are compared directly, it is in constant time.
"""

import hashlib
import hmac
import re
import secrets

# 32 random bytes = 256 bits, base64url: 43 characters.
_NONCE_BYTES = 32
# What Smartcar's codes and our nonces look like; anything else is refused before any lookup.
_TOKEN_RE = re.compile(r"^[A-Za-z0-9._~-]{1,512}$")


def new_nonce() -> str:
    return secrets.token_urlsafe(_NONCE_BYTES)


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def digests_match(value: str, expected_digest: str) -> bool:
    return bool(expected_digest) and hmac.compare_digest(digest(value), expected_digest)


def is_well_formed(value: object) -> bool:
    """True for a non-empty string of URL-safe characters of sane length."""
    return isinstance(value, str) and bool(_TOKEN_RE.fullmatch(value))
