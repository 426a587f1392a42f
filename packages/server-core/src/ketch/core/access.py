"""What an access-log line says about one exchange, in Uvicorn's words or gunicorn's atoms.

Everything that comes from the client (the request line, the path, header
values) is escaped before it reaches a log line (`escape()`): a control
character, a line separator or a quote in a request can neither start a
forged line nor break a quoted field.

`--access-log-format` takes gunicorn's atoms (`%(h)s %(l)s %(u)s %(t)s "%(r)s"
%(s)s %(b)s "%(f)s" "%(a)s"` is gunicorn's default), so formats written for
gunicorn or Hypercorn work unchanged. The format is parsed once; each line
computes only the atoms it uses.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from ketch.core.errors import ConfigError
from ketch.core.scope import client_text, path_with_query

if TYPE_CHECKING:
    from ketch.core.exchange import Exchange

# The Uvicorn access line: client - "METHOD PATH HTTP/VERSION" STATUS
UVICORN_MESSAGE = '%s - "%s %s HTTP/%s" %d'
# said after the line when the response did not go out whole
INCOMPLETE = "(disconnected)"
# gunicorn's default access_log_format
GUNICORN_FORMAT = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'
# the status logged for an exchange whose client left before any response (nginx's)
CLIENT_CLOSED = 499

_SPECIAL = {'"': '\\"', "\\": "\\\\"}


def _escape_char(char: str) -> str:
    special = _SPECIAL.get(char)
    if special is not None:
        return special
    if char.isprintable():
        return char
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape(text: str) -> str:
    """`text` safe for one log line: control characters (CR, LF, ESC, ...),
    other unprintable ones (line separators, lone surrogates) as `\\xHH` or
    `\\uHHHH`; quotes and backslashes with a backslash."""
    if text.isprintable() and '"' not in text and "\\" not in text:
        return text  # the usual case: one C-level scan, no copy
    return "".join(map(_escape_char, text))


def header_value(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> str | None:
    """The first value of the header `name` (lowercase); None if absent."""
    for key, value in headers:
        if key == name or key.lower() == name:
            return value.decode("latin-1")
    return None


def header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> str | None:
    """The first value of the header `name` (lowercase), escaped; None if absent."""
    value = header_value(headers, name)
    return None if value is None else escape(value)


def method_of(exchange: Exchange) -> str:
    method: str = exchange.scope.get("method", "GET")
    return method  # a WebSocket handshake is a GET


def uvicorn_args(exchange: Exchange) -> tuple[str, str, str, str, int]:
    """The arguments of UVICORN_MESSAGE: client, method, path?query, version, status."""
    scope = exchange.scope
    return (
        client_text(scope["client"]),
        escape(method_of(exchange)),
        escape(path_with_query(scope)),
        scope["http_version"],
        exchange.status,
    )


# --- gunicorn's atoms ---------------------------------------------------------------------
_ATOM = re.compile(r"%\(([^)]*)\)")


def _host(ex: Exchange) -> str:
    client = ex.scope["client"]
    return str(client[0]) if client else "-"


def _path(ex: Exchange) -> str:
    return escape(ex.scope["path"])


def _user(ex: Exchange) -> str:
    """The user name of HTTP Basic authentication, as gunicorn reads it."""
    value = header_value(ex.scope["headers"], b"authorization")
    if value is None or value[:6].lower() != "basic ":
        return "-"
    try:
        decoded = base64.b64decode(value[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return "-"
    return escape(decoded.partition(":")[0]) or "-"


def _time(ex: Exchange) -> str:
    return time.strftime("[%d/%b/%Y:%H:%M:%S %z]")


def _target(ex: Exchange) -> str:
    scope = ex.scope
    query = scope["query_string"]
    raw: bytes = scope["raw_path"] + b"?" + query if query else scope["raw_path"]
    return raw.decode("latin-1")


def _request_line(ex: Exchange) -> str:
    return escape(f"{method_of(ex)} {_target(ex)} HTTP/{ex.scope['http_version']}")


def _query(ex: Exchange) -> str:
    return escape(ex.scope["query_string"].decode("latin-1"))


def _bytes_or_dash(ex: Exchange) -> str:
    return str(ex.bytes_sent) if ex.bytes_sent else "-"


def _decimal_seconds(ex: Exchange) -> str:
    micros = int(ex.duration * 1_000_000)
    return "%d.%06d" % divmod(micros, 1_000_000)


_ATOMS: dict[str, Callable[[Exchange], Any]] = {
    "h": _host,
    "l": lambda ex: "-",
    "u": _user,
    "t": _time,
    "r": _request_line,
    "m": lambda ex: escape(method_of(ex)),
    "U": _path,
    "q": _query,
    "H": lambda ex: f"HTTP/{ex.scope['http_version']}",
    "s": lambda ex: ex.status,
    "B": lambda ex: ex.bytes_sent,
    "b": _bytes_or_dash,
    "f": lambda ex: header(ex.scope["headers"], b"referer") or "-",
    "a": lambda ex: header(ex.scope["headers"], b"user-agent") or "-",
    "T": lambda ex: int(ex.duration),
    "D": lambda ex: int(ex.duration * 1_000_000),
    "M": lambda ex: int(ex.duration * 1_000),
    "L": _decimal_seconds,
    "p": lambda ex: f"<{os.getpid()}>",
    "X": lambda ex: "-" if ex.complete else "X",
}
ATOM_NAMES = tuple(_ATOMS)


def _request_header(name: bytes) -> Callable[[Exchange], str]:
    return lambda ex: header(ex.scope["headers"], name) or "-"


def _response_header(name: bytes) -> Callable[[Exchange], str]:
    return lambda ex: header(ex.response_headers, name) or "-"


def _environment(name: str) -> Callable[[Exchange], str]:
    return lambda ex: escape(os.environ.get(name, "-"))


def _atom(key: str) -> Callable[[Exchange], Any]:
    """How to compute the atom `key`; '-' for one gunicorn does not know either."""
    if key in _ATOMS:
        return _ATOMS[key]
    if key.startswith("{") and len(key) > 3 and key[-2] == "}":
        name, kind = key[1:-2], key[-1]
        if kind == "i":
            return _request_header(name.lower().encode("latin-1"))
        if kind == "o":
            return _response_header(name.lower().encode("latin-1"))
        if kind == "e":
            # gunicorn reads the WSGI environ; ketch (like Hypercorn) the process's
            return _environment(name.upper() if name.upper() in os.environ else name)
    return lambda ex: "-"


class AccessFormat:
    """A parsed `--access-log-format`: `line(exchange)` is the formatted line."""

    def __init__(self, fmt: str) -> None:
        self.fmt = fmt
        self.atoms = {key: _atom(key) for key in _ATOM.findall(fmt)}
        try:  # a malformed format fails here, once, naming the option
            fmt % dict.fromkeys(self.atoms, 0)
        except (ValueError, TypeError, KeyError) as exc:
            raise ConfigError(
                f"--access-log-format {fmt!r} is not a format of %(atom)s fields: {exc}"
            ) from None

    def line(self, exchange: Exchange) -> str:
        return self.fmt % {key: atom(exchange) for key, atom in self.atoms.items()}
