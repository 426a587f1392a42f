"""The ASGI `tls` extension (0.2): what a TLS connection tells the app, compared
with the certificates the test made (trustme) and with what the client's own
`ssl` saw, for HTTP and WebSocket scopes, alone, under --workers and under the
gunicorn worker."""

from __future__ import annotations

import datetime
import json
import socket
import ssl
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from support import KetchProcess, free_port, serve
from support.deploy import program
from support.extension_apps import extensions_json
from websockets.sync.client import connect as ws_connect

from ketch.core.tls import rfc4514_name

REQUIRED = int(ssl.CERT_REQUIRED)
OPTIONAL = int(ssl.CERT_OPTIONAL)


class Pki:
    """A CA, the server's certificate files, and client certificates."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.ca = trustme.CA()
        self.server = self.ca.issue_cert("127.0.0.1", "localhost")
        self.certfile = directory / "cert.pem"
        self.keyfile = directory / "key.pem"
        self.cafile = directory / "ca.pem"
        self.server.cert_chain_pems[0].write_to_path(str(self.certfile))
        self.server.private_key_pem.write_to_path(str(self.keyfile))
        self.ca.cert_pem.write_to_path(str(self.cafile))

    def options(self, cert_reqs: int) -> dict[str, Any]:
        return {
            "ssl_certfile": str(self.certfile),
            "ssl_keyfile": str(self.keyfile),
            "ssl_cert_reqs": cert_reqs,
            "ssl_ca_certs": str(self.cafile),
        }

    def args(self, cert_reqs: int) -> list[str]:
        return [
            f"--{name.replace('_', '-')}={value}" for name, value in self.options(cert_reqs).items()
        ]

    def client_context(self, client: trustme.LeafCert | None = None) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        if client is not None:
            client.configure_cert(context)
        return context


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


def der(pem: str | bytes) -> bytes:
    text = pem.decode() if isinstance(pem, bytes) else pem
    return ssl.PEM_cert_to_DER_cert(text)


def subject_of(pem: bytes) -> str:
    return x509.load_pem_x509_certificate(pem).subject.rfc4514_string()


def get_over_tls(port: int, context: ssl.SSLContext, requests: int = 1) -> tuple[list[Any], Any]:
    """GET / `requests` times on one TLS connection: the JSON bodies, and the
    client's view of the connection (its version() and cipher())."""
    bodies = []
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as sock,
    ):
        stream = sock.makefile("rb")
        for _ in range(requests):
            sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            length = 0
            while (line := stream.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            bodies.append(json.loads(stream.read(length)))
        view = (sock.version(), sock.cipher())
    return bodies, view


def cipher_number(context: ssl.SSLContext, name: str) -> int:
    return next(c["id"] & 0xFFFF for c in context.get_ciphers() if c["name"] == name)


@pytest.mark.parametrize("cert_reqs", [OPTIONAL, REQUIRED])
def test_the_scope_describes_the_tls_connection(
    pki: Pki, http_impl: str, loop_impl: str, cert_reqs: int
) -> None:
    client = pki.ca.issue_cert(
        "client@example.com",
        common_name="Client #1, the first",
        organization_name="Acme; <Research>",
        organization_unit_name=" Lab+Ops ",
    )
    context = pki.client_context(client)
    options = pki.options(cert_reqs)
    with serve(extensions_json, http=http_impl, loop=loop_impl, **options) as running:
        (data,), (version, cipher) = get_over_tls(running.port, context)
    tls = data["tls"]
    assert der(tls["server_cert"]) == der(pki.server.cert_chain_pems[0].bytes())
    assert [der(pem) for pem in tls["client_cert_chain"]][:1] == [
        der(client.cert_chain_pems[0].bytes())
    ]
    assert tls["client_cert_name"] == subject_of(client.cert_chain_pems[0].bytes())
    assert tls["client_cert_error"] is None
    assert tls["tls_version"] == {"TLSv1.3": 0x0304, "TLSv1.2": 0x0303}[version]
    assert tls["cipher_suite"] == cipher_number(context, cipher[0])
    # and the extensions HTTP/1.1 implements, beside it
    assert set(data) == {
        "tls",
        "http.response.pathsend",
        "http.response.trailers",
        "http.response.early_hint",
    }


def test_tls_1_2_and_its_cipher_suite(pki: Pki, http_impl: str) -> None:
    context = pki.client_context()
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers("ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES128-GCM-SHA256")
    with serve(extensions_json, http=http_impl, **pki.options(OPTIONAL)) as running:
        (data,), (version, cipher) = get_over_tls(running.port, context)
    assert version == "TLSv1.2"
    assert data["tls"]["tls_version"] == 0x0303
    # RFC 5289: TLS_ECDHE_*_WITH_AES_128_GCM_SHA256 are {0xC0, 0x2B} and {0xC0, 0x2F}
    assert data["tls"]["cipher_suite"] in (0xC02B, 0xC02F)
    assert data["tls"]["cipher_suite"] == cipher_number(context, cipher[0])


@pytest.mark.parametrize("cert_reqs", [int(ssl.CERT_NONE), OPTIONAL])
def test_no_client_certificate(pki: Pki, cert_reqs: int) -> None:
    with serve(extensions_json, **pki.options(cert_reqs)) as running:
        (data,), _ = get_over_tls(running.port, pki.client_context())
    tls = data["tls"]
    assert tls["client_cert_chain"] == []
    assert tls["client_cert_name"] is None
    assert tls["client_cert_error"] is None
    assert der(tls["server_cert"]) == der(pki.server.cert_chain_pems[0].bytes())


def test_a_plugin_that_announces_nothing_still_gets_tls(pki: Pki) -> None:
    """The example third-party plugin passes no extensions to http_scope()."""
    client = pki.ca.issue_cert("client@example.com")
    with serve(extensions_json, http="example", **pki.options(REQUIRED)) as running:
        (data,), _ = get_over_tls(running.port, pki.client_context(client))
    assert set(data) == {"tls"}
    assert data["tls"]["client_cert_name"] == subject_of(client.cert_chain_pems[0].bytes())


def test_behind_the_proxy_protocol(pki: Pki) -> None:
    """The PROXY header gives the addresses; the TLS after it, the tls extension."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = json.dumps({"client": scope["client"], "tls": scope["extensions"]["tls"]})
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body.encode()})

    client = pki.ca.issue_cert("client@example.com")
    with serve(app, proxy_protocol=True, **pki.options(REQUIRED)) as running:
        raw = socket.create_connection(("127.0.0.1", running.port), timeout=5)
        raw.sendall(b"PROXY TCP4 203.0.113.7 192.0.2.1 4711 443\r\n")
        with pki.client_context(client).wrap_socket(raw, server_hostname="localhost") as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
    answer = json.loads(data.partition(b"\r\n\r\n")[2])
    assert answer["client"] == ["203.0.113.7", 4711]
    assert answer["tls"]["client_cert_name"] == subject_of(client.cert_chain_pems[0].bytes())


def test_cleartext_has_no_tls_extension(http_impl: str) -> None:
    with serve(extensions_json, http=http_impl) as running:
        data = httpx.get(running.url).json()
    assert "tls" not in data
    assert "http.response.pathsend" in data


def test_computed_once_per_connection_and_each_scope_has_its_own_extensions(pki: Pki) -> None:
    given: list[dict[str, Any]] = []  # each request's extensions, as the server gave them
    scopes: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        given.append(dict(scope["extensions"]))
        scopes.append(scope)
        # a middleware adding and removing extensions in its scope...
        scope["extensions"]["example.per-request"] = {"request": len(given)}
        del scope["extensions"]["http.response.pathsend"]
        await extensions_json(scope, receive, send)

    client = pki.ca.issue_cert("client@example.com")
    with serve(app, **pki.options(REQUIRED)) as running:
        bodies, _ = get_over_tls(running.port, pki.client_context(client), requests=3)
    assert [body["example.per-request"] for body in bodies] == [{"request": n} for n in (1, 2, 3)]
    # ... changes nothing for the connection's next request
    for extensions in given:
        assert "example.per-request" not in extensions
        assert "http.response.pathsend" in extensions
    # the connection's TLS facts: computed once, shared by its requests
    assert given[0]["tls"] is given[1]["tls"] is given[2]["tls"]
    assert len({id(scope["extensions"]) for scope in scopes}) == 3


def test_a_client_certificate_chain(pki: Pki) -> None:
    """The chain the client sent, its own certificate first (the rest only on
    Python 3.13+, whose ssl module can read it)."""
    intermediate = pki.ca.create_child_ca()
    client = intermediate.issue_cert("client@example.com", common_name="chained")
    with serve(extensions_json, **pki.options(REQUIRED)) as running:
        (data,), _ = get_over_tls(running.port, pki.client_context(client))
    chain = [der(pem) for pem in data["tls"]["client_cert_chain"]]
    assert chain[0] == der(client.cert_chain_pems[0].bytes())
    if sys.version_info >= (3, 13):
        assert chain[1:] == [der(intermediate.cert_pem.bytes())]
    assert data["tls"]["client_cert_name"] == subject_of(client.cert_chain_pems[0].bytes())


def test_rfc4514_names_as_cryptography_writes_them(pki: Pki) -> None:
    """A subject with a multi-valued RDN, an e-mail address (an attribute
    without an RFC 4514 short name) and characters to escape."""
    ca_key = serialization.load_pem_private_key(pki.ca.private_key_pem.bytes(), None)
    ca_cert = x509.load_pem_x509_certificate(pki.ca.cert_pem.bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COUNTRY_NAME, "FR")]),
            x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.DOMAIN_COMPONENT, "org")]),
            x509.RelativeDistinguishedName(
                [
                    x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "R&D"),
                    x509.NameAttribute(NameOID.USER_ID, "u42"),
                ]
            ),
            x509.RelativeDistinguishedName(
                [x509.NameAttribute(NameOID.EMAIL_ADDRESS, "a.b+c@example.com")]
            ),
            x509.RelativeDistinguishedName(
                [x509.NameAttribute(NameOID.COMMON_NAME, '#1 "quoted" \\ back, slash ')]
            ),
        ]
    )
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    (pki.directory / "client.pem").write_bytes(cert_pem + key_pem)
    context = pki.client_context()
    context.load_cert_chain(str(pki.directory / "client.pem"))
    with serve(extensions_json, **pki.options(REQUIRED)) as running:
        (data,), _ = get_over_tls(running.port, context)
    assert data["tls"]["client_cert_name"] == subject.rfc4514_string()
    assert der(data["tls"]["client_cert_chain"][0]) == der(cert_pem)


def test_rfc4514_escapes() -> None:
    subject = (
        (("countryName", "DE"),),
        (("commonName", " lead and trail "), ("organizationName", "x;y<z>")),
        (("1.2.3.4", "#hash\0nul"),),
    )
    assert rfc4514_name(subject) == (
        "1.2.3.4=\\#hash\\00nul,CN=\\ lead and trail\\ +O=x\\;y\\<z\\>,C=DE"
    )


def test_websocket_scope_over_tls(pki: Pki) -> None:
    client = pki.ca.issue_cert("client@example.com", common_name="socket")
    with (
        serve(extensions_json, **pki.options(REQUIRED)) as running,
        ws_connect(
            f"wss://localhost:{running.port}/",
            ssl=pki.client_context(client),
            open_timeout=5,
        ) as ws,
    ):
        data = json.loads(ws.recv(timeout=5))
    assert set(data) == {"tls", "websocket.http.response"}
    assert data["tls"]["client_cert_name"] == subject_of(client.cert_chain_pems[0].bytes())
    assert der(data["tls"]["server_cert"]) == der(pki.server.cert_chain_pems[0].bytes())


def test_tls_extension_under_workers(pki: Pki) -> None:
    client = pki.ca.issue_cert("client@example.com", common_name="worker client")
    args = ["support.extension_apps:extensions_json", "--workers", "2", "--port", "0"]
    with KetchProcess([*args, *pki.args(REQUIRED)]) as process:
        port = process.port(timeout=30)
        with httpx.Client(verify=pki.client_context(client)) as http:
            data = http.get(f"https://127.0.0.1:{port}/").json()
    assert data["tls"]["client_cert_name"] == subject_of(client.cert_chain_pems[0].bytes())
    assert der(data["tls"]["server_cert"]) == der(pki.server.cert_chain_pems[0].bytes())


def test_tls_extension_under_gunicorn(pki: Pki) -> None:
    gunicorn = program("gunicorn", "pip install 'ketch-supervisor[gunicorn]'")
    client = pki.ca.issue_cert("client@example.com", common_name="gunicorn client")
    port = free_port()
    args = [
        "-k",
        "ketch.supervisor.gunicorn.KetchWorker",
        "-b",
        f"127.0.0.1:{port}",
        "--certfile",
        str(pki.certfile),
        "--keyfile",
        str(pki.keyfile),
        "--ca-certs",
        str(pki.cafile),
        "--cert-reqs",
        str(REQUIRED),
        "--no-control-socket",
        "support.extension_apps:extensions_json",
    ]
    with KetchProcess(args, command=[gunicorn]) as process:
        process.wait_for_output(r"ketch running on https", timeout=30)
        with httpx.Client(verify=pki.client_context(client)) as http:
            data = http.get(f"https://127.0.0.1:{port}/").json()
    assert data["tls"]["client_cert_name"] == subject_of(client.cert_chain_pems[0].bytes())
    assert data["tls"]["client_cert_error"] is None
