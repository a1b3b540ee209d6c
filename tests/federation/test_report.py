"""The report's plots through the data they draw, and the HTML page standing alone."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from federation import report, stats


def _results() -> pd.DataFrame:
    central, fed2, fed3 = (0.60, 0.61, 0.62), (0.50, 0.51, 0.52), (0.61, 0.60, 0.59)
    rows = [("centralized", i, v, 40) for i, v in enumerate(central)]
    rows += [("federated-2", i, v, 3) for i, v in enumerate(fed2)]
    rows += [("federated-3", i, v, 40) for i, v in enumerate(fed3)]
    frame = pd.DataFrame(rows, columns=["configuration", "repeat", "auc", "mgmt_n"])
    return frame.assign(seed=frame["repeat"])


def test_box_plot_data_carries_values_and_adjusted_p() -> None:
    results = _results()
    comparison = stats.compare(results, ["auc"])
    data = report.box_plot_data(results, "auc", comparison)
    assert data.configurations == ["centralized", "federated-2", "federated-3"]
    assert data.values[1] == pytest.approx([0.50, 0.51, 0.52])
    # federated-2 all below: exact p = 2 / C(6, 3) = 0.1, Holm (2 tests) -> 0.2.
    # federated-3 ties (ranks 1, 2.5, 4.5 -> U = 2): z = 2 / sqrt(9/12 * (7 - 12/30)),
    # p = 0.3687 > 0.2, so Holm keeps it.
    assert data.labels == {"federated-2": "p = 0.200", "federated-3": "p = 0.369"}
    assert "centralized" not in data.labels
    assert report.draw_box_plot(data).axes  # renders without a display


def test_format_p_and_suppress() -> None:
    assert report.format_p(0.0004) == "p < 0.001"
    assert report.format_p(float("nan")) == "p = n/a"
    assert [report.suppress(v, 5) for v in (0, 3, 5, 12.0)] == [0, "<5", 5, 12]
    assert report.is_count_column("mgmt_n") and report.is_count_column("num-examples")
    assert not report.is_count_column("mgmt_auc")


def test_learning_curves_from_store_rows() -> None:
    rows = [
        {"round": 2, "site": "b", "split": "validation", "metric": "mgmt_auc", "value": 0.6},
        {"round": 1, "site": "b", "split": "validation", "metric": "mgmt_auc", "value": 0.5},
        {"round": 1, "site": "a", "split": "validation", "metric": "mgmt_auc", "value": None},
        {"round": 2, "site": "a", "split": "validation", "metric": "mgmt_auc", "value": 0.7},
        {"round": 1, "site": "a", "split": "train", "metric": "mgmt_auc", "value": 0.9},
        {"round": 1, "site": "a", "split": "validation", "metric": "loss", "value": 0.3},
    ]
    data = report.learning_curve_data(rows, "mgmt_auc")
    assert data.lines == {"a": ([2.0], [0.7]), "b": ([1.0, 2.0], [0.5, 0.6])}


def test_roc_data_sorts_and_reports_auc() -> None:
    data = report.roc_data({"fed": ([1.0, 0.0, 0.5], [1.0, 0.0, 1.0])})
    ((name, (xs, ys)),) = data.lines.items()
    assert name == "fed (AUC 0.750)"
    assert (xs, ys) == ([0.0, 0.5, 1.0], [0.0, 1.0, 1.0])
    with pytest.raises(stats.StudyDataError):
        report.roc_data({"bad": ([0.0], [0.0, 1.0])})


def test_study_report_is_self_contained(tmp_path: Path) -> None:
    curves = [report.CurveData("validation auc per round", "round", "auc", {"a": ([1], [0.5])})]
    roc = {"centralized": ([0.0, 0.4, 1.0], [0.0, 0.7, 1.0])}
    written = report.write_study_report(_results(), tmp_path, curves=curves, roc=roc)
    names = sorted(p.relative_to(tmp_path).as_posix() for p in written.files)
    assert "report.html" in names and "stats_tests.json" in names
    assert "plots/box_auc.png" in names and "plots/box_auc.svg" in names
    assert [b.metric for b in written.box_plots] == ["auc"]  # counts are not tested
    page = written.html.read_text("utf-8")
    links = re.findall(r'(?:src|href)\s*=\s*["\']([^"\']*)', page)
    assert links and all(link.startswith("data:image/png;base64,") for link in links)
    assert "http" not in "".join(links) and "<script" not in page
    assert "&lt;5" in page  # mgmt_n = 3 suppressed in the runs table
    tests = pd.read_csv(tmp_path / "stats_tests.csv")
    assert list(tests["configuration"]) == ["federated-2", "federated-3"]
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


def test_read_results_csv_and_missing(tmp_path: Path) -> None:
    with pytest.raises(stats.StudyDataError, match="results"):
        report.read_results(tmp_path)
    _results().to_csv(tmp_path / "results.csv", index=False)
    assert len(report.read_results(tmp_path)) == 9
