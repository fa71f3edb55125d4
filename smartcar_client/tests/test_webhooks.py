import hashlib
import hmac

import pytest

from smartcar_client import webhooks
from smartcar_client.webhooks import challenge_hmac, signature_matches

KEY = "amt-current-0123456789"
OLD_KEY = "amt-previous-9876543210"
BODY = b'{"eventId":"9d0","eventType":"VEHICLE_STATE","data":{"signals":[]}}'


def _sign(key: str, body: bytes) -> str:
    return hmac.new(key.encode(), body, hashlib.sha256).hexdigest()


def test_challenge_hmac_known_vector():
    # RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
    assert challenge_hmac("Jefe", "what do ya want for nothing?") == (
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    )


def test_valid_signature_matches():
    assert signature_matches([KEY], BODY, _sign(KEY, BODY))


def test_uppercase_hex_signature_matches():
    assert signature_matches([KEY], BODY, _sign(KEY, BODY).upper())


def test_flipped_body_byte_does_not_match():
    tampered = BODY.replace(b"9d0", b"9d1")

    assert not signature_matches([KEY], tampered, _sign(KEY, BODY))


def test_reserialised_json_does_not_match():
    spaced = b'{"eventId": "9d0", "eventType": "VEHICLE_STATE", "data": {"signals": []}}'

    assert not signature_matches([KEY], spaced, _sign(KEY, BODY))


@pytest.mark.parametrize("signature", ["", "not-hex", "ü" * 64])
def test_empty_or_garbage_signature_does_not_match(signature: str):
    assert not signature_matches([KEY], BODY, signature)


def test_previous_key_still_matches_during_rotation():
    assert signature_matches([KEY, OLD_KEY], BODY, _sign(OLD_KEY, BODY))


def test_unknown_key_does_not_match():
    assert not signature_matches([KEY, OLD_KEY], BODY, _sign("some-third-key", BODY))


def test_empty_key_is_never_used():
    # An unset "previous" key must not turn into an HMAC with an empty key anyone can compute.
    assert not signature_matches(["", KEY], BODY, _sign("", BODY))


def test_no_keys_never_match():
    assert not signature_matches([], BODY, _sign(KEY, BODY))


def test_comparison_is_constant_time(monkeypatch: pytest.MonkeyPatch):
    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(webhooks.hmac, "compare_digest", spy)

    assert signature_matches([KEY], BODY, _sign(KEY, BODY))
    assert calls
