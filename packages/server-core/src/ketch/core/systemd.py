"""systemd: socket activation and readiness notification, from the standard library.

- Socket activation (sd_listen_fds(3)): when `LISTEN_PID` names this process,
  systemd has passed `LISTEN_FDS` listening sockets as file descriptors 3, 4, ...
- Notification (sd_notify(3)): datagrams such as `READY=1` to the UNIX socket
  named by `NOTIFY_SOCKET` (a path, or an abstract name starting with `@`).
  With `WATCHDOG_USEC`, systemd restarts the service unless it sends
  `WATCHDOG=1` at least that often; ketch sends it every half of it.

Both read their variables once and remove them from the environment, so that
the workers and whatever the application starts do not take systemd's sockets
or speak to systemd in ketch's name.
"""

from __future__ import annotations

import logging
import os
import socket
import time

logger = logging.getLogger("ketch.error")

LISTEN_FDS_START = 3  # SD_LISTEN_FDS_START


def listen_fds() -> list[int]:
    """The file descriptors systemd passed to this process (none when it was not
    socket-activated), taking LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES out of
    the environment."""
    pid = os.environ.pop("LISTEN_PID", "")
    count = os.environ.pop("LISTEN_FDS", "")
    os.environ.pop("LISTEN_FDNAMES", None)
    if not (pid.isdigit() and count.isdigit()) or int(pid) != os.getpid():
        return []  # not for us: inherited from a process systemd started
    return list(range(LISTEN_FDS_START, LISTEN_FDS_START + int(count)))


class Notifier:
    """Sends sd_notify(3) messages; does nothing when systemd did not ask for them
    (NOTIFY_SOCKET unset: not started by systemd as `Type=notify`)."""

    def __init__(self, address: str | None = None, watchdog_usec: int | None = None) -> None:
        self.address = address
        # half the watchdog's timeout, as sd_watchdog_enabled(3) advises
        self.watchdog_interval = watchdog_usec / 2e6 if address and watchdog_usec else None
        self._sock: socket.socket | None = None
        self._warned = False

    @classmethod
    def from_environment(cls) -> Notifier:
        """NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID, taken out of the environment."""
        address = os.environ.pop("NOTIFY_SOCKET", "") or None
        usec = os.environ.pop("WATCHDOG_USEC", "")
        pid = os.environ.pop("WATCHDOG_PID", "")
        if address is not None and not address.startswith(("/", "@")):
            logger.warning("NOTIFY_SOCKET=%s is not a UNIX socket: not notifying systemd", address)
            address = None
        for_us = not pid or (pid.isdigit() and int(pid) == os.getpid())
        return cls(address, int(usec) if usec.isdigit() and for_us else None)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *fields: str) -> None:
        """One message of `NAME=value` lines. Never blocks and never raises: a
        message systemd cannot take is logged once and dropped."""
        if self.address is None:
            return
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._sock.setblocking(False)
            self._sock.sendto("\n".join(fields).encode(), target)
        except OSError as exc:
            if not self._warned:
                self._warned = True
                logger.warning("Cannot notify systemd at %s: %s", self.address, exc)

    def ready(self, status: str = "") -> None:
        self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def reloading(self) -> None:
        """The unit is `reloading` until READY=1 comes again."""
        now_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.send("RELOADING=1", f"MONOTONIC_USEC={now_usec}")

    def stopping(self, status: str = "") -> None:
        self.send("STOPPING=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> None:
        self.send(f"STATUS={text}")

    def watchdog(self) -> None:
        """Alive and well: to send every `watchdog_interval` seconds when set."""
        self.send("WATCHDOG=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
