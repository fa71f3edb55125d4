"""bench/_http_load.py, the load client of bench/api_load.py, against small raw TCP servers of
the test's own: what it counts as an answer, an error and a timeout decides the figures we
publish, so it is tested like product code."""

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from bench import _http_load

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"


@contextmanager
def raw_server(answer: Callable[[bytes], bytes | None]) -> Iterator[tuple[str, list[bytes]]]:
    """A TCP server on a free port that reads each request (headers and a Content-Length body),
    writes `answer(request)` (None: writes nothing and keeps the connection open until the
    server stops) and closes. Yields the base URL and the requests it received."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    received: list[bytes] = []
    stop = threading.Event()
    held: list[socket.socket] = []

    def read_request(conn: socket.socket) -> bytes:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(4096)
            if not chunk:
                return data
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(body) < length:
            body += conn.recv(4096)
        return head + b"\r\n\r\n" + body

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            request = read_request(conn)
            received.append(request)
            response = answer(request)
            if response is None:
                held.append(conn)
                continue
            conn.sendall(response)
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", received
    finally:
        stop.set()
        thread.join(5)
        for conn in held:
            conn.close()
        listener.close()


def test_counts_every_answer_and_sends_each_request_whole():
    requests = [
        _http_load.build_request(
            "http://127.0.0.1:1", "POST", "/hook", headers={"X-N": str(n)}, body=b"x" * n
        )
        for n in range(5)
    ]
    with raw_server(lambda _request: OK) as (base, received):
        result = _http_load.run_load(base, requests, total=12, connections=3)

    assert result.requests == 12
    assert len(result.latencies) == 12
    assert result.latencies == sorted(result.latencies)
    assert result.error_statuses == []
    assert result.seconds > 0
    assert result.client_cpu_seconds > 0
    # Cycled through the five requests, each arriving byte for byte (body included).
    assert sorted(received) == sorted(requests[n % 5] for n in range(12))
    assert requests[3].endswith(b"Content-Length: 3\r\n\r\nxxx")
    assert b"Connection: close" in requests[0]


def test_non_2xx_answers_are_errors_with_their_status():
    def answer(request: bytes) -> bytes:
        if b"/fail" in request.split(b"\r\n", 1)[0]:
            return b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"
        return OK

    requests = [
        _http_load.build_request("http://127.0.0.1:1", "GET", path) for path in ("/ok", "/fail")
    ]
    with raw_server(answer) as (base, _):
        result = _http_load.run_load(base, requests, total=6, connections=2)

    assert sorted(result.error_statuses) == [503, 503, 503]
    assert len(result.latencies) == 6


def test_a_response_cut_short_counts_by_its_status_line():
    # The server closes after the status line: the status is known, the body never came.
    with raw_server(lambda _request: b"HTTP/1.1 200 OK\r\n") as (base, _):
        result = _http_load.run_load(base, [b"GET / HTTP/1.1\r\n\r\n"], total=3, connections=1)

    assert result.error_statuses == []


def test_no_http_answer_is_status_0():
    with raw_server(lambda _request: b"garbage\r\n") as (base, _):
        result = _http_load.run_load(base, [b"GET / HTTP/1.1\r\n\r\n"], total=2, connections=2)

    assert result.error_statuses == [0, 0]


def test_a_refused_connection_is_status_0():
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    # Nothing listens on the port any more.
    result = _http_load.run_load(
        f"http://127.0.0.1:{port}", [b"GET / HTTP/1.1\r\n\r\n"], total=4, connections=2
    )

    assert result.error_statuses == [0, 0, 0, 0]
    assert len(result.latencies) == 4


def test_a_server_that_never_answers_times_out_as_status_0():
    with raw_server(lambda _request: None) as (base, _):
        result = _http_load.run_load(
            base, [b"GET / HTTP/1.1\r\n\r\n"], total=2, connections=2, timeout=0.3
        )

    assert result.error_statuses == [0, 0]
    # Not before the timeout (uvloop's timers are in whole milliseconds: 0.2997 s is on time).
    assert all(0.29 <= latency < 3 for latency in result.latencies)


def test_no_requests_is_refused():
    with pytest.raises(ValueError, match="no requests"):
        _http_load.run_load("http://127.0.0.1:1", [], total=1, connections=1)
