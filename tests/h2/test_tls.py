"""HTTP/2 over TLS: ALPN offers h2 then http/1.1 with --http2, and each
connection is served by what its client chose."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from support import serve
from support.apps import scope_json
from support.h2frames import PROTOCOL_ERROR, RawH2


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls(tmp_path: Path, ca: trustme.CA) -> dict[str, str]:
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    return {"ssl_certfile": str(cert), "ssl_keyfile": str(key)}


def client_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


def test_alpn_h2_and_http11_clients_on_one_tls_port(ca: trustme.CA, tls: dict[str, str]) -> None:
    with serve(scope_json, http2=True, **tls) as running:
        with httpx.Client(http2=True, verify=client_context(ca)) as h2c:
            response = h2c.get(running.url)
        with httpx.Client(verify=client_context(ca)) as h1c:
            plain = h1c.get(running.url)
    assert response.http_version == "HTTP/2"
    assert response.json()["http_version"] == "2"
    assert response.json()["scheme"] == "https"
    assert plain.http_version == "HTTP/1.1"
    assert plain.json()["http_version"] == "1.1"


def test_without_http2_alpn_offers_nothing_new(ca: trustme.CA, tls: dict[str, str]) -> None:
    with serve(scope_json, **tls) as running:
        with httpx.Client(http2=True, verify=client_context(ca)) as client:
            response = client.get(running.url)
        with RawH2(running.port, ssl_context=client_context(ca), preface=False) as raw:
            assert isinstance(raw.sock, ssl.SSLSocket)
            assert raw.sock.selected_alpn_protocol() is None
    assert response.http_version == "HTTP/1.1"


def test_ssl_context_factory_gets_alpn_too(ca: trustme.CA, tls: dict[str, str]) -> None:
    def factory(config: Any, default: Any) -> ssl.SSLContext:
        context: ssl.SSLContext = default()
        return context

    with (
        serve(scope_json, http2=True, ssl_context_factory=factory, **tls) as running,
        RawH2(running.port, ssl_context=client_context(ca)) as raw,
    ):
        assert isinstance(raw.sock, ssl.SSLSocket)
        assert raw.sock.selected_alpn_protocol() == "h2"
        raw.request(1)
        assert raw.response(1).status == 200


def test_garbage_after_choosing_h2_gets_goaway(ca: trustme.CA, tls: dict[str, str]) -> None:
    with (
        serve(scope_json, http2=True, **tls) as running,
        RawH2(running.port, ssl_context=client_context(ca), preface=False) as raw,
    ):
        raw.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # not the preface
        assert raw.goaway().error_code == PROTOCOL_ERROR
        assert raw.wait_closed()
