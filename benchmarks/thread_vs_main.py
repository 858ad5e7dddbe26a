"""The same training loop in the main thread and in a second Python thread, alternating.

On the CPU, torch's intra-op threads serve the main thread best: this is why headless runs
(and the trainer process behind the dashboard) train in their main thread.

    .venv/bin/python benchmarks/thread_vs_main.py [--threads N] [--rounds 3]
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from _util import machine, median, table  # noqa: E402

from cosinetui.demos import builtin  # noqa: E402


def epoch_seconds() -> float:
    exp = builtin(train_size=16_000)
    opt = torch.optim.SGD(exp.model.parameters(), lr=0.05, momentum=0.9)
    start = time.perf_counter()
    for x, y in exp.train_data:
        opt.zero_grad()
        exp.loss_fn(exp.model(x), y).backward()
        opt.step()
    return time.perf_counter() - start


def in_thread() -> float:
    out: list[float] = []
    worker = threading.Thread(target=lambda: out.append(epoch_seconds()))
    worker.start()
    worker.join()
    return out[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"# thread vs main: {machine(args.threads)}")
    main_s, thread_s = [], []
    for _ in range(args.rounds):
        main_s.append(epoch_seconds())
        thread_s.append(in_thread())
    rows = [["main thread", median(main_s), min(main_s), max(main_s)],
            ["second thread", median(thread_s), min(thread_s), max(thread_s)]]
    print(table(["where the loop runs", "s per epoch (median)", "min", "max"], rows))


if __name__ == "__main__":
    main()
