"""The poll schedule's pure rules: intervals, backoff and jitter, Retry-After, billing, budget."""

import random
from datetime import UTC, date, datetime, timedelta

import pytest

from telemetry import schedule
from telemetry.schedule import ScheduleConfig, plan_next_poll

CONFIG = ScheduleConfig(
    charging=300, plugged_in=1800, default=900, asleep=3600, backoff_max=21600, monthly_budget=None
)
NOW = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)


def budgeted(budget: int) -> ScheduleConfig:
    return ScheduleConfig(**{**CONFIG.__dict__, "monthly_budget": budget})


def delay(plan: schedule.Plan, now: datetime = NOW) -> float:
    assert plan.next_poll_at is not None
    return (plan.next_poll_at - now).total_seconds()


@pytest.mark.parametrize(
    ("charging_state", "plugged", "expected", "rule"),
    [
        ("CHARGING", True, 300, "charging"),
        ("CHARGING", None, 300, "charging"),
        ("NOT_CHARGING", True, 1800, "plugged_in"),
        ("FULLY_CHARGED", True, 1800, "plugged_in"),
        ("NOT_CHARGING", False, 900, "default"),
        (None, None, 900, "default"),
    ],
)
def test_ok_uses_the_readings_interval(charging_state, plugged, expected, rule):
    plan = plan_next_poll(
        outcome="ok",
        now=NOW,
        config=CONFIG,
        charging_state=charging_state,
        is_plugged_in=plugged,
        previous_failures=4,
    )
    assert delay(plan) == expected
    assert plan.rule == rule
    assert plan.consecutive_failures == 0


def test_unchanged_counts_as_success():
    plan = plan_next_poll(outcome="unchanged", now=NOW, config=CONFIG, previous_failures=2)
    assert (delay(plan), plan.consecutive_failures) == (900, 0)


def test_asleep_grows_with_the_streak_and_is_capped():
    delays = [
        delay(plan_next_poll(outcome="asleep", now=NOW, config=CONFIG, previous_failures=n))
        for n in range(6)
    ]
    assert delays == [3600, 7200, 14400, 21600, 21600, 21600]
    plan = plan_next_poll(outcome="asleep", now=NOW, config=CONFIG, previous_failures=2)
    assert (plan.consecutive_failures, plan.rule) == (3, "asleep")


def test_failure_backoff_doubles_with_equal_jitter_within_bounds():
    rng = random.Random(7)
    for failures_before in range(12):
        nominal = min(21600, 900 * 2**failures_before)
        for _ in range(50):
            plan = plan_next_poll(
                outcome="failed",
                now=NOW,
                config=CONFIG,
                previous_failures=failures_before,
                rng=rng,
            )
            assert nominal / 2 <= delay(plan) <= nominal
            assert plan.consecutive_failures == failures_before + 1
            assert plan.rule == "backoff"


def test_backoff_jitter_actually_varies():
    rng = random.Random(1)
    values = {schedule.backoff_seconds(failures=3, base=900, cap=21600, rng=rng) for _ in range(20)}
    assert len(values) > 10


def test_backoff_is_capped_even_after_a_huge_streak():
    value = schedule.backoff_seconds(failures=10_000, base=900, cap=21600, rng=random.Random(0))
    assert 10800 <= value <= 21600


def test_backoff_starts_from_the_charging_interval_when_charging():
    plan = plan_next_poll(
        outcome="failed",
        now=NOW,
        config=CONFIG,
        charging_state="CHARGING",
        rng=random.Random(3),
    )
    assert 150 <= delay(plan) <= 300


def test_retry_after_is_a_floor():
    plan = plan_next_poll(
        outcome="rate_limited", now=NOW, config=CONFIG, retry_after=5000, rng=random.Random(0)
    )
    assert (delay(plan), plan.rule) == (5000, "retry_after")
    short = plan_next_poll(
        outcome="rate_limited", now=NOW, config=CONFIG, retry_after=60, rng=random.Random(0)
    )
    assert delay(short) >= 450  # the backoff is longer than the Retry-After: backoff wins
    assert short.consecutive_failures == 1


def test_billing_waits_for_the_first_instant_of_next_month():
    plan = plan_next_poll(outcome="billing", now=NOW, config=CONFIG, previous_failures=1)
    assert plan.next_poll_at == datetime(2025, 4, 1, tzinfo=UTC)
    assert (plan.rule, plan.consecutive_failures) == ("billing", 2)


def test_billing_in_december_waits_for_january():
    now = datetime(2025, 12, 31, 23, 59, tzinfo=UTC)
    plan = plan_next_poll(outcome="billing", now=now, config=CONFIG)
    assert plan.next_poll_at == datetime(2026, 1, 1, tzinfo=UTC)


def test_reauth_schedules_nothing_and_restarts_the_streak():
    plan = plan_next_poll(outcome="reauth", now=NOW, config=CONFIG, previous_failures=5)
    assert (plan.next_poll_at, plan.consecutive_failures, plan.rule) == (None, 0, "reauth")


def test_month_start_uses_utc():
    from zoneinfo import ZoneInfo

    local = datetime(2025, 4, 1, 1, 30, tzinfo=ZoneInfo("Europe/Berlin"))  # still March in UTC
    assert schedule.month_start(local) == datetime(2025, 3, 1, tzinfo=UTC)
    assert schedule.next_month_start(local) == datetime(2025, 4, 1, tzinfo=UTC)


# --- budget --------------------------------------------------------------------------------------


def test_budget_fair_interval_is_seconds_left_times_calls_per_remaining():
    seconds_left = (datetime(2025, 4, 1, tzinfo=UTC) - NOW).total_seconds()
    value = schedule.budget_min_interval(
        budget=500, calls_this_month=100, calls_per_poll=4, now=NOW, charging=False
    )
    assert value == pytest.approx(seconds_left * 4 / 400)


def test_budget_lets_a_charging_vehicle_poll_twice_as_often():
    fair = schedule.budget_min_interval(
        budget=500, calls_this_month=100, calls_per_poll=1, now=NOW, charging=False
    )
    charging = schedule.budget_min_interval(
        budget=500, calls_this_month=100, calls_per_poll=1, now=NOW, charging=True
    )
    assert fair is not None
    assert charging == pytest.approx(fair / 2)


def test_budget_exhausted_returns_none():
    assert (
        schedule.budget_min_interval(
            budget=500, calls_this_month=500, calls_per_poll=1, now=NOW, charging=False
        )
        is None
    )
    # Fewer calls left than one poll costs: exhausted too.
    assert (
        schedule.budget_min_interval(
            budget=500, calls_this_month=498, calls_per_poll=4, now=NOW, charging=True
        )
        is None
    )


def test_budget_stretches_the_interval():
    plan = plan_next_poll(
        outcome="ok", now=NOW, config=budgeted(100), calls_this_month=10, calls_per_poll=4
    )
    seconds_left = (datetime(2025, 4, 1, tzinfo=UTC) - NOW).total_seconds()
    assert delay(plan) == pytest.approx(seconds_left * 4 / 90)
    assert plan.rule == "budget"


def test_a_generous_budget_leaves_the_interval_alone():
    plan = plan_next_poll(
        outcome="ok", now=NOW, config=budgeted(100_000), calls_this_month=10, calls_per_poll=1
    )
    assert (delay(plan), plan.rule) == (900, "default")


def test_budget_exhausted_waits_until_next_month():
    plan = plan_next_poll(
        outcome="ok", now=NOW, config=budgeted(100), calls_this_month=100, calls_per_poll=1
    )
    assert plan.next_poll_at == datetime(2025, 4, 1, tzinfo=UTC)
    assert plan.rule == "budget_exhausted"


def test_budget_near_month_end_still_fits_before_the_month_ends():
    now = datetime(2025, 2, 28, 23, 0, tzinfo=UTC)  # one hour left in February
    plan = plan_next_poll(
        outcome="ok", now=now, config=budgeted(100), calls_this_month=98, calls_per_poll=1
    )
    # Two calls left for 3600 s: one poll every 1800 s at most.
    assert delay(plan, now) == pytest.approx(1800)
    assert plan.next_poll_at is not None
    assert plan.next_poll_at < datetime(2025, 3, 1, tzinfo=UTC)


def test_simulated_month_never_exceeds_the_budget():
    """Poll as the plan says for a whole month, charging all along: never more than the budget."""
    config = budgeted(300)
    now = datetime(2025, 3, 1, tzinfo=UTC)
    end = datetime(2025, 4, 1, tzinfo=UTC)
    calls = polls = 0
    while True:
        calls += 4  # a v2 batch of four paths
        polls += 1
        plan = plan_next_poll(
            outcome="ok",
            now=now,
            config=config,
            charging_state="CHARGING",
            calls_this_month=calls,
            calls_per_poll=4,
        )
        assert plan.next_poll_at is not None
        if plan.next_poll_at >= end:
            break
        now = plan.next_poll_at
    assert calls <= 300
    assert polls >= 70  # the budget is used, not wasted


def test_budget_floor_applies_to_failures_too():
    plan = plan_next_poll(
        outcome="failed",
        now=NOW,
        config=budgeted(10),
        calls_this_month=5,
        calls_per_poll=1,
        rng=random.Random(0),
    )
    seconds_left = (datetime(2025, 4, 1, tzinfo=UTC) - NOW).total_seconds()
    assert delay(plan) == pytest.approx(seconds_left / 5)


# --- webhook and app pause ----------------------------------------------------------------------


def test_webhook_reading_within_its_interval_schedules_from_it():
    received = NOW - timedelta(seconds=100)
    next_at = schedule.webhook_next_poll(
        received_at=received,
        charging_state="CHARGING",
        is_plugged_in=True,
        now=NOW,
        config=CONFIG,
    )
    assert next_at == received + timedelta(seconds=300)


def test_webhook_reading_older_than_its_interval_does_not_count():
    assert (
        schedule.webhook_next_poll(
            received_at=NOW - timedelta(seconds=301),
            charging_state="CHARGING",
            is_plugged_in=True,
            now=NOW,
            config=CONFIG,
        )
        is None
    )


def test_app_pause_prefers_retry_after():
    assert (
        schedule.app_pause_seconds(
            retry_after=90, previous_seconds=None, previous_ended_ago=None, config=CONFIG
        )
        == 90
    )


def test_app_pause_starts_at_base_with_jitter():
    rng = random.Random(5)
    for _ in range(30):
        value = schedule.app_pause_seconds(
            retry_after=None, previous_seconds=None, previous_ended_ago=None, config=CONFIG, rng=rng
        )
        assert 30 <= value <= 60


def test_app_pause_doubles_when_limited_again_soon_and_is_capped():
    value = schedule.app_pause_seconds(
        retry_after=None,
        previous_seconds=400,
        previous_ended_ago=100,
        config=CONFIG,
        rng=random.Random(2),
    )
    assert 400 <= value <= 800
    capped = schedule.app_pause_seconds(
        retry_after=None,
        previous_seconds=20000,
        previous_ended_ago=1,
        config=CONFIG,
        rng=random.Random(2),
    )
    assert 10800 <= capped <= 21600


def test_app_pause_starts_over_after_a_quiet_spell():
    value = schedule.app_pause_seconds(
        retry_after=None,
        previous_seconds=400,
        previous_ended_ago=801,
        config=CONFIG,
        rng=random.Random(2),
    )
    assert 30 <= value <= 60


def test_config_from_settings(settings):
    settings.POLL_INTERVAL_CHARGING = 11
    settings.SMARTCAR_MONTHLY_CALL_BUDGET = 42
    config = ScheduleConfig.from_settings()
    assert (config.charging, config.monthly_budget) == (11, 42)


def test_call_counter_of_an_earlier_month_reads_as_zero():
    now = datetime(2026, 3, 1, 0, 0, 5, tzinfo=UTC)

    assert schedule.calls_in_month_of(now, calls_month=date(2026, 3, 1), calls=7) == 7
    assert schedule.calls_in_month_of(now, calls_month=date(2026, 2, 1), calls=7) == 0
    assert schedule.calls_in_month_of(now, calls_month=None, calls=7) == 0
