"""Where ketch listens: --host/--port, --uds, --fd, --backlog."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
from pathlib import Path

import httpx
import pytest
from support import KetchProcess, RawConnection, exchange, free_port, run_ketch, serve, wait_for
from support.apps import hello, scope_json

GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


def _has_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


def test_port_zero_logs_the_real_port() -> None:
    with KetchProcess(["support.apps:hello", "--port", "0"]) as ketch:
        port = ketch.port()
        assert port != 0
        assert httpx.get(f"http://127.0.0.1:{port}/").text == "Hello, world!"


@pytest.mark.skipif(not _has_ipv6(), reason="no IPv6 loopback here")
def test_ipv6_host() -> None:
    with KetchProcess(["support.apps:scope_json", "--host", "::1", "--port", "0"]) as ketch:
        url = ketch.wait_started()
        assert url.startswith("http://[::1]:")
        data = httpx.get(url + "/").json()
    assert data["client"][0] == "::1"
    assert data["server"][0] == "::1"


def test_host_name_is_resolved() -> None:
    with KetchProcess(["support.apps:hello", "--host", "localhost", "--port", "0"]) as ketch:
        port = ketch.port()
        assert httpx.get(f"http://localhost:{port}/").status_code == 200


def test_unresolvable_host_is_a_one_line_error() -> None:
    result = run_ketch(["support.apps:hello", "--host", "no-such-host.invalid"])
    assert result.returncode != 0
    assert "cannot resolve" in result.stderr
    assert "Traceback" not in result.stderr


def test_port_in_use_is_a_one_line_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_ketch(["support.apps:hello", "--port", str(port)])
    assert result.returncode != 0
    assert "already in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_uds_serves_and_allows_other_users(tmp_path: Path) -> None:
    uds = str(tmp_path / "ketch.sock")
    with serve(scope_json, uds=uds) as _:
        mode = os.stat(uds).st_mode
        assert stat.S_ISSOCK(mode)
        assert mode & 0o777 == 0o666
        with RawConnection(uds=uds) as conn:
            conn.send(GET)
            data = json.loads(conn.read_response().body)
    assert data["server"] == [uds, None]
    assert data["client"] is None
    assert not os.path.exists(uds)  # removed on a clean stop


def test_uds_stale_socket_file_is_replaced(tmp_path: Path) -> None:
    uds = str(tmp_path / "stale.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(uds)  # a socket file nobody listens on any more
    stale.close()
    with serve(hello, uds=uds) as _, RawConnection(uds=uds) as conn:
        conn.send(GET)
        assert conn.read_response().status == 200


def test_uds_in_use_or_not_a_socket_is_an_error(tmp_path: Path) -> None:
    uds = str(tmp_path / "busy.sock")
    with serve(hello, uds=uds) as _:
        result = run_ketch(["support.apps:hello", "--uds", uds])
        assert result.returncode != 0
        assert "another server is listening" in result.stderr
    plain = tmp_path / "plain.txt"
    plain.write_text("not a socket")
    result = run_ketch(["support.apps:hello", "--uds", str(plain)])
    assert result.returncode != 0
    assert "not a socket" in result.stderr
    assert plain.read_text() == "not a socket"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_uds_file_removed_after_signal(tmp_path: Path, sig: int) -> None:
    uds = str(tmp_path / "signal.sock")
    with KetchProcess(["support.apps:hello", "--uds", uds]) as ketch:
        ketch.wait_started()
        assert os.path.exists(uds)
        ketch.signal(sig)
        assert ketch.wait() == 0
    assert not os.path.exists(uds)


def test_fd_inherited_tcp_socket() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    port = sock.getsockname()[1]
    fd = sock.fileno()
    os.set_inheritable(fd, True)
    with KetchProcess(["support.apps:hello", "--fd", str(fd)], pass_fds=(fd,)) as ketch:
        ketch.wait_started()
        sock.close()  # the child holds its own copy
        assert exchange(port, GET).body == b"Hello, world!"


def test_fd_inherited_unix_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "inherited.sock")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(path)
    sock.listen(16)
    fd = sock.fileno()
    os.set_inheritable(fd, True)
    with KetchProcess(["support.apps:hello", "--fd", str(fd)], pass_fds=(fd,)) as ketch:
        ketch.wait_started()
        sock.close()
        with RawConnection(uds=path) as conn:
            conn.send(GET)
            assert conn.read_response().body == b"Hello, world!"
        ketch.signal(signal.SIGTERM)
        assert ketch.wait() == 0
    # an inherited socket belongs to whoever made it: ketch leaves the file
    assert os.path.exists(path)


def test_fd_that_is_not_a_socket_is_an_error() -> None:
    read_end, write_end = os.pipe()
    try:
        result = run_ketch(["support.apps:hello", "--fd", str(read_end)], pass_fds=(read_end,))
    finally:
        os.close(read_end)
        os.close(write_end)
    assert result.returncode != 0
    assert f"--fd {read_end}" in result.stderr
    assert "Traceback" not in result.stderr


def test_backlog_is_accepted() -> None:
    port = free_port()
    with KetchProcess(["support.apps:hello", "--port", str(port), "--backlog", "16"]) as ketch:
        ketch.wait_started()
        wait_for(lambda: exchange(port, GET).status == 200)
