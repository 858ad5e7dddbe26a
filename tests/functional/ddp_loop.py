"""A user's own DDP loop with cosinetui.track(), run by torchrun on the CPU (gloo):
``ddp_loop.py TRACE RUN_DIR``. Each rank writes, per batch, its step, optimizer LR and loss to
TRACE.<rank>; TRACK_EPOCHS sets the epochs, TRACK_SLEEP slows each batch, rank 1 raises before
logging batch TRACK_FAIL_AT."""

import os
import sys
import time

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

import cosinetui

dist.init_process_group("gloo")
rank = dist.get_rank()
torch.manual_seed(0)
model = DistributedDataParallel(nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2)))
opt = torch.optim.SGD(model.parameters(), lr=0.1)
epochs, per_epoch = int(os.environ.get("TRACK_EPOCHS", "2")), 20
sched = cosinetui.AdjustableCosineLR(opt, T_max=epochs * per_epoch)
data = torch.Generator().manual_seed(rank)  # each rank its own shard
pause = float(os.environ.get("TRACK_SLEEP", "0"))
fail_at = int(os.environ.get("TRACK_FAIL_AT", "-1"))
trace = open(f"{sys.argv[1]}.{rank}", "w", buffering=1)  # noqa: SIM115 - lives with the run

with cosinetui.track(model=model, optimizer=opt, scheduler=sched, epochs=epochs,
                     steps_per_epoch=per_epoch, run_dir=sys.argv[2], lines=False) as run:
    for _ in run.epochs():
        for _ in range(per_epoch):
            x = torch.randn(16, 8, generator=data)
            loss = nn.functional.cross_entropy(model(x), (x[:, 0] > 0).long())
            lr = opt.param_groups[0]["lr"]
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            trace.write(f"{run.step} {lr!r} {loss.item()!r}\n")
            if pause:
                time.sleep(pause)
            if rank == 1 and run.step == fail_at:
                raise RuntimeError("rank 1 failed")
            run.log_batch(loss, batch_size=16)
trace.write("end\n")
dist.destroy_process_group()
