"""The one ``omopfed`` command: the site's groups (from ``node``) and the aggregator's groups
(from ``federation``) joined here, the only module allowed to import both sides."""

from __future__ import annotations

import sys

import typer

from federation.cli import aggregator_app, simulate_command
from federation.cli_metrics import metrics_app, study_app
from node import cli as site_cli
from node.cli_cohort import cohort_app
from node.cli_data import dataset_app, resolve_command
from node.cli_federation import node_app
from node.cli_synth import etl_app, synth_app
from node.cli_train import train_command
from node.cli_validate import validate_command
from omopfed import __version__, offline
from omopfed.clikit import configure_logging, new_app, run_app
from omopfed.demo import demo_command
from omopfed.study import run_command as study_run_command

app = new_app("omopfed: OMOP-integrated federated radiogenomics.")
app.add_typer(site_cli.config_app, name="config")
app.add_typer(site_cli.db_app, name="db")
app.add_typer(cohort_app, name="cohort")
app.add_typer(synth_app, name="synth")
app.add_typer(etl_app, name="etl")
app.command("resolve")(resolve_command)
app.add_typer(dataset_app, name="dataset")
app.command("validate")(validate_command)
app.command("train")(train_command)
app.command("demo")(demo_command)
app.add_typer(node_app, name="node")
app.add_typer(aggregator_app, name="aggregator")
app.command("simulate")(simulate_command)
app.add_typer(metrics_app, name="metrics")
study_app.command("run")(study_run_command)
app.add_typer(study_app, name="study")


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for expected errors."),
    log_level: str = typer.Option("warning", "--log-level", help="debug, info, warning, error."),
) -> None:
    configure_logging("debug" if debug else log_level)


@app.command("version")
def version() -> None:
    """Print the omopfed version."""
    typer.echo(__version__)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script: offline environment first, then the command."""
    offline.apply()
    args = list(sys.argv[1:] if argv is None else argv)
    return run_app(app, args, debug="--debug" in args)


if __name__ == "__main__":
    raise SystemExit(main())
