"""The aggregator's workspace and the operations the coordinator commands call.

One folder holds everything the aggregator runs on::

    aggregator.toml       host, port, certificate names, metrics store URL
    tls/                  ca.crt (give to sites), ca.key, server.crt, server.key
    flwr/config.toml      FLWR_HOME: the SuperLink connection `flwr` uses
    app/                  the Flower app `flwr run` submits (from pyproject.toml)
    sites/<name>.pub      the registered sites' public keys (re-registered on every start)
    state/superlink.db    the SuperLink's state, only with ``state_database = "file"``
    checkpoints/<run>/    the global model after every round
    metrics.sqlite        the metrics store (unless a PostgreSQL URL is configured)
    logs/superlink.log
    superlink.pid

Each function does one coordinator action; the CLI (:mod:`federation.cli`) only parses and
renders. Flower is driven through its processes and ``flwr`` commands (:mod:`federation.flower`).
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import tomli_w
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from federation import flower, tls
from federation.config import RunSettings
from federation.errors import FederationError
from federation.store import MetricsStore, default_url
from omopfed.errors import EXIT_CONFIG
from omopfed.protocol import RunConfigKey

SETTINGS_FILE = "aggregator.toml"
_SITE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


class AggregatorError(FederationError):
    """The aggregator workspace is missing, already set up, or in the wrong state."""

    code = "AGGREGATOR"
    exit_code = EXIT_CONFIG


class AggregatorSettings(BaseModel):
    """``aggregator.toml``: where the SuperLink listens, where metrics and its state go.

    ``state_database``: ``memory`` (default) or ``file``. With a file, Flower 1.42 keeps every
    model array in the same SQLite database as its state; on a busy machine writing a 28 MB
    DenseNet update holds the lock past Flower's fixed 5 s ``busy_timeout`` and the run fails
    with "database is locked" (seen on the project's 2-core machine). In memory, nothing of
    value is lost: a SuperLink crash fails the run either way (it resumes from our checkpoint)
    and the sites' registrations are kept in ``sites/`` and replayed on every start.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(9092, ge=1, le=65535)
    names: list[str] = Field(default_factory=lambda: list(tls.DEFAULT_NAMES))
    store_url: str = ""
    state_database: Literal["memory", "file"] = "memory"


@dataclass(frozen=True)
class Workspace:
    """Paths of an aggregator workspace."""

    root: Path

    @property
    def tls(self) -> tls.TlsFiles:
        return tls.TlsFiles(self.root / "tls")

    @property
    def home(self) -> Path:
        return self.root / "flwr"

    @property
    def app(self) -> Path:
        return self.root / "app"

    @property
    def pid_file(self) -> Path:
        return self.root / "superlink.pid"

    @property
    def log_file(self) -> Path:
        return self.root / "logs" / "superlink.log"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def sites(self) -> Path:
        return self.root / "sites"

    def state_database(self) -> str:
        if self.settings().state_database == "file":
            return str(self.root / "state" / "superlink.db")
        return ":flwr-in-memory:"

    def settings(self) -> AggregatorSettings:
        path = self.root / SETTINGS_FILE
        if not path.exists():
            raise AggregatorError(
                f"{self.root} is not an aggregator workspace",
                hint="run `omopfed aggregator init --workspace DIR` first",
            )
        try:
            return AggregatorSettings.model_validate(tomllib.loads(path.read_text("utf-8")))
        except (tomllib.TOMLDecodeError, ValidationError) as exc:
            raise AggregatorError(f"{path} is invalid: {exc}") from None

    def store_url(self) -> str:
        return self.settings().store_url or default_url(self.root.resolve())

    def cli(self) -> flower.FlowerCli:
        return flower.FlowerCli(self.home)

    def address(self) -> str:
        settings = self.settings()
        return f"{_connect_host(settings.host)}:{settings.port}"


def _connect_host(host: str) -> str:
    """Where local commands reach a SuperLink bound to ``host`` (a wildcard means loopback)."""
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def init(root: Path, settings: AggregatorSettings, *, force: bool = False) -> Workspace:
    """Create the workspace: CA and server certificate, settings, connection, app folder."""
    workspace = Workspace(root.resolve())
    if (workspace.root / SETTINGS_FILE).exists() and not force:
        raise AggregatorError(
            f"{workspace.root} is already an aggregator workspace",
            hint="use --force to replace its certificates and settings",
        )
    workspace.root.mkdir(parents=True, exist_ok=True)
    tls.create(workspace.tls.folder, tuple(settings.names))
    data = settings.model_dump()
    (workspace.root / SETTINGS_FILE).write_text(tomli_w.dumps(data), encoding="utf-8")
    flower.write_connection(workspace.home, workspace.address(), ca_cert=workspace.tls.ca_cert)
    flower.write_app(workspace.app)
    for folder in ("state", "logs", "checkpoints", "sites"):
        (workspace.root / folder).mkdir(exist_ok=True)
    return workspace


def superlink_command(workspace: Workspace) -> list[str]:
    """The SuperLink as the design requires: TLS, node auth, state on disk, no installs."""
    settings = workspace.settings()
    files = workspace.tls
    return [
        "flower-superlink",
        "--ssl-ca-certfile", str(files.ca_cert),
        "--ssl-certfile", str(files.server_cert),
        "--ssl-keyfile", str(files.server_key),
        "--enable-supernode-auth",
        "--database", workspace.state_database(),
        "--disable-runtime-dependency-installation",
        "--host", settings.host,
        "--port", str(settings.port),
    ]  # fmt: skip


def running_pid(workspace: Workspace) -> int | None:
    """The SuperLink's pid if its pid file names a live process."""
    try:
        pid = int(workspace.pid_file.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def start(workspace: Workspace, *, timeout: float = 60.0) -> int:
    """Start the SuperLink in the background and wait until it answers; return its pid."""
    if (pid := running_pid(workspace)) is not None:
        raise AggregatorError(f"the SuperLink is already running (pid {pid})")
    flower.write_connection(workspace.home, workspace.address(), ca_cert=workspace.tls.ca_cert)
    flower.write_app(workspace.app)
    env = flower.child_env_for(workspace.home)
    process = flower.start_process(superlink_command(workspace), workspace.log_file, env=env)
    workspace.pid_file.write_text(str(process.pid))
    try:
        flower.wait_healthy(
            f"https://{workspace.address()}/health",
            ca_cert=workspace.tls.ca_cert,
            timeout=timeout,
            alive=lambda: process.poll() is None,
        )
    except flower.FlowerProcessError as exc:
        flower.stop_group(process.pid)
        workspace.pid_file.unlink(missing_ok=True)
        raise AggregatorError(
            f"the SuperLink did not start: {exc}", hint=f"see {workspace.log_file}"
        ) from None
    if workspace.settings().state_database == "memory":
        for key in sorted(workspace.sites.glob("*.pub")):
            _register(workspace, key.stem, key)
    return process.pid


def stop(workspace: Workspace) -> bool:
    """Stop the SuperLink (and its ServerApp processes); False if it was not running."""
    pid = running_pid(workspace)
    workspace.pid_file.unlink(missing_ok=True)
    return pid is not None and flower.stop_group(pid)


def check_public_key(path: Path) -> str:
    """The key line of a site's ``.pub`` file, after checking it is ECDSA P-384 OpenSSH."""
    try:
        text = path.read_text(encoding="utf-8").strip()
        key = serialization.load_ssh_public_key(text.encode())
    except OSError as exc:
        raise AggregatorError(f"cannot read {path}: {exc.strerror}") from None
    except (ValueError, IndexError):
        raise AggregatorError(f"{path} is not an OpenSSH public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp384r1":
        raise AggregatorError(f"{path} is not an ECDSA P-384 key (`omopfed node keygen` makes one)")
    return text


def register_site(workspace: Workspace, name: str, public_key: Path) -> str:
    """Let the site holding this key connect; return its node id ("" until the SuperLink runs)."""
    if not _SITE.match(name):
        raise AggregatorError(f"site name {name!r}: use letters, digits, '.', '_' or '-'")
    line = check_public_key(public_key)
    node_id = _register(workspace, name, public_key) if running_pid(workspace) else ""
    workspace.sites.mkdir(exist_ok=True)
    (workspace.sites / f"{name}.pub").write_text(line + "\n", encoding="utf-8")
    return node_id


def _register(workspace: Workspace, name: str, public_key: Path) -> str:
    result = workspace.cli().json(["supernode", "register", str(public_key), "--name", name])
    return str(result["node-id"])


def run_config(workspace: Workspace, options: dict[str, Any]) -> dict[str, Any]:
    """The run config of a new run: the options plus where this workspace keeps results."""
    config = {
        RunConfigKey.STORE_URL: workspace.store_url(),
        RunConfigKey.CHECKPOINT_DIR: str(workspace.checkpoints.resolve()),
        **{k: v for k, v in options.items() if v is not None},
    }
    RunSettings.from_run_config(flower.default_run_config() | config)  # fail before submitting
    return config


def submit(workspace: Workspace, config: dict[str, Any]) -> str:
    """Submit a run to the SuperLink; return its Flower run id."""
    if running_pid(workspace) is None:
        raise AggregatorError("the SuperLink is not running", hint="omopfed aggregator start")
    flower.write_app(workspace.app)
    started = workspace.cli().json(
        ["run", str(workspace.app), flower.CONNECTION, *flower.config_args(config)]
    )
    return str(started["run-id"])


def resume_config(workspace: Workspace, run_name: str) -> dict[str, Any]:
    """The recorded run's own config, told to continue from its last checkpoint."""
    store = MetricsStore(workspace.store_url())
    try:
        run = store.get_run(run_name)
    finally:
        store.dispose()
    if run is None:
        raise AggregatorError(f"the metrics store has no run {run_name!r}")
    if run["status"] == "completed":
        raise AggregatorError(f"run {run_name!r} already completed")
    config: dict[str, Any] = json.loads(run["config_json"])
    return config | {RunConfigKey.RESUME_FROM: run_name}


def status(workspace: Workspace) -> dict[str, Any]:
    """SuperLink state, connected sites, Flower's runs and the recorded runs."""
    pid = running_pid(workspace)
    report: dict[str, Any] = {"superlink": {"running": pid is not None, "pid": pid,
                                            "address": workspace.address()}}  # fmt: skip
    if pid is not None:
        cli = workspace.cli()
        report["sites"] = cli.json(["supernode", "ls"]).get("nodes", [])
        report["flower_runs"] = cli.json(["ls"]).get("runs", [])
    store = MetricsStore(workspace.store_url())
    try:
        report["runs"] = [
            {**run, "rounds_done": store.last_round(run["run_id"])} for run in store.list_runs()
        ]
    finally:
        store.dispose()
    return report
