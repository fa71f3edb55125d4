"""Benchmark-only settings: the test settings (fixed fake credentials, DEBUG off) with the bench
URLconf, which adds the "ceiling" view, and webhooks processed as in production. Never used
outside `bench/`."""

import os

from config.settings.test import *  # noqa: F403

# The production default unless the environment says otherwise (the test settings process in
# the request): `SMARTCAR_WEBHOOK_PROCESSING=inline` measures the other way.
SMARTCAR_WEBHOOK_PROCESSING = os.environ.get("SMARTCAR_WEBHOOK_PROCESSING", "background")

ROOT_URLCONF = "bench.urls"
