"""The helpers the deployment tests share: a missing peer skips here but fails in
CI, and the documented files are filled in completely."""

from __future__ import annotations

import pytest
from support.deploy import render, require, shell_commands


def test_missing_peer_skips_locally(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="nginx is not available"):
        require(None, "nginx", "apt-get install nginx")


def test_missing_peer_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="apt-get install nginx"):
        require(None, "nginx", "apt-get install nginx")
    require("/usr/sbin/nginx", "nginx", "apt-get install nginx")  # present: nothing happens


def test_every_placeholder_must_be_filled() -> None:
    with pytest.raises(AssertionError, match="no value for"):
        render("nginx-tcp.conf", listen=8080)
    text = render("nginx-tcp.conf", listen=8080, ketch_port=8000)
    assert "{{" not in text
    assert "server 127.0.0.1:8000" in text


def test_shell_commands_with_environment() -> None:
    values = {"host": "h", "port": 1, "certfile": "c", "keyfile": "k", "password": "a b"}
    plain, flag, env = shell_commands("https.sh", **values)
    assert plain[0] == {}
    assert flag[1][-2:] == ["--ssl-keyfile-password", "a b"]
    assert env[0] == {"KETCH_SSL_KEYFILE_PASSWORD": "a b"}
    assert env[1][0].endswith("/ketch")
