"""ketch behind nginx, configured from docs/deploy/nginx-uds.conf and nginx-tcp.conf.

nginx terminates HTTPS and talks to ketch over a UNIX socket; the app must see
the real client and the https scheme, uploads and WebSockets pass through,
static files never reach ketch. Over TCP, the same with the default trust.
"""

from __future__ import annotations

import hashlib
import os
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from support import KetchProcess, free_port
from support.deploy import app_dir, certificates, nginx, shell_command, write
from websockets.sync.client import connect


@dataclass
class Site:
    url: str
    verify: ssl.SSLContext | bool
    ketch: KetchProcess


@pytest.fixture(scope="module")
def uds_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("nginx-uds")
    certs = certificates(tmp)
    static = tmp / "static"
    static.mkdir()
    (static / "hello.txt").write_text("served by nginx\n")
    socket_path = tmp / "ketch.sock"
    port = free_port()
    site = write(
        "nginx-uds.conf",
        tmp,
        listen=f"127.0.0.1:{port}",
        certfile=certs.certfile,
        keyfile=certs.keyfile,
        socket_path=socket_path,
        static_root=static,
    )
    argv = shell_command("nginx-uds.sh", socket_path=socket_path)
    with KetchProcess(argv[1:], command=argv[:1], cwd=app_dir(tmp)) as ketch:
        ketch.wait_started()
        with nginx(tmp, site, port):
            yield Site(f"https://127.0.0.1:{port}", certs.client_context(), ketch)
    assert not socket_path.exists(), "ketch removes its socket file when it stops"


def test_app_sees_client_and_https_scheme_over_uds(uds_site: Site) -> None:
    # The client's own X-Forwarded-For is kept by nginx ($proxy_add_x_forwarded_for)
    # but not believed: only the socket (nginx) is trusted, and nginx says the
    # client is 127.0.0.1.
    response = httpx.get(
        uds_site.url + "/who", verify=uds_site.verify, headers={"X-Forwarded-For": "203.0.113.9"}
    )
    assert response.status_code == 200
    data = response.json()
    assert data["client"] == ["127.0.0.1", 0]
    assert data["scheme"] == "https"
    assert data["host"] == uds_site.url.removeprefix("https://")


def test_large_upload_through_nginx(uds_site: Site) -> None:
    body = os.urandom(20 * 1024 * 1024)
    response = httpx.post(
        uds_site.url + "/upload", content=body, verify=uds_site.verify, timeout=30
    )
    assert response.status_code == 200
    assert response.json() == {"size": len(body), "sha256": hashlib.sha256(body).hexdigest()}


def test_static_files_are_served_by_nginx(uds_site: Site) -> None:
    response = httpx.get(uds_site.url + "/static/hello.txt", verify=uds_site.verify)
    assert response.status_code == 200
    assert response.text == "served by nginx\n"
    assert response.headers["cache-control"] == "max-age=3600, public"
    assert "/static/" not in uds_site.ketch.output  # ketch's access log never saw it


def test_websocket_upgrade_through_nginx(uds_site: Site) -> None:
    uri = uds_site.url.replace("https://", "wss://") + "/chat"
    assert isinstance(uds_site.verify, ssl.SSLContext)
    with connect(uri, ssl=uds_site.verify, open_timeout=10) as websocket:
        for text in ("hello", "again"):
            websocket.send(text)
            assert websocket.recv(timeout=10) == f"wss: {text}"


def test_nginx_over_tcp(tmp_path: Path) -> None:
    port, ketch_port = free_port(), free_port()
    site = write("nginx-tcp.conf", tmp_path, listen=f"127.0.0.1:{port}", ketch_port=ketch_port)
    argv = shell_command("nginx-tcp.sh", ketch_port=ketch_port)
    with KetchProcess(argv[1:], command=argv[:1], cwd=app_dir(tmp_path)) as ketch:
        ketch.wait_started()
        with nginx(tmp_path, site, port), httpx.Client() as client:
            for _ in range(3):  # nginx keeps its upstream connection alive
                data = client.get(f"http://127.0.0.1:{port}/").json()
                assert data["client"] == ["127.0.0.1", 0]  # from X-Forwarded-For
                assert data["scheme"] == "http"
            body = os.urandom(1024 * 1024)
            upload = client.post(f"http://127.0.0.1:{port}/upload", content=body).json()
            assert upload["sha256"] == hashlib.sha256(body).hexdigest()
            with connect(f"ws://127.0.0.1:{port}/", open_timeout=10) as websocket:
                websocket.send("over tcp")
                assert websocket.recv(timeout=10) == "ws: over tcp"
