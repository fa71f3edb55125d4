"""Smartcar webhook crypto (API-FACTS §7a): the VERIFY challenge answer and `SC-Signature` checks.

Both are HMAC-SHA256 keyed with the Application Management Token. Signatures are checked over the
raw request bytes (never re-serialised JSON) with `hmac.compare_digest`. Must never log a key,
a signature or a body.
"""

import hashlib
import hmac
from collections.abc import Sequence


def challenge_hmac(key: str, challenge: str) -> str:
    """Lower-case hex HMAC-SHA256 of the challenge: the `{"challenge": …}` VERIFY answer."""
    return hmac.new(key.encode(), challenge.encode(), hashlib.sha256).hexdigest()


def signature_matches(keys: Sequence[str], body: bytes, signature: str) -> bool:
    """True if `signature` is the hex HMAC of the raw `body` under any of `keys` (current and
    previous management token, for rotation). Empty keys and an empty signature never match."""
    if not signature:
        return False
    # Compare bytes: compare_digest refuses non-ASCII str, and a header can hold anything.
    given = signature.strip().lower().encode("utf-8", "replace")
    matched = False
    for key in keys:
        if not key:
            continue
        expected = hmac.new(key.encode(), body, hashlib.sha256).hexdigest().encode()
        # No early exit, so the time taken does not tell which key matched.
        matched |= hmac.compare_digest(expected, given)
    return matched
