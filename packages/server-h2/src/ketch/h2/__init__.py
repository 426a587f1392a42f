"""ketch-h2: HTTP/2 for the ketch ASGI server, on the h2 library.

`ketch --http2` serves HTTP/2 next to HTTP/1.1 on the same listeners (ketch-core
chooses per connection: ALPN over TLS, the connection preface in cleartext).
`ketch.h2.connection` is the connection (the asyncio protocol and its streams),
with `incoming` (the client's events), `writer` (output under flow control),
`lifetime` (states, deadlines, graceful GOAWAY, errors) and `h2_setup` (h2 as
ketch configures it); `ketch.h2.stream` is one request's ASGI cycle, and
`ketch.h2.guard` the frame-header check that bounds floods before h2 parses.
It imports nothing of ketch but the public plugin API, `ketch.core.api`.
"""
