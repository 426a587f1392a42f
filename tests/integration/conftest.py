from __future__ import annotations

import fcntl
import shutil
from pathlib import Path

import pytest
from support.release import checkout, run_job


@pytest.fixture(scope="session")
def release(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    """A checkout in which the release workflow's build job has run: its
    `dist/` holds every wheel and sdist, metadata checked. Built once per
    test session, shared by the xdist workers (about 15 s)."""
    if worker_id == "master":  # not under xdist
        shared = tmp_path_factory.getbasetemp()
    else:
        shared = tmp_path_factory.getbasetemp().parent  # this session's, common to the workers
    ketch = shared / "release" / "ketch"
    with open(shared / "release.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not ketch.is_dir():
            building = shared / "release" / "building"
            shutil.rmtree(building, ignore_errors=True)  # a failed attempt's
            run_job("build", checkout(building))
            building.rename(ketch)
    return ketch
