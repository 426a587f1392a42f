"""h2 as ketch-h2 configures it: the settings announced, what h2 leaves to
ketch (request checks, refusing streams, GOAWAY frames), the limits on what it
decodes and remembers, and the connection's flow-control window.
"""

from __future__ import annotations

import struct
from typing import Final

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.settings import SettingCodes, Settings
from ketch.h2.encoder import HeaderEncoder

# A stream's flow-control window for request bodies (the protocol's default):
# at most this much of each stream's body waits in memory for its app.
STREAM_WINDOW: Final = 65535
# the highest stream identifier: the first GOAWAY of a graceful stop names it
ANY_STREAM: Final = 2**31 - 1

_GOAWAY_ERROR = struct.Struct("!I")


def goaway_frame(last_stream_id: int, error_code: int) -> bytes:
    """A GOAWAY frame without debug data (RFC 9113 6.8)."""
    return b"\x00\x00\x08\x07\x00\x00\x00\x00\x00" + struct.pack(
        "!II", last_stream_id & ANY_STREAM, error_code
    )


def goaway_error(payload: bytes) -> int | None:
    """The error code of a GOAWAY frame's payload (None if it is too short)."""
    if len(payload) < 8:
        return None
    code: int = _GOAWAY_ERROR.unpack_from(payload, 4)[0]
    return code


class _LocalSettings(Settings):
    """Our settings, as h2 sends them, except that h2 lets every stream open:
    ketch refuses the streams beyond MAX_CONCURRENT_STREAMS itself, with
    REFUSED_STREAM for the client to retry (RFC 9113 5.1.2), where h2 would
    end the whole connection."""

    @property
    def max_concurrent_streams(self) -> int:
        return 2**32

    @max_concurrent_streams.setter
    def max_concurrent_streams(self, value: int) -> None:
        self[SettingCodes.MAX_CONCURRENT_STREAMS] = value


class _H2Connection(H2Connection):
    """h2's connection state, remembering fewer closed streams: h2 keeps how each
    stream ended (to answer a late frame on a reset one with RST_STREAM rather
    than end the connection) for the last 65,536 streams, about 9 MB on a
    long-lived connection; frames come late by a round trip at most."""

    def __init__(self, config: H2Configuration, remembered: int) -> None:
        self.MAX_CLOSED_STREAMS = remembered
        super().__init__(config)


def _h2_config() -> H2Configuration:
    return H2Configuration(
        client_side=False,
        header_encoding=None,
        # requests are checked by ketch.h2.request, a malformed one as a stream
        # error (h2 would end the connection); responses by ketch.core's checked_headers()
        validate_inbound_headers=False,
        validate_outbound_headers=False,
        normalize_outbound_headers=False,
    )


def new_h2(max_streams: int, header_list_size: int, hard_limit: int) -> H2Connection:
    """h2's state for one server connection: `max_streams` concurrent streams,
    header lists up to `header_list_size` announced, none beyond `hard_limit`
    decoded."""
    h2 = _H2Connection(_h2_config(), max(1024, 4 * max_streams))
    h2.local_settings = _LocalSettings(
        client=False,
        initial_values={
            SettingCodes.MAX_CONCURRENT_STREAMS: max_streams,
            SettingCodes.MAX_HEADER_LIST_SIZE: header_list_size,
        },
    )
    h2.encoder = HeaderEncoder()  # type: ignore[assignment]
    # A header list up to the limit gets the stream a 431; a bigger one
    # (an HPACK bomb) is not even decoded: GOAWAY ENHANCE_YOUR_CALM.
    h2.decoder.max_header_list_size = hard_limit
    return h2


def start_h2(h2: H2Connection, max_streams: int) -> None:
    """The server's preface (SETTINGS), and the connection's window: every
    stream may fill its window without stalling the others, so the
    connection's window is the sum of theirs."""
    h2.initiate_connection()
    increment = min(max_streams * STREAM_WINDOW, ANY_STREAM) - STREAM_WINDOW
    if increment > 0:
        h2.increment_flow_control_window(increment)
