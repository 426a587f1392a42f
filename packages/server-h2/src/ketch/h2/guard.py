"""A look at every frame header before h2 parses the frame: floods, slow header
blocks and GOAWAY.

h2 parses what it is given and answers every frame; it does not count. The
guard walks the 9-byte frame headers of the bytes received (the payloads pass
through untouched, so a request costs one header check per frame) and:

- charges the frames that do no work for a request (SETTINGS, PING, PRIORITY,
  RST_STREAM, empty DATA, HEADERS or CONTINUATION, unknown types) to a budget
  of `BURST` frames refilled at `REFILL_PER_SECOND`: a client that spends it
  (a PING, SETTINGS or empty-frame flood, a rapid reset) gets GOAWAY
  ENHANCE_YOUR_CALM before h2 spends any time on the rest;
- times and sizes each header block (HEADERS and its CONTINUATION frames),
  which h2 buffers silently until it ends: the connection's deadline closes
  one that takes longer than `--timeout-request-header`, and one that grows
  past `block_limit` bytes or `MAX_BLOCK_FRAMES` frames ends the connection at
  once (CVE-2024-27316);
- takes the client's GOAWAY frames out of the stream for the connection to
  handle: h2 would end the connection on the spot, while a GOAWAY with
  NO_ERROR only means that the client opens no more streams.
"""

from __future__ import annotations

from typing import Final

# frame types (RFC 9113 6) and flags
DATA: Final = 0x0
HEADERS: Final = 0x1
SETTINGS: Final = 0x4
PING: Final = 0x6
GOAWAY: Final = 0x7
WINDOW_UPDATE: Final = 0x8
CONTINUATION: Final = 0x9
PUSH_PROMISE: Final = 0x5
END_STREAM: Final = 0x1
ACK: Final = 0x1
END_HEADERS: Final = 0x4

# frames whose very presence is work for a request or an answer to us
_USEFUL = frozenset({WINDOW_UPDATE, PUSH_PROMISE, GOAWAY})

# The budget of frames that do no work: a burst this big, refilled this fast.
# A browser or a gRPC client spends a handful; floods spend thousands a second.
BURST: Final = 1000
REFILL_PER_SECOND: Final = 100.0

# A header block of more frames than this ends the connection (h2 would stop
# at 64 CONTINUATION frames too, with PROTOCOL_ERROR).
MAX_BLOCK_FRAMES: Final = 32

PREFACE_SIZE: Final = 24


class FrameGuard:
    """Walks the frame headers of a connection's incoming bytes (see the module)."""

    __slots__ = (
        "block_end",
        "block_frames",
        "block_limit",
        "block_since",
        "block_size",
        "budget",
        "budget_time",
        "flood",
        "goaways",
        "held",
        "offset",
        "skip",
    )

    def __init__(self, block_limit: int, now: float) -> None:
        self.block_limit = block_limit
        self.skip = PREFACE_SIZE  # bytes passed through before the next frame header
        self.held = b""  # an incomplete frame header, or an incomplete GOAWAY frame
        self.offset = 0  # bytes of the stream seen before the current chunk
        self.block_since = 0.0  # when the header block in progress began; 0.0: none
        self.block_size = 0
        self.block_frames = 0
        self.block_end = 0  # stream offset where the block's last frame ends; 0: unknown
        self.budget = float(BURST)
        self.budget_time = now
        self.flood = False  # the budget is spent, or a header block is too large
        self.goaways: list[bytes] = []  # payloads of the client's GOAWAY frames

    def feed(self, data: bytes, now: float) -> bytes:
        """What h2 should parse of `data`: the same bytes, less GOAWAY frames and
        an incomplete frame header (held until its end arrives)."""
        held = self.held
        if held:
            data = held + data
            self.held = b""
        size = len(data)
        pos = self.skip
        if pos >= size:  # inside a frame's payload (a large DATA frame, say)
            self.skip = pos - size
            self._advance(size)
            return data
        kept: list[bytes] | None = None  # pieces of data, when a GOAWAY is taken out
        start = 0
        while pos + 9 <= size:
            length = (data[pos] << 16) | (data[pos + 1] << 8) | data[pos + 2]
            kind = data[pos + 3]
            flags = data[pos + 4]
            end = pos + 9 + length
            if kind == HEADERS:
                if self.block_since == 0.0:
                    self.block_since = now
                    self.block_size = 0
                    self.block_frames = 0
                self._extend_block(length, flags, end, size)
            elif kind == CONTINUATION:
                if length == 0 and not flags & END_HEADERS:
                    self.charge(now)
                self._extend_block(length, flags, end, size)
            elif kind == DATA:
                if length == 0 and not flags & END_STREAM:
                    self.charge(now)
            elif kind == GOAWAY:
                if end > size:  # wait for the whole frame
                    self.held = data[pos:]
                    size = pos
                    break
                if kept is None:
                    kept = []
                kept.append(data[start:pos])
                self.goaways.append(data[pos + 9 : end])
                start = end
            elif kind not in _USEFUL and not (kind in (SETTINGS, PING) and flags & ACK):
                self.charge(now)  # SETTINGS, PING, PRIORITY, RST_STREAM, unknown types
            pos = end
        if pos > size:
            self.skip = pos - size
        else:
            self.skip = 0
            if pos < size and not self.held:  # an incomplete frame header
                self.held = data[pos:]
                size = pos
        self._advance(size)
        if kept is None:
            return data[:size] if size < len(data) else data
        kept.append(data[start:size])
        return b"".join(kept)

    def _extend_block(self, length: int, flags: int, end: int, size: int) -> None:
        """A HEADERS or CONTINUATION frame ending at `end` of the chunk of `size`."""
        self.block_size += length
        self.block_frames += 1
        if self.block_size > self.block_limit or self.block_frames > MAX_BLOCK_FRAMES:
            self.flood = True
        if flags & END_HEADERS:
            if end <= size:  # the block is here whole
                self.block_since = 0.0
                self.block_end = 0
            else:  # its last frame ends in a later chunk
                self.block_end = self.offset + end

    def _advance(self, size: int) -> None:
        self.offset += size
        if self.block_end and self.offset >= self.block_end:
            self.block_since = 0.0  # the whole block has arrived
            self.block_end = 0

    def charge(self, now: float) -> None:
        """One frame (or refused stream) that does no work for a request."""
        budget = self.budget + (now - self.budget_time) * REFILL_PER_SECOND
        self.budget_time = now
        budget = min(budget, float(BURST)) - 1.0
        self.budget = budget
        if budget < 0.0:
            self.flood = True
