"""ketch against Uvicorn, Granian and Hypercorn, interleaved, on 127.0.0.1.

    hatch run bench                      # every scenario and server (~12 min)
    hatch run bench --quick              # 1 round of 1 s, ketch and Uvicorn only
    hatch run bench --scenarios hello,ws --servers uvicorn,ketch --rounds 5
    hatch run bench-chart                # redraw docs/img/benchmarks.png from the JSON

For each scenario, every server is started on a free port, probed, warmed up,
loaded (wrk, or the raw WebSocket client of wsclient.py), and stopped, in rounds
A B C A B C ... so that the machine's slow phases hit all of them alike. The
summary gives medians, the paired ratio to the Uvicorn with the same parser and
loop (the median of per-round ratios), p50/p99 latency, the server's CPU time
per request and the errors. Results go to benchmarks/results/latest.json, the
chart to docs/img/benchmarks.png. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import select
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from common import (
    BENCH_DIR,
    BIN_DIR,
    HOST,
    ServerProcess,
    free_port,
    http_request,
    raise_nofile,
    read_head,
    run_wrk,
    running,
    wait_ready,
    write_lua,
)
from wsclient import handshake_request, masked_frame

REPO_DIR = BENCH_DIR.parent
RESULTS = BENCH_DIR / "results" / "latest.json"
CHART = REPO_DIR / "docs" / "img" / "benchmarks.png"
Record = dict[str, Any]


@dataclass(frozen=True)
class Scenario:
    app: str
    kind: str  # "wrk", "ws" (echo load) or "idle" (memory per open connection)
    body_size: int = 0  # POSTed and echoed (wrk)


SCENARIOS = {
    "hello": Scenario("apps:hello", "wrk"),
    "json": Scenario("apps:json", "wrk"),
    "echo-1k": Scenario("apps:echo", "wrk", 1024),
    "echo-64k": Scenario("apps:echo", "wrk", 65536),
    "stream": Scenario("apps:stream", "wrk"),
    "ws": Scenario("apps:ws_echo", "ws"),
    "idle": Scenario("apps:ws_echo", "idle"),
}


@dataclass(frozen=True)
class ServerDef:
    label: str
    argv: tuple[str, ...]  # {app} {host} {port} are filled in per run
    baseline: str  # the Uvicorn it is compared with (the same parser and loop)


_QUIET = ("--no-access-log", "--log-level", "warning")
_FAST = ("--http", "httptools", "--loop", "uvloop")
_H11 = ("--http", "h11", "--loop", "asyncio")
_PORT = ("--host", "{host}", "--port", "{port}")
# Uvicorn's fastest binding of the websockets library, the same library as ketch's.
_UVICORN = ("uvicorn", "{app}", *_PORT, "--ws", "websockets-sansio", *_QUIET)
_KETCH = ("ketch", "{app}", *_PORT, "--ws", "websockets", *_QUIET)
SERVERS = {
    "uvicorn": ServerDef("Uvicorn httptools+uvloop", (*_UVICORN, *_FAST), "uvicorn"),
    "ketch": ServerDef("ketch httptools+uvloop", (*_KETCH, *_FAST), "uvicorn"),
    "uvicorn-h11": ServerDef("Uvicorn h11+asyncio", (*_UVICORN, *_H11), "uvicorn-h11"),
    "ketch-h11": ServerDef("ketch h11+asyncio", (*_KETCH, *_H11), "uvicorn-h11"),
    "granian": ServerDef(
        "Granian ASGI, 1 worker",
        (
            "granian",
            "--interface",
            "asgi",
            *_PORT,
            "--workers",
            "1",
            "--runtime-threads",
            "1",
            "--no-access-log",
            "--log-level",
            "warning",
            "{app}",
        ),
        "uvicorn",
    ),
    "hypercorn": ServerDef(
        "Hypercorn uvloop",
        ("hypercorn", "{app}", "--bind", "{host}:{port}", "-k", "uvloop", "--log-level", "warning"),
        "uvicorn",
    ),
}
DEFAULT_SERVERS = list(SERVERS)
QUICK_SERVERS = ["uvicorn", "ketch"]
# on request only (--servers): the other WebSocket library, for --scenarios ws
SERVERS["uvicorn-wsproto"] = ServerDef(
    "Uvicorn httptools+uvloop, wsproto",
    ("uvicorn", "{app}", *_PORT, "--ws", "wsproto", *_QUIET, *_FAST),
    "uvicorn-wsproto",
)
SERVERS["ketch-wsproto"] = ServerDef(
    "ketch httptools+uvloop, wsproto",
    ("ketch", "{app}", *_PORT, "--ws", "wsproto", *_QUIET, *_FAST),
    "uvicorn-wsproto",
)


def say(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)


def server_argv(name: str, app: str, port: int) -> list[str]:
    argv = [part.format(app=app, host=HOST, port=port) for part in SERVERS[name].argv]
    program = BIN_DIR / argv[0]  # the servers of this environment first
    argv[0] = str(program) if program.exists() else (shutil.which(argv[0]) or argv[0])
    return argv


# --- one run -------------------------------------------------------------------------------
def load_wrk(
    args: argparse.Namespace, scenario: Scenario, server: ServerProcess, port: int
) -> Record:
    lua = write_lua(args.tmp, scenario.body_size) if scenario.body_size else None
    if lua is not None:  # the body must come back whole, or the numbers mean nothing
        body = b"k" * scenario.body_size
        status, data = http_request(port, "POST", "/", body)
        if status != 200 or data != body:
            raise RuntimeError(f"echo probe: status {status}, {len(data)} of {len(body)} bytes")
    wrk = {"connections": args.connections, "lua": lua}
    if args.warmup:
        run_wrk(args.wrk, port, duration=args.warmup, **wrk)
    cpu0, t0 = server.cpu_seconds(), time.monotonic()
    result, raw = run_wrk(args.wrk, port, duration=args.duration, **wrk)
    result["cpu_s"] = server.cpu_seconds() - cpu0
    result["wall_s"] = time.monotonic() - t0
    result["wrk_output"] = raw
    return result


def load_ws(args: argparse.Namespace, server: ServerProcess, port: int) -> Record:
    argv = [sys.executable, str(BENCH_DIR / "wsclient.py"), "--port", str(port)]
    argv += ["--conns", str(args.ws_connections), "--size", str(args.ws_size)]
    argv += ["--duration", str(args.duration), "--warmup", str(args.warmup)]
    client = ServerProcess(argv, subprocess.PIPE)
    try:
        stdout = client.proc.stdout
        assert stdout is not None
        # the client says `start` once its connections are open and warm
        ready, _, _ = select.select([stdout], [], [], 30 + args.warmup)
        line = stdout.readline() if ready else b""
        if line.strip() != b"start":
            raise RuntimeError(f"websocket client did not start: {line[-300:]!r}")
        cpu0, t0 = server.cpu_seconds(), time.monotonic()
        out, _ = client.proc.communicate(timeout=args.duration + 30)
        cpu = server.cpu_seconds() - cpu0
        if client.proc.returncode != 0:
            raise RuntimeError(f"websocket client failed: {out[-300:]!r}")
        result: Record = json.loads(out.decode().strip().splitlines()[-1])
        result["cpu_s"], result["wall_s"] = cpu, time.monotonic() - t0
        return result
    finally:
        client.stop()


def _read_http_response(sock: socket.socket) -> None:
    head, _, body = read_head(sock).partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed in the body")
        body += chunk


def _open_idle(port: int, websocket: bool) -> socket.socket:
    """A connection that made one request (or WebSocket handshake and one echo),
    left open and idle."""
    sock = socket.create_connection((HOST, port), timeout=5)
    try:
        if websocket:
            sock.sendall(handshake_request(port))
            data = read_head(sock)
            if not data.startswith(b"HTTP/1.1 101"):
                raise ConnectionError(f"handshake refused: {data[:40]!r}")
            sock.sendall(masked_frame(b"m" * 32))
            need = len(data.partition(b"\r\n\r\n")[2])
            while need < 2 + 32:
                chunk = sock.recv(4096)
                if not chunk:
                    raise ConnectionError("closed before the echo")
                need += len(chunk)
        else:
            sock.sendall(f"GET / HTTP/1.1\r\nHost: {HOST}:{port}\r\n\r\n".encode())
            _read_http_response(sock)
    except BaseException:
        sock.close()
        raise
    return sock


def _still_open(sock: socket.socket) -> bool:
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return True
    try:
        return sock.recv(1, socket.MSG_PEEK) != b""
    except OSError:
        return False


def measure_idle(n: int, server: ServerProcess, port: int, websocket: bool) -> Record:
    """The server's memory growth per idle connection: opened one after the other
    (about 1 ms each), measured once all are open."""
    for sock in [_open_idle(port, websocket) for _ in range(20)]:  # first-use costs
        sock.close()
    before = server.memory_kib()
    socks: list[socket.socket] = []
    try:
        t0 = time.monotonic()
        for _ in range(n):
            socks.append(_open_idle(port, websocket))
        after = server.memory_kib()
        alive = sum(_still_open(sock) for sock in socks)
        opened_s = time.monotonic() - t0
    finally:
        for sock in socks:
            sock.close()
    return {
        "connections": n,
        "alive": alive,
        "open_s": round(opened_s, 2),
        "rss_before_kib": before["rss_kib"],
        "rss_after_kib": after["rss_kib"],
        "pss_before_kib": before["pss_kib"],
        "pss_after_kib": after["pss_kib"],
        "rss_kib_per_conn": (after["rss_kib"] - before["rss_kib"]) / n,
        "pss_kib_per_conn": (after["pss_kib"] - before["pss_kib"]) / n,
    }


def run_one(args: argparse.Namespace, scenario_name: str, name: str, rnd: int) -> Record:
    scenario = SCENARIOS[scenario_name]
    record: Record = {"server": name, "round": rnd, "ok": False}
    # memory needs a fresh server for each kind of connection
    parts = [("http", False), ("ws", True)] if scenario.kind == "idle" else [("", False)]
    for part, websocket in parts:
        port = free_port()
        argv = server_argv(name, scenario.app, port)
        log_path = args.tmp / f"{scenario_name}-{name}-{rnd}{part}.log"
        with open(log_path, "wb") as log, running(argv, log) as server:
            try:
                wait_ready(server, port)
                if scenario.kind == "wrk":
                    record.update(load_wrk(args, scenario, server, port))
                elif scenario.kind == "ws":
                    record.update(load_ws(args, server, port))
                else:
                    idle = measure_idle(args.idle_connections, server, port, websocket)
                    record[part] = idle
                if "rate" in record:
                    record.update(server.memory_kib())
            except (OSError, RuntimeError, ValueError, subprocess.SubprocessError) as exc:
                record["error"] = f"{type(exc).__name__}: {exc}"
                tail = log_path.read_bytes()[-600:].decode(errors="replace")
                say(f"  {name} failed: {record['error']}\n  server output: {tail}")
                return record
    if "rate" in record:
        record["cpu_us_per_req"] = 1e6 * record["cpu_s"] / max(1, record["requests"])
        record["cpu_pct"] = 100 * record["cpu_s"] / record["wall_s"]
        record["ok"] = record["requests"] > 0
    else:
        record["ok"] = True
    return record


def describe(record: Record) -> str:
    if not record["ok"]:
        return "FAILED"
    if "rate" in record:
        return (
            f"{record['rate']:>10,.0f}/s  p50 {record['p50_ms']:.2f} ms"
            f"  p99 {record['p99_ms']:.2f} ms"
            f"  cpu {record['cpu_pct']:.0f}% {record['cpu_us_per_req']:.1f} us/req"
            f"  errors {record['errors']}"
        )
    http, ws = record["http"], record["ws"]
    return (
        f"HTTP {http['rss_kib_per_conn']:.1f} KiB/conn ({http['alive']} alive), "
        f"WebSocket {ws['rss_kib_per_conn']:.1f} KiB/conn ({ws['alive']} alive)"
    )


# --- summary -------------------------------------------------------------------------------
def _median(values: list[float]) -> float:
    values = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.median(values) if values else math.nan


def summarize(runs: list[Record], servers: list[str]) -> dict[str, Record]:
    ok = [r for r in runs if r["ok"]]
    by_round = {(r["server"], r["round"]): r for r in ok}
    summary: dict[str, Record] = {}
    for name in servers:
        mine = [r for r in ok if r["server"] == name]
        failed = sum(r["server"] == name for r in runs) - len(mine)
        row: Record = {"runs": len(mine), "failed": failed}
        if mine and "rate" in mine[0]:
            rates = [r["rate"] for r in mine]
            row.update(
                rate=_median(rates),
                min_rate=min(rates),
                max_rate=max(rates),
                p50_ms=_median([r["p50_ms"] for r in mine]),
                p99_ms=_median([r["p99_ms"] for r in mine]),
                cpu_us_per_req=_median([r["cpu_us_per_req"] for r in mine]),
                cpu_pct=_median([r["cpu_pct"] for r in mine]),
                rss_mib=_median([r["rss_kib"] / 1024 for r in mine]),
                errors=sum(r["errors"] for r in mine),
            )
            baseline = SERVERS[name].baseline
            base = [r for r in ok if r["server"] == baseline]
            row["baseline"] = baseline if base else None
            pairs = [(r, by_round.get((baseline, r["round"]))) for r in mine]
            row["ratio"] = row["rate"] / _median([r["rate"] for r in base]) if base else math.nan
            row["paired_ratio"] = _median([r["rate"] / b["rate"] for r, b in pairs if b])
            # > 1: cheaper per request than its Uvicorn (noise cuts req/s, hardly CPU/req)
            row["cpu_ratio"] = _median(
                [b["cpu_us_per_req"] / r["cpu_us_per_req"] for r, b in pairs if b]
            )
        elif mine:
            for part in ("http", "ws"):
                for key in ("rss_kib_per_conn", "pss_kib_per_conn", "alive", "rss_before_kib"):
                    row[f"{part}_{key}"] = _median([r[part][key] for r in mine])
        summary[name] = row
    return summary


def _f(value: float | None, digits: int = 0, suffix: str = "") -> str:
    if value is None or math.isnan(value):
        return "-"
    return f"{value:,.{digits}f}{suffix}"


def _idle_cells(row: dict[str, Any]) -> list[str]:
    return [
        f"{_f(row['http_rss_kib_per_conn'], 1)} / {_f(row['http_pss_kib_per_conn'], 1)}",
        f"{_f(row['ws_rss_kib_per_conn'], 1)} / {_f(row['ws_pss_kib_per_conn'], 1)}",
        f"{_f(row['http_alive'])} / {_f(row['ws_alive'])}",
        _f(row["http_rss_before_kib"], 0),
    ]


def _load_cells(row: dict[str, Any]) -> list[str]:
    return [
        _f(row["rate"]),
        f"{_f(row['min_rate'])}..{_f(row['max_rate'])}",
        f"{_f(row['ratio'], 2, 'x')} ({_f(row['paired_ratio'], 2, 'x')})",
        _f(row["p50_ms"], 2),
        _f(row["p99_ms"], 2),
        _f(row["cpu_us_per_req"], 1),
        _f(row["cpu_ratio"], 2, "x"),
        _f(row["cpu_pct"]),
        str(row["errors"]),
    ]


def markdown_tables(results: Record) -> str:
    """The summary as Markdown tables: readable in a terminal, pasted into the docs."""
    lines: list[str] = []
    for scenario, data in results["scenarios"].items():
        kind = SCENARIOS[scenario].kind
        if kind == "idle":
            columns = [
                "HTTP keep-alive KiB/conn (RSS / PSS)",
                "WebSocket KiB/conn (RSS / PSS)",
                "still open (HTTP / WS)",
                "RSS before, KiB",
            ]
            cells = _idle_cells
        else:
            unit = "msg/s" if kind == "ws" else "req/s"
            columns = [
                f"{unit} (median)", "min..max", "vs Uvicorn (paired)", "p50 ms", "p99 ms",
                "CPU µs/req", "CPU ratio", "server CPU %", "errors",
            ]  # fmt: skip
            cells = _load_cells
        lines += [f"**{scenario}** ({data['description']})", ""]
        lines.append("| server | " + " | ".join(columns) + " |")
        lines.append("|---" * (len(columns) + 1) + "|")
        for name, row in data["summary"].items():
            row_cells = cells(row) if row["runs"] else ["failed"] + [""] * (len(columns) - 1)
            lines.append(f"| {name} | " + " | ".join(row_cells) + " |")
        lines.append("")
    return "\n".join(lines)


# --- results -------------------------------------------------------------------------------
def _version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return "?"
    return (out.stdout or out.stderr).strip().splitlines()[0] if out.stdout or out.stderr else "?"


def machine_info(args: argparse.Namespace) -> Record:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions: dict[str, str | None] = {}
    for dist in ("ketch-core", "uvicorn", "granian", "hypercorn", "httptools", "uvloop", "h11"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    versions["websockets"] = metadata.version("websockets")
    versions["wrk"] = _version([args.wrk, "-v"]) if args.wrk else None
    commit = _version(["git", "-C", str(REPO_DIR), "rev-parse", "--short", "HEAD"])
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
        "git_commit": commit,
    }


def _clean(value: Any) -> Any:
    """NaN is not JSON: None instead."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


DESCRIPTIONS = {
    "hello": "GET / -> 13-byte text/plain",
    "json": "GET / -> small JSON",
    "echo-1k": "POST of 1 KiB, echoed",
    "echo-64k": "POST of 64 KiB, echoed",
    "stream": "GET / -> chunked, 16 x 1 KiB",
    "ws": "WebSocket echo of {ws_size} B messages over {ws_connections} connections",
    "idle": "memory per idle connection, {idle_connections} open",
}


def results_markdown(results: Record) -> str:
    """Where, when and how, then the tables: docs/benchmarks.md includes this file."""
    machine = results["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items() if v and k != "wrk")
    settings = results["settings"]
    head = (
        f"Measured {results['date'][:16].replace('T', ' ')} UTC on {machine['cpu_model']}, "
        f"{machine['cpus']} CPUs ({machine['platform']}), Python {machine['python']}, "
        f"at commit `{machine['git_commit']}`, with `{results['command'].strip()}`: "
        f"{settings['rounds']} interleaved round(s) of {settings['duration']} s per server "
        f"after {settings['warmup']:g} s of warm-up, in {results['elapsed_s'] / 60:.0f} min. "
        f"Versions: {versions}; {machine['versions'].get('wrk') or 'no wrk'}."
    )
    if not results["complete"]:
        head += " **The run was stopped early.**"
    return head + "\n\n" + markdown_tables(results)


def write_results(path: Path, results: Record) -> None:
    """The JSON, and beside it the same summary as Markdown (`.md`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(_clean(results), indent=1) + "\n")
    tmp.replace(path)
    path.with_suffix(".md").write_text(results_markdown(results))


# --- main ----------------------------------------------------------------------------------
def _names(text: str, known: dict[str, Any]) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown {unknown}; choose from {', '.join(known)}")
    return names


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--quick", action="store_true", help="smoke run: 1 round of 1 s, ketch and Uvicorn")
    add("--scenarios", type=lambda t: _names(t, SCENARIOS), help="comma-separated (default: all)")
    add(
        "--servers",
        type=lambda t: _names(t, SERVERS),
        help=f"comma-separated (default: {','.join(DEFAULT_SERVERS)}; also: uvicorn-wsproto, "
        "ketch-wsproto)",
    )
    add("--rounds", type=int, help="rounds of A B C ... (default 3; quick 1)")
    add("-d", "--duration", type=int, help="measured seconds per run (default 4; quick 1)")
    add("--warmup", type=float, help="unmeasured load before each run, s (default 1; quick 0.5)")
    add("-c", "--connections", type=int, default=64, help="wrk connections (default 64)")
    add("--ws-connections", type=int, default=64, help="WebSocket connections (default 64)")
    add("--ws-size", type=int, default=32, help="WebSocket message bytes (default 32)")
    add("--idle-connections", type=int, help="idle connections (default 1000; quick 100)")
    add("--json", type=Path, help=f"results file (default {RESULTS.relative_to(REPO_DIR)})")
    add("--chart", type=Path, help=f"chart file (default {CHART.relative_to(REPO_DIR)})")
    add("--no-chart", action="store_true", help="do not draw the chart")
    add("--chart-only", action="store_true", help="redraw the chart from --json, run nothing")
    add("--max-time", type=float, help="stop starting runs after this many seconds")
    add("--wrk", default=shutil.which("wrk"), help="the wrk binary (default: from PATH)")
    args = parser.parse_args(argv)
    quick = args.quick
    args.scenarios = args.scenarios or list(SCENARIOS)
    args.servers = args.servers or (QUICK_SERVERS if quick else DEFAULT_SERVERS)
    args.rounds = args.rounds or (1 if quick else 3)
    args.duration = args.duration or (1 if quick else 4)
    args.warmup = args.warmup if args.warmup is not None else (0.5 if quick else 1.0)
    args.idle_connections = args.idle_connections or (100 if quick else 1000)
    # a quick run does not overwrite the published results and chart
    args.json = args.json or (RESULTS.with_name("quick.json") if quick else RESULTS)
    args.no_chart = args.no_chart or (quick and args.chart is None)
    # the published chart goes with the published results; any other JSON gets its own
    args.chart = args.chart or (CHART if args.json == RESULTS else args.json.with_suffix(".png"))
    needs_wrk = any(SCENARIOS[s].kind == "wrk" for s in args.scenarios)
    if needs_wrk and not args.chart_only and not args.wrk:
        parser.error("wrk not found on PATH (apt install wrk, or --wrk PATH)")
    return args


def _on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through every `finally`: servers stopped


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.chart_only:
        from chart import draw

        stored = json.loads(args.json.read_text())
        draw(stored, args.chart)
        args.json.with_suffix(".md").write_text(results_markdown(stored))
        say(f"chart: {args.chart}, tables: {args.json.with_suffix('.md')}")
        return 0
    raise_nofile()
    signal.signal(signal.SIGTERM, _on_sigterm)
    per_run = args.duration + args.warmup + 2
    estimate = sum(
        args.rounds * len(args.servers) * (8 if SCENARIOS[s].kind == "idle" else per_run)
        for s in args.scenarios
    )
    max_time = args.max_time or 3 * estimate + 60
    say(
        f"# {len(args.scenarios)} scenarios x {len(args.servers)} servers x {args.rounds} rounds, "
        f"{args.duration} s each: about {estimate / 60:.0f} min (limit {max_time / 60:.0f} min)"
    )
    results: Record = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": f"hatch run bench {shlex.join(sys.argv[1:] if argv is None else argv)}".strip(),
        "machine": machine_info(args),
        "settings": {
            k: getattr(args, k)
            for k in ("rounds", "duration", "warmup", "connections", "ws_connections", "ws_size")
        }
        | {"idle_connections": args.idle_connections, "wrk_threads": 1},
        "servers": {
            name: {
                "label": SERVERS[name].label,
                "argv": list(SERVERS[name].argv),
                "baseline": SERVERS[name].baseline,
            }
            for name in args.servers
        },
        "scenarios": {},
        "complete": False,
    }
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ketch-bench-") as tmp:
        args.tmp = Path(tmp)
        try:
            for scenario in args.scenarios:
                runs: list[Record] = []
                description = DESCRIPTIONS[scenario].format(**vars(args))
                results["scenarios"][scenario] = {"description": description, "runs": runs}
                say(f"## {scenario}: {description}")
                for rnd in range(1, args.rounds + 1):
                    for name in args.servers:
                        if time.monotonic() - started > max_time:
                            raise TimeoutError(f"--max-time {max_time:.0f} s reached")
                        record = run_one(args, scenario, name, rnd)
                        runs.append(record)
                        say(f"round {rnd} {name:<12} {describe(record)}")
                results["scenarios"][scenario]["summary"] = summarize(runs, args.servers)
            results["complete"] = True
        except (KeyboardInterrupt, TimeoutError, SystemExit) as exc:
            say(f"# stopped early: {type(exc).__name__} {exc}")
        finally:
            for data in results["scenarios"].values():
                data.setdefault("summary", summarize(data["runs"], args.servers))
            results["elapsed_s"] = round(time.monotonic() - started)
            write_results(args.json, results)
    print(results_markdown(results))
    print(f"results: {args.json} ({results['elapsed_s']} s)")
    if not args.no_chart:
        from chart import draw

        draw(json.loads(args.json.read_text()), args.chart)
        print(f"chart: {args.chart}")
    if not results["complete"]:
        return 130
    summaries = [row for data in results["scenarios"].values() for row in data["summary"].values()]
    failed = any(row["runs"] == 0 for row in summaries)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
