"""``omopfed node keygen`` and ``omopfed node start``: how a site joins a federation.

``keygen`` makes the key pair whose public half the coordinator registers. ``start`` runs the
site's Flower SuperNode in the foreground and starts it again if it exits (see
:func:`supervise`): TLS verified against the aggregator's CA, node authentication with
the site's key, the site settings file handed to the ClientApp through ``--node-config``, its own
``FLWR_HOME`` and a local port of its own, so several sites can share a host.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import typer
from cryptography.hazmat.primitives.serialization import load_ssh_private_key

from node import keys
from node.settings import SiteSettings, load_site_settings
from node.worker import is_serving
from omopfed.clikit import err, new_app, out
from omopfed.errors import ConfigError
from omopfed.offline import child_env
from omopfed.protocol import NodeConfigKey

node_app = new_app("Join a federation: the site's SuperNode key and process.")

SettingsOption = typer.Option(..., "--settings", "-s", help="Site settings TOML file.")
_ADDRESS = re.compile(r"^[A-Za-z0-9.\-]+:\d{1,5}$|^\[[0-9A-Fa-f:]+\]:\d{1,5}$")


def default_key(site: SiteSettings) -> Path:
    """Where ``keygen`` writes the site's private key unless told otherwise."""
    return site.workspace / "keys" / "supernode"


@node_app.command("keygen")
def keygen_command(
    settings: Path = SettingsOption,
    key: Path | None = typer.Option(None, "--key", help="Private key path (default: workspace)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing key pair."),
) -> None:
    """Create the site's SuperNode key pair (ECDSA P-384, OpenSSH format)."""
    site = load_site_settings(settings)
    pair = keys.generate(key or default_key(site), comment=site.site_name, force=force)
    out.print(f"private key {pair.private} (keep it here)", highlight=False)
    out.print(f"public key  {pair.public} ({pair.fingerprint})", highlight=False)
    out.print("send the public key to the coordinator for `omopfed aggregator register-site`")


def _toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def supernode_command(
    settings_file: Path,
    site: SiteSettings,
    *,
    superlink: str,
    root_certificates: Path,
    key: Path,
    port: int,
    allowed_models: list[str],
    max_retries: int | None = None,
    worker: Path | None = None,
) -> list[str]:
    """The ``flower-supernode`` command line for this site (checked before anything starts)."""
    if not _ADDRESS.match(superlink):
        raise ConfigError(f"--superlink {superlink!r} is not HOST:PORT")
    if not root_certificates.is_file():
        raise ConfigError(f"CA certificate {root_certificates} does not exist")
    try:
        load_ssh_private_key(key.read_bytes(), None)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"cannot use the SuperNode key {key}: {exc}", hint="omopfed node keygen --settings ..."
        ) from None
    node_config = f"{NodeConfigKey.SETTINGS}={_toml_string(str(settings_file.resolve()))}"
    if allowed_models:
        node_config += f" {NodeConfigKey.ALLOWED_MODELS}={_toml_string(','.join(allowed_models))}"
    if worker is not None:
        node_config += f" {NodeConfigKey.WORKER}={_toml_string(str(worker))}"
    command = [
        "flower-supernode",
        "--superlink", superlink,
        "--root-certificates", str(root_certificates.resolve()),
        "--auth-supernode-private-key", str(key.resolve()),
        "--node-config", node_config,
        "--port", str(port or _free_port()),
    ]  # fmt: skip
    if max_retries is not None:
        command += ["--max-retries", str(max_retries)]
    return command


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@node_app.command("start")
def start_command(
    settings: Path = SettingsOption,
    superlink: str = typer.Option(..., "--superlink", help="The aggregator's HOST:PORT."),
    root_certificates: Path = typer.Option(
        ..., "--root-certificates", help="The aggregator's CA certificate (ca.crt)."
    ),
    key: Path | None = typer.Option(None, "--key", help="Private key (default: from keygen)."),
    port: int = typer.Option(0, "--port", help="Local port of this SuperNode (0: a free one)."),
    allow_models: list[str] = typer.Option(
        [], "--allow-model", help="Models this site trains (repeat; default: any)."
    ),
    max_retries: int | None = typer.Option(
        None,
        "--max-retries",
        help="Give up after this many failed connection attempts (and do not restart).",
    ),
    worker: bool = typer.Option(
        True, "--worker/--no-worker", help="Keep the training stack loaded in a worker process."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the command, start nothing."),
) -> None:
    """Run this site's Flower SuperNode in the foreground, restarting it if it exits."""
    site = load_site_settings(settings)
    address = worker_socket(site) if worker else None
    command = supernode_command(
        settings, site, superlink=superlink, root_certificates=root_certificates,
        key=key or default_key(site), port=port, allowed_models=allow_models,
        max_retries=max_retries, worker=address,
    )  # fmt: skip
    if dry_run:
        out.print(shlex.join(command), highlight=False, soft_wrap=True)
        return
    bin_dir = Path(sys.executable).parent
    env = child_env({"FLWR_HOME": str(site.workspace / "flwr")})
    env["PATH"] = os.pathsep.join([str(bin_dir), env.get("PATH", "")])  # Flower finds its helpers
    beside = bin_dir / command[0]
    target = str(beside) if beside.exists() else shutil.which(command[0])
    if target is None:
        raise ConfigError("flower-supernode is not installed", hint="pip install flwr")
    helper = None
    if address is not None and is_serving(address):
        err.print(f"the site's worker already runs at {address}; this node shares it")
    elif address is not None:
        helper = _start_worker(address, env)
    try:
        code = supervise([target, *command[1:]], env, restart=max_retries is None)
    finally:
        if helper is not None:
            _stop(helper)
    raise typer.Exit(code)


def worker_socket(site: SiteSettings) -> Path:
    """Where the site's worker listens: ``<workspace>/run/worker.sock``, or a folder of its own
    in the temporary directory when that path is too long for a Unix socket (about 100 bytes)."""
    address = (site.workspace / "run" / "worker.sock").resolve()
    if len(str(address)) > 100:
        digest = hashlib.sha256(str(address).encode()).hexdigest()[:16]
        address = Path(tempfile.gettempdir()) / f"omopfed-{digest}" / "worker.sock"
    return address


def _start_worker(address: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start ``omopfed node worker`` and wait (bounded: its imports take seconds) until it
    listens, so the first message already finds it."""
    level = logging.getLevelName(logging.getLogger().getEffectiveLevel()).lower()
    command = [
        sys.executable, "-m", "omopfed.cli", "--log-level", level,
        "node", "worker", "--socket", str(address),
    ]  # fmt: skip
    address.unlink(missing_ok=True)
    helper = subprocess.Popen(command, env=env)
    deadline = time.monotonic() + 120
    while not address.exists():
        if helper.poll() is not None or time.monotonic() > deadline:
            _stop(helper)
            raise ConfigError("the site worker did not start", hint="try --no-worker")
        time.sleep(0.2)
    return helper


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@node_app.command("worker")
def worker_command(
    socket_path: Path = typer.Option(..., "--socket", help="Unix socket to listen on."),
) -> None:
    """The site's warm worker (started by `node start`): ClientApps hand it their messages."""
    from node.client_app import serve_worker  # the training stack, only for this command

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: sys.exit(0))
    serve_worker(socket_path)


def supervise(
    command: list[str],
    env: dict[str, str],
    *,
    restart: bool,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Run the SuperNode; start it again whenever it exits on its own, until we are stopped.

    A SuperLink that restarts with fresh state answers the SuperNode's next heartbeat with 401
    and Flower's SuperNode then exits; starting it again re-activates it with the site key, so a
    site stays in the federation across aggregator restarts (and joins as soon as the
    coordinator registers its key). SIGTERM and SIGINT are passed on and end the loop.
    """
    stopping = False
    child: subprocess.Popen[bytes] | None = None

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    delay = 1.0
    while True:
        started = time.monotonic()
        child = subprocess.Popen(command, env=env)
        code = child.wait()
        if stopping or not restart:
            return code
        delay = 1.0 if time.monotonic() - started > 60 else min(delay * 2, 60.0)
        err.print(f"SuperNode exited ({code}); starting it again in {delay:.0f} s")
        sleep(delay)
        if stopping:
            return code
