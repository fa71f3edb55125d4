"""System check for the webhook signing key (SECURITY.md C1, F3).

With DEBUG off and no SMARTCAR_MANAGEMENT_TOKEN, every webhook delivery is answered 503 and
Smartcar can never activate the webhook: `check` says so once, as a warning (the rest of the API
works without webhooks). Names settings only, never values.

    telemetry.W001  SMARTCAR_MANAGEMENT_TOKEN is empty
    telemetry.W002  SMARTCAR_MANAGEMENT_TOKEN_PREVIOUS equals the current token
"""

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Tags, register
from django.core.checks import Warning as CheckWarning


def check_webhook_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    if settings.DEBUG:
        return []
    current = getattr(settings, "SMARTCAR_MANAGEMENT_TOKEN", "")
    previous = getattr(settings, "SMARTCAR_MANAGEMENT_TOKEN_PREVIOUS", "")
    messages: list[CheckMessage] = []
    if not current:
        messages.append(
            CheckWarning(
                "SMARTCAR_MANAGEMENT_TOKEN is empty: Smartcar webhooks are answered 503.",
                hint="Set it to the Application Management Token from Smartcar's dashboard "
                "(Configuration → API keys) to receive signed webhooks.",
                id="telemetry.W001",
            )
        )
    elif previous and previous == current:
        messages.append(
            CheckWarning(
                "SMARTCAR_MANAGEMENT_TOKEN_PREVIOUS equals SMARTCAR_MANAGEMENT_TOKEN.",
                hint="During a rotation put the old token in ..._PREVIOUS; afterwards leave it "
                "empty.",
                id="telemetry.W002",
            )
        )
    return messages


def register_checks() -> None:
    """Called from `TelemetryConfig.ready()`; registering twice is harmless (a set)."""
    register(check_webhook_settings, Tags.security)
