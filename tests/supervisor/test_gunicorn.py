"""gunicorn with ketch's worker classes: serving, HUP, graceful stop, TLS."""

from __future__ import annotations

import json
import signal
import ssl
import sys
from pathlib import Path

import httpx
import pytest
import trustme
from support import KetchProcess, RawConnection, child_pids, free_port, wait_for

GUNICORN = [str(Path(sys.executable).with_name("gunicorn"))]


def _gunicorn(
    worker: str, *args: str, app: str = "support.apps:scope_json"
) -> tuple[KetchProcess, int]:
    port = free_port()
    process = KetchProcess(
        [
            app,
            "-k",
            worker,
            "-b",
            f"127.0.0.1:{port}",
            "--no-control-socket",
            "--graceful-timeout",
            "10",
            *args,
        ],
        command=GUNICORN,
    )
    return process, port


@pytest.mark.parametrize(
    "worker",
    ["ketch.supervisor.gunicorn.KetchWorker", "ketch.supervisor.gunicorn.KetchH11Worker"],
)
def test_four_workers_serve(worker: str) -> None:
    process, port = _gunicorn(worker, "-w", "4")
    with process:
        wait_for(lambda: len(child_pids(process.proc.pid)) == 4, timeout=30)
        process.wait_for_output(r"(?s)(ketch running on.*){4}", timeout=30)
        response = httpx.get(f"http://127.0.0.1:{port}/")
        assert response.status_code == 200
        assert response.headers["server"] == "ketch"
        pids = set()
        url = f"http://127.0.0.1:{port}/"
        wait_for(lambda: pids.add(httpx.get(url).json()["pid"]) or len(pids) >= 2)


def test_hup_replaces_workers_and_term_drains() -> None:
    process, port = _gunicorn(
        "ketch.supervisor.gunicorn.KetchWorker", "-w", "2", app="support.apps:slow"
    )
    with process:
        wait_for(lambda: len(child_pids(process.proc.pid)) == 2, timeout=30)
        process.wait_for_output(r"(?s)(ketch running on.*){2}", timeout=30)
        before = child_pids(process.proc.pid)
        process.signal(signal.SIGHUP)
        wait_for(lambda: not (child_pids(process.proc.pid) & before), timeout=30)
        wait_for(lambda: len(child_pids(process.proc.pid)) == 2, timeout=30)
        process.wait_for_output(r"(?s)(ketch running on.*){4}", timeout=30)
        with RawConnection(port, timeout=20) as conn:
            conn.send(b"GET /?seconds=1 HTTP/1.1\r\nHost: x\r\n\r\n")
            process.wait_for_output("slow request started")
            process.signal(signal.SIGTERM)
            assert conn.read_response().body == b"slept 1.0"
        assert process.wait(20) == 0


def test_http_protocols_h2_serves_http2_next_to_http11() -> None:
    from support.h2frames import MAX_CONCURRENT_STREAMS, SETTINGS, RawH2

    process, port = _gunicorn(
        "ketch.supervisor.gunicorn.KetchWorker",
        "-w",
        "1",
        "--http-protocols",
        "h2,h1",
        "--http2-max-concurrent-streams",
        "7",
    )
    with process:
        process.wait_for_output("ketch running on", timeout=30)
        with RawH2(port) as h2:
            settings = h2.read_until(lambda f: f.kind == SETTINGS and not f.flags & 1)
            assert settings is not None
            assert (MAX_CONCURRENT_STREAMS, 7) in [
                (
                    int.from_bytes(settings.payload[i : i + 2], "big"),
                    int.from_bytes(settings.payload[i + 2 : i + 6], "big"),
                )
                for i in range(0, len(settings.payload), 6)
            ]
            h2.request(1)
            assert h2.response(1).status == 200
        assert httpx.get(f"http://127.0.0.1:{port}/").json()["http_version"] == "1.1"


def test_config_kwargs_subclass() -> None:
    process, port = _gunicorn("support.gunicorn_workers.MountedH11Worker", "-w", "1")
    with process:
        process.wait_for_output("ketch running on", timeout=30)
        data = httpx.get(f"http://127.0.0.1:{port}/x").json()
    assert data["root_path"] == "/mounted"
    assert data["path"] == "/mounted/x"


def test_gunicorn_settings_reach_ketch() -> None:
    process, port = _gunicorn(
        "ketch.supervisor.gunicorn.KetchWorker",
        "-w",
        "1",
        "--limit-request-fields",
        "3",
        "--keep-alive",
        "1",
    )
    with process:
        process.wait_for_output("ketch running on", timeout=30)
        with RawConnection(port) as conn:
            conn.send(b"GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n")
            assert conn.read_response().status == 431
        with RawConnection(port) as conn:
            conn.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert conn.read_response().status == 200
            assert conn.is_closed(timeout=5)  # keep-alive of 1 second


def test_tls(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    process, port = _gunicorn(
        "ketch.supervisor.gunicorn.KetchWorker",
        "-w",
        "2",
        "--certfile",
        str(cert_file),
        "--keyfile",
        str(key_file),
    )
    with process:
        process.wait_for_output(r"(?s)(ketch running on https.*){2}", timeout=30)
        context = ssl.create_default_context()
        ca.configure_trust(context)
        data = httpx.get(f"https://127.0.0.1:{port}/", verify=context).json()
    assert data["scheme"] == "https"


# --- logs -------------------------------------------------------------------------------
def test_gunicorn_access_log_settings_are_honoured() -> None:
    # without --access-logfile, gunicorn writes no access log: nor does ketch
    quiet, quiet_port = _gunicorn("ketch.supervisor.gunicorn.KetchWorker", "-w", "1")
    with quiet:
        quiet.wait_for_output("ketch running on", timeout=30)
        httpx.get(f"http://127.0.0.1:{quiet_port}/quiet")
        quiet.stop()
    assert "/quiet" not in quiet.output
    fmt = 'ACCESS %(h)s "%(r)s" %(s)s %(b)s %({x-request-id}i)s'
    process, port = _gunicorn(
        "ketch.supervisor.gunicorn.KetchWorker",
        "-w",
        "1",
        "--access-logfile",
        "-",
        "--access-logformat",
        fmt,
    )
    with process:
        process.wait_for_output("ketch running on", timeout=30)
        httpx.get(f"http://127.0.0.1:{port}/x?y=1", headers={"x-request-id": "r-1"})
        process.wait_for_output(r'(?m)^ACCESS 127\.0\.0\.1 "GET /x\?y=1 HTTP/1\.1" 200 \d+ r-1$')


def test_json_lines_through_a_gunicorn_logging_config(tmp_path: Path) -> None:
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stdout"}
    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "ketch.core.logging.JSONFormatter"}},
        "handlers": {"json": handler},
        "root": {"level": "WARNING", "handlers": []},
        "loggers": {
            "gunicorn.error": {"handlers": ["json"], "level": "INFO", "propagate": False},
            "gunicorn.access": {"handlers": ["json"], "level": "INFO", "propagate": False},
        },
    }
    path = tmp_path / "logging.json"
    path.write_text(json.dumps(config))
    process, port = _gunicorn(
        "ketch.supervisor.gunicorn.KetchWorker", "-w", "1", "--log-config-json", str(path)
    )
    with process:
        process.wait_for_output("ketch running on", timeout=30)
        httpx.get(f"http://127.0.0.1:{port}/json", headers={"user-agent": "gunicorn-json"})
        line = process.wait_for_output(r'(?m)^\{.*"logger": "ketch\.access".*$').group(0)
    record = json.loads(line)
    assert (record["path"], record["status"], record["user_agent"]) == (
        "/json",
        200,
        "gunicorn-json",
    )
    assert record["message"].startswith("127.0.0.1 - - [")  # gunicorn's default format
