"""`manage.py process_webhooks`: process stored Smartcar webhook events again, or prune old ones.

Thin over `telemetry.services.webhooks`. `--retry-failed` takes failed events and events left
`received` for longer than `--stale-seconds` (the server stopped between storing and processing);
`--event ID` processes one event again whatever its status (our row id or Smartcar's eventId);
`--prune-days N` deletes events received more than N days ago and refuses N < 7 (Smartcar asks
receivers to remember event ids for 7 days). Run it from cron, e.g. every 5 minutes with
`--retry-failed` and daily with `--prune-days 30`.

`--follow` runs until SIGTERM or SIGINT, processing events as they are stored: the processor
for `SMARTCAR_WEBHOOK_PROCESSING=worker` (`telemetry.services.webhook_worker`). Run one or more,
e.g. under `nice -n 10` on the web servers' machines, so that answers come first.
"""

from __future__ import annotations

import signal
import threading
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.leases import lease_owner
from telemetry.models import WebhookEvent
from telemetry.services.webhook_worker import (
    DEFAULT_BATCH,
    DEFAULT_INTERVAL_SECONDS,
    webhook_events_follow,
)
from telemetry.services.webhooks import (
    MIN_RETENTION_DAYS,
    webhook_event_process,
    webhook_events_prune,
    webhook_events_retry,
)


class Command(BaseCommand):
    help = "Process failed or stuck Smartcar webhook events again; prune old events."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--retry-failed", action="store_true", dest="retry_failed")
        parser.add_argument("--event", metavar="ID", help="Our event row id or Smartcar's eventId.")
        parser.add_argument("--prune-days", type=int, metavar="DAYS", dest="prune_days")
        parser.add_argument("--limit", type=int, default=500, help="Events per --retry-failed run.")
        parser.add_argument(
            "--stale-seconds",
            type=int,
            default=300,
            dest="stale_seconds",
            help="Retry `received` events older than this (default 300).",
        )
        parser.add_argument(
            "--follow",
            action="store_true",
            help="Process events as they are stored, until SIGTERM/SIGINT (the worker mode).",
        )
        parser.add_argument(
            "--batch", type=int, help=f"Events claimed at once (--follow; {DEFAULT_BATCH})."
        )
        parser.add_argument(
            "--interval",
            type=float,
            help=(
                "Seconds to wait once the queue is drained, for events to gather (--follow; "
                f"{DEFAULT_INTERVAL_SECONDS})."
            ),
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["follow"]:
            self._follow(options)
            return
        if options["batch"] is not None or options["interval"] is not None:
            raise CommandError("--batch and --interval go with --follow.")
        if not (options["retry_failed"] or options["event"] or options["prune_days"] is not None):
            raise CommandError(
                "Give --retry-failed, --event ID and/or --prune-days DAYS, or --follow."
            )
        if options["prune_days"] is not None and options["prune_days"] < MIN_RETENTION_DAYS:
            raise CommandError(f"--prune-days must be at least {MIN_RETENTION_DAYS}.")
        if options["limit"] < 1 or options["stale_seconds"] < 0:
            raise CommandError("--limit must be at least 1 and --stale-seconds not negative.")

        if options["event"]:
            event = _find(options["event"])
            status = webhook_event_process(event=event, force=True)
            self.stdout.write(f"Event {event.pk} ({event.event_type}): {status}.")
        if options["retry_failed"]:
            counts = webhook_events_retry(
                stale_after=timedelta(seconds=options["stale_seconds"]), limit=options["limit"]
            )
            summary = ", ".join(f"{status} {n}" for status, n in sorted(counts.items()))
            self.stdout.write(f"Retried {sum(counts.values())} events: {summary or 'none'}.")
        if options["prune_days"] is not None:
            deleted = webhook_events_prune(older_than_days=options["prune_days"])
            self.stdout.write(
                f"Deleted {deleted} webhook events older than {options['prune_days']} days."
            )

    def _follow(self, options: dict[str, Any]) -> None:
        if options["retry_failed"] or options["event"] or options["prune_days"] is not None:
            raise CommandError("--follow runs alone; run the other options from cron.")
        batch = DEFAULT_BATCH if options["batch"] is None else options["batch"]
        interval = DEFAULT_INTERVAL_SECONDS if options["interval"] is None else options["interval"]
        if batch < 1 or not interval > 0:
            raise CommandError("--batch must be at least 1 and --interval more than 0.")
        stop = threading.Event()
        previous = {
            signum: signal.signal(signum, lambda *_: stop.set())
            for signum in (signal.SIGTERM, signal.SIGINT)
        }
        owner = lease_owner()
        self.stdout.write(f"Following webhook events as {owner}; SIGTERM or SIGINT stops.")
        self.stdout.flush()
        try:
            totals = webhook_events_follow(owner=owner, stop=stop, batch=batch, interval=interval)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        summary = ", ".join(f"{status} {n}" for status, n in sorted(totals.items()))
        self.stdout.write(f"Stopped after {sum(totals.values())} events: {summary or 'none'}.")


def _find(identifier: str) -> WebhookEvent:
    event = WebhookEvent.objects.filter(event_id=identifier).first()
    if event is None and identifier.isdigit():
        event = WebhookEvent.objects.filter(pk=int(identifier)).first()
    if event is None:
        raise CommandError("No such webhook event.")
    return event
