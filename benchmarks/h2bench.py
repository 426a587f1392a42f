"""HTTP/2 under load: ketch against Hypercorn and Granian, with h2load, interleaved.

    hatch run python benchmarks/h2bench.py                   # 3 rounds of 10 s (~6 min)
    hatch run python benchmarks/h2bench.py --rounds 1 --duration 3 --http1-rounds 0

For each transport (cleartext with prior knowledge, TLS with ALPN h2) and each
round, every server is started on a free port, warmed up, loaded by h2load
(`-c 64 -m 10` for `--duration` seconds: 64 connections with 10 streams each
in flight) and stopped, in turn, so that the machine's slow phases hit all of
them alike. Per run: requests per second, the server's CPU time per request
(its process group's, from /proc), p50 and p99 latency (from h2load's
per-request log). The summary gives medians and the median of the per-round
ratios to Hypercorn.

Then HTTP/1.1 with wrk against ketch with and without `--http2`: keep-alive
connections (the requests cost the same) and one connection per request (the
version choice is made per connection).

Results: benchmarks/results/http2.json and http2.md, which `hatch run
docs-sync` copies into docs/http2.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import (
    BENCH_DIR,
    BIN_DIR,
    HOST,
    ServerProcess,
    free_port,
    run_wrk,
    wait_until,
)

RESULTS = BENCH_DIR / "results"
Record = dict[str, Any]

_PORT = ("--host", "{host}", "--port", "{port}")
SERVERS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # name: (command, TLS options)
    "ketch": (
        ("ketch", "apps:hello", "--http2", *_PORT, "--no-access-log", "--log-level", "warning"),
        ("--ssl-certfile", "{cert}", "--ssl-keyfile", "{key}"),
    ),
    "hypercorn": (
        ("hypercorn", "apps:hello", "--bind", "{host}:{port}", "-k", "uvloop"),
        ("--certfile", "{cert}", "--keyfile", "{key}"),
    ),
    "granian": (
        (
            "granian",
            "--interface",
            "asgi",
            "--http",
            "2",
            *_PORT,
            "--workers",
            "1",
            "--runtime-threads",
            "1",
            "--no-access-log",
            "--log-level",
            "warning",
            "apps:hello",
        ),
        ("--ssl-certificate", "{cert}", "--ssl-keyfile", "{key}"),
    ),
}
BASELINE = "hypercorn"


def say(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)


def argv_for(name: str, port: int, tls: bool, cert: Path, key: Path) -> list[str]:
    command, tls_options = SERVERS[name]
    words = [*command, *(tls_options if tls else ())]
    values = {"host": HOST, "port": str(port), "cert": str(cert), "key": str(key)}
    argv = [word.format(**values) for word in words]
    argv[0] = str(BIN_DIR / argv[0])
    return argv


def h2load(
    port: int, tls: bool, args: list[str], log: Path | None = None
) -> tuple[str, subprocess.CompletedProcess[str]]:
    url = f"{'https' if tls else 'http'}://{HOST}:{port}/"
    argv = [shutil.which("h2load") or "h2load", *args]
    if log is not None:
        argv += ["--log-file", str(log)]
    argv.append(url)
    return url, subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)


def ready(port: int, tls: bool) -> bool:
    _, proc = h2load(port, tls, ["-n", "20", "-c", "1"])
    return "20 succeeded" in proc.stdout


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def run_h2(name: str, tls: bool, args: argparse.Namespace, cert: Path, key: Path) -> Record:
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "server.log"
        with log.open("wb") as output:
            server = ServerProcess(argv_for(name, port, tls, cert, key), output)
            try:
                if not wait_until(lambda: ready(port, tls), 30, 0.2):
                    raise RuntimeError(f"{name} did not serve HTTP/2:\n{log.read_text()[-2000:]}")
                h2load(port, tls, ["-n", "5000", "-c", "8", "-m", "10"])  # warm-up
                requests_log = Path(tmp) / "requests.tsv"
                cpu = server.cpu_seconds()
                load = ["-c", str(args.connections), "-m", str(args.streams)]
                _, proc = h2load(port, tls, [*load, "-D", str(args.duration)], requests_log)
                cpu = server.cpu_seconds() - cpu
            finally:
                server.stop()
        out = proc.stdout
        match = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded", out)
        if match is None:
            raise RuntimeError(f"h2load against {name}: {out[-1500:]} {proc.stderr[-500:]}")
        succeeded = int(match.group(3))
        latencies = [
            int(line.split("\t")[2]) / 1000.0
            for line in requests_log.read_text().splitlines()
            if line.count("\t") >= 2 and line.split("\t")[1] == "200"
        ]
    return {
        "server": name,
        "tls": tls,
        "rate": succeeded / args.duration,
        "failed": int(match.group(1)) - succeeded,
        "cpu_us": cpu / succeeded * 1e6 if succeeded else float("nan"),
        "p50_ms": percentile(latencies, 0.50) if latencies else float("nan"),
        "p99_ms": percentile(latencies, 0.99) if latencies else float("nan"),
    }


def run_http1(http2: bool, close: bool, args: argparse.Namespace) -> Record:
    port = free_port()
    argv = [str(BIN_DIR / "ketch"), "apps:hello", "--host", HOST, "--port", str(port)]
    argv += ["--no-access-log", "--log-level", "warning", *(["--http2"] if http2 else [])]
    wrk = shutil.which("wrk") or "wrk"
    with open(os.devnull, "wb") as output:
        server = ServerProcess(argv, output)
        try:
            if not wait_until(lambda: ready(port, False) if http2 else _http1_ready(port), 30, 0.2):
                raise RuntimeError("ketch did not start")
            extra = ["-H", "Connection: close"] if close else []
            run_wrk(wrk, port, duration=1, connections=args.connections, extra=extra)
            cpu = server.cpu_seconds()
            result, _ = run_wrk(
                wrk, port, duration=args.duration, connections=args.connections, extra=extra
            )
            cpu = server.cpu_seconds() - cpu
        finally:
            server.stop()
    requests = result["requests"] or 1
    return {
        "http2": http2,
        "close": close,
        "rate": result["rate"],
        "cpu_us": cpu / requests * 1e6,
        "p99_ms": result["p99_ms"],
        "errors": result["errors"],
    }


def _http1_ready(port: int) -> bool:
    import http.client

    try:
        conn = http.client.HTTPConnection(HOST, port, timeout=2)
        conn.request("GET", "/")
        return conn.getresponse().status == 200
    except OSError:
        return False


def summarize_h2(runs: list[Record]) -> list[Record]:
    rows = []
    for tls in (False, True):
        for name in SERVERS:
            mine = [r for r in runs if r["server"] == name and r["tls"] == tls]
            if not mine:
                continue
            base = [r for r in runs if r["server"] == BASELINE and r["tls"] == tls]
            ratios = [m["rate"] / b["rate"] for m, b in zip(mine, base, strict=False) if b["rate"]]
            rows.append(
                {
                    "server": name,
                    "tls": tls,
                    "rate": statistics.median(r["rate"] for r in mine),
                    "cpu_us": statistics.median(r["cpu_us"] for r in mine),
                    "p50_ms": statistics.median(r["p50_ms"] for r in mine),
                    "p99_ms": statistics.median(r["p99_ms"] for r in mine),
                    "failed": sum(r["failed"] for r in mine),
                    "ratio": statistics.median(ratios) if ratios else float("nan"),
                    "rounds": len(mine),
                }
            )
    return rows


def summarize_http1(runs: list[Record]) -> list[Record]:
    rows = []
    for close in (False, True):
        for http2 in (False, True):
            mine = [r for r in runs if r["http2"] == http2 and r["close"] == close]
            if mine:
                rows.append(
                    {
                        "http2": http2,
                        "close": close,
                        "rate": statistics.median(r["rate"] for r in mine),
                        "cpu_us": statistics.median(r["cpu_us"] for r in mine),
                        "p99_ms": statistics.median(r["p99_ms"] for r in mine),
                        "errors": sum(r["errors"] for r in mine),
                        "rounds": len(mine),
                    }
                )
    return rows


def markdown(results: Record) -> str:
    args = results["args"]
    lines = [
        f"HTTP/2, `h2load -c {args['connections']} -m {args['streams']} -D {args['duration']}` "
        f"on `apps:hello`, {results['machine']}, median of {args['rounds']} interleaved rounds:",
        "",
        "| server | transport | requests/s | ratio to Hypercorn | server CPU µs/request "
        "| p50 ms | p99 ms | failed |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in results["http2"]:
        lines.append(
            f"| {row['server']} | {'TLS (ALPN h2)' if row['tls'] else 'cleartext (h2c)'} "
            f"| {row['rate']:,.0f} | {row['ratio']:.2f} | {row['cpu_us']:.0f} "
            f"| {row['p50_ms']:.1f} | {row['p99_ms']:.1f} | {row['failed']} |"
        )
    if results["http1"]:
        lines += [
            "",
            f"HTTP/1.1 against ketch with and without `--http2`, `wrk -c {args['connections']}` "
            f"for {args['duration']} s, median of {args['http1_rounds']} interleaved rounds:",
            "",
            "| connections | ketch | requests/s | server CPU µs/request | p99 ms | errors |",
            "|---|---|---:|---:|---:|---:|",
        ]
        for row in results["http1"]:
            lines.append(
                f"| {'one per request' if row['close'] else 'keep-alive'} "
                f"| {'--http2' if row['http2'] else 'without --http2'} | {row['rate']:,.0f} "
                f"| {row['cpu_us']:.0f} | {row['p99_ms']:.1f} | {row['errors']} |"
            )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--http1-rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10, help="seconds of load per run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--streams", type=int, default=10, help="h2load -m")
    parser.add_argument("--servers", default=",".join(SERVERS))
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    names = [name for name in args.servers.split(",") if name]
    import trustme

    with tempfile.TemporaryDirectory() as tmp:
        cert, key = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
        leaf = trustme.CA().issue_cert(HOST, "localhost")
        leaf.cert_chain_pems[0].write_to_path(str(cert))
        leaf.private_key_pem.write_to_path(str(key))
        runs = []
        for round_number in range(args.rounds):
            for tls in (False, True):
                for name in names:
                    record = run_h2(name, tls, args, cert, key)
                    say(f"round {round_number + 1} {name} {'tls' if tls else 'h2c'}: {record}")
                    runs.append(record)
        http1_runs = []
        for round_number in range(args.http1_rounds):
            for close in (False, True):
                for http2 in (False, True):
                    record = run_http1(http2, close, args)
                    say(f"round {round_number + 1} http/1.1: {record}")
                    http1_runs.append(record)
    results: Record = {
        "args": vars(args),
        "machine": f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}",
        "date": time.strftime("%Y-%m-%d"),
        "runs": runs,
        "http2": summarize_h2(runs),
        "http1_runs": http1_runs,
        "http1": summarize_http1(http1_runs),
    }
    text = markdown(results)
    print(text)
    if not args.no_write:
        (RESULTS / "http2.json").write_text(json.dumps(results, indent=2) + "\n")
        (RESULTS / "http2.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
