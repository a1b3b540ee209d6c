"""Plumbing around Flower's own processes and CLI, in one place.

The coordinator commands and the simulator start ``flower-superlink`` and call ``flwr`` (``run``,
``ls``, ``log``, ``stop``, ``supernode register``) as subprocesses: that is Flower's supported
interface, and Flower's Python internals change between minor releases. Every child gets the
offline environment (:func:`omopfed.offline.child_env`) and its own ``FLWR_HOME``, where Flower
1.42 keeps its connections (``config.toml``) and installed apps.

The Flower app ``flwr run`` submits is a two-file folder (``pyproject.toml`` + ``README.md``)
written from this repository's ``[tool.flwr.app]`` section: building a FAB from the repository
root walks the whole tree, virtual environment included (~5 s each time).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from federation.errors import FederationError
from omopfed.offline import child_env

REPO_PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
CONNECTION = "omopfed"


class FlowerProcessError(FederationError):
    """A Flower process would not start, stop or answer, or a ``flwr`` command failed."""

    code = "FLOWER"


def executable(name: str) -> str:
    """A Flower executable of this environment (its scripts sit beside the interpreter)."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise FlowerProcessError(f"{name} is not installed", hint="pip install 'flwr[simulation]'")
    return found


def free_port() -> int:
    """A TCP port on the loopback interface that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _app_definition() -> dict[str, Any]:
    if not REPO_PYPROJECT.exists():
        raise FlowerProcessError(
            "the Flower app definition (pyproject.toml) is not installed",
            hint="install omopfed from its source checkout (pip install -e .)",
        )
    with REPO_PYPROJECT.open("rb") as handle:
        return tomllib.load(handle)


def default_run_config() -> dict[str, Any]:
    """The run config's defaults (``[tool.flwr.app.config]``), which ``--run-config`` overrides."""
    return dict(_app_definition()["tool"]["flwr"]["app"]["config"])


def write_app(folder: Path) -> Path:
    """The Flower app folder ``flwr run`` submits, from this repository's pyproject."""
    source = _app_definition()
    project = {k: source["project"][k] for k in ("name", "version", "description", "license")}
    app = {"project": project, "tool": {"flwr": {"app": source["tool"]["flwr"]["app"]}}}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pyproject.toml").write_text(tomli_w.dumps(app), encoding="utf-8")
    (folder / "README.md").write_text(
        "omopfed federated run: the apps come from the installed omopfed packages.\n"
    )
    return folder


def write_connection(
    home: Path, address: str, *, ca_cert: Path | None = None, insecure: bool = False
) -> Path:
    """``$FLWR_HOME/config.toml`` with one SuperLink connection, the default."""
    connection: dict[str, Any] = {"address": address}
    if ca_cert is not None:
        connection["root-certificates"] = str(ca_cert.resolve())
    if insecure:
        connection["insecure"] = True
    config = {"superlink": {"default": CONNECTION, CONNECTION: connection}}
    home.mkdir(parents=True, exist_ok=True)
    path = home / "config.toml"
    path.write_text(tomli_w.dumps(config), encoding="utf-8")
    return path


def child_env_for(home: Path) -> dict[str, str]:
    """The offline environment plus this Flower home (and no line wrapping in JSON output).

    This environment's scripts go first on PATH: Flower starts its helpers
    (``flower-superexec``, ``flwr-serverapp``, ``flwr-clientapp``) by name.
    """
    env = child_env({"FLWR_HOME": str(home), "COLUMNS": "100000"})
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


@dataclass(frozen=True)
class FlowerCli:
    """``flwr`` with a given FLWR_HOME, JSON in, JSON out."""

    home: Path

    def env(self) -> dict[str, str]:
        return child_env_for(self.home)

    def json(self, args: Sequence[str], *, timeout: float = 120.0) -> dict[str, Any]:
        """Run ``flwr ARGS --format json``; raise with Flower's message when it fails."""
        command = [executable("flwr"), *args, "--format", "json"]
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, env=self.env(), timeout=timeout
            )
        except subprocess.TimeoutExpired:
            raise FlowerProcessError(f"`flwr {args[0]}` did not answer in {timeout:g} s") from None
        try:
            result: dict[str, Any] = json.loads(done.stdout)
        except json.JSONDecodeError:
            detail = (done.stderr or done.stdout).strip().splitlines()
            raise FlowerProcessError(
                f"`flwr {args[0]}` failed: {detail[-1] if detail else done.returncode}"
            ) from None
        if not result.get("success", False):
            message = str(result.get("error-message", "unknown error")).strip().splitlines()
            raise FlowerProcessError(f"`flwr {args[0]}` failed: {message[-1]}")
        return result

    def text(self, args: Sequence[str], *, timeout: float | None = 120.0) -> str:
        """Run a ``flwr`` command without JSON output (``flwr log``)."""
        done = subprocess.run(
            [executable("flwr"), *args],
            capture_output=True,
            text=True,
            env=self.env(),
            timeout=timeout,
        )
        return done.stdout + done.stderr

    def run_status(self, run_id: str) -> dict[str, Any]:
        runs = self.json(["ls", "--run-id", run_id])["runs"]
        if not runs:
            raise FlowerProcessError(f"the SuperLink has no run {run_id}")
        return dict(runs[0])

    def wait_run(self, run_id: str, *, timeout: float, poll: float = 3.0) -> dict[str, Any]:
        """Poll until the run finished (``finished:completed|failed|stopped``)."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.run_status(run_id)
            if str(status.get("status", "")).startswith("finished"):
                return status
            if time.monotonic() >= deadline:
                raise FlowerProcessError(f"run {run_id} did not finish within {timeout:g} s")
            time.sleep(poll)


def config_args(config: Mapping[str, Any]) -> list[str]:
    """``--run-config`` arguments, one ``key=value`` each, values as TOML literals."""
    args = []
    for key, value in config.items():
        if isinstance(value, bool):
            literal = "true" if value else "false"
        elif isinstance(value, int | float):
            literal = repr(value)
        else:
            literal = '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
        args += ["--run-config", f"{key}={literal}"]
    return args


def start_process(
    command: Sequence[str], log_file: Path, *, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start a long-lived Flower process in its own session, output appended to ``log_file``."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        return subprocess.Popen(
            [executable(command[0]), *command[1:]],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dict(env) if env is not None else child_env(),
            start_new_session=True,  # its children (ServerApp, Ray) share its process group
        )


def wait_healthy(
    url: str,
    *,
    ca_cert: Path | None,
    timeout: float,
    alive: Any = None,
    poll: float = 0.25,
) -> None:
    """Poll ``url`` (the SuperLink's /health) until it answers 200, or fail after ``timeout``."""
    context = ssl.create_default_context(cafile=str(ca_cert)) if ca_cert else None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if alive is not None and not alive():
            raise FlowerProcessError("the process exited while starting (see its log)")
        try:
            with urllib.request.urlopen(url, timeout=2, context=context) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(poll)
    raise FlowerProcessError(f"{url} did not become healthy within {timeout:g} s")


def stop_group(pid: int, *, timeout: float = 15.0) -> bool:
    """SIGTERM the process group led by ``pid`` (ours: started with a new session), then KILL."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return True
        _reap(pid)
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    _reap(pid)
    return True


def _reap(pid: int) -> None:
    """Collect a child of ours that exited, so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
