"""ketch-h2's HPACK encoder: whatever it writes, a decoder (the hpack library's,
as clients use) reads back exactly, across table sizes the client changes."""

from __future__ import annotations

import hpack
from hypothesis import given, settings
from hypothesis import strategies as st

from ketch.h2.encoder import HeaderEncoder

NAMES = [b"content-type", b"date", b"server", b"set-cookie", b"x-a", b"x-bb", b":status", b"etag"]
VALUES = st.binary(min_size=0, max_size=300).filter(lambda v: b"\n" not in v)
FIELD = st.tuples(st.sampled_from(NAMES) | st.binary(min_size=1, max_size=40), VALUES)
BLOCK = st.lists(FIELD, max_size=12)
STEP = st.tuples(BLOCK, st.none() | st.integers(min_value=0, max_value=8192))


@settings(max_examples=150, deadline=None)
@given(st.lists(STEP, min_size=1, max_size=25))
def test_every_block_decodes_to_its_headers(
    steps: list[tuple[list[tuple[bytes, bytes]], int | None]],
) -> None:
    encoder = HeaderEncoder()
    decoder = hpack.Decoder()
    for headers, table_size in steps:
        if table_size is not None:  # the client's SETTINGS_HEADER_TABLE_SIZE
            decoder.max_allowed_table_size = table_size
            encoder.header_table_size = table_size
        block = encoder.encode(headers)
        decoded = [(bytes(n), bytes(v)) for n, v in decoder.decode(block, raw=True)]
        assert decoded == headers


def test_repeated_headers_cost_a_byte_each() -> None:
    encoder = HeaderEncoder()
    headers = [(b":status", b"200"), (b"content-type", b"text/plain"), (b"server", b"ketch")]
    first = encoder.encode(headers)
    again = encoder.encode(headers)
    assert len(again) == 3 < len(first)


def test_set_cookie_is_never_indexed() -> None:
    encoder = HeaderEncoder()
    block = encoder.encode([(b"set-cookie", b"session=secret")])
    assert block[0] & 0xF0 == 0x10  # literal never indexed (RFC 7541 6.2.3)
    assert encoder.encode([(b"set-cookie", b"session=secret")]) == block
