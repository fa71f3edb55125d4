"""When a stored webhook event is processed: before the answer, or right after it.

Smartcar counts a delivery as failed unless a 2xx comes within 15 s, and its docs advise to
persist the event, answer fast and process asynchronously (API-FACTS §7b). The endpoint stores
the event first (`webhook_receive`), then hands it here. `SMARTCAR_WEBHOOK_PROCESSING`:

- `"background"` (the default): the answer goes out as soon as the event is committed; one
  daemon thread per process (`BackgroundProcessor`) processes the events it is handed, in order:
  one at a time while they come one at a time, and what has queued up meanwhile as one batch
  (`webhook_events_process_batch`, a few statements whatever its size, as a follower's).
  The queue is bounded (`SMARTCAR_WEBHOOK_QUEUE_SIZE`): an event that finds it full, or whose
  process stops before its turn, stays `received`, which is what `process_webhooks
  --retry-failed` picks up after `--stale-seconds` (the cron job the README lists). At a normal
  exit (gunicorn's graceful stop included) the thread gets `SMARTCAR_WEBHOOK_DRAIN_SECONDS` to
  finish its queue.
- `"inline"`: processed in the request, before the answer (Smartcar then waits for it). The test
  settings use it, so that a test running inside one transaction sees the outcome; the
  background path has tests of its own.
- `"worker"`: nothing here; the event stays `received` for `manage.py process_webhooks --follow`
  (`telemetry.services.webhook_worker`), which processes it in a process of its own, so the
  answers never share the GIL with the processing (nor a CPU, with the followers on CPUs of
  their own).

Owns: the hand-off and the thread. Must never: hand over an event before its row is committed
(the thread works on its own connection, where an uncommitted row does not exist yet), let an
exception end the thread, or block a request on a full queue.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
import time
from functools import partial

from django.conf import settings
from django.db import connections, transaction

from telemetry.models import WebhookEvent
from telemetry.services.webhooks import webhook_event_process, webhook_events_process_batch

logger = logging.getLogger(__name__)

INLINE = "inline"
WORKER = "worker"
# An idle thread gives its database connection back after this long, rather than hold one per
# process between bursts of deliveries.
IDLE_CLOSE_SECONDS = 10.0
# At most this many queued events processed together: a batch costs the same few statements
# whatever its size (as a follower's, telemetry.services.webhook_worker.DEFAULT_BATCH); the cap
# bounds one batch's statements (the vehicles' IN list, the readings' INSERT) and its time.
BATCH_MAX = 200


def webhook_event_dispatch(*, event: WebhookEvent) -> None:
    """Process a newly stored event as `SMARTCAR_WEBHOOK_PROCESSING` says. Never raises."""
    if settings.SMARTCAR_WEBHOOK_PROCESSING == INLINE:
        webhook_event_process(event=event)
        return
    if settings.SMARTCAR_WEBHOOK_PROCESSING == WORKER:
        return  # a follower claims it from the table
    # After the commit: the thread updates the row on its own connection. In autocommit (the
    # endpoint's case) the store has committed already and this runs at once.
    transaction.on_commit(partial(background_processor().submit, event))


class BackgroundProcessor:
    """One daemon thread that processes queued events in order; started on first use in each
    process (a fork, such as gunicorn's with --preload, gets a thread of its own).

    The queue holds the stored events themselves, not their ids: the thread has no row to read
    again (a queued event is a payload of at most MAX_BODY_BYTES, Smartcar's ≤ 50 KB)."""

    def __init__(self, *, maxsize: int) -> None:
        # None asks the thread to stop.
        self._queue: queue.Queue[WebhookEvent | None] = queue.Queue(maxsize=maxsize)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._stop_requested = False

    def submit(self, event: WebhookEvent) -> bool:
        """Queue a stored event; False (it stays `received`) when the queue is full."""
        self._ensure_thread()
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            logger.warning(
                "webhook event %s left for process_webhooks --retry-failed: queue full (%s)",
                event.pk,
                self._queue.maxsize,
            )
            return False
        return True

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every queued event has been processed; False if `timeout` ran out first."""
        if self._pid != os.getpid():
            return True  # nothing was queued in this process (a fork inherits a copy)
        deadline = time.monotonic() + timeout
        with self._queue.all_tasks_done:
            while self._queue.unfinished_tasks:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._queue.all_tasks_done.wait(remaining)
        return True

    def stop(self, timeout: float) -> int:
        """Let the thread finish what is queued, close its connection and end. Returns how many
        events were still unprocessed when `timeout` ran out (0: all done)."""
        thread = self._thread
        if self._pid != os.getpid() or thread is None or not thread.is_alive():
            return 0
        deadline = time.monotonic() + timeout
        if not self._stop_requested:
            try:
                self._queue.put(None, timeout=timeout)  # after every event queued so far
            except queue.Full:
                return self._queue.unfinished_tasks
            self._stop_requested = True
        thread.join(max(0.0, deadline - time.monotonic()))
        if not thread.is_alive():
            return 0
        return self._queue.unfinished_tasks - 1  # the stop request itself

    def pending(self) -> int:
        """Events queued in this process and not processed yet."""
        return self._queue.unfinished_tasks if self._pid == os.getpid() else 0

    def _ensure_thread(self) -> None:
        pid = os.getpid()
        if self._pid == pid and self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._pid == pid and self._thread is not None and self._thread.is_alive():
                return
            if self._pid != pid:
                # Forked: the parent's queue and lock state mean nothing here.
                self._queue = queue.Queue(maxsize=self._queue.maxsize)
            self._pid = pid
            self._stop_requested = False
            self._thread = threading.Thread(target=self._run, name="webhook-processor", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        between_bursts = True
        while True:
            try:
                first = self._queue.get(timeout=IDLE_CLOSE_SECONDS)
            except queue.Empty:
                connections.close_all()  # this thread's connections only
                first = self._queue.get()
            events, stop = self._take_queued(first)
            try:
                if events:
                    self._process(events, between_bursts=between_bursts)
                    between_bursts = self._queue.empty()
                if stop:
                    connections.close_all()
                    return
            finally:
                for _ in range(len(events) + stop):
                    self._queue.task_done()

    def _take_queued(self, first: WebhookEvent | None) -> tuple[list[WebhookEvent], bool]:
        """`first` and what is queued behind it, up to BATCH_MAX events, without waiting; and
        whether a stop request came (after them: nothing queued behind it is taken)."""
        events: list[WebhookEvent] = []
        item = first
        while item is not None:
            events.append(item)
            if len(events) == BATCH_MAX:
                return events, False
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return events, False
        return events, True

    @staticmethod
    def _process(events: list[WebhookEvent], *, between_bursts: bool) -> None:
        try:
            _check_connections(between_bursts=between_bursts)
            if len(events) == 1:
                webhook_event_process(event=events[0])
            else:
                webhook_events_process_batch(events)
        except Exception:
            # Processing records its own failures; this is a bug or a database down. The
            # events stay as they were (received): --retry-failed takes them later.
            first, last = events[0].pk, events[-1].pk
            which = f"event {first}" if len(events) == 1 else f"events {first}..{last}"
            logger.exception("webhook %s (%d): background processing failed", which, len(events))


def _check_connections(*, between_bursts: bool) -> None:
    """What Django does at the start of each request (close a connection that is broken or past
    CONN_MAX_AGE, the health check included), at the start of each burst of events, and after
    a database error: once per event, the health check would be one round trip more each."""
    for connection in connections.all(initialized_only=True):
        if between_bursts or connection.errors_occurred:
            connection.close_if_unusable_or_obsolete()


_processor: BackgroundProcessor | None = None
_processor_lock = threading.Lock()


def background_processor() -> BackgroundProcessor:
    """This process's processor, made on first use with the queue size from the settings."""
    global _processor
    if _processor is None:
        with _processor_lock:
            if _processor is None:
                _processor = BackgroundProcessor(maxsize=settings.SMARTCAR_WEBHOOK_QUEUE_SIZE)
                atexit.register(_drain_at_exit, _processor)
    return _processor


def _drain_at_exit(processor: BackgroundProcessor) -> None:
    left = processor.stop(settings.SMARTCAR_WEBHOOK_DRAIN_SECONDS)
    if left:
        logger.warning("%s webhook events left for process_webhooks --retry-failed at exit", left)
