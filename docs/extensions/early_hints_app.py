"""103 Early Hints (`http.response.early_hint`): the browser starts fetching the
style sheet while the app is still building the page.

    ketch early_hints_app:app
    curl -s -D - -o /dev/null http://127.0.0.1:8000/
"""

import asyncio


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    if "http.response.early_hint" in scope.get("extensions", {}):
        links = [b"</style.css>; rel=preload; as=style"]
        await send({"type": "http.response.early_hint", "links": links})
    await asyncio.sleep(0.1)  # the slow part: a database, a template...
    page = b'<!doctype html><link rel="stylesheet" href="/style.css"><p>Hello'
    headers = [(b"content-type", b"text/html"), (b"link", b"</style.css>; rel=preload; as=style")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": page})
