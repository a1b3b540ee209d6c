"""The commands that bring up a site's ClientApp: `omopfed node keygen` and `node start`."""

from __future__ import annotations

import os
import shlex
import signal
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_ssh_private_key

from federation import tls
from node.cli_federation import supervise
from node.keys import NodeKeyError, fingerprint, generate
from omopfed.cli import main
from omopfed.offline import child_env


def _site(tmp_path: Path) -> Path:
    settings = tmp_path / "site.toml"
    settings.write_text('site_name = "site_a"\ndatabase_url = "duckdb:///cdm.duckdb"\n')
    return settings


def test_keygen_writes_a_p384_openssh_pair_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = _site(tmp_path)
    assert main(["node", "keygen", "--settings", str(settings)]) == 0
    private = tmp_path / "workspace" / "keys" / "supernode"
    key = load_ssh_private_key(private.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp384r1"
    assert oct(private.stat().st_mode & 0o777) == "0o600"
    public = private.with_name("supernode.pub").read_text()
    assert public.startswith("ecdsa-sha2-nistp384 ") and public.rstrip().endswith(" site_a")
    assert fingerprint(private.with_name("supernode.pub")) in capsys.readouterr().out
    assert main(["node", "keygen", "--settings", str(settings)]) == 3  # no silent overwrite
    assert "already exists" in capsys.readouterr().err


def test_start_builds_a_supernode_with_ca_key_settings_and_its_own_port(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = _site(tmp_path)
    generate(tmp_path / "workspace" / "keys" / "supernode")
    ca = tls.create(tmp_path / "tls").ca_cert
    args = ["node", "start", "--settings", str(settings), "--superlink", "127.0.0.1:9092",
            "--root-certificates", str(ca), "--allow-model", "densenet2d", "--dry-run"]  # fmt: skip
    assert main(args) == 0
    command = shlex.split(capsys.readouterr().out)
    assert command[0] == "flower-supernode"
    value = dict(zip(command[1::2], command[2::2], strict=False))
    assert value["--superlink"] == "127.0.0.1:9092"
    assert value["--root-certificates"] == str(ca.resolve())
    assert value["--auth-supernode-private-key"].endswith("keys/supernode")
    worker = (tmp_path / "workspace" / "run" / "worker.sock").resolve()
    assert value["--node-config"] == (
        f'settings="{settings.resolve()}" allowed-models="densenet2d" worker="{worker}"'
    )
    assert int(value["--port"]) > 0 and "--insecure" not in command


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"--superlink": "https://x:1"}, "not HOST:PORT"),
        ({"--root-certificates": "missing.crt"}, "does not exist"),
        ({"--key": "nokey"}, "cannot use the SuperNode key"),
    ],
)
def test_start_refuses_bad_inputs_before_starting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], change: dict[str, str], message: str
) -> None:
    settings = _site(tmp_path)
    generate(tmp_path / "workspace" / "keys" / "supernode")
    ca = tls.create(tmp_path / "tls").ca_cert
    options = {"--superlink": "127.0.0.1:9092", "--root-certificates": str(ca)} | change
    args = ["node", "start", "--settings", str(settings), "--dry-run"]
    args += [part for item in options.items() for part in item]
    assert main(args) == 3
    assert message in capsys.readouterr().err


def test_keys_that_are_not_p384_are_refused(tmp_path: Path) -> None:
    public = tmp_path / "k.pub"
    public.write_text(
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl x\n"
    )
    with pytest.raises(NodeKeyError, match="not an ECDSA P-384 key"):
        fingerprint(public)


def test_the_supernode_is_started_again_until_we_are_stopped() -> None:
    exits = [sys.executable, "-c", "import sys; sys.exit(3)"]
    assert supervise(exits, child_env(), restart=False) == 3
    delays: list[float] = []

    def sleep(seconds: float) -> None:  # the steward presses Ctrl-C during the third pause
        delays.append(seconds)
        if len(delays) == 3:
            os.kill(os.getpid(), signal.SIGINT)

    previous = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    try:
        assert supervise(exits, child_env(), restart=True, sleep=sleep) == 3
    finally:
        signal.signal(signal.SIGINT, previous[0])
        signal.signal(signal.SIGTERM, previous[1])
    assert delays == [2.0, 4.0, 8.0]  # backing off while it keeps failing at once
