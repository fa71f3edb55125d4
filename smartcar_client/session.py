"""The one pooled `requests.Session` the Smartcar client sends everything through.

Owns connection pooling and the User-Agent. Retries are NOT done here (urllib3's retry is switched
off): the client decides what may be retried, because a code exchange must never be sent twice.
Must never attach credentials: each request carries its own.
"""

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

if TYPE_CHECKING:
    from requests.sessions import _Settings  # in types-requests only

POOL_CONNECTIONS = 4
# Connections kept per host. It must be at least the number of threads calling Smartcar at once
# (the poller's workers): urllib3 throws away every connection beyond it, and each thrown-away
# connection costs the next request a new TCP + TLS handshake.
DEFAULT_POOL_MAXSIZE = 32
# The client talks to two or three hosts (API, auth, management); the cap only guards the memo.
MAX_MEMO_HOSTS = 16


class EnvironmentOnceSession(requests.Session):
    """A `requests.Session` that reads the environment's proxy and CA-bundle variables once per
    host instead of on every request.

    requests scans the whole of `os.environ` for `*_proxy` variables (and `no_proxy` matching)
    each time; that was a tenth of the poller's CPU per vehicle. The outcome depends only on the
    scheme and host of the URL and on the variables, which a process sets before it starts, so
    it is kept per host. A request passing its own `proxies` goes the usual way."""

    def __init__(self) -> None:
        super().__init__()
        self._environment: dict[tuple[Any, ...], _Settings] = {}

    def merge_environment_settings(
        self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> "_Settings":
        try:
            key: tuple[Any, ...] = (*urlsplit(url)[:2], stream, verify, cert)
            hash(key)
        except TypeError:  # an unhashable cert or verify: nothing to key on
            key = ()
        if proxies or not key or not self.trust_env:
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        merged = self._environment.get(key)
        if merged is None:
            merged = super().merge_environment_settings(url, {}, stream, verify, cert)
            if len(self._environment) < MAX_MEMO_HOSTS:
                self._environment[key] = merged  # racing threads store equal values
        # Copies: requests hands the proxies on to the adapter, which must not edit the memo.
        copy = merged.copy()
        copy["proxies"] = dict(merged["proxies"])
        return copy


def new_session(user_agent: str, *, pool_maxsize: int = DEFAULT_POOL_MAXSIZE) -> requests.Session:
    if pool_maxsize < 1:
        raise ValueError("pool_maxsize must be at least 1")
    session = EnvironmentOnceSession()
    adapter = HTTPAdapter(
        pool_connections=POOL_CONNECTIONS, pool_maxsize=pool_maxsize, max_retries=0
    )
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers["User-Agent"] = user_agent
    session.headers["Accept"] = "application/json"
    return session
