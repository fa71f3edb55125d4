"""When to poll a vehicle next: pure functions of the last outcome, reading, streak and budget.

Owns the poll schedule's rules (issue 5 §3), and nothing else: no database, no settings lookups
outside `ScheduleConfig.from_settings`, no clock (callers pass `now`), no global random state
(callers may pass a `random.Random` for reproducible jitter). The poller (`services/polling.py`)
applies the `Plan` this module returns.

Rules, in order:
- `reauth`: no next poll (the account is not active, so the vehicle is not due anyway); the
  streak restarts, so a reconnected vehicle is polled at once and at its normal pace.
- `billing`: the first instant of next month (UTC), when Smartcar's monthly quota resets.
- `ok` / `unchanged`: the reading's interval: charging → POLL_INTERVAL_CHARGING, plugged in and
  not charging → POLL_INTERVAL_PLUGGED_IN, otherwise POLL_INTERVAL_DEFAULT. Streak reset.
- `asleep`: POLL_INTERVAL_ASLEEP doubled per consecutive failure, capped at POLL_BACKOFF_MAX
  (no jitter: a sleeping car is not a thundering herd).
- `failed` / `rate_limited`: exponential backoff from the reading's interval, doubled per
  consecutive failure and capped at POLL_BACKOFF_MAX, with *equal* jitter (half fixed, half
  random): full jitter could re-poll a failing car almost at once. A Retry-After is a floor.
- Budget (SMARTCAR_MONTHLY_CALL_BUDGET set): every delay above is at least the fair interval,
  `seconds left in the month * calls per poll / calls left`, so the vehicle cannot exceed its
  budget by the month's end. A charging vehicle may poll at twice the fair rate (half the fair
  interval); the budget is still never exceeded because a poll is only scheduled while at least
  one poll's worth of calls is left; it may merely run out earlier in the month. Out of calls:
  next poll at the start of next month.
"""

from __future__ import annotations

import math
import random
import secrets
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from django.conf import settings

# The outcomes this module plans for (values of TelemetryState.Outcome; kept as plain strings so
# this module needs no model import).
OK = "ok"
UNCHANGED = "unchanged"
ASLEEP = "asleep"
RATE_LIMITED = "rate_limited"
BILLING = "billing"
REAUTH = "reauth"
FAILED = "failed"

CHARGING = "CHARGING"

# A charging vehicle may spend its budget this many times faster than the fair rate.
CHARGING_BUDGET_SHARE = 2
# Exponents beyond this would only overflow: 2**32 times any interval is far past any cap.
_MAX_EXPONENT = 32
# Never schedule a poll sooner than this, whatever the settings say.
MIN_DELAY_SECONDS = 1.0
# The app-wide pause's first step when Smartcar gave no Retry-After: the app bucket refills one
# request every 30 s (API-FACTS §6), so a minute lets a few requests through.
APP_PAUSE_BASE_SECONDS = 60.0

_system_random = secrets.SystemRandom()


@dataclass(frozen=True)
class ScheduleConfig:
    charging: int
    plugged_in: int
    default: int
    asleep: int
    backoff_max: int
    monthly_budget: int | None

    @classmethod
    def from_settings(cls) -> ScheduleConfig:
        return cls(
            charging=settings.POLL_INTERVAL_CHARGING,
            plugged_in=settings.POLL_INTERVAL_PLUGGED_IN,
            default=settings.POLL_INTERVAL_DEFAULT,
            asleep=settings.POLL_INTERVAL_ASLEEP,
            backoff_max=settings.POLL_BACKOFF_MAX,
            monthly_budget=settings.SMARTCAR_MONTHLY_CALL_BUDGET,
        )


@dataclass(frozen=True)
class Plan:
    next_poll_at: datetime | None
    consecutive_failures: int
    # Which rule decided the delay: charging, plugged_in, default, asleep, backoff, retry_after,
    # budget, budget_exhausted, billing, reauth. For logs and tests.
    rule: str


def interval_for_reading(
    *, charging_state: str | None, is_plugged_in: bool | None, config: ScheduleConfig
) -> tuple[int, str]:
    """The normal interval for a vehicle in this state, and the rule's name."""
    if charging_state == CHARGING:
        return config.charging, "charging"
    if is_plugged_in:
        return config.plugged_in, "plugged_in"
    return config.default, "default"


def backoff_seconds(
    *, failures: int, base: float, cap: float, rng: random.Random | None = None
) -> float:
    """Exponential backoff with equal jitter: within [nominal / 2, nominal], nominal ≤ cap."""
    nominal = _doubled(base, failures, cap)
    half = nominal / 2
    return half + (rng or _system_random).uniform(0, half)


def asleep_seconds(*, streak: int, config: ScheduleConfig) -> float:
    """POLL_INTERVAL_ASLEEP, doubled per consecutive failure, capped at POLL_BACKOFF_MAX."""
    return _doubled(config.asleep, streak, max(config.backoff_max, config.asleep))


def month_start(now: datetime) -> datetime:
    """The first instant of `now`'s calendar month, in UTC."""
    utc = now.astimezone(UTC)
    return utc.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def calls_in_month_of(now: datetime, *, calls_month: date | None, calls: int) -> int:
    """A vehicle's call counter as it stands for `now`'s month: a count kept for an earlier
    month is 0 now (the counter restarts on the next call)."""
    return calls if calls_month == month_start(now).date() else 0


def next_month_start(now: datetime) -> datetime:
    """The first instant of the calendar month after `now`'s, in UTC."""
    start = month_start(now)
    if start.month == 12:
        return start.replace(year=start.year + 1, month=1)
    return start.replace(month=start.month + 1)


def budget_min_interval(
    *,
    budget: int,
    calls_this_month: int,
    calls_per_poll: int,
    now: datetime,
    charging: bool,
) -> float | None:
    """The shortest interval that keeps the vehicle within `budget` calls this month.

    Returns None when the budget cannot pay for one more poll: no poll until next month.
    `calls_per_poll` is the last poll's call count (at least 1).
    """
    per_poll = max(1, calls_per_poll)
    remaining = budget - max(0, calls_this_month)
    if remaining < per_poll:
        return None
    seconds_left = (next_month_start(now) - now).total_seconds()
    fair = seconds_left * per_poll / remaining
    return fair / CHARGING_BUDGET_SHARE if charging else fair


def plan_next_poll(
    *,
    outcome: str,
    now: datetime,
    config: ScheduleConfig,
    charging_state: str | None = None,
    is_plugged_in: bool | None = None,
    previous_failures: int = 0,
    retry_after: int | None = None,
    calls_this_month: int = 0,
    calls_per_poll: int = 1,
    rng: random.Random | None = None,
) -> Plan:
    """The next poll time and failure streak after a poll that ended with `outcome`.

    `charging_state` / `is_plugged_in` come from the newest reading known (this poll's or the
    stored latest one); `calls_this_month` counts this poll's calls already.
    """
    if outcome == REAUTH:
        return Plan(next_poll_at=None, consecutive_failures=0, rule="reauth")
    streak = previous_failures + 1
    if outcome == BILLING:
        return Plan(next_poll_at=next_month_start(now), consecutive_failures=streak, rule="billing")

    interval, rule = interval_for_reading(
        charging_state=charging_state, is_plugged_in=is_plugged_in, config=config
    )
    delay: float
    if outcome in (OK, UNCHANGED):
        streak, delay = 0, float(interval)
    elif outcome == ASLEEP:
        delay, rule = asleep_seconds(streak=streak, config=config), "asleep"
    else:  # failed, rate_limited, or anything unknown: treat as a failure
        delay = backoff_seconds(failures=streak, base=interval, cap=config.backoff_max, rng=rng)
        rule = "backoff"
        if retry_after is not None and retry_after > delay:
            delay, rule = float(retry_after), "retry_after"

    if config.monthly_budget is not None:
        floor = budget_min_interval(
            budget=config.monthly_budget,
            calls_this_month=calls_this_month,
            calls_per_poll=calls_per_poll,
            now=now,
            charging=charging_state == CHARGING,
        )
        if floor is None:
            return Plan(
                next_poll_at=next_month_start(now),
                consecutive_failures=streak,
                rule="budget_exhausted",
            )
        if floor > delay:
            delay, rule = floor, "budget"

    delay = max(delay, MIN_DELAY_SECONDS)
    return Plan(next_poll_at=now + timedelta(seconds=delay), consecutive_failures=streak, rule=rule)


def webhook_next_poll(
    *,
    received_at: datetime,
    charging_state: str | None,
    is_plugged_in: bool | None,
    now: datetime,
    config: ScheduleConfig,
) -> datetime | None:
    """If a webhook reading received at `received_at` still covers this poll, the next poll time.

    A webhook reading is as good as a poll for as long as the vehicle's interval: the next poll is
    one interval after it arrived. None once that interval has passed (poll now).
    """
    interval, _ = interval_for_reading(
        charging_state=charging_state, is_plugged_in=is_plugged_in, config=config
    )
    next_at = received_at + timedelta(seconds=interval)
    return next_at if next_at > now else None


def app_pause_seconds(
    *,
    retry_after: int | None,
    previous_seconds: float | None,
    previous_ended_ago: float | None,
    config: ScheduleConfig,
    rng: random.Random | None = None,
) -> float:
    """How long the whole app pauses after Smartcar's app-wide rate limit.

    Retry-After wins when Smartcar sent one. Otherwise exponential backoff with equal jitter: a
    pause that comes soon after the previous one ended (within twice its length) doubles it;
    otherwise it starts again at APP_PAUSE_BASE_SECONDS. Capped at POLL_BACKOFF_MAX.
    """
    if retry_after is not None and retry_after > 0:
        return float(retry_after)
    nominal = APP_PAUSE_BASE_SECONDS
    if (
        previous_seconds is not None
        and previous_ended_ago is not None
        and previous_seconds > 0
        and previous_ended_ago <= 2 * previous_seconds
    ):
        nominal = max(nominal, 2 * previous_seconds)
    nominal = min(nominal, float(max(config.backoff_max, APP_PAUSE_BASE_SECONDS)))
    return backoff_seconds(failures=1, base=nominal, cap=nominal, rng=rng)


def _doubled(base: float, failures: int, cap: float) -> float:
    exponent = min(max(failures - 1, 0), _MAX_EXPONENT)
    return min(float(cap), base * math.pow(2, exponent))
