"""Console logging in Uvicorn's format, log levels, and --log-config files."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import httpx
from support import KetchProcess, free_port, wait_for


def _accepts(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _serve_one_request(args: list[str]) -> str:
    port = free_port()
    with KetchProcess(["support.apps:hello", "--port", str(port), *args]) as ketch:
        # not every configuration logs the "running on" line: wait for the port
        wait_for(lambda: _accepts(port), timeout=15)
        httpx.get(f"http://127.0.0.1:{port}/path?x=1")
        ketch.stop()  # waits for the process and every line it wrote
        return ketch.output


def test_default_format() -> None:
    output = _serve_one_request([])
    assert re.search(r"^INFO:     Started server process \[\d+\]$", output, re.M)
    assert "INFO:     Waiting for application startup." in output
    running = r"^INFO:     ketch running on http://127\.0\.0\.1:\d+ \(Press CTRL\+C"
    assert re.search(running, output, re.M)
    assert re.search(
        r'^INFO:     127\.0\.0\.1:\d+ - "GET /path\?x=1 HTTP/1\.1" 200 OK$', output, re.M
    )
    assert "\x1b[" not in output  # no colours when not on a terminal


def test_no_access_log() -> None:
    output = _serve_one_request(["--no-access-log"])
    assert "Started server process" in output
    assert '"GET /path' not in output


def test_colours_can_be_forced() -> None:
    output = _serve_one_request(["--use-colors"])
    assert "\x1b[32mINFO\x1b[0m:" in output
    assert "\x1b[32m200 OK\x1b[0m" in output


def test_log_level_warning_hides_info() -> None:
    output = _serve_one_request(["--log-level", "warning"])
    assert "Started server process" not in output
    assert '"GET /path' not in output


def test_log_level_trace_logs_asgi_messages() -> None:
    output = _serve_one_request(["--log-level", "trace"])
    assert re.search(r"TRACE:    ASGI \[\d+\] Started scope=\{'type': 'http'", output)
    assert re.search(r"TRACE:    ASGI \[\d+\] Send \{'type': 'http.response.start'", output)
    assert re.search(r"TRACE:    ASGI \[\d+\] Send .*'body': '<13 bytes>'", output)
    assert re.search(r"ASGI \[\d+\] Completed", output)


def test_log_config_json(tmp_path: Path) -> None:
    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "JSONCFG %(name)s %(levelname)s %(message)s"}},
        "handlers": {
            "out": {
                "class": "logging.StreamHandler",
                "formatter": "plain",
                "stream": "ext://sys.stdout",
            }
        },
        "loggers": {"ketch": {"handlers": ["out"], "level": "INFO", "propagate": False}},
    }
    path = tmp_path / "logging.json"
    path.write_text(json.dumps(config))
    # a --log-config file wins over --log-format json
    output = _serve_one_request(["--log-config", str(path), "--log-format", "json"])
    assert "JSONCFG ketch.error INFO Started server process" in output
    assert '{"time"' not in output
    access = r'JSONCFG ketch.access INFO 127\.0\.0\.1:\d+ - "GET /path\?x=1 HTTP/1\.1" 200'
    assert re.search(access, output)


def test_log_config_yaml(tmp_path: Path) -> None:
    path = tmp_path / "logging.yaml"
    path.write_text(
        "version: 1\n"
        "disable_existing_loggers: false\n"
        "formatters:\n"
        "  plain: {format: 'YAMLCFG %(name)s %(message)s'}\n"
        "handlers:\n"
        "  out: {class: logging.StreamHandler, formatter: plain, stream: 'ext://sys.stdout'}\n"
        "loggers:\n"
        "  ketch: {handlers: [out], level: INFO, propagate: false}\n"
    )
    output = _serve_one_request(["--log-config", str(path)])
    assert "YAMLCFG ketch.error Started server process" in output


def test_log_config_ini(tmp_path: Path) -> None:
    path = tmp_path / "logging.ini"
    path.write_text(
        "[loggers]\nkeys=root,ketch\n\n"
        "[handlers]\nkeys=out\n\n"
        "[formatters]\nkeys=plain\n\n"
        "[logger_root]\nlevel=WARNING\nhandlers=\n\n"
        "[logger_ketch]\nlevel=INFO\nhandlers=out\nqualname=ketch\npropagate=0\n\n"
        "[handler_out]\nclass=StreamHandler\nformatter=plain\nargs=(sys.stdout,)\n\n"
        "[formatter_plain]\nformat=INICFG %(name)s %(message)s\n"
    )
    output = _serve_one_request(["--log-config", str(path)])
    assert "INICFG ketch.error Started server process" in output
    assert "INICFG ketch.access" in output


def test_uvicorn_style_formatters_in_a_custom_config(tmp_path: Path) -> None:
    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "access": {
                "()": "ketch.core.logging.AccessFormatter",
                "fmt": "ACCESS %(client_addr)s %(request_line)s %(status_code)s",
                "use_colors": False,
            }
        },
        "handlers": {
            "access": {
                "class": "logging.StreamHandler",
                "formatter": "access",
                "stream": "ext://sys.stdout",
            }
        },
        "loggers": {"ketch.access": {"handlers": ["access"], "level": "INFO", "propagate": False}},
    }
    path = tmp_path / "access.json"
    path.write_text(json.dumps(config))
    output = _serve_one_request(["--log-config", str(path)])
    assert re.search(r"ACCESS 127\.0\.0\.1:\d+ GET /path\?x=1 HTTP/1\.1 200 OK", output)


def test_the_documented_log_configs(tmp_path: Path) -> None:
    """The three --log-config samples of docs/logging.md (docs/deploy/logging.*)."""
    deploy = Path(__file__).resolve().parents[2] / "docs" / "deploy"
    # JSON lines, for ketch and for the application's own loggers
    output = _serve_one_request(["--log-config", str(deploy / "logging.json")])
    records = [json.loads(line) for line in output.splitlines() if line.strip()]
    access = next(r for r in records if r["logger"] == "ketch.access")
    assert (access["path"], access["query"], access["status"]) == ("/path", "x=1", 200)
    assert any(r["message"].startswith("Started server process") for r in records)
    # Uvicorn's lines with the time, the access log in access.log (in the working directory)
    port = free_port()
    args = ["support.apps:hello", "--port", str(port), "--log-config", str(deploy / "logging.yaml")]
    with KetchProcess(args, cwd=tmp_path) as ketch:
        wait_for(lambda: _accepts(port), timeout=15)
        httpx.get(f"http://127.0.0.1:{port}/path?x=1")
        ketch.stop()
    timed = r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO:     "
    assert re.search(timed + r"Started server process", ketch.output, re.M)
    access_log = (tmp_path / "access.log").read_text()
    assert re.search(
        timed + r'127\.0\.0\.1:\d+ - "GET /path\?x=1 HTTP/1\.1" 200 OK$', access_log, re.M
    )
    # gunicorn-style access lines alone, timed server messages
    ini = ["--log-config", str(deploy / "logging.ini")]
    output = _serve_one_request([*ini, "--access-log-format", '%(h)s "%(r)s" %(s)s %(b)s %(D)s'])
    assert re.search(r'^127\.0\.0\.1 "GET /path\?x=1 HTTP/1\.1" 200 13 \d+$', output, re.M)
    assert re.search(r"^\d{4}-\d\d-\d\d [\d:,]+ \[\d+\] INFO Started server process", output, re.M)
