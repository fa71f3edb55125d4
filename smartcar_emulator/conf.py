"""The emulator's own settings, each read with a default so the app needs no project settings.

Never imports the project's settings modules: only `django.conf.settings` via `getattr`.
"""

from django.conf import settings

DEFAULT_REDIRECT_URIS = ["http://127.0.0.1:8000/api/v1/smartcar/redirect"]


def client_id() -> str:
    return str(getattr(settings, "SMARTCAR_EMULATOR_CLIENT_ID", "emulator-client-id"))


def client_secret() -> str:
    return str(getattr(settings, "SMARTCAR_EMULATOR_CLIENT_SECRET", "emulator-client-secret"))


def redirect_uris() -> list[str]:
    value = getattr(settings, "SMARTCAR_EMULATOR_REDIRECT_URIS", DEFAULT_REDIRECT_URIS)
    if isinstance(value, str):
        value = value.split()
    return [str(uri) for uri in value]


def seed() -> int:
    return int(getattr(settings, "SMARTCAR_EMULATOR_SEED", 42))


def access_token_ttl() -> int:
    return int(getattr(settings, "SMARTCAR_EMULATOR_ACCESS_TOKEN_TTL", 7200))


def refresh_grace_seconds() -> float:
    return float(getattr(settings, "SMARTCAR_EMULATOR_REFRESH_GRACE_SECONDS", 0))


def webhook_url() -> str:
    return str(getattr(settings, "SMARTCAR_EMULATOR_WEBHOOK_URL", "") or "")


def management_token() -> str:
    return str(getattr(settings, "SMARTCAR_MANAGEMENT_TOKEN", "") or "")
