"""The one pooled `requests.Session` the Smartcar client sends everything through.

Owns connection pooling and the User-Agent. Retries are NOT done here (urllib3's retry is switched
off): the client decides what may be retried, because a code exchange must never be sent twice.
Must never attach credentials: each request carries its own.
"""

import requests
from requests.adapters import HTTPAdapter

POOL_CONNECTIONS = 4
POOL_MAXSIZE = 20


def new_session(user_agent: str) -> requests.Session:
    session = requests.Session()
    adapter = HTTPAdapter(
        pool_connections=POOL_CONNECTIONS, pool_maxsize=POOL_MAXSIZE, max_retries=0
    )
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers["User-Agent"] = user_agent
    session.headers["Accept"] = "application/json"
    return session
