"""Behind a CDN (docs/deploy/cdn.sh): the client address through the CDN's
edge, and the default Cache-Control that the app's own replaces."""

from __future__ import annotations

from pathlib import Path

import httpx
from support import KetchProcess, free_port
from support.deploy import app_dir, shell_commands

CDN_NETWORKS = "198.51.100.0/24,2001:db8:cafe::/48"


def test_cdn_recipe(tmp_path: Path) -> None:
    port = free_port()
    ((env, argv),) = shell_commands("cdn.sh", port=port, cdn_networks=CDN_NETWORKS)
    with KetchProcess(argv[1:], command=argv[:1], cwd=app_dir(tmp_path), env=env) as ketch:
        ketch.wait_started()
        url = f"http://127.0.0.1:{port}"

        def client(forwarded_for: str) -> str:
            data = httpx.get(url, headers={"X-Forwarded-For": forwarded_for}).json()
            return str(data["client"][0])

        # client -> CDN edge -> nginx (127.0.0.1, the peer here) -> ketch
        assert client("203.0.113.50, 198.51.100.20") == "203.0.113.50"
        # a hop outside the CDN's networks is where trust ends
        assert client("203.0.113.50, 192.0.2.1") == "192.0.2.1"
        assert client("203.0.113.50, 198.51.100.20, 192.0.2.1") == "192.0.2.1"

        default = httpx.get(url + "/")
        assert default.headers.get_list("cache-control") == ["private, no-store"]
        cached = httpx.get(url + "/cached")
        assert cached.headers.get_list("cache-control") == ["public, max-age=60"]
        assert cached.headers["date"]  # CDNs compute the age of a copy from Date
