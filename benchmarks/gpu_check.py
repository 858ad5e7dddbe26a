"""CUDA check: the trainer's overhead against a bare loop, and no host sync per batch.

For a small (launch-bound) and a mid-size MLP, with the data already on the GPU:

  bare     an ordinary loop: SGD with momentum, CosineAnnealingLR per epoch, the epoch's loss
           summed on the device and read with .item() once per epoch;
  trainer  cosinetui's Trainer in its session thread, no UI (as `cosinetui run --headless`),
           samples/s from its EpochEnd events;
  sampler  the same with the system sampler's thread running (NVML and psutil once a second,
           as the trainer process of `cosinetui run` has it): sampler/trainer should be 1
           within the noise.

They alternate, --reps rounds, first epoch of each run left out; the ratio is trainer/bare.

Host syncs: one more trainer epoch runs with torch.cuda.set_sync_debug_mode("warn"), every
warning captured, and with Tensor.item/.tolist/.cpu/__bool__ and torch.cuda.synchronize
counted. Expected: a few syncs per loss chunk (about ten chunks a second) and per epoch, far
fewer than batches. The script exits 1 if syncs reach 0.5 per batch (a per-batch sync), 0
otherwise; without CUDA it prints "no CUDA: skipped" and exits 0 (--cpu runs the same flow on
the CPU to try the script, where the finite check reads each loss on purpose).

    python benchmarks/gpu_check.py            # about 1-2 minutes on a recent GPU
    python benchmarks/gpu_check.py --reps 5 --amp
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import threading
import warnings
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from experiments import bare_rate  # noqa: E402
from torch import nn  # noqa: E402

from cosinetui import Experiment  # noqa: E402

MODELS = {
    # name: (inputs, width, batch, batches per epoch)
    "small": (64, 256, 128, 400),
    "mid": (1024, 4096, 1024, 100),
}
CPU_MODELS = {"small": (64, 256, 128, 100), "mid": (256, 512, 192, 40)}  # --cpu: same flow, CPU-sized


def build(name: str, device: str, epochs: int) -> Experiment:
    inputs, width, batch, batches = MODELS[name]
    g = torch.Generator().manual_seed(1)
    data = [
        (torch.randn(batch, inputs, generator=g).to(device), torch.randint(0, 10, (batch,), generator=g).to(device))
        for _ in range(batches)
    ]
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(inputs, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 10)
    )
    return Experiment(name=f"gpu-{name}", model=model, train_data=data, epochs=epochs, lr=0.05, seed=0)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def bare(name: str, device: str, epochs: int) -> float:
    return bare_rate(build(name, device, epochs), epochs, device)


def trainer_run(name: str, device: str, epochs: int, amp: bool = False, in_thread: bool = True,
                sampler: bool = False):
    from cosinetui.session import TrainerSession
    from cosinetui.system_sampler import SystemSampler, torch_peak_allocated
    from cosinetui.trainer import TrainerOptions

    run_dir = Path(tempfile.mkdtemp(prefix="ctgpu"))
    monitor = None
    try:
        options = TrainerOptions(run_dir=run_dir, device=device, amp=amp, on_nan="stop", checkpoint_every=0)
        session = TrainerSession(build(name, device, epochs), options)
        if sampler:
            dev = session.trainer.device
            monitor = SystemSampler(lambda s: None, cuda=dev.type == "cuda",
                                    peak_allocated=torch_peak_allocated(dev))
            monitor.start()
        if in_thread:
            session.start()
            session.wait()
        else:
            session.trainer.run()
        if monitor is not None:
            monitor.close()
            assert monitor.samples > 0 or epochs < 2, "the sampler never sampled"
        history = session.trainer.history
        assert history.state == "finished", (history.state, history.end)
        later = [e for e in history.epochs if e.epoch > 1]
        rate = sum(e.samples_per_s * e.seconds for e in later) / sum(e.seconds for e in later)
        return rate, history
    finally:
        if monitor is not None:
            monitor.close()
        shutil.rmtree(run_dir, ignore_errors=True)


class SyncCounter:
    """Counts host-reading calls made from the trainer's thread while installed."""

    NAMES = ("item", "tolist", "cpu", "__bool__")

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._saved: dict[str, object] = {}
        self.thread = threading.get_ident()

    def __enter__(self) -> SyncCounter:
        for name in self.NAMES:
            original = getattr(torch.Tensor, name)
            self._saved[name] = original
            setattr(torch.Tensor, name, self._wrap(f"Tensor.{name}", original))
        self._saved["synchronize"] = torch.cuda.synchronize
        torch.cuda.synchronize = self._wrap("cuda.synchronize", torch.cuda.synchronize)
        return self

    def __exit__(self, *exc: object) -> None:
        for name in self.NAMES:
            setattr(torch.Tensor, name, self._saved[name])
        torch.cuda.synchronize = self._saved["synchronize"]

    def _wrap(self, label: str, fn):
        counts, thread = self.counts, self.thread

        def wrapper(*args, **kwargs):
            if threading.get_ident() == thread:
                counts[label] += 1
            return fn(*args, **kwargs)

        return wrapper


def count_syncs(name: str, device: str, amp: bool) -> tuple[int, int, int, Counter]:
    """(batches, chunks, sync-debug warnings, calls) for a 2-epoch run in this thread."""
    cuda = device.startswith("cuda")
    with warnings.catch_warnings(record=True) as caught, SyncCounter() as counter:
        warnings.simplefilter("always")
        if cuda:
            torch.cuda.set_sync_debug_mode("warn")
        try:
            _, history = trainer_run(name, device, 2, amp=amp, in_thread=False)
        finally:
            if cuda:
                torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in caught if "synchroniz" in str(w.message).lower()]
    batches = history.step
    return batches, len(syncs), sum(counter.counts.values()), counter.counts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--amp", action="store_true", help="also count syncs with --amp (bfloat16 autocast)")
    ap.add_argument("--cpu", action="store_true", help="run the flow on the CPU (to try the script)")
    args = ap.parse_args()
    if args.cpu:
        device = "cpu"
        MODELS.update(CPU_MODELS)
        torch.set_num_threads(1)
    elif torch.cuda.is_available():
        device = "cuda"
    else:
        print("no CUDA: skipped (run with --cpu to try the script on the CPU)")
        return 0
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    print(f"# gpu_check: {name}; torch {torch.__version__}")
    failed = False
    for model in MODELS:
        bare(model, device, 2)  # warm-up: kernels, allocator, cuBLAS handles
        pairs, sampled = [], []
        for _ in range(args.reps):
            a = bare(model, device, args.epochs)
            b, _ = trainer_run(model, device, args.epochs)
            c, _ = trainer_run(model, device, args.epochs, sampler=True)
            pairs.append((a, b))
            sampled.append(c / b)
        ratio = statistics.median(b / a for a, b in pairs)
        ms = MODELS[model][2] / statistics.median(a for a, _ in pairs) * 1e3
        print(f"{model}: {ms:.3f} ms/batch bare; samples/s bare {statistics.median(a for a, _ in pairs):,.0f}"
              f" trainer {statistics.median(b for _, b in pairs):,.0f}; trainer/bare {ratio:.3f}"
              f" (rounds: {', '.join(f'{b / a:.3f}' for a, b in pairs)})")
        print(f"  with the system sampler: sampler/trainer {statistics.median(sampled):.3f}"
              f" (rounds: {', '.join(f'{r:.3f}' for r in sampled)})")
        for amp in (False, True) if args.amp and device == "cuda" else (False,):
            batches, warned, calls, detail = count_syncs(model, device, amp)
            per_batch = max(warned, calls) / batches
            bad = per_batch >= 0.5 and device == "cuda"
            failed |= bad
            print(f"  syncs{' (amp)' if amp else ''}: {batches} batches, {warned} sync-debug warnings, "
                  f"{calls} host reads {dict(detail)}; {per_batch:.3f} per batch"
                  f"{'  <-- PER-BATCH SYNC' if bad else ''}")
    print("FAIL: a host sync per batch" if failed else "OK: no per-batch host sync" if device == "cuda"
          else "CPU run: sync counts are informative only (the CPU finite check reads each loss)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
