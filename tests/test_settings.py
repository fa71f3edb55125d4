"""Start-up configuration: one clear line for a missing setting, a clean `check --deploy`."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

PRODUCTION_ENV = {
    "DEBUG": "false",
    "SECRET_KEY": "prod-like-secret-key-6bd1f0e2a9c84d7fb3e5a1c0d2f4e6a8b9c7d5e3f1a2b4c6",
    "TOKEN_ENCRYPTION_KEYS": "prod-like-token-key-4c2e8a6b0d9f7e5c3a1b2d4f6e8a0c9b",
    "JWT_SECRET": "prod-like-jwt-secret-9e7c5a3b1d2f4e6a8c0b9d7f5e3a1c2b",
    "SMARTCAR_CLIENT_ID": "client-id",
    "SMARTCAR_CLIENT_SECRET": "client-secret",
    "SMARTCAR_REDIRECT_URI": "https://api.example.com/api/v1/smartcar/redirect",
    "ALLOWED_HOSTS": "api.example.com",
    "SMARTCAR_MANAGEMENT_TOKEN": "prod-like-management-token",
}


def manage(*args: str, env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    clean = {
        "PATH": os.environ["PATH"],
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        **env,
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    "missing",
    [
        "SECRET_KEY",
        "TOKEN_ENCRYPTION_KEYS",
        "JWT_SECRET",
        "SMARTCAR_CLIENT_ID",
        "SMARTCAR_CLIENT_SECRET",
        "SMARTCAR_REDIRECT_URI",
    ],
)
def test_missing_setting_stops_startup_with_one_line(missing, tmp_path):
    env = {key: value for key, value in PRODUCTION_ENV.items() if key != missing}

    result = manage("check", env=env, tmp_path=tmp_path)

    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert missing in lines[0]
    assert "Traceback" not in result.stderr


def test_production_like_environment_passes_check_deploy(tmp_path):
    result = manage(
        "check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION_ENV, tmp_path=tmp_path
    )

    assert result.returncode == 0, result.stderr + result.stdout


@pytest.mark.parametrize(
    ("override", "check_id"),
    [
        (
            {"SMARTCAR_REDIRECT_URI": "http://api.example.com/api/v1/smartcar/redirect"},
            "oauth_smartcar.E001",
        ),
        ({"FRONTEND_URL": "http://spa.example.com"}, "oauth_smartcar.E003"),
        ({"TOKEN_ENCRYPTION_KEYS": "short"}, "vehicles.E"),
        ({"TOKEN_ENCRYPTION_KEYS": PRODUCTION_ENV["SECRET_KEY"]}, "vehicles.E"),
        ({"JWT_SECRET": "too-short"}, "core.E"),
    ],
)
def test_unsafe_production_values_fail_checks(override, check_id, tmp_path):
    result = manage("check", env={**PRODUCTION_ENV, **override}, tmp_path=tmp_path)

    assert result.returncode != 0
    assert check_id in result.stderr + result.stdout


def test_debug_run_needs_no_configuration(tmp_path):
    result = manage("check", env={"DEBUG": "true"}, tmp_path=tmp_path)

    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("database_url", "prepared", "expect_prepared"),
    [
        ("postgres://u@db.example.com:5432/app", "true", True),
        ("postgres://u@db.example.com:5432/app", "false", False),
        ("postgres://u@db.example.com:5432/app", None, True),  # on unless turned off
        ("sqlite:///{tmp}/db.sqlite3", "true", False),  # a PostgreSQL setting only
    ],
)
def test_database_connection_settings(tmp_path, database_url, prepared, expect_prepared):
    env = {"DEBUG": "true", "DATABASE_URL": database_url.format(tmp=tmp_path)}
    if prepared is not None:
        env["DATABASE_PREPARED_STATEMENTS"] = prepared
    show = (
        "from django.conf import settings; d = settings.DATABASES['default']; "
        "o = d.get('OPTIONS', {}); "
        "print(d['CONN_MAX_AGE'], d['CONN_HEALTH_CHECKS'], "
        "o.get('server_side_binding'), o.get('prepare_threshold'))"
    )

    result = manage("shell", "-c", show, env=env, tmp_path=tmp_path)

    assert result.returncode == 0, result.stderr
    # Connections are reused on both databases (a connect per request cost ~0.6 ms on SQLite).
    expected = "60 True True 5" if expect_prepared else "60 True None None"
    assert result.stdout.strip().splitlines()[-1] == expected


@pytest.mark.parametrize(("value", "expected"), [(None, "True"), ("false", "False")])
def test_connection_health_checks_are_on_unless_turned_off(tmp_path, value, expected):
    env = {"DEBUG": "true"}
    if value is not None:
        env["DATABASE_CONN_HEALTH_CHECKS"] = value
    show = "from django.conf import settings; print(settings.DATABASES['default']['CONN_HEALTH_CHECKS'])"

    result = manage("shell", "-c", show, env=env, tmp_path=tmp_path)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == expected


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ({}, "background 1000 5.0"),
        (
            {
                "SMARTCAR_WEBHOOK_PROCESSING": "INLINE",
                "SMARTCAR_WEBHOOK_QUEUE_SIZE": "50",
                "SMARTCAR_WEBHOOK_DRAIN_SECONDS": "2.5",
            },
            "inline 50 2.5",
        ),
        ({"SMARTCAR_WEBHOOK_PROCESSING": "worker"}, "worker 1000 5.0"),
    ],
)
def test_webhook_processing_settings(tmp_path, override, expected):
    show = (
        "from django.conf import settings as s; print(s.SMARTCAR_WEBHOOK_PROCESSING, "
        "s.SMARTCAR_WEBHOOK_QUEUE_SIZE, s.SMARTCAR_WEBHOOK_DRAIN_SECONDS)"
    )

    result = manage("shell", "-c", show, env={"DEBUG": "true", **override}, tmp_path=tmp_path)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == expected


@pytest.mark.parametrize(
    "override",
    [
        {"SMARTCAR_WEBHOOK_PROCESSING": "later"},
        {"SMARTCAR_WEBHOOK_QUEUE_SIZE": "0"},
        {"SMARTCAR_WEBHOOK_DRAIN_SECONDS": "-1"},
    ],
    ids=["mode", "queue-size", "drain-seconds"],
)
def test_bad_webhook_processing_setting_stops_startup_with_one_line(override, tmp_path):
    result = manage("check", env={**PRODUCTION_ENV, **override}, tmp_path=tmp_path)

    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert next(iter(override)) in lines[0]
    assert "Traceback" not in result.stderr
