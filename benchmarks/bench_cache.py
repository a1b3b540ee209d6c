"""P2: the dataset cache, warm vs cold, and a fresh process loading a site's 2D dataset.

One synthetic site (default: the demo profile's image sizes, 40 patients) is generated, its
reference cohort run and resolved. Then, median of ``--repeats`` runs each:

* cold build: ``build_dataset`` into an empty cache folder (reads and preprocesses every series,
  2 worker processes);
* warm build: ``build_dataset`` again (fingerprints every file, finds every item and the entry);
* warm load: ``load_training_data`` + reading every sample (what a trainer does per round);
* fresh process: a new interpreter imports torch, then models + node.dataset, loads the 2D
  dataset and reads one sample; each phase timed inside the process (what the ClientApp adds
  to importing torch), then the same with SiteSettings built from site.toml.

Run: .venv/bin/python benchmarks/bench_cache.py [--patients 40] [--profile demo] [--repeats 3]
Numbers go to docs/explanation/dataset-cache.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cohorts.db import Database
from cohorts.loader import load_definition
from cohorts.runner import run_cohort
from node.cache import build_dataset
from node.dataset import load_training_data
from node.manifest import resolve
from node.settings import SiteSettings, load_site_settings
from node.synth.federation import FederationRequest, generate_federation

ROOT = Path(__file__).resolve().parent.parent
# Run in a fresh interpreter: import torch, then what the ClientApp adds, timing each phase in
# the process itself (wall-clock differences between whole processes drown in the machine's
# load). load_training_data reads two attributes of the settings: the first load passes just
# those; then the real SiteSettings are built (node.settings imports pydantic-settings and,
# through cohorts.db, SQLAlchemy), as a ClientApp that parses them does.
CHILD = """
import json, sys, time
t0 = time.perf_counter()
import torch
t1 = time.perf_counter()
import models, node.dataset
t2 = time.perf_counter()
from pathlib import Path
from types import SimpleNamespace
paths = SimpleNamespace(cache_dir=Path({cache!r}), workspace=Path({workspace!r}))
data = node.dataset.load_training_data(paths, "densenet2d")
data.train[0]
t3 = time.perf_counter()
from node.settings import load_site_settings
node.dataset.load_training_data(load_site_settings({toml!r}), "densenet2d")
t4 = time.perf_counter()
json.dump(dict(torch=t1 - t0, imports=t2 - t1, load=t3 - t2, settings=t4 - t3), sys.stdout)
"""


def _median(
    fn: Callable[[], object], repeats: int, before: Callable[[], None] | None = None
) -> float:
    times = []
    for _ in range(repeats):
        if before:
            before()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _site(out: Path, profile: str, patients: int) -> SiteSettings:
    generate_federation(FederationRequest(out=out, sites=1, patients=patients, profile=profile))
    settings = load_site_settings(out / "site_a" / "site.toml")
    definition = load_definition(ROOT / "cohorts" / "definitions" / "reference_glioma.json")
    with Database(settings.database_url.get_secret_value(), settings.schemas) as db:
        run_cohort(db, definition, 1, min_cell_count=1)
    resolve(settings, 1)
    return settings


def _read_all(settings: SiteSettings, model: str) -> None:
    data = load_training_data(settings, model)
    for dataset in (data.train, data.validation):
        for i in range(len(dataset)):
            dataset[i]


def _p2(settings: SiteSettings, model: str, repeats: int) -> None:
    cache = Path(settings.cache_dir or "")
    cold = _median(
        lambda: build_dataset(settings, model),
        repeats,
        before=lambda: shutil.rmtree(cache, ignore_errors=True),
    )
    report = build_dataset(settings, model)
    warm = _median(lambda: build_dataset(settings, model), max(repeats, 5))
    load = _median(lambda: _read_all(settings, model), max(repeats, 5))
    n = report.num_train + report.num_validation
    print(
        f"{model}: {n} subjects | cold build {cold:.2f} s | warm build {warm * 1000:.1f} ms "
        f"(x{cold / warm:.0f}) | warm load + read all {load * 1000:.1f} ms (x{cold / load:.0f})"
    )


def _fresh_process(settings: SiteSettings, toml: Path, repeats: int) -> None:
    code = CHILD.format(
        cache=str(settings.cache_dir), workspace=str(settings.workspace), toml=str(toml)
    )
    runs = [
        json.loads(
            subprocess.run(
                [sys.executable, "-c", code], check=True, cwd=ROOT, capture_output=True, text=True
            ).stdout
        )
        for _ in range(repeats)
    ]
    phase = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    extra = phase["imports"] + phase["load"]
    print(
        f"fresh process (median of {repeats}): import torch {phase['torch']:.2f} s | then "
        f"import models + node.dataset {phase['imports'] * 1000:.0f} ms + load + one sample "
        f"{phase['load'] * 1000:.0f} ms = extra {extra * 1000:.0f} ms | building SiteSettings "
        f"from site.toml and loading again {phase['settings'] * 1000:.0f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="demo")
    parser.add_argument("--patients", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--fresh-repeats", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        settings = _site(Path(tmp), args.profile, args.patients)
        for model in ("densenet2d", "unet3d"):
            _p2(settings, model, args.repeats)
        build_dataset(settings, "densenet2d")
        _fresh_process(settings, Path(tmp) / "site_a" / "site.toml", args.fresh_repeats)


if __name__ == "__main__":
    main()
