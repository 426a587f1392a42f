"""WebSocket floods against ketch and Uvicorn, each with both libraries: how much
memory the server takes while it runs.

    hatch run python benchmarks/ws_floods.py [--flood ping|bomb] [--server NAME ...]

- `ping`: a client sends `--megabytes` of ping frames as fast as the server reads
  them and reads nothing, so every pong the server writes waits in its buffers.
- `bomb`: a client negotiates permessage-deflate and sends one binary frame of
  about 200 KB that inflates to `--megabytes` MB of zeros.

For each server: its RSS before the flood, its peak RSS (VmHWM) and its RSS at
the end, from /proc, and what the client saw. Every server runs on 127.0.0.1 in
its own process group and is stopped at the end.
"""

from __future__ import annotations

import argparse
import os
import select
import socket
import struct
import sys
import time
import zlib
from pathlib import Path

from common import ServerProcess, free_port, read_head, wait_ready
from wsclient import handshake_request, masked_frame

BIN = Path(sys.executable).parent
COMMON = "apps:ws_echo --port {port} --log-level warning --no-access-log"
SERVERS = {
    "ketch websockets": f"{BIN}/ketch {COMMON} --ws websockets",
    "ketch wsproto": f"{BIN}/ketch {COMMON} --ws wsproto",
    "uvicorn websockets": f"{BIN}/uvicorn {COMMON} --ws websockets",
    "uvicorn websockets-sansio": f"{BIN}/uvicorn {COMMON} --ws websockets-sansio",
    "uvicorn wsproto": f"{BIN}/uvicorn {COMMON} --ws wsproto",
}
MiB = 1024 * 1024


def status_mib(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise LookupError(field)


def connect(port: int, extensions: str = "") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)  # reads nothing anyway
    request = handshake_request(port)
    if extensions:
        request = request[:-2] + b"Sec-WebSocket-Extensions: %s\r\n\r\n" % extensions.encode()
    sock.sendall(request)
    head = read_head(sock)
    if not head.startswith(b"HTTP/1.1 101"):
        raise ConnectionError(head.decode("latin-1"))
    return sock


def ping_flood(port: int, megabytes: int, stall: float) -> str:
    """Send pings until `megabytes` went out or the server read nothing for `stall` s."""
    sock = connect(port)
    chunk = masked_frame(b"p" * 125, first=0x89) * 2000  # final pings, 262 KB
    total = megabytes * MiB
    sent = 0
    sock.setblocking(False)
    try:
        while sent < total:
            _, writable, _ = select.select([], [sock], [], stall)
            if not writable:
                return f"server stopped reading after {sent / MiB:.1f} MiB"
            try:
                sent += sock.send(chunk)
            except OSError as exc:
                return f"{type(exc).__name__} after {sent / MiB:.1f} MiB"
        return f"all {sent / MiB:.0f} MiB sent"
    finally:
        sock.close()


def bomb(port: int, megabytes: int) -> str:
    """One compressed frame that inflates to `megabytes` MB; the server's answer."""
    sock = connect(port, "permessage-deflate; client_max_window_bits")
    compressor = zlib.compressobj(9, zlib.DEFLATED, -12)
    block = bytes(MiB)
    payload = b"".join(compressor.compress(block) for _ in range(megabytes))
    payload += compressor.flush(zlib.Z_SYNC_FLUSH)
    payload = payload[:-4]  # RFC 7692 7.2.1: without the empty block's tail
    data = masked_frame(payload, first=0xC2)  # final, RSV1 (compressed), binary
    sock.settimeout(30)
    try:
        sock.sendall(data)
        buffer = b""
        while True:  # the server's first frame: its close frame, or the echo
            chunk = sock.recv(65536)
            if not chunk:
                return f"closed without a close frame ({len(payload) // 1024} KB sent)"
            buffer += chunk
            if len(buffer) >= 4:
                if buffer[0] & 0x0F != 0x8:  # not a close frame: the echo
                    return f"accepted ({len(payload) // 1024} KB sent)"
                (code,) = struct.unpack("!H", buffer[2:4])
                return f"close {code} ({len(payload) // 1024} KB sent)"
    except OSError as exc:
        return f"{type(exc).__name__} ({len(payload) // 1024} KB sent)"
    finally:
        sock.close()


def measure(name: str, command: str, flood: str, megabytes: int, stall: float) -> None:
    port = free_port()
    server = ServerProcess(command.format(port=port).split(), os.open(os.devnull, os.O_WRONLY))
    try:
        wait_ready(server, port)
        pid = server.proc.pid
        connect(port).close()  # warm the WebSocket path up
        time.sleep(0.3)
        before = status_mib(pid, "VmRSS")
        start = time.monotonic()
        outcome = ping_flood(port, megabytes, stall) if flood == "ping" else bomb(port, megabytes)
        seconds = time.monotonic() - start
        peak = status_mib(pid, "VmHWM")
        after = status_mib(pid, "VmRSS")
    finally:
        server.stop()
    print(
        f"| {name} | {flood} {megabytes} MB | {before:.0f} | {peak:.0f} | +{peak - before:.0f} "
        f"| {after:.0f} | {outcome}, {seconds:.1f} s |",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flood", choices=("ping", "bomb"), action="append")
    parser.add_argument("--server", action="append", help="a name from SERVERS, or NAME=COMMAND")
    parser.add_argument("--megabytes", type=int, help="default: 150 (ping), 200 (bomb)")
    parser.add_argument(
        "--stall", type=float, default=30.0, help="ping: stop when the server reads nothing for (s)"
    )
    args = parser.parse_args()
    servers = dict(SERVERS)
    if args.server:
        servers = {}
        for item in args.server:
            name, _, command = item.partition("=")
            servers[name] = command or SERVERS[name]
    print("| server | flood | RSS before MiB | peak MiB | growth | RSS after | client saw |")
    print("|---|---|---|---|---|---|---|")
    for flood in args.flood or ["ping", "bomb"]:
        megabytes = args.megabytes or (150 if flood == "ping" else 200)
        for name, command in servers.items():
            measure(name, command, flood, megabytes, args.stall)


if __name__ == "__main__":
    main()
