"""ketch-http: HTTP/1.1 for the ketch ASGI server.

Two parsers, one behaviour: `h11` (pure Python) and `httptools` (llhttp),
both feeding the shared connection and ASGI cycle in `ketch.http.protocol`.
"""
