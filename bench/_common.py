"""Shared plumbing of the benchmark scripts: Django set-up on a throwaway database, a threaded
WSGI server, an RSS sampler, SQL and HTTP counters, and the table/JSON output.

Never touches a database it did not create: every script works on a fresh database (a temp
SQLite file, or a new PostgreSQL database named after the script and pid) that it drops at the
end. Never prints a token: the emulator's token file lives in a private temp dir.
"""

from __future__ import annotations

import collections
import functools
import json
import logging
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO_ROOT / "bench" / "results"
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def setup_django(database_url: str | None, *, settings_module: str = "config.settings.test") -> str:
    """Configure Django for a benchmark; returns the database vendor label ("sqlite"/"postgresql").

    `database_url` None = SQLite in a temp file. The test settings are the base (fixed fake
    Smartcar credentials, the emulator mounted, DEBUG off); logging is quietened to WARNING so a
    10,000-vehicle cycle does not print 10,000 lines.
    """
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    if database_url is None:
        database_url = f"sqlite:///{_temp_folder()}/bench.sqlite3"
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ["DJANGO_SETTINGS_MODULE"] = settings_module
    import django

    django.setup()
    from django.db import connection

    return str(connection.vendor)


def create_database(label: str) -> None:
    """Create (and migrate) a fresh database for this run, like the test runner does."""
    from django.db import connection

    if connection.vendor != "sqlite":
        connection.settings_dict.setdefault("TEST", {})["NAME"] = f"bench_{label}_{os.getpid()}"
    else:
        connection.settings_dict.setdefault("TEST", {})["NAME"] = (
            f"{_temp_folder()}/{label}.sqlite3"
        )
    connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)


def destroy_database() -> None:
    from django.db import connection

    name = connection.settings_dict["NAME"]
    connection.creation.destroy_test_db(name, verbosity=0)
    while _TEMP_FOLDERS:  # the SQLite files' folders, with any -wal/-shm files left in them
        shutil.rmtree(_TEMP_FOLDERS.pop(), ignore_errors=True)


# Folders this process made for SQLite files; removed by destroy_database.
_TEMP_FOLDERS: list[str] = []


def _temp_folder() -> str:
    folder = tempfile.mkdtemp(prefix="bench-db-")
    _TEMP_FOLDERS.append(folder)
    return folder


def database_url() -> str:
    """The URL of the database Django is on now (for child processes)."""
    from tests.support import current_database_url

    return current_database_url()


def database_version() -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("select sqlite_version()")
            return f"SQLite {cursor.fetchone()[0]}"
        cursor.execute("show server_version")
        return f"PostgreSQL {cursor.fetchone()[0]}"


# --- counting -----------------------------------------------------------------------------------


class Counter:
    """A thread-safe counter, optionally by kind."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0
        self.kinds: collections.Counter[str] = collections.Counter()

    def add(self, amount: int = 1, kind: str | None = None) -> None:
        with self._lock:
            self.value += amount
            if kind is not None:
                self.kinds[kind] += amount

    def reset(self) -> int:
        with self._lock:
            value, self.value = self.value, 0
            return value


_TABLE = re.compile(r'(?:FROM|INTO|UPDATE)\s+"?([a-z_]+)"?', re.IGNORECASE)


@functools.lru_cache(maxsize=1024)
def sql_kind(sql: str) -> str:
    """ "SELECT telemetry_telemetrystate": the statement's verb and first table. Memoised: the
    hot statements are compiled once, so their text repeats, and the counting must not take
    CPU the code under test needs."""
    verb = sql.lstrip().split(" ", 1)[0].upper()
    match = _TABLE.search(sql)
    return f"{verb} {match.group(1)}" if match else verb


@contextmanager
def count_sql(
    skip_thread: Callable[[threading.Thread], bool] = lambda t: False,
) -> Iterator[Counter]:
    """Count every SQL statement any thread sends (Django's per-connection wrappers are
    per thread, and the poller's worker threads come and go), except threads `skip_thread`
    names (e.g. an in-process server's request threads)."""
    from django.db.backends import utils

    counter = Counter()
    original = utils.CursorWrapper._execute_with_wrappers

    def counting(self: Any, sql: Any, params: Any, many: bool, executor: Any) -> Any:
        if not skip_thread(threading.current_thread()):
            counter.add(kind=sql_kind(str(sql)))
        return original(self, sql, params, many, executor)

    utils.CursorWrapper._execute_with_wrappers = counting  # type: ignore[method-assign]
    try:
        yield counter
    finally:
        utils.CursorWrapper._execute_with_wrappers = original  # type: ignore[method-assign]


@contextmanager
def count_http() -> Iterator[Counter]:
    """Count every HTTP request `requests` sends from this process."""
    from requests.adapters import HTTPAdapter

    counter = Counter()
    original = HTTPAdapter.send

    def counting(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        counter.add()
        return original(self, request, *args, **kwargs)

    HTTPAdapter.send = counting  # type: ignore[method-assign]
    try:
        yield counter
    finally:
        HTTPAdapter.send = original  # type: ignore[method-assign]


@contextmanager
def count_pool_discards() -> Iterator[Counter]:
    """Count (and keep off the console) urllib3's "Connection pool is full, discarding
    connection" warnings: each one is a TCP connection thrown away after one request."""
    counter = Counter()

    def swallow(record: logging.LogRecord) -> bool:
        if "Connection pool is full" in record.getMessage():
            counter.add()
            return False
        return True

    log = logging.getLogger("urllib3.connectionpool")
    log.addFilter(swallow)
    try:
        yield counter
    finally:
        log.removeFilter(swallow)


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as stat:
        # Fields after the command name, which may contain spaces, hence the split at ")".
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE_SIZE


class RssSampler:
    """Peak resident memory of this process while the block runs (sampled every 20 ms)."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.baseline = 0
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, rss_bytes())

    def __enter__(self) -> RssSampler:
        self.baseline = self.peak = rss_bytes()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())

    @property
    def growth_mib(self) -> float:
        return (self.peak - self.baseline) / 2**20


# --- servers ------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(
    port: int, timeout: float = 30.0, process: subprocess.Popen | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with code {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port} after {timeout}s")


def stop_process(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- output -------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """What ran the benchmark: CPU, cores, memory, Python and the libraries that matter."""
    cpu = ""
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next((line.split(":", 1)[1].strip() for line in info if "model name" in line), "")
    except OSError:
        pass
    memory = 0
    try:
        with open("/proc/meminfo") as info:
            memory = int(next(line.split()[1] for line in info if line.startswith("MemTotal")))
    except (OSError, StopIteration):
        pass
    import django

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memoryGiB": round(memory / 2**20, 1),
        "python": platform.python_version(),
        "django": django.get_version(),
        "platform": platform.platform(),
    }


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table (readable on a terminal, pasteable into docs/performance.md)."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
        return str(value)

    text = [[cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in text)) for i, h in enumerate(headers)]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |"]
    lines.append("| " + " | ".join("-" * w for w in widths) + " |")
    lines += [
        "| " + " | ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in text
    ]
    return "\n".join(lines)


def write_results(name: str, payload: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **payload}, indent=2, default=str) + "\n")
    return path


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of already sorted values (0 when empty)."""
    if not sorted_values:
        return 0.0
    rank = max(0, min(len(sorted_values) - 1, round(pct / 100 * len(sorted_values) + 0.5) - 1))
    return float(sorted_values[rank])
