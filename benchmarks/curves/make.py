"""Train small real models on CPU and store their loss curves as the labelled corpus that the
diagnostics are tested against (tests/data/curves/*.json, docs/diagnostics.md).

    pip install -e '.[curves]'                                     # scikit-learn
    OMP_NUM_THREADS=1 python benchmarks/curves/make.py            # every run (a few minutes)
    OMP_NUM_THREADS=1 python benchmarks/curves/make.py digits_,moons_  # runs whose name matches
    python benchmarks/curves/make.py --relabel                    # labels again, no training

Each run trains a model on one of scikit-learn's bundled data sets or a synthetic sequence
task, and records what the trainer records: per-batch losses and LRs, and per epoch the mean
train loss, the val loss, the LR of the epoch's last batch and, for classifiers, the val
accuracy. The label (which alert kinds must and must not be raised) is the intent of the run;
it is kept only when the objective criterion written next to it holds on the recorded curves
(measured numbers included), otherwise the run is dropped and the script says why.
"""

from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from sklearn import datasets
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from criteria import check  # noqa: E402

OUT = Path(__file__).resolve().parents[2] / "tests" / "data" / "curves"
TROUBLE = ("overfitting", "instability", "divergence", "nan", "plateau")


@dataclass
class Spec:
    name: str
    data: str  # digits, wine, cancer, diabetes, moons, parity, chars
    model: str  # mlp, cnn, gru, transformer, linear
    opt: str  # sgd, adam, adamw
    lr: float
    sched: str  # cosine, warmup_cosine, restarts, onecycle, constant, ramp, bump
    epochs: int
    intent: str  # healthy, overfitting, instability, divergence, nan, plateau
    batch: int = 32
    wd: float = 0.0
    hidden: int = 64
    n_train: int = 0  # 0: the data set's default split
    n_val: int = 0
    seed: int = 0
    extra: dict = field(default_factory=dict)
    note: str = ""


# ----------------------------------------------------------------------------- data


def _split(x, y, n_train, n_val, seed, default_val=0.25):
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(x))
    n_val = n_val or int(len(x) * default_val)
    n_train = n_train or len(x) - n_val
    tr, va = idx[:n_train], idx[n_train : n_train + n_val]
    return x[tr], y[tr], x[va], y[va]


def _standardize(xtr, xva):
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-8
    return (xtr - mu) / sd, (xva - mu) / sd


def load(spec: Spec):
    """(x_train, y_train, x_val, y_val, classes); classes 0 for regression."""
    s = spec
    if s.data in ("digits", "wine", "cancer"):
        loader = {"digits": datasets.load_digits, "wine": datasets.load_wine, "cancer": datasets.load_breast_cancer}
        d = loader[s.data]()
        x, y = d.data.astype(np.float32), d.target.astype(np.int64)
        xtr, ytr, xva, yva = _split(x, y, s.n_train, s.n_val, s.seed)
        if s.data == "digits":
            xtr, xva = xtr / 16.0, xva / 16.0
        else:
            xtr, xva = _standardize(xtr, xva)
        return xtr, ytr, xva, yva, int(y.max()) + 1
    if s.data == "diabetes":
        d = datasets.load_diabetes()
        x, y = d.data.astype(np.float32), d.target.astype(np.float32)
        xtr, ytr, xva, yva = _split(x, y, s.n_train, s.n_val, s.seed)
        xtr, xva = _standardize(xtr, xva)
        mu, sd = ytr.mean(), ytr.std()
        return xtr, (ytr - mu) / sd, xva, (yva - mu) / sd, 0
    if s.data == "moons":
        x, y = datasets.make_moons(1200, noise=0.3, random_state=s.seed)
        xtr, ytr, xva, yva = _split(x.astype(np.float32), y.astype(np.int64), s.n_train, s.n_val, s.seed)
        return xtr, ytr, xva, yva, 2
    rng = np.random.default_rng(s.seed)
    if s.data == "parity":
        # Is the count of ones in a random bit string above half its length? (a GRU task)
        n = (s.n_train or 1500) + (s.n_val or 500)
        x = rng.integers(0, 2, size=(n, 16)).astype(np.int64)
        y = (x.sum(1) > 8).astype(np.int64)
        return x[: n - (s.n_val or 500)], y[: n - (s.n_val or 500)], x[n - (s.n_val or 500) :], y[n - (s.n_val or 500) :], 2
    if s.data == "chars":
        # Text from a small word-level Markov chain; the model predicts the next character.
        words = ["the", "cat", "sat", "on", "a", "mat", "dog", "ran", "to", "big", "red", "hat", "and", "saw"]
        trans = rng.dirichlet(np.ones(len(words)) * 0.3, size=len(words))
        w, text = 0, []
        for _ in range(6000):
            w = rng.choice(len(words), p=trans[w])
            text.append(words[w])
        stream = " ".join(text)
        vocab = sorted(set(stream))
        ids = np.array([vocab.index(c) for c in stream], dtype=np.int64)
        ctx = 16
        starts = np.arange(0, len(ids) - ctx - 1, ctx)
        xs = np.stack([ids[i : i + ctx] for i in starts])
        ys = np.stack([ids[i + 1 : i + ctx + 1] for i in starts])
        n_val = s.n_val or len(xs) // 5
        n_train = s.n_train or len(xs) - n_val
        return xs[:n_train], ys[:n_train], xs[-n_val:], ys[-n_val:], len(vocab)
    raise ValueError(s.data)


# ----------------------------------------------------------------------------- models


class TinyCNN(nn.Module):
    def __init__(self, classes: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2), nn.Flatten(), nn.Dropout(0.25), nn.Linear(32 * 16, 64), nn.ReLU(),
            nn.Linear(64, classes),
        )

    def forward(self, x):
        return self.net(x.view(-1, 1, 8, 8))


class GRUClassifier(nn.Module):
    def __init__(self, hidden: int, classes: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(2, 8)
        self.gru = nn.GRU(8, hidden, batch_first=True)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x):
        out, _ = self.gru(self.embed(x))
        return self.head(out[:, -1])


class CharTransformer(nn.Module):
    """A nanoGPT-style block: causal self-attention and an MLP over learned positions."""

    def __init__(self, vocab: int, d: int = 32, ctx: int = 16) -> None:
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, d), nn.Embedding(ctx, d)
        layer = nn.TransformerEncoderLayer(d, 2, 2 * d, dropout=0.0, batch_first=True, norm_first=True)
        self.block = nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)
        self.head = nn.Linear(d, vocab)
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(ctx))

    def forward(self, x):
        h = self.tok(x) + self.pos(torch.arange(x.shape[1]))
        return self.head(self.block(h, mask=self.mask, is_causal=True))


def build(spec: Spec, features: int, classes: int) -> nn.Module:
    out = classes or 1
    if spec.model == "linear":
        return nn.Linear(features, out)
    if spec.model == "mlp":
        h = spec.hidden
        return nn.Sequential(nn.Linear(features, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, out))
    if spec.model == "cnn":
        return TinyCNN(classes)
    if spec.model == "gru":
        return GRUClassifier(spec.hidden, classes)
    if spec.model == "transformer":
        return CharTransformer(classes)
    raise ValueError(spec.model)


# ----------------------------------------------------------------------------- schedules


def lr_factor(spec: Spec, step: int, steps_per_epoch: int) -> float:
    """The LR multiplier at a global batch step (per-epoch schedules hold it over an epoch)."""
    e, total = step // steps_per_epoch, spec.epochs * steps_per_epoch
    floor = spec.extra.get("floor", 0.0)
    if spec.sched == "constant":
        return 1.0
    if spec.sched == "cosine":  # CosineAnnealingLR stepped per epoch
        return floor + (1 - floor) * (1 + math.cos(math.pi * e / spec.epochs)) / 2
    if spec.sched == "restarts":  # CosineAnnealingWarmRestarts(T_0) stepped per epoch
        t0 = spec.extra.get("period", 10)
        return floor + (1 - floor) * (1 + math.cos(math.pi * (e % t0) / t0)) / 2
    if spec.sched == "warmup_cosine":  # per batch: linear warmup, then cosine (HF style)
        warm = int(spec.extra.get("warmup", 0.1) * total)
        if step < warm:
            return (step + 1) / warm
        return (1 + math.cos(math.pi * (step - warm) / max(1, total - warm))) / 2
    if spec.sched == "onecycle":  # OneCycleLR's cosine phases, per batch
        up = int(0.3 * total)
        lo, end = 1 / 25, 1 / 25e4
        if step < up:
            return lo + (1 - lo) * (1 - math.cos(math.pi * step / up)) / 2
        return end + (1 - end) * (1 + math.cos(math.pi * (step - up) / (total - up))) / 2
    if spec.sched == "ramp":  # per batch: exponential ramp from lr to lr * peak (an LR test gone wrong)
        peak, length = spec.extra["peak"], spec.extra["ramp_epochs"] * steps_per_epoch
        return peak ** min(1.0, step / length)
    if spec.sched == "bump":  # a user's adjustment: cosine, then the LR multiplied at one epoch
        at, factor = spec.extra["at"], spec.extra["factor"]
        base = (1 + math.cos(math.pi * e / spec.epochs)) / 2
        if e < at:
            return base
        # Reanneal from factor x the LR at the change over the rest of the run.
        start = factor * (1 + math.cos(math.pi * at / spec.epochs)) / 2
        rest = spec.epochs - at
        return start * (1 + math.cos(math.pi * (e - at) / rest)) / 2
    raise ValueError(spec.sched)


# ----------------------------------------------------------------------------- training


def _sig(x: float, digits: int = 4) -> float | None:
    if not math.isfinite(x):
        return None
    return float(f"{x:.{digits}g}")


def train(spec: Spec) -> dict:
    torch.manual_seed(spec.seed)
    xtr, ytr, xva, yva, classes = load(spec)
    model = build(spec, xtr.shape[1] if spec.data not in ("parity", "chars") else 0, classes)
    params = model.parameters()
    if spec.opt == "sgd":
        opt = torch.optim.SGD(params, lr=spec.lr, momentum=spec.extra.get("momentum", 0.9), weight_decay=spec.wd)
    elif spec.opt == "adam":
        opt = torch.optim.Adam(params, lr=spec.lr, weight_decay=spec.wd)
    else:
        opt = torch.optim.AdamW(params, lr=spec.lr, weight_decay=spec.wd)
    xtr_t, ytr_t, xva_t, yva_t = map(torch.as_tensor, (xtr, ytr, xva, yva))
    spe = math.ceil(len(xtr) / spec.batch)
    if classes and spec.data == "chars":
        loss_fn = lambda out, y: nn.functional.cross_entropy(out.reshape(-1, classes), y.reshape(-1))  # noqa: E731
    elif classes:
        loss_fn = nn.functional.cross_entropy
    else:
        loss_fn = lambda out, y: nn.functional.mse_loss(out.squeeze(-1), y)  # noqa: E731
    gen = torch.Generator().manual_seed(spec.seed)
    losses, lrs, epochs, changes = [], [], [], []
    step = 0
    for e in range(1, spec.epochs + 1):
        model.train()
        order = torch.randperm(len(xtr_t), generator=gen)
        ep_losses = []
        for b in range(spe):
            lr = spec.lr * lr_factor(spec, step, spe)
            for g in opt.param_groups:
                g["lr"] = lr
            if spec.sched == "bump" and step == spec.extra["at"] * spe:
                changes.append({"step": spec.extra["at"], "op": "reanneal", "factor": spec.extra["factor"], "lr": lr})
            idx = order[b * spec.batch : (b + 1) * spec.batch]
            out = model(xtr_t[idx])
            loss = loss_fn(out, ytr_t[idx])
            opt.zero_grad()
            loss.backward()
            if spec.extra.get("clip"):
                nn.utils.clip_grad_norm_(model.parameters(), spec.extra["clip"])
            opt.step()
            x = float(loss.detach())
            losses.append(x)
            lrs.append(lr)
            ep_losses.append(x)
            step += 1
        model.eval()
        with torch.no_grad():
            out = model(xva_t)
            val = float(loss_fn(out, yva_t))
            acc = None
            if classes:
                pred = out.argmax(-1)
                acc = float((pred == yva_t).float().mean())
        train_loss = sum(ep_losses) / len(ep_losses)
        epochs.append({"epoch": e, "train": train_loss, "val": val, "lr": lrs[-1], "acc": acc})
        if not math.isfinite(train_loss) and e >= spec.extra.get("stop_after_nan", e):
            break  # the trainer pauses on NaN: the record ends here
    return {
        "steps_per_epoch": spe,
        "interval": "batch" if spec.sched in ("warmup_cosine", "onecycle", "ramp") else "epoch",
        "epochs": epochs,
        "losses": losses,
        "lrs": lrs,
        "changes": changes,
    }


def record(spec: Spec, run: dict, label: dict) -> dict:
    return {
        "name": spec.name,
        "setup": {
            "data": spec.data, "model": spec.model, "optimizer": spec.opt, "lr": spec.lr,
            "weight_decay": spec.wd, "schedule": spec.sched, "epochs": spec.epochs,
            "batch_size": spec.batch, "hidden": spec.hidden, "seed": spec.seed,
            **{k: v for k, v in spec.extra.items()},
        },
        "note": spec.note,
        "label": label,
        "planned_epochs": spec.epochs,
        "steps_per_epoch": run["steps_per_epoch"],
        "interval": run["interval"],
        "changes": run["changes"],
        "epochs": [
            {k: (_sig(v) if isinstance(v, float) else v) for k, v in row.items()} for row in run["epochs"]
        ],
        "losses": [_sig(x) for x in run["losses"]],
        "lrs": [_sig(x, 6) for x in run["lrs"]],
    }


def relabel() -> int:
    """Recompute the labels of the stored runs (criteria changed; plateau runs need their
    control run and keep theirs)."""
    from runs import SPECS

    for spec in SPECS:
        path = OUT / f"{spec.name}.json"
        if not path.exists() or spec.intent == "plateau":
            continue
        stored = json.loads(path.read_text())
        nan = float("nan")
        run = {
            "epochs": [{k: (nan if v is None and k != "acc" else v) for k, v in r.items()} for r in stored["epochs"]],
            "losses": [nan if x is None else x for x in stored["losses"]],
            "lrs": stored["lrs"],
        }
        ok, label = check(spec, run, None, TROUBLE)
        if not ok:
            print(f"DROP {spec.name}: {label['criterion']}")
            path.unlink()
            continue
        stored["label"] = label
        path.write_text(json.dumps(stored, separators=(",", ":")) + "\n")
        print(f"keep {spec.name}: {label['must']} {label['criterion'][:60]}")
    return 0


def main(argv: list[str]) -> int:
    from runs import SPECS

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    OUT.mkdir(parents=True, exist_ok=True)
    if argv and argv[0] == "--relabel":
        return relabel()
    pattern = argv[0] if argv else ""
    kept = dropped = 0
    for spec in SPECS:
        if pattern and not any(p in spec.name for p in pattern.split(",")):
            continue
        run = train(spec)
        control = None
        if spec.intent == "plateau":
            control = train(Spec(**{**spec.__dict__, "sched": "cosine"}))
        elif spec.intent == "stuck":
            control = train(Spec(**{**spec.__dict__, "lr": spec.lr / 20}))
        ok, label = check(spec, run, control, TROUBLE)
        path = OUT / f"{spec.name}.json"
        if not ok:
            dropped += 1
            print(f"DROP {spec.name}: {label['criterion']}")
            path.unlink(missing_ok=True)
            continue
        kept += 1
        path.write_text(json.dumps(record(spec, run, label), separators=(",", ":")) + "\n")
        print(f"keep {spec.name}: {label['criterion']}")
    print(f"{kept} kept, {dropped} dropped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
