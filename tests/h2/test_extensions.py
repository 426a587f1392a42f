"""The ASGI extensions over HTTP/2: announced in every stream's scope (and
`tls` over TLS), a file of `http.response.pathsend` as DATA frames within the
client's window, trailers as a last HEADERS frame, early hints as 103
HEADERS frames; read frame by frame."""

from __future__ import annotations

import array
import json
import os
import sys
from pathlib import Path

import pytest
from support import serve, wait_for
from support.deploy import certificates
from support.extension_apps import early_hints, extensions_json, pathsend, trailers
from support.h2frames import DATA, HEADERS, RawH2, window_update

MiB = 1024 * 1024


def make_file(path: Path, size: int) -> Path:
    words = array.array("I", range((size + 3) // 4))
    if sys.byteorder == "little":
        words.byteswap()
    path.write_bytes(words.tobytes()[:size])
    return path


def test_extensions_are_announced() -> None:
    with serve(extensions_json, http2=True) as running, RawH2(running.port) as h2:
        h2.request(1)
        data = json.loads(h2.response(1).body)
    assert set(data) == {
        "http.response.pathsend",
        "http.response.trailers",
        "http.response.early_hint",
    }


def test_tls_over_http2(tmp_path: Path) -> None:
    certs = certificates(tmp_path)
    options = {"ssl_certfile": str(certs.certfile), "ssl_keyfile": str(certs.keyfile)}
    with (
        serve(extensions_json, http2=True, **options) as running,
        RawH2(running.port, ssl_context=certs.client_context()) as h2,
    ):
        h2.request(1, extra=[])
        data = json.loads(h2.response(1).body)
    assert data["tls"]["tls_version"] == 0x0304
    assert data["tls"]["client_cert_chain"] == []
    assert "http.response.pathsend" in data


def test_a_file_over_http2(tmp_path: Path) -> None:
    path = make_file(tmp_path / "file", MiB + 7)
    with serve(pathsend, http2=True) as running, RawH2(running.port) as h2:
        h2.request(1, f"/?path={path}")
        got = h2.response(1)
        h2.request(3, f"/?path={path}", method="HEAD")
        head = h2.response(3)
        h2.request(5, "/?path=relative&catch=1")
        heard = h2.response(5)
    assert got.status == 200
    assert got.header(b"content-length") == b"%d" % (MiB + 7)
    assert got.body == path.read_bytes()
    assert head.header(b"content-length") == b"%d" % (MiB + 7)
    assert head.body == b"" and head.ended
    assert heard.body.startswith(b'heard RuntimeError("http.response.pathsend needs an absolute')


def test_a_file_that_shrinks_over_http2(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The client holds its window shut, the file shrinks, the window opens:
    the stream is reset, the connection serves on."""
    path = make_file(tmp_path / "file", 4 * MiB)
    with serve(pathsend, http2=True) as running, RawH2(running.port) as h2:
        h2.request(1, f"/?path={path}")

        def received() -> int:
            h2.poll()
            return len(h2.responses[1].body) if 1 in h2.responses else 0

        wait_for(lambda: received() >= 65535, timeout=5)  # the whole initial window
        os.truncate(path, 0)
        h2.send(window_update(0, received()) + window_update(1, received()))
        stream = h2.response(1, timeout=10)
        h2.request(3, f"/?path={path}")
        assert h2.response(3).status == 200
    assert stream.reset == 0x2  # INTERNAL_ERROR
    assert len(stream.body) < 4 * MiB
    assert f"File {path} shrank while it was sent" in caplog.text


def test_trailers_over_http2() -> None:
    with serve(trailers, http2=True) as running, RawH2(running.port) as h2:
        h2.request(1, "/?chunks=2", extra=[(b"te", b"trailers")])
        wanted = h2.response(1)
        h2.request(3, "/?chunks=2")
        dropped = h2.response(3)
    assert wanted.body == b"part 0;part 1;"
    assert wanted.trailers == [(b"x-checksum", b"abc"), (b"x-status", b"0")]
    last = [f for f in h2.frames if f.stream_id == 1 and f.kind in (DATA, HEADERS)][-1]
    assert (last.kind, last.flags & 0x1) == (HEADERS, 0x1)  # the trailers end the stream
    assert dropped.body == b"part 0;part 1;"
    assert dropped.trailers is None and dropped.ended


def test_early_hints_over_http2() -> None:
    with serve(early_hints, http2=True) as running, RawH2(running.port) as h2:
        h2.request(1)
        response = h2.response(1)
    assert response.informational == [103, 103]
    assert response.interim[0] == [
        (b":status", b"103"),
        (b"link", b"</style.css>; rel=preload; as=style"),
        (b"link", b"</app.js>; rel=preload; as=script"),
    ]
    assert response.status == 200
    assert response.body == b"<!doctype html>"
