"""JWTAuthentication through a real DRF view: SECURITY.md B1 to B4, B6 to B9 as HTTP outcomes."""

import base64
import json
import logging
import time
from http import HTTPStatus

import jwt
import pytest
import responses
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.contrib.auth import get_user_model
from jwt.algorithms import RSAAlgorithm
from rest_framework.response import Response
from rest_framework.test import APIRequestFactory
from rest_framework.views import APIView

from core.authentication import JWTAuthentication
from core.jwt_tokens import reset_jwks_client

pytestmark = pytest.mark.django_db

User = get_user_model()
JWKS_URL = "https://login.example.test/.well-known/jwks.json"
UNAUTHENTICATED_BODY = {"error": "missing_user", "message": "Please sign in again."}


class WhoAmIApi(APIView):
    """Uses the project's default authentication and permission classes from settings."""

    unauthenticated_error = ("missing_user", "Please sign in again.")

    def get(self, request):
        return Response(
            {
                "username": request.user.get_username(),
                "email": request.user.email,
                "sub": request.auth["sub"],
            }
        )


def claims(**overrides):
    now = int(time.time())
    base = {"sub": "user-1", "iat": now, "exp": now + 300, "email": "one@example.test"}
    base.update(overrides)
    return {name: value for name, value in base.items() if value is not None}


def token_for(settings, payload=None, *, key=None, algorithm="HS256", headers=None):
    return jwt.encode(
        claims() if payload is None else payload,
        key or settings.JWT_SECRET,
        algorithm=algorithm,
        headers=headers,
    )


def call(token=None, *, path="/whoami", authorization=None):
    extra = {}
    if authorization is not None:
        extra["HTTP_AUTHORIZATION"] = authorization
    elif token is not None:
        extra["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    response = WhoAmIApi.as_view()(APIRequestFactory().get(path, **extra))
    response.render()
    return response


def assert_unauthenticated(response):
    assert response.status_code == HTTPStatus.UNAUTHORIZED
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'
    assert json.loads(response.content) == UNAUTHENTICATED_BODY


@pytest.fixture(scope="module")
def rsa_keys():
    return [rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(2)]


@pytest.fixture(autouse=True)
def _fresh_jwks_client():
    reset_jwks_client()
    yield
    reset_jwks_client()


# --- The happy path and the user mapping (B7) -----------------------------------------------------


def test_valid_token_creates_the_user_and_returns_200(settings):
    response = call(token_for(settings))
    assert response.status_code == HTTPStatus.OK
    assert json.loads(response.content) == {
        "username": "user-1",
        "email": "one@example.test",
        "sub": "user-1",
    }
    user = User.objects.get(username="user-1")
    assert user.email == "one@example.test"
    assert not user.has_usable_password()


def test_known_user_with_unchanged_email_costs_one_query(settings, django_assert_num_queries):
    User.objects.create_user(username="user-1", email="one@example.test")
    token = token_for(settings)
    with django_assert_num_queries(1):
        assert call(token).status_code == HTTPStatus.OK


def test_changed_email_is_stored(settings):
    User.objects.create_user(username="user-1", email="old@example.test")
    assert call(token_for(settings, claims(email="new@example.test"))).status_code == HTTPStatus.OK
    assert User.objects.get(username="user-1").email == "new@example.test"


@pytest.mark.parametrize("email", [None, "", "not-an-email", 42, "a" * 250 + "@example.test"])
def test_missing_or_invalid_email_claim_leaves_stored_email(settings, email):
    User.objects.create_user(username="user-1", email="kept@example.test")
    assert call(token_for(settings, claims(email=email))).status_code == HTTPStatus.OK
    assert User.objects.get(username="user-1").email == "kept@example.test"


def test_custom_user_claim_names_the_user(settings):
    settings.JWT_USER_CLAIM = "uid"
    assert call(token_for(settings, claims(uid="u-42"))).status_code == HTTPStatus.OK
    assert User.objects.filter(username="u-42").exists()


def test_inactive_user_gets_401(settings):
    User.objects.create_user(username="user-1", is_active=False)
    assert_unauthenticated(call(token_for(settings)))


def test_user_claim_longer_than_the_username_column_gets_401(settings):
    response = call(token_for(settings, claims(sub="u" * 151)))
    assert_unauthenticated(response)
    assert not User.objects.exists()


def test_user_claim_holding_nul_gets_401_and_no_user(settings):
    # PostgreSQL stores no NUL in text: without the check, a 500 on the user's insert.
    response = call(token_for(settings, claims(sub="user\x00-1")))

    assert_unauthenticated(response)
    assert not User.objects.exists()


@pytest.mark.parametrize("sub", [42, "", "  "])
def test_non_string_or_empty_user_claim_gets_401(settings, sub):
    assert_unauthenticated(call(token_for(settings, claims(sub=sub))))
    assert not User.objects.exists()


# --- Header handling and 401 semantics (B8) ---------------------------------------------------------


def test_missing_header_gets_401_with_bearer_challenge_and_the_views_body():
    assert_unauthenticated(call())


def test_authenticate_header_is_the_bearer_challenge():
    # Without it DRF would turn 401 into 403 for views rendered by its default handler.
    request = APIRequestFactory().get("/whoami")
    assert JWTAuthentication().authenticate_header(request) == 'Bearer realm="api"'


@pytest.mark.parametrize(
    "authorization",
    ["Bearer", "Bearer ", "Bearer a b", "Bearer not-a-jwt", "Basic dXNlcjpwYXNz", "Token abc"],
)
def test_malformed_or_foreign_authorization_header_gets_401(authorization):
    assert_unauthenticated(call(authorization=authorization))


def test_scheme_is_case_insensitive(settings):
    assert call(authorization=f"bearer {token_for(settings)}").status_code == HTTPStatus.OK


def test_non_ascii_token_gets_401(settings):
    assert_unauthenticated(call(authorization="Bearer é" + token_for(settings)))


def _bad_tokens(settings):
    now = int(time.time())
    header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
    body = base64.urlsafe_b64encode(json.dumps(claims()).encode()).rstrip(b"=").decode()
    return {
        "expired": token_for(settings, claims(iat=now - 600, exp=now - 61)),
        "wrong_key": token_for(settings, key="some-other-secret-that-is-long-enough-0123"),
        "alg_none": f"{header}.{body}.",
        "hs512": token_for(settings, algorithm="HS512", key="k" * 64),
        "malformed": "eyJhbGciOiJIUzI1NiJ9.bm90IGpzb24.c2ln",
        "no_exp": token_for(settings, claims(exp=None)),
        "no_iat": token_for(settings, claims(iat=None)),
        "no_sub": token_for(settings, claims(sub=None)),
        "future_iat": token_for(settings, claims(iat=now + 61, exp=now + 600)),
        "future_nbf": token_for(settings, claims(nbf=now + 61)),
    }


@pytest.mark.parametrize(
    "kind",
    [
        "expired",
        "wrong_key",
        "alg_none",
        "hs512",
        "malformed",
        "no_exp",
        "no_iat",
        "no_sub",
        "future_iat",
        "future_nbf",
    ],
)
def test_bad_token_gets_401_and_is_never_echoed_or_logged(settings, caplog, kind):
    token = _bad_tokens(settings)[kind]
    with caplog.at_level(logging.DEBUG):
        response = call(token)
    assert_unauthenticated(response)
    content = response.content.decode()
    assert token not in content
    assert token not in caplog.text
    # PyJWT's own words stay out of the body too.
    for library_text in ("Signature", "expired", "algorithm", "claim", "not yet valid"):
        assert library_text not in content
    assert not User.objects.exists()


def test_token_expired_10_seconds_ago_is_accepted(settings):
    now = int(time.time())
    assert call(token_for(settings, claims(iat=now - 600, exp=now - 10))).status_code == 200


def test_refusal_reason_is_logged_without_the_token(settings, caplog):
    now = int(time.time())
    token = token_for(settings, claims(exp=now - 3600, iat=now - 7200))
    with caplog.at_level(logging.INFO, logger="core.authentication"):
        call(token)
    assert "JWT refused: expired" in caplog.text


# --- Issuer / audience through the view (B3) -------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "status"),
    [
        ({"iss": "https://login.example.test", "aud": "ev-api"}, HTTPStatus.OK),
        ({"iss": "https://evil.example.test", "aud": "ev-api"}, HTTPStatus.UNAUTHORIZED),
        ({"iss": "https://login.example.test", "aud": "billing"}, HTTPStatus.UNAUTHORIZED),
        ({"iss": "https://login.example.test"}, HTTPStatus.UNAUTHORIZED),
    ],
)
def test_issuer_and_audience_are_enforced_when_configured(settings, overrides, status):
    settings.JWT_ISSUER = "https://login.example.test"
    settings.JWT_AUDIENCE = "ev-api"
    assert call(token_for(settings, claims(**overrides))).status_code == status


# --- No token in the URL (B9) ----------------------------------------------------------------------


@pytest.mark.parametrize("query", ["?access_token=abc", "?token=", "?jwt=abc", "?Access_Token=x"])
def test_token_in_query_string_is_refused_even_with_a_good_header(settings, query):
    response = call(token_for(settings), path="/whoami" + query)
    assert_unauthenticated(response)
    assert not User.objects.exists()


def test_other_query_parameters_do_not_matter(settings):
    assert call(token_for(settings), path="/whoami?page=2&tokens=1").status_code == HTTPStatus.OK


# --- Asymmetric issuers (B1, B6) --------------------------------------------------------------------


def test_rs256_with_public_key_authenticates(settings, rsa_keys):
    settings.JWT_ALGORITHMS = ["RS256"]
    settings.JWT_PUBLIC_KEY = (
        rsa_keys[0]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    assert call(jwt.encode(claims(), rsa_keys[0], algorithm="RS256")).status_code == HTTPStatus.OK
    assert_unauthenticated(call(jwt.encode(claims(), rsa_keys[1], algorithm="RS256")))
    # An HS256 token signed with the configured secret is refused once RS256 is pinned.
    assert_unauthenticated(call(token_for(settings)))


@pytest.fixture
def jwks_settings(settings):
    settings.JWT_ALGORITHMS = ["RS256"]
    settings.JWT_JWKS_URL = JWKS_URL


def _jwks(rsa_keys):
    return {
        "keys": [
            {**RSAAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": f"key-{n}"}
            for n, key in enumerate(rsa_keys, start=1)
        ]
    }


@responses.activate
def test_jwks_kid_selection_and_unknown_kid(jwks_settings, rsa_keys):
    responses.get(JWKS_URL, json=_jwks(rsa_keys))
    good = jwt.encode(claims(), rsa_keys[1], algorithm="RS256", headers={"kid": "key-2"})
    assert call(good).status_code == HTTPStatus.OK
    unknown = jwt.encode(claims(), rsa_keys[1], algorithm="RS256", headers={"kid": "key-7"})
    assert_unauthenticated(call(unknown))


@responses.activate
def test_jwks_endpoint_down_gets_401_not_500(jwks_settings, rsa_keys):
    responses.get(JWKS_URL, status=503)
    token = jwt.encode(claims(), rsa_keys[0], algorithm="RS256", headers={"kid": "key-1"})
    assert_unauthenticated(call(token))
