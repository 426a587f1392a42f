"""`ketch --workers 2 --config FILE`: a SIGHUP rereads the file, and the new
workers serve its settings, without a failed request; what the parent owns is
kept with a warning; a bad file or an app that does not start keeps the
running workers."""

from __future__ import annotations

import os
import signal
import ssl
from pathlib import Path

import httpx
from support import Hammer, KetchProcess, free_port, wait_for, wait_workers, worker_pids
from support.deploy import certificates


def _settings(
    port: int,
    version: int,
    app: str = "support.apps:scope_json",
    workers: int = 2,
    access_log: bool = True,
) -> str:
    return (
        f'app = "{app}"\nport = {port}\nworkers = {workers}\n'
        f'headers = ["X-Version: {version}"]\naccess_log = {str(access_log).lower()}\n'
    )


def _versions(url: str, count: int = 10) -> set[str]:
    with httpx.Client(timeout=10) as client:
        return {client.get(url).headers["x-version"] for _ in range(count)}


def test_sighup_serves_the_reread_file_without_a_failed_request(tmp_path: Path) -> None:
    config = tmp_path / "ketch.toml"
    port = free_port()
    config.write_text(_settings(port, 1, app="support.apps:hello", access_log=False))
    url = f"http://127.0.0.1:{port}/"
    with KetchProcess(["--config", str(config)]) as ketch:
        assert ketch.port() == port
        parent = ketch.proc.pid
        wait_workers(parent, 2)
        assert _versions(url) == {"1"}
        first = worker_pids(parent)
        with Hammer(url, threads=4) as hammer:
            hammer.wait_for_requests(50)
            # another app, header and logging; and a port and a pool size that a
            # rolling restart cannot apply
            config.write_text(_settings(free_port(), 2, workers=3))
            ketch.signal(signal.SIGHUP)
            wait_for(lambda: not (worker_pids(parent) & first), timeout=60)
            hammer.wait_for_requests(50)
        assert hammer.failures == []
        assert _versions(url) == {"2"}
        assert httpx.get(f"{url}after", timeout=10).json()["path"] == "/after"
        ketch.wait_for_output(r'"GET /after HTTP/1.1" 200')  # access_log = true now
        assert len(worker_pids(parent)) == 2
    output = ketch.output
    assert f"Reread {config}: app, access_log, headers changed" in output
    assert f"{config}: port changed, but only a restart of ketch can apply it" in output
    assert f"keeping {port}" in output
    assert f"{config}: workers changed, but only a restart" in output
    assert '"GET / HTTP/1.1"' not in output.partition("Received SIGHUP")[0]  # access_log = false


def test_a_bad_file_or_app_at_sighup_keeps_the_running_workers(tmp_path: Path) -> None:
    config = tmp_path / "ketch.toml"
    port = free_port()
    config.write_text(_settings(port, 1))
    url = f"http://127.0.0.1:{port}/"
    with KetchProcess(["--config", str(config)]) as ketch:
        ketch.wait_started()
        parent = ketch.proc.pid
        wait_workers(parent, 2)
        assert _versions(url) == {"1"}
        running = worker_pids(parent)

        config.write_text(_settings(port, 2).replace("workers", "wrokers"))
        ketch.signal(signal.SIGHUP)
        ketch.wait_for_output(
            rf'ERROR: +{config}: unknown setting "wrokers"; did you mean "workers"\?; '
            "keeping the running workers"
        )
        assert worker_pids(parent) == running
        assert _versions(url) == {"1"}

        # a file that reads well, but whose app does not import: the replacement
        # does not start, and the running workers stay
        config.write_text(_settings(port, 2, app="support.apps:no_such_app"))
        ketch.signal(signal.SIGHUP)
        ketch.wait_for_output(r"did not start serving; keeping the running workers", timeout=30)
        assert worker_pids(parent) == running
        assert _versions(url) == {"1"}

        # a worker that dies now is replaced with the settings that serve, not
        # with those that failed (which would stop the whole server)
        victim = min(running)
        os.kill(victim, signal.SIGKILL)
        ketch.wait_for_output(rf"Worker \[{victim}\] died")

        def a_new_worker_serves() -> bool:
            response = httpx.get(url, timeout=10)
            assert response.headers["x-version"] == "1"
            return response.json()["pid"] not in running

        wait_for(a_new_worker_serves, timeout=20)
        assert ketch.proc.poll() is None


def test_sighup_serves_the_certificate_the_file_names_now(tmp_path: Path) -> None:
    """TLS files are read by each worker: a renewed certificate at a new path
    is served after a SIGHUP, with no restart of the parent."""
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    new.mkdir()
    certificates(old)
    certificates(new)
    config = tmp_path / "ketch.toml"
    port = free_port()

    def settings(directory: Path) -> str:
        return (
            f'app = "support.apps:no_such_app"\nport = {port}\nworkers = 2\n'
            f'ssl_certfile = "{directory / "cert.pem"}"\nssl_keyfile = "{directory / "key.pem"}"\n'
        )

    def served() -> str:
        return ssl.DER_cert_to_PEM_cert(
            ssl.PEM_cert_to_DER_cert(ssl.get_server_certificate(("127.0.0.1", port), timeout=10))
        )

    def first_certificate(directory: Path) -> str:
        pem = (directory / "cert.pem").read_text()
        return pem[: pem.index("-----END CERTIFICATE-----") + 26]

    config.write_text(settings(old))
    # the app from the command line, which stays above the file at the SIGHUP
    with KetchProcess(["support.apps:hello", "--config", str(config)]) as ketch:
        ketch.wait_started()
        parent = ketch.proc.pid
        wait_workers(parent, 2)
        assert served() == first_certificate(old)
        running = worker_pids(parent)
        config.write_text(settings(new))
        ketch.signal(signal.SIGHUP)
        wait_for(lambda: not (worker_pids(parent) & running), timeout=60)
        assert served() == first_certificate(new)
    assert f"Reread {config}: ssl_keyfile, ssl_certfile changed" in ketch.output
