"""A Flask (WSGI) application served by ketch.

    ketch app:app     # from this folder (see README.md)

ketch sees that `app` is a WSGI application (it is called with
`environ, start_response`) and runs it in a thread pool: no `--interface wsgi`
needed.

GET  /              a greeting, with the client address Flask saw
GET  /hello/<name>  a greeting for name
POST /upload        the size of the uploaded body, read as a stream
"""

from __future__ import annotations

from flask import Flask, request

app = Flask(__name__)


@app.get("/")
def index() -> dict[str, str | None]:
    return {"hello": "flask", "client": request.remote_addr, "scheme": request.scheme}


@app.get("/hello/<name>")
def hello(name: str) -> str:
    return f"Hello, {name}!\n"


@app.post("/upload")
def upload() -> dict[str, int]:
    size = 0
    while chunk := request.stream.read(64 * 1024):
        size += len(chunk)
    return {"size": size}
