"""Test settings: base with fixed fake Smartcar origins and credentials, and faster hashing.

Values are set through the environment before base is read, so the production start-up checks run
exactly as in production (DEBUG stays off). DATABASE_URL is left alone: CI runs the suite on SQLite
and again on PostgreSQL.
"""

import os

_TEST_ENV = {
    "DEBUG": "false",
    "SECRET_KEY": "test-secret-key-" + "s" * 60,
    "TOKEN_ENCRYPTION_KEYS": "test-token-key-" + "k" * 40,
    "JWT_SECRET": "test-jwt-secret-" + "j" * 40,
    "JWT_ALGORITHMS": "HS256",
    "SMARTCAR_CLIENT_ID": "test-client-id",
    "SMARTCAR_CLIENT_SECRET": "test-client-secret-value",
    "SMARTCAR_REDIRECT_URI": "https://api.example.test/api/v1/smartcar/redirect",
    "SMARTCAR_BASE_URL": "https://api.smartcar.test",
    "SMARTCAR_AUTH_URL": "https://auth.smartcar.test",
    "SMARTCAR_CONNECT_URL": "https://connect.smartcar.test",
    "SMARTCAR_V3_BASE_URL": "https://vehicle.api.smartcar.test",
    "SMARTCAR_MODE": "live",
    "SMARTCAR_MANAGEMENT_TOKEN": "test-management-token",
    "ALLOWED_HOSTS": "testserver,api.example.test,localhost,127.0.0.1",
    "SECURE_SSL_REDIRECT": "false",
    "SECURE_HSTS_SECONDS": "0",
}
for _key in list(_TEST_ENV):
    # The handoff URLs stay unset unless a test sets them with `settings`.
    os.environ[_key] = _TEST_ENV[_key]
for _key in (
    "SMARTCAR_APP_HANDOFF_URL",
    "SMARTCAR_OAUTH_FAILURE_URL",
    "APP_HOME_URL",
    "TANK_TRACK_APP_HOME_URL",
    "APP_DEEPLINK",
    "TANK_TRACK_APP_DEEPLINK",
    "FRONTEND_URL",
    "PUBLIC_BASE_URL",
    "JWT_AUDIENCE",
    "JWT_ISSUER",
    "JWT_PUBLIC_KEY",
    "JWT_JWKS_URL",
    "SMARTCAR_SCOPES",
    "API_PREFIX",
):
    os.environ.pop(_key, None)

from config.settings.base import *  # noqa: E402

# A test runs inside one transaction that the background thread's connection cannot see: tests
# process webhook events in the request, and the background path has tests of its own.
SMARTCAR_WEBHOOK_PROCESSING = "inline"

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# The emulator is mounted in tests (never with DEBUG off elsewhere): end-to-end tests point the
# Smartcar origins at it on a live server.
SMARTCAR_EMULATOR = True
INSTALLED_APPS = [*INSTALLED_APPS, "smartcar_emulator", "demo"]
SMARTCAR_EMULATOR_CLIENT_ID = SMARTCAR_CLIENT_ID
SMARTCAR_EMULATOR_CLIENT_SECRET = SMARTCAR_CLIENT_SECRET
SMARTCAR_EMULATOR_REDIRECT_URIS = [SMARTCAR_REDIRECT_URI]

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not Django's shared-cache in-memory database: concurrency tests run real threads,
    # and shared-cache memory databases fail concurrent writers at once ("table is locked")
    # instead of waiting as a real SQLite file does.
    import tempfile

    DATABASES["default"]["TEST"] = {
        "NAME": os.path.join(tempfile.gettempdir(), f"test-db-{os.getpid()}.sqlite3")
    }
