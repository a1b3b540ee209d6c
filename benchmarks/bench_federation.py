"""P4 (federation overhead per round) and P7 (bytes per site per round), one real deployment.

A SuperLink with TLS and node authentication and SITES SuperNodes run on loopback, started
through the omopfed CLI. On that same deployment, in the same run:

* **trivial**: a minimal Flower app whose ServerApp sends a DenseNet121-sized ArrayRecord (same
  array shapes and dtypes, random values) to every site and whose ClientApp returns it changed
  (+1, so it is really uploaded: Flower does not re-send objects the SuperLink already holds),
  ROUNDS rounds, the next round sending a reply's arrays. This is Flower's own cost of a round on this machine
  (transport, polling, process start). It runs before and after ours (the load drifts); P4
  compares with the median of both.
* **omopfed**: `omopfed aggregator run` of DenseNet121, 1 local epoch, ROUNDS rounds, no final
  evaluation, on tiny synthetic sites (32x32 inputs so compute stays small).

P4 = median over rounds of (round wall time - slowest site's `train-seconds`); goal: at most the
trivial round + 1 s. P7 = bytes a site sends per round / the fp32 state dict size (goal <= 1.05),
from the replies' serialized arrays and, as a cross-check, Flower's own network counters.

The sites run `omopfed node start` with its warm worker (`node.worker`) unless `--no-worker`:
then every message pays the imports of torch and the networks in a fresh ClientApp process.

Run: `python benchmarks/bench_federation.py [--sites 3] [--rounds 3] [--no-worker]` (about 10
minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from cohorts.db import Database
from cohorts.loader import load_definition
from cohorts.runner import run_cohort
from federation.flower import FlowerCli, free_port, stop_group
from federation.store import MetricsStore, rounds
from models.networks import build_model
from node.cache import build_dataset
from node.dataset import dataset_hash
from node.gate import ValidationRecord, write_record
from node.manifest import resolve
from node.settings import load_site_settings
from node.synth.federation import FederationRequest, generate_federation
from omopfed.offline import child_env

ROOT = Path(__file__).resolve().parents[1]

TRIVIAL_APP = """
import json, time
from pathlib import Path
import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

client = ClientApp()
server = ServerApp()

@client.train()
def train(message: Message, context: Context) -> Message:
    # New values, so the reply is uploaded: Flower skips objects the SuperLink already holds.
    arrays = ArrayRecord({k: Array(np.asarray(v.numpy() + 1)) for k, v in message.content["arrays"].items()})
    content = RecordDict({"arrays": arrays, "metrics": MetricRecord({"num-examples": 1})})
    return Message(content, reply_to=message)

@server.main()
def main(grid: Grid, context: Context) -> None:
    shapes = json.loads((Path(__file__).parent / "shapes.json").read_text())
    # Random values: Flower stores objects by content hash, so equal arrays (zeros of one shape)
    # would travel once, and the baseline would move fewer bytes than a real model.
    rng = np.random.default_rng(0)
    arrays = ArrayRecord({n: Array(np.asarray(rng.integers(0, 2**16, s)).astype(d)) for n, (d, s) in shapes.items()})
    while len(list(grid.get_node_ids())) < int(context.run_config["sites"]):
        time.sleep(1)
    times = []
    for _ in range(int(context.run_config["rounds"])):
        start = time.monotonic()
        messages = [Message(RecordDict({"arrays": arrays, "config": ConfigRecord()}), node, "train")
                    for node in grid.get_node_ids()]
        replies = list(grid.send_and_receive(messages, timeout=600))
        times.append(time.monotonic() - start)
        assert len(replies) == len(messages) and not any(r.has_error() for r in replies)
        arrays = replies[0].content["arrays"]  # a new model every round, like FedAvg
    Path(context.run_config["out"]).write_text(json.dumps(times))
"""


def omopfed(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "omopfed.cli", *args], capture_output=True, text=True,
        env=child_env(),
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"omopfed {' '.join(args)} failed: {done.stderr}{done.stdout}")
    return done.stdout


def prepare_sites(root: Path, sites: int) -> list[Path]:
    """Tiny synthetic sites with a DenseNet dataset cache and a passing gate record."""
    generate_federation(FederationRequest(out=root, sites=sites, profile="tiny", seed=3))
    definition = load_definition(ROOT / "cohorts" / "definitions" / "reference_glioma.json")
    files = []
    for folder in sorted(p for p in root.iterdir() if (p / "site.toml").exists()):
        path = folder / "site.toml"
        path.write_text(path.read_text() + '\n[dataset]\nimage_size = 32\ndtype = "float32"\n')
        settings = load_site_settings(path)
        with Database(settings.database_url.get_secret_value(), settings.schemas) as db:
            run_cohort(db, definition, 1, min_cell_count=settings.min_cell_count)
        resolve(settings, 1)
        build_dataset(settings, "densenet2d", cohort_id=1)
        record = ValidationRecord(dataset_hash(settings, "densenet2d"), True, {})
        write_record(settings.workspace, record)  # a benchmark, not a validation
        files.append(path)
    return files


def trivial_app(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "pyproject.toml").write_text(textwrap.dedent("""
        [project]
        name = "trivial"
        version = "1.0.0"
        description = "P4 baseline"
        license = "Apache-2.0"
        [tool.flwr.app]
        publisher = "bench"
        [tool.flwr.app.components]
        serverapp = "trivial_app:server"
        clientapp = "trivial_app:client"
        [tool.flwr.app.config]
        rounds = 3
        sites = 3
        out = ""
    """))  # fmt: skip
    (folder / "trivial_app.py").write_text(TRIVIAL_APP)
    state = build_model("densenet2d").state_dict()
    shapes = {k: [str(v.numpy().dtype), list(v.shape)] for k, v in state.items()}
    (folder / "shapes.json").write_text(json.dumps(shapes))
    return folder


def fp32_model_bytes() -> int:
    return sum(v.numel() * 4 for v in build_model("densenet2d").state_dict().values())


def run_trivial(
    cli: FlowerCli, app: Path, sites: int, rounds_: int, out: Path
) -> tuple[list[float], float]:
    """The trivial app's round times and the bytes Flower received per site per round."""
    config = ["--run-config", f'rounds={rounds_} sites={sites} out="{out}"']
    run_id = str(cli.json(["run", str(app), "omopfed", *config])["run-id"])
    status = cli.wait_run(run_id, timeout=1800)
    if status["status"] != "finished:completed":
        raise SystemExit(f"trivial run ended {status['status']}")
    inbound = status.get("network-traffic", {}).get("inbound-bytes", 0) / (sites * rounds_)
    return list(json.loads(out.read_text())), inbound


def run_omopfed(workspace: Path, sites: int, rounds_: int) -> tuple[list[float], str, dict]:
    result = json.loads(omopfed(
        "aggregator", "run", "-w", str(workspace), "--model", "densenet2d", "--rounds",
        str(rounds_), "--min-sites", str(sites), "--threads", "1", "--no-final-evaluation",
        "--run-name", "bench", "--wait", "--timeout", "3600", "--format", "json",
    ))  # fmt: skip
    store = MetricsStore(f"sqlite:///{workspace / 'metrics.sqlite'}")
    with store.engine.connect() as conn:
        walls = {r.round: r.wall_seconds for r in conn.execute(rounds.select())}
    compute: dict[int, float] = {}
    sent: list[float] = []
    for row in store.site_metrics("bench"):
        if row["metric"] == "train-seconds":
            compute[row["round"]] = max(compute.get(row["round"], 0.0), row["value"])
        if row["metric"] == "bytes-from-site":
            sent.append(row["value"])
    overheads = [walls[r] - compute[r] for r in sorted(walls)]
    extra = {
        "bytes_per_site_round": statistics.median(sent),
        "rounds": [(walls[r], compute[r]) for r in sorted(walls)],
    }
    return overheads, result["flower_run_id"], extra


def timing_lines(server_log: str, root: Path) -> list[str]:
    """Where a round's time goes: the ServerApp's round lines, each site's handling time."""
    lines = [line for line in server_log.splitlines() if "round " in line and " s" in line]
    for log in sorted(root.glob("node*.log")):
        text = log.read_text(errors="replace")
        lines += [f"{log.stem}: {line}" for line in text.splitlines() if "handled in" in line]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-worker", action="store_true", help="Sites without the warm worker.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-fed-") as tmp:
        root = Path(tmp)
        site_files = prepare_sites(root / "sites", args.sites)
        workspace = root / "agg"
        port = free_port()
        omopfed("aggregator", "init", "-w", str(workspace), "--port", str(port))
        nodes = []
        try:
            for i, settings in enumerate(site_files):
                omopfed("node", "keygen", "--settings", str(settings))
                key = settings.parent / "workspace" / "keys" / "supernode.pub"
                omopfed("aggregator", "register-site", f"site{i}", str(key), "-w", str(workspace))
            omopfed("aggregator", "start", "-w", str(workspace))
            for i, settings in enumerate(site_files):
                with (root / f"node{i}.log").open("wb") as log:
                    nodes.append(subprocess.Popen(
                        [sys.executable, "-m", "omopfed.cli", "--log-level", "info", "node",
                         "start", "--settings", str(settings), "--superlink", f"127.0.0.1:{port}",
                         "--root-certificates", str(workspace / "tls" / "ca.crt"),
                         *(["--no-worker"] * args.no_worker)],
                        stdout=log, stderr=subprocess.STDOUT, env=child_env(),
                        start_new_session=True,
                    ))  # fmt: skip
            cli = FlowerCli(workspace / "flwr")
            # Before and after ours: the machine's load drifts, so one baseline may mislead.
            app = trivial_app(root / "trivial")
            before, before_bytes = run_trivial(cli, app, args.sites, args.rounds, root / "t1.json")
            ours, run_id, extra = run_omopfed(workspace, args.sites, args.rounds)
            after, _ = run_trivial(cli, app, args.sites, args.rounds, root / "t2.json")
            traffic = cli.run_status(run_id).get("network-traffic", {})
            breakdown = timing_lines(cli.text(["log", run_id, "--show"]), root)
        finally:
            for node in nodes:
                stop_group(node.pid, timeout=10)
            omopfed("aggregator", "stop", "-w", str(workspace))
    model = fp32_model_bytes()
    wire = traffic.get("inbound-bytes", 0) / (args.sites * args.rounds) if traffic else 0.0
    print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; "
          f"{args.sites} sites x {args.rounds} rounds, "
          f"site worker {'off' if args.no_worker else 'on'}")  # fmt: skip
    trivial = before + after
    for name, times in (("before", before), ("after", after)):
        print(f"P4 trivial round wall, {name} (s): {' '.join(f'{t:.1f}' for t in times)}"
              f"  median {statistics.median(times):.1f}")  # fmt: skip
    print(f"P4 omopfed wall - compute (s):    {' '.join(f'{t:.1f}' for t in ours)}"
          f"  median {statistics.median(ours):.1f}")  # fmt: skip
    excess = statistics.median(ours) - statistics.median(trivial)
    print(f"P4 overhead beyond trivial: {excess:+.1f} s (goal <= +1 s)")
    ratio = extra["bytes_per_site_round"] / model
    print(f"P7 bytes per site per round: {extra['bytes_per_site_round']:.0f} = {ratio:.4f} x "
          f"fp32 model ({model} B) (goal <= 1.05)")  # fmt: skip
    if wire:
        print(f"P7 Flower inbound bytes per site per round: {wire:.0f} = {wire / model:.4f} x")
    print(f"   trivial app, Flower inbound bytes per site per round: {before_bytes:.0f}")
    rounds_ = " ".join(f"{wall:.1f}/{fit:.1f}" for wall, fit in extra["rounds"])
    print(f"omopfed round wall / slowest site's train-seconds (s): {rounds_}")
    print("where the time goes:", *breakdown, sep="\n  ")


if __name__ == "__main__":
    main()
