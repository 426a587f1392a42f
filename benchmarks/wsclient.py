"""A raw WebSocket echo load client (standard library; uvloop when installed).

    python benchmarks/wsclient.py --port 8000 --conns 64 --size 32 --duration 3 --warmup 1

Opens `--conns` WebSockets to ws://127.0.0.1:PORT/ws; each sends one binary message
of `--size` bytes, waits for the echo, sends the next. Frames are built once and
parsed with a few byte operations, so the client costs far less than any server:
the websockets library as a client would be the bottleneck on a 2-core machine.

Prints `start` once every connection is open and the warm-up is over (the
driver samples the server's CPU time then), and at the end one JSON line:
messages, rate, p50/p99 round-trip latency, errors.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import statistics
import sys
import time
from typing import cast

HANDSHAKE = (
    "GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
    "Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
MASK = b"\x37\xfa\x21\x3d"


def masked_frame(payload: bytes, first: int = 0x82) -> bytes:
    """One frame, masked as a client must; `first` is its first byte (FIN, RSV
    bits, opcode): a final binary frame by default."""
    n = len(payload)
    if n < 126:
        head = bytes([first, 0x80 | n])
    elif n < 65536:
        head = bytes([first, 0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([first, 0x80 | 127]) + n.to_bytes(8, "big")
    masked = bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))
    return head + MASK + masked


def handshake_request(port: int) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return HANDSHAKE.format(port=port, key=key).encode()


class Stats:
    def __init__(self) -> None:
        self.measuring = False
        self.messages = 0
        self.latencies: list[float] = []
        self.errors = 0


class EchoProtocol(asyncio.Protocol):
    def __init__(self, port: int, frame: bytes, stats: Stats) -> None:
        self.port = port
        self.frame = frame
        self.stats = stats
        self.buffer = bytearray()
        self.open = asyncio.get_running_loop().create_future()
        self.upgraded = False
        self.sent_at = 0.0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.transport.write(handshake_request(self.port))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.open.done():
            self.open.set_exception(ConnectionError("closed during the handshake"))
        elif self.stats.measuring:
            self.stats.errors += 1

    def send(self) -> None:
        assert self.transport is not None
        self.sent_at = time.perf_counter()
        self.transport.write(self.frame)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        if not self.upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            if not buffer.startswith(b"HTTP/1.1 101"):
                self.open.set_exception(ConnectionError(bytes(buffer[:60]).decode("latin-1")))
                return
            del buffer[: end + 4]
            self.upgraded = True
            self.open.set_result(None)
            self.send()
        while len(buffer) >= 2:  # server frames are unmasked
            length = buffer[1] & 0x7F
            start = 2
            if length == 126:
                start, length = 4, int.from_bytes(buffer[2:4], "big")
            elif length == 127:
                start, length = 10, int.from_bytes(buffer[2:10], "big")
            if len(buffer) < start + length:
                return
            opcode = buffer[0] & 0x0F
            del buffer[: start + length]
            if opcode in (1, 2):  # the echo: count it, send the next message
                stats = self.stats
                if stats.measuring:
                    stats.messages += 1
                    stats.latencies.append(time.perf_counter() - self.sent_at)
                self.send()
            elif opcode == 8 and self.stats.measuring:
                self.stats.errors += 1


async def run(args: argparse.Namespace) -> dict[str, object]:
    loop = asyncio.get_running_loop()
    stats = Stats()
    frame = masked_frame(b"m" * args.size)
    transports: list[asyncio.BaseTransport] = []
    protocols: list[EchoProtocol] = []
    for _ in range(args.conns):  # one by one: a burst of handshakes is not the test
        transport, protocol = await loop.create_connection(
            lambda: EchoProtocol(args.port, frame, stats), "127.0.0.1", args.port
        )
        transports.append(transport)
        protocols.append(protocol)
        await asyncio.wait_for(protocol.open, 10)
    await asyncio.sleep(args.warmup)  # unmeasured load
    stats.measuring = True
    print("start", flush=True)
    started = time.perf_counter()
    await asyncio.sleep(args.duration)
    stats.measuring = False
    elapsed = time.perf_counter() - started
    for each in transports:
        each.close()
    latencies = sorted(stats.latencies)
    p99 = latencies[int(0.99 * (len(latencies) - 1))] * 1e3 if latencies else float("nan")
    return {
        "rate": stats.messages / elapsed,
        "requests": stats.messages,
        "p50_ms": statistics.median(latencies) * 1e3 if latencies else float("nan"),
        "p99_ms": p99,
        "errors": stats.errors,
        "client_loop": type(loop).__module__.split(".")[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--conns", type=int, default=64)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    args = parser.parse_args()
    try:
        import uvloop  # the client should be as cheap as it can be
    except ImportError:
        result = asyncio.run(run(args))
    else:
        result = uvloop.run(run(args))
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
