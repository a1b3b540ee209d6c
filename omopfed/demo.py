"""The main job on the embedded default, run by ``make demo``: the whole story on one CPU.

Three synthetic hospitals (DuckDB CDM + DICOM) -> the reference glioma cohort at each site ->
resolve -> the densenet2d dataset cache -> validation (the training gate must pass) -> a
centralized baseline -> a small federated run in Flower's simulation engine -> a small study
(repeated centralized, local and federated runs) and its HTML report. Each step calls the library function behind its ``omopfed`` command
(see docs/tutorial/demo.md for the commands a user types to do each step by hand); this module
only orders them, shows progress and keeps the workspace's record of finished steps.

It is, with :mod:`omopfed.cli`, the only module that imports both ``node`` and ``federation``.
Rerunning reuses the finished steps of a workspace made with the same options; other options
are refused with a hint to use ``--force``, which starts again from nothing.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

import cohorts
from omopfed.clikit import err, out, print_table
from omopfed.errors import ConfigError

MODEL = "densenet2d"
#: Repeats of the demo's study: the fewest that give the rank-sum test any resolution (with 3
#: runs per group the smallest possible p is 0.1; the report says so).
STUDY_REPEATS = 3
COHORT_ID = 1
SITES = 3
SEED = 0
REFERENCE = Path(cohorts.__file__).resolve().parent / "definitions" / "reference_glioma.json"
#: The tiny profile is a smoke-test size: 24 persons per site, 17-21 thick slices. Its sites
#: get these site.toml tables so the data contracts accept them and DenseNet trains on 32x32
#: inputs (what tests/e2e does); half of each site's members validate, so every site's
#: validation split reaches the minimum cell count and the federated run reports metrics.
#: The demo profile keeps every default threshold.
TINY_SETTINGS = """
[resolver]
validation_fraction = 0.5

[dataset]
image_size = 32
dtype = "float32"

[validation]
min_cohort_size = 8
min_train_per_class = 1
min_validation_per_class = 0
max_spacing_mm = 20.0
"""
#: Options that shape the workspace's data and runs: a rerun must ask for the same ones.
STATE_FILE = "demo.json"


class DemoStateError(ConfigError):
    """The workspace was made by other options, or a finished step's record is unreadable."""


class Steps:
    """The workspace's record of finished steps (``demo.json``): each step's small result."""

    def __init__(self, workspace: Path, options: dict[str, Any], force: bool) -> None:
        self.path = workspace / STATE_FILE
        if force and workspace.exists():
            shutil.rmtree(workspace)
        workspace.mkdir(parents=True, exist_ok=True)
        state: dict[str, Any] = {"options": options, "done": {}}
        if self.path.is_file():
            try:
                state = json.loads(self.path.read_text())
            except ValueError as exc:
                raise DemoStateError(
                    f"{self.path} is unreadable ({exc})", hint="rerun with --force"
                ) from None
            if state.get("options") != options:
                raise DemoStateError(
                    f"{workspace} holds a demo made with {state.get('options')}, not {options}",
                    hint="rerun with --force to start again, or use another --workspace",
                )
        elif any(workspace.iterdir()):
            raise DemoStateError(
                f"{workspace} is not empty and holds no {STATE_FILE}",
                hint="rerun with --force to replace it, or use another --workspace",
            )
        self.state = state
        self._save()

    def _save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state, indent=2, default=str))
        tmp.replace(self.path)

    def forget(self, names: list[str]) -> None:
        for name in names:
            self.state["done"].pop(name, None)
        self._save()

    def run(self, name: str, label: str, step: Callable[[], Any]) -> Any:
        """Run ``step`` unless a previous run finished it; record its (JSON) result."""
        done = self.state["done"]
        if name in done:
            out.print(f"[green]✓[/] {label} [dim](reused)[/]")
            return done[name]["result"]
        started = time.perf_counter()
        with err.status(f"{label} ...", spinner="dots"):
            result = step()
        seconds = time.perf_counter() - started
        done[name] = {"result": result, "seconds": round(seconds, 1)}
        self._save()
        out.print(f"[green]✓[/] {label} [dim]({seconds:.0f} s)[/]")
        return result


def demo_command(
    workspace: Path = typer.Option(Path("workspace/demo"), help="Folder for the demo's files."),
    profile: str = typer.Option(
        "tiny",
        "--profile",
        help="Synthetic sites: tiny (smoke-test size, relaxed gate) or demo (default gate).",
    ),
    epochs: int = typer.Option(
        2,
        "--epochs",
        help="Epochs of centralized and local training (same as --rounds: same data passes).",
    ),
    rounds: int = typer.Option(2, "--rounds", help="Federated rounds (1 local epoch each)."),
    force: bool = typer.Option(False, "--force", help="Delete the workspace and start again."),
) -> None:
    """Run the end-to-end demo on DuckDB, synthetic data and the CPU; write the HTML report."""
    if profile not in ("tiny", "demo"):
        raise ConfigError(f"--profile {profile!r}: use tiny or demo")
    if epochs < 1 or rounds < 1:
        raise ConfigError("--epochs and --rounds must be at least 1")
    workspace = workspace.resolve()
    options = {"profile": profile, "epochs": epochs, "rounds": rounds, "seed": SEED}
    steps = Steps(workspace, options, force)
    started = time.perf_counter()
    sites_dir = workspace / "sites"

    if profile == "tiny":
        out.print(
            "[yellow]tiny profile: a smoke-test size; its sites relax the validation minimum "
            "sizes and slice spacing (see TINY_SETTINGS in omopfed/demo.py)[/]"
        )
    steps.run(
        "synthesize",
        f"synthesize {SITES} sites ({profile} profile)",
        lambda: _synthesize(sites_dir, profile),
    )
    files = sorted(sites_dir.glob("*/site.toml"))
    names = [f.parent.name for f in files]
    per_site: dict[str, dict[str, Any]] = {}
    for name, file in zip(names, files, strict=True):
        per_site[name] = steps.run(
            f"site:{name}",
            f"{name}: reference cohort, resolve, {MODEL} cache, validate",
            lambda file=file: _prepare_site(file),  # type: ignore[misc]
        )
    failed = [n for n, r in per_site.items() if not r["gate_passed"]]
    if failed:
        steps.forget([f"site:{name}" for name in failed])  # a rerun validates them again
        raise DemoStateError(
            f"validation failed at {', '.join(failed)}: training is refused",
            hint=f"see `omopfed validate --settings {sites_dir / failed[0] / 'site.toml'}`",
        )
    centralized = steps.run(
        "centralized",
        f"centralized baseline ({epochs} epoch(s), {MODEL})",
        lambda: _centralized(files, epochs, workspace / "runs"),
    )
    federated = steps.run(
        "federated",
        f"federated run in simulation ({len(files)} sites, {rounds} round(s) x 1 epoch)",
        lambda: _federated(files, rounds, workspace / "federation"),
    )
    study = steps.run(
        "study",
        f"a small study: {STUDY_REPEATS} repeats of centralized, each site alone, federated",
        lambda: _study(workspace / "study", files, epochs, rounds),
    )
    _summary(per_site, centralized, federated, study, time.perf_counter() - started)


# -- the steps: each one calls the library function behind an omopfed command ------------------


def _synthesize(sites_dir: Path, profile: str) -> dict[str, Any]:
    """``omopfed synth federation --out SITES --profile P``."""
    from node.synth.federation import FederationRequest, generate_federation

    request = FederationRequest(
        out=sites_dir, sites=SITES, profile=profile, seed=SEED, workers=2, force=True
    )
    truths = generate_federation(request)
    if profile == "tiny":
        for file in sites_dir.glob("*/site.toml"):
            file.write_text(file.read_text() + TINY_SETTINGS)
    return {name: {"persons": t["persons"]} for name, t in truths.items()}


def _prepare_site(settings_file: Path) -> dict[str, Any]:
    """``omopfed cohort run``, ``omopfed resolve``, ``omopfed dataset build``, ``omopfed
    validate``, at one site."""
    from cohorts.db import Database
    from cohorts.loader import load_definition
    from cohorts.runner import run_cohort
    from node.cache import build_dataset
    from node.manifest import resolve
    from node.settings import load_site_settings
    from node.validation.service import Target, validate_site

    settings = load_site_settings(settings_file)
    with Database(settings.database_url.get_secret_value(), settings.schemas) as db:
        cohort = run_cohort(
            db, load_definition(REFERENCE), COHORT_ID, min_cell_count=settings.min_cell_count
        )
    manifest = resolve(settings, COHORT_ID)
    built = build_dataset(settings, MODEL, cohort_id=COHORT_ID)
    validation = validate_site(settings, target=Target(model=MODEL, cohort_id=COHORT_ID))
    return {
        "cohort_persons": cohort.persons,  # already suppressed by the cohort runner
        "manifest_included": sum(1 for row in manifest.rows if row.get("included")),
        "num_train": built.num_train,
        "num_validation": built.num_validation,
        "gate_passed": validation.passed,
        "min_cell_count": settings.min_cell_count,
    }


def _centralized(files: list[Path], epochs: int, runs_dir: Path) -> dict[str, Any]:
    """``omopfed train --model densenet2d --mode centralized -s A -s B -s C --epochs N``."""
    from node.settings import load_site_settings
    from node.train import RunRequest, train

    request = RunRequest(
        model=MODEL,
        mode="centralized",
        sites=tuple(load_site_settings(f) for f in files),
        epochs=epochs,
        seed=SEED,
        out=runs_dir,
        device="cpu",
        num_threads=1,  # as each simulated client; torch's spinning threads crawl when loaded
    )
    result = train(request)
    return {"folder": str(result.folder), "metrics": _numbers(result.metrics)}


def _federated(files: list[Path], rounds: int, workspace: Path) -> dict[str, Any]:
    """``omopfed simulate -w DIR --site A --site B --site C --rounds R --local-epochs 1``."""
    from federation.simulate import SimulationRequest, simulate
    from federation.store import MetricsStore
    from omopfed.protocol import RunConfigKey as K

    options: dict[str, Any] = {
        K.MODEL: MODEL, K.NUM_ROUNDS: rounds, K.LOCAL_EPOCHS: 1, K.MIN_SITES: len(files),
        K.SEED: SEED, K.RUN_NAME: "demo-federated", K.NUM_THREADS: 1,
    }  # fmt: skip
    if workspace.exists():  # an interrupted attempt: start the run again from nothing
        shutil.rmtree(workspace)
    result = simulate(SimulationRequest(workspace, options, sites=files, timeout=1800))
    if result.status != "finished:completed":
        raise DemoStateError(
            f"the federated run ended {result.status}",
            hint=f"see {workspace / 'logs'} and rerun the demo",
        )
    store = MetricsStore(result.store_url)
    try:
        rows = store.site_metrics(result.run_name)
    finally:
        store.dispose()
    last = [r for r in rows if r["round"] == result.rounds]
    return {
        "run_name": result.run_name,
        "rounds": result.rounds,
        "store_url": result.store_url,
        "site_metrics": [{k: r[k] for k in ("site", "split", "metric", "value")} for r in last],
    }


def _study(study_dir: Path, files: list[Path], epochs: int, rounds: int) -> dict[str, Any]:
    """``omopfed study run --config STUDY_DIR.toml``: STUDY_REPEATS repeats of centralized,
    each site alone and federated, every final model evaluated on the same validation
    subjects, then the report (statistics, box plots with p-values, ROC, learning curves)."""
    from omopfed.study import StudyConfig, StudyData, run_study

    config = StudyConfig(
        model=MODEL, repeats=STUDY_REPEATS, seed=SEED, epochs=epochs, rounds=rounds,
        local_epochs=1, data=StudyData(sites=files),
    )  # fmt: skip
    outcome = run_study(config, study_dir)
    import pandas as pd

    means = pd.read_parquet(outcome.results).groupby("configuration", sort=False)
    table = means[config.compared_metrics].mean().reset_index()
    table.insert(1, "runs", means.size().to_numpy())
    return {"html": str(outcome.report), "means": table.to_dict(orient="records")}


def _numbers(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, int | float)}


def _summary(
    per_site: dict[str, dict[str, Any]],
    centralized: dict[str, Any],
    federated: dict[str, Any],
    study: dict[str, Any],
    seconds: float,
) -> None:
    from federation.report import suppress

    site_rows = [
        (
            name,
            r["cohort_persons"],
            suppress(r["manifest_included"], r["min_cell_count"]),
            suppress(r["num_train"], r["min_cell_count"]),
            suppress(r["num_validation"], r["min_cell_count"]),
            "passed" if r["gate_passed"] else "FAILED",
        )
        for name, r in per_site.items()
    ]
    print_table(
        "sites",
        ["site", "cohort persons", "manifest rows", "train", "validation", "gate"],
        site_rows,
    )
    means = study["means"]
    columns = list(means[0]) if means else ["configuration"]
    shown = ([f"{v:.3f}" if isinstance(v, float) else v for v in row.values()] for row in means)
    print_table("study: mean over repeats (same validation subjects)", columns, shown)
    out.print(f"centralized run: {centralized['folder']}", highlight=False)
    out.print(
        f"federated run: {federated['run_name']} ({federated['rounds']} round(s)) "
        f"in {federated['store_url']}",
        highlight=False,
    )
    out.print(f"report: {study['html']}", highlight=False)
    out.print(f"demo finished in {seconds:.0f} s", highlight=False)
