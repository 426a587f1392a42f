"""Starting ketch from Python, with the scripts of docs/deploy/ (serve.py, embed.py)."""

from __future__ import annotations

import shutil
import signal
import sys
from pathlib import Path

import httpx
import pytest
from support import KetchProcess, free_port, wait_workers
from support.deploy import DEPLOY_DIR, app_dir


@pytest.mark.parametrize(("script", "workers"), [("serve.py", 2), ("embed.py", 0)])
def test_script(tmp_path: Path, script: str, workers: int) -> None:
    directory = app_dir(tmp_path)
    shutil.copy(DEPLOY_DIR / script, directory / script)
    port = free_port()
    with KetchProcess(
        [script], command=[sys.executable], cwd=directory, env={"PORT": str(port)}
    ) as process:
        process.wait_for_output(r"(?s)" + r"ketch running on.*" * (workers + 1), timeout=30)
        if workers:
            wait_workers(process.proc.pid, workers)
        response = httpx.get(f"http://127.0.0.1:{port}/")
        assert response.status_code == 200
        assert response.json()["client"][0] == "127.0.0.1"
        process.signal(signal.SIGTERM)
        assert process.wait(30) == 0
    assert "Finished server process" in process.output
