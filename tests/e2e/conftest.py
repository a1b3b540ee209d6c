"""Synthetic sites ready to train, built once per session through the site's real pipeline.

Three tiny synthetic hospitals (``omopfed synth federation --profile tiny``), the reference
cohort, ``omopfed resolve`` and ``omopfed dataset build`` through their library functions, with
32x32 inputs so a DenseNet121 round takes seconds. site_b's DICOM SEG objects are removed before
resolving, so it has no segmentations; site_c records no 1p/19q (the generator's design): the
U-Net test needs both kinds of missing labels.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cohorts.db import Database
from cohorts.loader import load_definition
from cohorts.runner import run_cohort
from node.cache import build_dataset
from node.dataset import dataset_hash
from node.gate import ValidationRecord, write_record
from node.manifest import resolve
from node.settings import SiteSettings, load_site_settings
from node.synth.federation import FederationRequest, generate_federation
from tests.e2e.processes import Deployment

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "cohorts" / "definitions" / "reference_glioma.json"
SITES = ("site_a", "site_b", "site_c")


@dataclass(frozen=True)
class Sites:
    """The generated sites: settings files and the truth the generator wrote."""

    root: Path

    def settings_file(self, site: str) -> Path:
        return self.root / site / "site.toml"

    def settings(self, site: str) -> SiteSettings:
        return load_site_settings(self.settings_file(site))


def _prepare(settings: SiteSettings, models: tuple[str, ...]) -> None:
    with Database(settings.database_url.get_secret_value(), settings.schemas) as db:
        run_cohort(db, load_definition(REFERENCE), 1, min_cell_count=settings.min_cell_count)
    resolve(settings, 1)
    for model in models:
        build_dataset(settings, model, cohort_id=1)


def set_gate(sites: Sites, model: str) -> None:
    """Record a passing validation for each site's ``model`` dataset (the gate keeps one).

    `omopfed validate` writes this record in real use; its default contracts refuse sites this
    tiny (minimum sizes, thick slices), so the e2e tests record a pass for the cached data's hash
    directly. `omopfed validate` itself is tested in tests/node/test_validation_site.py.
    """
    for site in SITES:
        settings = sites.settings(site)
        record = ValidationRecord(dataset_hash(settings, model), True, {})
        write_record(settings.workspace, record)


@pytest.fixture(scope="session")
def sites(tmp_path_factory: pytest.TempPathFactory) -> Sites:
    root = tmp_path_factory.mktemp("sites")
    generate_federation(FederationRequest(out=root, sites=3, profile="tiny", seed=11, workers=2))
    for seg in (root / "site_b" / "dicom").glob("*/*/99_SEG"):
        shutil.rmtree(seg)
    for site in SITES:
        path = root / site / "site.toml"
        path.write_text(path.read_text() + '\n[dataset]\nimage_size = 32\ndtype = "float32"\n')
        _prepare(load_site_settings(path), ("densenet2d", "unet3d"))
    return Sites(root)


@pytest.fixture(scope="module")
def deployment(sites: Sites, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """An aggregator (TLS, node auth) and three registered SuperNodes, all on loopback."""
    deployed = Deployment(tmp_path_factory.mktemp("aggregator"), sites.root)
    try:
        deployed.start(SITES)
        yield deployed
    finally:
        deployed.stop()
