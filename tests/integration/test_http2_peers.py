"""HTTP/2 with real clients and a real proxy: curl, nghttp and h2load (Debian's
nghttp2-client), httpx, a Starlette app, and HAProxy speaking h2c to ketch
from the recipe in docs/deploy/haproxy-h2.cfg."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support import KetchProcess, free_port
from support.deploy import (
    Certificates,
    app_dir,
    certificates,
    program,
    shell_command,
    wait_listening,
    write,
)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return certificates(tmp_path_factory.mktemp("h2-certs"))


@pytest.fixture(scope="module")
def ketch(certs: Certificates) -> Iterator[tuple[str, str]]:
    """One ketch with --http2 in cleartext and one over TLS: (http URL, https URL)."""
    plain_port, tls_port = free_port(), free_port()
    tls = ["--ssl-certfile", str(certs.certfile), "--ssl-keyfile", str(certs.keyfile)]
    common = ["support.deploy_app:app", "--http2", "--no-access-log"]
    with (
        KetchProcess([*common, "--port", str(plain_port)]) as plain,
        KetchProcess([*common, "--port", str(tls_port), *tls]) as secure,
    ):
        plain.wait_started()
        secure.wait_started()
        yield f"http://127.0.0.1:{plain_port}", f"https://127.0.0.1:{tls_port}"


def run(argv: list[str], timeout: float = 60) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{argv}: {result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def test_curl_prior_knowledge_tls_alpn_and_h2c_upgrade(
    ketch: tuple[str, str], certs: Certificates, tmp_path: Path
) -> None:
    curl = program("curl", "apt-get install curl")
    plain, secure = ketch
    out = run([curl, "-s", "--http2-prior-knowledge", "-w", "\n%{http_version}", plain + "/x"])
    body, version = out.rsplit("\n", 1)
    assert version == "2"
    assert json.loads(body)["http_version"] == "2"
    ca_file = tmp_path / "ca.pem"
    certs.ca.cert_pem.write_to_path(str(ca_file))
    out = run([curl, "-s", "--http2", "--cacert", str(ca_file), "-w", "\n%{http_version}",
               secure + "/x"])  # fmt: skip
    body, version = out.rsplit("\n", 1)
    assert version == "2"
    assert json.loads(body)["scheme"] == "https"
    # curl --http2 in cleartext asks for Upgrade: h2c: answered over HTTP/1.1
    out = run([curl, "-s", "--http2", "-w", "\n%{http_version}", plain + "/x"])
    assert out.rsplit("\n", 1)[1] == "1.1"
    # a large upload and its digest, both ways of the flow control
    upload = tmp_path / "upload.bin"
    upload.write_bytes(bytes(range(256)) * 12288)  # 3 MiB
    out = run([curl, "-s", "--http2-prior-knowledge", "--data-binary", f"@{upload}",
               plain + "/upload"])  # fmt: skip
    assert json.loads(out)["size"] == 3 * 1024 * 1024


def test_nghttp_many_streams_on_one_connection(ketch: tuple[str, str]) -> None:
    nghttp = program("nghttp", "apt-get install nghttp2-client")
    plain, _ = ketch
    out = run([nghttp, "-nv", "-m", "100", plain + "/healthz"])
    assert len(re.findall(r"recv HEADERS frame <length=\d+, flags=0x04, stream_id=", out)) == 100
    assert out.count("; END_STREAM") >= 100
    assert "recv GOAWAY" not in out


@pytest.mark.parametrize("tls", [False, True], ids=["h2c", "tls"])
def test_h2load_all_requests_succeed(ketch: tuple[str, str], tls: bool) -> None:
    h2load = program("h2load", "apt-get install nghttp2-client")
    url = ketch[1 if tls else 0] + "/healthz"
    out = run([h2load, "-n", "3000", "-c", "4", "-m", "50", url])
    assert re.search(r"requests: 3000 total, 3000 started, 3000 done, 3000 succeeded", out), out
    if tls:
        assert "Application protocol: h2" in out


def test_starlette_app_over_http2() -> None:
    pytest.importorskip("starlette")
    port = free_port()
    with KetchProcess(["support.starlette_app:app", "--http2", "--port", str(port)]) as process:
        process.wait_started()
        with httpx.Client(http1=False, http2=True, timeout=10) as client:
            hello = client.get(f"http://127.0.0.1:{port}/")
            echoed = client.post(f"http://127.0.0.1:{port}/echo", content=b"x" * 300_000)
            streamed = client.get(f"http://127.0.0.1:{port}/stream")
    assert hello.http_version == "HTTP/2"
    assert hello.json() == {"hello": "starlette", "http_version": "2"}
    assert echoed.content == b"x" * 300_000
    assert streamed.text == "".join(f"part {i}\n" for i in range(5))


def test_haproxy_speaks_h2c_to_ketch(tmp_path: Path) -> None:
    """The recipe of docs/deploy/haproxy-h2.cfg: HTTP/1.1 and HTTP/2 clients in
    front, one multiplexed HTTP/2 connection to ketch behind."""
    haproxy = program("haproxy", "apt-get install haproxy")
    ketch_port, port = free_port(), free_port()
    config = write(
        "haproxy-h2.cfg",
        tmp_path,
        listen=f"127.0.0.1:{port}",
        ketch_address=f"127.0.0.1:{ketch_port}",
    )
    argv = shell_command("haproxy-h2.sh", ketch_port=ketch_port)
    with KetchProcess(argv[1:], command=argv[:1], cwd=app_dir(tmp_path)) as ketch:
        ketch.wait_started()
        with KetchProcess([], command=[haproxy, "-db", "-f", str(config)]) as proxy:
            wait_listening(("127.0.0.1", port), proxy)
            seen = httpx.get(f"http://127.0.0.1:{port}/where", timeout=10).json()
            with httpx.Client(http1=False, http2=True, timeout=10) as client:
                again = client.get(f"http://127.0.0.1:{port}/where").json()
            upload = httpx.post(
                f"http://127.0.0.1:{port}/upload", content=b"u" * 1_000_000, timeout=10
            ).json()
    assert seen["http_version"] == "2"  # HAProxy to ketch
    assert seen["client"][0] == "127.0.0.1"  # from X-Forwarded-For
    assert seen["path"] == "/where"
    assert again["http_version"] == "2"
    assert upload["size"] == 1_000_000
