from __future__ import annotations

from pathlib import Path

import pytest

from node.concept_map import DEFAULT_CONCEPT_MAP, load_concept_map
from omopfed.errors import ConfigError


def test_default_map_classifies_concepts_strings_and_numbers() -> None:
    mgmt = load_concept_map().marker("mgmt")
    assert mgmt.classify(2000000301, None, None) == "methylated"
    assert mgmt.classify(2000000302, "methylated", None) == "unmethylated"  # concept wins
    assert mgmt.classify(0, "  Unmethylated ", None) == "unmethylated"
    assert mgmt.classify(None, None, 10.0) == "methylated"  # at the threshold
    assert mgmt.classify(None, None, 9.9) == "unmethylated"
    assert mgmt.classify(None, "42 %", None) is None
    assert mgmt.classify(None, None, float("nan")) is None
    assert mgmt.class_index("methylated") == 1


@pytest.mark.parametrize(
    ("marker", "concept", "expected"),
    [
        ("idh", 9191, "mutant"),
        ("idh", 9189, "wildtype"),
        ("codeletion_1p19q", 4126681, "codeleted"),
        ("codeletion_1p19q", 9190, "intact"),
        ("grade", 2000000314, "grade_4"),
    ],
)
def test_shared_value_concepts(marker: str, concept: int, expected: str) -> None:
    assert load_concept_map().marker(marker).classify(concept, None, None) == expected


def test_unknown_marker_key_names_file_and_key(tmp_path: Path) -> None:
    bad = tmp_path / "map.toml"
    bad.write_text(
        DEFAULT_CONCEPT_MAP.read_text("utf-8")
        .replace("[markers.idh]", "[markers.idhh]")
        .replace("[markers.idh.", "[markers.idhh."),
        "utf-8",
    )
    with pytest.raises(ConfigError, match=r"map\.toml.*markers\.idhh"):
        load_concept_map(bad)


def test_lookup_of_missing_marker_is_a_config_error() -> None:
    concept_map = load_concept_map()
    with pytest.raises(ConfigError, match=r"markers\.tumour_size"):
        concept_map.marker("tumour_size")


def test_value_mapped_to_undeclared_class_is_rejected(tmp_path: Path) -> None:
    bad = tmp_path / "map.toml"
    text = DEFAULT_CONCEPT_MAP.read_text("utf-8").replace('9191 = "mutant"', '9191 = "mutated"')
    bad.write_text(text, "utf-8")
    with pytest.raises(ConfigError, match=r"markers\.idh.*mutated"):
        load_concept_map(bad)


def test_missing_file_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_concept_map(tmp_path / "none.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("version = ", "utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_concept_map(broken)
