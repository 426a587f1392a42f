"""The benchmark driver (benchmarks/bench.py) works: a quick run of ketch and
Uvicorn on hello writes results with real numbers, and the chart draws from them.

Needs wrk: skipped without it here, failed without it in CI (CI=true).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support import REPO_DIR
from support.deploy import require

pytestmark = pytest.mark.slow
BENCH = REPO_DIR / "benchmarks"


def test_quick_run_measures_both_servers(tmp_path: Path) -> None:
    wrk = shutil.which("wrk")
    require(wrk, "wrk", "apt install wrk")
    results = tmp_path / "results.json"
    command = [sys.executable, str(BENCH / "bench.py"), "--quick", "--scenarios", "hello"]
    command += ["--servers", "uvicorn,ketch", "--warmup", "0", "--json", str(results)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=45, check=False)
    assert done.returncode == 0, done.stdout + done.stderr

    data = json.loads(results.read_text())
    assert data["complete"]
    assert set(data["servers"]) == {"uvicorn", "ketch"}
    hello = data["scenarios"]["hello"]
    assert {run["server"] for run in hello["runs"]} == {"uvicorn", "ketch"}
    for name in ("uvicorn", "ketch"):
        row = hello["summary"][name]
        assert row["runs"] == 1, row
        assert row["rate"] > 0, row
        assert row["errors"] == 0, row
        assert row["cpu_us_per_req"] > 0, row
    assert hello["summary"]["ketch"]["paired_ratio"] > 0

    chart = tmp_path / "chart.png"
    command = [sys.executable, str(BENCH / "chart.py"), "--json", str(results)]
    command += ["--chart", str(chart)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert chart.read_bytes().startswith(b"\x89PNG")
