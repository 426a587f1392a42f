"""Many machines: nginx balancing over two ketch servers (docs/deploy/nginx-lb.conf,
many-machines.sh), restarted one at a time under load without a failed request.

nginx retries a GET on the other server by itself; a POST that was already sent
is never retried, so the POSTs in flight when a server gets SIGTERM must be
finished by that server's graceful shutdown.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import httpx
from support import KetchProcess, free_port, wait_for, wait_workers, worker_pids
from support.deploy import app_dir, nginx, shell_command, write

WORKERS = 2


class Load:
    """Clients sending GET / and slow POSTs through nginx, counting failures."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.ok = {"GET": 0, "POST": 0}
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(method,), daemon=True)
            for method in ("GET", "GET", "POST", "POST")
        ]

    def _run(self, method: str) -> None:
        with httpx.Client(timeout=15) as client:
            while not self._stop.is_set():
                try:
                    if method == "GET":
                        response = client.get(self.url)
                    else:  # in flight for 0.2 s: some are running at each SIGTERM
                        response = client.post(self.url + "slow?s=0.2", content=b"order")
                except httpx.HTTPError as exc:
                    self.failures.append(f"{method}: {type(exc).__name__}: {exc}")
                    continue
                if response.status_code == 200:
                    self.ok[method] += 1
                else:
                    self.failures.append(f"{method}: status {response.status_code}")

    def wait_for_requests(self, count: int) -> None:
        start = dict(self.ok)
        wait_for(lambda: all(self.ok[m] - start[m] >= count for m in self.ok), timeout=20)

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=20)


def _start(port: int, cwd: Path) -> KetchProcess:
    argv = shell_command("many-machines.sh", host="127.0.0.1", port=port, balancer="127.0.0.1")
    assert f"--workers {WORKERS}" in " ".join(argv)
    ketch = KetchProcess(argv[1:], command=argv[:1], cwd=cwd)  # its own process group
    wait_workers(ketch.proc.pid, WORKERS)
    ketch.wait_for_output(r"(?s)" + r"ketch running on.*" * (WORKERS + 1), timeout=20)
    return ketch


def test_rolling_restart_behind_nginx_drops_nothing(tmp_path: Path) -> None:
    cwd = app_dir(tmp_path)
    listen, ports = free_port(), [free_port(), free_port()]
    site = write(
        "nginx-lb.conf",
        tmp_path,
        listen=f"127.0.0.1:{listen}",
        server_a=f"127.0.0.1:{ports[0]}",
        server_b=f"127.0.0.1:{ports[1]}",
    )
    url = f"http://127.0.0.1:{listen}/"
    servers = [_start(port, cwd) for port in ports]
    try:
        with nginx(tmp_path, site, listen) as balancer, Load(url) as load:
            load.wait_for_requests(5)
            for index, port in enumerate(ports):
                servers[index].signal(signal.SIGTERM)
                assert servers[index].wait(30) == 0
                servers[index].stop()
                servers[index] = _start(port, cwd)
                # nginx tries a server again once its fail_timeout is over;
                # restart the next one only when this one is back in rotation
                fresh = worker_pids(servers[index].proc.pid)
                wait_for(lambda fresh=fresh: httpx.get(url).json()["pid"] in fresh, timeout=15)
                load.wait_for_requests(5)
        assert load.failures == [], balancer.output
    finally:
        for server in servers:
            server.stop()
