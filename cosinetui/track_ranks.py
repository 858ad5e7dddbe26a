"""``track()`` in a loop run by several processes (the user's own DDP loop under ``torchrun``):
commands reach every rank at the same step.

Rank 0 owns the run: its directory, metrics log, checkpoints and control socket. The other
ranks record nothing. Every ``every`` batches (calls of ``log_batch`` or ``poll``, which every
rank makes in the same order), at the same step on every rank, rank 0
broadcasts the commands it received since the last check (and whether the run is paused or
stopping, and the step of the next check); every rank then applies them: the same schedule
adjustment to its own scheduler, a stop after the same batch. One small broadcast every
``every`` batches, sized so that checks come about ``CHECK_SECONDS`` apart, is the only
collective cosinetui adds besides one all-reduce of the train loss per epoch.

A pause holds every rank outside the training collectives: rank 0 waits for the next command
at most ``HEARTBEAT`` seconds at a time and broadcasts "still paused" in between, so a pause
may last hours without a collective timing out.
"""

from __future__ import annotations

import time
from typing import Any

import torch
import torch.distributed as dist

from cosinetui.events import AdjustSchedule, command_from_json, to_json

CHECK_SECONDS = 0.1  # target time between two checks
HEARTBEAT = 5.0  # seconds between broadcasts while paused (well below any collective timeout)
MIN_EVERY, MAX_EVERY, FIRST_EVERY = 2, 256, 8


def current() -> RankSync | None:
    """The process group's view for a track() run, or None for a single process."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return None
    return RankSync(dist.get_rank(), dist.get_world_size())


class RankSync:
    def __init__(self, rank: int, world: int) -> None:
        self.rank, self.world = rank, world
        # Checks are counted in calls of log_batch and poll, which every rank makes in the
        # same order (a Hugging Face callback polls each step and logs every few).
        self.ticks = 0
        self.next_check = FIRST_EVERY
        self._last = (0, time.monotonic())  # ticks and time of the previous check

    @property
    def leader(self) -> bool:
        return self.rank == 0

    def tick(self) -> bool:
        """Count a call; True when this one is a check (the same call on every rank)."""
        self.ticks += 1
        return self.ticks >= self.next_check

    def _exchange(self, message: dict[str, Any] | None) -> dict[str, Any]:
        box = [message]
        dist.broadcast_object_list(box, src=0)
        got = box[0]
        assert isinstance(got, dict)
        self.next_check = got["next"]
        return got

    def _next(self) -> int:
        """Rank 0: the tick of the next check, from the time a tick took since the last."""
        last_tick, last_time = self._last
        now, ticks = time.monotonic(), self.ticks
        self._last = (ticks, now)
        per_tick = (now - last_time) / max(ticks - last_tick, 1)
        every = int(CHECK_SECONDS / per_tick) if per_tick > 0 else MAX_EVERY
        return ticks + max(MIN_EVERY, min(MAX_EVERY, every))

    # ------------------------------------------------------------------ rank 0

    def lead(self, run: Any) -> None:
        """Apply what rank 0 received, tell the other ranks, and hold them while paused."""
        while True:
            commands = run._apply_queued()
            paused = run._paused and run._pending_stop is None
            self._exchange({
                "commands": [to_json(c) for c in commands if isinstance(c, AdjustSchedule)],
                "stop": run._pending_stop, "paused": paused, "next": self._next(),
            })
            if not paused:
                return
            run.recorder.wait_for_command(HEARTBEAT)

    # ------------------------------------------------------------------ other ranks

    def follow(self, run: Any) -> str | None:
        """Apply what rank 0 says; return the stop reason when the run must stop."""
        while True:
            message = self._exchange(None)
            for raw in message["commands"]:
                cmd = command_from_json(raw)
                try:  # rank 0 applied or refused it on the same schedule: the same outcome
                    run.scheduler.apply(cmd.op, dict(cmd.args))
                except (ValueError, TypeError, AttributeError):
                    pass
            if message["stop"] is not None:
                return message["stop"]
            if not message["paused"]:
                return None

    # ------------------------------------------------------------------ epochs

    def epoch_loss(self, total: float, weight: float, device: torch.device) -> tuple[float, float]:
        """The epoch's loss sum and sample count over every rank (one all-reduce)."""
        both = torch.tensor([total, weight], dtype=torch.float64, device=device)
        dist.all_reduce(both)
        return float(both[0]), float(both[1])

    def finished(self) -> None:
        """Every rank waits here for rank 0's last checkpoint and record: a rank that left
        at once could tear the process group down (or make the launcher end rank 0) while
        rank 0 is still writing. Only after a clean end, which every rank reaches together."""
        dist.barrier()
