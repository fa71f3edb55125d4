"""Leak scan (SECURITY F, H): one end-to-end run with every logger at DEBUG, then a search for
every secret in what the run produced: log records (messages, arguments, tracebacks), response
bodies (error bodies included), admin pages and `Location` headers.

The run: Connect (login → start link → Smartcar redirect with a code → code exchange and
discovery), a poll that finds the access token rejected (→ refresh, rotation), an upstream 500
whose body echoes the token, the SPA's latest/refresh/history endpoints, a signed webhook, the
first seed's paths, and every admin changelist and change page as a superuser. Smartcar is
`responses`.
"""

import logging
from collections.abc import Iterator
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from core.jwt_tokens import issue_jwt
from oauth_smartcar.tests import smartcar_mocks as sc
from telemetry.services.polling import run_poll_cycle
from telemetry.tests.api_support import SIGNALS, SIGNALS_OK
from telemetry.tests.webhook_support import KEY, send, state_event
from vehicles.models import SmartcarAccount, Vehicle

pytestmark = pytest.mark.django_db(transaction=True)

CODE = "code-SECRET-4711-abcdef"
ROTATED_ACCESS = "access-ROTATED-9876543210"
ROTATED_REFRESH = "refresh-ROTATED-9876543210"
CLIENT_SECRET = "test-client-secret-value"  # config/settings/test.py


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        parts = [record.getMessage(), repr(record.args)]
        if record.exc_info:
            parts.append(logging.Formatter().formatException(record.exc_info))
        parts.extend(repr(v) for k, v in vars(record).items() if k not in {"args", "msg"})
        self.texts.append("\n".join(parts))


@pytest.fixture
def every_log() -> Iterator[Capture]:
    """Every logger at DEBUG, captured at the root (and on loggers that do not propagate)."""
    capture = Capture()
    loggers = [logging.getLogger()] + [
        logging.getLogger(name) for name in list(logging.root.manager.loggerDict)
    ]
    levels = [(lg, lg.level) for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.DEBUG)
        lg.addHandler(capture)
    yield capture
    for lg, level in levels:
        lg.setLevel(level)
        lg.removeHandler(capture)


def test_no_secret_in_logs_bodies_admin_pages_or_locations(user, every_log):
    jwt = issue_jwt(user.username, email=user.email)
    api = Client(HTTP_AUTHORIZATION=f"Bearer {jwt}")
    browser = Client()
    seen: list[str] = []

    recovery_handoffs = []

    def keep(response) -> None:
        seen.append(response.content.decode(errors="replace"))
        if response.has_header("Location"):
            location = response["Location"]
            query = parse_qs(urlsplit(location).query)
            if query.get("recover") == ["jwt"] and query.get("oauth_code") == [CODE]:
                # The one documented exception (SECURITY A, the SPA contract): the recovery
                # hand-off carries the one-time code for POST complete-connect.
                recovery_handoffs.append(location)
                location = location.replace(CODE, "<recovery-code>")
            seen.append(location)

    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        sc.link_ok(mock)
        # Connect.
        login = api.get("/api/v1/smartcar/login")
        keep(login)
        link = login.json()["data"]["link"]
        start = browser.get(f"{urlsplit(link).path}?{urlsplit(link).query}")
        keep(start)
        state = parse_qs(urlsplit(start["Location"]).query)["state"][0]
        done = browser.get("/api/v1/smartcar/redirect", {"code": CODE, "state": state})
        keep(done)
        assert done.status_code == HTTPStatus.FOUND
        assert SmartcarAccount.objects.get().access_token == sc.ACCESS_TOKEN
        # A replayed code: an error path through the same view.
        keep(browser.get("/api/v1/smartcar/redirect", {"code": CODE, "state": state}))

        # A poll: the token is rejected, refreshed (rotated), then Smartcar fails with a body
        # that echoes the token; the next poll succeeds.
        vehicle = Vehicle.objects.filter(is_primary=True).get()
        signals_url = SIGNALS.format(vid=vehicle.smartcar_vehicle_id)
        mock.replace(
            responses.POST,
            sc.TOKEN_URL,
            json={
                "access_token": ROTATED_ACCESS,
                "refresh_token": ROTATED_REFRESH,
                "token_type": "Bearer",
                "expires_in": 7200,
            },
        )
        mock.get(signals_url, status=401, json={"type": "AUTHENTICATION", "code": None})
        mock.get(
            signals_url,
            status=500,
            json={
                "type": "SERVER",
                "code": "INTERNAL",
                "description": f"bad token {ROTATED_ACCESS} / {sc.ACCESS_TOKEN} / {CODE}",
            },
        )
        run_poll_cycle(ignore_schedule=True, workers=1, vehicle_ids=[vehicle.pk])
        mock.remove(responses.GET, signals_url)
        mock.get(signals_url, json=SIGNALS_OK)
        run_poll_cycle(ignore_schedule=True, workers=1, vehicle_ids=[vehicle.pk])

        # The SPA, the first seed's paths, a refresh that fails upstream.
        for path in (
            "/api/v1/vehicles",
            f"/api/v1/vehicles/{vehicle.pk}",
            f"/api/v1/vehicles/{vehicle.pk}/telemetry/latest",
            f"/api/v1/vehicles/{vehicle.pk}/telemetry?bucket=1h",
            f"/api/v1/vehicles/{vehicle.pk}/telemetry",
            "/v1/ev/me/vehicles",
            "/v1/ev/me/telemetry/latest",
            "/v1/ev/me/telemetry/history",
            "/api/v1/vehicles/not-a-vehicle/telemetry/latest",
        ):
            keep(api.get(path))
        mock.replace(
            responses.GET,
            signals_url,
            status=500,
            json={"type": "SERVER", "code": "INTERNAL", "description": ROTATED_ACCESS},
        )
        keep(api.get(f"/api/v1/vehicles/{vehicle.pk}/telemetry/latest?refresh=true"))
        keep(Client(HTTP_AUTHORIZATION=f"Bearer {jwt}x").get("/api/v1/vehicles"))

        # Webhooks: signed, and with a wrong signature.
        keep(send(Client(), state_event(vehicle_id=vehicle.smartcar_vehicle_id)))
        keep(send(Client(), state_event(), HTTP_SC_SIGNATURE="0" * 64))

    # Every admin page of every registered model, as a superuser.
    staff = get_user_model().objects.create_superuser("root", "root@example.test", "pw-unused")
    admin_client = Client()
    admin_client.force_login(staff)
    pages = 0
    for model, _model_admin in admin.site._registry.items():
        info = (model._meta.app_label, model._meta.model_name)
        changelist = admin_client.get(reverse("admin:{}_{}_changelist".format(*info)))
        keep(changelist)
        pages += 1
        for pk in model._default_manager.values_list("pk", flat=True)[:5]:
            keep(admin_client.get(reverse("admin:{}_{}_change".format(*info), args=[pk])))
            pages += 1
    assert pages > len(admin.site._registry)

    secrets = {
        "access token": sc.ACCESS_TOKEN,
        "refresh token": sc.REFRESH_TOKEN,
        "rotated access token": ROTATED_ACCESS,
        "rotated refresh token": ROTATED_REFRESH,
        "authorization code": CODE,
        "client secret": CLIENT_SECRET,
        "management token": KEY,
        "JWT": jwt,
        "JWT signature": jwt.rsplit(".", 1)[1],
    }
    assert len(every_log.texts) > 20  # DEBUG logging really was on
    haystacks = {"log record": every_log.texts, "response or Location": seen}
    leaks = [
        f"{label} in a {where}: ...{text[max(0, text.find(secret) - 80) : text.find(secret)]}"
        for label, secret in secrets.items()
        for where, texts in haystacks.items()
        for text in texts
        if secret in text
    ]
    assert leaks == []
    assert SmartcarAccount.objects.get().refresh_token == ROTATED_REFRESH
    assert len(recovery_handoffs) == 1  # only the replayed redirect took the recovery path
    assert vehicle.telemetry_state.latest_reading is not None  # the run reached the happy path
