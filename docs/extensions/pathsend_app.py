"""A file sent by the server (`http.response.pathsend`): the app names it, ketch
writes it with the kernel's sendfile (or in blocks under TLS), never through
Python buffers.

    ketch pathsend_app:app
"""

import os

FILE = os.path.abspath(__file__)  # an absolute path: a relative one is an error


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    headers = [
        (b"content-type", b"text/x-python"),
        (b"content-length", str(os.stat(FILE).st_size).encode()),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    if "http.response.pathsend" in scope.get("extensions", {}):
        await send({"type": "http.response.pathsend", "path": FILE})
    else:  # a server without the extension: read and send the bytes yourself
        with open(FILE, "rb") as file:
            await send({"type": "http.response.body", "body": file.read()})
