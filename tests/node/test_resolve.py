"""The resolver and manifest on synthetic sites: counts equal truth.json, every kind of dirt ends
as its reason, splits, conflict policies, both backends, and the bad inputs that stop a run."""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from cohorts.db import Database
from cohorts.loader import load_definition
from cohorts.runner import run_cohort
from node.errors import CohortNotFoundError, DicomRootError, LabelConflictError
from node.manifest import (
    COLUMNS,
    ManifestFiles,
    ManifestWritten,
    load_salt,
    read_manifest,
    read_manifest_rows,
    resolve,
    subject_key,
)
from node.settings import SiteSettings, load_site_settings
from node.synth.federation import FederationRequest, generate_federation
from node.synth.profiles import SEQUENCES as SYNTH_SEQUENCES
from node.synth.profiles import get_profile, site_styles
from node.synth.subjects import Subject, plan_site, usable
from omopfed.cli import main
from omopfed.errors import ConfigError

SEED, PATIENTS, SITES = 31, 12, 3
ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "cohorts" / "definitions" / "reference_glioma.json"
PREFIXES = ("flair", "t1", "t1ce", "t2")


def run_reference_cohort(settings: SiteSettings) -> None:
    url = settings.database_url.get_secret_value()
    with Database(url, settings.schemas) as db:
        run_cohort(db, load_definition(REFERENCE), 1, min_cell_count=settings.min_cell_count)


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("fed")
    truths = generate_federation(
        FederationRequest(out=out, sites=SITES, patients=PATIENTS, seed=SEED)
    )
    for site in truths:
        run_reference_cohort(load_site_settings(out / site / "site.toml"))
    return out, truths


@pytest.fixture(scope="module")
def manifests(
    federation: tuple[Path, dict[str, Any]], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[Path, ManifestWritten]]:
    """Each site resolved once with the default options: (workspace, what was written)."""
    out, truths = federation
    found = {}
    for site in truths:
        workspace = tmp_path_factory.mktemp(f"ws-{site}")
        found[site] = (workspace, resolve(site_settings(out, site, workspace), 1))
    return found


def site_settings(out: Path, site: str, workspace: Path, **resolver: Any) -> SiteSettings:
    """The generated site's settings with its own workspace and resolver options."""
    settings = load_site_settings(out / site / "site.toml")
    options = settings.resolver.model_copy(update={"workers": 1, **resolver})
    return settings.model_copy(update={"workspace": workspace, "resolver": options})


def plan(site_index: int, patients: int = PATIENTS, seed: int = SEED) -> list[Subject]:
    profile = get_profile("tiny")
    return plan_site(site_styles(SITES, profile)[site_index], profile, patients, seed)


def expected_reason(subject: Subject) -> str | None:
    """The documented order: images (none, a missing sequence, the corrupt T2), then MGMT."""
    if not subject.images:
        return "no_image_occurrence"
    if set(subject.sequences) != set(SYNTH_SEQUENCES):
        return "missing_sequence"
    if subject.corrupt:
        return "unreadable_file"
    if subject.recorded["mgmt"] == "conflict":
        return "conflicting_label"
    if subject.recorded["mgmt"] in ("null", "missing"):
        return "no_label"
    return None


def assert_counts_match_truth(rows: list[dict[str, Any]], truth: dict[str, Any]) -> None:
    members = truth["reference_cohort"]["members"]
    assert len(rows) == members
    for marker, labelled in truth["labelled_members"].items():
        assert sum(r[marker] is not None for r in rows) == labelled, marker
        classes = Counter(r[marker] for r in rows if r[marker] is not None)
        assert dict(sorted(classes.items())) == truth["label_classes"][marker], marker
    assert sum(r["label_conflicts"] == "mgmt" for r in rows) == truth["conflicting_mgmt_members"]
    assert sum(r["seg_present"] for r in rows) == truth["members_with_segmentation"]
    assert sum(r["flair_series_uid"] is not None for r in rows) == truth["members_with_images"]
    complete = sum(all(r[f"{p}_series_uid"] for p in PREFIXES) for r in rows)
    assert complete == truth["members_with_all_sequences"] - len(truth["corrupt_files"])
    reasons = Counter(r["exclusion_reason"] for r in rows)
    assert reasons["no_image_occurrence"] == members - truth["members_with_images"]
    assert reasons["unreadable_file"] == len(truth["corrupt_files"])
    assert (
        reasons["missing_sequence"]
        == truth["members_with_images"] - truth["members_with_all_sequences"]
    )
    style = truth["style"]
    for row in rows:
        if row["flair_series_uid"] is not None:
            assert row["flair_plane"] == style["plane"]
            assert row["flair_n_slices"] == style["slices"]
            assert row["flair_spacing_slice_mm"] == pytest.approx(
                style["slice_spacing_mm"], rel=1e-4
            )
            assert row["flair_spacing_row_mm"] == pytest.approx(style["pixel_spacing_mm"], rel=1e-4)


def test_manifest_counts_equal_truth_at_every_site(
    federation: tuple[Path, dict[str, Any]], manifests: dict[str, tuple[Path, ManifestWritten]]
) -> None:
    _, truths = federation
    assert {t["style"]["plane"] for t in truths.values()} == {"axial", "sagittal", "coronal"}
    for site, truth in truths.items():
        workspace, written = manifests[site]
        rows, digest = read_manifest_rows(workspace, 1)
        assert rows == written.rows and digest == written.manifest_hash
        assert_counts_match_truth(rows, truth)


def test_every_kind_of_dirt_ends_as_its_reason(
    federation: tuple[Path, dict[str, Any]], manifests: dict[str, tuple[Path, ManifestWritten]]
) -> None:
    _, truths = federation
    seen: Counter[str | None] = Counter()
    for index, site in enumerate(sorted(truths)):
        workspace, written = manifests[site]
        rows = written.rows
        salt = load_salt(workspace)
        by_key = {r["subject_key"]: r for r in rows}
        members = set(truths[site]["reference_cohort"]["person_ids"])
        for subject in plan(index):
            if subject.person_id not in members:
                continue
            row = by_key.pop(subject_key(subject.person_id, salt))
            expected = expected_reason(subject)
            assert row["exclusion_reason"] == expected, (site, subject.person_id)
            assert row["included"] == (expected is None)
            assert usable(subject) == (expected is None)  # what the generator's MGMT floor counts
            if subject.extra_file or subject.recorded["mgmt"] in ("numeric", "source"):
                assert expected is not None or row["mgmt"] == subject.labels["mgmt"]
            seen[expected] += 1
        assert by_key == {}
    # the federation really holds every kind of dirt (else this test proves little)
    kinds = {"no_image_occurrence", "missing_sequence", "unreadable_file", "conflicting_label"}
    assert set(seen) == {None, "no_label", *kinds}


def test_manifest_is_pseudonymous_complete_and_atomic(
    federation: tuple[Path, dict[str, Any]], manifests: dict[str, tuple[Path, ManifestWritten]]
) -> None:
    out, truths = federation
    workspace, written = manifests["site_a"]
    frame = read_manifest(workspace, 1)
    assert list(frame.columns) == list(COLUMNS)
    assert "person_id" not in frame.columns
    keys = set(frame["subject_key"])
    person_ids = {str(p) for p in truths["site_a"]["reference_cohort"]["person_ids"]}
    assert len(keys) == len(frame) and not keys & person_ids
    assert all(len(k) == 32 and int(k, 16) >= 0 for k in keys)
    salt_file = workspace / "secrets" / "subject-key.salt"
    assert salt_file.stat().st_mode & 0o777 == 0o600
    files = ManifestFiles.of(workspace, 1)
    assert {p.name for p in files.parquet.parent.iterdir()} == {
        "cohort-1.parquet",
        "cohort-1.json",
    }  # no temporary files left behind
    assert json.loads(files.sidecar.read_text())["manifest_hash"] == written.manifest_hash
    again = resolve(site_settings(out, "site_a", workspace), 1)
    assert again.manifest_hash == written.manifest_hash  # deterministic, same salt


def test_split_is_stratified_80_20_and_deterministic(
    federation: tuple[Path, dict[str, Any]],
    manifests: dict[str, tuple[Path, ManifestWritten]],
    tmp_path: Path,
) -> None:
    out, _ = federation
    rows = manifests["site_c"][1].rows
    assert all((r["split"] is None) == (not r["included"]) for r in rows)
    strata: dict[str, Counter[str]] = {}
    for row in rows:
        if row["included"]:
            strata.setdefault(row["mgmt"], Counter())[row["split"]] += 1
    assert len(strata) == 2  # both MGMT classes are present among included subjects
    for counts in strata.values():
        n = counts["train"] + counts["validation"]
        assert counts["validation"] == math.floor(0.2 * n + 0.5)
    other = resolve(site_settings(out, "site_c", tmp_path / "b", validation_fraction=0.5), 1)
    assert sum(r["split"] == "validation" for r in other.rows) > sum(
        r["split"] == "validation" for r in rows
    )


def test_conflict_policies_latest_and_fail(
    federation: tuple[Path, dict[str, Any]],
    manifests: dict[str, tuple[Path, ManifestWritten]],
    tmp_path: Path,
) -> None:
    out, truths = federation
    exclude = manifests["site_a"][1].rows
    latest = resolve(site_settings(out, "site_a", tmp_path / "l", conflict_policy="latest"), 1)
    conflicted = [r for r in latest.rows if r["label_conflicts"] == "mgmt"]
    assert len(conflicted) == truths["site_a"]["conflicting_mgmt_members"] == 1
    assert conflicted[0]["mgmt"] is not None  # the row entered last wins
    assert conflicted[0]["exclusion_reason"] != "conflicting_label"
    assert sum(r["mgmt"] is not None for r in latest.rows) == 1 + sum(
        r["mgmt"] is not None for r in exclude
    )
    with pytest.raises(LabelConflictError, match="mgmt"):
        resolve(site_settings(out, "site_a", tmp_path / "f", conflict_policy="fail"), 1)


def test_paths_outside_the_dicom_roots_are_excluded(
    federation: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    out, truths = federation
    elsewhere = tmp_path / "other-root"
    elsewhere.mkdir()
    (elsewhere / "escape").symlink_to(out / "site_b" / "dicom")  # a link out of the root
    settings = site_settings(out, "site_b", tmp_path).model_copy(
        update={"dicom_roots": [elsewhere]}
    )
    reasons = Counter(r["exclusion_reason"] for r in resolve(settings, 1).rows)
    truth = truths["site_b"]
    assert reasons == {
        "path_outside_dicom_roots": truth["members_with_images"],
        "no_image_occurrence": truth["reference_cohort"]["members"] - truth["members_with_images"],
    }


def test_missing_or_unreadable_dicom_root_is_a_clear_error(
    federation: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    out, _ = federation
    base = site_settings(out, "site_a", tmp_path)
    with pytest.raises(DicomRootError, match="does not exist"):
        resolve(base.model_copy(update={"dicom_roots": [tmp_path / "unmounted"]}), 1)
    with pytest.raises(DicomRootError, match="no dicom_roots"):
        resolve(base.model_copy(update={"dicom_roots": []}), 1)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0)
    try:
        try:
            os.listdir(locked)
        except PermissionError:
            pass
        else:
            pytest.skip("running as root: chmod 000 does not stop reads (outside-root case above)")
        with pytest.raises(DicomRootError, match="permission denied"):
            resolve(base.model_copy(update={"dicom_roots": [locked]}), 1)
    finally:
        locked.chmod(0o755)


def test_unknown_marker_and_unknown_cohort_are_clear_errors(
    federation: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    out, _ = federation
    base = site_settings(out, "site_a", tmp_path)
    shipped = (ROOT / "node" / "data" / "concept_map.toml").read_text("utf-8")
    bad_map = tmp_path / "concept_map.toml"
    bad_map.write_text(
        shipped + '\n[markers.ki67]\ntest_concept_ids = [1]\nclasses = ["lo", "hi"]\n'
    )
    with pytest.raises(ConfigError, match=r"unknown marker key markers\.ki67"):
        resolve(base.model_copy(update={"concept_map": bad_map}), 1)
    with pytest.raises(CohortNotFoundError, match="cohort 77 does not exist"):
        resolve(base, 77)


def test_cli_prints_a_suppressed_summary_and_maps_errors(
    federation: tuple[Path, dict[str, Any]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, truths = federation
    settings = tmp_path / "site.toml"
    text = (out / "site_a" / "site.toml").read_text("utf-8")
    text = text.replace('"duckdb:///cdm.duckdb"', f'"duckdb:///{out / "site_a" / "cdm.duckdb"}"')
    text = text.replace('"dicom"', f'"{out / "site_a" / "dicom"}"')
    settings.write_text(text.replace('"workspace"', f'"{tmp_path / "ws"}"'), "utf-8")
    assert main(["resolve", "--settings", str(settings), "--cohort", "1", "--format", "json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    counts = shown["counts"]
    assert counts["subjects"] == str(truths["site_a"]["reference_cohort"]["members"])
    assert counts["excluded: unreadable_file"] == "<5"  # one subject: below min_cell_count
    assert main(["resolve", "--settings", str(settings), "--cohort", "5"]) == 7
    assert "error[COHORT_NOT_FOUND]" in capsys.readouterr().err


@pytest.mark.slow
def test_each_backend_resolves_to_its_truth(cdm_url: str, tmp_path: Path) -> None:
    truths = generate_federation(
        FederationRequest(out=tmp_path / "fed", sites=1, patients=10, seed=7, db_url=cdm_url)
    )
    settings = load_site_settings(tmp_path / "fed" / "site_a" / "site.toml")
    run_reference_cohort(settings)
    written = resolve(settings.model_copy(update={"workspace": tmp_path / "ws"}), 1)
    assert_counts_match_truth(written.rows, truths["site_a"])
