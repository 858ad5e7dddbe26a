"""A tiny GPT-2 (built from a config: nothing is downloaded) trained by transformers.Trainer
on 2 CPU processes (run by torchrun), watched through CosineTUICallback:
``transformers_ddp.py TRACE RUN_DIR``. Each rank writes the LR of every optimizer step to
TRACE.<rank>."""

import sys
import time

import torch
import transformers

from cosinetui.integrations.transformers import CosineTUICallback
from cosinetui.schedule import AdjustableCosineLR


class Trace(transformers.TrainerCallback):
    def __init__(self, optimizer):
        self.optimizer, self.out = optimizer, None

    def on_step_begin(self, args, state, control, **kwargs):
        if self.out is None:
            rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
            self.out = open(f"{sys.argv[1]}.{rank}", "w", buffering=1)  # noqa: SIM115
        self.out.write(f"{self.optimizer.param_groups[0]['lr']!r}\n")
        time.sleep(0.01)  # slow enough for a test to steer


torch.manual_seed(0)
config = transformers.GPT2Config(vocab_size=32, n_positions=16, n_embd=16, n_layer=1, n_head=2)
model = transformers.GPT2LMHeadModel(config)
g = torch.Generator().manual_seed(1)
rows = [torch.randint(0, 32, (12,), generator=g) for _ in range(16)]
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
args = transformers.TrainingArguments(
    output_dir=f"{sys.argv[2]}-hf", num_train_epochs=1000, per_device_train_batch_size=4,
    logging_steps=5, save_strategy="no", report_to=[], use_cpu=True, disable_tqdm=True,
)
trainer = transformers.Trainer(
    model=model, args=args, train_dataset=[{"input_ids": r, "labels": r} for r in rows],
    optimizers=(opt, AdjustableCosineLR(opt, T_max=4000)),
    callbacks=[CosineTUICallback(run_dir=sys.argv[2], name="hf", lines=False), Trace(opt)],
)
trainer.train()
print(f"rank {trainer.args.process_index} left train at step {trainer.state.global_step}", flush=True)
