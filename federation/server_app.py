"""The aggregator's Flower ServerApp: one federated run, recorded, checkpointed and resumable.

``main`` parses the run config into :class:`~federation.config.RunSettings`, opens the metrics
store, starts from a seeded model or from the last checkpoint of ``resume-from``, and lets
Flower's ``Strategy.start`` run the rounds with :class:`~federation.strategy.FederatedAveraging`.
The store gets the run's outcome: ``completed``, or ``failed`` with the reason as an event.

Run names: a run is recorded under ``run-name`` or, when empty, under the Flower run id of its
first attempt. A resume is a new Flower run that continues the *same* recorded run (its rounds,
its checkpoints folder), so an analyst sees one run with rounds 1..N however often it was resumed.
"""

from __future__ import annotations

import logging
from pathlib import Path

from flwr.app import Array, ArrayRecord, Context
from flwr.serverapp import Grid, ServerApp

from federation import checkpoint
from federation.config import RunConfigError, RunSettings
from federation.observers import Checkpointer, MetricsRecorder
from federation.store import MetricsStore
from federation.strategy import FederatedAveraging, RoundObserver
from omopfed import offline

log = logging.getLogger(__name__)


def initial_arrays(model: str, seed: int) -> ArrayRecord:
    """A freshly initialised network's state dict, seeded so every run can be repeated."""
    from models.config import seed_everything
    from models.networks import build_model

    seed_everything(seed)
    return ArrayRecord(build_model(model).state_dict())


def observers_for(settings: RunSettings, store: MetricsStore, run_name: str) -> list[RoundObserver]:
    """Checkpoint first, then the store (see :mod:`federation.observers` for why)."""
    folder = checkpoint.run_folder(Path(settings.checkpoint_dir), run_name)
    return [
        Checkpointer(
            folder, run=run_name, model=settings.model, run_config=settings.as_run_config()
        ),
        MetricsRecorder(store, run_name),
    ]


def _start(
    settings: RunSettings, store: MetricsStore, run_name: str, flower_run: int
) -> tuple[ArrayRecord, int]:
    """The arrays to start from and the rounds already done (0 for a new run)."""
    if not settings.resume_from:
        store.start_run(run_name, settings.model, settings.num_rounds, settings.as_run_config())
        return initial_arrays(settings.model, settings.seed), 0
    folder = checkpoint.run_folder(Path(settings.checkpoint_dir), run_name)
    meta = checkpoint.latest(folder)
    if meta is None:
        raise checkpoint.CheckpointError(f"run {run_name!r} has no checkpoint to resume from")
    if meta.model != settings.model:
        raise RunConfigError(f"run {run_name!r} trained {meta.model}, not {settings.model}")
    arrays = checkpoint.load(folder, meta)
    if store.get_run(run_name) is None:
        store.start_run(run_name, settings.model, settings.num_rounds, settings.as_run_config())
    else:
        store.reopen_run(run_name)
    store.record_event(run_name, "resumed", f"from round {meta.round} as Flower run {flower_run}")
    return ArrayRecord({name: Array(a) for name, a in arrays.items()}), meta.round


def run_federation(grid: Grid, settings: RunSettings, flower_run: int) -> str:
    """Run (or resume) the rounds; return the recorded run name."""
    if not settings.store_url or not settings.checkpoint_dir:
        raise RunConfigError(
            "store-url and checkpoint-dir must be set in the run config",
            hint="`omopfed aggregator run` and `omopfed simulate` set both",
        )
    run_name = settings.resume_from or settings.run_name or str(flower_run)
    store = MetricsStore(settings.store_url)
    try:
        arrays, done = _start(settings, store, run_name, flower_run)
        if done < settings.num_rounds:
            _rounds(grid, settings, store, run_name, arrays, done)
        store.finish_run(run_name, "completed")
    except BaseException as exc:
        if store.get_run(run_name) is not None:
            store.record_event(run_name, "run_failed", f"{type(exc).__name__}: {exc}")
            store.finish_run(run_name, "failed")
        raise
    finally:
        store.dispose()
    return run_name


def _rounds(
    grid: Grid,
    settings: RunSettings,
    store: MetricsStore,
    run_name: str,
    arrays: ArrayRecord,
    done: int,
) -> None:
    strategy = FederatedAveraging(
        min_sites=settings.min_sites,
        planned_rounds=settings.num_rounds,
        wait_for_sites=settings.wait_for_sites,
        round_offset=done,
        final_evaluation=settings.final_evaluation,
        observers=observers_for(settings, store, run_name),
    )
    strategy.start(
        grid,
        arrays,
        num_rounds=settings.num_rounds - done,
        timeout=settings.round_timeout,
        train_config=settings.instruction(),
        evaluate_config=settings.instruction(),
    )


app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Flower's entry point on the aggregator (its own process per run)."""
    offline.apply()
    if not logging.getLogger("federation").handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.getLogger("federation").addHandler(handler)
        logging.getLogger("federation").setLevel(logging.INFO)
    settings = RunSettings.from_run_config(context.run_config)
    name = run_federation(grid, settings, context.run_id)
    log.info("run %s completed", name)
