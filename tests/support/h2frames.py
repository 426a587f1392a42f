"""HTTP/2 by hand: frames built and read one by one over a socket.

`RawH2` sends exactly the frames a test asks for (well-formed or hostile) and
reads the server's frames as they come, with an HPACK encoder and decoder of
its own (the `hpack` library) for header blocks. By default it acknowledges
the server's SETTINGS and PING frames, as every client does; a flood test
turns that off.
"""

from __future__ import annotations

import select
import socket
import ssl
import struct
import time
from dataclasses import dataclass, field

import hpack

from support import LoadThreads

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS = 0x0, 0x1, 0x2, 0x3, 0x4
PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 0x5, 0x6, 0x7, 0x8, 0x9
END_STREAM, ACK, END_HEADERS, PADDED = 0x1, 0x1, 0x4, 0x8

# SETTINGS identifiers
HEADER_TABLE_SIZE, MAX_CONCURRENT_STREAMS, INITIAL_WINDOW_SIZE = 0x1, 0x3, 0x4
MAX_FRAME_SIZE, MAX_HEADER_LIST_SIZE = 0x5, 0x6

# error codes
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR = 0x0, 0x1, 0x2, 0x3
FRAME_SIZE_ERROR, REFUSED_STREAM, CANCEL, COMPRESSION_ERROR = 0x6, 0x7, 0x8, 0x9
ENHANCE_YOUR_CALM = 0xB


def frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    return (
        struct.pack("!I", len(payload))[1:]
        + bytes([kind, flags])
        + struct.pack("!I", stream_id)
        + payload
    )


def settings_frame(values: dict[int, int] | None = None) -> bytes:
    payload = b"".join(struct.pack("!HI", key, value) for key, value in (values or {}).items())
    return frame(SETTINGS, 0, 0, payload)


def window_update(stream_id: int, increment: int) -> bytes:
    return frame(WINDOW_UPDATE, 0, stream_id, struct.pack("!I", increment))


def rst_stream(stream_id: int, error_code: int = CANCEL) -> bytes:
    return frame(RST_STREAM, 0, stream_id, struct.pack("!I", error_code))


def ping(data: bytes = b"12345678", ack: bool = False) -> bytes:
    return frame(PING, ACK if ack else 0, 0, data)


def goaway(last_stream_id: int = 0, error_code: int = NO_ERROR) -> bytes:
    return frame(GOAWAY, 0, 0, struct.pack("!II", last_stream_id, error_code))


@dataclass
class Frame:
    kind: int
    flags: int
    stream_id: int
    payload: bytes

    @property
    def error_code(self) -> int:
        """Of a RST_STREAM or GOAWAY frame."""
        offset = 4 if self.kind == GOAWAY else 0
        return int(struct.unpack_from("!I", self.payload, offset)[0])

    @property
    def last_stream_id(self) -> int:
        """Of a GOAWAY frame."""
        return int(struct.unpack_from("!I", self.payload)[0]) & 0x7FFFFFFF


@dataclass
class Response:
    stream_id: int
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""
    reset: int | None = None  # the RST_STREAM error code, if the stream was reset
    ended: bool = False
    informational: list[int] = field(default_factory=list)
    # the header blocks of the informational responses, and the trailers
    interim: list[list[tuple[bytes, bytes]]] = field(default_factory=list)
    trailers: list[tuple[bytes, bytes]] | None = None

    @property
    def status(self) -> int:
        return int(dict(self.headers)[b":status"])

    def header(self, name: bytes) -> bytes | None:
        return dict(self.headers).get(name)


class RawH2:
    """A client connection speaking frames (see the module)."""

    def __init__(
        self,
        port: int | None = None,
        *,
        uds: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        timeout: float = 5.0,
        settings: dict[int, int] | None = None,
        preface: bool = True,
        auto_ack: bool = True,
    ) -> None:
        if uds is not None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            sock.connect(uds)
        else:
            assert port is not None
            sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if ssl_context is not None:
            ssl_context.set_alpn_protocols(["h2"])
            sock = ssl_context.wrap_socket(sock, server_hostname="localhost")
        self.sock: socket.socket = sock
        self.timeout = timeout
        self.auto_ack = auto_ack
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder()
        self.buffer = b""
        self.frames: list[Frame] = []  # every frame read, in order
        self.responses: dict[int, Response] = {}
        self.closed = False
        if preface:
            self.send(PREFACE + settings_frame(settings))

    # --- sending -------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def header_block(self, headers: list[tuple[bytes, bytes]]) -> bytes:
        return bytes(self.encoder.encode(headers))

    def headers(
        self,
        stream_id: int,
        headers: list[tuple[bytes, bytes]],
        end_stream: bool = True,
    ) -> bytes:
        flags = END_HEADERS | (END_STREAM if end_stream else 0)
        return frame(HEADERS, flags, stream_id, self.header_block(headers))

    def request_headers(
        self,
        path: str = "/",
        method: str = "GET",
        extra: list[tuple[bytes, bytes]] | None = None,
    ) -> list[tuple[bytes, bytes]]:
        return [
            (b":method", method.encode()),
            (b":scheme", b"http"),
            (b":authority", b"localhost"),
            (b":path", path.encode()),
            *(extra or []),
        ]

    def request(
        self,
        stream_id: int,
        path: str = "/",
        method: str = "GET",
        extra: list[tuple[bytes, bytes]] | None = None,
        body: bytes | None = None,
        end_stream: bool = True,
    ) -> None:
        """Send a request's HEADERS (and DATA when `body` is given)."""
        headers = self.request_headers(path, method, extra)
        if body is None:
            self.send(self.headers(stream_id, headers, end_stream))
            return
        self.send(
            self.headers(stream_id, headers, False)
            + frame(DATA, END_STREAM if end_stream else 0, stream_id, body)
        )

    # --- reading -------------------------------------------------------------------
    def read_frame(self, timeout: float | None = None) -> Frame | None:
        """The next frame; None once the server has closed the connection."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            if len(self.buffer) >= 9:
                length = int.from_bytes(self.buffer[:3], "big")
                if len(self.buffer) >= 9 + length:
                    head, payload = self.buffer[:9], self.buffer[9 : 9 + length]
                    self.buffer = self.buffer[9 + length :]
                    stream_id = int.from_bytes(head[5:9], "big") & 0x7FFFFFFF
                    read = Frame(head[3], head[4], stream_id, payload)
                    self._note(read)
                    return read
            if self.closed:
                return None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no frame from the server in time")
            pending = isinstance(self.sock, ssl.SSLSocket) and self.sock.pending()
            if not pending:
                ready, _, _ = select.select([self.sock], [], [], remaining)
                if not ready:
                    continue
            try:
                chunk = self.sock.recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                chunk = b""
            if not chunk:
                self.closed = True
            self.buffer += chunk

    def _note(self, read: Frame) -> None:
        self.frames.append(read)
        if read.kind == SETTINGS and not read.flags & ACK and self.auto_ack:
            self.send(frame(SETTINGS, ACK, 0))
        elif read.kind == PING and not read.flags & ACK and self.auto_ack:
            self.send(frame(PING, ACK, 0, read.payload))
        elif read.kind in (HEADERS, CONTINUATION, DATA, RST_STREAM) and read.stream_id:
            response = self.responses.setdefault(read.stream_id, Response(read.stream_id))
            if read.kind == HEADERS:
                payload = read.payload
                if read.flags & PADDED:
                    payload = payload[1 : len(payload) - payload[0]]
                decoded = [(bytes(n), bytes(v)) for n, v in self.decoder.decode(payload, raw=True)]
                status = dict(decoded).get(b":status", b"")
                if status[:1] == b"1":
                    response.informational.append(int(status))
                    response.interim.append(decoded)
                elif not response.headers:
                    response.headers = decoded
                else:
                    response.trailers = decoded
            elif read.kind == DATA:
                response.body += read.payload
            elif read.kind == RST_STREAM:
                response.reset = read.error_code
            if read.flags & END_STREAM and read.kind in (HEADERS, DATA):
                response.ended = True

    def poll(self) -> list[Frame]:
        """The frames that have arrived, without waiting for more."""
        before = len(self.frames)
        while not self.closed:
            pending = isinstance(self.sock, ssl.SSLSocket) and self.sock.pending()
            if not pending and not select.select([self.sock], [], [], 0)[0]:
                break
            try:
                chunk = self.sock.recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                chunk = b""
            if not chunk:
                self.closed = True
            self.buffer += chunk
        while True:
            try:
                if self.read_frame(0.001) is None:
                    break
            except TimeoutError:
                break
        return self.frames[before:]

    def read_until(self, done: object, timeout: float | None = None) -> Frame | None:
        """Read frames until `done(frame)` is true for one (returned), or the
        connection closes (None)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            read = self.read_frame(max(0.01, deadline - time.monotonic()))
            if read is None or done(read):  # type: ignore[operator]
                return read

    def response(
        self, stream_id: int, timeout: float | None = None, window: bool = True
    ) -> Response:
        """Read until stream `stream_id` has ended or was reset. With `window`,
        the body's bytes are given back (WINDOW_UPDATE) as they arrive."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            response = self.responses.get(stream_id)
            if response is not None and (response.ended or response.reset is not None):
                return response
            read = self.read_frame(max(0.01, deadline - time.monotonic()))
            if read is None:
                raise ConnectionError(f"closed before stream {stream_id} ended: {self.frames}")
            if window and read.kind == DATA and read.payload:
                size = len(read.payload)
                self.send(window_update(0, size) + window_update(read.stream_id, size))

    def settled(self) -> RawH2:
        """Read the server's SETTINGS (and acknowledge them): after this, no frame of
        ours comes between a test's HEADERS and CONTINUATION frames."""
        self.read_until(lambda read: read.kind == SETTINGS and not read.flags & ACK)
        return self

    def goaway(self, timeout: float | None = None) -> Frame:
        """The first GOAWAY frame, read now or before."""
        for read in self.frames:
            if read.kind == GOAWAY:
                return read
        found = self.read_until(lambda read: read.kind == GOAWAY, timeout)
        if found is None:
            raise ConnectionError(f"closed without GOAWAY; frames: {self.frames}")
        return found

    def wait_closed(self, timeout: float | None = None) -> bool:
        """Read (and keep) frames until the server closes the connection."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while time.monotonic() < deadline:
            try:
                if self.read_frame(max(0.01, deadline - time.monotonic())) is None:
                    return True
            except TimeoutError:
                return False
        return False

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawH2:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Multiplexer(LoadThreads):
    """Threads, each keeping `streams` requests in flight on one HTTP/2
    connection at a time, as a well-behaved client does across a server's
    restarts (RFC 9113 6.8): after a GOAWAY it opens no stream there, retries
    the streams the GOAWAY did not cover (and REFUSED_STREAM ones) on a new
    connection, and reconnects once the server closed. A request lost is one
    the server took (at or below the last stream named) and never answered."""

    def __init__(self, port: int, threads: int = 2, streams: int = 20) -> None:
        import threading

        super().__init__([threading.Thread(target=self._run, daemon=True) for _ in range(threads)])
        self.port = port
        self.streams = streams
        self.retried = 0
        self.connections = 0

    def _run(self) -> None:
        pending = 0  # requests to send again on the next connection
        while not self._stop.is_set() or pending:
            try:
                pending = self._connection(pending)
            except OSError as exc:
                if not self._stop.is_set():
                    with self._lock:
                        self.failures.append(f"connect: {exc}")
                return

    def _connection(self, pending: int) -> int:
        with RawH2(self.port, timeout=10) as conn:
            with self._lock:
                self.connections += 1
            next_id = 1
            in_flight: set[int] = set()
            last: int | None = None  # the smallest last stream named by a GOAWAY
            while True:
                while (
                    last is None
                    and len(in_flight) < self.streams
                    and (pending or not self._stop.is_set())
                ):
                    conn.request(next_id)
                    in_flight.add(next_id)
                    next_id += 2
                    pending = max(0, pending - 1)
                if not in_flight and (last is not None or self._stop.is_set()):
                    return pending
                read = conn.read_frame()
                if read is None:  # closed: what it had not answered
                    for stream_id in in_flight:
                        if last is not None and stream_id > last:
                            pending += 1
                            with self._lock:
                                self.retried += 1
                        else:
                            with self._lock:
                                self.failures.append(f"stream {stream_id} lost at the close")
                    return pending
                if read.kind == GOAWAY:
                    named = read.last_stream_id
                    last = named if last is None else min(last, named)
                    for stream_id in [s for s in in_flight if s > last]:
                        in_flight.discard(stream_id)
                        pending += 1
                        with self._lock:
                            self.retried += 1
                elif read.kind == DATA and read.payload:
                    size = len(read.payload)
                    conn.send(window_update(0, size) + window_update(read.stream_id, size))
                response = conn.responses.get(read.stream_id)
                if read.stream_id in in_flight and response is not None:
                    if response.reset is not None:
                        in_flight.discard(read.stream_id)
                        if response.reset == REFUSED_STREAM:
                            pending += 1
                            with self._lock:
                                self.retried += 1
                        else:
                            with self._lock:
                                self.failures.append(f"stream reset with {response.reset}")
                    elif response.ended:
                        in_flight.discard(read.stream_id)
                        with self._lock:
                            if response.status == 200:
                                self.ok += 1
                            else:
                                self.failures.append(f"status {response.status}")
