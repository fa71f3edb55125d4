"""`manage.py issue_jwt`: prints one token, which decode_jwt accepts."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from core.jwt_tokens import decode_jwt


def run(*args):
    stdout, stderr = StringIO(), StringIO()
    call_command("issue_jwt", *args, stdout=stdout, stderr=stderr)
    return stdout.getvalue(), stderr.getvalue()


def test_prints_only_the_token_on_one_line():
    stdout, stderr = run("alice")
    assert stdout.endswith("\n")
    assert stdout.count("\n") == 1
    token = stdout.strip()
    assert token.count(".") == 2
    assert stderr == ""
    claims = decode_jwt(token)
    assert claims["sub"] == "alice"
    assert "email" not in claims
    assert claims["exp"] - claims["iat"] == 3600


def test_email_and_ttl_options():
    stdout, _ = run("bob", "--email", "bob@example.test", "--ttl", "90")
    claims = decode_jwt(stdout.strip())
    assert claims["sub"] == "bob"
    assert claims["email"] == "bob@example.test"
    assert claims["exp"] - claims["iat"] == 90


def test_without_hs_secret_is_a_clear_command_error(settings):
    settings.JWT_SECRET = ""
    with pytest.raises(CommandError, match="JWT_SECRET is not set"):
        run("alice")


def test_with_an_asymmetric_algorithm_is_a_command_error(settings):
    settings.JWT_ALGORITHMS = ["RS256"]
    with pytest.raises(CommandError, match="HS"):
        run("alice")


@pytest.mark.parametrize("ttl", ["0", "-60"])
def test_non_positive_ttl_is_a_command_error(ttl):
    with pytest.raises(CommandError, match="TTL"):
        run("alice", "--ttl", ttl)
