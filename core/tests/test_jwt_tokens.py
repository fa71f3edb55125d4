"""decode_jwt / issue_jwt: SECURITY.md B1 to B6 at the verification layer (no HTTP, no database)."""

import base64
import hashlib
import hmac
import json
import time
import warnings

import jwt
import pytest
import requests
import responses
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import RSAAlgorithm
from jwt.warnings import InsecureKeyLengthWarning

from core.jwt_tokens import (
    InvalidJWTError,
    JWTConfigurationError,
    algorithm_family,
    decode_jwt,
    issue_jwt,
    reset_jwks_client,
)

JWKS_URL = "https://login.example.test/.well-known/jwks.json"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(**overrides):
    now = int(time.time())
    base = {"sub": "user-1", "iat": now, "exp": now + 300}
    base.update(overrides)
    return {name: value for name, value in base.items() if value is not None}


def hs_token(settings, payload=None, *, key=None, algorithm="HS256", headers=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)
        return jwt.encode(
            claims() if payload is None else payload,
            key or settings.JWT_SECRET,
            algorithm=algorithm,
            headers=headers,
        )


def pem(public_key) -> str:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def jwk(private_key, kid):
    return {**RSAAlgorithm.to_jwk(private_key.public_key(), as_dict=True), "kid": kid, "use": "sig"}


@pytest.fixture(scope="module")
def rsa_keys():
    return [rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(3)]


@pytest.fixture(scope="module")
def ec_key():
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(autouse=True)
def _fresh_jwks_client():
    reset_jwks_client()
    yield
    reset_jwks_client()


@pytest.fixture
def rs256_pem(settings, rsa_keys):
    settings.JWT_ALGORITHMS = ["RS256"]
    settings.JWT_PUBLIC_KEY = pem(rsa_keys[0].public_key())
    return rsa_keys[0]


@pytest.fixture
def jwks(settings, rsa_keys):
    settings.JWT_ALGORITHMS = ["RS256"]
    settings.JWT_PUBLIC_KEY = ""
    settings.JWT_JWKS_URL = JWKS_URL
    body = {"keys": [jwk(rsa_keys[0], "key-1"), jwk(rsa_keys[1], "key-2")]}
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(JWKS_URL, json=body)
        yield mock


def refused(token: str) -> InvalidJWTError:
    with pytest.raises(InvalidJWTError) as info:
        decode_jwt(token)
    return info.value


# --- HS256: the default -----------------------------------------------------------------------


def test_valid_hs256_token_returns_claims(settings):
    payload = claims(email="a@example.test")
    assert decode_jwt(hs_token(settings, payload)) == payload


def test_error_message_never_contains_token_or_library_text(settings):
    token = hs_token(settings, claims(exp=int(time.time()) - 3600))
    error = refused(token)
    assert error.reason == "expired"
    assert str(error) == "The bearer token is not valid (expired)."
    assert error.__cause__ is None
    assert error.__suppress_context__ is True


def test_unknown_kid_text_from_library_is_not_passed_on(jwks, rsa_keys):
    # PyJWT quotes the attacker's `kid` in its message; ours must not.
    kid = "<script>evil-kid</script>"
    token = jwt.encode(claims(), rsa_keys[0], algorithm="RS256", headers={"kid": kid})
    error = refused(token)
    assert error.reason == "unknown_key"
    assert kid not in str(error)
    assert "Unable to find" not in str(error)


@pytest.mark.parametrize(
    "token", ["", "not-a-jwt", "a.b.c", "eyJhbGciOiJIUzI1NiJ9.e30", "x" * 9000]
)
def test_malformed_token_is_refused(token):
    assert refused(token).reason == "malformed"


def test_oversized_token_is_refused_before_any_parsing(settings):
    # Correctly signed, but a bearer token this large is not one our login issues.
    token = hs_token(settings, claims(padding="p" * 9000))
    assert refused(token).reason == "malformed"


@pytest.mark.parametrize("split", [" ", "é", "\t"])
def test_token_with_characters_inside_is_refused(settings, split):
    header, body, signature = hs_token(settings).split(".")
    assert refused(f"{header}.{body}.{signature[:10]}{split}{signature[10:]}").reason == "malformed"


def test_wrong_hmac_key_is_refused(settings):
    token = hs_token(settings, key="another-secret-of-enough-length-" + "x" * 16)
    assert refused(token).reason == "signature"


def test_alg_none_is_refused(settings):
    header = b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    body = b64url(json.dumps(claims()).encode())
    assert refused(f"{header}.{body}.").reason == "algorithm"


def test_hs512_is_refused_when_hs256_is_pinned(settings):
    assert refused(hs_token(settings, algorithm="HS512")).reason == "algorithm"


def test_hs512_is_accepted_when_pinned_with_a_long_enough_secret(settings):
    settings.JWT_ALGORITHMS = ["HS512"]
    settings.JWT_SECRET = "s" * 64
    assert decode_jwt(hs_token(settings, algorithm="HS512"))["sub"] == "user-1"


def test_short_secret_refuses_every_token(settings):
    # enforce_minimum_key_length: a 31-byte HS256 key never verifies anything.
    settings.JWT_SECRET = "s" * 31
    assert refused(hs_token(settings)).reason == "key"


@pytest.mark.parametrize("missing", ["exp", "iat", "sub"])
def test_missing_required_claim_is_refused(settings, missing):
    token = hs_token(settings, claims(**{missing: None}))
    assert refused(token).reason == "missing_claim"


def test_custom_user_claim_is_required(settings):
    settings.JWT_USER_CLAIM = "uid"
    assert refused(hs_token(settings, claims())).reason == "missing_claim"
    assert decode_jwt(hs_token(settings, claims(uid="u-7")))["uid"] == "u-7"


@pytest.mark.parametrize("value", [42, "", "   ", ["a"], {"id": "a"}, True])
def test_user_claim_must_be_a_non_empty_string(settings, value):
    settings.JWT_USER_CLAIM = "uid"
    token = hs_token(settings, claims(uid=value))
    assert refused(token).reason == "user_claim"


def test_numeric_sub_is_refused(settings):
    assert refused(hs_token(settings, claims(sub=42))).reason == "user_claim"


# --- Clock (B4) --------------------------------------------------------------------------------


def test_expired_within_leeway_is_accepted(settings):
    now = int(time.time())
    assert decode_jwt(hs_token(settings, claims(iat=now - 100, exp=now - 10)))


@pytest.mark.parametrize("seconds_ago", [35, 61])
def test_expired_beyond_leeway_is_refused(settings, seconds_ago):
    now = int(time.time())
    token = hs_token(settings, claims(iat=now - 600, exp=now - seconds_ago))
    assert refused(token).reason == "expired"


def test_leeway_comes_from_settings(settings):
    settings.JWT_LEEWAY_SECONDS = 0
    now = int(time.time())
    assert refused(hs_token(settings, claims(exp=now - 10))).reason == "expired"


@pytest.mark.parametrize("claim", ["iat", "nbf"])
def test_future_iat_or_nbf_beyond_leeway_is_refused(settings, claim):
    future = int(time.time()) + 61
    token = hs_token(settings, claims(**{claim: future, "exp": future + 300}))
    assert refused(token).reason == "not_yet_valid"


@pytest.mark.parametrize("claim", ["iat", "nbf"])
def test_future_iat_or_nbf_within_leeway_is_accepted(settings, claim):
    future = int(time.time()) + 10
    assert decode_jwt(hs_token(settings, claims(**{claim: future})))


# --- Issuer and audience (B3) --------------------------------------------------------------------


@pytest.fixture
def iss_aud(settings):
    settings.JWT_ISSUER = "https://login.example.test"
    settings.JWT_AUDIENCE = "ev-api"


def test_matching_issuer_and_audience_are_accepted(settings, iss_aud):
    token = hs_token(settings, claims(iss="https://login.example.test", aud="ev-api"))
    assert decode_jwt(token)["aud"] == "ev-api"


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"iss": "https://evil.example.test", "aud": "ev-api"}, "issuer"),
        ({"aud": "ev-api"}, "missing_claim"),
        ({"iss": "https://login.example.test", "aud": "another-service"}, "audience"),
        ({"iss": "https://login.example.test"}, "missing_claim"),
        # Strict with one audience: a list that contains it is still refused (RFC 8725 §3.9).
        ({"iss": "https://login.example.test", "aud": ["ev-api", "other"]}, "audience"),
    ],
)
def test_wrong_or_missing_issuer_or_audience_is_refused(settings, iss_aud, overrides, reason):
    assert refused(hs_token(settings, claims(**overrides))).reason == reason


def test_token_with_audience_is_refused_when_none_is_configured(settings):
    # PyJWT's own rule, kept: a token meant for some audience is not for an API that has none.
    assert refused(hs_token(settings, claims(aud="ev-api"))).reason == "audience"


def test_several_configured_audiences_accept_any_of_them(settings):
    settings.JWT_AUDIENCE = "ev-api, ev-admin"
    assert decode_jwt(hs_token(settings, claims(aud=["ev-admin"])))
    assert refused(hs_token(settings, claims(aud="other"))).reason == "audience"


# --- Explicit typing (B7, optional JWT_TYP) -----------------------------------------------------


def test_required_typ_refuses_other_kinds_of_jwt(settings):
    settings.JWT_TYP = "at+jwt"
    assert refused(hs_token(settings)).reason == "type"  # PyJWT's default typ is "JWT"
    assert decode_jwt(hs_token(settings, headers={"typ": "application/AT+JWT"}))


# --- Configuration refused at use time (B1) ---------------------------------------------------


@pytest.mark.parametrize(
    "algorithms", [["HS256", "RS256"], ["none"], ["HS256", "none"], [], ["EdDSA"]]
)
def test_mixed_unknown_or_empty_algorithms_are_a_configuration_error(settings, algorithms):
    settings.JWT_ALGORITHMS = algorithms
    with pytest.raises(JWTConfigurationError):
        decode_jwt(hs_token(settings))


@pytest.mark.parametrize(
    ("algorithms", "family"),
    [(["HS256"], "HS"), (["HS256", "HS512"], "HS"), (["RS256", "PS256"], "RS"), (["ES256"], "ES")],
)
def test_algorithm_family(algorithms, family):
    assert algorithm_family(algorithms) == family


def test_asymmetric_without_key_is_a_configuration_error(settings, rsa_keys):
    settings.JWT_ALGORITHMS = ["RS256"]
    with pytest.raises(JWTConfigurationError):
        decode_jwt(jwt.encode(claims(), rsa_keys[0], algorithm="RS256"))


# --- RS256 / ES256 with a PEM public key -------------------------------------------------------


def test_rs256_with_public_key_is_accepted(rs256_pem):
    assert decode_jwt(jwt.encode(claims(), rs256_pem, algorithm="RS256"))["sub"] == "user-1"


def test_rs256_signed_by_another_key_is_refused(rs256_pem, rsa_keys):
    assert refused(jwt.encode(claims(), rsa_keys[1], algorithm="RS256")).reason == "signature"


def test_rs_to_hs_key_confusion_is_refused(settings, rs256_pem):
    # The classic forgery: HMAC-sign with the (public) PEM the server verifies RS256 with.
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64url(json.dumps(claims()).encode())
    signing_input = f"{header}.{body}".encode()
    key = settings.JWT_PUBLIC_KEY.encode()
    signature = b64url(hmac.new(key, signing_input, hashlib.sha256).digest())
    assert refused(f"{header}.{body}.{signature}").reason == "algorithm"


def test_es256_with_public_key_is_accepted(settings, ec_key):
    settings.JWT_ALGORITHMS = ["ES256"]
    settings.JWT_PUBLIC_KEY = pem(ec_key.public_key())
    assert decode_jwt(jwt.encode(claims(), ec_key, algorithm="ES256"))


def test_embedded_jwk_header_is_ignored(rs256_pem, rsa_keys):
    # The attacker signs with their key and ships its public half in the header: never used.
    attacker = rsa_keys[2]
    headers = {"jwk": RSAAlgorithm.to_jwk(attacker.public_key(), as_dict=True)}
    token = jwt.encode(claims(), attacker, algorithm="RS256", headers=headers)
    assert refused(token).reason == "signature"


# --- RS256 with a JWK Set (B6) -------------------------------------------------------------------


def test_jwks_key_is_chosen_by_kid(jwks, rsa_keys):
    for kid, key in (("key-1", rsa_keys[0]), ("key-2", rsa_keys[1])):
        token = jwt.encode(claims(sub=kid), key, algorithm="RS256", headers={"kid": kid})
        assert decode_jwt(token)["sub"] == kid
    assert len(jwks.calls) == 1  # the set is cached, not fetched per token


def test_jwks_token_signed_by_another_kids_key_is_refused(jwks, rsa_keys):
    token = jwt.encode(claims(), rsa_keys[1], algorithm="RS256", headers={"kid": "key-1"})
    assert refused(token).reason == "signature"


def test_jwks_unknown_kid_is_refused_without_trying_other_keys(jwks, rsa_keys):
    token = jwt.encode(claims(), rsa_keys[0], algorithm="RS256", headers={"kid": "key-9"})
    assert refused(token).reason == "unknown_key"


def test_jwks_token_without_kid_is_refused(jwks, rsa_keys):
    token = jwt.encode(claims(), rsa_keys[0], algorithm="RS256")
    assert refused(token).reason == "unknown_key"


def test_jku_and_x5u_headers_are_never_fetched(jwks, rsa_keys):
    attacker_url = "https://evil.example.test/jwks.json"
    evil = jwks.get(attacker_url, json={"keys": [jwk(rsa_keys[2], "key-1")]})
    headers = {"kid": "key-1", "jku": attacker_url, "x5u": attacker_url}
    token = jwt.encode(claims(), rsa_keys[2], algorithm="RS256", headers=headers)
    assert refused(token).reason == "signature"
    assert evil.call_count == 0


@pytest.mark.parametrize(
    "failure",
    [
        {"status": 500, "json": {"error": "down"}},
        # A redirect is not followed, and its body is not read as a JWK Set even when it is one.
        {
            "status": 302,
            "headers": {"Location": "https://evil.example.test/jwks.json"},
            "json": "VALID_JWKS",
        },
        {"status": 200, "body": "<html>not json</html>"},
        {"status": 200, "json": ["not", "an", "object"]},
        {"body": requests.ConnectionError("refused")},
        {"body": requests.ReadTimeout("slow")},
    ],
)
def test_jwks_endpoint_failure_refuses_the_token(settings, rsa_keys, failure):
    settings.JWT_ALGORITHMS = ["RS256"]
    settings.JWT_JWKS_URL = JWKS_URL
    token = jwt.encode(claims(), rsa_keys[0], algorithm="RS256", headers={"kid": "key-1"})
    if failure.get("json") == "VALID_JWKS":
        failure = {**failure, "json": {"keys": [jwk(rsa_keys[0], "key-1")]}}
    with responses.RequestsMock() as mock:
        mock.get(JWKS_URL, **failure)
        assert refused(token).reason == "jwks_unavailable"


def test_jwks_client_is_rebuilt_when_the_url_setting_changes(settings, rsa_keys):
    settings.JWT_ALGORITHMS = ["RS256"]
    other_url = "https://login2.example.test/jwks.json"
    token = jwt.encode(claims(), rsa_keys[1], algorithm="RS256", headers={"kid": "key-2"})
    with responses.RequestsMock() as mock:
        mock.get(JWKS_URL, json={"keys": [jwk(rsa_keys[0], "key-1")]})
        mock.get(other_url, json={"keys": [jwk(rsa_keys[1], "key-2")]})
        settings.JWT_JWKS_URL = JWKS_URL
        refused(token)
        settings.JWT_JWKS_URL = other_url
        assert decode_jwt(token)["sub"] == "user-1"


# --- issue_jwt -----------------------------------------------------------------------------------


def test_issue_jwt_round_trips_through_decode(settings):
    token = issue_jwt("alice", email="alice@example.test", ttl_seconds=120)
    decoded = decode_jwt(token)
    assert decoded["sub"] == "alice"
    assert decoded["email"] == "alice@example.test"
    assert decoded["exp"] - decoded["iat"] == 120
    assert jwt.get_unverified_header(token)["alg"] == "HS256"


def test_issue_jwt_adds_configured_issuer_audience_claim_and_type(settings):
    settings.JWT_ISSUER = "https://login.example.test"
    settings.JWT_AUDIENCE = "ev-api"
    settings.JWT_USER_CLAIM = "uid"
    settings.JWT_TYP = "at+jwt"
    decoded = decode_jwt(issue_jwt("bob"))
    assert decoded["uid"] == "bob"
    assert decoded["iss"] == "https://login.example.test"
    assert decoded["aud"] == "ev-api"
    assert "email" not in decoded


def test_issue_jwt_needs_an_hs_algorithm(settings, rsa_keys):
    settings.JWT_ALGORITHMS = ["RS256"]
    settings.JWT_PUBLIC_KEY = pem(rsa_keys[0].public_key())
    with pytest.raises(JWTConfigurationError, match="HS"):
        issue_jwt("alice")


def test_issue_jwt_needs_a_secret(settings):
    settings.JWT_SECRET = ""
    with pytest.raises(JWTConfigurationError, match="JWT_SECRET is not set"):
        issue_jwt("alice")


def test_issue_jwt_refuses_a_short_secret(settings):
    settings.JWT_SECRET = "s" * 31
    with pytest.raises(JWTConfigurationError, match="32 bytes"):
        issue_jwt("alice")


@pytest.mark.parametrize(("user_id", "ttl"), [("", 60), ("  ", 60), ("alice", 0), ("alice", -5)])
def test_issue_jwt_refuses_bad_input(settings, user_id, ttl):
    with pytest.raises(ValueError):
        issue_jwt(user_id, ttl_seconds=ttl)
