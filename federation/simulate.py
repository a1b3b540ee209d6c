"""``omopfed simulate``: the same ServerApp and ClientApp under Flower's simulation engine.

A private SuperLink is started with ``--simulation --disable-runtime-dependency-installation`` on a
free loopback port, the run is submitted with ``flwr run`` (one CPU per virtual client, so two
clients train at a time on a 2-core machine), and the SuperLink is stopped when the run ends.
Virtual clients map either to site settings files (client *i* trains on ``sites[i]``) or to
class-balanced shards of one pooled site (``--pooled``); the ClientApp does the mapping from the
``partition-id`` Flower gives each virtual node (:func:`node.client_app.resolve_site`).

Simulation runs Ray, which probes cloud metadata even with usage stats off: it is for
experiments on the coordinator's machine, never for hospital nodes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from federation import flower
from federation.config import RunSettings
from federation.errors import FederationError
from federation.store import MetricsStore, default_url
from omopfed.protocol import RunConfigKey

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SimulationRequest:
    """What to simulate: the run's settings, and which data each virtual client gets."""

    workspace: Path
    run_config: Mapping[str, Any]
    sites: Sequence[Path] = ()
    pooled: Path | None = None
    partitions: int = 0
    timeout: float = 3600.0
    cpus_per_client: int = 1


@dataclass
class SimulationResult:
    run_name: str
    flower_run_id: str
    status: str
    store_url: str
    rounds: int
    events: list[dict[str, Any]] = field(default_factory=list)


def _clients(request: SimulationRequest) -> tuple[int, dict[str, str]]:
    """How many virtual clients, and the run-config keys that map them to data."""
    if bool(request.sites) == (request.pooled is not None):
        raise FederationError("give either site settings files or --pooled, not both or neither")
    if request.sites:
        paths = [str(Path(p).resolve()) for p in request.sites]
        return len(paths), {RunConfigKey.SIM_SITES: ",".join(paths)}
    if request.partitions < 1:
        raise FederationError("--partitions must be at least 1 with --pooled")
    assert request.pooled is not None
    return request.partitions, {RunConfigKey.SIM_POOLED: str(request.pooled.resolve())}


def _run_config(request: SimulationRequest, mapping: dict[str, str]) -> dict[str, Any]:
    workspace = request.workspace.resolve()
    config = {
        RunConfigKey.STORE_URL: default_url(workspace),
        RunConfigKey.CHECKPOINT_DIR: str(workspace / "checkpoints"),
        **request.run_config,
        **mapping,
    }
    RunSettings.from_run_config(flower.default_run_config() | config)  # fail before starting
    return config


def simulate(request: SimulationRequest) -> SimulationResult:
    """Run one simulated federation to the end and report what the store recorded."""
    clients, mapping = _clients(request)
    config = _run_config(request, mapping)
    workspace = request.workspace.resolve()
    home = workspace / "flwr"
    port = flower.free_port()
    flower.write_connection(home, f"127.0.0.1:{port}", insecure=True)
    app = flower.write_app(workspace / "app")
    command = [
        "flower-superlink", "--simulation", "--insecure",
        "--disable-runtime-dependency-installation",
        "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip
    env = flower.child_env_for(home)
    process = flower.start_process(command, workspace / "logs" / "superlink.log", env=env)
    try:
        flower.wait_healthy(
            f"http://127.0.0.1:{port}/health",
            ca_cert=None,
            timeout=60,
            alive=lambda: process.poll() is None,
        )
        cli = flower.FlowerCli(home)
        federation = [
            "--federation-config",
            f"num-supernodes={clients} client-resources-num-cpus={request.cpus_per_client}",
        ]
        started = cli.json(
            ["run", str(app), flower.CONNECTION, *flower.config_args(config), *federation]
        )
        run_id = str(started["run-id"])
        status = cli.wait_run(run_id, timeout=request.timeout)
    finally:
        flower.stop_group(process.pid)
    return _result(config, run_id, str(status.get("status", "")))


def _result(config: Mapping[str, Any], run_id: str, status: str) -> SimulationResult:
    run_name = str(
        config.get(RunConfigKey.RESUME_FROM) or config.get(RunConfigKey.RUN_NAME) or run_id
    )
    store = MetricsStore(str(config[RunConfigKey.STORE_URL]))
    try:
        return SimulationResult(
            run_name,
            run_id,
            status,
            str(config[RunConfigKey.STORE_URL]),
            store.last_round(run_name),
            store.events(run_name),
        )
    finally:
        store.dispose()
