"""Fixtures of the telemetry tests."""

import pytest

from telemetry.services import webhook_dispatch
from telemetry.services.webhook_dispatch import BackgroundProcessor

WAIT_SECONDS = 10.0


@pytest.fixture
def background(settings, monkeypatch):
    """Webhook events processed in the background (the production default; the test settings
    process them in the request), by a processor of this test's own; the test ends only once
    its queue is done."""
    settings.SMARTCAR_WEBHOOK_PROCESSING = "background"
    processor = BackgroundProcessor(maxsize=settings.SMARTCAR_WEBHOOK_QUEUE_SIZE)
    monkeypatch.setattr(webhook_dispatch, "_processor", processor)
    yield processor
    # Its thread ends, and closes its connection (PostgreSQL drops no database still in use).
    assert processor.stop(WAIT_SECONDS) == 0, "the background thread did not finish its queue"
