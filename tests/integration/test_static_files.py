"""Starlette's FileResponse and a FastAPI static mount served by ketch through
`http.response.pathsend` (they use it when the scope announces it), end to
end; Range requests are left to the app, which streams them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse
from starlette.routing import Route
from support import RawConnection, Running, serve

SIZE = 300_000


class Recorder:
    """ASGI middleware noting the type of every message the app sends."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.sent: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def recording_send(message: Any) -> None:
            self.sent.append(message["type"])
            await send(message)

        await self.app(scope, receive, recording_send)


@pytest.fixture
def static_dir(tmp_path: Path) -> Path:
    (tmp_path / "static").mkdir()
    (tmp_path / "static" / "app.js").write_bytes(bytes(range(256)) * (SIZE // 256))
    (tmp_path / "static" / "style.css").write_text("body { color: teal }\n")
    (tmp_path / "secret.txt").write_text("not served\n")
    return tmp_path / "static"


@pytest.fixture
def starlette_app(static_dir: Path) -> Recorder:
    async def download(request: Request) -> FileResponse:
        return FileResponse(static_dir / "app.js", media_type="text/javascript")

    async def page(request: Request) -> PlainTextResponse:
        await request.send_early_hints("</static/style.css>; rel=preload; as=style")
        return PlainTextResponse("page")

    return Recorder(Starlette(routes=[Route("/download", download), Route("/page", page)]))


@pytest.fixture
def running_starlette(starlette_app: Recorder, http_impl: str) -> Iterator[Running]:
    with serve(starlette_app, http=http_impl) as running:
        yield running


def test_file_response_goes_by_pathsend(
    running_starlette: Running, starlette_app: Recorder, static_dir: Path
) -> None:
    with httpx.Client(base_url=running_starlette.url) as client:
        response = client.get("/download")
        assert response.status_code == 200
        assert response.content == (static_dir / "app.js").read_bytes()
        assert response.headers["content-length"] == str(SIZE - SIZE % 256)
        assert starlette_app.sent == ["http.response.start", "http.response.pathsend"]
        # HEAD: Starlette answers it itself, with the length
        starlette_app.sent.clear()
        head = client.head("/download")
        assert head.headers["content-length"] == response.headers["content-length"]
        assert head.content == b""


def test_ranges_are_the_apps(
    running_starlette: Running, starlette_app: Recorder, static_dir: Path
) -> None:
    data = (static_dir / "app.js").read_bytes()
    with httpx.Client(base_url=running_starlette.url) as client:
        one = client.get("/download", headers={"Range": "bytes=1000-1999"})
        assert one.status_code == 206
        assert one.content == data[1000:2000]
        assert one.headers["content-range"] == f"bytes 1000-1999/{len(data)}"
        assert "http.response.pathsend" not in starlette_app.sent  # Starlette streams ranges
        two = client.get("/download", headers={"Range": "bytes=0-9, 100-109"})
        assert two.status_code == 206
        assert data[0:10] in two.content and data[100:110] in two.content
        outside = client.get("/download", headers={"Range": f"bytes={len(data) + 10}-"})
        assert outside.status_code == 416


def test_early_hints_from_starlette(running_starlette: Running) -> None:
    """Request.send_early_hints() sends a 103 when the scope announces the extension."""
    with RawConnection(running_starlette.port) as conn:
        conn.send(b"GET /page HTTP/1.1\r\nHost: x\r\n\r\n")
        hint = conn.read_response()
        final = conn.read_response()
    assert (hint.status, hint.headers) == (
        103,
        [("link", "</static/style.css>; rel=preload; as=style")],
    )
    assert (final.status, final.body) == (200, b"page")


def test_fastapi_static_mount(static_dir: Path, http_impl: str) -> None:
    app = FastAPI()
    app.mount("/static", StaticFiles(directory=static_dir), name="static")
    recorder = Recorder(app)
    with (
        serve(recorder, http=http_impl) as running,
        httpx.Client(base_url=running.url) as client,
    ):
        for name in ("app.js", "style.css"):
            response = client.get(f"/static/{name}")
            assert response.status_code == 200
            assert response.content == (static_dir / name).read_bytes()
        assert recorder.sent.count("http.response.pathsend") == 2
        assert client.get("/static/missing.css").status_code == 404
        assert client.get("/static/../secret.txt").status_code == 404
        assert client.get("/static/%2e%2e/secret.txt").status_code == 404
        etag = client.get("/static/style.css").headers["etag"]
        assert client.get("/static/style.css", headers={"If-None-Match": etag}).status_code == 304
