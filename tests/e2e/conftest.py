"""Browser tests: Debian's headless Chromium, driven by Playwright, against a live server.

The Smartcar origins point at the emulator mounted on the same live server, so the project's
real client code talks HTTP to it; live_server runs Django in a thread of this process, so the
emulator's in-memory state is shared with the tests. No browser is ever downloaded: without the
`playwright` package or `/usr/bin/chromium`, every test here skips with a reason that says so
(or fails, when E2E_REQUIRED=1, as in CI). E2E_CHROMIUM names another Chromium binary.
"""

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from smartcar_client.factory import client_from_settings
from smartcar_emulator import control

CHROMIUM = os.environ.get("E2E_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
REPO_ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_MS = 15_000


def _absent(what: str) -> NoReturn:
    """Skip, saying why; with E2E_REQUIRED=1 (CI) a missing browser fails instead."""
    reason = f"Chromium not installed: {what}"
    if os.environ.get("E2E_REQUIRED") == "1":
        pytest.fail(f"{reason}; E2E_REQUIRED=1 demands the browser tests", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="package")
def browser(django_db_setup: None) -> Iterator[Any]:
    """One headless Chromium for tests/e2e (Playwright gives it a new, empty profile dir).

    Playwright's sync API keeps an asyncio loop marked as running in this thread for as long as
    it is started, and Django then refuses ORM calls as coming from an "async context". The loop
    is only Playwright's (the ORM never runs in it), so Django's check is switched off for the
    lifetime of this fixture: package scope ends it with the last browser test, and the test
    database is set up before it starts (`django_db_setup`) and torn down after it stops.
    """
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _absent("the Python package `playwright` is missing (pip install -r requirements-dev.txt)")
    if not os.access(CHROMIUM, os.X_OK):
        _absent(f"{CHROMIUM} not found (apt-get install chromium)")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
            )
            yield chromium
            chromium.close()


@pytest.fixture
def site(live_server: Any, settings: Any) -> Iterator[str]:
    """The live server's URL, with Smartcar (the emulator) and the demo handoff wired to it."""
    base = live_server.url
    emulator = f"{base}/_smartcar"
    settings.SMARTCAR_BASE_URL = emulator
    settings.SMARTCAR_AUTH_URL = emulator
    settings.SMARTCAR_CONNECT_URL = emulator
    settings.SMARTCAR_V3_BASE_URL = emulator
    settings.SMARTCAR_REDIRECT_URI = f"{base}/api/v1/smartcar/redirect"
    settings.PUBLIC_BASE_URL = base
    settings.SMARTCAR_EMULATOR_REDIRECT_URIS = [settings.SMARTCAR_REDIRECT_URI]
    settings.SMARTCAR_EMULATOR_CLIENT_ID = settings.SMARTCAR_CLIENT_ID
    settings.SMARTCAR_EMULATOR_CLIENT_SECRET = settings.SMARTCAR_CLIENT_SECRET
    settings.SMARTCAR_MODE = "simulated"
    settings.SMARTCAR_EMULATOR = True
    settings.SMARTCAR_APP_HANDOFF_URL = f"{base}/"
    settings.SMARTCAR_OAUTH_FAILURE_URL = ""
    settings.SMARTCAR_SIMPLE_OAUTH_REDIRECT = True
    # As with DEBUG on (`make run`): the live server speaks plain HTTP.
    settings.CSRF_COOKIE_SECURE = False
    control.reset()
    yield base
    control.reset()
    # The project's Smartcar client keeps pooled keep-alive connections to the live server; a
    # server thread left waiting on one wakes up during interpreter shutdown and prints noise.
    client_from_settings()._session.close()


class DialogRecorder:
    """Every alert/confirm/prompt a page opens: an executed injected script would show here."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def __call__(self, dialog: Any) -> None:
        self.messages.append(dialog.message)
        dialog.dismiss()


@pytest.fixture
def dialogs() -> DialogRecorder:
    return DialogRecorder()


@pytest.fixture
def page(browser: Any, site: str, dialogs: DialogRecorder) -> Iterator[Any]:
    """A fresh context (no cookies, no storage) and page, failing the test on any dialog."""
    context = browser.new_context(viewport={"width": 1000, "height": 820})
    context.set_default_timeout(TIMEOUT_MS)
    tab = context.new_page()
    tab.on("dialog", dialogs)
    yield tab
    context.close()
    assert dialogs.messages == [], f"a page opened a dialog: {dialogs.messages}"
