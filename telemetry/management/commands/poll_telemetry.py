"""`manage.py poll_telemetry`: poll due vehicles once (default) or in a loop.

Thin: parses options, wires signals and output, and calls `telemetry.services.polling`. SIGTERM
and SIGINT let in-flight polls finish, release the claims not yet polled, and exit 0. Exits with
status 2 when every poll attempted failed for a reason only an operator can fix (Smartcar
rejected our credentials or configuration, or the plan's billing limit), so cron and
supervisors notice.
"""

from __future__ import annotations

import json
import signal
import threading
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from telemetry.services import polling

OPERATOR_EXIT_STATUS = 2
_BAR_WIDTH = 30


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError(value)
    return number


class Command(BaseCommand):
    help = "Poll Smartcar for the telemetry of due vehicles."

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stop = threading.Event()

    def add_arguments(self, parser: CommandParser) -> None:
        mode = parser.add_mutually_exclusive_group()
        mode.add_argument(
            "--once",
            action="store_true",
            help="Poll every due vehicle, then exit (the default).",
        )
        mode.add_argument(
            "--loop",
            action="store_true",
            help="Keep polling, sleeping until the next vehicle is due; SIGTERM/SIGINT stop it.",
        )
        parser.add_argument(
            "--all",
            action="store_true",
            dest="ignore_schedule",
            help="Poll every active vehicle now, due or not (leases are still respected).",
        )
        parser.add_argument(
            "--vehicle",
            action="append",
            default=[],
            metavar="ID",
            help="Only this vehicle (our id or its Smartcar id); repeatable. Add --all to poll "
            "it even when it is not due.",
        )
        parser.add_argument(
            "--workers",
            type=_positive_int,
            default=polling.DEFAULT_WORKERS,
            help=f"Parallel polls: Smartcar calls at once (default {polling.DEFAULT_WORKERS}); "
            f"their writes go to one writer thread per {polling.WORKERS_PER_WRITER} workers.",
        )
        parser.add_argument("--json", action="store_true", help="Print the summary as JSON.")

    def handle_stop_signal(self, signum: int, frame: FrameType | None) -> None:
        """SIGTERM/SIGINT: finish in-flight polls, release the rest, exit 0."""
        self.stop.set()

    def handle(self, *args: Any, **options: Any) -> None:
        if options["loop"] and options["ignore_schedule"]:
            raise CommandError("--all cannot be combined with --loop (it would poll nonstop).")
        vehicle_ids = None
        if options["vehicle"]:
            vehicle_ids, missing = polling.vehicle_resolve_ids(identifiers=options["vehicle"])
            if missing:
                raise CommandError(f"Unknown vehicle: {', '.join(missing)}")

        cycle_options: dict[str, Any] = {
            "ignore_schedule": options["ignore_schedule"],
            "vehicle_ids": vehicle_ids,
            "workers": options["workers"],
            "progress": self._progress if self.stdout.isatty() else None,
        }
        previous = self._install_signal_handlers()
        try:
            if options["loop"]:
                polling.run_poll_loop(
                    stop=self.stop,
                    on_cycle=lambda summary: self._report(summary, options["json"], loop=True),
                    **cycle_options,
                )
                return
            summary = polling.run_poll_cycle(stop=self.stop, **cycle_options)
        finally:
            self._restore_signal_handlers(previous)
        self._report(summary, options["json"])
        if summary.needs_operator and not self.stop.is_set():
            raise CommandError(
                "Nothing could be polled: Smartcar rejected every call for a reason an operator "
                "must fix (see failed above).",
                returncode=OPERATOR_EXIT_STATUS,
            )

    def _report(self, summary: polling.CycleSummary, as_json: bool, *, loop: bool = False) -> None:
        if loop and summary.is_idle:
            return  # a loop reports only the cycles that did something
        if self.stdout.isatty() and summary.claimed:
            self.stdout.write("")  # end the progress bar's line
        if as_json:
            self.stdout.write(json.dumps(summary.as_dict(), sort_keys=True))
        else:
            self.stdout.write(summary.line())

    def _progress(self, done: int, claimed: int) -> None:
        filled = _BAR_WIDTH * done // claimed if claimed else 0
        bar = "#" * filled + "-" * (_BAR_WIDTH - filled)
        self.stdout.write(f"\r[{bar}] {done}/{claimed}", ending="")
        self.stdout.flush()

    def _install_signal_handlers(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}  # signals can only be handled in the main thread
        previous: dict[int, Any] = {}
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, self.handle_stop_signal)
        return previous

    def _restore_signal_handlers(self, previous: dict[int, Any]) -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
