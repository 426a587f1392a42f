from __future__ import annotations

import httpx
from support import KetchProcess, run_ketch


def test_third_party_plugin_is_listed_in_help() -> None:
    result = run_ketch(["--help"])
    assert result.returncode == 0
    assert "[auto|example|h11|httptools]" in result.stdout.replace("\n", "")


def test_third_party_plugin_serves_with_http_name() -> None:
    with KetchProcess(["support.apps:hello", "--port", "0", "--http", "example"]) as ketch:
        port = ketch.port()
        response = httpx.get(f"http://127.0.0.1:{port}/")
    assert response.status_code == 200
    assert response.text == "Hello, world!"
    assert response.headers["x-served-by"] == "ketch-plugin-example"
    assert response.headers["server"] == "ketch"
