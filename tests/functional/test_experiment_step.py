"""The Experiment's batch step against bare torch loops: clipping, accumulation, train_step
return forms, a train_step that calls backward() itself, max_steps, best.pt and the seed."""

from __future__ import annotations

import copy
import math
import sys

import pytest
import torch
from torch import nn

from cosinetui import Experiment, store
from cosinetui.events import BatchChunk, CheckpointWritten, EpochEnd, Failed, Finished, RunStarted
from cosinetui.experiment import ExperimentError, load_experiment
from cosinetui.history import History
from cosinetui.schedule import AdjustableCosineLR
from cosinetui.trainer import Trainer, TrainerOptions


def batches(n: int, size: int = 16, seed: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        x = torch.randn(size, 8, generator=g)
        out.append((x * 3, (x[:, 0] + 0.5 * x[:, 1] > 0).long()))
    return out


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))


def sgd(params):
    return torch.optim.SGD(params, lr=0.5, momentum=0.9)


def train(exp: Experiment, run_dir, on_host: bool = True) -> tuple[list, Trainer]:
    events: list = []
    trainer = Trainer(exp, TrainerOptions(run_dir=run_dir, device="cpu"), [events.append])
    trainer._on_host = on_host  # False: the CUDA/MPS path (values kept on the device), on the CPU
    trainer.run()
    assert not isinstance(events[-1], Failed), events[-1].traceback
    return events, trainer


def per_batch(events, name: str | None = None) -> list[float]:
    chunks = [e for e in events if isinstance(e, BatchChunk)]
    if name is None:
        return [v for c in chunks for v in c.losses]
    return [v for c in chunks for v in c.scalars.get(name, [math.nan] * len(c.losses))]


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def loss_fn(out, y):
    return nn.functional.cross_entropy(out, y)


# --------------------------------------------------------------------------- clipping


@pytest.mark.parametrize("on_host", [True, False], ids=["cpu-path", "device-path"])
def test_max_grad_norm_gives_the_weights_of_clip_grad_norm_in_a_bare_loop(tmp_path, on_host):
    data = batches(6)
    bare = model()
    exp = Experiment(model=copy.deepcopy(bare), train_data=data, optimizer=sgd, epochs=1, max_grad_norm=0.25)
    events, trainer = train(exp, tmp_path, on_host)

    opt = sgd(bare.parameters())
    norms = []
    for x, y in data:
        opt.zero_grad()
        loss_fn(bare(x), y).backward()
        norms.append(torch.nn.utils.clip_grad_norm_(bare.parameters(), 0.25).item())
        opt.step()

    assert same_weights(trainer.model, bare)
    assert min(norms) > 0.25  # the clip was active at every step
    assert per_batch(events, "grad_norm") == norms
    # The history keeps the norms by step (where the diagnostics read batch data), and the
    # epoch record their mean; a replayed log gives the same.
    assert list(trainer.history.scalar("grad_norm")) == per_batch(events, "grad_norm")
    epoch = next(e for e in events if isinstance(e, EpochEnd))
    assert epoch.train_metrics["grad_norm"] == pytest.approx(sum(norms) / len(norms))
    replay = History.from_events(store.read_log(tmp_path).events)
    assert list(replay.scalar("grad_norm")) == list(trainer.history.scalar("grad_norm"))
    assert replay.epochs[0].train_metrics == epoch.train_metrics


def test_no_grad_norm_is_recorded_without_max_grad_norm(tmp_path):
    events, trainer = train(Experiment(model=model(), train_data=batches(3), epochs=1), tmp_path)
    assert all(not e.scalars for e in events if isinstance(e, BatchChunk))
    assert trainer.history.scalar("grad_norm") == ()
    assert '"scalars"' not in (tmp_path / store.METRICS).read_text()


class InfGrad(torch.autograd.Function):
    """Identity forward; an infinite gradient backward (an overflow in a finite loss)."""

    @staticmethod
    def forward(ctx, x):  # noqa: ANN001, ANN205
        return x.clone()

    @staticmethod
    def backward(ctx, grad):  # noqa: ANN001, ANN205
        return grad * math.inf


@pytest.mark.parametrize("on_host", [True, False], ids=["cpu-path", "device-path"])
def test_a_non_finite_gradient_norm_skips_the_step(tmp_path, on_host):
    data = batches(4)
    calls = []

    def step(m, b):
        calls.append(1)
        out = m(b[0])
        return loss_fn(InfGrad.apply(out) if len(calls) == 2 else out, b[1])

    bare = model()
    events, trainer = train(
        Experiment(model=copy.deepcopy(bare), train_data=data, optimizer=sgd, epochs=1, train_step=step,
                   max_grad_norm=1.0), tmp_path, on_host,
    )
    opt = sgd(bare.parameters())
    for i, (x, y) in enumerate(data):
        if i == 1:
            continue  # the skipped step: no update, no momentum
        opt.zero_grad()
        loss_fn(bare(x), y).backward()
        torch.nn.utils.clip_grad_norm_(bare.parameters(), 1.0)
        opt.step()
    norms = per_batch(events, "grad_norm")
    assert math.isfinite(per_batch(events)[1]) and not math.isfinite(norms[1])
    if on_host:
        assert same_weights(trainer.model, bare)
    else:  # the device path zeroes the gradients instead: SGD's momentum still moves
        assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


# --------------------------------------------------------------------------- accumulation


@pytest.mark.parametrize(("n", "on_host"), [(8, True), (10, True), (10, False)], ids=["whole", "leftover", "device"])
def test_accumulation_equals_a_bare_accumulation_loop(tmp_path, n, on_host):
    """k=4: one optimizer and scheduler step per 4 batches, each loss divided by 4; a pass
    that ends inside a window steps on the mean gradient of the batches it has (10 = 4+4+2)."""
    k, epochs = 4, 2
    data = batches(n)
    bare = model()
    exp = Experiment(
        model=copy.deepcopy(bare), train_data=data, optimizer=sgd, epochs=epochs, accumulate=k,
        interval="batch", max_grad_norm=math.inf,
    )
    events, trainer = train(exp, tmp_path, on_host)

    steps_per_epoch = -(-n // k)
    opt = sgd(bare.parameters())
    sched = AdjustableCosineLR(opt, T_max=epochs * steps_per_epoch)
    lrs = []
    for _ in range(epochs):
        for start in range(0, n, k):
            window = data[start : start + k]
            opt.zero_grad()
            for x, y in window:
                lrs.append(opt.param_groups[0]["lr"])
                (loss_fn(bare(x), y) / len(window)).backward()
            opt.step()
            sched.step()

    assert same_weights(trainer.model, bare)
    start = next(e for e in events if isinstance(e, RunStarted))
    assert trainer.scheduler.schedule.config["T_max"] == epochs * steps_per_epoch
    assert [lr for e in events if isinstance(e, BatchChunk) for lr in e.lrs] == lrs
    assert trainer.optimizer_steps == epochs * steps_per_epoch
    # The norm is recorded at the batch that ends each window, NaN at the others.
    norms = per_batch(events, "grad_norm")
    ends = {i for i in range(epochs * n) if (i % n + 1) % k == 0 or i % n == n - 1}
    assert all(math.isfinite(v) == (i in ends) for i, v in enumerate(norms))


def test_accumulation_over_an_iterable_without_len_steps_the_leftover_window(tmp_path):
    data = batches(6)

    class NoLen:
        def __iter__(self):
            return iter(data)

    a, ta = train(Experiment(model=model(), train_data=NoLen(), optimizer=sgd, epochs=2, accumulate=4,
                             max_grad_norm=math.inf), tmp_path / "a")
    b, tb = train(Experiment(model=model(), train_data=data, optimizer=sgd, epochs=2, accumulate=4,
                             max_grad_norm=math.inf), tmp_path / "b")
    assert same_weights(ta.model, tb.model)
    assert per_batch(a, "grad_norm") == pytest.approx(per_batch(b, "grad_norm"), nan_ok=True)
    assert ta.optimizer_steps == tb.optimizer_steps == 4


# --------------------------------------------------------------------------- train_step forms


def _forms():
    def plain(m, b):
        return loss_fn(m(b[0]), b[1])

    def pair(m, b):
        out = m(b[0])
        return loss_fn(out, b[1]), out

    def nanogpt(m, b):
        out = m(b[0])
        return out, loss_fn(out, b[1])

    def as_dict(m, b):
        out = m(b[0])
        return {"loss": loss_fn(out, b[1]), "logits": out, "acc": (out.argmax(-1) == b[1]).float().mean(), "n": 16}

    def backward_inside(m, b):
        loss = loss_fn(m(b[0]), b[1])
        loss.backward()
        return loss

    def backward_inside_float(m, b):
        loss = loss_fn(m(b[0]), b[1])
        loss.backward()
        return loss.item()

    return [plain, pair, nanogpt, as_dict, backward_inside, backward_inside_float]


@pytest.mark.parametrize("form", _forms(), ids=lambda f: f.__name__)
def test_train_step_return_forms_train_the_same_weights(tmp_path, form):
    data = batches(4)
    ref, tref = train(Experiment(model=model(), train_data=data, optimizer=sgd, epochs=2), tmp_path / "ref")
    events, trainer = train(
        Experiment(model=model(), train_data=data, optimizer=sgd, epochs=2, train_step=form), tmp_path / "x"
    )
    assert same_weights(trainer.model, tref.model)
    assert per_batch(events) == pytest.approx(per_batch(ref))
    if form.__name__ == "as_dict":  # its other single numbers are per-batch scalars
        accs = per_batch(events, "acc")
        assert len(accs) == 8 and all(0 <= a <= 1 for a in accs) and per_batch(events, "n") == [16.0] * 8
        epochs = [e for e in events if isinstance(e, EpochEnd)]
        assert epochs[0].train_metrics["acc"] == pytest.approx(sum(accs[:4]) / 4)
        assert "logits" not in epochs[0].train_metrics


@pytest.mark.parametrize(
    ("step", "message"),
    [
        (lambda m, b: loss_fn(m(b[0]), b[1]).item(), "train_step returned a number and no gradients"),
        (lambda m, b: loss_fn(m(b[0]), b[1]).detach(), "returned a tensor that does not require grad"),
        (lambda m, b: None, "must return the loss tensor, a (loss, outputs) pair, or a dict"),
        (lambda m, b: {"logits": m(b[0])}, "dict with keys ['logits']"),
        (lambda m, b: m(b[0]), "the loss holding one number; got (16, 2)"),
    ],
    ids=["item", "detached", "none", "dict-without-loss", "logits"],
)
def test_a_wrong_train_step_return_fails_with_what_it_must_return(tmp_path, step, message):
    events = []
    Trainer(Experiment(model=model(), train_data=batches(2), epochs=1, train_step=step),
            TrainerOptions(run_dir=tmp_path), [events.append]).run()
    assert isinstance(events[-1], Failed)
    assert events[-1].error.startswith("ExperimentError: ") and message in events[-1].error


def test_backward_inside_train_step_with_accumulation_is_refused_with_what_to_return(tmp_path):
    def step(m, b):
        loss = loss_fn(m(b[0]), b[1])
        loss.backward()
        return loss

    events = []
    Trainer(Experiment(model=model(), train_data=batches(4), epochs=1, train_step=step, accumulate=2),
            TrainerOptions(run_dir=tmp_path), [events.append]).run()
    assert isinstance(events[-1], Failed)
    assert "calls backward() itself; with accumulate > 1 return the loss instead" in events[-1].error


# --------------------------------------------------------------------------- max_steps


def test_max_steps_ends_the_run_mid_epoch_and_sets_the_schedule(tmp_path):
    events, trainer = train(
        Experiment(model=model(), train_data=batches(8), epochs=99, max_steps=10, interval="batch", warmup=2),
        tmp_path,
    )
    start = events[0]
    assert start.epochs == 2  # the passes 10 steps need, not the 99 asked
    assert trainer.scheduler.schedule.config["T_max"] == 10
    assert [e.step for e in events if isinstance(e, EpochEnd)] == [8, 10]
    assert isinstance(events[-1], Finished) and events[-1].reason == "completed" and events[-1].step == 10
    assert trainer.optimizer_steps == 10


def test_max_steps_over_an_iterable_without_len_counts_optimizer_steps(tmp_path):
    """nanoGPT's shape: each pass draws fresh batches; the run is max_steps iterations of
    accumulate batches each, and epochs only says how many passes to expect."""
    g = torch.Generator().manual_seed(3)

    class Stream:
        def __iter__(self):
            for _ in range(5):
                x = torch.randn(4, 8, generator=g)
                yield x, (x[:, 0] > 0).long()

    events, trainer = train(
        Experiment(model=model(), train_data=Stream(), epochs=3, max_steps=6, accumulate=2, interval="batch"),
        tmp_path,
    )
    assert events[0].epochs == 3 and events[0].steps_per_epoch == 0
    assert trainer.scheduler.schedule.config["T_max"] == 6
    # 5 batches a pass in windows of 2+2+1 (the leftover steps at the pass's end): 3 steps a
    # pass, so 6 steps take 2 passes and 10 batches.
    assert trainer.optimizer_steps == 6 and trainer.step == 10
    assert [e.epoch for e in events if isinstance(e, EpochEnd)] == [1, 2]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("max_grad_norm", 0, "max_grad_norm must be a number > 0"),
        ("max_grad_norm", "1", "max_grad_norm must be a number > 0"),
        ("accumulate", 0, "accumulate must be an integer >= 1"),
        ("max_steps", 0, "max_steps must be a positive integer"),
    ],
)
def test_bad_step_fields_are_named(field, value, message):
    with pytest.raises(ExperimentError, match=message):
        Experiment(model=model(), train_data=batches(1), **{field: value}).validate()


def test_interval_batch_without_len_asks_for_max_steps():
    with pytest.raises(ExperimentError, match="or max_steps"):
        Experiment(model=model(), train_data=iter(batches(2)), interval="batch").validate()


# --------------------------------------------------------------------------- best.pt


def test_best_pt_holds_the_weights_of_the_best_val_epoch(tmp_path):
    vals = iter([0.5, 0.3, 0.4, 0.6])

    def eval_step(m, b):  # one val batch: each epoch's validation takes the next value
        return torch.tensor(next(vals))

    snapshots = {}
    events: list = []

    def listener(event):
        events.append(event)
        if isinstance(event, EpochEnd):
            snapshots[event.epoch] = copy.deepcopy(trainer.model.state_dict())

    exp = Experiment(model=model(), train_data=batches(3), val_data=batches(1, seed=9), epochs=4, eval_step=eval_step)
    trainer = Trainer(exp, TrainerOptions(run_dir=tmp_path), [listener])
    trainer.run()
    assert isinstance(events[-1], Finished)
    assert [e.val_loss for e in events if isinstance(e, EpochEnd)] == pytest.approx([0.5, 0.3, 0.4, 0.6])
    best = torch.load(tmp_path / store.BEST, weights_only=True)
    assert best["epoch"] == 2 and best["val_loss"] == pytest.approx(0.3)
    assert all(torch.equal(best["model"][k], snapshots[2][k]) for k in snapshots[2])
    assert not all(torch.equal(best["model"][k], snapshots[4][k]) for k in snapshots[4])
    written = [e for e in events if isinstance(e, CheckpointWritten) and e.reason == "best"]
    assert [e.epoch for e in written] == [1, 2]
    history = History.from_events(store.read_log(tmp_path).events)
    assert history.best_weights.epoch == 2 and history.last_checkpoint.reason == "finished"
    model().load_state_dict(best["model"])  # a state dict for the model, as the docs say


# --------------------------------------------------------------------------- seed


EXPERIMENT_FILE = """
import torch
from torch import nn
from cosinetui import Experiment

CALLS = []

def experiment():
    CALLS.append(torch.initial_seed())
    model = nn.Linear(3, 2)
    data = [(torch.randn(4, 3), torch.tensor([0, 1, 0, 1]))]
    return Experiment(model=model, train_data=data, epochs=1, seed={seed})
"""


def _load(tmp_path, seed_field, seed_option=None):
    path = tmp_path / f"exp_{len(list(tmp_path.iterdir()))}.py"
    path.write_text(EXPERIMENT_FILE.format(seed=seed_field))
    exp = load_experiment(str(path), seed=seed_option)
    return exp, sys.modules[f"cosinetui_user_{path.stem}"].CALLS


def test_the_experiment_seed_decides_the_model_initialisation(tmp_path):
    a, calls_a = _load(tmp_path, 1)
    b, _ = _load(tmp_path, 1)
    c, _ = _load(tmp_path, 2)
    assert torch.equal(a.model.weight, b.model.weight) and not torch.equal(a.model.weight, c.model.weight)
    assert a.seed == 1 and calls_a == [0, 1]  # built under the default seed, then again under its own
    torch.manual_seed(1)
    assert torch.equal(a.model.weight, nn.Linear(3, 2).weight)  # as `torch.manual_seed(1)` first would


def test_the_default_seed_builds_once_and_the_seed_option_wins(tmp_path):
    d, calls = _load(tmp_path, 0)
    assert calls == [0] and d.seed == 0
    e, calls = _load(tmp_path, 1, seed_option=5)
    assert calls == [5] and e.with_overrides(seed=5).seed == 5  # as `cosinetui run --seed 5` does
    torch.manual_seed(5)
    assert torch.equal(e.model.weight, nn.Linear(3, 2).weight)


def test_seed_none_gives_fresh_weights(tmp_path):
    a, _ = _load(tmp_path, None)
    b, _ = _load(tmp_path, None)
    assert a.seed is None and not torch.equal(a.model.weight, b.model.weight)


# --------------------------------------------------------------------------- host syncs


def test_the_device_path_reads_no_value_per_batch(tmp_path, monkeypatch):
    """On CUDA and MPS the losses, grad norms and a dict's numbers stay on the device until a
    chunk is copied: forced on the CPU, the reads of tensor values (item, tolist, bool, float)
    do not grow with the number of batches."""
    import cosinetui.trainer as trainer_module

    monkeypatch.setattr(trainer_module, "CHUNK_SECONDS", 1e9)  # one chunk per epoch

    def step(m, b):
        out = m(b[0])
        return {"loss": loss_fn(out, b[1]), "acc": (out.argmax(-1) == b[1]).float().mean()}

    def reads(n_batches: int, run_dir) -> int:
        counts = {"n": 0}
        originals = {name: getattr(torch.Tensor, name) for name in ("item", "tolist", "__bool__", "__float__")}

        def counting(fn):
            def wrapper(*args, **kwargs):
                counts["n"] += 1
                return fn(*args, **kwargs)

            return wrapper

        exp = Experiment(model=model(), train_data=batches(n_batches), optimizer=sgd, epochs=2, train_step=step,
                         max_grad_norm=1.0, accumulate=2, interval="batch")
        for name, fn in originals.items():
            monkeypatch.setattr(torch.Tensor, name, counting(fn))
        try:
            events, _ = train(exp, run_dir, on_host=False)
        finally:
            for name, fn in originals.items():
                monkeypatch.setattr(torch.Tensor, name, fn)
        assert len(per_batch(events, "grad_norm")) == 2 * n_batches
        return counts["n"]

    assert reads(4, tmp_path / "a") == reads(12, tmp_path / "b")


def test_an_optimizer_instance_trains_as_its_factory_does(tmp_path):
    # What users write for torch's own schedulers: the optimizer built over model.parameters().
    made, given = model(), model()
    exp = Experiment(model=made, train_data=batches(6), epochs=3, loss_fn=loss_fn, optimizer=sgd)
    train(exp, tmp_path / "factory")
    instance = torch.optim.SGD(given.parameters(), lr=0.5, momentum=0.9)
    exp = Experiment(model=given, train_data=batches(6), epochs=3, loss_fn=loss_fn, optimizer=instance)
    exp.check_floor(exp.make_optimizer())  # as `cosinetui run` checks it before training
    events, trainer = train(exp, tmp_path / "instance")
    assert trainer.optimizer is instance and same_weights(made, given)
    assert isinstance(events[-1], Finished) and events[-1].reason == "completed"


def test_a_wrong_optimizer_is_named_not_a_traceback():
    foreign = torch.optim.SGD(model().parameters(), lr=0.1)
    with pytest.raises(ExperimentError, match="not the model's"):
        Experiment(model=model(), train_data=batches(2), optimizer=foreign).make_optimizer()
    with pytest.raises(ExperimentError, match="optimizer must be a torch.optim.Optimizer"):
        Experiment(model=model(), train_data=batches(2), optimizer="adam").validate()
    with pytest.raises(ExperimentError, match="factory raised TypeError"):
        Experiment(model=model(), train_data=batches(2), optimizer=lambda: None).make_optimizer()
