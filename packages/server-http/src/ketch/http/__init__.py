"""ketch-http: HTTP/1.1 for the ketch ASGI server.

Two parsers, one behaviour: `h11` (pure Python) and `httptools` (llhttp) are
parser adapters feeding the shared connection (`ketch.http.connection`) and
ASGI cycle (`ketch.http.cycle`) through the contract in `ketch.http.parser`.
"""
