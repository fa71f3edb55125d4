"""`client_from_settings()`: the only module in `smartcar_client` that reads Django settings.

One client, and so one pooled `requests.Session`, per distinct configuration: the cache is keyed on
the frozen `SmartcarConfig`, so a test that overrides a SMARTCAR_* setting gets a fresh client and
production reuses one pool for the life of the process. The pool keeps
`SMARTCAR_HTTP_POOL_MAXSIZE` connections per host (default 32): at least the poller's workers.
"""

from functools import lru_cache

from django.conf import settings

from smartcar_client.client import SmartcarClient
from smartcar_client.config import DEFAULT_USER_AGENT, SmartcarConfig


def config_from_settings() -> SmartcarConfig:
    return SmartcarConfig(
        client_id=settings.SMARTCAR_CLIENT_ID,
        client_secret=settings.SMARTCAR_CLIENT_SECRET,
        redirect_uri=settings.SMARTCAR_REDIRECT_URI,
        scopes=tuple(settings.SMARTCAR_SCOPES),
        mode=settings.SMARTCAR_MODE,
        api_origin=settings.SMARTCAR_BASE_URL,
        auth_origin=settings.SMARTCAR_AUTH_URL,
        connect_origin=settings.SMARTCAR_CONNECT_URL,
        v3_origin=getattr(settings, "SMARTCAR_V3_BASE_URL", "https://vehicle.api.smartcar.com"),
        connect_timeout=float(getattr(settings, "SMARTCAR_CONNECT_TIMEOUT", 5.0)),
        read_timeout=float(getattr(settings, "SMARTCAR_READ_TIMEOUT", 30.0)),
        unit_system=getattr(settings, "SMARTCAR_UNIT_SYSTEM", "metric"),
        user_agent=settings.SMARTCAR_USER_AGENT or DEFAULT_USER_AGENT,
        pool_maxsize=settings.SMARTCAR_HTTP_POOL_MAXSIZE,
    )


def client_from_settings() -> SmartcarClient:
    return _client_for(config_from_settings())


@lru_cache(maxsize=8)
def _client_for(config: SmartcarConfig) -> SmartcarClient:
    # The pool is sized from the config (SMARTCAR_HTTP_POOL_MAXSIZE), not the session's default.
    return SmartcarClient(config)
