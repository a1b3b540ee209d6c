"""``omopfed train`` on synthetic tiny sites taken through the real pipeline (slow).

Generate -> reference cohort -> resolve -> ``dataset build`` -> ``validate``, once per module,
then local and centralized runs on what the pipeline produced. The fast tests of the same code
on hand-written caches are in tests/node/test_train.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cohorts.db import Database
from cohorts.loader import load_definition
from cohorts.runner import run_cohort
from node.cache import build_dataset
from node.dataset import dataset_hash, load_training_data
from node.gate import ValidationGateError
from node.manifest import resolve
from node.settings import SiteSettings, load_site_settings
from node.synth.federation import FederationRequest, generate_federation
from node.train import RunRequest, train
from node.validation.service import Target, validate_site
from omopfed.cli import main
from tests.node.test_train import RUN_FILES, read_predictions
from tests.node.test_train import _one_thread as _one_thread  # autouse here too

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
#: Small images keep DenseNet fast; thresholds a 24-person tiny site meets.
SMALL = (
    "\n[dataset]\nimage_size = 32\n"
    "\n[validation]\nmin_cohort_size = 3\nmin_train_per_class = 1\n"
    "min_validation_per_class = 0\nmax_spacing_mm = 20.0\n"
)


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory) -> list[SiteSettings]:
    """Two tiny sites, each with its cohort, manifest, 2D dataset and a passing validation."""
    out = tmp_path_factory.mktemp("fed")
    generate_federation(FederationRequest(out=out, sites=2, patients=24, seed=5))
    definition = load_definition(ROOT / "cohorts" / "definitions" / "reference_glioma.json")
    built = []
    for name in ("site_a", "site_b"):
        toml = out / name / "site.toml"
        toml.write_text(toml.read_text() + SMALL)
        settings = load_site_settings(toml)
        with Database(settings.database_url.get_secret_value(), settings.schemas) as db:
            run_cohort(db, definition, 1, min_cell_count=5)
        resolve(settings, 1)
        build_dataset(settings, "densenet2d")
        assert validate_site(settings, ["cdm", "manifest", "images"], Target()).passed
        built.append(settings)
    return built


def _toml(settings: SiteSettings) -> str:
    return str(Path(settings.workspace).parent / "site.toml")


def test_local_run_end_to_end_through_the_cli(sites: list[SiteSettings], tmp_path: Path) -> None:
    args = ["train", "--model", "densenet2d", "--mode", "local", "--settings", _toml(sites[0])]
    assert (
        main([*args, "--epochs", "1", "--gradcam", "1", "--threads", "1", "--out", str(tmp_path)])
        == 0
    )
    (folder,) = tmp_path.iterdir()
    assert RUN_FILES | {"gradcam"} == {p.name for p in folder.iterdir()}
    data = json.loads((folder / "data.json").read_text())
    assert data["sites"][0]["data_hash"] == dataset_hash(sites[0], "densenet2d")
    assert (
        len(read_predictions(folder)) == load_training_data(sites[0], "densenet2d").num_validation
    )


def test_centralized_counts_are_the_sum_of_the_sites(
    sites: list[SiteSettings], tmp_path: Path
) -> None:
    result = train(
        RunRequest("densenet2d", "centralized", tuple(sites), epochs=1, out=tmp_path, num_threads=1)
    )
    loaded = [load_training_data(s, "densenet2d") for s in sites]
    assert result.num_train == sum(d.num_train for d in loaded)
    assert result.num_validation == sum(d.num_validation for d in loaded)
    assert set(result.per_site) == {"site_a", "site_b"}


def test_a_fixed_seed_centralized_run_on_one_site_repeats_exactly(
    sites: list[SiteSettings], tmp_path: Path
) -> None:
    runs = [
        train(
            RunRequest(
                "densenet2d",
                "centralized",
                (sites[1],),
                epochs=2,
                seed=3,
                out=tmp_path,
                num_threads=1,
            )
        )
        for _ in range(2)
    ]
    first, second = ((r.folder / "predictions.csv").read_bytes() for r in runs)
    assert first == second


def test_unet_is_refused_until_its_dataset_is_validated(
    sites: list[SiteSettings], tmp_path: Path
) -> None:
    """Last in the module: validating the 3D dataset replaces the site's gate record."""
    site = sites[0]
    build_dataset(site, "unet3d")
    request = RunRequest("unet3d", "local", (site,), epochs=1, out=tmp_path, num_threads=1)
    with pytest.raises(ValidationGateError, match="the data changed"):
        train(request)
    assert validate_site(site, ["cdm", "manifest", "images"], Target(model="unet3d")).passed
    result = train(request)
    assert "wt_dice" in result.metrics and "grade_auc" in result.metrics
