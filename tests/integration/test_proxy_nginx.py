"""ketch behind a real nginx, configured with the very snippets of docs/proxies.md.

The visitor connects from 127.0.0.3 (an address nobody trusts) to nginx on
127.0.0.2, and sends forged proxy headers; the application must see the
visitor's real address, and the scheme nginx received.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from support import REPO_DIR, serve, wait_for
from support.apps import scope_json, scope_json_ws
from websockets.sync.client import connect

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
pytestmark = pytest.mark.skipif(
    NGINX is None and not os.environ.get("CI"),
    reason="nginx is not installed (.ci/run installs it)",
)

VISITOR = "127.0.0.3"
NGINX_HOST = "127.0.0.2"
FORGED = {"X-Forwarded-For": "6.6.6.6", "X-Forwarded-Proto": "https", "X-Forwarded-Port": "1"}


def snippet(name: str) -> str:
    """The nginx configuration shown under `<!-- snippet: NAME -->` in docs/proxies.md."""
    page = (REPO_DIR / "docs" / "proxies.md").read_text()
    match = re.search(rf"<!-- snippet: {name} -->\n```nginx\n(.*?)```", page, re.DOTALL)
    assert match, f"docs/proxies.md has no nginx snippet {name!r}"
    return match.group(1)


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


def free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def nginx(tmp_path: Path, fragment: str, replacements: dict[str, str]) -> Iterator[int]:
    """nginx serving `fragment` (an http-context snippet) after the replacements
    that point it at this test's ports, socket and certificate; yields its port."""
    assert NGINX is not None, "nginx is missing"
    port = free_port(NGINX_HOST)
    for old, new in replacements.items():
        assert old in fragment, f"the snippet no longer contains {old!r}"
        fragment = fragment.replace(old, new.format(port=port))
    work = tmp_path / "nginx"
    work.mkdir()
    temp_paths = "\n".join(
        f"    {kind}_temp_path {work}/{kind};" for kind in ("client_body", "proxy", "fastcgi")
    )
    config = work / "nginx.conf"
    config.write_text(
        ("user root;\n" if os.geteuid() == 0 else "")  # so workers can open the test's socket
        + f"worker_processes 1;\npid {work}/nginx.pid;\nerror_log {work}/error.log;\n"
        + "daemon off;\nevents { worker_connections 64; }\n"
        + f"http {{\n    access_log off;\n{temp_paths}\n"
        + f"    uwsgi_temp_path {work}/uwsgi;\n    scgi_temp_path {work}/scgi;\n"
        + fragment
        + "}\n"
    )
    process = subprocess.Popen(
        [NGINX, "-e", str(work / "error.log"), "-p", str(work), "-c", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def started() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"nginx exited: {(work / 'error.log').read_text()}")
        with socket.socket() as probe:
            return probe.connect_ex((NGINX_HOST, port)) == 0

    try:
        wait_for(started, timeout=10)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def visit(url: str, headers: dict[str, str], verify: ssl.SSLContext | bool = False) -> Any:
    """A request from the visitor's address; what the application saw."""
    transport = httpx.HTTPTransport(local_address=VISITOR, verify=verify)
    with httpx.Client(transport=transport, timeout=10) as client:
        response = client.get(url, headers={"Host": "example.com", **headers})
    assert response.status_code == 200, response.text
    data = json.loads(response.text)
    data["host"] = [value for name, value in data["headers"] if name == "host"]
    return data


def test_nginx_over_tcp(tmp_path: Path) -> None:
    with serve(scope_json) as ketch:  # default --forwarded-allow-ips: 127.0.0.1,::1
        replacements = {
            "server 127.0.0.1:8000;": f"server 127.0.0.1:{ketch.port};",
            "listen 80;": f"listen {NGINX_HOST}:{{port}};",
        }
        with nginx(tmp_path, snippet("nginx-tcp"), replacements) as port:
            seen = visit(f"http://{NGINX_HOST}:{port}/", FORGED)
    assert seen["client"] == [VISITOR, 0]  # not 6.6.6.6: forged, and left of nginx's entry
    assert seen["scheme"] == "http"  # nginx replaced the forged X-Forwarded-Proto
    assert seen["server"] == ["127.0.0.1", port]  # X-Forwarded-Port: nginx's own port
    assert seen["host"] == ["example.com"]


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[ssl.SSLContext, Path, Path]:
    """A CA the visitor trusts, and nginx's certificate and key files."""
    authority = trustme.CA()
    issued = authority.issue_cert(NGINX_HOST)
    chain, key = tmp_path / "fullchain.pem", tmp_path / "privkey.pem"
    issued.private_key_pem.write_to_path(str(key))
    chain.write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
    context = ssl.create_default_context()
    authority.configure_trust(context)
    return context, chain, key


@pytest.mark.parametrize("trusted", [True, False], ids=["socket-trusted", "socket-untrusted"])
def test_nginx_over_a_unix_socket_with_https(
    tmp_path: Path, certificate: tuple[ssl.SSLContext, Path, Path], trusted: bool
) -> None:
    context, chain, key = certificate
    uds = str(tmp_path / "ketch.sock")
    options = {"forwarded_allow_ips": uds} if trusted else {}
    replacements = {
        "unix:/run/ketch/ketch.sock;": f"unix:{uds};",
        "listen 443 ssl;": f"listen {NGINX_HOST}:{{port}} ssl;",
        "/etc/ssl/example.com/fullchain.pem": str(chain),
        "/etc/ssl/example.com/privkey.pem": str(key),
    }
    with (
        serve(scope_json_ws, uds=uds, **options),
        nginx(tmp_path, snippet("nginx-uds"), replacements) as port,
    ):
        seen = visit(f"https://{NGINX_HOST}:{port}/", FORGED, verify=context)
        websocket = visit_websocket(port, context)
    assert seen["server"] == [uds, None]
    assert seen["host"] == websocket["host"] == ["example.com"]
    if trusted:
        assert seen["client"] == websocket["client"] == [VISITOR, 0]
        assert seen["scheme"] == "https"
        assert websocket["scheme"] == "wss"
    else:  # the default list does not trust a UNIX socket: nothing is read
        assert seen["client"] is websocket["client"] is None
        assert seen["scheme"] == "http"
        assert websocket["scheme"] == "ws"


def visit_websocket(port: int, context: ssl.SSLContext) -> Any:
    """A WebSocket opened from the visitor's address to nginx (as example.com);
    what the application saw."""
    sock = socket.create_connection((NGINX_HOST, port), timeout=10, source_address=(VISITOR, 0))
    with connect(
        f"wss://example.com:{port}/",
        sock=sock,
        ssl=context,
        server_hostname=NGINX_HOST,  # the name in nginx's test certificate
        additional_headers=FORGED,
        proxy=None,
    ) as websocket:
        return json.loads(websocket.recv(timeout=10))


def test_nginx_with_the_forwarded_header(tmp_path: Path) -> None:
    uds = str(tmp_path / "ketch.sock")
    ipv6 = has_ipv6_loopback()
    listen = f"listen {NGINX_HOST}:{{port}};" + ("\n    listen [::1]:{port};" if ipv6 else "")
    replacements = {"unix:/run/ketch/ketch.sock;": f"unix:{uds};", "listen 80;": listen}
    forged = {
        **FORGED,
        # a malformed element whose open quote would swallow what nginx appends
        "Forwarded": 'for=6.6.6.6;proto=https, for="7.7.7.7',
    }
    with (
        serve(scope_json, uds=uds, forwarded_allow_ips=uds, forwarded_headers="forwarded"),
        nginx(tmp_path, snippet("nginx-forwarded"), replacements) as port,
    ):
        seen = visit(f"http://{NGINX_HOST}:{port}/", forged)
        assert seen["client"] == [VISITOR, 0]
        assert seen["scheme"] == "http"
        assert seen["host"] == ["example.com"]
        if not ipv6:
            return
        # an IPv6 visitor: nginx writes for="[::1]"
        with httpx.Client(timeout=10) as client:
            response = client.get(f"http://[::1]:{port}/", headers={"Forwarded": "for=6.6.6.6"})
        assert json.loads(response.text)["client"] == ["::1", 0]
