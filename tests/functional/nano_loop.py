"""A nanoGPT-style training script written against cosinetui.track(): a tiny next-character
model on a fixed text, AdamW, a per-batch cosine schedule with warmup, evaluation each epoch.

Runs as a script (``python nano_loop.py --epochs 3``, or under ``cosinetui run``) and as a
function for in-process tests.
"""

from __future__ import annotations

import argparse
import math

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

import cosinetui
from cosinetui.events import Stop

TEXT = "the quick brown fox jumps over the lazy dog. " * 8
BLOCK = 8


class TinyGPT(nn.Module):
    def __init__(self, vocab: int, dim: int = 16) -> None:
        super().__init__()
        self.tok = nn.Embedding(vocab, dim)
        self.pos = nn.Embedding(BLOCK, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 32), nn.GELU(), nn.Dropout(0.1), nn.Linear(32, vocab))

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        x = self.tok(idx) + self.pos(torch.arange(idx.shape[1]))
        logits = self.mlp(x)
        loss = None if targets is None else F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        return logits, loss  # nanoGPT's convention: (logits, loss)


def build(seed: int = 0):
    torch.manual_seed(seed)
    chars = sorted(set(TEXT))
    ids = torch.tensor([chars.index(c) for c in TEXT])
    xs = torch.stack([ids[i : i + BLOCK] for i in range(0, len(ids) - BLOCK - 1, 3)])
    ys = torch.stack([ids[i + 1 : i + BLOCK + 1] for i in range(0, len(ids) - BLOCK - 1, 3)])
    n = len(xs) * 3 // 4
    train = DataLoader(TensorDataset(xs[:n], ys[:n]), batch_size=8, shuffle=True)
    val = DataLoader(TensorDataset(xs[n:], ys[n:]), batch_size=32)
    model = TinyGPT(len(chars))
    return model, train, val


@torch.no_grad()
def evaluate(model: nn.Module, val: DataLoader) -> float:
    model.eval()
    losses = [model(x, y)[1] for x, y in val]
    model.train()
    return torch.stack(losses).mean().item()


def train(epochs: int, run_dir=None, resume=None, lines: bool = False, scheduler: str = "cosine",
          on_batch=None, stop_at_epoch: int | None = None, fail_at_step: int | None = None,
          skip_resumed: bool = True):
    """Train; ``on_batch(run)`` is called after each log_batch (tests steer from there)."""
    model, train_data, val = build()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.1)
    if scheduler == "cosine":
        sched = cosinetui.AdjustableCosineLR(opt, T_max=epochs * len(train_data), warmup_steps=4, eta_min=1e-4)
    else:
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * len(train_data))
    with cosinetui.track(model=model, optimizer=opt, scheduler=sched, epochs=epochs,
                         steps_per_epoch=len(train_data), name="nano", run_dir=run_dir,
                         resume=resume, lines=lines) as run:
        for epoch in run.epochs():
            skip = run.skip_batches if skip_resumed else 0
            for i, (x, y) in enumerate(train_data):
                if i < skip:
                    continue
                _, loss = model(x, y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                sched.step()
                if fail_at_step is not None and run.step == fail_at_step:
                    raise RuntimeError("boom in the user's loop")
                run.log("tokens", x.numel())
                run.log_batch(loss, batch_size=len(x))
                if on_batch is not None:
                    on_batch(run)
            if stop_at_epoch is not None and epoch + 1 == stop_at_epoch:
                run.send(Stop("stopped"))
            val_loss = evaluate(model, val)
            run.log_epoch(val_loss=val_loss, metrics={"ppl": math.exp(val_loss)})
    return run, model


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    run, _ = train(args.epochs, lines=True)
    print(f"script done: {run.stop_reason or 'completed'}")
