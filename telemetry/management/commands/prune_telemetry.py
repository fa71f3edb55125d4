"""`manage.py prune_telemetry`: delete telemetry readings older than a number of days.

Thin: the deleting is `telemetry.services.pruning.telemetry_prune`. Without `--older-than` it uses
TELEMETRY_RETENTION_DAYS, and refuses to run if neither is set.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from telemetry.services.pruning import DEFAULT_BATCH_SIZE, telemetry_prune


class Command(BaseCommand):
    help = (
        "Delete telemetry readings older than --older-than DAYS (default TELEMETRY_RETENTION_DAYS)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--older-than", type=int, metavar="DAYS", dest="older_than")
        parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)

    def handle(self, *args: Any, **options: Any) -> None:
        days = options["older_than"]
        if days is None:
            days = getattr(settings, "TELEMETRY_RETENTION_DAYS", None)
        if days is None:
            raise CommandError("Give --older-than DAYS or set TELEMETRY_RETENTION_DAYS.")
        if days < 1:
            raise CommandError("--older-than must be at least 1 day.")
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1.")
        deleted = telemetry_prune(older_than_days=days, batch_size=options["batch_size"])
        self.stdout.write(f"Deleted {deleted} readings older than {days} days.")
