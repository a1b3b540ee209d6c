"""``omopfed train``: a local (one site) or centralized (pooled sites) baseline run.

Parses, calls :func:`node.train.train`, renders. torch and the models are imported when the
command runs, never when the CLI starts, so ``omopfed --help`` stays fast. The progress bar
(one step per epoch, on stderr) lives here only; the library reports epochs via a callback.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from node.settings import load_site_settings
from omopfed.clikit import Format, FormatOption, out, print_json, print_table, progress

if TYPE_CHECKING:
    from node.train import RunResult


def _shown(count: int, minimum: int) -> str:
    """Counts below the sites' minimum cell count show as "<N", as in every other command."""
    return f"<{minimum}" if count < minimum else str(count)


def _counts_shown(metrics: dict[str, float], minimum: int) -> dict[str, object]:
    """Metrics with their per-head counts (``<head>_n``) suppressed like other counts."""
    return {
        k: _shown(int(v), minimum) if k.endswith("_n") and not math.isnan(v) else v
        for k, v in metrics.items()
    }


def _fmt(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.3f}"


def train_command(
    model: str = typer.Option(..., "--model", help="densenet2d or unet3d."),
    mode: str = typer.Option(
        "local", "--mode", help="local (one site) or centralized (several sites pooled)."
    ),
    settings: list[Path] = typer.Option(
        ..., "--settings", "-s", help="Site settings TOML file; repeat for centralized runs."
    ),
    epochs: int | None = typer.Option(
        None, "--epochs", help="Epochs (default: the recipe's, densenet2d 10, unet3d 60)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seeds weights, shuffling and dropout."),
    out_dir: Path | None = typer.Option(
        None, "--out", help="Folder for run folders (default: <first site's workspace>/runs)."
    ),
    cohort_id: int = typer.Option(1, "--cohort", help="cohort_definition_id of the dataset."),
    gradcam: int = typer.Option(0, "--gradcam", help="Grad-CAM overlays for N validation samples."),
    device: str | None = typer.Option(
        None, "--device", help="auto, cpu or cuda:N (default: site's)."
    ),
    threads: int | None = typer.Option(None, "--threads", help="torch CPU threads."),
    fmt: Format = FormatOption,
) -> None:
    """Train on validated cached data; write a run folder (config, hashes, metrics, plots)."""
    from node.train import RunRequest, train

    request = RunRequest(
        model=model,
        mode=mode,
        sites=tuple(load_site_settings(path) for path in settings),
        epochs=epochs,
        seed=seed,
        out=out_dir,
        cohort_id=cohort_id,
        gradcam=gradcam,
        device=device,
        num_threads=threads,
    )
    with progress(f"{model} {mode}: epoch") as update:

        def on_epoch(record: dict[str, float]) -> None:
            loss = _fmt(record.get("train_loss", float("nan")))
            update(int(record["epoch"]), request.num_epochs, f"{model} {mode}: loss {loss}")

        result = train(request, on_epoch_end=on_epoch)
    _render(result, max(site.min_cell_count for site in request.sites), fmt, f"{model} {mode}")


def _render(result: RunResult, minimum: int, fmt: Format, label: str) -> None:
    """Final validation metrics and the run folder; counts suppressed below ``minimum``."""
    n_train, n_validation = (_shown(n, minimum) for n in (result.num_train, result.num_validation))
    if fmt is Format.json:
        print_json(
            {
                "run": str(result.folder),
                "num_train": n_train,
                "num_validation": n_validation,
                "validation": _counts_shown(result.metrics, minimum),
                "validation_per_site": {
                    site: _counts_shown(m, minimum) for site, m in result.per_site.items()
                },
            }
        )
        return
    keys = [k for k in result.metrics if k.endswith(("_auc", "_accuracy", "_dice", "loss"))]
    rows = [(k, _fmt(result.metrics[k])) for k in keys]
    title = f"{label}: {n_train} train / {n_validation} validation subjects"
    print_table(title, ["validation metric", "value"], rows)
    out.print(f"run folder {result.folder}", highlight=False)
