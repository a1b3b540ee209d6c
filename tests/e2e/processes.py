"""Real processes for the e2e tests: the omopfed CLI, a SuperLink and SuperNodes on loopback.

Everything is started through the commands a coordinator and a steward type, each process in its
own session so teardown can stop its whole group (SuperExec, ClientApps). Readiness is polled
(health endpoint, ``flwr supernode ls``, the metrics store), never slept for.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from federation.flower import free_port, stop_group
from federation.store import MetricsStore
from omopfed.offline import child_env


def omopfed(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """Run one omopfed command to completion (as a user would)."""
    return subprocess.run(
        [sys.executable, "-m", "omopfed.cli", *args],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=timeout,
    )


def poll(what: str, check: Callable[[], Any], *, timeout: float, every: float = 1.0) -> Any:
    """Call ``check`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)


class Deployment:
    """An aggregator workspace with its SuperLink and one SuperNode per site."""

    def __init__(self, root: Path, sites_root: Path) -> None:
        self.root = root
        self.sites_root = sites_root
        self.workspace = root / "agg"
        self.port = free_port()
        self.nodes: dict[str, subprocess.Popen[bytes]] = {}
        self.extra: list[subprocess.Popen[bytes]] = []

    # -- aggregator ------------------------------------------------------------------------

    def cli(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        return omopfed("aggregator", *args, "-w", str(self.workspace), timeout=timeout)

    def must(self, *args: str, timeout: float = 900) -> str:
        done = self.cli(*args, timeout=timeout)
        assert done.returncode == 0, f"omopfed {' '.join(args)}: {done.stderr}{done.stdout}"
        return done.stdout

    def start(self, sites: Iterable[str]) -> None:
        self.must("init", "--port", str(self.port))
        for site in sites:
            settings = self.site_settings(site)
            done = omopfed("node", "keygen", "--settings", str(settings))
            assert done.returncode == 0, done.stderr
            self.must("register-site", site, str(self.public_key(site)))
        self.must("start")
        for site in sites:
            self.start_node(site)
        self.wait_online(len(self.nodes))

    def aggregator_pid(self) -> int:
        return int((self.workspace / "superlink.pid").read_text())

    def kill_superlink(self) -> None:
        """SIGKILL the SuperLink's whole process group: a crash, not a shutdown."""
        os.killpg(self.aggregator_pid(), signal.SIGKILL)

    def status(self) -> dict[str, Any]:
        return json.loads(self.must("status", "--format", "json", timeout=120))

    def online(self) -> int:
        sites = self.status().get("sites", [])
        return sum(1 for node in sites if node.get("status") == "online")

    def wait_online(self, count: int, timeout: float = 120, *, exact: bool = True) -> None:
        """Poll until ``count`` SuperNodes are online (at least ``count`` unless ``exact``)."""

        def ready() -> bool:
            online = self.online()
            return online == count if exact else online >= count

        poll(f"{count} SuperNode(s) online", ready, timeout=timeout)

    def store(self) -> MetricsStore:
        return MetricsStore(f"sqlite:///{self.workspace / 'metrics.sqlite'}")

    def wait_round(self, run: str, round_: int, timeout: float) -> None:
        def done() -> bool:
            store = self.store()
            try:
                return store.last_round(run) >= round_
            finally:
                store.dispose()

        poll(f"run {run} round {round_}", done, timeout=timeout, every=2.0)

    # -- sites -----------------------------------------------------------------------------

    def site_settings(self, site: str) -> Path:
        return self.sites_root / site / "site.toml"

    def public_key(self, site: str) -> Path:
        return self.sites_root / site / "workspace" / "keys" / "supernode.pub"

    def node_command(self, site: str, *extra: str, ca: Path | None = None) -> list[str]:
        return [
            sys.executable, "-m", "omopfed.cli", "node", "start",
            "--settings", str(self.site_settings(site)),
            "--superlink", f"127.0.0.1:{self.port}",
            "--root-certificates", str(ca or self.workspace / "tls" / "ca.crt"),
            *extra,
        ]  # fmt: skip

    def spawn(self, command: list[str], log: Path) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            return subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, env=child_env(),
                start_new_session=True,
            )  # fmt: skip

    def start_node(self, site: str) -> None:
        self.nodes[site] = self.spawn(self.node_command(site), self.root / f"{site}.log")

    def kill_node(self, site: str) -> None:
        os.killpg(self.nodes.pop(site).pid, signal.SIGKILL)

    # -- teardown --------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop every process this deployment started, by process group."""
        for process in [*self.nodes.values(), *self.extra]:
            stop_group(process.pid, timeout=10)
            process.wait(timeout=30)
        self.nodes.clear()
        self.extra.clear()
        if (self.workspace / "superlink.pid").exists():
            self.cli("stop", timeout=120)
