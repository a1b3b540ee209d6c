"""The resolver's rules without a database: sequence map, label policies, series choice, paths,
split and subject keys."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest

from node.concept_map import load_concept_map
from node.manifest import assign_splits, subject_key
from node.resolver.images import (
    PATH_OUTSIDE_DICOM_ROOTS,
    Candidate,
    Header,
    RowProblem,
    locate,
    preference,
)
from node.resolver.labels import resolve_labels
from node.resolver.query import ImageRow, LabelRow
from node.resolver.sequences import load_sequence_map, normalise
from omopfed.errors import ConfigError

# Spellings from the synthetic sites (node/synth/profiles.py), RSNA-MICCAI and common scanners.
SPELLINGS = [
    ("AX FLAIR", "FLAIR"),
    ("AX T1", "T1"),
    ("AX T1 POST GD", "T1ce"),
    ("AX T2 FSE", "T2"),
    ("t2_tirm_sag_dark-fluid", "FLAIR"),
    ("t1_se_sag", "T1"),
    ("t1_se_sag_KM", "T1ce"),
    ("t2_tse_sag", "T2"),
    ("COR FLAIR", "FLAIR"),
    ("COR T1 SE", "T1"),
    ("COR T1+C", "T1ce"),
    ("COR T2", "T2"),
    ("FLAIR", "FLAIR"),
    ("T1w", "T1"),
    ("T1wCE", "T1ce"),
    ("T2w", "T2"),
    ("T2 FLAIR", "FLAIR"),
    ("MPRAGE", "T1"),
    ("MPRAGE post gd", "T1ce"),
    ("sag T1 +gd", "T1ce"),
    ("T2*", None),
    ("AX T2 GRE", None),
    ("AX DWI b1000", None),
    ("3-plane localizer", None),
    ("", None),
]


@pytest.mark.parametrize(("description", "sequence"), SPELLINGS)
def test_default_sequence_map_reads_site_spellings(description: str, sequence: str | None) -> None:
    assert load_sequence_map().classify({"SeriesDescription": description}) == sequence


def test_protocol_name_and_contrast_agent_are_used() -> None:
    rules = load_sequence_map()
    assert rules.classify({"SeriesDescription": "", "ProtocolName": "BRAIN t2_flair"}) == "FLAIR"
    assert rules.classify({"SeriesDescription": "AX T1"}, contrast=True) == "T1ce"
    assert rules.classify({"SeriesDescription": "AX T2 FSE"}, contrast=True) == "T2"
    # the description wins over the protocol when both classify
    assert rules.classify({"SeriesDescription": "AX T2", "ProtocolName": "T1"}) == "T2"
    assert normalise("t2_tirm_sag_dark-fluid") == "t2 tirm sag dark fluid"


def test_a_site_sequence_map_overrides_and_bad_maps_are_refused(tmp_path: Path) -> None:
    site = tmp_path / "map.toml"
    site.write_text(
        'version = "site-1"\n[[rules]]\nsequence = "FLAIR"\npatterns = ["^seq a$"]\n', "utf-8"
    )
    assert load_sequence_map(site).classify({"SeriesDescription": "SEQ_A"}) == "FLAIR"
    site.write_text('version = "1"\n[[rules]]\nsequence = "DWI"\npatterns = ["x"]\n', "utf-8")
    with pytest.raises(ConfigError, match="unknown sequence 'DWI'"):
        load_sequence_map(site)
    site.write_text('version = "1"\n[[rules]]\nsequence = "T1"\npatterns = ["(unclosed"]\n')
    with pytest.raises(ConfigError, match="not a regular expression"):
        load_sequence_map(site)
    with pytest.raises(ConfigError, match="does not exist"):
        load_sequence_map(tmp_path / "missing.toml")


INDEX = date(2020, 6, 1)
MGMT, IDH = 2000000201, 2000000202


def _row(
    mid: int,
    days: int,
    concept: int = MGMT,
    value: int | None = None,
    source: str | None = None,
    number: float | None = None,
) -> LabelRow:
    return LabelRow(mid, 1, INDEX + timedelta(days=days), concept, value, source, number)


def test_labels_agreeing_conflicting_windowed_and_null() -> None:
    cmap = load_concept_map()
    rows = [
        _row(1, 5, value=2000000301),  # methylated
        _row(2, 6, source=" METHYLATED "),  # same class, as source text
        _row(3, 7, concept=IDH, value=9191),  # mutant
        _row(4, 8, concept=IDH, value=9189),  # wildtype: conflict
        _row(5, 900, concept=2000000204, value=2000000314),  # grade outside the window
        _row(6, 9, concept=2000000203),  # 1p/19q with no value: no label
    ]
    found = resolve_labels(rows, cmap, index_date=INDEX, window_days=(-30, 365), policy="exclude")
    assert found.labels == {
        "mgmt": "methylated",
        "idh": None,
        "codeletion_1p19q": None,
        "grade": None,
    }
    assert found.conflicts == ("idh",)
    latest = resolve_labels(rows, cmap, index_date=INDEX, window_days=(-30, 365), policy="latest")
    assert latest.labels["idh"] == "wildtype" and latest.conflicts == ("idh",)
    wide = resolve_labels(rows, cmap, index_date=INDEX, window_days=(-30, 1000), policy="exclude")
    assert wide.labels["grade"] == "grade_4"


def test_latest_orders_by_date_then_measurement_id() -> None:
    cmap = load_concept_map()
    later_date = [_row(9, 30, value=2000000301), _row(2, 40, number=3.0)]  # 3 % < 10 %
    found = resolve_labels(
        later_date, cmap, index_date=INDEX, window_days=(-30, 365), policy="latest"
    )
    assert found.labels["mgmt"] == "unmethylated"
    same_day = [_row(7, 30, value=2000000302), _row(8, 30, value=2000000301)]
    found = resolve_labels(
        same_day, cmap, index_date=INDEX, window_days=(-30, 365), policy="latest"
    )
    assert found.labels["mgmt"] == "methylated"


def _candidate(oid: int, days: int) -> Candidate:
    row = ImageRow(oid, 1, INDEX + timedelta(days=days), "/x", f"1.2.{oid}", "1.2")
    return Candidate(row, Path("/x"), Header(Path("/x"), f"1.2.{oid}", False, {}, False, ()))


def test_series_preference_is_preoperative_then_closest_then_lowest_id() -> None:
    options = [_candidate(i, days) for i, days in ((1, 3), (2, -20), (3, -2), (4, -2), (5, 1))]
    ordered = sorted(options, key=preference(INDEX))
    assert [c.row.image_occurrence_id for c in ordered] == [3, 4, 2, 5, 1]


def test_locations_must_resolve_under_a_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "study" / "flair").mkdir(parents=True)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (root / "link").symlink_to(outside)
    assert locate(str(root / "study" / "flair"), [root]) == (root / "study" / "flair").resolve()
    assert locate("study/flair", [tmp_path / "other", root]) == (root / "study" / "flair")
    for escape in (str(outside), str(root / "link"), str(root / ".." / "elsewhere")):
        with pytest.raises(RowProblem) as caught:
            locate(escape, [root])
        assert caught.value.reason == PATH_OUTSIDE_DICOM_ROOTS


def test_split_is_stratified_and_independent_of_row_order() -> None:
    salt = b"s" * 32
    rows = [
        {"subject_key": subject_key(pid, salt), "included": pid % 7 != 0, "mgmt": klass}
        for pid in range(1, 61)
        for klass in (("methylated" if pid % 3 == 0 else "unmethylated"),)
    ]
    assign_splits(rows, "mgmt", 0.2)
    shuffled = [dict(r) for r in reversed(rows)]
    assign_splits(shuffled, "mgmt", 0.2)
    assert {r["subject_key"]: r["split"] for r in rows} == {
        r["subject_key"]: r["split"] for r in shuffled
    }
    for klass in ("methylated", "unmethylated"):
        stratum = [r for r in rows if r["included"] and r["mgmt"] == klass]
        validation = sum(r["split"] == "validation" for r in stratum)
        assert validation == int(0.2 * len(stratum) + 0.5)
    assert all(r["split"] is None for r in rows if not r["included"])


def test_subject_keys_depend_on_the_salt_and_hide_the_person_id() -> None:
    a, b = subject_key(42, b"a" * 32), subject_key(42, b"b" * 32)
    assert a != b and len(a) == 32 and int(a, 16) >= 0
    assert subject_key(42, b"a" * 32) == a
