"""Rank logic without processes: data sharding, the command board (two ranks stepping in
lockstep over one in-memory store), and which rank a failed launch blames."""

from __future__ import annotations

import queue
import threading
import types

import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from cosinetui import distributed
from cosinetui.events import AdjustSchedule, Pause, Resume, Stop, command_from_json


def test_a_list_of_batches_is_split_by_index_with_equal_counts_for_training():
    batches = list(range(11))
    train = [distributed.shard_data(batches, r, 3, train=True) for r in range(3)]
    assert train == [[0, 3, 6], [1, 4, 7], [2, 5, 8]]  # 9, 10 would give ranks unequal counts
    val = [distributed.shard_data(batches, r, 3, train=False) for r in range(3)]
    assert sorted(sum(val, [])) == batches  # validation keeps every batch


def test_a_loader_gets_a_distributed_sampler_that_keeps_its_shuffle_and_seed():
    ds = TensorDataset(torch.arange(20.0))
    loader = DataLoader(ds, batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(7))
    shards = [distributed.shard_data(loader, r, 2, train=True) for r in range(2)]
    for shard in shards:
        assert isinstance(shard.sampler, DistributedSampler) and shard.sampler.shuffle
        assert shard.sampler.seed == 7 and shard.batch_size == 4 and len(shard) == 3

    def epoch(e):
        for shard in shards:
            distributed.Ranks.set_epoch(shard, e)
        return [torch.cat([b[0] for b in shard]).tolist() for shard in shards]

    first, second = epoch(0), epoch(1)
    assert sorted(first[0] + first[1]) == list(range(20)) and first != second
    assert epoch(0) == first  # the order is a function of seed and epoch
    plain = distributed.shard_data(DataLoader(ds, batch_size=4), 0, 2, train=True)
    assert not plain.sampler.shuffle


def test_validation_shards_are_not_padded():
    ds = TensorDataset(torch.arange(7.0))
    shards = [distributed.shard_data(DataLoader(ds, batch_size=2), r, 2, train=False) for r in range(2)]
    seen = [x for shard in shards for b in shard for x in b[0].tolist()]
    assert sorted(seen) == list(range(7))


def test_a_loader_that_shards_itself_is_left_alone():
    ds = TensorDataset(torch.arange(8.0))
    loader = DataLoader(ds, batch_size=2, sampler=DistributedSampler(ds, 2, 0))
    assert distributed.shard_data(loader, 0, 2, train=True) is loader


class FakeStore:
    """The part of torch's TCPStore the command board uses, shared by threads."""

    def __init__(self):
        self.data, self.cond = {}, threading.Condition()

    def add(self, key, n):
        with self.cond:
            self.data[key] = self.data.get(key, 0) + n
            self.cond.notify_all()
            return self.data[key]

    def set(self, key, value):
        with self.cond:
            self.data[key] = value
            self.cond.notify_all()

    def get(self, key):
        with self.cond:
            self.cond.wait_for(lambda: key in self.data)
            return self.data[key]

    def wait(self, keys, timeout):
        with self.cond:
            if not self.cond.wait_for(lambda: all(k in self.data for k in keys), timeout.total_seconds()):
                raise TimeoutError


class FakeTrainer:
    """What the command board touches of a trainer; records the step of each command."""

    def __init__(self):
        self._commands, self._wake = queue.SimpleQueue(), threading.Event()
        self._paused, self._stop_reason, self.step = False, None, 0
        self.applied = []
        self.log = types.SimpleNamespace(flush=lambda: None)

    def send(self, cmd):
        self._commands.put(cmd)
        self._wake.set()

    def _apply(self, cmd, epoch):
        self.applied.append((self.step, cmd))
        if isinstance(cmd, Pause):
            self._paused = True
        elif isinstance(cmd, Resume):
            self._paused = False
        elif isinstance(cmd, Stop):
            self._stop_reason = cmd.reason


@pytest.fixture(autouse=True)
def _short_intervals(monkeypatch):
    monkeypatch.setattr(distributed, "MAX_EVERY", 8)


def lockstep(n_steps, on_step):
    """Two ranks, each step only after both finished the previous one (as DDP's all-reduce
    makes them); ``on_step(rank, trainer)`` runs before each rank's batch."""
    store = FakeStore()
    ranks = [distributed.Ranks(r, 2, r, "gloo", torch.device("cpu"), store) for r in range(2)]
    # These batches take no time: rank 0 widens the check interval to its maximum, by message.
    trainers = [FakeTrainer(), FakeTrainer()]
    barrier = threading.Barrier(2)
    errors = []

    def body(r):
        try:
            for step in range(n_steps):
                trainers[r].step = step
                on_step(r, trainers[r])
                if ranks[r].between_batches(trainers[r], 1):
                    return
                barrier.wait(timeout=30)  # the batch's all-reduce
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=body, args=(r,)) for r in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    return trainers


def test_commands_apply_on_both_ranks_at_the_same_step():
    def on_step(rank, trainer):
        if rank == 0 and trainer.step in (3, 10, 11):
            trainer.send(AdjustSchedule("reanneal", {"steps": trainer.step}))
        if rank == 0 and trainer.step == 30:
            trainer.send(Stop("stopped"))

    t0, t1 = lockstep(200, on_step)
    assert [s for s, _ in t0.applied] == [s for s, _ in t1.applied]
    assert [c for _, c in t0.applied] == [c for _, c in t1.applied]
    assert [c.args["steps"] for _, c in t0.applied[:3]] == [3, 10, 11]  # in the order sent
    assert all(s > 3 for s, _ in t0.applied)
    assert isinstance(t0.applied[-1][1], Stop) and t0._stop_reason == t1._stop_reason == "stopped"


def test_a_pause_holds_every_rank_at_one_step_until_resumed(monkeypatch):
    held = {0: threading.Event(), 1: threading.Event()}
    original = distributed.Ranks._wait

    def waiting(self, trainer):
        held[self.rank].set()
        original(self, trainer)

    monkeypatch.setattr(distributed.Ranks, "_wait", waiting)

    def on_step(rank, trainer):
        if rank == 0 and trainer.step == 5:
            trainer.send(Pause())

            def resume_once_both_are_held():
                held[0].wait(30)
                held[1].wait(30)
                trainer.send(Resume())  # as the control socket would

            threading.Thread(target=resume_once_both_are_held, daemon=True).start()

    t0, t1 = lockstep(40, on_step)
    assert held[0].is_set() and held[1].is_set()
    assert [(s, type(c)) for s, c in t0.applied] == [(s, type(c)) for s, c in t1.applied]
    (pause_step, _), (resume_step, _) = t0.applied
    assert pause_step == resume_step > 5  # nothing trained in between, on either rank


def test_a_command_read_too_late_fails_instead_of_drifting():
    store = FakeStore()
    late = distributed.Ranks(1, 2, 1, "gloo", torch.device("cpu"), store)
    trainer = FakeTrainer()
    trainer.step = 0
    late.between_batches(trainer, 1)  # checks at step 0, next at FIRST_EVERY
    store.add("n", 1)
    store.set("m1", b'{"at": 0, "cmd": {"type": "pause"}}')
    trainer.step = late.next_check
    with pytest.raises(RuntimeError, match="no longer agree"):
        late.between_batches(trainer, 1)


def test_the_blamed_rank_is_the_one_killed_not_those_stopped_after_it():
    def failure(code, ts):
        return types.SimpleNamespace(exitcode=code, timestamp=ts)

    from cosinetui.ranks import root_failure

    assert root_failure({0: failure(143, 5), 1: failure(-9, 6)})[0] == 1
    assert root_failure({0: failure(1, 5), 1: failure(-15, 5)})[0] == 0
    assert root_failure({0: failure(1, 6), 1: failure(1, 5)})[0] == 1
    assert command_from_json({"type": "pause"}) == Pause()
