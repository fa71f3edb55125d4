"""`POST oauth/token`: HTTP Basic client authentication, then the code or refresh grant."""

import base64
import binascii
import hmac

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from smartcar_emulator import conf, oauth
from smartcar_emulator.errors import json_response, oauth_error_response


def _basic_client_id(request: HttpRequest) -> str | None:
    """The client id if the Basic credentials match the registered client, else None."""
    header = request.headers.get("Authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        return None
    id_ok = hmac.compare_digest(client_id.encode(), conf.client_id().encode())
    secret_ok = hmac.compare_digest(secret.encode(), conf.client_secret().encode())
    return client_id if id_ok and secret_ok else None


@csrf_exempt  # a server-to-server endpoint authenticated by HTTP Basic, as Smartcar's
@require_POST
def token(request: HttpRequest) -> HttpResponse:
    client_id = _basic_client_id(request)
    if client_id is None:
        return oauth_error_response(401, "invalid_client", "Invalid client credentials.")
    grant_type = request.POST.get("grant_type", "")
    try:
        if grant_type == "authorization_code":
            code, redirect_uri = request.POST.get("code", ""), request.POST.get("redirect_uri", "")
            if not code or not redirect_uri:
                return oauth_error_response(
                    400, "invalid_request", "Missing required parameter: code or redirect_uri."
                )
            pair = oauth.code_exchange(client_id=client_id, code=code, redirect_uri=redirect_uri)
        elif grant_type == "refresh_token":
            refresh_token = request.POST.get("refresh_token", "")
            if not refresh_token:
                return oauth_error_response(
                    400, "invalid_request", "Missing required parameter: refresh_token."
                )
            pair = oauth.token_refresh(client_id=client_id, refresh_token=refresh_token)
        else:
            return oauth_error_response(
                400, "unsupported_grant_type", f"Unsupported grant_type: {grant_type}."
            )
    except oauth.OAuthError as exc:
        return oauth_error_response(exc.status, exc.error, exc.description)
    response = json_response(pair.as_json())
    response["Cache-Control"] = "no-store"
    return response
