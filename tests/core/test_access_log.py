"""The access log: written at the end of each exchange, in Uvicorn's line or
gunicorn's atoms (--access-log-format), with whatever the client sent escaped;
WebSocket handshakes included; --log-format json."""

from __future__ import annotations

import base64
import json
import re
import signal
import socket
import time
from datetime import datetime

import httpx
import pytest
from support import KetchProcess, RawConnection, free_port, run_ketch, wait_for
from support.websocket import OP_TEXT, RawWebSocket, frame, upgrade_request

ATOMS = list("hlutrmUqHsBbfaTDMLpX")  # every one-letter atom
EVERY_ATOM = "|".join(f"{atom}=%({atom})s" for atom in ATOMS) + (
    "|i=%({X-Request-ID}i)s|o=%({x-app}o)s|e=%({KETCH_TEST_ATOM}e)s|none=%({x-none}i)s"
)


def _accepts(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _ketch(*args: str, env: dict[str, str] | None = None) -> tuple[KetchProcess, int]:
    port = free_port()
    process = KetchProcess(["support.apps:observed", "--port", str(port), *args], env=env)
    wait_for(lambda: _accepts(port) or process.proc.poll() is not None, timeout=15)
    return process, port


def _fields(line: str) -> dict[str, str]:
    return dict(part.partition("=")[::2] for part in line.split("|"))


def test_every_atom_against_a_known_request() -> None:
    process, port = _ketch(
        "--access-log-format", EVERY_ATOM, env={"KETCH_TEST_ATOM": "from the environment"}
    )
    with process:
        user = base64.b64encode(b"alice:secret").decode()
        with RawConnection(port) as conn:
            conn.send(
                b"POST /known/path?sleep=0.05&x=1 HTTP/1.1\r\nHost: example.org\r\n"
                b"User-Agent: atom-test/1.0\r\nReferer: http://example.org/from\r\n"
                b"Authorization: Basic " + user.encode() + b"\r\n"
                b"X-Request-ID: req-42\r\nContent-Length: 5\r\n\r\nhello"
            )
            assert conn.read_response().body == b"0123456789"
            conn.send(b"HEAD / HTTP/1.1\r\nHost: example.org\r\n\r\n")
            assert conn.read_response(head_only=True).status == 200
        lines = process.wait_for_output(r"(?s)(h=.*?\n.*h=[^\n]*)").group(1).splitlines()
    post, head = (_fields(line) for line in lines)
    assert {key: post[key] for key in post if key not in ("t", "T", "D", "M", "L")} == {
        "h": "127.0.0.1",
        "l": "-",
        "u": "alice",
        "r": "POST /known/path?sleep=0.05&x=1 HTTP/1.1",
        "m": "POST",
        "U": "/known/path",
        "q": "sleep=0.05&x=1",
        "H": "HTTP/1.1",
        "s": "200",
        "B": "10",
        "b": "10",
        "f": "http://example.org/from",
        "a": "atom-test/1.0",
        "p": f"<{process.proc.pid}>",
        "X": "-",
        "i": "req-42",
        "o": "observed",
        "e": "from the environment",
        "none": "-",
    }
    logged = datetime.strptime(post["t"], "[%d/%b/%Y:%H:%M:%S %z]")
    assert abs(logged.timestamp() - time.time()) < 60
    micros = int(post["D"])
    assert 50_000 <= micros < 5_000_000  # the app slept 0.05 s: the line came after
    assert post["T"] == str(micros // 1_000_000)
    assert abs(int(post["M"]) - micros // 1000) <= 1
    assert post["L"] == "%d.%06d" % divmod(micros, 1_000_000)
    # a response without a body: B is 0, b is '-' (the Common Log Format's)
    assert (head["r"], head["B"], head["b"], head["u"], head["f"]) == (
        "HEAD / HTTP/1.1",
        "0",
        "-",
        "-",
        "-",
    )


def test_a_line_when_the_response_is_complete_with_its_duration_and_size() -> None:
    process, port = _ketch("--access-log-format", "%(r)s %(s)s %(B)s %(D)s %(X)s")
    with process:
        started = time.monotonic()
        response = httpx.get(f"http://127.0.0.1:{port}/stream?n=3&pause=0.1")
        elapsed = time.monotonic() - started
        assert response.content == b"x" * 30
        match = process.wait_for_output(r"GET /stream\?n=3&pause=0.1 HTTP/1.1 200 30 (\d+) -")
    assert 300_000 <= int(match.group(1)) <= elapsed * 1_000_000


def test_a_client_that_leaves_is_said_in_the_line() -> None:
    process, port = _ketch()
    with process:
        # it leaves during the response
        with RawConnection(port) as conn:
            conn.send(b"GET /stream?n=100&pause=0.05 HTTP/1.1\r\nHost: x\r\n\r\n")
            conn.read_until(b"xxxxxxxxxx")
        # and before any response: logged with nginx's 499
        with RawConnection(port) as conn:
            conn.send(b"GET /?sleep=3 HTTP/1.1\r\nHost: x\r\n\r\n")
        streamed = r'INFO: +127\.0\.0\.1:\d+ - "GET /stream\?n=100&pause=0\.05 HTTP/1\.1" 200 OK'
        process.wait_for_output(f"(?m){streamed} \\(disconnected\\)$")
        process.wait_for_output(r'(?m)"GET /\?sleep=3 HTTP/1\.1" 499 \(disconnected\)$')
        httpx.get(f"http://127.0.0.1:{port}/")
        # a complete response: exactly Uvicorn's line
        process.wait_for_output(r'(?m)^INFO: +127\.0\.0\.1:\d+ - "GET / HTTP/1\.1" 200 OK$')


HOSTILE = (
    b'GET /a%0d%0aINFO:%20%20%20%20forged%1b[31m%22%5c?q="x\\ HTTP/1.1\r\n'
    b"Host: x\r\nUser-Agent: tab\there \x85\xff\r\n\r\n"
)


@pytest.mark.parametrize("http", ["httptools", "h11"])
def test_what_the_client_sent_is_escaped(http: str) -> None:
    custom, port_custom = _ketch("--http", http, "--access-log-format", "%(r)s|%(U)s|%(q)s|%(a)s")
    default, port_default = _ketch("--http", http)
    with custom, default:
        for process, port in ((custom, port_custom), (default, port_default)):
            with RawConnection(port) as conn:
                conn.send(HOSTILE)
                assert conn.read_response().status == 200
                client_port = conn.sock.getsockname()[1]
            # raw CR, LF and control bytes in the request line never reach an app
            for line in (b"GET /a\rINFO: forged HTTP/1.1", b"GET /a\x01\x1b[31m HTTP/1.1"):
                with RawConnection(port) as conn:
                    conn.send(line + b"\r\nHost: x\r\n\r\n")
                    assert conn.read_response().status == 400
            process.wait_for_output(r"(?s)(400 answered.*){2}")
            process.stop()
    custom_lines = [line for line in custom.output.splitlines() if "|" in line]
    assert [line.split("|") for line in custom_lines] == [
        [
            r"GET /a%0d%0aINFO:%20%20%20%20forged%1b[31m%22%5c?q=\"x\\ HTTP/1.1",
            r"/a\x0d\x0aINFO:    forged\x1b[31m\"\\",
            r"q=\"x\\",
            "tab\\x09here \\x85\xff",
        ]
    ]
    # Uvicorn's line: the path percent-encoded (as Uvicorn does), the query escaped
    path = "/a%0D%0AINFO%3A%20%20%20%20forged%1B%5B31m%22%5C"
    assert [line for line in default.output.splitlines() if '"GET' in line] == [
        f'INFO:     127.0.0.1:{client_port} - "GET {path}?q=\\"x\\\\ HTTP/1.1" 200 OK'
    ]
    for output in (custom.output, default.output):
        assert "\x1b" not in output and "\r" not in output and "\x85" not in output
        assert not re.search(r"^\s*(INFO:)?\s*forged", output, re.M)


def test_websocket_handshakes_are_logged() -> None:
    process, port = _ketch("--access-log-format", "%(r)s %(s)s %(X)s %({x-request-id}i)s")
    with process:
        with RawWebSocket(port, "/ws") as ws:
            ws.send(frame(OP_TEXT, b"hi"))
            assert ws.read_frame() == (OP_TEXT, b"hi")
        with RawConnection(port) as conn:
            conn.send(upgrade_request("/no"))
            assert conn.read_response().status == 403
        process.wait_for_output(r"GET /ws HTTP/1\.1 101 - -")
        process.wait_for_output(r"GET /no HTTP/1\.1 403 - -")


RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def _json_lines(output: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def test_json_lines_from_every_process_with_a_traceback() -> None:
    process, port = _ketch("--workers", "2", "--log-format", "json")
    with process:
        pids: set[str] = set()
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:

            def both_workers_served() -> bool:
                response = httpx.get(
                    f"http://127.0.0.1:{port}/?x=1",
                    headers={"user-agent": "json-test", "x-request-id": "req-7"},
                )
                pids.add(response.headers["x-pid"])
                return len(pids) == 2

            wait_for(both_workers_served, timeout=20)
            assert client.get("/crash").status_code == 500
        process.signal(signal.SIGTERM)
        assert process.wait() == 0
    records = _json_lines(process.output)  # every line is one JSON object
    for record in records:
        assert {"time", "level", "logger", "message", "pid"} <= record.keys(), record
        assert RFC3339_UTC.match(str(record["time"])), record
    assert {str(record["pid"]) for record in records} >= {*pids, str(process.proc.pid)}
    crash = next(r for r in records if "traceback" in r)
    assert crash["level"] == "ERROR" and crash["logger"] == "ketch.error"
    assert crash["message"] == "Exception in ASGI application"
    assert str(crash["traceback"]).startswith("Traceback (most recent call last):")
    assert "RuntimeError: the app failed on purpose" in str(crash["traceback"])
    access = [r for r in records if r["logger"] == "ketch.access"]
    assert {r["status"] for r in access} == {200, 500}
    first = next(r for r in access if r["status"] == 200)
    assert first["client"].startswith("127.0.0.1:")  # type: ignore[union-attr]
    assert {key: first[key] for key in first if key not in ("time", "pid", "client")} == {
        "level": "INFO",
        "logger": "ketch.access",
        "message": f'{first["client"]} - "GET /?x=1 HTTP/1.1" 200',
        "method": "GET",
        "path": "/",
        "query": "x=1",
        "status": 200,
        "bytes": 10,
        "duration": first["duration"],
        "http_version": "1.1",
        "user_agent": "json-test",
        "request_id": "req-7",
        "complete": True,
    }
    assert isinstance(first["duration"], float) and 0 < first["duration"] < 5


def test_a_malformed_format_is_one_line() -> None:
    result = run_ketch(["support.apps:hello", "--access-log-format", "%(h)s %(s"])
    assert result.returncode != 0
    assert "--access-log-format '%(h)s %(s' is not a format" in result.stderr
    assert "Traceback" not in result.stderr
