"""Process managers that own the listening socket and hand it to ketch.

supervisord (`fcgi-program`, `--fd 0`) and circus (`$(circus.sockets.web)`),
each from its file in docs/deploy/. systemd is in test_systemd.py.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx
from support import KetchProcess, free_port, wait_for
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
