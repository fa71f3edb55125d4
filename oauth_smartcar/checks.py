"""System checks for the Connect settings: with DEBUG off, every URL we hand a browser is https.

`SMARTCAR_REDIRECT_URI` carries the authorization code and `PUBLIC_BASE_URL` the start link;
handoff targets carry `oauth_code` on the recovery path. None may travel over plain http in
production (an app's own deeplink scheme is allowed for handoffs).
"""

from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import CheckMessage, Error, register


@register()
def check_connect_urls(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    if settings.DEBUG:
        return []
    errors: list[CheckMessage] = []
    for number, name in enumerate(("SMARTCAR_REDIRECT_URI", "PUBLIC_BASE_URL"), start=1):
        parts = urlsplit(getattr(settings, name))
        if parts.scheme != "https" or not parts.netloc:
            errors.append(
                Error(f"{name} must be an absolute https URL.", id=f"oauth_smartcar.E00{number}")
            )
    for name in (
        "SMARTCAR_APP_HANDOFF_URL",
        "SMARTCAR_OAUTH_FAILURE_URL",
        "APP_HOME_URL",
        "FRONTEND_URL",
    ):
        value = getattr(settings, name)
        parts = urlsplit(value)
        if value and (parts.scheme != "https" or not parts.netloc):
            errors.append(
                Error(f"{name} must be an absolute https URL when set.", id="oauth_smartcar.E003")
            )
    if settings.APP_DEEPLINK and not urlsplit(settings.APP_DEEPLINK).scheme:
        errors.append(
            Error("APP_DEEPLINK must be an absolute URL (scheme://…).", id="oauth_smartcar.E004")
        )
    return errors
