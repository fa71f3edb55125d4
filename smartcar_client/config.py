"""Everything the Smartcar client needs to know, as one frozen, hashable value.

Owns validation and normalisation of the origins and the mode. Reads no settings and no environment:
`smartcar_client.factory` builds this from Django settings, tests build it by hand. The client
secret is kept out of `repr()` so that a logged config never leaks it.
"""

from dataclasses import dataclass, field
from urllib.parse import urlsplit

import requests

from smartcar_client.session import DEFAULT_POOL_MAXSIZE

CLIENT_VERSION = "1.0.0"
DEFAULT_USER_AGENT = (
    f"ev-link-backend-smartcar-client/{CLIENT_VERSION} (python-requests/{requests.__version__})"
)
MODES = ("live", "simulated")
UNIT_SYSTEMS = ("metric", "imperial")


@dataclass(frozen=True)
class SmartcarConfig:
    client_id: str
    client_secret: str = field(repr=False)
    redirect_uri: str
    scopes: tuple[str, ...]
    mode: str
    api_origin: str
    auth_origin: str
    connect_origin: str
    v3_origin: str = "https://vehicle.api.smartcar.com"
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    unit_system: str = "metric"
    user_agent: str = DEFAULT_USER_AGENT
    # HTTP connections kept per Smartcar host: at least the threads that call Smartcar at once.
    pool_maxsize: int = DEFAULT_POOL_MAXSIZE

    def __post_init__(self) -> None:
        # An origin may carry a path prefix (the local emulator lives under /_smartcar); the client
        # appends paths, so a trailing slash would double up.
        for name in ("api_origin", "auth_origin", "connect_origin", "v3_origin"):
            value = getattr(self, name).rstrip("/")
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError(f"SmartcarConfig.{name} must be an http(s) origin")
            if parts.query or parts.fragment:
                raise ValueError(f"SmartcarConfig.{name} must not carry a query or fragment")
            object.__setattr__(self, name, value)
        # Settings hand us a list; a tuple keeps the config hashable (the factory caches on it).
        object.__setattr__(self, "scopes", tuple(self.scopes))
        if self.mode not in MODES:
            raise ValueError(f"SmartcarConfig.mode must be one of {MODES}")
        if self.unit_system not in UNIT_SYSTEMS:
            raise ValueError(f"SmartcarConfig.unit_system must be one of {UNIT_SYSTEMS}")
        if self.connect_timeout <= 0 or self.read_timeout <= 0:
            raise ValueError("SmartcarConfig timeouts must be positive")
        if self.pool_maxsize < 1:
            raise ValueError("SmartcarConfig.pool_maxsize must be at least 1")

    @property
    def timeout(self) -> tuple[float, float]:
        return (self.connect_timeout, self.read_timeout)
