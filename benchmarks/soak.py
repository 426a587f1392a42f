"""Does ketch's memory grow under sustained load? A soak with tracemalloc.

    hatch run soak                          # 60 s of hello, 64 connections
    hatch run soak --path /echo --body 1024 # 1 KiB uploads echoed
    hatch run soak --close                  # a new connection for every request
    hatch run soak --server uvicorn         # the same for Uvicorn

Serves benchmarks/soak_app.py (the benchmark apps, tracemalloc started in the
server process) on 127.0.0.1, loads it with wrk for 5 s to reach a steady state,
takes a baseline snapshot, then loads it for `--duration` seconds in `--samples`
stretches, reading the traced memory and the RSS after each. Prints the series,
the start and end, the allocation sites that grew most, and a verdict: memory
grows when the traced memory rose by more than `--threshold` KiB from the first
sample to the last. Exit status 1 when it grows.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from common import (
    BIN_DIR,
    HOST,
    free_port,
    http_request,
    raise_nofile,
    run_wrk,
    running,
    wait_ready,
    write_lua,
)

_COMMON = ("--host", HOST, "--no-access-log", "--log-level", "warning")
SERVERS = {
    "ketch": ("ketch", "soak_app:app", *_COMMON, "--http", "{http}", "--loop", "{loop}"),
    "uvicorn": ("uvicorn", "soak_app:app", *_COMMON, "--http", "{http}", "--loop", "{loop}"),
}


def memory(port: int, what: str = "now") -> dict[str, Any]:
    status, body = http_request(port, "GET", f"/__memory__/{what}".rstrip("/"), timeout=30)
    if status != 200:
        raise RuntimeError(f"memory probe answered {status}")
    report: dict[str, Any] = json.loads(body)
    return report


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--server", choices=sorted(SERVERS), default="ketch")
    parser.add_argument("-d", "--duration", type=int, default=60, help="seconds (default 60)")
    parser.add_argument("--samples", type=int, default=6, help="readings (default 6)")
    parser.add_argument("-c", "--connections", type=int, default=64)
    parser.add_argument("--path", default="/", help="/, /json, /echo or /stream")
    parser.add_argument("--body", type=int, default=0, help="POST a body of this many bytes")
    parser.add_argument("--close", action="store_true", help="Connection: close on every request")
    parser.add_argument("--http", default="httptools", choices=("httptools", "h11"))
    parser.add_argument("--loop", default="uvloop", choices=("uvloop", "asyncio"))
    parser.add_argument("--threshold", type=float, default=512.0, help="KiB (default 512)")
    parser.add_argument("--wrk", default=shutil.which("wrk"))
    args = parser.parse_args()
    if not args.wrk:
        parser.error("wrk not found on PATH (apt install wrk, or --wrk PATH)")
    raise_nofile()

    port = free_port()
    argv = [part.format(http=args.http, loop=args.loop) for part in SERVERS[args.server]]
    argv = [str(BIN_DIR / argv[0]), *argv[1:], "--port", str(port)]
    stretch = max(1, args.duration // args.samples)
    with tempfile.TemporaryDirectory(prefix="ketch-soak-") as tmp:
        lua = write_lua(Path(tmp), args.body) if args.body else None
        extra = ["-H", "Connection: close"] if args.close else []
        wrk: dict[str, Any] = {"connections": args.connections, "path": args.path, "lua": lua}
        log_path = Path(tmp) / "server.log"
        with open(log_path, "wb") as log, running(argv, log) as server:
            try:
                wait_ready(server, port)
                run_wrk(args.wrk, port, duration=5, extra=extra, **wrk)  # steady state first
                base = memory(port, "baseline")
                base_rss = server.memory_kib()["rss_kib"]
                print(f"{args.server} {' '.join(argv[1:])}; wrk -c{args.connections} {args.path}")
                print(f"start: traced {base['traced_kib']:,.0f} KiB, RSS {base_rss:,} KiB")
                samples = []
                requests = 0
                for i in range(1, args.samples + 1):
                    result, _ = run_wrk(args.wrk, port, duration=stretch, extra=extra, **wrk)
                    if i > 1:  # the growth is measured from the first reading
                        requests += result["requests"]
                    now = memory(port)
                    rss = server.memory_kib()["rss_kib"]
                    samples.append((now["traced_kib"], rss))
                    print(
                        f"  {i * stretch:>4} s  {result['rate']:>8,.0f} req/s  errors "
                        f"{result['errors']}  traced {now['traced_kib']:>8,.0f} KiB"
                        f"  RSS {rss:>8,} KiB"
                    )
                end = memory(port, "")
            finally:
                output = log_path.read_bytes().decode(errors="replace").strip()
                if output:
                    print("server output:", output[-1500:], file=sys.stderr)

    end_rss = samples[-1][1]
    print(
        f"end:   traced {end['traced_kib']:,.0f} KiB, RSS {end_rss:,} KiB "
        f"({requests:,} requests after the first reading)"
    )
    print("top growth since the start (tracemalloc, by line):")
    for stat in end.get("top_growth", [])[:10]:
        size, count = stat["size_diff"] / 1024, stat["count_diff"]
        print(f"  {size:+9.1f} KiB {count:+7} blocks  {stat['where']}")
    growth = samples[-1][0] - samples[0][0]
    print(
        f"traced memory from the first reading to the last: {growth:+,.0f} KiB "
        f"({growth * 1024 / max(1, requests):+.3f} B per request); "
        f"since the start {end['traced_kib'] - base['traced_kib']:+,.0f} KiB; "
        f"RSS {end_rss - base_rss:+,} KiB"
    )
    grows = growth > args.threshold
    print("verdict:", "GROWS" if grows else f"stable (within {args.threshold:g} KiB)")
    return 1 if grows else 0


if __name__ == "__main__":
    sys.exit(main())
