"""``omopfed study run``: the seed study's repeated centralized, local and federated runs.

The seed study trained DenseNet121 ten times centrally and ten times federated for 2-5 clients
and compared the runs with rank-sum tests. This module plans those runs from ``study.toml``,
runs the missing ones one after another and keeps their results; the statistics and the report
are :mod:`federation.stats` and :mod:`federation.report`. It joins node (the sites' data, the
training gate, the Trainer on local data) and federation (Flower's simulation engine, the
checkpoints), so it lives in the top ``omopfed`` package beside the demo.

What makes the comparison fair, and why:

* **One evaluation set.** Every run's final model, whatever trained it, is evaluated by the same
  code on the same subjects: the union of the sites' validation splits (sites mode) or the pooled
  dataset's validation split (pooled mode, which is exactly the union of the K clients'
  validation shards). Averaging per-site AUCs instead would compare a different number with the
  centralized pooled AUC. Federated models are read from the run's last checkpoint.
* **Identical recipe.** The model's Trainer recipe with the study's batch size and learning
  rate, the same seed per repeat (``seed + repeat``) in every configuration (the federated
  initial model and the centralized one are then the same network), centralized and local runs
  ``epochs`` epochs, federated runs ``rounds`` x ``local_epochs``.
* **Clients.** With real sites (``data.sites``), federated-N uses the N sites and local-SITE each
  site alone. With one pooled dataset (``data.pooled``), federated-K splits it into K
  class-balanced clients, each keeping its share of the train and of the validation split (its
  own ~80/20 split, as in the seed), with the partition seeded per repeat; ``local-1ofK`` trains
  on one such client alone.

Resumable: each finished run writes ``runs/<run>/run.json`` (atomically) and is skipped on the
next ``study run``; an interrupted federated run continues from its last checkpoint. The study
folder remembers the recipe and the data hashes; a rerun with another recipe, or after the data
changed, is refused (``--force`` starts again). Adding repeats, client counts or configurations
to ``study.toml`` extends a study. ``results.parquet`` (the table ``omopfed study report``
reads) is rebuilt from the run records after every run.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import typer
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from omopfed.clikit import Format, FormatOption, print_json, progress
from omopfed.clikit import out as out_console
from omopfed.errors import ConfigError, field_problems

if TYPE_CHECKING:
    from torch.utils.data import Dataset

    from models.evaluation import Predictions
    from node.settings import SiteSettings
    from node.train import SiteData

log = logging.getLogger(__name__)

STUDY_FILE = "study.json"
RESULTS_FILE = "results.parquet"
RUN_FILE = "run.json"
PREDICTIONS_FILE = "predictions.npz"
#: The seed paper's four metrics for the MGMT classifier; per-head AUC and Dice for the U-Net.
DEFAULT_METRICS = {
    "densenet2d": ["mgmt_accuracy", "mgmt_f1", "mgmt_kappa", "mgmt_auc"],
    "unet3d": [
        "idh_auc", "codeletion_1p19q_auc", "mgmt_auc", "grade_auc", "wt_dice", "tc_dice", "et_dice",
    ],
}  # fmt: skip
#: Recipe fields: a study folder's runs are comparable only while these stay the same.
RECIPE = (
    "model", "seed", "cohort_id", "epochs", "rounds", "local_epochs", "batch_size", "lr", "data",
)  # fmt: skip
Kind = Literal["centralized", "local", "federated"]
KINDS: tuple[Kind, ...] = ("centralized", "local", "federated")


class StudyError(ConfigError):
    """A study configuration or study folder that cannot be used as it is."""

    code = "STUDY"


class StudyData(BaseModel):
    """Where the study's data comes from: real sites, or one site's data split into clients."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sites: list[Path] = Field(default_factory=list)
    pooled: Path | None = None


class StudyConfig(BaseModel):
    """``study.toml``: the ``[study]`` table and its ``[study.data]`` table."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: Literal["densenet2d", "unet3d"]
    repeats: int = Field(5, ge=1)
    seed: int = Field(0, ge=0)
    cohort_id: int = Field(1, ge=1)
    configurations: list[Kind] = Field(default_factory=lambda: list(KINDS), min_length=1)
    clients: list[int] = Field(default_factory=list)
    epochs: int = Field(10, ge=1)
    rounds: int = Field(0, ge=0)  # 0: as many rounds as centralized epochs
    local_epochs: int = Field(1, ge=1)
    batch_size: int = Field(0, ge=0)  # 0: the model's recipe
    lr: float = Field(0.0, ge=0.0)  # 0: the model's recipe
    metrics: list[str] = Field(default_factory=list)  # empty: DEFAULT_METRICS of the model
    run_timeout: float = Field(3600.0, gt=0)
    #: CPU threads of each training process (in-process runs and each simulated client). One by
    #: default: two simulated clients train at once on a 2-core machine, and torch's spinning
    #: OpenMP threads slow down by an order of magnitude when they outnumber free cores.
    num_threads: int = Field(1, ge=1)
    data: StudyData

    @model_validator(mode="after")
    def _consistent(self) -> StudyConfig:
        if bool(self.data.sites) == (self.data.pooled is not None):
            raise ValueError("data: give either sites = [...] or pooled = '...', not both")
        if any(k < 1 for k in self.clients):
            raise ValueError("clients: every client count must be at least 1")
        if self.data.sites:
            n = len(self.data.sites)
            if self.clients and self.clients != [n]:
                raise ValueError(f"clients: with {n} real sites the only client count is {n}")
        elif "federated" in self.configurations and not self.clients:
            raise ValueError("clients: pooled data needs the client counts, e.g. [2, 3, 4, 5]")
        return self

    @property
    def client_counts(self) -> list[int]:
        return sorted(set(self.clients or [len(self.data.sites)]))

    @property
    def num_rounds(self) -> int:
        return self.rounds or self.epochs

    @property
    def compared_metrics(self) -> list[str]:
        return self.metrics or DEFAULT_METRICS[self.model]

    @property
    def settings_files(self) -> list[Path]:
        """The site settings files to load: the sites, or the one pooled site."""
        return [self.data.pooled] if self.data.pooled is not None else list(self.data.sites)

    def recipe(self) -> dict[str, Any]:
        return json.loads(self.model_dump_json(include=set(RECIPE)))


def load_config(path: Path) -> StudyConfig:
    """Read ``study.toml``; paths in it are relative to its folder. Errors name the field."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StudyError(f"no study file at {path}") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise StudyError(f"{path}: not a readable TOML file ({exc})") from None
    table = raw.get("study")
    if not isinstance(table, dict) or set(raw) - {"study"}:
        raise StudyError(
            f"{path}: expected one [study] table (with [study.data])",
            hint="see docs/how-to/analyst.md for an example study.toml",
        )
    try:
        config = StudyConfig.model_validate(table)
    except ValidationError as exc:
        raise StudyError(f"{path}: {field_problems(exc.errors(), root='study')}") from None
    base = path.resolve().parent
    data = StudyData(
        sites=[(base / p).resolve() for p in config.data.sites],
        pooled=(base / config.data.pooled).resolve() if config.data.pooled else None,
    )
    config = config.model_copy(update={"data": data})
    for file in config.settings_files:
        if not file.is_file():
            raise StudyError(f"{path}: study.data names {file}, which is not a file")
    return config


# -- the plan ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedRun:
    """One run of the study: its configuration (the results table's name), repeat and seed."""

    configuration: str
    kind: Kind
    repeat: int
    seed: int
    clients: int = 0  # federated: K; local in pooled mode: the K of the client trained alone
    site: int = -1  # local in sites mode: which site

    @property
    def name(self) -> str:
        return f"{self.configuration}-r{self.repeat}"


def plan(config: StudyConfig, site_names: Sequence[str]) -> list[PlannedRun]:
    """Every run, repeat by repeat (an interrupted study has whole early repeats)."""
    runs = []
    for repeat in range(config.repeats):
        seed = config.seed + repeat
        for kind in KINDS:
            if kind not in config.configurations:
                continue
            if kind == "centralized":
                runs.append(PlannedRun("centralized", "centralized", repeat, seed))
            elif kind == "local" and config.data.sites:
                runs += [
                    PlannedRun(f"local-{name}", "local", repeat, seed, site=i)
                    for i, name in enumerate(site_names)
                ]
            elif kind == "local":
                runs += [
                    PlannedRun(f"local-1of{k}", "local", repeat, seed, clients=k)
                    for k in config.client_counts
                    if k > 1
                ]
            else:
                runs += [
                    PlannedRun(f"federated-{k}", "federated", repeat, seed, clients=k)
                    for k in config.client_counts
                ]
    return runs


# -- the study folder ----------------------------------------------------------------------


class StudyFolder:
    """``STUDY_DIR``: the recipe and data it was made with, the run records, the results."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    def open(self, config: StudyConfig, data_hashes: dict[str, str], *, force: bool) -> None:
        """Create the folder, or check that it holds this recipe on this data."""
        if self.root.exists() and not self.root.is_dir():
            raise StudyError(f"{self.root} is a file, not a study folder", hint="use another --out")
        if force and self.root.exists():
            shutil.rmtree(self.root)
        state = {"recipe": config.recipe(), "data_hashes": data_hashes}
        file = self.root / STUDY_FILE
        if file.is_file():
            try:
                saved = json.loads(file.read_text(encoding="utf-8"))
            except ValueError as exc:
                raise StudyError(
                    f"{file} is unreadable ({exc})", hint="rerun with --force"
                ) from None
            for key, label in (("recipe", "recipe"), ("data_hashes", "sites' data")):
                if saved.get(key) != state[key]:
                    raise StudyError(
                        f"{self.root} holds a study made with another {label}: its runs "
                        "cannot be compared with new ones",
                        hint="use another --out folder, or --force to start again",
                    )
        elif self.root.exists() and any(self.root.iterdir()):
            raise StudyError(
                f"{self.root} is not empty and holds no {STUDY_FILE}",
                hint="use another --out folder, or --force to replace it",
            )
        self.runs.mkdir(parents=True, exist_ok=True)
        _write_atomic(file, json.dumps(state, indent=2).encode())

    def record(self, run: PlannedRun) -> dict[str, Any] | None:
        file = self.runs / run.name / RUN_FILE
        return json.loads(file.read_text(encoding="utf-8")) if file.is_file() else None

    def save(self, run: PlannedRun, record: dict[str, Any], predictions: Predictions) -> None:
        """Predictions first, the record last: a record means the run is complete."""
        import io

        import numpy as np

        folder = self.runs / run.name
        folder.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        arrays = {f"labels_{h}": v for h, v in predictions.labels.items()}
        arrays |= {f"probabilities_{h}": v for h, v in predictions.probabilities.items()}
        np.savez(buffer, **arrays)  # type: ignore[arg-type]
        _write_atomic(folder / PREDICTIONS_FILE, buffer.getvalue())
        from node.train import json_safe

        _write_atomic(folder / RUN_FILE, json.dumps(json_safe(record), indent=2).encode())

    def results(self, runs: Sequence[PlannedRun], metrics: Sequence[str]) -> Any:
        """The results table of the finished runs among ``runs`` (one row per run)."""
        import pandas as pd

        rows = []
        for run in runs:
            record = self.record(run)
            if record is None:
                continue
            values = record["metrics"]
            rows.append(
                {"configuration": run.configuration, "repeat": run.repeat, "seed": run.seed}
                | {m: _number(values.get(m)) for m in metrics}
                | {"n_train": record["num_train"], "n_validation": record["num_validation"]}
            )
        columns = ["configuration", "repeat", "seed", *metrics, "n_train", "n_validation"]
        return pd.DataFrame(rows, columns=columns)

    def write_results(self, frame: Any) -> Path:
        import io

        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        return _write_atomic(self.root / RESULTS_FILE, buffer.getvalue())


def _write_atomic(path: Path, payload: bytes) -> Path:
    """The project's atomic write, imported late: federation.report pulls in pandas and
    matplotlib, and every ``omopfed`` command imports this module."""
    from federation.report import atomic_write

    return atomic_write(path, payload)


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)


# -- running -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Loaded:
    """The loaded sites: training sets per site, the common evaluation set, counts."""

    sites: list[SiteData]
    evaluation: Dataset[Any]
    min_cell_count: int
    device: str


@dataclass(frozen=True)
class StudyOutcome:
    """What a ``study run`` did: runs trained now and reused, the results table, the report."""

    folder: Path
    done: int
    reused: int
    results: Path
    report: Path | None


RunCallback = Callable[[PlannedRun, dict[str, Any], bool], None]


def run_study(
    config: StudyConfig,
    out: Path,
    *,
    force: bool = False,
    report: bool = True,
    on_run: RunCallback | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> StudyOutcome:
    """Run every planned run not yet finished, then write results.parquet and the report."""
    from node.settings import load_site_settings
    from node.train import load_site

    settings = [load_site_settings(f) for f in config.settings_files]
    sites = [load_site(s, config.model, config.cohort_id) for s in settings]  # the gate, too
    loaded = _loaded(config, sites, settings)
    folder = StudyFolder(out.resolve())
    folder.open(config, {s.name: s.data.data_hash for s in sites}, force=force)
    runs = plan(config, [s.name for s in sites])
    done = reused = 0
    for i, run in enumerate(runs):
        if on_progress is not None:
            on_progress(i, len(runs))
        record = folder.record(run)
        if record is not None:
            reused += 1
            if on_run is not None:
                on_run(run, record, True)
            continue
        started = time.perf_counter()
        metrics, predictions, num_train, detail = _execute(config, run, loaded, folder)
        record = {
            "run": run.name,
            "configuration": run.configuration,
            "repeat": run.repeat,
            "seed": run.seed,
            "metrics": metrics,
            "num_train": num_train,
            "num_validation": len(loaded.evaluation),  # type: ignore[arg-type]
            "seconds": round(time.perf_counter() - started, 1),
            **detail,
        }
        folder.save(run, record, predictions)
        folder.write_results(folder.results(runs, config.compared_metrics))
        done += 1
        if on_run is not None:
            on_run(run, record, False)
    if on_progress is not None:
        on_progress(len(runs), len(runs))
    results = folder.write_results(folder.results(runs, config.compared_metrics))
    page = write_report(config, folder, runs, loaded.min_cell_count) if report else None
    return StudyOutcome(folder.root, done, reused, results, page)


def _loaded(config: StudyConfig, sites: list[SiteData], settings: list[SiteSettings]) -> Loaded:
    """The sites' data and the common evaluation set; the strictest minimum cell count."""
    from node.train import pool

    evaluation = pool(sites, config.model).validation
    return Loaded(sites, evaluation, max(s.min_cell_count for s in settings), settings[0].device)


def _execute(
    config: StudyConfig, run: PlannedRun, loaded: Loaded, folder: StudyFolder
) -> tuple[dict[str, float], Predictions, int, dict[str, Any]]:
    """Train one run and evaluate its final model on the common evaluation set."""
    from node.client_app import client_share
    from node.train import pool

    if run.kind == "federated":
        weights, detail = _federated(config, run, folder)
        trainer = _trainer(config, run.seed, None, loaded)
        trainer.set_weights(weights)
        num_train = sum(s.data.num_train for s in loaded.sites)
    else:
        if run.kind == "centralized":
            train_set = pool(loaded.sites, config.model).train
        elif run.site >= 0:
            train_set = loaded.sites[run.site].data.train
        else:
            train_set = client_share(loaded.sites[0].data.train, 0, run.clients, run.seed)
        trainer = _trainer(config, run.seed, train_set, loaded)
        trainer.fit(config.epochs, validate=False)
        num_train = len(train_set)  # type: ignore[arg-type]
        detail = {"epochs": config.epochs}
    metrics, predictions = trainer.evaluate("validation")
    return metrics, predictions, num_train, detail


def _trainer(config: StudyConfig, seed: int, train_set: Any, loaded: Loaded) -> Any:
    """A Trainer of a freshly seeded network with the study's recipe (the same one the
    ClientApp builds from the run's batch size and learning rate)."""
    from models.config import TrainerConfig, seed_everything
    from models.networks import build_model
    from models.trainer import Trainer

    recipe = TrainerConfig.for_densenet if config.model == "densenet2d" else TrainerConfig.for_unet
    overrides: dict[str, Any] = {
        "seed": seed, "device": loaded.device, "num_threads": config.num_threads,
    }  # fmt: skip
    if config.batch_size:
        overrides["batch_size"] = config.batch_size
    if config.lr:
        overrides["lr"] = config.lr
    seed_everything(seed)  # before the network: the initial weights the federation also uses
    network = build_model(config.model)
    return Trainer(network, train_set, loaded.evaluation, config=recipe(**overrides))


def _federated(
    config: StudyConfig, run: PlannedRun, folder: StudyFolder
) -> tuple[list[Any], dict[str, Any]]:
    """The run in Flower's simulation engine (continuing an interrupted attempt from its last
    checkpoint), then the final global model's arrays."""
    from federation import checkpoint
    from federation.simulate import SimulationRequest, simulate
    from federation.store import MetricsStore
    from omopfed.protocol import RunConfigKey as K

    workspace = folder.root / "federation"
    store_url = f"sqlite:///{workspace / 'metrics.sqlite'}"
    checkpoints = workspace / "checkpoints"
    workspace.mkdir(parents=True, exist_ok=True)
    options: dict[str, Any] = {
        K.MODEL: config.model, K.NUM_ROUNDS: config.num_rounds,
        K.LOCAL_EPOCHS: config.local_epochs, K.MIN_SITES: run.clients, K.SEED: run.seed,
        K.COHORT_ID: config.cohort_id, K.BATCH_SIZE: config.batch_size, K.LR: config.lr,
        K.NUM_THREADS: config.num_threads, K.FINAL_EVALUATION: False, K.STORE_URL: store_url,
        K.CHECKPOINT_DIR: str(checkpoints),
    }  # fmt: skip
    store = MetricsStore(store_url)
    try:
        previous = store.get_run(run.name)
    finally:
        store.dispose()
    resumable = checkpoint.latest(checkpoint.run_folder(checkpoints, run.name)) is not None
    if previous is not None and resumable:
        options[K.RESUME_FROM] = run.name
        log.info("%s: continuing the interrupted run from its last checkpoint", run.name)
    else:
        shutil.rmtree(checkpoint.run_folder(checkpoints, run.name), ignore_errors=True)
        options[K.RUN_NAME] = run.name if previous is None else _fresh_name(store_url, run.name)
    if config.data.sites:
        request = SimulationRequest(
            workspace, options, sites=config.data.sites, timeout=config.run_timeout
        )
    else:
        request = SimulationRequest(
            workspace, options, pooled=config.data.pooled, partitions=run.clients,
            timeout=config.run_timeout,
        )  # fmt: skip
    result = simulate(request)
    if result.status != "finished:completed" or result.rounds < config.num_rounds:
        raise StudyError(
            f"{run.name}: the federated run ended {result.status or 'without a status'} after "
            f"{result.rounds} of {config.num_rounds} round(s)",
            hint=f"see {workspace / 'logs'}; rerun `omopfed study run` to continue it",
        )
    run_folder = checkpoint.run_folder(checkpoints, result.run_name)
    meta = checkpoint.latest(run_folder)
    if meta is None:
        raise StudyError(f"{run.name}: the federated run left no checkpoint in {run_folder}")
    arrays = checkpoint.load(run_folder, meta)
    detail = {
        "rounds": meta.round,
        "local_epochs": config.local_epochs,
        "clients": run.clients,
        "federated_run": result.run_name,
        "store_url": store_url,
    }
    return list(arrays.values()), detail


def _fresh_name(store_url: str, name: str) -> str:
    """A run name not yet in the store (an attempt that failed before its first checkpoint
    keeps its record; the new attempt is recorded beside it)."""
    from federation.store import MetricsStore

    store = MetricsStore(store_url)
    try:
        attempt = 2
        while store.get_run(f"{name}-a{attempt}") is not None:
            attempt += 1
        return f"{name}-a{attempt}"
    finally:
        store.dispose()


# -- the report ----------------------------------------------------------------------------


def write_report(
    config: StudyConfig, folder: StudyFolder, runs: Sequence[PlannedRun], min_cell_count: int
) -> Path:
    """``omopfed study report`` on the results, plus the ROC curves of each configuration's
    first repeat (``roc.csv``) and the federated runs' per-site learning curves."""
    from federation import report

    results = report.read_results(folder.root)
    roc = _roc_points(config, folder, runs)
    if roc:
        _write_roc_csv(folder.root / report.ROC_FILE, roc)
    written = report.write_study_report(
        results,
        folder.root / "report",
        min_cell_count=min_cell_count,
        curves=_learning_curves(folder, runs),
        roc=roc or None,
        title=f"Centralized versus federated: {config.model}, {config.repeats} repeat(s)",
    )
    return written.html


def _roc_points(
    config: StudyConfig, folder: StudyFolder, runs: Sequence[PlannedRun]
) -> dict[str, tuple[list[float], list[float]]]:
    """ROC of the first compared metric's head (MGMT by default), first finished repeat."""
    import numpy as np
    from sklearn.metrics import roc_curve

    head = next((m.rsplit("_", 1)[0] for m in config.compared_metrics if m.endswith("_auc")), "")
    curves: dict[str, tuple[list[float], list[float]]] = {}
    for run in runs:
        file = folder.runs / run.name / PREDICTIONS_FILE
        if not head or run.configuration in curves or not file.is_file():
            continue
        with np.load(file) as data:
            if f"labels_{head}" not in data:
                continue
            labels, probs = data[f"labels_{head}"], data[f"probabilities_{head}"]
        keep = labels >= 0
        if probs.shape[1] != 2 or len(set(labels[keep].tolist())) < 2:
            continue  # ROC needs a binary head with both classes present
        fpr, tpr, _ = roc_curve(labels[keep], probs[keep, 1])
        curves[f"{run.configuration} r{run.repeat}"] = (fpr.tolist(), tpr.tolist())
    return curves


def _write_roc_csv(path: Path, curves: dict[str, tuple[list[float], list[float]]]) -> None:
    lines = ["curve,fpr,tpr"]
    for name, (fpr, tpr) in curves.items():
        lines += [f"{name},{x!r},{y!r}" for x, y in zip(fpr, tpr, strict=True)]
    _write_atomic(path, ("\n".join(lines) + "\n").encode())


def _learning_curves(folder: StudyFolder, runs: Sequence[PlannedRun]) -> list[Any]:
    """Per-site validation loss per round of each client count's first federated run."""
    from federation import report
    from federation.store import MetricsStore

    curves = []
    seen: set[str] = set()
    for run in runs:
        record = folder.record(run) if run.kind == "federated" else None
        if record is None or run.configuration in seen:
            continue
        seen.add(run.configuration)
        store = MetricsStore(str(record["store_url"]))
        try:
            rows = store.site_metrics(str(record["federated_run"]))
        finally:
            store.dispose()
        data = report.learning_curve_data(rows, "loss")
        curves.append(report.CurveData(f"{run.name}: {data.title}", "round", "loss", data.lines))
    return curves


# -- the command ---------------------------------------------------------------------------


def run_command(
    config_file: Path = typer.Option(..., "--config", "-c", help="The study.toml to run."),
    out: Path | None = typer.Option(
        None, "--out", help="Study folder (default: beside study.toml, named after it)."
    ),
    force: bool = typer.Option(False, "--force", help="Delete the study folder and start again."),
    no_report: bool = typer.Option(False, "--no-report", help="Skip the HTML report."),
    fmt: Format = FormatOption,
) -> None:
    """Run a study's missing runs (centralized, local, federated x repeats), then its report."""
    config = load_config(config_file)
    folder = out or config_file.resolve().parent / config_file.stem

    def shown(run: PlannedRun, record: dict[str, Any], reused: bool) -> None:
        if fmt is Format.json:
            return
        values = ", ".join(
            f"{m} {_number(record['metrics'].get(m)):.3f}" for m in config.compared_metrics
        )
        when = "reused" if reused else f"{record['seconds']:.0f} s"
        out_console.print(f"[green]✓[/] {run.name} (seed {run.seed}): {values} [dim]({when})[/]")

    with progress("study runs") as update:
        outcome = run_study(
            config, folder, force=force, report=not no_report, on_run=shown, on_progress=update
        )
    summary = {
        "study": str(outcome.folder),
        "runs_done": outcome.done,
        "runs_reused": outcome.reused,
        "results": str(outcome.results),
        "report": str(outcome.report) if outcome.report else None,
    }
    if fmt is Format.json:
        print_json(summary)
        return
    out_console.print(
        f"{outcome.done} run(s) done, {outcome.reused} reused; results: {outcome.results}",
        highlight=False,
    )
    if outcome.report is not None:
        out_console.print(f"report: {outcome.report}", highlight=False)
