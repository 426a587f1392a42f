"""A WebSocket refused with an HTTP response of the app's own
(`websocket.http.response`): a 403 with a body, instead of a bare close.

    ketch denial_app:app
"""


async def app(scope, receive, send):
    if scope["type"] != "websocket":
        return
    await receive()  # websocket.connect
    token = dict(scope["headers"]).get(b"authorization")
    if token == b"Bearer let-me-in":
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": "welcome"})
        await send({"type": "websocket.close"})
    elif "websocket.http.response" in scope.get("extensions", {}):
        headers = [(b"content-type", b"text/plain")]
        await send({"type": "websocket.http.response.start", "status": 403, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": b"Who are you?\n"})
    else:
        await send({"type": "websocket.close", "code": 1008})
