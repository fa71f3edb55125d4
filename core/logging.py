"""A logging filter that blanks secrets that may ride in a log record.

Our code never logs tokens or codes, but libraries do log URLs: the dev server logs every request
line, including the OAuth redirect's `?code=…&state=…`. This filter is the second line of
defence: it rewrites sensitive query parameters and Bearer/Basic credentials in the formatted
message before any handler sees it.
"""

import logging
import re

_SENSITIVE_PARAMS = (
    "code",
    "oauth_code",
    "state",
    "access_token",
    "refresh_token",
    "token",
    "client_secret",
    "challenge",
    "ticket",
)
_QUERY_RE = re.compile(
    r"(?P<key>(?:[?&;]|\b)(?:" + "|".join(_SENSITIVE_PARAMS) + r"))=(?P<value>[^&\s\"';]+)",
    re.IGNORECASE,
)
_AUTH_RE = re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+", re.IGNORECASE)
_JWT_RE = re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*")


def redact(text: str) -> str:
    text = _QUERY_RE.sub(lambda m: f"{m.group('key')}=[redacted]", text)
    text = _AUTH_RE.sub(lambda m: f"{m.group(1)} [redacted]", text)
    return _JWT_RE.sub("[redacted-jwt]", text)


class RedactSecretsFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001  (a broken record must still be logged, not dropped)
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True
