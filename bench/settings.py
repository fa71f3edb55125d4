"""Benchmark-only settings: the test settings (fixed fake credentials, DEBUG off) with the bench
URLconf, which adds the "ceiling" view. Never used outside `bench/`."""

from config.settings.test import *  # noqa: F403

ROOT_URLCONF = "bench.urls"
