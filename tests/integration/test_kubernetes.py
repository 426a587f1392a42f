"""The Kubernetes recipe (docs/deploy/k8s.yaml): the container's command run the
way the kubelet runs it, its probes answered, and its shutdown timings proven:
SIGTERM after preStop, in-flight requests finished, exit well within
terminationGracePeriodSeconds."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import httpx
import yaml
from support import KetchProcess, RawConnection, free_port
from support.deploy import KETCH, app_dir, render


def _deployment() -> dict[str, Any]:
    documents = list(yaml.safe_load_all(render("k8s.yaml", image="example/app:1")))
    kinds = {document["kind"]: document for document in documents}
    assert kinds["Service"]["spec"]["ports"][0]["targetPort"] == "http"
    deployment: dict[str, Any] = kinds["Deployment"]
    return deployment


def _options(args: list[str]) -> dict[str, str]:
    return dict(arg.removeprefix("--").split("=", 1) for arg in args if arg.startswith("--"))


def test_timings_fit_together() -> None:
    pod = _deployment()["spec"]["template"]["spec"]
    container = pod["containers"][0]
    options = _options(container["args"])
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    # preStop runs first, then SIGTERM: the drain must fit in what is left
    drain = int(options["timeout-graceful-shutdown"])
    assert pod["terminationGracePeriodSeconds"] > int(pre_stop[1]) + drain
    port = container["ports"][0]
    assert port["name"] == "http"
    assert int(options["port"]) == port["containerPort"]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["port"] == "http"


def test_container_command_serves_probes_and_drains(tmp_path: Path) -> None:
    pod = _deployment()["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["command"] == ["ketch"]
    port = free_port()
    # the kubelet's command, on loopback and a free port instead of 0.0.0.0:8000
    args = [
        {"--host": "--host=127.0.0.1", "--port": f"--port={port}"}.get(arg.split("=")[0], arg)
        for arg in container["args"]
    ]
    workers = int(_options(args)["workers"])
    with KetchProcess(args, command=[KETCH], cwd=app_dir(tmp_path)) as ketch:
        ketch.wait_for_output(r"(?s)" + r"ketch running on.*" * (workers + 1), timeout=30)
        for probe in ("readinessProbe", "livenessProbe"):
            path = container[probe]["httpGet"]["path"]
            timeout = container[probe]["timeoutSeconds"]
            response = httpx.get(f"http://127.0.0.1:{port}{path}", timeout=timeout)
            assert response.status_code == 200
        with RawConnection(port, timeout=30) as conn:
            conn.send(b"GET /slow?s=1 HTTP/1.1\r\nHost: x\r\n\r\n")
            ketch.wait_for_output("slow request started")
            stopped = time.monotonic()
            ketch.signal(signal.SIGTERM)  # what the kubelet does once preStop is over
            response = conn.read_response()
            assert response.status == 200
            assert response.body == b"slept"
        drain = int(_options(args)["timeout-graceful-shutdown"])
        assert ketch.wait(drain + 5) == 0
        assert time.monotonic() - stopped < drain
