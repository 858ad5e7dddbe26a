"""Overhead of cosinetui on a DDP run: the same model, data and DDP loop on N ranks

  (a) bare       an ordinary DDP loop: zero_grad, forward, loss, backward, SGD step; the epoch's
                 loss summed on the device, all-reduced and read once per epoch;
  (b) cosinetui  the Trainer as each rank of `cosinetui run --nproc N` runs it (data sharded
                 by it, NaN vote, command checks through the rendezvous store, epoch sums
                 reduced, rank 0 writing metrics.jsonl and serving the control socket).

Both run in the same processes (started by torch's elastic launcher, as `--nproc` does), in
alternation (a, b, b, a, a, b, ...), after a barrier. Per-batch time is the epoch's time over
its batches, leaving out each run's first epoch (warm-up); for (b) it is the trainer's own
EpochEnd time. Overhead = b/a - 1 per round, then the median over rounds.

    .venv/bin/python benchmarks/ddp_overhead.py                 # 2 ranks, gloo on the CPU
    .venv/bin/python benchmarks/ddp_overhead.py --device cuda   # NCCL, one GPU per rank
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from _util import machine, median  # noqa: E402
from torch import nn  # noqa: E402


def build_model(width: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 10))


def make_batches(n: int, batch: int, width: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(batch, width, generator=g), torch.randint(0, 10, (batch,), generator=g)) for _ in range(n)]


def bare(args, ranks, batches) -> float:
    """Seconds per batch of a plain DDP loop (epochs after the first)."""
    from torch.nn.parallel import DistributedDataParallel

    dev = ranks.device
    model = build_model(args.width).to(dev)
    ddp = DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    mine = [(x.to(dev), y.to(dev)) for x, y in batches[ranks.rank :: ranks.world_size]]
    times = []
    for _ in range(args.epochs):
        t0 = time.perf_counter()
        total = torch.zeros((), device=dev)
        for x, y in mine:
            opt.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(ddp(x), y)
            loss.backward()
            opt.step()
            total += loss.detach()
        torch.distributed.all_reduce(total)
        total.item()
        times.append((time.perf_counter() - t0) / len(mine))
    return median(times[1:])


def with_cosinetui(args, ranks, batches, root: Path) -> float:
    from cosinetui import Experiment
    from cosinetui.events import EpochEnd
    from cosinetui.remote import RunServer
    from cosinetui.trainer import Trainer, TrainerOptions

    ranks.new_run()
    run_dir = root / f"run{time.monotonic_ns()}" if ranks.is_main else root / "unused"
    exp = Experiment(model=build_model(args.width), train_data=batches, epochs=args.epochs, lr=0.01, seed=0)
    ends: list[EpochEnd] = []
    trainer = Trainer(exp, TrainerOptions(run_dir=run_dir, checkpoint_every=0),
                      listeners=[lambda e: ends.append(e) if isinstance(e, EpochEnd) else None])
    server = None
    if ranks.is_main:
        run_dir.mkdir()
        server = RunServer(run_dir, trainer.send)
        trainer.listeners.append(server.listener)
        server.start()
    try:
        trainer.run()
    finally:
        if server is not None:
            server.close()
    per_rank = len(batches) // ranks.world_size
    seconds = ranks.sum_floats([median([e.seconds for e in ends[1:]]) if ends else 0.0])[0]
    return seconds / per_rank  # rank 0's figure (the others report 0)


def distributed_check_seconds() -> float:
    from cosinetui.distributed import CHECK_SECONDS

    return CHECK_SECONDS


def worker(args) -> None:
    from cosinetui import distributed

    ranks = distributed.init(args.device)
    torch.set_num_threads(args.threads)
    batches = make_batches(args.batches * ranks.world_size, args.batch, args.width)
    rows = []
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="ctb") as tmp:
        for rep in range(args.reps):
            order = ("bare", "cosinetui") if rep % 2 == 0 else ("cosinetui", "bare")
            result = {}
            for variant in order:
                torch.distributed.barrier()
                cpu = time.process_time()
                if variant == "bare":
                    result[variant] = bare(args, ranks, batches)
                else:
                    result[variant] = with_cosinetui(args, ranks, batches, Path(tmp))
                # CPU time of each rank per batch (whole run, first epoch and set-up included):
                # less sensitive than wall time to other work on a loaded machine.
                mine = [0.0] * ranks.world_size
                mine[ranks.rank] = (time.process_time() - cpu) / (args.batches * args.epochs)
                result[variant + " cpu"] = ranks.sum_floats(mine)
            rows.append(result)
            if ranks.is_main:
                print(f"round {rep + 1}: bare {result['bare'] * 1e3:.3f} ms/batch, cosinetui "
                      f"{result['cosinetui'] * 1e3:.3f} ms/batch, {100 * (result['cosinetui'] / result['bare'] - 1):+.2f}%",
                      flush=True)
    # The parts, timed alone (robust to a loaded machine): a command check is one store round
    # trip; between two checks a batch costs one integer comparison.
    torch.distributed.barrier()
    trips = []
    for _ in range(200):
        t0 = time.perf_counter()
        ranks.store.add("n", 0)
        trips.append(time.perf_counter() - t0)
    if ranks.is_main:
        trip = median(trips)
        print(f"store round trip (one command check): median {trip * 1e6:.0f} us; checks are "
              f"~{1e3 * distributed_check_seconds():.0f} ms apart, so {100 * trip / distributed_check_seconds():.2f}% "
              "of the time of any batch size (at least every 2 batches: "
              f"{100 * trip / 2 / 0.005:.2f}% of a 5 ms batch at most)")
    if ranks.is_main:
        ratios = [r["cosinetui"] / r["bare"] - 1 for r in rows]
        print(f"\n{ranks.world_size} ranks, {ranks.backend} on {ranks.device.type}; {machine(args.threads)}")
        print(f"width {args.width}, batch {args.batch}, {args.batches} batches per rank per epoch, "
              f"{args.epochs} epochs (first left out), {args.reps} rounds")
        print(f"median ms/batch: bare {median([r['bare'] for r in rows]) * 1e3:.3f}, "
              f"cosinetui {median([r['cosinetui'] for r in rows]) * 1e3:.3f}")
        for r in range(ranks.world_size):
            cpu_ratios = [x["cosinetui cpu"][r] / x["bare cpu"][r] - 1 for x in rows]
            print(f"rank {r} CPU time per batch: bare {median([x['bare cpu'][r] for x in rows]) * 1e3:.3f} ms, "
                  f"cosinetui {median([x['cosinetui cpu'][r] for x in rows]) * 1e3:.3f} ms, "
                  f"median {100 * median(cpu_ratios):+.2f}% (rounds: {', '.join(f'{100 * x:+.1f}%' for x in cpu_ratios)})")
        print(f"overhead: median {100 * median(ratios):+.2f}% (rounds: {', '.join(f'{100 * x:+.1f}%' for x in ratios)})")
    ranks.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nproc", type=int, default=2)
    p.add_argument("--device", default="cpu", help="cpu (gloo) or cuda (NCCL)")
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--batches", type=int, default=200, help="per rank per epoch")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--threads", type=int, default=1, help="torch threads per rank")
    args = p.parse_args()
    if "RANK" in os.environ:
        worker(args)
        return
    from torch.distributed.run import parse_args, run

    launch = parse_args(["--standalone", f"--nproc-per-node={args.nproc}", "--max-restarts=0", __file__])
    launch.training_script_args = sys.argv[1:]
    run(launch)


if __name__ == "__main__":
    main()
