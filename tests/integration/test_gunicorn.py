"""gunicorn with ketch's worker classes, from docs/deploy/gunicorn.conf.py:
four workers serving HTTPS."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import pytest
from support import KetchProcess, child_pids, free_port, wait_for
from support.deploy import app_dir, certificates, program, write


@pytest.mark.parametrize("worker", ["KetchWorker", "KetchH11Worker"])
def test_gunicorn_recipe(tmp_path: Path, worker: str) -> None:
    gunicorn = program("gunicorn", "pip install 'ketch-supervisor[gunicorn]'")
    certs = certificates(tmp_path)
    port = free_port()
    conf = write(
        "gunicorn.conf.py", tmp_path, port=port, certfile=certs.certfile, keyfile=certs.keyfile
    )
    args = ["-c", str(conf), "main:app", "--no-control-socket"]
    if worker != "KetchWorker":  # the documented alternative, chosen on the command line
        args += ["-k", f"ketch.supervisor.gunicorn.{worker}"]
    with KetchProcess(args, command=[gunicorn], cwd=app_dir(tmp_path)) as process:
        wait_for(lambda: len(child_pids(process.proc.pid)) == 4, timeout=30)
        process.wait_for_output(r"(?s)(ketch running on https.*){4}", timeout=30)
        workers = child_pids(process.proc.pid)
        seen: set[int] = set()
        with httpx.Client(verify=certs.client_context()) as client:

            def answered_by_two() -> bool:
                # a new connection each time, so that another worker may accept it
                response = client.get(f"https://127.0.0.1:{port}/", headers={"Connection": "close"})
                assert response.headers["server"] == "ketch"
                data = response.json()
                assert data["scheme"] == "https"
                seen.add(data["pid"])
                return len(seen) >= 2

            wait_for(answered_by_two, timeout=20)
        assert seen <= workers
        process.signal(signal.SIGTERM)
        assert process.wait(30) == 0
