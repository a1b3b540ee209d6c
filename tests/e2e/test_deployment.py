"""A real deployment on loopback: SuperLink (TLS, node auth) and three SuperNodes via the CLI.

The tests share one deployment and run in order: refusals, a full run, a SuperNode killed
mid-run, too few sites, and the SuperLink killed mid-run then resumed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from federation import tls
from federation.flower import FlowerCli
from models.networks import build_model
from node.keys import generate
from omopfed.protocol import COUNT_METRICS, ReplyMetric, is_whitelisted, parse_metric_key
from tests.e2e.conftest import SITES, Sites, set_gate
from tests.e2e.processes import Deployment, poll

# Rounds take minutes on a shared 2-core machine (a fresh ClientApp process per message).
pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1800)]

RUN = ["--model", "densenet2d", "--threads", "1", "--wait-for-sites", "60"]


@pytest.fixture(scope="module", autouse=True)
def _densenet_gate(sites: Sites) -> None:
    set_gate(sites, "densenet2d")


def _run(deployment: Deployment, *args: str) -> dict[str, Any]:
    done = deployment.cli("run", *RUN, *args, "--format", "json")
    return {"code": done.returncode, **json.loads(done.stdout or "{}"), "stderr": done.stderr}


def _exits(process: Any, timeout: float) -> int:
    return int(poll("the SuperNode to give up", lambda: process.poll() is not None, timeout=timeout)
               and process.returncode)  # fmt: skip


def test_unregistered_key_and_wrong_ca_cannot_connect(
    deployment: Deployment, tmp_path: Path
) -> None:
    stranger = tmp_path / "stranger"
    generate(stranger)
    command = deployment.node_command("site_a", "--key", str(stranger), "--max-retries", "1")
    refused = deployment.spawn(command, tmp_path / "stranger.log")
    deployment.extra.append(refused)
    assert _exits(refused, 120) != 0
    assert "2004" in (tmp_path / "stranger.log").read_text()

    other_ca = tls.create(tmp_path / "other-ca").ca_cert
    command = deployment.node_command("site_a", "--max-retries", "1", ca=other_ca)
    untrusting = deployment.spawn(command, tmp_path / "no-ca.log")
    deployment.extra.append(untrusting)
    assert _exits(untrusting, 120) != 0
    assert "CERTIFICATE_VERIFY_FAILED" in (tmp_path / "no-ca.log").read_text()
    assert deployment.online() == 3


def _audit(sites: Sites, site: str, since: int) -> list[dict[str, Any]]:
    """The replies a site sent (its egress audit log), from entry ``since`` on."""
    path = sites.root / site / "workspace" / "audit" / "egress.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [json.loads(line) for line in lines[since:]]


def _strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (k, *_strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) else []


def _assert_nothing_patient_level(entry: dict[str, Any], person_ids: set[str]) -> None:
    """Every string a reply carried, and every count, against the privacy model."""
    records = {k: v for k, v in entry.get("records", {}).items() if k != "arrays"}
    for text in _strings({"type": entry["type"], "error": entry.get("error"), **records}):
        assert "/" not in text and "\\" not in text, f"path-like {text!r}"
        assert not re.search(r"\d{4}-\d{2}-\d{2}|\d{8}", text), f"date-like {text!r}"
        assert not re.search(r"\d+(\.\d+){3,}", text), f"UID-like {text!r}"
        assert not set(re.findall(r"\d+", text)) & person_ids, f"person id in {text!r}"
    metrics = entry.get("records", {}).get("metrics", {}).get("values", {})
    for key, value in metrics.items():
        assert is_whitelisted(key)
        parsed = parse_metric_key(key)
        if key == ReplyMetric.NUM_EXAMPLES or (parsed and parsed[1] in COUNT_METRICS):
            assert value >= 5, f"count {key}={value} below the minimum cell count"
    arrays = entry.get("records", {}).get("arrays", {}).get("arrays")
    if arrays is not None:
        assert set(arrays) == set(build_model("densenet2d").state_dict())


def test_three_sites_two_rounds_with_tls_and_node_auth(
    deployment: Deployment, sites: Sites
) -> None:
    before = {site: len(_audit(sites, site, 0)) for site in SITES}
    result = _run(deployment, "--rounds", "2", "--min-sites", "3", "--run-name", "main", "--wait")
    assert result["code"] == 0, result["stderr"]
    assert result["status"] == "finished:completed" and result["rounds_done"] == 2

    store = deployment.store()
    rows = {(m["round"], m["site"], m["split"]) for m in store.site_metrics("main")}
    assert {(r, s, "train") for r in (1, 2) for s in SITES} <= rows
    assert {r["run_id"]: r["status"] for r in store.list_runs()}["main"] == "completed"
    flower_runs = {r["run-id"]: r["status"] for r in deployment.status()["flower_runs"]}
    assert flower_runs[result["flower_run_id"]] == "finished:completed"  # what `flwr ls` shows

    for site in SITES:
        truth = json.loads((sites.root / site / "truth.json").read_text())
        person_ids = {str(p) for p in truth["reference_cohort"]["person_ids"]}
        entries = _audit(sites, site, before[site])
        assert len(entries) >= 3  # two train replies and the final evaluation
        for entry in entries:
            _assert_nothing_patient_level(entry, person_ids)
        log = (deployment.root / f"{site}.log").read_text(errors="replace")
        # The site's warm worker answered every message (node start runs one).
        assert "site worker unavailable" not in log and "worker request failed" not in log


def test_a_supernode_killed_mid_run_is_recorded_and_the_run_completes(
    deployment: Deployment,
) -> None:
    started = _run(deployment, "--rounds", "2", "--min-sites", "2", "--round-timeout", "150",
                   "--run-name", "drop")  # fmt: skip
    assert started["code"] == 0, started["stderr"]
    deployment.wait_round("drop", 1, timeout=600)
    deployment.kill_node("site_c")
    cli = FlowerCli(deployment.workspace / "flwr")
    status = cli.wait_run(started["flower_run_id"], timeout=600)
    assert status["status"] == "finished:completed"
    store = deployment.store()
    round_two = {m["site"] for m in store.site_metrics("drop") if m["round"] == 2}
    assert round_two == {"site_a", "site_b"}
    events = [(e["kind"], e["site"]) for e in store.events("drop") if e["round"] == 2]
    assert ("dropped", "site_c") in events or ("failed", "site_c") in events


def test_too_few_sites_fail_after_the_bounded_wait(deployment: Deployment) -> None:
    deployment.wait_online(2, timeout=180)
    result = _run(deployment, "--rounds", "1", "--min-sites", "3", "--wait-for-sites", "5",
                  "--run-name", "few", "--wait")  # fmt: skip
    assert result["code"] == 9 and result["status"] == "finished:failed"
    store = deployment.store()
    (failure,) = [e["detail"] for e in store.events("few") if e["kind"] == "run_failed"]
    assert "only 2 of the minimum 3 site(s) connected within 5 s" in failure


def test_superlink_killed_mid_run_then_resumed(deployment: Deployment) -> None:
    started = _run(deployment, "--rounds", "2", "--min-sites", "2", "--run-name", "crash")
    assert started["code"] == 0, started["stderr"]
    deployment.wait_round("crash", 1, timeout=600)
    deployment.kill_superlink()
    deployment.must("start")
    deployment.wait_online(2, timeout=300, exact=False)  # the sites' nodes restart and rejoin
    resumed = deployment.cli("resume", "crash", "--wait", "--format", "json")
    assert resumed.returncode == 0, resumed.stderr
    store = deployment.store()
    assert store.get_run("crash")["status"] == "completed"
    assert sorted({m["round"] for m in store.site_metrics("crash")}) == [1, 2]
    assert any(e["kind"] == "resumed" for e in store.events("crash"))
