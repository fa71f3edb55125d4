"""Where the browser goes after Connect, and with which query parameters.

Targets come from settings only, never from the request, so no input can turn the redirect into
an open redirect. Resolution order (documented in the README):
- success: SMARTCAR_APP_HANDOFF_URL, APP_HOME_URL, FRONTEND_URL + "/vehicle/connected";
- failure and recovery: SMARTCAR_OAUTH_FAILURE_URL, SMARTCAR_APP_HANDOFF_URL, APP_HOME_URL,
  FRONTEND_URL + "/vehicle/connect";
- none set, or SMARTCAR_SIMPLE_OAUTH_REDIRECT off: our own `…/smartcar/oauth-done` page.
"""

from collections.abc import Mapping
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from django.conf import settings
from django.urls import reverse

RECOVERY_REASON = "use_post_complete_connect_with_jwt_and_code"


def with_params(url: str, params: Mapping[str, str]) -> str:
    """`url` with `params` added to its query (replacing same-named ones), fragment kept."""
    parts = urlsplit(url)
    query = [(key, value) for key, value in parse_qsl(parts.query, keep_blank_values=True)]
    query = [(key, value) for key, value in query if key not in params]
    query.extend((key, value) for key, value in params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


def _frontend(path: str) -> str:
    return settings.FRONTEND_URL.rstrip("/") + path if settings.FRONTEND_URL else ""


def oauth_done_url() -> str:
    return settings.PUBLIC_BASE_URL + reverse("smartcar:oauth-done")


def success_base_url() -> str:
    if settings.SMARTCAR_SIMPLE_OAUTH_REDIRECT:
        for candidate in (
            settings.SMARTCAR_APP_HANDOFF_URL,
            settings.APP_HOME_URL,
            _frontend("/vehicle/connected"),
        ):
            if candidate:
                return candidate
    return oauth_done_url()


def failure_base_url() -> str:
    if settings.SMARTCAR_SIMPLE_OAUTH_REDIRECT:
        for candidate in (
            settings.SMARTCAR_OAUTH_FAILURE_URL,
            settings.SMARTCAR_APP_HANDOFF_URL,
            settings.APP_HOME_URL,
            _frontend("/vehicle/connect"),
        ):
            if candidate:
                return candidate
    return oauth_done_url()


def app_deeplink(params: Mapping[str, str]) -> str:
    return with_params(settings.APP_DEEPLINK, params) if settings.APP_DEEPLINK else ""


def success_params(*, smartcar_user_id: str, first_vehicle_id: str | None) -> dict[str, str]:
    params = {"smartcar": "ok", "smartcar_uid": smartcar_user_id}
    deeplink = app_deeplink(params)
    if deeplink:
        params["native_deeplink"] = deeplink
    # The first seed's SPA reads these.
    params["provider"] = "smartcar"
    if first_vehicle_id:
        params["vehicle_id"] = first_vehicle_id
    return params


def success_url(*, smartcar_user_id: str, first_vehicle_id: str | None) -> str:
    params = success_params(smartcar_user_id=smartcar_user_id, first_vehicle_id=first_vehicle_id)
    return with_params(success_base_url(), params)


def failure_url(reason: str, extra: Mapping[str, str] | None = None) -> str:
    params = {"smartcar": "error", "reason": reason, **(extra or {})}
    return with_params(failure_base_url(), params)


def recovery_params(code: str) -> dict[str, str]:
    return {"oauth_code": code, "recover": "jwt"}


def recovery_url(code: str) -> str:
    return failure_url(RECOVERY_REASON, recovery_params(code))
