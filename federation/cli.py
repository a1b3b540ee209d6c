"""The coordinator's commands: ``omopfed aggregator ...`` and ``omopfed simulate``.

Each command parses, calls one function of :mod:`federation.aggregator` or
:mod:`federation.simulate`, and renders. Long waits (``--wait``) poll Flower, never sleep blindly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from federation import aggregator
from federation.aggregator import AggregatorSettings, Workspace
from federation.errors import FederationError
from federation.simulate import SimulationRequest, simulate
from federation.store import MetricsStore
from omopfed.clikit import Format, FormatOption, new_app, out, print_json, print_table
from omopfed.protocol import RunConfigKey as K

aggregator_app = new_app("Run the aggregator: certificates, SuperLink, sites, runs, resumes.")

WorkspaceOption = typer.Option(
    Path("aggregator"),
    "--workspace",
    "-w",
    envvar="OMOPFED_AGGREGATOR",
    help="Aggregator workspace.",
)
WaitOption = typer.Option(False, "--wait", help="Wait for the run to finish; exit 9 if it fails.")
TimeoutOption = typer.Option(86400.0, "--timeout", help="Seconds --wait waits at most.")


@aggregator_app.command("init")
def init_command(
    workspace: Path = WorkspaceOption,
    host: str = typer.Option("127.0.0.1", "--host", help="Address the SuperLink listens on."),
    port: int = typer.Option(9092, "--port", help="The SuperLink's port (sites connect here)."),
    names: list[str] = typer.Option(
        ["127.0.0.1", "localhost"], "--name", help="Names in the server certificate (repeat)."
    ),
    store_url: str = typer.Option("", "--store-url", help="PostgreSQL URL (default: SQLite)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing workspace's keys."),
) -> None:
    """Create the workspace: a CA and server certificate, settings, the Flower connection."""
    settings = AggregatorSettings(host=host, port=port, names=names, store_url=store_url)
    ws = aggregator.init(workspace, settings, force=force)
    out.print(f"aggregator workspace {ws.root}", highlight=False)
    out.print(f"give sites this CA certificate: {ws.tls.ca_cert}", highlight=False)


@aggregator_app.command("start")
def start_command(
    workspace: Path = WorkspaceOption,
    timeout: float = typer.Option(60.0, "--timeout", help="Seconds to wait until it answers."),
) -> None:
    """Start the SuperLink (TLS, node authentication, state on disk) in the background."""
    ws = Workspace(workspace.resolve())
    pid = aggregator.start(ws, timeout=timeout)
    out.print(
        f"SuperLink running on {ws.address()} (pid {pid}); log {ws.log_file}", highlight=False
    )


@aggregator_app.command("stop")
def stop_command(
    workspace: Path = WorkspaceOption,
    run: str | None = typer.Option(None, "--run", help="Stop only this Flower run id."),
) -> None:
    """Stop the SuperLink, or with --run only one run (its recorded run can be resumed)."""
    ws = Workspace(workspace.resolve())
    if run is not None:
        ws.cli().json(["stop", run])
        out.print(f"run {run} stopped", highlight=False)
        return
    stopped = aggregator.stop(ws)
    out.print("SuperLink stopped" if stopped else "the SuperLink was not running")


@aggregator_app.command("register-site")
def register_site_command(
    name: str = typer.Argument(..., help="The site's name (as in its site.toml)."),
    public_key: Path = typer.Argument(..., help="The site's .pub file from `omopfed node keygen`."),
    workspace: Path = WorkspaceOption,
) -> None:
    """Allow the SuperNode holding this key to join, under this name."""
    node_id = aggregator.register_site(Workspace(workspace.resolve()), name, public_key)
    when = f"node id {node_id}" if node_id else "takes effect when the SuperLink starts"
    out.print(f"registered {name} ({when})", highlight=False)


@aggregator_app.command("run")
def run_command(
    workspace: Path = WorkspaceOption,
    model: str = typer.Option(..., "--model", help="densenet2d or unet3d."),
    rounds: int = typer.Option(..., "--rounds", help="Federated rounds."),
    local_epochs: int = typer.Option(1, "--local-epochs", help="Epochs per site per round."),
    min_sites: int = typer.Option(2, "--min-sites", help="Sites a round needs."),
    wait_for_sites: float = typer.Option(
        300.0, "--wait-for-sites", help="Seconds to wait for them."
    ),
    round_timeout: float = typer.Option(3600.0, "--round-timeout", help="Seconds per round."),
    run_name: str = typer.Option("", "--run-name", help="Name in the metrics store."),
    seed: int = typer.Option(0, "--seed", help="Seed of the initial model and the sites."),
    cohort_id: int = typer.Option(1, "--cohort", help="Cohort whose dataset sites train on."),
    threads: int = typer.Option(0, "--threads", help="Torch threads per site (0: default)."),
    final_evaluation: bool = typer.Option(
        True, "--final-evaluation/--no-final-evaluation", help="Score the last model at sites."
    ),
    wait: bool = WaitOption,
    timeout: float = TimeoutOption,
    fmt: Format = FormatOption,
) -> None:
    """Start a federated run (wraps `flwr run`); print its Flower run id."""
    ws = Workspace(workspace.resolve())
    options: dict[str, Any] = {
        K.MODEL: model, K.NUM_ROUNDS: rounds, K.LOCAL_EPOCHS: local_epochs, K.MIN_SITES: min_sites,
        K.WAIT_FOR_SITES: wait_for_sites, K.ROUND_TIMEOUT: round_timeout, K.RUN_NAME: run_name,
        K.SEED: seed, K.COHORT_ID: cohort_id, K.NUM_THREADS: threads,
        K.FINAL_EVALUATION: final_evaluation,
    }  # fmt: skip
    config = aggregator.run_config(ws, options)
    _submit_and_report(ws, config, run_name, wait=wait, timeout=timeout, fmt=fmt)


@aggregator_app.command("resume")
def resume_command(
    run: str = typer.Argument(..., help="The recorded run name (see `aggregator status`)."),
    workspace: Path = WorkspaceOption,
    wait: bool = WaitOption,
    timeout: float = TimeoutOption,
    fmt: Format = FormatOption,
) -> None:
    """Continue a failed or stopped run from its last checkpoint to its planned rounds."""
    ws = Workspace(workspace.resolve())
    _submit_and_report(
        ws, aggregator.resume_config(ws, run), run, wait=wait, timeout=timeout, fmt=fmt
    )


def _submit_and_report(
    ws: Workspace, config: dict[str, Any], run_name: str, *, wait: bool, timeout: float, fmt: Format
) -> None:
    flower_run = aggregator.submit(ws, config)
    result: dict[str, Any] = {"flower_run_id": flower_run, "run": run_name or flower_run}
    if wait:
        result["status"] = ws.cli().wait_run(flower_run, timeout=timeout)["status"]
        store = MetricsStore(ws.store_url())
        try:
            result["rounds_done"] = store.last_round(result["run"])
        finally:
            store.dispose()
    if fmt is Format.json:
        print_json(result)
    else:
        out.print(" ".join(f"{k}={v}" for k, v in result.items()), highlight=False)
    if wait and result["status"] != "finished:completed":
        raise FederationError(f"run {result['run']} ended {result['status']}")


@aggregator_app.command("status")
def status_command(workspace: Path = WorkspaceOption, fmt: Format = FormatOption) -> None:
    """The SuperLink, connected sites, Flower's runs and the recorded runs."""
    report = aggregator.status(Workspace(workspace.resolve()))
    if fmt is Format.json:
        print_json(report)
        return
    link = report["superlink"]
    out.print(f"SuperLink {'running' if link['running'] else 'stopped'} at {link['address']}")
    if report.get("sites"):
        rows = [(n.get("node-id"), n.get("status")) for n in report["sites"]]
        print_table("sites", ["node id", "status"], rows)
    runs = [(r["run_id"], r["model"], f"{r['rounds_done']}/{r['planned_rounds']}", r["status"])
            for r in report["runs"]]  # fmt: skip
    print_table("runs", ["run", "model", "rounds", "status"], runs)


@aggregator_app.command("logs")
def logs_command(
    flower_run: str = typer.Argument(..., help="Flower run id (printed by `aggregator run`)."),
    workspace: Path = WorkspaceOption,
    follow: bool = typer.Option(False, "--follow", help="Keep streaming until the run ends."),
) -> None:
    """The ServerApp's log of one run (wraps `flwr log`)."""
    ws = Workspace(workspace.resolve())
    mode = "--stream" if follow else "--show"
    out.print(ws.cli().text(["log", flower_run, mode], timeout=None if follow else 120.0))


def simulate_command(
    workspace: Path = typer.Option(Path("simulation"), "--workspace", "-w", help="Output folder."),
    sites: list[Path] = typer.Option([], "--site", help="Site settings file per client (repeat)."),
    pooled: Path | None = typer.Option(None, "--pooled", help="One site to partition instead."),
    partitions: int = typer.Option(0, "--partitions", help="Clients over the --pooled data."),
    model: str = typer.Option("densenet2d", "--model", help="densenet2d or unet3d."),
    rounds: int = typer.Option(2, "--rounds", help="Federated rounds."),
    local_epochs: int = typer.Option(1, "--local-epochs", help="Epochs per client per round."),
    min_sites: int = typer.Option(0, "--min-sites", help="0: every client."),
    seed: int = typer.Option(0, "--seed", help="Seed of the initial model and the clients."),
    run_name: str = typer.Option("", "--run-name", help="Name in the metrics store."),
    timeout: float = typer.Option(3600.0, "--timeout", help="Seconds the run may take."),
    fmt: Format = FormatOption,
) -> None:
    """Run the federation in Flower's simulation engine (clients = site files or shards)."""
    clients = len(sites) or partitions
    options: dict[str, Any] = {
        K.MODEL: model, K.NUM_ROUNDS: rounds, K.LOCAL_EPOCHS: local_epochs,
        K.MIN_SITES: min_sites or clients, K.SEED: seed, K.RUN_NAME: run_name, K.NUM_THREADS: 1,
    }  # fmt: skip
    request = SimulationRequest(
        workspace, options, sites=sites, pooled=pooled, partitions=partitions, timeout=timeout
    )
    result = simulate(request)
    shown = {k: v for k, v in vars(result).items() if k != "events"}
    shown["events"] = [
        {k: e[k] for k in ("round", "site", "kind", "detail")} for e in result.events
    ]
    if fmt is Format.json:
        print_json(shown)
    else:
        out.print(" ".join(f"{k}={v}" for k, v in shown.items() if k != "events"), highlight=False)
        if shown["events"]:
            print_table(
                "events", ["round", "site", "kind", "detail"], [e.values() for e in shown["events"]]
            )
    if result.status != "finished:completed":
        raise FederationError(f"simulated run {result.run_name} ended {result.status}")
