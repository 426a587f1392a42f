"""The benchmark apps behind a memory probe, with tracemalloc on in the server.

    /__memory__/baseline  collect garbage, keep a snapshot to compare with later
    /__memory__/now       the traced memory now (cheap: no snapshot)
    /__memory__           the traced memory now and the top growth since the baseline
    /json /echo /stream   the benchmark apps of that name; anything else: hello

Served by benchmarks/soak.py (`ketch soak_app:app`); the figures are JSON.
"""

from __future__ import annotations

import gc
import json
import tracemalloc
from typing import Any

from apps import Receive, Scope, Send, echo, hello, stream
from apps import json as json_app

tracemalloc.start(1)  # one frame per allocation: cheap enough to serve thousands of req/s

# what tracemalloc itself allocates (snapshots) is not the server's
_FILTERS = [
    tracemalloc.Filter(False, tracemalloc.__file__),
    tracemalloc.Filter(False, __file__),
    tracemalloc.Filter(False, "<unknown>"),
]
_ROUTES = {"/json": json_app, "/echo": echo, "/stream": stream}
_baseline: tracemalloc.Snapshot | None = None


def _traced() -> dict[str, Any]:
    current, peak = tracemalloc.get_traced_memory()
    return {"traced_kib": current / 1024, "peak_kib": peak / 1024}


def _report(path: str) -> dict[str, Any]:
    global _baseline
    gc.collect()
    if path == "/__memory__/now":
        return _traced()
    if path == "/__memory__/baseline":
        _baseline = None  # the old snapshot is not part of the new baseline
        _baseline = tracemalloc.take_snapshot().filter_traces(_FILTERS)
        return _traced()  # measured after the snapshot is kept: it is in both figures
    report = _traced()  # before the new snapshot adds to it
    if _baseline is not None:
        snapshot = tracemalloc.take_snapshot().filter_traces(_FILTERS)
        stats = snapshot.compare_to(_baseline, "lineno")
        report["top_growth"] = [
            {"where": str(s.traceback), "size_diff": s.size_diff, "count_diff": s.count_diff}
            for s in stats[:10]
        ]
    return report


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    path = scope.get("path", "")
    if scope["type"] != "http" or not path.startswith("/__memory__"):
        await _ROUTES.get(path, hello)(scope, receive, send)
        return
    body = json.dumps(_report(path)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
