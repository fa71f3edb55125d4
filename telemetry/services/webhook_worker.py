"""Processing stored webhook events in processes of their own: `process_webhooks --follow`.

With `SMARTCAR_WEBHOOK_PROCESSING=worker` the endpoint only stores an event (`received`) and
answers; followers claim stored events, oldest first, and process them with
`webhook_events_process_batch` (a batch's vehicles in one query, its readings in one INSERT,
their pointers and the events' outcomes in an UPDATE each). The answers then never wait for the
GIL that processing holds, and little for the database's CPU (measured in docs/performance.md);
processing scales by running more followers.

A claim is a lease on the row (`lease_owner`, `lease_until`), as the poller's on a vehicle: on
PostgreSQL a batch is claimed with SKIP LOCKED in one short transaction; on SQLite (no row locks)
with a compare-and-set UPDATE per row. Recording the outcome ends the lease. A follower that dies
leaves its claims to the others once LEASE_SECONDS have passed; `process_webhooks --retry-failed`
skips events under a live claim. Processing is idempotent, so an event processed twice (a lease
that ran out under a very slow database) stores nothing twice.

Owns: claiming and the follow loop. Must never: claim an event another follower holds
a live lease on, hold a transaction while processing, stop following for one event's failure or
a database outage (it waits and claims again).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta

from django.db import DatabaseError, connection, connections, transaction
from django.utils import timezone

from core.leases import lease_free
from telemetry.models import WebhookEvent
from telemetry.services.webhooks import webhook_events_process_batch

logger = logging.getLogger(__name__)

# A batch takes well under a second to process (a few ms an event); the lease only has to
# outlast one batch, and is what a crashed follower's events wait for.
LEASE_SECONDS = 60.0
# Up to 200 events a claim: a batch's statements (one SELECT, one INSERT, UPDATEs of 64 rows)
# and its setup cost the same whatever its size, so a backlog claimed 200 at a time costs the
# follower about a fifth less CPU per event than 50 at a time (bench/webhook_batches.py,
# docs/performance.md), for at most ~0.15 s more before a batch's last event is stored.
DEFAULT_BATCH = 200
DEFAULT_INTERVAL_SECONDS = 0.5
# While the database is down: wait twice as long after each failed claim, up to this.
MAX_OUTAGE_WAIT_SECONDS = 30.0


def webhook_events_claim(
    *,
    owner: str,
    limit: int,
    now: datetime | None = None,
    lease_seconds: float = LEASE_SECONDS,
) -> list[WebhookEvent]:
    """Lease up to `limit` `received` events no live claim holds, oldest first; return them."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    now = now or timezone.now()
    lease = {"lease_owner": owner, "lease_until": now + timedelta(seconds=lease_seconds)}
    claimable = WebhookEvent.objects.filter(lease_free(now), status=WebhookEvent.Status.RECEIVED)
    if connection.features.has_select_for_update_skip_locked:
        with transaction.atomic():
            pks = list(
                claimable.order_by("pk")
                .select_for_update(skip_locked=True)
                .values_list("pk", flat=True)[:limit]
            )
            if pks:
                WebhookEvent.objects.filter(pk__in=pks).update(**lease)
    else:
        pks = [
            pk
            for pk in claimable.order_by("pk").values_list("pk", flat=True)[:limit]
            # Still claimable when the UPDATE runs: 1 row = ours, 0 = another follower's.
            if claimable.filter(pk=pk).update(**lease) == 1
        ]
    if not pks:
        return []
    return list(WebhookEvent.objects.filter(pk__in=pks, lease_owner=owner).order_by("pk"))


def webhook_events_follow(
    *,
    owner: str,
    stop: threading.Event,
    batch: int = DEFAULT_BATCH,
    interval: float = DEFAULT_INTERVAL_SECONDS,
    on_batch: Callable[[Counter[str]], None] | None = None,
) -> Counter[str]:
    """Claim and process events until `stop` is set; sleep `interval` once the queue is drained
    (a claim found fewer than `batch` events), so an event waits at most about `interval`.

    Returns the count per resulting status. A batch in hand when `stop` is set is finished
    (`batch` events of a few ms each); the claims then all have ended. While the database is down
    it waits longer after each failed claim (up to MAX_OUTAGE_WAIT_SECONDS), and logs the
    traceback once per outage."""
    totals: Counter[str] = Counter()
    failures = 0
    while not stop.is_set():
        _replace_stale_connections()
        try:
            events = webhook_events_claim(owner=owner, limit=batch)
        except DatabaseError as exc:
            failures += 1
            wait = min(interval * 2**failures, MAX_OUTAGE_WAIT_SECONDS)
            if failures == 1:
                logger.exception("webhook follower: claiming failed; trying again in %.1f s", wait)
            else:
                logger.warning(
                    "webhook follower: claiming failed %d times (%s); trying again in %.1f s",
                    failures,
                    type(exc).__name__,
                    wait,
                )
            stop.wait(wait)
            continue
        if failures:
            logger.warning("webhook follower: the database is back after %d failures", failures)
            failures = 0
        if not events:
            stop.wait(interval)
            continue
        try:
            done = Counter(webhook_events_process_batch(events))
        except Exception:
            # It should never raise; a bug must not end the follower. The batch keeps its
            # claims until the lease runs out, and is then tried again (by any follower).
            logger.exception("webhook follower: processing %d events failed", len(events))
            stop.wait(interval)
            continue
        totals.update(done)
        logger.info("webhook follower: processed %s", dict(done))
        if on_batch is not None:
            on_batch(done)
        if len(events) < batch:
            # The queue is drained: let the next events gather rather than claim them a few at
            # a time. A batch costs about the same few statements whatever its size; claimed as
            # they came in, events cost the follower twice the CPU (docs/performance.md).
            stop.wait(interval)
    return totals


def _replace_stale_connections() -> None:
    """As Django does between requests: close a connection that is broken or past
    CONN_MAX_AGE, so that the next query opens a fresh one. Not one inside a caller's
    transaction (a test's): that connection is the caller's."""
    for conn in connections.all(initialized_only=True):
        if not conn.in_atomic_block:
            conn.close_if_unusable_or_obsolete()
