"""HTTPS from the --ssl-* options, with certificates made by trustme."""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx
import pytest
import trustme
from cryptography.hazmat.primitives import serialization
from support import KetchProcess, run_ketch, serve
from support.apps import scope_json


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_cert(ca: trustme.CA) -> trustme.LeafCert:
    return ca.issue_cert("127.0.0.1", "localhost")


@pytest.fixture
def cert_files(tmp_path: Path, server_cert: trustme.LeafCert) -> tuple[str, str]:
    cert = tmp_path / "cert.pem"
    key = tmp_path / "key.pem"
    server_cert.cert_chain_pems[0].write_to_path(str(cert))
    server_cert.private_key_pem.write_to_path(str(key))
    return str(cert), str(key)


def _client_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


def test_https_is_served(ca: trustme.CA, cert_files: tuple[str, str], http_impl: str) -> None:
    cert, key = cert_files
    with serve(scope_json, ssl_certfile=cert, ssl_keyfile=key, http=http_impl) as running:
        assert running.url.startswith("https://")
        response = httpx.get(running.url, verify=_client_context(ca))
    assert response.status_code == 200
    assert response.json()["scheme"] == "https"


def test_encrypted_key_with_password(
    ca: trustme.CA, server_cert: trustme.LeafCert, tmp_path: Path
) -> None:
    cert = tmp_path / "cert.pem"
    key = tmp_path / "encrypted-key.pem"
    server_cert.cert_chain_pems[0].write_to_path(str(cert))
    private_key = serialization.load_pem_private_key(server_cert.private_key_pem.bytes(), None)
    key.write_bytes(
        private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"s3cret"),
        )
    )
    options = {"ssl_certfile": str(cert), "ssl_keyfile": str(key)}
    with serve(scope_json, ssl_keyfile_password="s3cret", **options) as running:
        assert httpx.get(running.url, verify=_client_context(ca)).status_code == 200

    wrong = run_ketch(
        [
            "support.apps:hello",
            "--ssl-certfile",
            str(cert),
            "--ssl-keyfile",
            str(key),
            "--ssl-keyfile-password",
            "wrong",
        ]
    )
    assert wrong.returncode != 0
    assert "cannot load the certificate and key" in wrong.stderr
    assert "Traceback" not in wrong.stderr


def test_client_certificates_required(
    ca: trustme.CA, cert_files: tuple[str, str], tmp_path: Path
) -> None:
    cert, key = cert_files
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    client_cert = ca.issue_cert("client@example.com")
    options = {
        "ssl_certfile": cert,
        "ssl_keyfile": key,
        "ssl_cert_reqs": int(ssl.CERT_REQUIRED),
        "ssl_ca_certs": str(ca_file),
    }
    with serve(scope_json, **options) as running:
        anonymous = _client_context(ca)
        with pytest.raises(httpx.HTTPError):
            httpx.get(running.url, verify=anonymous)
        identified = _client_context(ca)
        client_cert.configure_cert(identified)
        response = httpx.get(running.url, verify=identified)
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("setting", "anonymous_served", "foreign_certificate_served"),
    [
        (["--ssl-cert-reqs", "none"], True, True),  # no certificate asked for
        (["--ssl-cert-reqs", "optional"], True, False),  # asked for, checked if given
        (["--ssl-cert-reqs", "required"], False, False),
        (["--ssl-cert-reqs", "1"], True, False),  # Uvicorn's spelling: ssl.CERT_OPTIONAL
        ({"KETCH_SSL_CERT_REQS": "required"}, False, False),
    ],
)
def test_ssl_cert_reqs_by_name_or_number(
    setting: list[str] | dict[str, str],
    anonymous_served: bool,
    foreign_certificate_served: bool,
    ca: trustme.CA,
    cert_files: tuple[str, str],
    tmp_path: Path,
) -> None:
    cert, key = cert_files
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    args = ["support.apps:scope_json", "--port", "0", "--ssl-certfile", cert]
    args += ["--ssl-keyfile", key, "--ssl-ca-certs", str(ca_file)]
    env = setting if isinstance(setting, dict) else {}
    args += setting if isinstance(setting, list) else []

    def served(client_ca: trustme.CA | None) -> bool:
        context = _client_context(ca)
        if client_ca is not None:
            client_ca.issue_cert("client@example.com").configure_cert(context)
        try:
            return httpx.get(url, verify=context).status_code == 200
        except httpx.HTTPError:
            return False

    with KetchProcess(args, env=env) as ketch:
        url = ketch.wait_started()
        assert served(ca)  # a certificate from the trusted CA is always welcome
        assert served(None) is anonymous_served
        assert served(trustme.CA()) is foreign_certificate_served
        assert served(ca)  # and the server goes on serving


def test_ssl_cert_reqs_names_the_choices() -> None:
    result = run_ketch(["support.apps:hello", "--ssl-cert-reqs", "sometimes"])
    assert result.returncode == 2
    assert "'sometimes' is not one of none, optional, required (or 0, 1, 2)" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_certificate_half_is_an_error(cert_files: tuple[str, str]) -> None:
    cert, _ = cert_files
    result = run_ketch(["support.apps:hello", "--ssl-certfile", cert])
    assert result.returncode != 0
    assert "--ssl-keyfile" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_certificate_file_is_an_error(tmp_path: Path) -> None:
    result = run_ketch(
        [
            "support.apps:hello",
            "--ssl-certfile",
            str(tmp_path / "nope.pem"),
            "--ssl-keyfile",
            str(tmp_path / "nope.key"),
        ]
    )
    assert result.returncode != 0
    assert "no such file" in result.stderr
    assert "Traceback" not in result.stderr
