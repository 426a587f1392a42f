"""The example apps of docs/asgi-extensions.md (docs/extensions/*.py) do what
the page says, served by ketch."""

from __future__ import annotations

import hashlib
import importlib.util
import ssl
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
import trustme
from support import REPO_DIR, RawConnection, serve
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect

EXAMPLES = REPO_DIR / "docs" / "extensions"


def example(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert isinstance(module, ModuleType)
    return module.app


def test_tls_app(tmp_path: Path) -> None:
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1")
    server.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    server.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    options: dict[str, Any] = {
        "ssl_certfile": str(tmp_path / "cert.pem"),
        "ssl_keyfile": str(tmp_path / "key.pem"),
        "ssl_cert_reqs": int(ssl.CERT_OPTIONAL),
        "ssl_ca_certs": str(tmp_path / "ca.pem"),
    }
    anonymous = ssl.create_default_context()
    ca.configure_trust(anonymous)
    identified = ssl.create_default_context()
    ca.configure_trust(identified)
    ca.issue_cert("alice@example.com", common_name="alice").configure_cert(identified)
    with serve(example("tls_app"), **options) as running:
        hello = httpx.get(running.url, verify=identified)
        assert hello.status_code == 200
        assert hello.text.startswith("Hello, CN=alice,")
        assert "(TLS 0x0304)" in hello.text
        assert httpx.get(running.url, verify=anonymous).status_code == 403
    with serve(example("tls_app")) as running:
        assert httpx.get(running.url).status_code == 400


def test_pathsend_app() -> None:
    with serve(example("pathsend_app")) as running:
        response = httpx.get(running.url)
    assert response.content == (EXAMPLES / "pathsend_app.py").read_bytes()


def test_trailers_app() -> None:
    with serve(example("trailers_app")) as running, RawConnection(running.port) as conn:
        conn.send(b"GET / HTTP/1.1\r\nHost: x\r\nTE: trailers\r\n\r\n")
        head = conn.read_until(b"\r\n\r\n")
        assert b"transfer-encoding: chunked" in head
        body = b""
        while (size := int(conn.read_until(b"\r\n"), 16)) != 0:
            body += conn.read_exactly(size)
            conn.read_exactly(2)
        trailers = conn.read_until(b"\r\n\r\n")
    assert body == b"part 0\npart 1\npart 2\n"
    assert trailers == b"x-sha256: %s\r\n\r\n" % hashlib.sha256(body).hexdigest().encode()


def test_early_hints_app() -> None:
    with serve(example("early_hints_app")) as running, RawConnection(running.port) as conn:
        conn.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        hint = conn.read_response()
        page = conn.read_response()
    assert (hint.status, hint.header("link")) == (103, "</style.css>; rel=preload; as=style")
    assert page.status == 200
    assert page.body.startswith(b"<!doctype html>")


@pytest.mark.parametrize(
    ("path", "name"), [("/static/tls_app.py", "tls_app.py"), ("/download", "static_app.py")]
)
def test_static_app(path: str, name: str) -> None:
    with serve(example("static_app")) as running:
        response = httpx.get(running.url + path)
    assert response.status_code == 200
    assert response.content == (EXAMPLES / name).read_bytes()


def test_denial_app() -> None:
    with serve(example("denial_app")) as running:
        url = f"ws://127.0.0.1:{running.port}/"
        with pytest.raises(InvalidStatus) as refused:
            ws_connect(url, open_timeout=5).close()
        with ws_connect(
            url, additional_headers={"Authorization": "Bearer let-me-in"}, open_timeout=5
        ) as ws:
            assert ws.recv(timeout=5) == "welcome"
    assert refused.value.response.status_code == 403
    assert refused.value.response.body == b"Who are you?\n"
