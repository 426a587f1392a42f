"""Process managers that own the listening socket and hand it to ketch.

supervisord (`fcgi-program`, `--fd 0`), circus (`$(circus.sockets.web)`) and
systemd socket activation (`--fd 3`), each from its file in docs/deploy/.
"""

from __future__ import annotations

import configparser
import os
import shlex
import signal
import socket
import sys
from pathlib import Path

import httpx
from support import Hammer, KetchProcess, free_port, wait_for, worker_pids
from support.deploy import VENV, app_dir, program, render, wait_listening, write


def _pids_answering(url: str, count: int, timeout: float = 20) -> set[int]:
    """Ask until `count` different processes have answered."""
    pids: set[int] = set()

    def enough() -> bool:
        response = httpx.get(url, timeout=5)
        assert response.status_code == 200
        pids.add(response.json()["pid"])
        return len(pids) >= count

    wait_for(enough, timeout=timeout)
    return pids


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # a zombie child of ours has exited too
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


SUPERVISORD_MAIN = """\
[supervisord]
nodaemon=true
logfile={tmp}/supervisord.log
pidfile={tmp}/supervisord.pid
childlogdir={tmp}

[include]
files = {program}
"""


def test_supervisord_fcgi_program_hands_the_socket_to_two_processes(tmp_path: Path) -> None:
    supervisord = program("supervisord", "apt-get install supervisor")
    port = free_port()
    recipe = write(
        "supervisord.conf",
        tmp_path,
        port=port,
        venv=VENV,
        app_dir=app_dir(tmp_path),
        log_dir=tmp_path,
    )
    main = tmp_path / "main.conf"
    main.write_text(SUPERVISORD_MAIN.format(tmp=tmp_path, program=recipe))
    with KetchProcess(["-c", str(main)], command=[supervisord]) as process:
        wait_listening(("127.0.0.1", port), process)
        pids = _pids_answering(f"http://127.0.0.1:{port}/", count=2)
        assert len(pids) == 2
        for number in (0, 1):
            log = tmp_path / f"ketch-{number}.log"
            wait_for(lambda log=log: log.exists() and "ketch running on" in log.read_text())
        process.signal(signal.SIGTERM)
        process.wait(30)
    wait_for(lambda: all(_gone(pid) for pid in pids), timeout=10)
    for number in (0, 1):
        assert "Finished server process" in (tmp_path / f"ketch-{number}.log").read_text()


CIRCUS_MAIN = """\
[circus]
endpoint = ipc://{tmp}/circus-endpoint
pubsub_endpoint = ipc://{tmp}/circus-pubsub
stats_endpoint = ipc://{tmp}/circus-stats
statsd = False

"""


def test_circus_hands_the_socket_to_two_processes(tmp_path: Path) -> None:
    circusd = program("circusd", "pip install circus")
    port = free_port()
    recipe = render("circus.ini", port=port, venv=VENV, app_dir=app_dir(tmp_path))
    ini = tmp_path / "circus.ini"
    ini.write_text(CIRCUS_MAIN.format(tmp=tmp_path) + recipe)
    with KetchProcess([str(ini)], command=[circusd], cwd=tmp_path) as process:
        wait_listening(("127.0.0.1", port), process)
        pids = _pids_answering(f"http://127.0.0.1:{port}/", count=2)
        assert len(pids) == 2
        process.signal(signal.SIGTERM)
        process.wait(30)
    wait_for(lambda: all(_gone(pid) for pid in pids), timeout=10)


def _unit(name: str, **values: object) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(render(name, **values))
    return parser


SYSTEMD_EXEC = """
import os, sys
fd = int(sys.argv[1])
if fd != 3:
    os.dup2(fd, 3)
    os.close(fd)
os.environ["LISTEN_PID"] = str(os.getpid())
os.execv(sys.argv[2], sys.argv[2:])
"""


def test_systemd_socket_activation(tmp_path: Path) -> None:
    """What systemd does with ketch.socket and ketch.service: bind the socket,
    start ExecStart with it as fd 3 (LISTEN_FDS=1), send SIGHUP for ExecReload
    and SIGTERM to stop."""
    port = free_port()
    listen = _unit("ketch.socket", listen=f"127.0.0.1:{port}")["Socket"]
    service = _unit("ketch.service", venv=VENV, app_dir=app_dir(tmp_path))["Service"]
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert service["KillSignal"] == "SIGTERM"

    host, _, listen_port = listen["ListenStream"].rpartition(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, int(listen_port)))
    sock.listen(int(listen["Backlog"]))
    # systemd puts the socket at fd 3 and names the process in LISTEN_PID;
    # SYSTEMD_EXEC does the same here, then execs ExecStart.
    argv = shlex.split(service["ExecStart"])
    env = {"LISTEN_FDS": "1", "LISTEN_FDNAMES": "ketch.socket"}
    with (
        sock,
        KetchProcess(
            ["-c", SYSTEMD_EXEC, str(sock.fileno()), *argv],
            command=[sys.executable],
            cwd=service["WorkingDirectory"],
            env=env,
            pass_fds=(sock.fileno(),),
        ) as ketch,
    ):
        url = f"http://127.0.0.1:{port}/"
        before = _pids_answering(url, count=2)
        assert worker_pids(ketch.proc.pid) == before
        # systemctl reload: workers replaced one by one, no request refused
        with Hammer(url, threads=2) as hammer:
            hammer.wait_for_requests(20)
            ketch.signal(signal.SIGHUP)
            wait_for(lambda: not (worker_pids(ketch.proc.pid) & before), timeout=30)
            wait_for(lambda: len(worker_pids(ketch.proc.pid)) == 2, timeout=30)
            hammer.wait_for_requests(20)
        assert hammer.failures == []
        ketch.signal(signal.SIGTERM)
        assert ketch.wait(int(service["TimeoutStopSec"])) == 0
