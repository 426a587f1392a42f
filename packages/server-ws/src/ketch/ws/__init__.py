"""ketch-ws: WebSockets for the ketch ASGI server (websockets and wsproto plugins)."""
