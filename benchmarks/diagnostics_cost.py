"""Per-batch cost of the live diagnostics: a Monitor fed a long run in chunks of 50 batches,
as the trainer does, with an epoch end every 500 batches.

    OMP_NUM_THREADS=1 python benchmarks/diagnostics_cost.py [--baseline GIT_REV]

``--baseline`` also times the Monitor of another revision (its cosinetui/diagnostics.py or
cosinetui/diagnostics/), loaded from git, on the same input.
"""

from __future__ import annotations

import argparse
import importlib
import math
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._util import machine, median  # noqa: E402
from cosinetui.events import BatchChunk, EpochEnd, RunStarted  # noqa: E402
from cosinetui.history import History  # noqa: E402

SPE, CHUNK = 500, 50


def events(batches: int, seed: int = 0) -> list:
    rng = random.Random(seed)
    out: list = [RunStarted("bench", "", "cpu", "", 0, batches // SPE, SPE, "epoch", {})]
    for e in range(1, batches // SPE + 1):
        lr = 0.05 * (1 + math.cos(math.pi * (e - 1) / (batches // SPE)))
        losses = []
        for i in range(0, SPE, CHUNK):
            xs = tuple((2.0 * math.exp(-(e - 1 + i / SPE) / 20) + 0.1) * math.exp(0.3 * rng.gauss(0, 1)) for _ in range(CHUNK))
            losses += xs
            out.append(BatchChunk(e, (e - 1) * SPE + i, xs, (lr,) * CHUNK, i + CHUNK))
        out.append(EpochEnd(e, sum(losses) / SPE, sum(losses) / SPE * 1.1, lr, step=e * SPE))
    return out


def time_monitor(monitor_cls, evs: list, reps: int) -> float:
    """Median microseconds a batch over ``reps`` runs."""
    results = []
    for _ in range(reps):
        history, monitor = History(), monitor_cls()
        spent = 0.0
        for event in evs:
            history.apply(event)
            t0 = time.perf_counter()
            monitor.update(history)
            spent += time.perf_counter() - t0
        results.append(spent / len(history.losses) * 1e6)
    return median(results)


def baseline_monitor(rev: str):
    root = Path(tempfile.mkdtemp())
    tree = subprocess.run(["git", "ls-tree", "-r", "--name-only", rev, "cosinetui/diagnostics"], capture_output=True, text=True).stdout.split()
    files = tree or ["cosinetui/diagnostics.py"]
    pkg = root / "basepkg"
    for f in files:
        dest = pkg / Path(f).relative_to("cosinetui")
        dest.parent.mkdir(parents=True, exist_ok=True)
        text = subprocess.run(["git", "show", f"{rev}:{f}"], capture_output=True, text=True, check=True).stdout
        dest.write_text(text.replace("cosinetui.diagnostics", "basepkg.diagnostics"))
    (pkg / "__init__.py").write_text("")
    sys.path.insert(0, str(root))
    return importlib.import_module("basepkg.diagnostics").Monitor


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=100_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--baseline", default="")
    args = parser.parse_args()
    from cosinetui.diagnostics import Monitor

    evs = events(args.batches)
    print(machine())
    print(f"this tree: {time_monitor(Monitor, evs, args.reps):.2f} us a batch ({args.batches} batches, chunks of {CHUNK})")
    if args.baseline:
        base = baseline_monitor(args.baseline)
        print(f"{args.baseline}: {time_monitor(base, evs, args.reps):.2f} us a batch")


if __name__ == "__main__":
    main()
