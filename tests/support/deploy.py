"""Helpers for the deployment tests: the documented files, and the real peers.

The configuration files and command lines shown in the deployment pages live
in `docs/deploy/`. The tests read those very files, fill in their `{{name}}`
placeholders (ports, paths in a temp dir) and run them, so what the pages
show is what the tests prove. Each peer (nginx, supervisord, circusd,
gunicorn) runs in its own session, on loopback or UNIX sockets in a temp
dir, and is stopped by the test.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import socket
import ssl
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme
from cryptography.hazmat.primitives import serialization

from support import REPO_DIR, KetchProcess, wait_for

DEPLOY_DIR = REPO_DIR / "docs" / "deploy"
VENV = sys.prefix
KETCH = str(Path(sys.executable).with_name("ketch"))
PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


def require(available: object, what: str, install: str) -> None:
    """Skip the test when a peer is missing here, but fail it in CI (CI=true),
    where `.ci/run` installs every peer."""
    if available:
        return
    message = f"{what} is not available: {install}"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message} (CI=true: every peer must be installed)", pytrace=False)
    pytest.skip(message)


def program(name: str, install: str) -> str:
    """The path of an installed program (`/usr/sbin` included), or skip/fail."""
    venv_path = Path(sys.executable).with_name(name)
    path = (
        str(venv_path)
        if venv_path.exists()
        else shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin"]))
    )
    require(path, name, install)
    assert path is not None
    return path


# --- the documented files -----------------------------------------------------------------
def render(name: str, **values: object) -> str:
    """The text of `docs/deploy/NAME` with its placeholders filled in; every
    placeholder in the file must be given."""
    text = (DEPLOY_DIR / name).read_text()
    missing = sorted(set(PLACEHOLDER.findall(text)) - set(values))
    assert not missing, f"{name}: no value for {missing}"
    return PLACEHOLDER.sub(lambda match: str(values[match.group(1)]), text)


def write(name: str, directory: Path, **values: object) -> Path:
    """`render()` into a file of the same name in `directory`."""
    path = directory / name
    path.write_text(render(name, **values))
    return path


def shell_commands(name: str, **values: object) -> list[tuple[dict[str, str], list[str]]]:
    """The commands of a documented shell snippet: (environment, argv) each,
    with `ketch` resolved to this environment's executable."""
    commands = []
    for line in render(name, **values).splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        words = shlex.split(line)
        env = {}
        while "=" in words[0] and not words[0].startswith("-"):
            key, _, value = words.pop(0).partition("=")
            env[key] = value
        if words[0] == "ketch":
            words[0] = KETCH
        commands.append((env, words))
    return commands


def shell_command(name: str, **values: object) -> list[str]:
    """The only command of a documented shell snippet."""
    (env, argv), *others = shell_commands(name, **values)
    assert not env and not others, f"{name} has more than one plain command"
    return argv


def app_dir(tmp: Path) -> Path:
    """A directory holding `main.py`, the user's `main:app` of the recipes."""
    directory = tmp / "app"
    directory.mkdir(exist_ok=True)
    shutil.copy(Path(__file__).with_name("deploy_app.py"), directory / "main.py")
    return directory


# --- peers ---------------------------------------------------------------------------------
def wait_listening(
    address: str | tuple[str, int], process: KetchProcess, timeout: float = 20
) -> None:
    """Wait until something accepts connections at `address` (while `process` lives)."""

    def accepting() -> bool:
        if process.proc.poll() is not None:
            raise AssertionError(f"{process.proc.args!r} exited:\n{process.output}")
        family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(1)
            try:
                sock.connect(address)
            except OSError:
                return False
            return True

    try:
        wait_for(accepting, timeout=timeout, interval=0.05)
    except TimeoutError:
        raise AssertionError(f"nothing listens on {address}:\n{process.output}") from None


NGINX_MAIN = """\
{user}
worker_processes 1;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    include {site};
}}
"""


@contextlib.contextmanager
def nginx(tmp: Path, site: Path, port: int) -> Iterator[KetchProcess]:
    """nginx in the foreground serving the documented `site` file, unprivileged:
    its main configuration only keeps every path inside `tmp`."""
    binary = program("nginx", "apt-get install nginx")
    # As root, nginx's workers would run as `nobody`, who cannot enter pytest's
    # temp dirs (the sockets, static files and certificates are there).
    user = "user root;" if os.geteuid() == 0 else ""
    conf = tmp / "nginx.conf"
    conf.write_text(NGINX_MAIN.format(user=user, tmp=tmp, site=site))
    globals_ = f"daemon off; pid {tmp}/nginx.pid; error_log stderr notice;"
    command = [binary, "-e", "stderr", "-p", str(tmp), "-c", str(conf), "-g", globals_]
    with KetchProcess([], command=command) as process:
        wait_listening(("127.0.0.1", port), process)
        yield process


@contextlib.contextmanager
def haproxy(config: Path, port: int) -> Iterator[KetchProcess]:
    """HAProxy in the foreground (-db) serving the documented `config` file."""
    binary = program("haproxy", "apt-get install haproxy")
    with KetchProcess([], command=[binary, "-db", "-f", str(config)]) as process:
        wait_listening(("127.0.0.1", port), process)
        yield process


# --- certificates ---------------------------------------------------------------------------
@dataclass
class Certificates:
    """A test CA, and a server certificate for 127.0.0.1 and localhost, as files."""

    ca: trustme.CA
    certfile: Path
    keyfile: Path

    def client_context(self) -> ssl.SSLContext:
        """What a client that trusts the CA uses."""
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context


def certificates(directory: Path, password: str | None = None) -> Certificates:
    """Certificate files in `directory`; the key encrypted when `password` is given."""
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    certfile, keyfile = directory / "cert.pem", directory / "key.pem"
    leaf.cert_chain_pems[0].write_to_path(str(certfile))
    for pem in leaf.cert_chain_pems[1:]:
        pem.write_to_path(str(certfile), append=True)
    key = leaf.private_key_pem.bytes()
    if password is not None:
        loaded = serialization.load_pem_private_key(key, password=None)
        key = loaded.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(password.encode()),
        )
    keyfile.write_bytes(key)
    return Certificates(ca, certfile, keyfile)
