"""The one pooled `requests.Session` the Smartcar client sends everything through.

Owns connection pooling and the User-Agent. Retries are NOT done here (urllib3's retry is switched
off): the client decides what may be retried, because a code exchange must never be sent twice.
Must never attach credentials: each request carries its own.
"""

import requests
from requests.adapters import HTTPAdapter

POOL_CONNECTIONS = 4
# Connections kept per host. It must be at least the number of threads calling Smartcar at once
# (the poller's workers): urllib3 throws away every connection beyond it, and each thrown-away
# connection costs the next request a new TCP + TLS handshake.
DEFAULT_POOL_MAXSIZE = 32


def new_session(user_agent: str, *, pool_maxsize: int = DEFAULT_POOL_MAXSIZE) -> requests.Session:
    if pool_maxsize < 1:
        raise ValueError("pool_maxsize must be at least 1")
    session = requests.Session()
    adapter = HTTPAdapter(
        pool_connections=POOL_CONNECTIONS, pool_maxsize=pool_maxsize, max_retries=0
    )
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers["User-Agent"] = user_agent
    session.headers["Accept"] = "application/json"
    return session
