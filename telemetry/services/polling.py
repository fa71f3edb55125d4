"""The poller: claim due vehicles, poll them on a thread pool, record outcomes and the next poll.

Owns the poller's fields of `TelemetryState` (next_poll_at, lease_until, lease_owner,
last_polled_at, last_outcome, last_error, consecutive_failures), the `AppThrottle` row, and the
idle-grant refresh that each cycle runs. The schedule's rules live in `telemetry.schedule`; the
Smartcar read lives in `telemetry.services.readings.telemetry_poll_vehicle` (injectable here as
`poll_fn`).

How a cycle stays correct with any number of pollers on one database:
- Claiming is a lease written on the row, in a short transaction: on PostgreSQL
  `select_for_update(skip_locked=True)` then an UPDATE; on SQLite (no row locks) a
  compare-and-set UPDATE per row (`lease_until` null or past, still due; rowcount 1 = ours).
  A crashed poller's vehicles come back once its lease runs out.
- Each cycle has its own `lease_owner`, which stays on the row after release (the lease is live
  only while `lease_until` is in the future). A cycle never claims a row it owned already, so it
  polls each vehicle at most once, even with `--all`.
- Vehicles are claimed in batches of a few per worker, so a lease never has to outlast a whole
  fleet's polls. Polls run outside any transaction; results are written only while the lease is
  still ours.

How a cycle stays fast (issue 8, `bench/poll_throughput.py`):
- The pool never waits for a whole batch: the main thread claims again as soon as one vehicle per
  worker is done, so the workers always have a queue (`_run_threaded`). While polls are
  in flight it renews their leases every third of POLL_LEASE_SECONDS, so a lease stays short and
  still covers a vehicle that waited in the queue behind slow polls.
- A worker only waits for Smartcar: the real poll's reading INSERT and outcome UPDATE are
  handed to writer threads (one per WORKERS_PER_WRITER workers, `_finish`), and the worker starts
  its next vehicle at once. The main thread hears of a vehicle once it is written, so its lease
  is renewed until then. An injected `poll_fn` runs and is recorded on the worker.
- Each worker and writer thread keeps its database connection for the cycle and closes it when
  it ends (so a cycle holds up to workers + writers connections).
- `AppThrottle` is read before each claim and at most once a second by the workers, not per
  vehicle; a pause we hit ourselves stops the other workers at once (`_Cycle.paused`).
- The claimed rows are read, with vehicle, account and latest reading, in one SELECT per claim
  by the main thread (`_load_claimed`), not one per vehicle by the workers. That row serves the
  whole poll: the Smartcar read updates it in memory (`telemetry.services.readings`), and the
  outcome, the latest-reading pointer and the month's calls are written in one UPDATE (the read
  defers its own state write to it). A poll is two statements on PostgreSQL: the reading INSERT
  and that UPDATE. The row may be up to a claim old when its poll starts (a few polls per
  worker): the reading store refuses a twin by its unique index, and the UPDATE still writes
  only while the lease is ours.

Must never: raise out of a cycle for one vehicle's trouble (a crash in `poll_fn` is recorded as
failed); start a poll while `AppThrottle.paused_until` is in the future (another poller's pause
is seen within PAUSE_CHECK_SECONDS, ours at once); write upstream error text (only
type, code and request id); hold a transaction across a Smartcar call.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Min, Q, QuerySet
from django.utils import timezone

from core.compiled_select import CompiledUpdate, Param, column
from core.errors import ApplicationError
from core.leases import lease_free, lease_owner
from smartcar_client.errors import SmartcarConfigurationError, SmartcarError
from smartcar_client.factory import config_from_settings
from telemetry import schedule
from telemetry.models import AppThrottle, Reading, TelemetryState
from telemetry.services import readings
from telemetry.services.readings import PollResult
from vehicles import tokens
from vehicles.models import SmartcarAccount, Vehicle

logger = logging.getLogger(__name__)

Outcome = TelemetryState.Outcome

DEFAULT_WORKERS = 8
# Claimed per worker at a time: small enough that a batch is polled well within the lease.
CLAIM_PER_WORKER = 4
# Workers per writer thread (the real poll's reading and outcome writes; at least one).
WORKERS_PER_WRITER = 8
# Idle grants refreshed per cycle at most: each is a token-endpoint call.
IDLE_REFRESH_PER_CYCLE = 20
# The longest `--loop` sleeps between cycles, so new vehicles and config changes are seen soon.
LOOP_MAX_SLEEP_SECONDS = 30.0
LOOP_MIN_SLEEP_SECONDS = 1.0
# How stale the workers' view of another poller's app-wide pause may be.
PAUSE_CHECK_SECONDS = 1.0
# The main thread wakes at least this often while polls are in flight (stop, lease renewal).
WAKE_SECONDS = 0.5
APP_RATE_LIMIT_REASON = "RATE_LIMIT:SMARTCAR_API"
# Failures that no retry will fix: an operator must act (credentials, plan).
OPERATOR_REASONS = frozenset({"configuration", "billing"})


class PollFn(Protocol):
    def __call__(self, *, vehicle: Vehicle, source: str = ...) -> PollResult: ...


class RefreshFn(Protocol):
    def __call__(self, *, account: SmartcarAccount) -> bool: ...


@dataclass
class CycleSummary:
    """What one cycle did; `line()` and `as_dict()` are what the command prints."""

    started_at: datetime
    duration: float = 0.0
    claimed: int = 0
    polled: int = 0
    stored: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    paused_until: datetime | None = None
    idle_refreshed: int = 0
    idle_errors: Counter[str] = field(default_factory=Counter)

    @property
    def is_idle(self) -> bool:
        """Nothing happened: nothing claimed, no pause, no idle-grant work."""
        return not (self.claimed or self.paused_until or self.idle_refreshed or self.idle_errors)

    @property
    def vehicles_per_second(self) -> float:
        return self.polled / self.duration if self.duration > 0 else 0.0

    @property
    def needs_operator(self) -> bool:
        """Every poll attempted failed for a reason only an operator can fix."""
        if self.polled == 0:
            return False
        operator_failures = sum(self.failed[reason] for reason in OPERATOR_REASONS)
        return operator_failures == self.polled

    def as_dict(self) -> dict[str, Any]:
        return {
            "startedAt": self.started_at.isoformat(),
            "durationSeconds": round(self.duration, 3),
            "claimed": self.claimed,
            "polled": self.polled,
            "stored": self.stored,
            "outcomes": dict(sorted(self.outcomes.items())),
            "skipped": dict(sorted(self.skipped.items())),
            "failed": dict(sorted(self.failed.items())),
            "vehiclesPerSecond": round(self.vehicles_per_second, 2),
            "pausedUntil": self.paused_until.isoformat() if self.paused_until else None,
            "idleRefreshed": self.idle_refreshed,
            "idleRefreshErrors": dict(sorted(self.idle_errors.items())),
            "needsOperator": self.needs_operator,
        }

    def line(self) -> str:
        def counts(counter: Counter[str]) -> str:
            total = sum(counter.values())
            if not total:
                return "0"
            return f"{total} (" + ", ".join(f"{k} {v}" for k, v in sorted(counter.items())) + ")"

        text = (
            f"polled {self.polled}, stored {self.stored}, skipped {counts(self.skipped)}, "
            f"failed {counts(self.failed)} in {self.duration:.1f}s "
            f"({self.vehicles_per_second:.1f} vehicles/s)"
        )
        if self.paused_until is not None:
            text += f"; Smartcar app rate limit: paused until {self.paused_until.isoformat()}"
        if self.idle_refreshed or self.idle_errors:
            text += f"; idle grants refreshed {self.idle_refreshed}"
            if self.idle_errors:
                text += f", errors {counts(self.idle_errors)}"
        return text


@dataclass
class _Cycle:
    """Everything a worker needs; one per cycle, shared read-only across threads (but `paused`)."""

    owner: str
    poll_fn: PollFn | None  # None: the real poll, its Smartcar read and its writes split
    config: schedule.ScheduleConfig
    clock: Callable[[], datetime]
    rng: random.Random | None
    ignore_schedule: bool
    stop: threading.Event
    threaded: bool
    paused: threading.Event = field(default_factory=threading.Event)
    pause_checked: float = float("-inf")  # time.monotonic() of the last AppThrottle read


@dataclass(frozen=True)
class _Done:
    kind: str  # "polled" | "skipped"
    reason: str  # skipped: why; polled: outcome or failure reason
    outcome: str = ""
    stored: bool = False


@dataclass(frozen=True)
class _Polled:
    """A vehicle read from Smartcar whose reading and outcome are still to be written
    (`_finish`): by a writer thread, so the worker can start its next Smartcar call."""

    state: TelemetryState
    polled: readings.PolledRead


# --- public API ---------------------------------------------------------------------------------


def run_poll_cycle(
    *,
    ignore_schedule: bool = False,
    vehicle_ids: Sequence[Any] | None = None,
    workers: int = DEFAULT_WORKERS,
    poll_fn: PollFn | None = None,
    refresh_fn: RefreshFn | None = None,
    stop: threading.Event | None = None,
    progress: Callable[[int, int], None] | None = None,
    clock: Callable[[], datetime] = timezone.now,
    rng: random.Random | None = None,
    idle_refresh_limit: int = IDLE_REFRESH_PER_CYCLE,
    batch_size: int | None = None,
) -> CycleSummary:
    """Poll every due vehicle once (or every vehicle, `ignore_schedule`), then return a summary.

    `vehicle_ids`: restrict to these vehicles (our primary keys; see `vehicle_resolve_ids`).
    `workers`: thread pool size; 1 polls in the calling thread. `poll_fn` replaces the real
    poll (`telemetry_poll_read` on the workers, `telemetry_poll_store` on the writer threads);
    `refresh_fn` defaults to `account_refresh_if_idle`. Once `stop` is set, no
    new poll starts; claimed vehicles not yet polled are released. `progress(done, claimed)` is
    called after each vehicle. Never raises for a vehicle's failure.
    """
    workers = max(1, workers)
    started = clock()
    began = time.monotonic()
    summary = CycleSummary(started_at=started)
    cycle = _Cycle(
        owner=lease_owner(),
        poll_fn=poll_fn,
        config=schedule.ScheduleConfig.from_settings(),
        clock=clock,
        rng=rng,
        ignore_schedule=ignore_schedule,
        stop=stop or threading.Event(),
        threaded=workers > 1,
    )
    limit = batch_size or workers * CLAIM_PER_WORKER

    refreshed, errors = accounts_refresh_idle(
        now=started, limit=idle_refresh_limit, refresh_fn=refresh_fn
    )
    summary.idle_refreshed, summary.idle_errors = refreshed, errors

    _ensure_states(vehicle_ids)
    paused_until = app_paused_until(now=started)
    if paused_until is not None:
        logger.warning("poller: Smartcar app rate limit, polling nothing until %s", paused_until)
        summary.paused_until = paused_until
        summary.duration = time.monotonic() - began
        return summary

    if poll_fn is None:
        _warn_if_pool_too_small(workers)

    def done(result: _Done) -> None:
        _tally(summary, result)
        if progress is not None:
            progress(summary.polled + sum(summary.skipped.values()), summary.claimed)

    def claim(wanted: int) -> list[TelemetryState]:
        while not (cycle.stop.is_set() or _app_paused(cycle, force=True)):
            pks = _claim(cycle, now=clock(), limit=wanted, vehicle_ids=vehicle_ids)
            if not pks:
                break
            summary.claimed += len(pks)
            states = _load_claimed(cycle, pks)
            for _ in range(len(pks) - len(states)):  # gone since the claim (vehicle deleted)
                done(_Done(kind="skipped", reason="lease_lost"))
            if states:
                return states
        return []

    if cycle.threaded:
        _run_threaded(cycle, workers=workers, limit=limit, claim=claim, done=done)
    else:
        _run_inline(cycle, limit=limit, claim=claim, done=done)
    if cycle.paused.is_set():
        summary.paused_until = app_paused_until(now=clock())
    summary.duration = time.monotonic() - began
    return summary


def run_poll_loop(
    *,
    stop: threading.Event,
    on_cycle: Callable[[CycleSummary], None],
    max_sleep: float = LOOP_MAX_SLEEP_SECONDS,
    clock: Callable[[], datetime] = timezone.now,
    **cycle_options: Any,
) -> int:
    """Run cycles until `stop` is set, sleeping until the next vehicle is due (≤ `max_sleep`).

    Returns the number of cycles run. A cycle's in-flight polls finish before this returns.
    """
    cycles = 0
    while not stop.is_set():
        summary = run_poll_cycle(stop=stop, clock=clock, **cycle_options)
        cycles += 1
        on_cycle(summary)
        if stop.is_set():
            break
        # Never a busy loop, whatever the rows say.
        pause = seconds_until_next_due(now=clock(), max_seconds=max_sleep)
        stop.wait(max(LOOP_MIN_SLEEP_SECONDS, pause))
    return cycles


def seconds_until_next_due(*, now: datetime, max_seconds: float) -> float:
    """How long until a vehicle may be due (0 if one is due now), at most `max_seconds`."""
    paused_until = app_paused_until(now=now)
    if paused_until is not None:
        return min(max_seconds, (paused_until - now).total_seconds())
    # Rows leased by another poller get their next poll written when it is done.
    pollable = TelemetryState.objects.filter(_active_q() & lease_free(now))
    if pollable.filter(next_poll_at__isnull=True).exists():
        return 0.0
    earliest: datetime | None = pollable.aggregate(earliest=Min("next_poll_at"))["earliest"]
    if earliest is None:
        return max_seconds
    return max(0.0, min(max_seconds, (earliest - now).total_seconds()))


def vehicle_resolve_ids(*, identifiers: Sequence[str]) -> tuple[list[Any], list[str]]:
    """Our vehicle primary keys for identifiers that are our UUIDs or Smartcar vehicle ids.

    Returns (primary keys, identifiers that matched nothing). A Smartcar id matches its live
    (not disconnected) vehicle.
    """
    found: list[Any] = []
    missing: list[str] = []
    for identifier in identifiers:
        query = Q(smartcar_vehicle_id=identifier) & ~Q(status=Vehicle.Status.DISCONNECTED)
        with contextlib.suppress(ValueError):
            query |= Q(pk=uuid.UUID(identifier))
        pks = list(Vehicle.objects.filter(query).values_list("pk", flat=True))
        if pks:
            found.extend(pk for pk in pks if pk not in found)
        else:
            missing.append(identifier)
    return found, missing


def app_paused_until(*, now: datetime) -> datetime | None:
    """When Smartcar's app-wide rate limit lets us call again, if that is still in the future."""
    until = AppThrottle.objects.filter(pk=1).values_list("paused_until", flat=True).first()
    return until if until is not None and until > now else None


def app_throttle_pause(
    *,
    retry_after: int | None,
    now: datetime,
    config: schedule.ScheduleConfig | None = None,
    rng: random.Random | None = None,
) -> datetime:
    """Pause every poller after `RATE_LIMIT:SMARTCAR_API`; returns the pause's end.

    An existing pause is only ever extended (to a longer Retry-After), never doubled again by
    the other in-flight polls that hit the same limit.
    """
    config = config or schedule.ScheduleConfig.from_settings()
    with transaction.atomic():
        throttle, _ = AppThrottle.objects.select_for_update().get_or_create(pk=1)
        current = throttle.paused_until
        if current is not None and current > now:
            until = current
            if retry_after and now + timedelta(seconds=retry_after) > current:
                until = now + timedelta(seconds=retry_after)
        else:
            previous = ended_ago = None
            if current is not None:
                previous = (current - throttle.updated_at).total_seconds()
                ended_ago = (now - current).total_seconds()
            seconds = schedule.app_pause_seconds(
                retry_after=retry_after,
                previous_seconds=previous,
                previous_ended_ago=ended_ago,
                config=config,
                rng=rng,
            )
            until = now + timedelta(seconds=seconds)
        AppThrottle.objects.filter(pk=1).update(
            paused_until=until, reason=APP_RATE_LIMIT_REASON, updated_at=now
        )
    return until


def accounts_refresh_idle(
    *, now: datetime, limit: int, refresh_fn: RefreshFn | None = None
) -> tuple[int, Counter[str]]:
    """Refresh up to `limit` active accounts idle for SMARTCAR_IDLE_REFRESH_DAYS (oldest first).

    Only accounts with an active vehicle: a grant nobody polls is not worth keeping alive.
    Returns (refreshed, errors by label); errors are logged and counted, never raised.
    """
    refresh = refresh_fn or tokens.account_refresh_if_idle
    cutoff = now - timedelta(days=settings.SMARTCAR_IDLE_REFRESH_DAYS)
    idle_pks = list(
        SmartcarAccount.objects.filter(
            Q(last_refreshed_at__isnull=True) | Q(last_refreshed_at__lt=cutoff),
            status=SmartcarAccount.Status.ACTIVE,
            vehicles__status=Vehicle.Status.ACTIVE,
        )
        .order_by(F("last_refreshed_at").asc(nulls_first=True), "pk")
        .values_list("pk", flat=True)
        .distinct()[: max(0, limit)]
    )
    refreshed = 0
    errors: Counter[str] = Counter()
    for account in SmartcarAccount.objects.filter(pk__in=idle_pks):
        # One account's failure never stops the cycle.
        try:
            refreshed += bool(refresh(account=account))
        except (SmartcarError, ApplicationError) as exc:
            errors[error_label(exc)] += 1
            logger.warning(
                "poller: idle refresh of account %s failed: %s", account.pk, error_label(exc)
            )
        except Exception as exc:
            errors[error_label(exc)] += 1
            logger.exception("poller: idle refresh of account %s crashed", account.pk)
    return refreshed, errors


def error_label(exc: BaseException | None) -> str:
    """A safe, short description of an error: type, code and request id, never upstream text."""
    if exc is None:
        return ""
    if isinstance(exc, SmartcarError):
        label = f"{exc.type or 'UNKNOWN'}:{exc.code}" if exc.code else f"{exc.type or 'UNKNOWN'}"
        if exc.request_id:
            label += f" request_id={exc.request_id}"
    elif isinstance(exc, ApplicationError):
        label = exc.code
    else:
        label = f"internal:{type(exc).__name__}"
    return label[:200]


# --- claiming -----------------------------------------------------------------------------------


def _active_q() -> Q:
    return Q(
        vehicle__status=Vehicle.Status.ACTIVE,
        vehicle__account__status=SmartcarAccount.Status.ACTIVE,
    )


def _due_q(now: datetime) -> Q:
    return Q(next_poll_at__isnull=True) | Q(next_poll_at__lte=now)


def _ensure_states(vehicle_ids: Sequence[Any] | None) -> None:
    """Create the missing TelemetryState rows of active vehicles: never polled = due now."""
    missing = Vehicle.objects.filter(
        status=Vehicle.Status.ACTIVE,
        account__status=SmartcarAccount.Status.ACTIVE,
        telemetry_state__isnull=True,
    )
    if vehicle_ids is not None:
        missing = missing.filter(pk__in=vehicle_ids)
    pks = list(missing.values_list("pk", flat=True))
    if pks:
        TelemetryState.objects.bulk_create(
            [TelemetryState(vehicle_id=pk) for pk in pks], ignore_conflicts=True
        )


def _claimable(cycle: _Cycle, now: datetime, vehicle_ids: Sequence[Any] | None) -> QuerySet[Any]:
    query = _active_q() & lease_free(now)
    if not cycle.ignore_schedule:
        query &= _due_q(now)
    rows = TelemetryState.objects.filter(query).exclude(lease_owner=cycle.owner)
    if vehicle_ids is not None:
        rows = rows.filter(vehicle_id__in=vehicle_ids)
    return rows.order_by(F("next_poll_at").asc(nulls_first=True), "vehicle_id")


def _claim(
    cycle: _Cycle, *, now: datetime, limit: int, vehicle_ids: Sequence[Any] | None
) -> list[Any]:
    """Take a lease on up to `limit` claimable vehicles; returns their primary keys."""
    lease_until = now + timedelta(seconds=settings.POLL_LEASE_SECONDS)
    lease = {"lease_until": lease_until, "lease_owner": cycle.owner, "updated_at": now}
    if connection.features.has_select_for_update_skip_locked:
        with transaction.atomic():
            pks = list(
                _claimable(cycle, now, vehicle_ids)
                .select_for_update(skip_locked=True, of=("self",))
                .values_list("vehicle_id", flat=True)[:limit]
            )
            if pks:
                TelemetryState.objects.filter(vehicle_id__in=pks).update(**lease)
        return pks

    # No row locks (SQLite): compare-and-set each row on the conditions that make it claimable.
    claimed: list[Any] = []
    still_claimable = lease_free(now) if cycle.ignore_schedule else lease_free(now) & _due_q(now)
    # Built once per claim, not per row: resolving these conditions cost more CPU than the UPDATE.
    contested = TelemetryState.objects.filter(still_claimable).exclude(lease_owner=cycle.owner)
    while len(claimed) < limit:
        candidates = list(
            _claimable(cycle, now, vehicle_ids).values_list("vehicle_id", flat=True)[
                : limit - len(claimed)
            ]
        )
        if not candidates:
            break
        for pk in candidates:
            won = contested.filter(vehicle_id=pk).update(**lease)
            if won == 1:
                claimed.append(pk)
    return claimed


def _load_claimed(cycle: _Cycle, pks: Sequence[Any]) -> list[TelemetryState]:
    """The claimed rows, still leased to this cycle, with everything a poll reads (vehicle,
    account, latest reading), in claim order: one SELECT per claim, off the workers' path."""
    rows = TelemetryState.objects.select_related("vehicle__account", "latest_reading").filter(
        vehicle_id__in=pks, lease_owner=cycle.owner
    )
    by_pk = {state.vehicle_id: state for state in rows}
    return [by_pk[pk] for pk in pks if pk in by_pk]


def _release(cycle: _Cycle, pk: Any) -> None:
    TelemetryState.objects.filter(vehicle_id=pk, lease_owner=cycle.owner).update(
        lease_until=None, updated_at=cycle.clock()
    )


# --- polling ------------------------------------------------------------------------------------


def _run_inline(
    cycle: _Cycle,
    *,
    limit: int,
    claim: Callable[[int], list[TelemetryState]],
    done: Callable[[_Done], None],
) -> None:
    """Poll in the calling thread (workers=1), one claimed batch after another."""
    leases = _Leases(cycle)
    while states := claim(limit):
        pending = list(states)
        while pending:
            leases.renew_if_due([state.vehicle_id for state in pending])
            result = _process(cycle, pending.pop(0))
            done(_finish(cycle, result) if isinstance(result, _Polled) else result)


def _run_threaded(
    cycle: _Cycle,
    *,
    workers: int,
    limit: int,
    claim: Callable[[int], list[TelemetryState]],
    done: Callable[[_Done], None],
) -> None:
    """Keep `workers` threads busy: claim again as soon as `refill` of what we hold is done.

    At most `capacity` vehicles are held (claimed, queued or polling) at once, so a lease never
    covers more than a few polls per worker. Returns when nothing more can be claimed and every
    held vehicle is done; with `stop` set, the queued vehicles release themselves unpolled.
    """
    capacity = max(limit, workers)
    # Claim again once a worker's share of the batch is free (or half of it, for a small batch):
    # the queue then never runs dry while the next claim runs.
    refill = max(1, min(workers, capacity // 2))
    pool = _WorkerPool(cycle, workers, writers=_writers_for(cycle, workers))
    leases = _Leases(cycle)
    held: set[Any] = set()
    more = True
    try:
        while True:
            if more and capacity - len(held) >= refill:
                states = claim(min(limit, capacity - len(held)))
                more = bool(states)
                held.update(state.vehicle_id for state in states)
                pool.submit(states)
            if not held:
                return
            finished = pool.next_done(timeout=WAKE_SECONDS)
            if finished is not None:
                pk, result = finished
                held.discard(pk)
                done(result)
            if cycle.stop.is_set():
                more = False
            leases.renew_if_due(held)
    finally:
        pool.close()


def _writers_for(cycle: _Cycle, workers: int) -> int:
    # A poll's two writes take a few ms against its ~200 ms Smartcar call: one writer keeps up
    # with several workers. Only the real poll hands its writes over (an injected one does not).
    return 0 if cycle.poll_fn is not None else max(1, workers // WORKERS_PER_WRITER)


class _WorkerPool:
    """`workers` threads polling vehicles from a queue, and `writers` threads writing what the
    real poll read (its reading and outcome), so a worker waits for Smartcar and not for the
    database. Each thread closes its own database connection once, when it ends (not after
    every vehicle: a new connection per poll is a PostgreSQL backend start-up per vehicle)."""

    def __init__(self, cycle: _Cycle, workers: int, *, writers: int = 0) -> None:
        self._cycle = cycle
        self._todo: queue.SimpleQueue[Any] = queue.SimpleQueue()  # TelemetryState or _NO_MORE
        self._writes: queue.SimpleQueue[Any] = queue.SimpleQueue()  # _Polled or _NO_MORE
        self._done: queue.SimpleQueue[tuple[Any, _Done]] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._work, name=f"poller-{n}", daemon=True)
            for n in range(workers)
        ]
        self._writers = [
            threading.Thread(target=self._write, name=f"poller-writer-{n}", daemon=True)
            for n in range(writers)
        ]
        for thread in (*self._threads, *self._writers):
            thread.start()

    def submit(self, states: Sequence[TelemetryState]) -> None:
        for state in states:
            self._todo.put(state)

    def next_done(self, timeout: float) -> tuple[Any, _Done] | None:
        try:
            return self._done.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self) -> None:
        """Let every queued vehicle finish (or release itself, once stopping) and every read
        vehicle be written, then end."""
        for _ in self._threads:
            self._todo.put(_NO_MORE)
        for thread in self._threads:
            thread.join()
        for _ in self._writers:  # after the workers: no write is queued behind the end
            self._writes.put(_NO_MORE)
        for thread in self._writers:
            thread.join()

    def _work(self) -> None:
        try:
            while (state := self._todo.get()) is not _NO_MORE:
                result: _Done | _Polled = _CRASHED
                try:
                    result = _process(self._cycle, state)
                finally:
                    # Even on a BaseException the main thread must hear about this vehicle.
                    if isinstance(result, _Polled):
                        self._writes.put(result)
                    else:
                        self._done.put((state.vehicle_id, result))
        finally:
            connection.close()

    def _write(self) -> None:
        try:
            while (item := self._writes.get()) is not _NO_MORE:
                result = _CRASHED
                try:
                    result = _finish(self._cycle, item)
                finally:
                    self._done.put((item.state.vehicle_id, result))
        finally:
            connection.close()


_NO_MORE = object()
_CRASHED = _Done(kind="polled", reason="internal", outcome=Outcome.FAILED)


class _Leases:
    """Renews the leases of the vehicles a cycle holds, every third of POLL_LEASE_SECONDS: one
    UPDATE for all of them, and only rows still leased by this cycle (never a finished row or
    one another poller took over)."""

    def __init__(self, cycle: _Cycle) -> None:
        self._cycle = cycle
        self._seconds = float(settings.POLL_LEASE_SECONDS)
        self._renewed = time.monotonic()

    def renew_if_due(self, pks: Collection[Any]) -> int:
        if not pks or time.monotonic() - self._renewed < self._seconds / 3:
            return 0
        self._renewed = time.monotonic()
        now = self._cycle.clock()
        return TelemetryState.objects.filter(
            vehicle_id__in=list(pks), lease_owner=self._cycle.owner, lease_until__isnull=False
        ).update(lease_until=now + timedelta(seconds=self._seconds), updated_at=now)


def _app_paused(cycle: _Cycle, *, force: bool = False) -> bool:
    """Whether the app-wide pause is on: ours at once, another poller's within
    PAUSE_CHECK_SECONDS (or at once with `force`, as before each claim)."""
    if cycle.paused.is_set():
        return True
    checked = time.monotonic()
    if not force and checked - cycle.pause_checked < PAUSE_CHECK_SECONDS:
        return False
    cycle.pause_checked = checked  # racing workers may read twice: harmless
    if app_paused_until(now=cycle.clock()) is not None:
        cycle.paused.set()
        return True
    return False


def _warn_if_pool_too_small(workers: int) -> None:
    with contextlib.suppress(ValueError, AttributeError):  # Smartcar not configured: no pool
        pool = config_from_settings().pool_maxsize
        if workers > pool:
            logger.warning(
                "poller: %d workers share %d Smartcar HTTP connections; set "
                "SMARTCAR_HTTP_POOL_MAXSIZE >= the workers to keep every connection",
                workers,
                pool,
            )


def _process(cycle: _Cycle, state: TelemetryState) -> _Done | _Polled:
    try:
        return _poll_one(cycle, state)
    except Exception:  # a bug in recording must not stop the cycle; the lease expires
        logger.exception("poller: vehicle %s could not be processed", state.vehicle_id)
        return _CRASHED


def _finish(cycle: _Cycle, item: _Polled) -> _Done:
    """Store what the real poll read and write its outcome (a writer thread, or inline)."""
    pk, state = item.state.vehicle_id, item.state
    try:
        try:
            result = readings.telemetry_poll_store(item.polled)
        except Exception as exc:  # as a crashing poll: this vehicle's failure; calls are counted
            logger.exception("poller: polling vehicle %s crashed", pk)
            return _record_crash(cycle, pk, state, exc)
        return _record(cycle, pk, state, result)
    except Exception:  # a bug in recording must not stop the cycle; the lease expires
        logger.exception("poller: vehicle %s could not be processed", pk)
        return _CRASHED


def _poll_one(cycle: _Cycle, state: TelemetryState) -> _Done | _Polled:
    pk = state.vehicle_id
    if cycle.stop.is_set():
        _release(cycle, pk)
        return _Done(kind="skipped", reason="stopping")
    now = cycle.clock()
    if _app_paused(cycle):
        _release(cycle, pk)
        return _Done(kind="skipped", reason="paused")

    latest = state.latest_reading
    if not cycle.ignore_schedule and latest is not None and latest.source == Reading.Source.WEBHOOK:
        next_at = schedule.webhook_next_poll(
            received_at=latest.received_at,
            charging_state=latest.charging_state,
            is_plugged_in=latest.is_plugged_in,
            now=now,
            config=cycle.config,
        )
        if next_at is not None:
            # A fresh webhook reading counts as this poll: no Smartcar call.
            _write(cycle, pk, now, Outcome.UNCHANGED, "", 0, next_at)
            return _Done(kind="skipped", reason="webhook_fresh")

    if _budget_spent(cycle, state, now):
        # Spent elsewhere (on-demand refreshes count too): nothing more until next month.
        parked = {} if cycle.ignore_schedule else {"next_poll_at": schedule.next_month_start(now)}
        TelemetryState.objects.filter(vehicle_id=pk, lease_owner=cycle.owner).update(
            lease_until=None, updated_at=now, **parked
        )
        return _Done(kind="skipped", reason="budget_exhausted")

    try:
        if cycle.poll_fn is None:
            # The reading store leaves its pointer-and-calls UPDATE to `_write`, which folds it
            # into the outcome UPDATE (one statement and one commit less per poll).
            polled = readings.telemetry_poll_read(
                vehicle=state.vehicle, source=Reading.Source.POLL, defer_state_write=True
            )
            return _Polled(state, polled)
        result = cycle.poll_fn(vehicle=state.vehicle, source=Reading.Source.POLL)
    except Exception as exc:  # a crashing poll is this vehicle's failure, not the cycle's
        logger.exception("poller: polling vehicle %s crashed", pk)
        return _record_crash(cycle, pk, state, exc)
    return _record(cycle, pk, state, result)


def _record_crash(cycle: _Cycle, pk: Any, state: TelemetryState, exc: Exception) -> _Done:
    """A poll that raised (its read on a worker, or its store on a writer): the vehicle's
    failure, recorded as "crash"."""
    return _record(
        cycle, pk, state, PollResult(Outcome.FAILED, None, False, 0, error=exc), crashed=True
    )


def _budget_spent(cycle: _Cycle, state: TelemetryState, now: datetime) -> bool:
    # The schedule keeps the poller within budget; this catches forced polls (--all) and calls
    # spent outside the poller (on-demand refreshes).
    budget = cycle.config.monthly_budget
    return budget is not None and _calls_this_month(state, now) >= budget


def _calls_this_month(state: TelemetryState, now: datetime) -> int:
    return schedule.calls_in_month_of(
        now, calls_month=state.calls_month, calls=state.calls_this_month
    )


def _record(
    cycle: _Cycle, pk: Any, state: TelemetryState, result: PollResult, *, crashed: bool = False
) -> _Done:
    """Plan and write the outcome. `state` is the row read before the poll, which the real
    poll function kept in step (latest reading, this month's calls): no second read. A poll's
    deferred state write (`result.state_write`) is never lost: written with the outcome, or on
    its own when the lease is gone or recording fails."""
    try:
        done = _plan_and_write(cycle, pk, state, result, crashed=crashed)
    except BaseException:
        if result.state_write is not None:
            with contextlib.suppress(Exception):  # the original error is the one to report
                readings.telemetry_state_write(vehicle_pk=pk, write=result.state_write)
        raise
    return done


def _plan_and_write(
    cycle: _Cycle, pk: Any, state: TelemetryState, result: PollResult, *, crashed: bool
) -> _Done:
    now = cycle.clock()
    reading = result.reading or state.latest_reading
    plan = schedule.plan_next_poll(
        outcome=result.outcome,
        now=now,
        config=cycle.config,
        charging_state=reading.charging_state if reading else None,
        is_plugged_in=reading.is_plugged_in if reading else None,
        previous_failures=state.consecutive_failures,
        retry_after=result.retry_after,
        calls_this_month=_calls_this_month(state, now),
        calls_per_poll=result.calls,
        rng=cycle.rng,
    )
    label = error_label(result.error)
    reason = "crash" if crashed else _failure_reason(result)

    if result.app_rate_limited:
        cycle.paused.set()
        until = app_throttle_pause(
            retry_after=result.retry_after, now=now, config=cycle.config, rng=cycle.rng
        )
        logger.warning("poller: Smartcar app rate limit; every poller pauses until %s", until)
    if result.outcome == Outcome.BILLING:
        logger.error(
            "poller: Smartcar BILLING limit for vehicle %s (%s); no polls for it until %s. "
            "Check the Smartcar plan.",
            pk,
            label,
            plan.next_poll_at,
        )
    elif reason == "configuration":
        logger.error("poller: Smartcar rejected our configuration (%s); check credentials", label)

    if not _write(
        cycle,
        pk,
        now,
        result.outcome,
        label,
        plan.consecutive_failures,
        plan.next_poll_at,
        result.state_write,
    ):
        logger.warning("poller: lease on vehicle %s lost before its result was written", pk)
        if result.state_write is not None:
            # The reading and the calls are the vehicle's, whoever holds the lease now.
            readings.telemetry_state_write(vehicle_pk=pk, write=result.state_write)
    return _Done(kind="polled", reason=reason, outcome=result.outcome, stored=result.stored)


def _write(
    cycle: _Cycle,
    pk: Any,
    now: datetime,
    outcome: str,
    error: str,
    failures: int,
    next_poll_at: datetime | None,
    state_write: readings.StateWrite | None = None,
) -> bool:
    """Write a vehicle's outcome and release its lease, only if the lease is still ours; with
    a poll's deferred `state_write` (pointer and calls) in the same UPDATE."""
    values: dict[str, Any] = {"next_poll_at": next_poll_at} if next_poll_at is not None else {}
    kind = _NO_STATE_WRITE
    if state_write is not None:
        kind = _CALLS if state_write.reading_pk is None else _READING
        values.update(month=state_write.month, calls=state_write.calls)
        if kind == _READING:
            values.update(reading=state_write.reading_pk, recorded=state_write.recorded)
    written = _WRITE_OUTCOME[kind, next_poll_at is not None].execute(
        vehicle=pk,
        lease_owner=cycle.owner,
        now=now,
        outcome=outcome,
        error=error,
        failures=failures,
        **values,
    )
    return written == 1


def _outcome_update(*, state_write: str, scheduled: bool) -> CompiledUpdate:
    """Every poll ends with this UPDATE: built and compiled once per thread, like the state's
    SELECT (building it was about a sixth of a poll's CPU). A `Param` is never None, so a
    missing next poll time is another statement that writes NULL; likewise a poll's deferred
    state write (none, calls only, or calls and a reading) picks the statement."""

    extra: dict[str, Any] = {}
    if state_write != _NO_STATE_WRITE:
        extra = readings.state_write_columns(with_reading=state_write == _READING)
    return CompiledUpdate(
        lambda: TelemetryState.objects.filter(
            vehicle=Param("vehicle", column(TelemetryState, "vehicle")),
            lease_owner=Param("lease_owner", column(TelemetryState, "lease_owner")),
        ),
        last_polled_at=Param("now", column(TelemetryState, "last_polled_at")),
        last_outcome=Param("outcome", column(TelemetryState, "last_outcome")),
        last_error=Param("error", column(TelemetryState, "last_error")),
        consecutive_failures=Param("failures", column(TelemetryState, "consecutive_failures")),
        next_poll_at=Param("next_poll_at", column(TelemetryState, "next_poll_at"))
        if scheduled
        else None,
        lease_until=None,
        updated_at=Param("now", column(TelemetryState, "updated_at")),
        **extra,
    )


_NO_STATE_WRITE, _CALLS, _READING = "none", "calls", "reading"
_WRITE_OUTCOME = {
    (state_write, scheduled): _outcome_update(state_write=state_write, scheduled=scheduled)
    for state_write in (_NO_STATE_WRITE, _CALLS, _READING)
    for scheduled in (True, False)
}


def _failure_reason(result: PollResult) -> str:
    """ "" for success; else why, as the summary groups failures."""
    if result.outcome in (Outcome.OK, Outcome.UNCHANGED):
        return ""
    if isinstance(result.error, SmartcarConfigurationError):
        return "configuration"
    return str(result.outcome)


def _tally(summary: CycleSummary, done: _Done) -> None:
    if done.kind == "skipped":
        summary.skipped[done.reason] += 1
        return
    summary.polled += 1
    summary.outcomes[done.outcome] += 1
    summary.stored += done.stored
    if done.reason:
        summary.failed[done.reason] += 1
