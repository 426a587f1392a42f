"""Files sent by the server for the app: the `http.response.pathsend` extension.

`open_path()` opens what the app names (an absolute path to a regular file);
`send_file()` writes its bytes to a connection's transport: with the kernel's
`sendfile` where the event loop offers it for that transport (`loop.sendfile`
of asyncio's loop on a plain socket), otherwise by reading and writing blocks
(TLS, uvloop), one block at a time as the transport takes them, so that the
server's memory stays flat whatever the file's size and the client's speed.
"""

from __future__ import annotations

import asyncio
import errno
import io
import os
import stat
from collections.abc import Callable

from ketch.core.transport import WriteFlow

# Read-and-write: bytes read and written at a time (the transport's buffer
# holds at most about this much beyond its high-water mark).
BLOCK_SIZE = 256 * 1024
# The kernel's sendfile writes without the transport's flow control, so it
# goes in steps, each announced by `on_step(True)`: a connection that cuts off
# clients who stop reading (--timeout-write) arms its deadline for each. Steps
# start small and double while the client takes each at once, so that a fast
# transfer costs few steps; a slow step starts them small again. The kernel's
# send buffer (up to 4 MiB) takes the first steps whatever the client's pace,
# so a step can grow until the client must take a whole step within the
# deadline: the largest step sets the slowest pace a deadline tolerates
# (1 MiB per 60 s: 17 KB/s). Larger steps saved no measurable CPU.
FIRST_STEP = 256 * 1024
LAST_STEP = 1024 * 1024
QUICK_STEP_SECONDS = 0.25
# errors of os.sendfile() that mean the peer is gone (not the file's fault)
_PEER_GONE = frozenset({errno.EPIPE, errno.ECONNRESET, errno.ECONNABORTED, errno.ENOTCONN})


def open_path(path: object) -> tuple[io.FileIO, int]:
    """Open the file of an `http.response.pathsend` message: the file (the
    caller closes it) and its size. RuntimeError if `path` is not an absolute
    path or not a regular file; OSError if it cannot be opened."""
    name = os.fspath(path) if isinstance(path, os.PathLike) else path
    if isinstance(name, bytes):
        name = os.fsdecode(name)
    if not isinstance(name, str):
        raise RuntimeError(f"http.response.pathsend: the path must be a string, not {path!r}")
    if not os.path.isabs(name):
        raise RuntimeError(f"http.response.pathsend needs an absolute path, not {name!r}")
    # O_NONBLOCK: opening a FIFO must not wait for a writer (and block the loop)
    fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise RuntimeError(f"http.response.pathsend: {name} is not a regular file")
        return io.FileIO(fd, "rb", closefd=True), info.st_size
    except BaseException:
        os.close(fd)
        raise


async def send_file(
    transport: asyncio.Transport,
    flow: WriteFlow,
    file: io.FileIO,
    offset: int,
    count: int,
    on_step: Callable[[bool], None] | None = None,
) -> int:
    """Write `count` bytes of `file` from `offset` to `transport`, after what
    was written to it before; `flow` is the connection's write flow control.
    `on_step(True)` is called before each step of the kernel's sendfile (which
    the transport's flow control does not see), `on_step(False)` before the
    bytes go through the transport (and its flow control) instead.

    Returns the number of bytes written: fewer than `count` only when the file
    ended early (it shrank while being sent). Raises ConnectionError when the
    connection is lost first (after aborting the transport if the failure was
    the kernel's to see), and OSError when the file cannot be read."""
    if count <= 0:
        return 0
    if flow.lost or transport.is_closing():
        raise ConnectionError("the connection is closed")
    position = offset
    end = offset + count
    loop = asyncio.get_running_loop()
    # (uvloop has no sendfile: it keeps the abstract loop's, which raises)
    if not _is_tls(transport) and type(loop).sendfile is not asyncio.AbstractEventLoop.sendfile:
        step = FIRST_STEP
        while position < end:
            if on_step is not None:
                on_step(True)
            size = min(step, end - position)
            started = loop.time()
            sent = await _kernel_sendfile(transport, flow, file, position, size)
            if sent is None:
                break  # not for this file or transport: read and write the rest
            position += sent
            if sent < size:
                return position - offset  # the file ended early
            quick = loop.time() - started < QUICK_STEP_SECONDS
            step = min(2 * step, LAST_STEP) if quick else FIRST_STEP
        else:
            return count
    if on_step is not None:
        on_step(False)
    return (
        position - offset + await _read_and_write(transport, flow, file, position, end - position)
    )


def _is_tls(transport: asyncio.BaseTransport) -> bool:
    return transport.get_extra_info("sslcontext") is not None


async def _kernel_sendfile(
    transport: asyncio.Transport, flow: WriteFlow, file: io.FileIO, offset: int, count: int
) -> int | None:
    """`loop.sendfile()` without its fallback; None when the loop (uvloop) or
    the file cannot use the kernel's sendfile: nothing was sent then."""
    loop = asyncio.get_running_loop()
    sending = asyncio.ensure_future(loop.sendfile(transport, file, offset, count, fallback=False))
    lost = flow.when_lost()
    try:
        # asyncio's sendfile waits on the socket itself: a transport closed under
        # it (the server's forced stop) would leave it waiting forever
        await asyncio.wait((sending, lost), return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not sending.done():
            sending.cancel()  # the connection was lost, or the app's task cancelled
    if sending.cancelled():
        raise ConnectionError("the connection was lost while a file was sent")
    exc = sending.exception()
    if exc is None:
        return sending.result()
    if isinstance(exc, NotImplementedError | asyncio.SendfileNotAvailableError):
        return None
    if isinstance(exc, OSError) and exc.errno in _PEER_GONE:
        transport.abort()  # the transport itself has not seen it (reading was paused)
        raise ConnectionError("the client left while a file was sent") from exc
    if isinstance(exc, RuntimeError):  # "Transport is closing", or sendfile not supported
        if transport.is_closing():
            raise ConnectionError("the connection is closed") from exc
        return None
    raise exc


async def _read_and_write(
    transport: asyncio.Transport, flow: WriteFlow, file: io.FileIO, offset: int, count: int
) -> int:
    fd = file.fileno()
    position = offset
    end = offset + count
    while position < end:
        # (synchronous reads, like the kernel's sendfile: from the page cache they
        # cost less than a thread's round trip, and a block is bounded)
        data = os.pread(fd, min(BLOCK_SIZE, end - position), position)
        if not data:
            break  # the file ended early
        transport.write(data)
        position += len(data)
        if position < end:
            if flow.paused:
                await flow.drain()
            else:
                await asyncio.sleep(0)  # let the other connections run between blocks
            if flow.lost or transport.is_closing():
                raise ConnectionError("the connection was lost while a file was sent")
    return position - offset
