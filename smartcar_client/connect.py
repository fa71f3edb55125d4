"""Builds the Smartcar Connect authorize URL (API-FACTS §1).

Everything in the URL comes from `SmartcarConfig` (redirect URI, scopes, mode) or from the caller's
own state; nothing from an incoming request. The client secret never goes into it.
"""

from urllib.parse import urlencode

from smartcar_client.config import SmartcarConfig

AUTHORIZE_PATH = "/oauth/authorize"


def build_connect_url(
    config: SmartcarConfig,
    *,
    state: str,
    make: str | None = None,
    single_select: bool = False,
    force_prompt: bool = False,
) -> str:
    if not state:
        # Without a state the callback cannot be tied to a user or checked for CSRF.
        raise ValueError("a Connect URL needs a non-empty state")
    # Key order follows the Python SDK so the URL reads the same as Smartcar's own examples.
    params: list[tuple[str, str]] = [
        ("response_type", "code"),
        ("client_id", config.client_id),
        ("redirect_uri", config.redirect_uri),
        ("approval_prompt", "force" if force_prompt else "auto"),
        ("scope", " ".join(config.scopes)),
        ("mode", config.mode),
        ("state", state),
    ]
    if make:
        params.append(("make", make))
    if single_select:
        params.append(("single_select", "true"))
    return f"{config.connect_origin}{AUTHORIZE_PATH}?{urlencode(params)}"
