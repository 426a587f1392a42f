"""The proxy-headers middleware through the real server, over TCP and UNIX sockets."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from support import KetchProcess, RawConnection, serve
from support.apps import scope_json, scope_json_ws
from websockets.sync.client import connect

FORWARDED_REQUEST = (
    b"GET / HTTP/1.1\r\nHost: backend\r\nX-Forwarded-For: 203.0.113.7\r\n"
    b"X-Forwarded-Proto: https\r\nX-Forwarded-Host: example.com\r\n\r\n"
)


def _host(data: dict[str, object]) -> str:
    return next(v for k, v in data["headers"] if k == "host")  # type: ignore[attr-defined]


def test_trusted_loopback_proxy_over_tcp() -> None:
    with serve(scope_json) as running:
        data = httpx.get(
            running.url,
            headers={"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"},
        ).json()
    assert data["client"] == ["203.0.113.7", 0]
    assert data["scheme"] == "https"


def test_untrusted_peer_over_tcp() -> None:
    with serve(scope_json, forwarded_allow_ips="10.0.0.1") as running:
        data = httpx.get(
            running.url,
            headers={"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"},
        ).json()
    assert data["client"][0] == "127.0.0.1"
    assert data["client"][1] != 0
    assert data["scheme"] == "http"


def test_no_proxy_headers_option() -> None:
    with serve(scope_json, proxy_headers=False) as running:
        data = httpx.get(running.url, headers={"X-Forwarded-For": "203.0.113.7"}).json()
    assert data["client"][0] == "127.0.0.1"


def test_forwarded_family_over_tcp() -> None:
    headers = {"Forwarded": 'for="[2001:db8::5]";proto=https;host=example.com'}
    with serve(scope_json, forwarded_headers="forwarded") as running:
        data = httpx.get(running.url, headers=headers).json()
    assert data["client"] == ["2001:db8::5", 0]
    assert data["scheme"] == "https"
    assert _host(data) == "example.com"


def test_unix_socket_trusted_by_its_path(tmp_path: Path) -> None:
    uds = str(tmp_path / "app.sock")
    with (
        serve(scope_json, uds=uds, forwarded_allow_ips=uds) as _,
        RawConnection(uds=uds) as conn,
    ):
        conn.send(FORWARDED_REQUEST)
        data = json.loads(conn.read_response().body)
    assert data["client"] == ["203.0.113.7", 0]
    assert data["scheme"] == "https"
    assert data["server"] == [uds, None]
    assert _host(data) == "example.com"


def test_unix_socket_not_trusted_by_default(tmp_path: Path) -> None:
    uds = str(tmp_path / "app.sock")
    with serve(scope_json, uds=uds) as _, RawConnection(uds=uds) as conn:
        conn.send(FORWARDED_REQUEST)
        data = json.loads(conn.read_response().body)
    assert data["client"] is None
    assert data["scheme"] == "http"
    assert _host(data) == "backend"


def test_cli_alias_and_environment_variable(tmp_path: Path) -> None:
    uds = str(tmp_path / "app.sock")
    args = ["support.apps:scope_json", "--uds", uds, "--forwarded-trust-ips", "unix:"]
    with KetchProcess(args) as ketch:
        ketch.wait_started()
        with RawConnection(uds=uds) as conn:
            conn.send(FORWARDED_REQUEST)
            assert json.loads(conn.read_response().body)["client"] == ["203.0.113.7", 0]
    args = ["support.apps:scope_json", "--uds", uds]
    with KetchProcess(args, env={"FORWARDED_ALLOW_IPS": uds}) as ketch:
        ketch.wait_started()
        with RawConnection(uds=uds) as conn:
            conn.send(FORWARDED_REQUEST)
            assert json.loads(conn.read_response().body)["scheme"] == "https"


def test_host_and_port_from_a_trusted_proxy_over_tcp() -> None:
    headers = {"X-Forwarded-Host": "example.com", "X-Forwarded-Port": "443"}
    with serve(scope_json) as running:
        data = httpx.get(running.url, headers=headers).json()
    assert _host(data) == "example.com"
    assert data["server"] == ["127.0.0.1", 443]


def test_ipv6_loopback_is_trusted_by_default() -> None:
    try:
        with serve(scope_json, host="::1") as running:
            url = f"http://[::1]:{running.port}/"
            data = httpx.get(url, headers={"X-Forwarded-For": "2001:db8::7"}).json()
    except RuntimeError as exc:  # no IPv6 on this machine's loopback
        pytest.skip(str(exc))
    assert data["client"] == ["2001:db8::7", 0]


def test_command_line_options_over_tcp() -> None:
    forwarded = {
        "Forwarded": 'for="[2001:db8::5]:4711";proto=https;host=example.com',
        "X-Forwarded-For": "203.0.113.7",
    }
    args = ["support.apps:scope_json", "--port", "0", "--forwarded-headers", "forwarded"]
    with KetchProcess(args) as ketch:
        data = httpx.get(f"http://127.0.0.1:{ketch.port()}/", headers=forwarded).json()
    assert data["client"] == ["2001:db8::5", 4711]  # X-Forwarded-For is not read
    assert data["scheme"] == "https"
    assert _host(data) == "example.com"
    args = ["support.apps:scope_json", "--port", "0", "--forwarded-allow-ips", "10.0.0.0/8"]
    with KetchProcess(args) as ketch:
        data = httpx.get(f"http://127.0.0.1:{ketch.port()}/", headers=forwarded).json()
    assert data["client"][0] == "127.0.0.1"  # 127.0.0.1 is no longer trusted
    assert data["scheme"] == "http"
    args = ["support.apps:scope_json", "--port", "0", "--no-proxy-headers"]
    with KetchProcess(args, env={"FORWARDED_ALLOW_IPS": "*"}) as ketch:
        data = httpx.get(f"http://127.0.0.1:{ketch.port()}/", headers=forwarded).json()
    assert data["client"][0] == "127.0.0.1"


def test_websocket_behind_a_trusted_proxy() -> None:
    headers = {
        "X-Forwarded-For": "203.0.113.7",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "example.com",
    }
    with (
        serve(scope_json_ws) as running,
        connect(f"ws://127.0.0.1:{running.port}/", additional_headers=headers, proxy=None) as ws,
    ):
        seen = json.loads(ws.recv(timeout=5))
    assert seen == {"client": ["203.0.113.7", 0], "scheme": "wss", "host": ["example.com"]}
