"""P1: DICOM series -> model input, ours vs a MONAI pipeline on the same series in the same run.

2D: read a series and take the middle coronal slice at 128x128 (ours: node.imaging; MONAI:
LoadImage(reader="PydicomReader") + Orientation + slice + Resize). 3D: four sequences onto one
128x128 grid with per-channel normalization (MONAI: LoadImage + Orientation + ResampleToMatch +
Resize + NormalizeIntensity). "Cold" means nothing is cached by either pipeline between runs (the
OS page cache is warm for both). Series are generated from the analytic phantom in a temp folder.

Run: .venv/bin/python benchmarks/bench_imaging.py [--slices 48] [--matrix 256] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from node.imaging import build_3d_input, middle_coronal_slice, read_series
from node.imaging.phantom import Acquisition, write_series

PLANES_2D = ("axial", "sagittal", "coronal")
SEQUENCES = {"FLAIR": "axial", "T1": "sagittal", "T1ce": "coronal", "T2": "axial"}


def _monai_2d() -> Callable[[Path], np.ndarray]:
    from monai.transforms import LoadImage, Orientation, Resize

    load = LoadImage(reader="PydicomReader", image_only=True, ensure_channel_first=True)
    orient, resize = Orientation(axcodes="RAS"), Resize((128, 128))

    def run(folder: Path) -> np.ndarray:
        image = orient(load(str(folder)))  # (1, R->L... x, y, z) in RAS
        plane = image[:, :, image.shape[2] // 2, :]  # middle coronal (constant y)
        return np.asarray(resize(plane))

    return run


def _monai_3d() -> Callable[[dict[str, Path]], np.ndarray]:
    import torch
    from monai.transforms import LoadImage, NormalizeIntensity, Orientation, ResampleToMatch, Resize

    load = LoadImage(reader="PydicomReader", image_only=True, ensure_channel_first=True)
    orient, match = Orientation(axcodes="RAS"), ResampleToMatch()
    norm = NormalizeIntensity(nonzero=True, channel_wise=True)

    def run(folders: dict[str, Path]) -> np.ndarray:
        ref = orient(load(str(folders["FLAIR"])))
        channels = [match(orient(load(str(folders[name]))), ref) for name in ("T1", "T1ce", "T2")]
        stack = torch.cat([*channels, ref])
        resized = Resize((128, 128, -1))(stack)
        return np.asarray(norm(resized))

    return run


def _time(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _report(name: str, ours: float, theirs: float, n_files: int, n_bytes: int) -> None:
    print(
        f"{name}: ours {ours * 1000:.0f} ms ({n_files / ours:.0f} files/s, "
        f"{n_bytes / ours / 1e6:.0f} MB/s) | MONAI {theirs * 1000:.0f} ms "
        f"({n_files / theirs:.0f} files/s, {n_bytes / theirs / 1e6:.0f} MB/s) | "
        f"speed-up x{theirs / ours:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=48)
    parser.add_argument("--matrix", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    acq = {
        plane: Acquisition(
            plane=plane,
            n_slices=args.slices,
            matrix=args.matrix,
            pixel_mm=180 / args.matrix,
            slice_mm=180 / args.slices,
        )
        for plane in PLANES_2D
    }
    monai_2d, monai_3d = _monai_2d(), _monai_3d()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        folders = {plane: write_series(root / plane, acq[plane])[0].parent for plane in PLANES_2D}
        files = [p for f in folders.values() for p in f.iterdir()]
        n_bytes = sum(p.stat().st_size for p in files)
        print(
            f"2D: {len(folders)} series x {args.slices} slices of {args.matrix}^2, {n_bytes / 1e6:.1f} MB"
        )
        ours = _time(
            lambda: [middle_coronal_slice(read_series(f)) for f in folders.values()], args.repeats
        )
        theirs = _time(lambda: [monai_2d(f) for f in folders.values()], args.repeats)
        _report("series -> 2D input", ours, theirs, len(files), n_bytes)

        seqs = {
            name: write_series(
                root / name, acq[plane], frame_of_reference_uid="1.2.3", description=name
            )[0].parent
            for name, plane in SEQUENCES.items()
        }
        files = [p for f in seqs.values() for p in f.iterdir()]
        n_bytes = sum(p.stat().st_size for p in files)
        ours = _time(
            lambda: build_3d_input({n: read_series(f) for n, f in seqs.items()}), args.repeats
        )
        theirs = _time(lambda: monai_3d(seqs), args.repeats)
        _report("4 sequences -> 3D input", ours, theirs, len(files), n_bytes)


if __name__ == "__main__":
    main()
