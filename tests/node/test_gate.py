"""The training gate refuses unvalidated, changed or failing data, and says why."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.gate import (
    ValidationGateError,
    ValidationRecord,
    read_record,
    require_validated,
    result_path,
    write_record,
)


def _record(passed: bool = True, data_hash: str = "a" * 64) -> ValidationRecord:
    return ValidationRecord(
        data_hash=data_hash,
        passed=passed,
        suite_hashes={"manifest": "b" * 64},
        failed_blocking=[] if passed else ["manifest.min_examples_per_class"],
        report_path="workspace/validation/docs/index.html",
    )


def test_passing_record_for_the_same_data_opens_the_gate(tmp_path: Path) -> None:
    write_record(tmp_path, _record())
    assert require_validated(tmp_path, "a" * 64).passed


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (None, "never been validated"),
        (_record(data_hash="c" * 64), "data changed since it was last validated"),
        (_record(passed=False), "manifest.min_examples_per_class"),
    ],
)
def test_gate_refuses(tmp_path: Path, record: ValidationRecord | None, message: str) -> None:
    if record is not None:
        write_record(tmp_path, record)
    with pytest.raises(ValidationGateError, match=message) as info:
        require_validated(tmp_path, "a" * 64)
    assert info.value.exit_code == 8 and "omopfed validate" in str(info.value)


def test_unreadable_record(tmp_path: Path) -> None:
    result_path(tmp_path).parent.mkdir(parents=True)
    result_path(tmp_path).write_text("{not json")
    with pytest.raises(ValidationGateError, match="unreadable"):
        read_record(tmp_path)


def test_write_replaces_without_leftovers(tmp_path: Path) -> None:
    write_record(tmp_path, _record(passed=False))
    write_record(tmp_path, _record(passed=True))
    assert read_record(tmp_path) == _record(passed=True)
    assert [p.name for p in result_path(tmp_path).parent.iterdir()] == ["result.json"]
