"""The aggregator workspace and the coordinator commands that need no running SuperLink."""

from __future__ import annotations

import io
import json
import tomllib
import zipfile
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from flwr.cli.build import build_fab_from_disk

from federation import aggregator, flower
from federation.aggregator import AggregatorError, AggregatorSettings
from federation.simulate import SimulationRequest, simulate
from federation.store import MetricsStore
from node.keys import generate
from omopfed.cli import main

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pathspec.*")


def test_init_writes_a_ca_a_server_certificate_and_the_flower_connection(tmp_path: Path) -> None:
    ws = aggregator.init(
        tmp_path / "agg", AggregatorSettings(port=9555, names=["127.0.0.1", "agg.example"])
    )
    ca = x509.load_pem_x509_certificate(ws.tls.ca_cert.read_bytes())
    server = x509.load_pem_x509_certificate(ws.tls.server_cert.read_bytes())
    server.verify_directly_issued_by(ca)
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert names.get_values_for_type(x509.DNSName) == ["agg.example"]
    assert isinstance(ca.public_key(), ec.EllipticCurvePublicKey)
    assert oct(ws.tls.ca_key.stat().st_mode & 0o777) == "0o600"
    config = tomllib.loads((ws.home / "config.toml").read_text())
    connection = config["superlink"][config["superlink"]["default"]]
    assert connection == {"address": "127.0.0.1:9555", "root-certificates": str(ws.tls.ca_cert)}
    with pytest.raises(AggregatorError, match="already an aggregator workspace"):
        aggregator.init(tmp_path / "agg", AggregatorSettings())


def test_superlink_command_has_tls_auth_database_and_no_installs(tmp_path: Path) -> None:
    ws = aggregator.init(tmp_path / "agg", AggregatorSettings(port=9556))
    command = aggregator.superlink_command(ws)
    for flag in ("--ssl-ca-certfile", "--ssl-certfile", "--ssl-keyfile", "--database"):
        assert flag in command
    assert "--enable-supernode-auth" in command
    assert "--disable-runtime-dependency-installation" in command
    assert "--insecure" not in command
    assert command[command.index("--database") + 1] == ":flwr-in-memory:"


def test_the_app_folder_ships_no_code_and_matches_the_repository(tmp_path: Path) -> None:
    app = flower.write_app(tmp_path / "app")
    names = zipfile.ZipFile(io.BytesIO(build_fab_from_disk(app))).namelist()
    assert not [n for n in names if n.endswith(".py")]
    ours = tomllib.loads((app / "pyproject.toml").read_text())["tool"]["flwr"]["app"]
    repo = tomllib.loads(flower.REPO_PYPROJECT.read_text())["tool"]["flwr"]["app"]
    assert ours == repo
    assert repo["components"] == {
        "serverapp": "federation.server_app:app",
        "clientapp": "node.client_app:app",
    }


def test_register_site_checks_the_key_and_records_it_for_the_next_start(tmp_path: Path) -> None:
    ws = aggregator.init(tmp_path / "agg", AggregatorSettings(port=9557))
    pair = generate(tmp_path / "keys" / "site_a")
    assert aggregator.register_site(ws, "site_a", pair.public) == ""  # SuperLink not running
    assert (ws.sites / "site_a.pub").read_text().startswith("ecdsa-sha2-nistp384 ")
    rsa = tmp_path / "rsa.pub"
    rsa.write_text("ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQDZ user@host\n")
    with pytest.raises(AggregatorError):
        aggregator.register_site(ws, "site_b", rsa)
    with pytest.raises(AggregatorError, match="site name"):
        aggregator.register_site(ws, "../x", pair.public)


def test_run_config_is_checked_before_anything_is_submitted(tmp_path: Path) -> None:
    ws = aggregator.init(tmp_path / "agg", AggregatorSettings(port=9558))
    config = aggregator.run_config(ws, {"model": "unet3d", "num-rounds": 3})
    assert config["checkpoint-dir"] == str(ws.checkpoints) and config["store-url"].endswith(
        "metrics.sqlite"
    )
    with pytest.raises(Exception, match="num-rounds"):
        aggregator.run_config(ws, {"model": "unet3d", "num-rounds": 0})
    with pytest.raises(AggregatorError, match="not running"):
        aggregator.submit(ws, config)


def test_resume_continues_a_failed_run_with_its_own_config(tmp_path: Path) -> None:
    ws = aggregator.init(tmp_path / "agg", AggregatorSettings(port=9559))
    store = MetricsStore(ws.store_url())
    store.start_run("r1", "densenet2d", 4, {"model": "densenet2d", "num-rounds": 4})
    store.finish_run("r1", "failed")
    assert aggregator.resume_config(ws, "r1") == {
        "model": "densenet2d", "num-rounds": 4, "resume-from": "r1",
    }  # fmt: skip
    store.finish_run("r1", "completed")
    with pytest.raises(AggregatorError, match="already completed"):
        aggregator.resume_config(ws, "r1")
    with pytest.raises(AggregatorError, match="no run"):
        aggregator.resume_config(ws, "nope")


def test_commands_outside_a_workspace_fail_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["aggregator", "status", "-w", str(tmp_path / "none")])
    err = capsys.readouterr().err
    assert code == 3 and "is not an aggregator workspace" in err and "Traceback" not in err


def test_status_without_a_superlink_lists_recorded_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = aggregator.init(tmp_path / "agg", AggregatorSettings(port=9560))
    MetricsStore(ws.store_url()).start_run("r1", "unet3d", 2, {})
    assert main(["aggregator", "status", "-w", str(ws.root), "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["superlink"]["running"] is False
    assert [(r["run_id"], r["rounds_done"]) for r in report["runs"]] == [("r1", 0)]


def test_simulation_needs_sites_or_a_pooled_site(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="either site settings files or --pooled"):
        simulate(SimulationRequest(tmp_path, {"model": "densenet2d"}))
    with pytest.raises(Exception, match="--partitions"):
        simulate(SimulationRequest(tmp_path, {}, pooled=tmp_path / "site.toml"))


def test_config_args_are_toml_literals() -> None:
    args = flower.config_args({"a": 1, "b": 0.5, "c": True, "d": 'x"y', "e": "C:\\p"})
    assert args[1::2] == ["a=1", "b=0.5", "c=true", 'd="x\\"y"', 'e="C:\\\\p"']
