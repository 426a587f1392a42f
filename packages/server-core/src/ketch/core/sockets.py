"""Listening sockets (`--host/--port`, `--uds`, `--fd`, systemd's socket
activation) and the TLS context."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import ssl
import stat
from dataclasses import dataclass

from ketch.core.config import Config
from ketch.core.errors import ConfigError, KetchError
from ketch.core.negotiation import ALPN_PROTOCOLS
from ketch.core.systemd import listen_fds

logger = logging.getLogger("ketch.error")


class BindError(KetchError):
    """The listening socket could not be opened."""


@dataclass
class Listener:
    """A bound, listening socket and whether this process owns a UNIX socket file."""

    sock: socket.socket
    uds_path: str | None = None  # removed on clean exit when set

    def close(self) -> None:
        self.sock.close()
        if self.uds_path is not None:
            remove_uds_file(self.uds_path)


def bind(config: Config) -> list[Listener]:
    """The sockets to serve: `--fd`, `--uds`, else those systemd passed (socket
    activation, one or several), else `--host/--port`, listening with `--backlog`."""
    activated = listen_fds()  # taken out of the environment in every case
    if config.fd is not None:
        return [Listener(_from_fd(config.fd, f"--fd {config.fd}"))]
    if config.uds is not None:
        return [Listener(_bind_uds(config.uds, config.backlog), uds_path=config.uds)]
    if activated:
        logger.info("Serving %d socket(s) passed by systemd", len(activated))
        # the socket files of ListenStream=/path belong to systemd: never removed here
        return [Listener(_from_fd(fd, f"systemd's socket (fd {fd})")) for fd in activated]
    return [Listener(sock) for sock in _bind_tcp(config.host, config.port, config.backlog)]


def _from_fd(fd: int, name: str) -> socket.socket:
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise BindError(f"{name} is not an open socket ({exc.strerror})") from None
    if sock.type != socket.SOCK_STREAM:
        sock.detach()  # not ours to close
        raise BindError(f"{name} is not a stream socket")
    try:
        accepting = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
    except OSError:
        accepting = 1
    if not accepting:
        sock.detach()
        raise BindError(f"{name} is a socket that is not listening (call listen() on it)")
    return sock


def _bind_uds(path: str, backlog: int) -> socket.socket:
    if os.path.exists(path):
        if not stat.S_ISSOCK(os.stat(path).st_mode):
            raise BindError(f"--uds {path}: a file that is not a socket is in the way")
        if _uds_in_use(path):
            raise BindError(f"--uds {path}: another server is listening on this socket")
        os.unlink(path)  # a stale socket left by a server that did not clean up
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        # proxies such as nginx run as another user and must be able to connect
        os.chmod(path, 0o666)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise BindError(f"--uds {path}: {exc.strerror}") from None
    return sock


def _uds_in_use(path: str) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        return False
    finally:
        probe.close()
    return True


def remove_uds_file(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.stat(path).st_mode):
            os.unlink(path)


def _bind_tcp(host: str, port: int, backlog: int) -> list[socket.socket]:
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise BindError(f"--host {host}: cannot resolve this name ({exc.strerror})") from None
    # one socket per distinct address ("localhost" may be both 127.0.0.1 and ::1)
    seen: set[tuple[int, str]] = set()
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in infos:
            key = (family, str(address[0]))
            if key in seen:
                continue
            seen.add(key)
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and len(infos) > 1:
                # with both families listed, each socket keeps to its own
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if port == 0 and len(sockets) > 1:
                # port 0: every address listens on the port the first one got
                address = (address[0], sockets[0].getsockname()[1], *address[2:])
            try:
                sock.bind(address)
            except OSError as exc:
                where = f"{address[0]!s}:{address[1]!s}"
                if exc.errno == errno.EADDRINUSE:
                    raise BindError(
                        f"[Errno {exc.errno}] {where} is already in use: "
                        "stop the other server or choose another --port"
                    ) from None
                raise BindError(f"cannot bind {where}: {exc.strerror}") from None
            sock.listen(backlog)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def describe(sock: socket.socket, is_ssl: bool) -> str:
    """How the log names a listening socket: http://127.0.0.1:8000, unix socket /x.sock."""
    address = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        return f"unix socket {address}"
    scheme = "https" if is_ssl else "http"
    host = address[0]
    if sock.family == socket.AF_INET6:
        host = f"[{host}]"
    return f"{scheme}://{host}:{address[1]}"


def create_ssl_context(config: Config) -> ssl.SSLContext | None:
    if not config.is_ssl:
        return None

    def default_factory() -> ssl.SSLContext:
        return _default_ssl_context(config)

    if config.ssl_context_factory is not None:
        context = config.ssl_context_factory(config, default_factory)
    else:
        context = default_factory()
    if config.http2:
        # each connection is then served by what its client chose (ketch.core.negotiation)
        context.set_alpn_protocols(list(ALPN_PROTOCOLS))
    return context


def _default_ssl_context(config: Config) -> ssl.SSLContext:
    try:
        context = ssl.SSLContext(config.ssl_version)
    except ValueError as exc:
        raise ConfigError(f"--ssl-version {config.ssl_version}: {exc}") from None
    password = config.ssl_keyfile_password
    try:
        context.load_cert_chain(
            str(config.ssl_certfile),
            str(config.ssl_keyfile) if config.ssl_keyfile else None,
            # never None: OpenSSL would prompt on the terminal for an encrypted key
            lambda: password or "",
        )
    except FileNotFoundError as exc:
        raise ConfigError(f"TLS: no such file {exc.filename!r}") from None
    except ssl.SSLError as exc:
        reason = exc.reason or str(exc)
        hint = " (wrong --ssl-keyfile-password?)" if "BAD_DECRYPT" in str(exc) or password else ""
        raise ConfigError(f"TLS: cannot load the certificate and key: {reason}{hint}") from None
    context.verify_mode = ssl.VerifyMode(config.ssl_cert_reqs)
    if config.ssl_ca_certs:
        try:
            context.load_verify_locations(str(config.ssl_ca_certs))
        except (FileNotFoundError, ssl.SSLError) as exc:
            raise ConfigError(f"--ssl-ca-certs {config.ssl_ca_certs}: {exc}") from None
    if config.ssl_ciphers:
        try:
            context.set_ciphers(config.ssl_ciphers)
        except ssl.SSLError:
            raise ConfigError(f"--ssl-ciphers {config.ssl_ciphers!r}: no cipher matches") from None
    return context
