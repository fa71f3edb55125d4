"""Single-flight refresh under real concurrency (SECURITY E1, E2).

Threads run on SQLite and PostgreSQL; separate processes on PostgreSQL only. The token endpoint is
a real HTTP server on 127.0.0.1 (so child processes reach it too) with strict rotation: each
refresh token works exactly once, and a reuse is answered with `invalid_grant`, as Smartcar does
once its one-minute grace is over (we design for zero grace).
"""

import base64
import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

import pytest
from django.db import connection

from smartcar_client.types import TokenSet
from tests.support import current_database_url
from vehicles.models import SmartcarAccount
from vehicles.services import LinkedVehicleInfo, account_link
from vehicles.tokens import account_access_token

REPO_ROOT = Path(__file__).resolve().parents[2]
THREADS = 8
CHILD_PROCESSES = 2
CHILD_THREADS = 4
# Time the fake Smartcar takes to answer: wide enough for every worker to pile up on the lease.
ENDPOINT_DELAY = 0.3


class StrictTokenEndpoint:
    """`POST /oauth/token` with refresh-token rotation and zero grace, counting every call."""

    def __init__(self, first_refresh_token: str = "refresh-1") -> None:  # noqa: S107
        self.lock = threading.Lock()
        self.valid = {first_refresh_token}
        self.issued = 1
        self.calls = 0
        self.invalid_grants = 0
        self.bad_requests = 0
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                form = parse_qs(self.rfile.read(length).decode())
                status, body = endpoint.answer(self.path, self.headers.get("Authorization"), form)
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format, *args) -> None:
                pass  # keep test output quiet

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def answer(self, path, authorization, form):
        expected = "Basic " + base64.b64encode(b"test-client-id:test-client-secret-value").decode()
        with self.lock:
            self.calls += 1
        if path != "/oauth/token" or authorization != expected:
            with self.lock:
                self.bad_requests += 1
            return 401, {"error": "invalid_client", "error_description": "bad client"}
        time.sleep(ENDPOINT_DELAY)
        token = form.get("refresh_token", [""])[0]
        with self.lock:
            if form.get("grant_type") != ["refresh_token"] or token not in self.valid:
                self.invalid_grants += 1
                return 400, {
                    "error": "invalid_grant",
                    "error_description": "Invalid refresh_token.",
                }
            self.valid.discard(token)
            self.issued += 1
            self.valid.add(f"refresh-{self.issued}")
            return 200, {
                "access_token": f"access-{self.issued}",
                "refresh_token": f"refresh-{self.issued}",
                "token_type": "Bearer",
                "expires_in": 7200,
            }

    def __enter__(self) -> "StrictTokenEndpoint":
        self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def threads_share_the_database():
    # Django's in-memory SQLite test database is shared between threads through SQLite's shared
    # cache, whose table locks fail at once ("database table is locked") instead of waiting.
    if connection.vendor == "sqlite" and connection.is_in_memory_db():
        pytest.skip(
            "the in-memory SQLite test database fails concurrent writers with 'database table is "
            "locked'; set DATABASES['default']['TEST']['NAME'] to a file to run this on SQLite"
        )


@pytest.fixture
def token_endpoint(settings):
    with StrictTokenEndpoint() as endpoint:
        settings.SMARTCAR_AUTH_URL = endpoint.url
        yield endpoint


def make_account(user, *, expires_in: int) -> SmartcarAccount:
    pair = TokenSet.from_json(
        {"access_token": "access-1", "refresh_token": "refresh-1", "expires_in": expires_in}
    )
    return account_link(
        owner=user,
        smartcar_user_id="sc-user-1",
        tokens=pair,
        scopes=["read_odometer"],
        vehicles=[LinkedVehicleInfo("vid-1")],
    ).account


def run_threads(count: int, work, start: threading.Event | None = None):
    """Run `work(account)` in `count` threads released together; return (results, errors)."""
    ready = threading.Barrier(count + 1)
    start = start or threading.Event()
    results, errors = [], []
    lock = threading.Lock()

    def worker() -> None:
        try:
            ready.wait(timeout=30)
            start.wait(timeout=30)
            result = work()
            with lock:
                results.append(result)
        except BaseException as exc:  # noqa: BLE001  (reported to the main thread below)
            with lock:
                errors.append(repr(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(count)]
    for thread in threads:
        thread.start()
    ready.wait(timeout=30)
    return threads, start, results, errors


def join_all(threads) -> None:
    for thread in threads:
        thread.join(timeout=120)
        assert not thread.is_alive(), "a worker never finished"


def assert_refreshed_once(endpoint: StrictTokenEndpoint, account: SmartcarAccount) -> None:
    assert endpoint.calls == 1
    assert endpoint.invalid_grants == 0
    assert endpoint.bad_requests == 0
    row = SmartcarAccount.objects.get(pk=account.pk)
    assert (row.access_token, row.refresh_token) == ("access-2", "refresh-2")
    assert row.status == SmartcarAccount.Status.ACTIVE
    assert row.refresh_lease_until is None


@pytest.mark.django_db(transaction=True)
def test_eight_threads_needing_a_refresh_make_one_token_call(
    user, token_endpoint, threads_share_the_database
):
    account = make_account(user, expires_in=60)  # inside the refresh margin

    def work() -> str:
        return account_access_token(account=SmartcarAccount.objects.get(pk=account.pk))

    threads, start, results, errors = run_threads(THREADS, work)
    start.set()
    join_all(threads)

    assert errors == []
    assert results == ["access-2"] * THREADS
    assert_refreshed_once(token_endpoint, account)


@pytest.mark.django_db(transaction=True)
def test_eight_threads_forcing_a_refresh_of_one_rejected_token_make_one_call(
    user, token_endpoint, threads_share_the_database
):
    """All workers saw Smartcar reject the same (unexpired) token: one refresh serves them all."""
    account = make_account(user, expires_in=7200)
    rejected = [SmartcarAccount.objects.get(pk=account.pk) for _ in range(THREADS)]
    handed_out = iter(rejected)
    lock = threading.Lock()

    def work() -> str:
        with lock:
            mine = next(handed_out)
        return account_access_token(account=mine, force_refresh=True)

    threads, start, results, errors = run_threads(THREADS, work)
    start.set()
    join_all(threads)

    assert errors == []
    assert results == ["access-2"] * THREADS
    assert_refreshed_once(token_endpoint, account)


# --- several processes (PostgreSQL) ----------------------------------------------------------

CHILD_CODE = """
import os, sys
sys.path.insert(0, os.getcwd())
import django
django.setup()
from vehicles.tests.test_tokens_concurrency import child_main
child_main()
"""


def child_main() -> None:
    """Entry point of a child process: CHILD_THREADS workers, released when the parent says go."""
    from django.conf import settings

    settings.SMARTCAR_AUTH_URL = os.environ["TOKENS_TEST_AUTH_URL"]
    account_pk = int(os.environ["TOKENS_TEST_ACCOUNT"])

    def work() -> str:
        return account_access_token(account=SmartcarAccount.objects.get(pk=account_pk))

    threads, start, results, errors = run_threads(CHILD_THREADS, work)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    if sys.stdin.readline().strip() != "go":
        raise SystemExit("parent did not say go")
    start.set()
    for thread in threads:
        thread.join(timeout=120)
    sys.stdout.write(json.dumps({"results": results, "errors": errors}) + "\n")
    sys.stdout.flush()


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_two_processes_and_threads_needing_a_refresh_make_one_token_call(user, token_endpoint):
    if connection.vendor != "postgresql":
        pytest.skip(
            "several processes sharing one database is a PostgreSQL deployment; on SQLite the "
            "thread tests cover single-flight"
        )
    account = make_account(user, expires_in=60)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        # The children must use the test database pytest-django created, not the configured one.
        "DATABASE_URL": current_database_url(),
        "TOKENS_TEST_AUTH_URL": token_endpoint.url,
        "TOKENS_TEST_ACCOUNT": str(account.pk),
    }
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD_CODE],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(CHILD_PROCESSES)
    ]
    try:
        for child in children:
            line = child.stdout.readline()
            assert line == "ready\n", child.stderr.read()

        def work() -> str:
            return account_access_token(account=SmartcarAccount.objects.get(pk=account.pk))

        threads, start, results, errors = run_threads(CHILD_THREADS, work)
        for child in children:
            child.stdin.write("go\n")
            child.stdin.flush()
        start.set()
        join_all(threads)
        outputs = [child.communicate(timeout=120) for child in children]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()

    for child, (stdout, stderr) in zip(children, outputs, strict=True):
        assert child.returncode == 0, stderr
        report = json.loads(stdout.strip().splitlines()[-1])
        results.extend(report["results"])
        errors.extend(report["errors"])
    assert errors == []
    assert results == ["access-2"] * (CHILD_THREADS * (CHILD_PROCESSES + 1))
    assert_refreshed_once(token_endpoint, account)
