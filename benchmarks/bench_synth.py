"""Time and disk size of the synthetic federation for the tiny and demo profiles.

Run: ``.venv/bin/python benchmarks/bench_synth.py [--profiles tiny demo] [--sites 3]``.
Numbers go to docs/explanation/synthetic-data.md.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from node.synth.federation import FederationRequest, generate_federation


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--profiles", nargs="+", default=["tiny", "demo"])
    parser.add_argument("--sites", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    for profile in args.profiles:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp)
            start = time.perf_counter()
            truths = generate_federation(
                FederationRequest(
                    out=out, sites=args.sites, seed=0, profile=profile, workers=args.workers
                )
            )
            seconds = time.perf_counter() - start
            persons = sum(t["persons"] for t in truths.values())
            files = sum(t["mr_files"] for t in truths.values())
            print(
                f"{profile}: {args.sites} sites, {persons} persons, {files} MR files, "
                f"{seconds:.1f} s, {_size(out) / 2**20:.0f} MiB"
            )


if __name__ == "__main__":
    main()
