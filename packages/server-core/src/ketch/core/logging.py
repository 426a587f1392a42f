"""Console logging in Uvicorn's format or in JSON, under the `ketch` logger names.

Loggers: `ketch` (parent), `ketch.error` (server messages, to stderr) and
`ketch.access` (one line per exchange, to stdout, written when the response is
complete or the connection ended). Formatters accept the same `fmt` fields as
Uvicorn's (`%(levelprefix)s`, `%(client_addr)s`, `%(request_line)s`,
`%(status_code)s`), so existing log configurations port by renaming `uvicorn`
to `ketch`. `JSONFormatter` writes each record as one JSON object per line
(`--log-format json`). An access record carries its exchange
(`record.exchange`, a `ketch.core.exchange.Exchange`).
"""

from __future__ import annotations

import http
import json
import logging
import logging.config
import os
import sys
import time
from configparser import RawConfigParser
from copy import copy, deepcopy
from typing import IO, TYPE_CHECKING, Any, Literal

from ketch.core.access import INCOMPLETE, header_value, method_of, uvicorn_args

if TYPE_CHECKING:
    from ketch.core.config import Config
    from ketch.core.exchange import Exchange

TRACE_LOG_LEVEL = 5
logging.addLevelName(TRACE_LOG_LEVEL, "TRACE")

LOG_LEVELS: dict[str, int] = {
    "critical": logging.CRITICAL,
    "error": logging.ERROR,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
    "trace": TRACE_LOG_LEVEL,
}

LOGGING_CONFIG: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "default": {
            "()": "ketch.core.logging.DefaultFormatter",
            "fmt": "%(levelprefix)s %(message)s",
            "use_colors": None,
        },
        "access": {
            "()": "ketch.core.logging.AccessFormatter",
            "fmt": '%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s',
        },
    },
    "handlers": {
        "default": {
            "formatter": "default",
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stderr",
        },
        "access": {
            "formatter": "access",
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stdout",
        },
    },
    "loggers": {
        "ketch": {"handlers": ["default"], "level": "INFO", "propagate": False},
        "ketch.error": {"level": "INFO"},
        "ketch.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
    },
}

# --log-format json: the same handlers, every record one JSON object per line
JSON_LOGGING_CONFIG: dict[str, Any] = {
    **LOGGING_CONFIG,
    "formatters": {
        "default": {"()": "ketch.core.logging.JSONFormatter"},
        "access": {"()": "ketch.core.logging.JSONFormatter"},
    },
}

_LEVEL_COLOURS = {
    TRACE_LOG_LEVEL: "34",  # blue
    logging.DEBUG: "36",  # cyan
    logging.INFO: "32",  # green
    logging.WARNING: "33",  # yellow
    logging.ERROR: "31",  # red
    logging.CRITICAL: "91",  # bright red
}


def _paint(text: str, code: str) -> str:
    return f"\x1b[{code}m{text}\x1b[0m"


def _stream_is_tty(stream: IO[Any]) -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class DefaultFormatter(logging.Formatter):
    """`%(levelprefix)s`: the level name and a colon, padded, coloured on a TTY."""

    stream: IO[Any] = sys.stderr

    def __init__(
        self,
        fmt: str | None = None,
        datefmt: str | None = None,
        style: Literal["%", "{", "$"] = "%",
        use_colors: bool | None = None,
    ) -> None:
        self.use_colors = _stream_is_tty(self.stream) if use_colors is None else use_colors
        super().__init__(fmt=fmt, datefmt=datefmt, style=style)

    def formatMessage(self, record: logging.LogRecord) -> str:
        record = copy(record)
        name = record.levelname
        padding = " " * max(0, 8 - len(name))
        if self.use_colors:
            name = _paint(name, _LEVEL_COLOURS.get(record.levelno, "0"))
            if "color_message" in record.__dict__:
                record.msg = record.__dict__["color_message"]
                record.__dict__["message"] = record.getMessage()
        record.__dict__["levelprefix"] = f"{name}:{padding}"
        return super().formatMessage(record)


class AccessFormatter(DefaultFormatter):
    """Adds `%(client_addr)s`, `%(request_line)s` and `%(status_code)s` from the
    record's exchange (or its arguments, (client, method, path, http_version,
    status), as Uvicorn passes them). A response that did not go out whole is
    said after the line: `... 200 OK (disconnected)`."""

    stream = sys.stdout

    def formatMessage(self, record: logging.LogRecord) -> str:
        record = copy(record)
        exchange: Exchange | None = record.__dict__.get("exchange")
        args = uvicorn_args(exchange) if exchange is not None else record.args
        if isinstance(args, tuple) and len(args) == 5:
            client_addr, method, full_path, http_version, status_code = args
            record.__dict__.update(
                client_addr=client_addr,
                request_line=f"{method} {full_path} HTTP/{http_version}",
                status_code=self.status_text(int(status_code)),  # type: ignore[call-overload]
            )
        line = super().formatMessage(record)
        if exchange is not None and not exchange.complete:
            line = f"{line} {INCOMPLETE}"
        return line

    def status_text(self, status_code: int) -> str:
        try:
            phrase = http.HTTPStatus(status_code).phrase
        except ValueError:
            phrase = ""
        text = f"{status_code} {phrase}".rstrip()
        if self.use_colors:
            colour = {1: "37", 2: "32", 3: "33", 4: "31", 5: "91"}.get(status_code // 100, "0")
            text = _paint(text, colour)
        return text


class JSONFormatter(logging.Formatter):
    """Each record as one JSON object on one line: `time` (RFC 3339, UTC),
    `level`, `logger`, `message`, `pid`; an exception's `traceback` as a field;
    an access record's exchange as fields (`access_fields()`). JSON escapes
    what the client sent (control characters become `\\u` escapes)."""

    def __init__(
        self,
        fmt: str | None = None,
        datefmt: str | None = None,
        style: Literal["%", "{", "$"] = "%",
        use_colors: bool | None = None,  # accepted as by ketch's other formatters; no colours
    ) -> None:
        super().__init__(fmt=fmt, datefmt=datefmt, style=style)

    def format(self, record: logging.LogRecord) -> str:
        created = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        data: dict[str, Any] = {
            "time": f"{created}.{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage().rstrip(),
            "pid": record.process,
        }
        exchange: Exchange | None = record.__dict__.get("exchange")
        if exchange is not None:
            data.update(access_fields(exchange))
        if record.exc_info:
            data["traceback"] = self.formatException(record.exc_info)
        elif record.exc_text:
            data["traceback"] = record.exc_text
        if record.stack_info:
            data["stack"] = self.formatStack(record.stack_info)
        return json.dumps(data, default=str)


def access_fields(exchange: Exchange) -> dict[str, Any]:
    """The structured fields of an access record."""
    scope = exchange.scope
    client = scope["client"]
    headers = scope["headers"]
    fields: dict[str, Any] = {
        "client": f"{client[0]}:{client[1]}" if client else None,
        "method": method_of(exchange),
        "path": scope["path"],
        "query": scope["query_string"].decode("latin-1"),
        "status": exchange.status,
        "bytes": exchange.bytes_sent,
        "duration": round(exchange.duration, 6),
        "http_version": scope["http_version"],
        "user_agent": header_value(headers, b"user-agent"),
        "complete": exchange.complete,
    }
    if scope["type"] == "websocket":
        fields["websocket"] = True
    request_id = header_value(headers, b"x-request-id")
    if request_id is not None:
        fields["request_id"] = request_id
    return fields


def setup_logging(config: Config) -> None:
    """Configure this process's logging from `config`: once per process, by the
    `Server` that serves in it, or by `run()` in a supervisor's process."""
    log_config = config.log_config
    if isinstance(log_config, dict) and log_config == LOGGING_CONFIG:
        # ketch's own configuration (a --log-config file wins over --log-format)
        log_config = default_config(config.log_format, config.access_log_format is not None)
    configure_logging(log_config, config.log_level_number, config.access_log, config.use_colors)


def default_config(log_format: str, own_access_format: bool) -> dict[str, Any]:
    """ketch's logging configuration for --log-format, and --access-log-format
    (whose line is the whole access line in text)."""
    if log_format == "json":
        return JSON_LOGGING_CONFIG
    if own_access_format:
        access = {**LOGGING_CONFIG["formatters"]["access"], "fmt": "%(message)s"}
        return {**LOGGING_CONFIG, "formatters": {**LOGGING_CONFIG["formatters"], "access": access}}
    return LOGGING_CONFIG


def configure_logging(
    log_config: dict[str, Any] | str | os.PathLike[str] | RawConfigParser | IO[Any] | None,
    log_level: int | None,
    access_log: bool,
    use_colors: bool | None,
) -> None:
    """Apply a logging configuration: a dict, or an .ini, .json or .yaml file."""
    if log_config is not None:
        if isinstance(log_config, dict):
            config = deepcopy(log_config)  # dictConfig pops keys out of what it is given
            if use_colors in (True, False):
                config = _with_colours(config, use_colors)
            logging.config.dictConfig(config)
        elif isinstance(log_config, str | os.PathLike) and os.fspath(log_config).endswith(".json"):
            with open(log_config) as file:
                logging.config.dictConfig(json.load(file))
        elif isinstance(log_config, str | os.PathLike) and os.fspath(log_config).endswith(
            (".yaml", ".yml")
        ):
            from ketch.core.errors import ConfigError

            try:
                import yaml
            except ImportError:
                raise ConfigError(
                    "--log-config in YAML needs PyYAML: pip install 'ketch-core[yaml]'"
                ) from None
            with open(log_config) as file:
                logging.config.dictConfig(yaml.safe_load(file))
        else:
            # .ini and anything else fileConfig understands (a path, a parser, a file)
            logging.config.fileConfig(log_config, disable_existing_loggers=False)

    if log_level is not None:
        for name in ("ketch", "ketch.error", "ketch.access"):
            logging.getLogger(name).setLevel(log_level)
        logging.getLogger("ketch.asgi").setLevel(log_level)
    if not access_log:
        access = logging.getLogger("ketch.access")
        access.handlers = []
        access.propagate = False


def _with_colours(config: dict[str, Any], use_colors: bool) -> dict[str, Any]:
    config = {**config, "formatters": {**config.get("formatters", {})}}
    for name in ("default", "access"):
        formatter = config["formatters"].get(name)
        if isinstance(formatter, dict):
            config["formatters"][name] = {**formatter, "use_colors": use_colors}
    return config
