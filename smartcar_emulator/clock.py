"""The emulator's only source of time, injectable so tests never sleep.

`now()` is epoch seconds (float). Tests install a `FakeClock` with `use_clock`; the control endpoint
can shift the real clock forward (`advance`) so a live server's tokens can be made to expire.
"""

import threading
import time
from collections.abc import Callable

_lock = threading.Lock()
_now: Callable[[], float] = time.time
_sleep: Callable[[float], None] = time.sleep
_offset = 0.0


class FakeClock:
    """A clock that only moves when told; its `sleep` advances it instead of blocking."""

    def __init__(self, start: float = 1_767_225_600.0) -> None:  # 2026-01-01T00:00:00Z
        self.current = float(start)
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.current

    def advance(self, seconds: float) -> None:
        self.current += seconds

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.current += seconds


def now() -> float:
    with _lock:
        return _now() + _offset


def sleep(seconds: float) -> None:
    if seconds > 0:
        _sleep(seconds)


def use_clock(now_fn: Callable[[], float], sleep_fn: Callable[[float], None] | None = None) -> None:
    """Replace the time source (and optionally the sleeper) until `reset_clock`."""
    global _now, _sleep, _offset
    with _lock:
        _now = now_fn
        _sleep = sleep_fn if sleep_fn is not None else getattr(now_fn, "sleep", time.sleep)
        _offset = 0.0


def advance(seconds: float) -> None:
    """Shift the emulator's time forward (works with the real clock too)."""
    global _offset
    with _lock:
        _offset += seconds


def reset_clock() -> None:
    global _now, _sleep, _offset
    with _lock:
        _now, _sleep, _offset = time.time, time.sleep, 0.0
