"""A body streamed in parts, and its checksum sent after it as a trailer field
(`http.response.trailers`): the checksum is known only once the body is sent.

    ketch trailers_app:app
    curl --raw -H 'TE: trailers' http://127.0.0.1:8000/
"""

import hashlib


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"trailer", b"x-sha256")],
            "trailers": True,
        }
    )
    digest = hashlib.sha256()
    for number in range(3):
        part = f"part {number}\n".encode()
        digest.update(part)
        await send({"type": "http.response.body", "body": part, "more_body": True})
    await send({"type": "http.response.body", "body": b""})
    # sent only if the client said `TE: trailers` (and the response is chunked)
    trailer = (b"x-sha256", digest.hexdigest().encode())
    await send({"type": "http.response.trailers", "headers": [trailer]})
