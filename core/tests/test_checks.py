"""JWT system checks (core.E001 to E008, core.W001), each gate both ways."""

import os
import subprocess
import sys

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from django.core.checks import Tags, run_checks

from config.env import BASE_DIR
from core.checks import check_jwt_settings

JWKS_URL = "https://login.example.test/.well-known/jwks.json"


def ids():
    return sorted(message.id for message in check_jwt_settings())


def public_pem(private_key) -> str:
    return (
        private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@pytest.fixture(scope="module")
def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key():
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def rs256(settings):
    settings.JWT_ALGORITHMS = ["RS256"]
    settings.JWT_PUBLIC_KEY = ""
    settings.JWT_JWKS_URL = ""


def test_test_settings_pass():
    assert ids() == []


def test_checks_are_registered_for_start_up(settings):
    settings.JWT_LEEWAY_SECONDS = 61
    found = [message.id for message in run_checks(tags=[Tags.security])]
    assert "core.E005" in found


@pytest.mark.parametrize(("leeway", "stops"), [("61", True), ("30", False)])
def test_manage_py_check_runs_the_jwt_checks(leeway, stops):
    # A fresh process: this module's own import of core.checks cannot register them there, so
    # this fails if CoreConfig.ready() stops importing core.checks.
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test"}
    env["JWT_LEEWAY_SECONDS"] = leeway
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--tag", "security"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert ("core.E005" in result.stderr) is stops
    assert (result.returncode != 0) is stops


def test_nothing_is_checked_with_debug_on(settings):
    settings.DEBUG = True
    settings.JWT_ALGORITHMS = ["none"]
    settings.JWT_LEEWAY_SECONDS = 3600
    assert ids() == []


@pytest.mark.parametrize("algorithms", [["none"], [], ["HS256", "XX999"], ["EdDSA"]])
def test_unknown_or_empty_algorithms(settings, algorithms):
    settings.JWT_ALGORITHMS = algorithms
    assert ids() == ["core.E001"]


@pytest.mark.parametrize("algorithms", [["HS256"], ["HS256", "HS384"]])
def test_known_hs_algorithms_pass(settings, algorithms):
    settings.JWT_SECRET = "s" * 48
    settings.JWT_ALGORITHMS = algorithms
    assert ids() == []


@pytest.mark.parametrize("algorithms", [["HS256", "RS256"], ["ES256", "HS512"], ["RS256", "ES256"]])
def test_mixed_families(settings, algorithms):
    settings.JWT_ALGORITHMS = algorithms
    assert ids() == ["core.E002"]


@pytest.mark.parametrize(
    ("algorithms", "secret", "expected"),
    [
        (["HS256"], "s" * 31, ["core.E003"]),
        (["HS256"], "s" * 32, []),
        (["HS256"], "", ["core.E003"]),
        (["HS512"], "s" * 63, ["core.E003"]),
        (["HS512"], "s" * 64, []),
        (["HS256"], "é" * 16, []),  # 32 bytes in UTF-8, 16 characters
    ],
)
def test_hs_secret_length(settings, algorithms, secret, expected):
    settings.JWT_ALGORITHMS = algorithms
    settings.JWT_SECRET = secret
    assert ids() == expected


def test_asymmetric_without_any_key(rs256):
    assert ids() == ["core.E004"]


def test_asymmetric_with_public_key_passes(settings, rs256, rsa_key):
    settings.JWT_PUBLIC_KEY = public_pem(rsa_key)
    assert ids() == []


def test_es256_with_public_key_passes(settings, ec_key):
    settings.JWT_ALGORITHMS = ["ES256"]
    settings.JWT_PUBLIC_KEY = public_pem(ec_key)
    assert ids() == []


def test_asymmetric_with_jwks_url_passes(settings, rs256):
    settings.JWT_JWKS_URL = JWKS_URL
    assert ids() == []


@pytest.mark.parametrize("leeway", [-1, 61, 3600])
def test_leeway_out_of_range(settings, leeway):
    settings.JWT_LEEWAY_SECONDS = leeway
    assert ids() == ["core.E005"]


@pytest.mark.parametrize("leeway", [0, 30, 60])
def test_leeway_in_range(settings, leeway):
    settings.JWT_LEEWAY_SECONDS = leeway
    assert ids() == []


def test_public_key_not_a_pem(settings, rs256):
    settings.JWT_PUBLIC_KEY = "not a key"
    assert ids() == ["core.E006"]


def test_public_key_of_the_wrong_type(settings, rs256, ec_key):
    settings.JWT_PUBLIC_KEY = public_pem(ec_key)
    assert ids() == ["core.E006"]


def test_public_key_too_short(settings, rs256):
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 (the point)
    settings.JWT_PUBLIC_KEY = public_pem(weak)
    assert ids() == ["core.E006"]


def test_private_key_in_place_of_the_public_key(settings, rs256, rsa_key):
    settings.JWT_PUBLIC_KEY = rsa_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    assert ids() == ["core.E006"]


def test_jwks_url_must_be_https(settings, rs256):
    settings.JWT_JWKS_URL = "http://login.example.test/jwks.json"
    assert ids() == ["core.E007"]


@pytest.mark.parametrize(
    ("seconds", "expected"), [(0, ["core.E008"]), (-5, ["core.E008"]), (1, [])]
)
def test_jwks_cache_seconds(settings, rs256, seconds, expected):
    settings.JWT_JWKS_URL = JWKS_URL
    settings.JWT_JWKS_CACHE_SECONDS = seconds
    assert ids() == expected


def test_both_public_key_and_jwks_url_warn(settings, rs256, rsa_key):
    settings.JWT_PUBLIC_KEY = public_pem(rsa_key)
    settings.JWT_JWKS_URL = JWKS_URL
    assert ids() == ["core.W001"]


def test_messages_never_contain_the_secret(settings):
    settings.JWT_SECRET = "short-secret-value"
    messages = check_jwt_settings()
    assert messages
    for message in messages:
        assert "short-secret-value" not in f"{message.msg} {message.hint}"
