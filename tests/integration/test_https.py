"""HTTPS served by ketch itself, with the command lines of docs/deploy/https*.sh.

The TLS machinery has its own tests in tests/core/test_tls.py; these prove the
documented recipes, run as a user would type them.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import trustme
from support import KetchProcess, free_port
from support.deploy import app_dir, certificates, shell_commands

PASSWORD = "correct horse"


@pytest.mark.parametrize(
    ("index", "encrypted"), [(0, False), (1, True), (2, True)], ids=["key", "flag", "env"]
)
def test_https_recipes(tmp_path: Path, index: int, encrypted: bool) -> None:
    certs = certificates(tmp_path, password=PASSWORD if encrypted else None)
    port = free_port()
    commands = shell_commands(
        "https.sh",
        host="127.0.0.1",
        port=port,
        certfile=certs.certfile,
        keyfile=certs.keyfile,
        password=PASSWORD,
    )
    assert len(commands) == 3
    env, argv = commands[index]
    with KetchProcess(argv[1:], command=argv[:1], cwd=app_dir(tmp_path), env=env) as ketch:
        assert ketch.wait_started() == f"https://127.0.0.1:{port}"
        data = httpx.get(f"https://127.0.0.1:{port}/", verify=certs.client_context()).json()
        assert data["scheme"] == "https"
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(f"https://127.0.0.1:{port}/")  # a CA the client does not know
    if env:  # the password stays out of the command line, out of `ps`
        assert PASSWORD not in " ".join(argv)


def test_client_certificates_required(tmp_path: Path) -> None:
    certs = certificates(tmp_path)
    client_ca = trustme.CA()
    client_ca.cert_pem.write_to_path(str(tmp_path / "clients-ca.pem"))
    port = free_port()
    (_, argv), *_ = shell_commands(
        "https-mtls.sh",
        host="127.0.0.1",
        port=port,
        certfile=certs.certfile,
        keyfile=certs.keyfile,
        client_ca=tmp_path / "clients-ca.pem",
    )
    url = f"https://127.0.0.1:{port}/"
    with KetchProcess(argv[1:], command=argv[:1], cwd=app_dir(tmp_path)) as ketch:
        ketch.wait_started()
        with_certificate = certs.client_context()
        client_ca.issue_cert("client@example.com").configure_cert(with_certificate)
        assert httpx.get(url, verify=with_certificate).json()["scheme"] == "https"

        stranger = certs.client_context()
        trustme.CA().issue_cert("stranger@example.com").configure_cert(stranger)
        for context in (certs.client_context(), stranger):  # no certificate, unknown CA
            with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
                httpx.get(url, verify=context)
        # and the server goes on serving
        assert httpx.get(url, verify=with_certificate).status_code == 200
