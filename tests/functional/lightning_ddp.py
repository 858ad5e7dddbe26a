"""A Lightning module trained with DDP on 2 CPU processes (run by torchrun), watched through
CosineTUICallback: ``lightning_ddp.py TRACE RUN_DIR``. Each rank writes the LR of every batch
it trains to TRACE.<rank>."""

import sys
import time

import lightning as L
import torch

from cosinetui.integrations.lightning import CosineTUICallback
from cosinetui.schedule import AdjustableCosineLR


class Module(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.log("train_loss", loss, on_step=True, on_epoch=True, sync_dist=True)
        return loss

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=0.05)
        sched = AdjustableCosineLR(opt, T_max=4000)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


class Trace(L.Callback):
    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if not hasattr(self, "out"):
            self.out = open(f"{sys.argv[1]}.{trainer.global_rank}", "w", buffering=1)  # noqa: SIM115
        self.out.write(f"{trainer.optimizers[0].param_groups[0]['lr']!r}\n")
        time.sleep(0.01)  # slow enough for a test to steer


torch.manual_seed(0)
x = torch.randn(64, 4)
loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, x.sum(1, keepdim=True)), batch_size=8)
trainer = L.Trainer(max_epochs=1000, accelerator="cpu", devices=2, strategy="ddp", logger=False,
                    enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                    callbacks=[CosineTUICallback(run_dir=sys.argv[2], name="pl", lines=False), Trace()])
trainer.fit(Module(), loader)
print(f"rank {trainer.global_rank} left fit at epoch {trainer.current_epoch}", flush=True)
