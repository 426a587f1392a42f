"""What the client sends on the streams, as h2's events: functions of
`HTTP2Connection` (`ketch.h2.connection`), called from its `data_received()`.

A request opens a `Stream` and starts its app, unless ketch answers in its
place: RST_STREAM REFUSED_STREAM beyond MAX_CONCURRENT_STREAMS or after a
GOAWAY (the client may retry), PROTOCOL_ERROR for a malformed request (RFC
9113 8.1.1), 400, 413, 431 or 503 as a response. Body data waits in the
stream for its app, within `--limit-request-body`; a reset ends one stream;
the client's GOAWAY ends the connection once its streams are done.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from h2.events import DataReceived, RequestReceived, StreamReset
from ketch.core.api import http_scope
from ketch.h2 import lifetime
from ketch.h2.h2_setup import goaway_error
from ketch.h2.lifetime import peer
from ketch.h2.request import read_request
from ketch.h2.stream import CANCEL, NO_ERROR, PROTOCOL_ERROR, REFUSED_STREAM, Stream

if TYPE_CHECKING:
    from ketch.h2.connection import HTTP2Connection

logger = logging.getLogger("ketch.error")


def on_request(conn: HTTP2Connection, event: RequestReceived) -> None:
    """A request's header block: a stream served, answered by ketch, or reset."""
    stream_id = event.stream_id
    h2 = conn.h2
    if stream_id > conn.last_stream_id or conn.client_done:
        h2.reset_stream(stream_id, REFUSED_STREAM)  # after our GOAWAY: not served
        return
    if len(conn.streams) >= conn.max_streams:
        h2.reset_stream(stream_id, REFUSED_STREAM)  # beyond MAX_CONCURRENT_STREAMS
        conn.guard.charge(conn.context.now)
        return
    head = read_request(event.headers)
    context = conn.context
    if head.malformed:
        context.error_logger.info(
            "Resetting HTTP/2 stream from %s: malformed request (%s)",
            peer(conn.info),
            head.malformed,
        )
        h2.reset_stream(stream_id, PROTOCOL_ERROR)
        conn.guard.charge(context.now)
        return
    settings = conn.settings
    headers = head.headers
    status = 0
    if head.bad:
        status = 400
    elif (
        head.size > settings.limit_request_header_size
        or len(headers) > settings.limit_request_headers
    ):
        status = 431
    scope = http_scope(context, conn.info, head.method, "2", head.target, headers, conn.extensions)
    stream = Stream(conn, stream_id, scope, event.stream_ended is not None)
    streams = conn.streams
    if not streams:
        conn.idle_since = 0.0
        if conn.deadline:
            lifetime.reschedule(conn)
    streams[stream_id] = stream
    observer = context.observer
    if observer is not None:  # the access log or metrics: the exchange starts
        stream.exchange = observer.begin(scope)
    if status:
        context.error_logger.warning(
            "%d answered to HTTP/2 stream from %s", status, peer(conn.info)
        )
        refuse(conn, stream, status)
        return
    limit = settings.limit_request_body
    if limit is not None and head.content_length is not None and head.content_length > limit:
        refuse(conn, stream, 413)
        return
    stream.expect_continue = head.expect_continue
    if settings.limit_concurrency is not None and context.over_concurrency_limit():
        refuse(conn, stream, 503)
        return
    stream.task = context.create_task(stream.run_asgi(context.app))


def refuse(conn: HTTP2Connection, stream: Stream, status: int) -> None:
    """ketch answers the stream's request itself (400, 413, 431, 503)."""
    metrics = conn.context.metrics
    if metrics is not None:
        metrics.rejected(status)
    stream.respond_error(status)


def on_data(conn: HTTP2Connection, event: DataReceived) -> None:
    """Request body bytes, for the stream's app to take (within --limit-request-body)."""
    stream_id = event.stream_id
    stream = conn.streams.get(stream_id)
    data = event.data
    size = len(data)
    if stream is None or stream.disconnected or stream.done:
        # nobody reads it: give the window back at once
        conn.h2.acknowledge_received_data(event.flow_controlled_length, stream_id)
        return
    padding = event.flow_controlled_length - size
    if padding:
        conn.h2.acknowledge_received_data(padding, stream_id)
    received = stream.received = stream.received + size
    limit = conn.settings.limit_request_body
    if limit is not None and received > limit:
        conn.h2.acknowledge_received_data(size, stream_id)
        conn.context.error_logger.warning(
            "413 answered to HTTP/2 stream from %s: request body too large",
            peer(conn.info),
        )
        if stream.head_written():
            stream.on_disconnect()
            conn.reset(stream, CANCEL)
        else:
            refuse(conn, stream, 413)  # and the client is told to stop sending
            stream.on_disconnect()
        return
    if size:
        stream.body.append(data)
        stream.buffered += size
        stream.wake()


def on_reset(conn: HTTP2Connection, event: StreamReset) -> None:
    """The client reset a stream: its app hears http.disconnect."""
    stream = conn.streams.pop(event.stream_id, None)
    if stream is None:
        return
    conn.forget(stream)
    stream.on_disconnect()
    if not conn.cancel_unstarted(stream) and stream.task is not None:
        conn.orphans.add(stream)  # until its app returns (cancelled on a flood)
    conn.stream_gone()


def on_client_goaway(conn: HTTP2Connection) -> None:
    """The client opens no more streams; with an error code, it is gone."""
    payloads = conn.guard.goaways
    error_code = NO_ERROR
    for payload in payloads:
        code = goaway_error(payload)
        if code is not None:
            error_code = code
    payloads.clear()
    conn.client_done = True
    if error_code != NO_ERROR:
        logger.debug("HTTP/2 client sent GOAWAY with error %d", error_code)
        lifetime.close_with(conn, NO_ERROR)
    elif not conn.streams:
        lifetime.close_with(conn, NO_ERROR)
