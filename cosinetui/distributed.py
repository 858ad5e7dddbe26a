"""Several processes, one run: rank and world size, sharding the data, sums over ranks, the
non-finite-loss vote, and handing commands from the run's control socket to every rank.

Each rank runs the same trainer (started by torch's elastic launcher, ``torchrun`` or
``cosinetui run --nproc N``). Rank 0 alone writes the run directory and serves the control
socket; the others train silently.

Commands without a collective per batch: every rank checks torch's rendezvous store (a
key-value server the launcher already runs) every ``every`` batches, at the same steps on all
ranks. A command is posted there stamped "apply at step S" with S two checks ahead; DDP's
gradient all-reduce keeps ranks within a batch of each other, so every rank has read it by
then and applies it at the first check at or after S. A rank that reads a command too late to
apply it with the others fails loudly rather than drift. ``every`` adapts (by the same kind of
stamped message from rank 0) so checks happen about every ``CHECK_SECONDS``.

Pausing happens at such a check, outside any collective: rank 0 waits on its command event,
the others on the store, with short timed waits (no busy loop), so a pause can last for hours
without a collective timing out.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import queue
import time
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, IterableDataset, RandomSampler

from cosinetui.device import pick_device
from cosinetui.events import Event, Paused, command_from_json, to_json

CHECK_SECONDS = 0.1  # target time between two command checks
MIN_EVERY, MAX_EVERY, FIRST_EVERY = 2, 256, 4
PAUSE_POLL_SECONDS = 1.0  # a paused rank looks for commands from other ranks this often
# Exit codes of a rank that stopped because it was told to (SIGTERM/SIGINT, handled or not).
GRACEFUL_EXITS = (128 + 15, 128 + 2, -15, -2)


_current: Ranks | None = None


def current() -> Ranks | None:
    """The process group this process belongs to, or None for a single process."""
    return _current


class NullLog:
    """The metrics log of a rank other than 0: only rank 0 writes the run directory."""

    def write(self, event: Event) -> None:
        pass

    def flush(self) -> None:
        pass

    def new_run(self) -> None:
        """Forget the previous run's check schedule (one process training several runs)."""
        self.every, self.next_check, self._last_check, self._timing = FIRST_EVERY, 0, None, None
        self._due.clear()
        self._outbox.clear()

    def close(self) -> None:
        pass


def init(device_name: str = "auto") -> Ranks:
    """Join the process group described by the launcher's environment (RANK, WORLD_SIZE,
    LOCAL_RANK, MASTER_ADDR/PORT): NCCL with one GPU per rank on CUDA, gloo on the CPU."""
    global _current
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_name)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"  # DDP has no MPS backend
    dist.init_process_group(backend)
    # The launcher's rendezvous store, shared by every rank: the command board.
    # (Its keys outlive workers that torchrun restarts: each start gets keys of its own.)
    restart = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    store = dist.PrefixStore(f"cosinetui/{restart}/", dist.distributed_c10d._get_default_store())
    _current = Ranks(dist.get_rank(), dist.get_world_size(), local_rank, backend, device, store)
    return _current


class Ranks:
    def __init__(
        self, rank: int, world_size: int, local_rank: int, backend: str, device: torch.device, store: Any
    ) -> None:
        self.rank, self.world_size, self.local_rank = rank, world_size, local_rank
        self.backend, self.device, self.store = backend, device, store
        self.is_main = rank == 0
        self.every = FIRST_EVERY
        self.next_check = 0
        self._last_check: int | None = None
        self._timing: tuple[int, float] | None = None  # (step, time) of the previous check
        self._seen = 0  # messages read from the store
        self._due: list[dict[str, Any]] = []  # read, not yet applied
        self._outbox: list[dict[str, Any]] = []  # internal messages to post at the next check
        self._probe: torch.nn.Parameter | None = None

    def new_run(self) -> None:
        """Forget the previous run's check schedule (one process training several runs)."""
        self.every, self.next_check, self._last_check, self._timing = FIRST_EVERY, 0, None, None
        self._due.clear()
        self._outbox.clear()

    def close(self) -> None:
        global _current
        if dist.is_initialized():
            dist.destroy_process_group()
        _current = None

    # ------------------------------------------------------------------ set-up

    def share(self, key: str, value: str) -> None:
        self.store.set(key, value.encode())

    def receive(self, key: str) -> str:
        return self.store.get(key).decode()

    def wrap(self, model: torch.nn.Module) -> DistributedDataParallel:
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    def shard(self, exp: Any) -> Any:
        """The experiment with each rank's part of the data (see ``shard_data``)."""
        return dataclasses.replace(
            exp,
            train_data=shard_data(exp.train_data, self.rank, self.world_size, train=True),
            val_data=None if exp.val_data is None else shard_data(exp.val_data, self.rank, self.world_size, train=False),
        )

    @staticmethod
    def set_epoch(data: Any, epoch: int) -> None:
        sampler = getattr(data, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)

    # ------------------------------------------------------------------ sums over ranks

    def sum_floats(self, values: list[float]) -> list[float]:
        """Sums over all ranks (float64; one collective; on the device for NCCL)."""
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.tolist()

    def sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        dist.all_reduce(tensor)
        return tensor

    # ------------------------------------------------------------------ one training step

    def probe_grad(self, model: torch.nn.Module) -> torch.Tensor:
        """One reduced gradient element: NaN on every rank when any rank's loss was.

        The stepper multiplies a non-finite local loss by NaN before backward, so after DDP's
        all-reduce every rank sees a non-finite gradient at the same step and skips it: no
        collective beyond DDP's own.
        """
        if self._probe is None or self._probe.grad is None:
            self._probe = next((p for p in model.parameters() if p.grad is not None), None)
            if self._probe is None:
                return torch.zeros((), device=self.device)
        return self._probe.grad.view(-1)[0]  # type: ignore[union-attr]

    def report_nan(self, step: int, policy: str) -> None:
        """Rank 0 saw a non-finite loss at ``step``: every rank applies ``policy`` together."""
        if self.is_main:
            self._outbox.append({"nan": policy, "step": step})

    # ------------------------------------------------------------------ commands

    def between_batches(self, trainer: Any, epoch: int) -> bool:
        """Called before every batch; True when the run must stop now (on every rank)."""
        step = trainer.step
        if step < self.next_check:
            return False  # the common case: no store access, no lock
        self._post_local(trainer, at=step + 2 * self.every)
        if self.is_main:
            self._adapt(step)
        self._read(step)
        self._apply_due(trainer, epoch, step)
        self.next_check = step + self.every
        while trainer._paused and trainer._stop_reason is None:
            self._wait(trainer)
            self._post_local(trainer, at=step)  # everyone is stopped at this step
            self._read(step)
            self._apply_due(trainer, epoch, step)
        self._last_check = step
        return trainer._stop_reason is not None

    def _post_local(self, trainer: Any, at: int) -> None:
        """Post this rank's queued commands (the socket's on rank 0, signals on any rank)."""
        while True:
            try:
                cmd = trainer._commands.get_nowait()
            except queue.Empty:
                break
            self._post({"at": at, "cmd": to_json(cmd)})
        for message in self._outbox:
            self._post({"at": at, **message})
        self._outbox.clear()

    def _post(self, message: dict[str, Any]) -> None:
        n = self.store.add("n", 1)
        self.store.set(f"m{n}", json.dumps(message).encode())

    def _read(self, step: int) -> None:
        n = self.store.add("n", 0)
        while self._seen < n:
            self._seen += 1
            message = json.loads(self.store.get(f"m{self._seen}"))
            if self._last_check is not None and message["at"] <= self._last_check:
                raise RuntimeError(
                    f"rank {self.rank} read a command for step {message['at']} only at step {step}; "
                    "the ranks would no longer agree (is a gradient sync skipped for many batches?)"
                )
            self._due.append(message)

    def _apply_due(self, trainer: Any, epoch: int, step: int) -> None:
        keep, handled = [], False
        for message in self._due:
            if message["at"] > step:
                keep.append(message)
                continue
            handled = True
            if "every" in message:
                self.every = message["every"]
            elif "nan" in message:
                self._apply_nan(trainer, epoch, message)
            else:
                trainer._apply(command_from_json(message["cmd"]), epoch)
        self._due = keep
        if handled:
            trainer.log.flush()

    @staticmethod
    def _apply_nan(trainer: Any, epoch: int, message: dict[str, Any]) -> None:
        if message["nan"] == "stop":
            trainer._stop_reason = "nan"
        elif not trainer._paused:
            trainer._flush_batches(epoch)
            trainer._paused, trainer._paused_at = True, time.perf_counter()
            trainer._emit(Paused(epoch, message["step"], reason="nan"))
            trainer._checkpoint("pause")

    def _adapt(self, step: int) -> None:
        """Rank 0: keep checks about CHECK_SECONDS apart whatever a batch costs."""
        now = time.monotonic()
        if self._timing is not None and step > self._timing[0]:
            per_batch = (now - self._timing[1]) / (step - self._timing[0])
            target = min(MAX_EVERY, max(MIN_EVERY, round(CHECK_SECONDS / max(per_batch, 1e-6))))
            if not self.every / 2 <= target <= self.every * 2:
                self._post({"at": step + 2 * self.every, "every": target})
        self._timing = (step, now)

    def _wait(self, trainer: Any) -> None:
        if self.is_main:
            trainer._wake.wait(PAUSE_POLL_SECONDS)  # the socket's commands wake it at once
            trainer._wake.clear()
        else:
            try:
                self.store.wait([f"m{self._seen + 1}"], datetime.timedelta(seconds=PAUSE_POLL_SECONDS))
            except Exception:  # noqa: BLE001 - a timed-out wait: look again
                pass
        self._timing = None  # time paused says nothing about a batch's cost


def shard_data(data: Any, rank: int, world: int, *, train: bool) -> Any:
    """This rank's part of ``data``.

    A DataLoader gets a DistributedSampler that keeps its shuffle and seed (training; every
    rank gets the same number of batches, padded as torch pads) or an in-order slice without
    padding (validation, so the reduced val loss is that of the whole set). A loader that
    already has a DistributedSampler, or reads an IterableDataset, is left as it is: it shards
    itself. A list of batches is split by index (training: the remainder that would give one
    rank more batches than another is dropped).
    """
    if isinstance(data, DataLoader):
        if isinstance(data.sampler, DistributedSampler) or isinstance(data.dataset, IterableDataset):
            return data
        if data.batch_size is None:
            raise ValueError(
                "a DataLoader with a custom batch_sampler cannot be sharded across ranks; "
                "give it a torch.utils.data.DistributedSampler yourself"
            )
        if train:
            shuffle = isinstance(data.sampler, RandomSampler)
            generator = data.generator or getattr(data.sampler, "generator", None)
            seed = generator.initial_seed() if generator is not None else torch.initial_seed()
            sampler: Any = DistributedSampler(data.dataset, world, rank, shuffle=shuffle, seed=seed % 2**63)
        else:
            sampler = range(rank, len(data.dataset), world)  # type: ignore[arg-type]
        extra = {"prefetch_factor": data.prefetch_factor} if data.num_workers else {}
        return DataLoader(
            data.dataset,
            batch_size=data.batch_size,
            sampler=sampler,
            num_workers=data.num_workers,
            collate_fn=data.collate_fn,
            pin_memory=data.pin_memory,
            drop_last=data.drop_last,
            timeout=data.timeout,
            worker_init_fn=data.worker_init_fn,
            persistent_workers=data.persistent_workers,
            **extra,
        )
    if hasattr(data, "__len__") and hasattr(data, "__getitem__"):
        end = len(data) // world * world if train else len(data)
        return [data[i] for i in range(rank, end, world)]
    return data  # an iterable without len(): it must yield this rank's batches itself


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if isinstance(model, DistributedDataParallel) else model


def after_load(trainer: Any, ck: dict[str, Any]) -> int:
    """Adjust a just-loaded trainer to this world size; returns the batches to skip.

    A mid-epoch checkpoint from another world size cannot continue where it stopped (the
    epoch is sharded differently): the epoch restarts from its beginning. Only rank 0 keeps
    the partial epoch loss, so the reduced sum does not count it once per rank.
    """
    world = trainer.ranks.world_size if trainer.ranks is not None else 1
    if trainer.batch_in_epoch and ck.get("world_size", 1) != world:
        from cosinetui.checkpoint import restore_rng

        done = trainer.batch_in_epoch
        trainer.step -= done
        if trainer.exp.interval == "batch":
            trainer.scheduler.last_epoch = trainer.scheduler.last_epoch - done
            trainer.scheduler._sync()
        trainer.batch_in_epoch = 0
        trainer._epoch_loss_sum, trainer._epoch_samples = 0.0, 0
        restore_rng(trainer._epoch_rng)
    if trainer.ranks is not None and not trainer.ranks.is_main:
        trainer._epoch_loss_sum, trainer._epoch_samples = 0.0, 0
    return trainer.batch_in_epoch
