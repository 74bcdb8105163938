#!/usr/bin/env python3
"""Writes what torch and PyTorch Lightning compute for param groups, weight averaging and
fine-tuning, which tests/param_groups.rs, tests/weight_averaging.rs and tests/finetuning.rs compare
burn-lightning with.

Run it through `bash scripts/optim_fixtures.sh`, which makes the virtual environment with the
pinned torch and pytorch-lightning. Every run starts from weights and data drawn here with a fixed
seed and written into the fixture (Linear weights as torch holds them, `[out, in]`), on CPU in
float32, without shuffling, so that the Rust side trains the same model on the same batches. It
writes, under tests/fixtures/ (or --output-dir):

    adamw_groups.json         torch's AdamW with two param groups (minGPT's split: Linear weights
                              decayed with 0.1, biases and LayerNorm parameters not, at twice the
                              rate), eps and weight decay set explicitly (burn's AdamW defaults
                              differ from torch's), under a StepLR stepped every optimizer step:
                              the parameters and both groups' rates after every step; and the
                              `LearningRateMonitor(log_weight_decay=True)` values Lightning logs for
                              the same optimizer (its keys `lr-AdamW/pg1`, ...)
    cosine_groups.json        the same AdamW and groups under a cosine decay to a tenth of each
                              group's own rate over 5 steps (torch's `LambdaLR` with the cosine
                              factor, which is burn's `CosineAnnealingLrScheduler` with
                              `min_lr = lr / 10` built per group): the parameters and both groups'
                              rates after every step
    ema_averaging.json        Lightning's `EMAWeightAveraging(decay=0.9)` on an MLP trained with SGD:
                              the validation loss of each epoch (computed with the averaged weights),
                              the weights `fit` ends with, and the last epoch's checkpoint's
                              `state_dict` (the average) and `current_model_state` (the trained
                              weights)
    swa.json                  Lightning's `StochasticWeightAveraging` on an MLP with a BatchNorm1d:
                              the rate of each epoch (SWALR's annealing), the epochs run (one more
                              for the BatchNorm statistics), the global step, the average, and the
                              final weights and running statistics
    backbone_finetuning.json  Lightning's `BackboneFinetuning` of a frozen backbone unfrozen at
                              epoch 1: each epoch's rates of both param groups, what
                              `LearningRateMonitor` logged under which key (`lr-SGD`, then
                              `lr-SGD/pg1` and `lr-SGD/pg2`), and the final weights
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import pathlib
import platform
import tempfile

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import (
    BackboneFinetuning,
    EMAWeightAveraging,
    LearningRateMonitor,
    ModelCheckpoint,
    StochasticWeightAveraging,
)
from pytorch_lightning.loggers import CSVLogger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

SEED = 2024


def to_list(t: torch.Tensor):
    return t.detach().cpu().tolist()


def named(module: nn.Module) -> dict:
    """Parameters and buffers by name (`state_dict` without `num_batches_tracked`)."""
    return {k: to_list(v) for k, v in module.state_dict().items() if not k.endswith("num_batches_tracked")}


def data(n: int, d_in: int, d_out: int, generator: torch.Generator):
    x = torch.randn(n, d_in, generator=generator)
    y = torch.randn(n, d_out, generator=generator)
    return x, y


def versions() -> dict:
    return {"torch": torch.__version__, "pytorch_lightning": pl.__version__, "python": platform.python_version()}


def trainer(root: str, **kwargs) -> pl.Trainer:
    defaults = dict(
        default_root_dir=root,
        accelerator="cpu",
        devices=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        deterministic=True,
        logger=False,
        enable_checkpointing=False,
    )
    defaults.update(kwargs)
    return pl.Trainer(**defaults)


# --- param groups -----------------------------------------------------------------------------


class Grouped(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 3)
        self.ln = nn.LayerNorm(3)
        self.fc2 = nn.Linear(3, 2)

    def forward(self, x):
        return self.fc2(self.ln(self.fc1(x)))


def adamw_groups(module: nn.Module):
    optimizer = grouped_adamw(module)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
    return optimizer, scheduler


COSINE_FLOOR = 0.1
COSINE_STEPS = 5


def cosine_groups(module: nn.Module):
    """Each group from its own rate down to `COSINE_FLOOR` times it along a cosine: torch's
    `CosineAnnealingLR` has one `eta_min` for all groups, so its factor through `LambdaLR`."""
    optimizer = grouped_adamw(module)

    def factor(step: int) -> float:
        return COSINE_FLOOR + (1 - COSINE_FLOOR) * 0.5 * (1 + math.cos(math.pi * step / COSINE_STEPS))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def grouped_adamw(module: nn.Module) -> torch.optim.AdamW:
    decay = [module.fc1.weight, module.fc2.weight]
    no_decay = [module.fc1.bias, module.ln.weight, module.ln.bias, module.fc2.bias]
    return torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": 0.1},
            {"params": no_decay, "weight_decay": 0.0, "lr": 0.02},
        ],
        lr=0.01,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=0.05,
    )


class LitGrouped(pl.LightningModule):
    def __init__(self, initial: dict):
        super().__init__()
        self.net = Grouped()
        self.net.load_state_dict({k: torch.tensor(v) for k, v in initial.items()})

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.mse_loss(self.net(x), y)

    def configure_optimizers(self):
        optimizer, scheduler = adamw_groups(self.net)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def grouped_steps(model: nn.Module, x: torch.Tensor, y: torch.Tensor, optimizer, scheduler) -> list:
    """3 epochs of 2 batches of 4, the scheduler stepped after every optimizer step: each step's
    rates (before it) and parameters (after it)."""
    steps = []
    for _epoch in range(3):
        for start in (0, 4):
            xb, yb = x[start : start + 4], y[start : start + 4]
            rates = [group["lr"] for group in optimizer.param_groups]
            optimizer.zero_grad()
            nn.functional.mse_loss(model(xb), yb).backward()
            optimizer.step()
            scheduler.step()
            steps.append({"lrs": rates, "params": named(model)})
    return steps


def write_adamw_groups(out: pathlib.Path) -> None:
    torch.manual_seed(SEED)
    generator = torch.Generator().manual_seed(SEED)
    model = Grouped()
    initial = named(model)
    x, y = data(8, 4, 2, generator)
    steps = grouped_steps(model, x, y, *adamw_groups(model))

    # What Lightning's monitor logs for the same optimizer, every step.
    with tempfile.TemporaryDirectory() as root:
        lit = LitGrouped(initial)
        logger = CSVLogger(root, name="groups")
        fit = trainer(
            root,
            max_epochs=3,
            logger=logger,
            log_every_n_steps=1,
            callbacks=[LearningRateMonitor(logging_interval="step", log_weight_decay=True)],
        )
        fit.fit(lit, DataLoader(TensorDataset(x, y), batch_size=4))
        monitored = read_metrics(pathlib.Path(logger.log_dir) / "metrics.csv")

    fixture = {
        "inputs": to_list(x),
        "targets": to_list(y),
        "initial": initial,
        "steps": steps,
        "monitored": monitored,
        "versions": versions(),
    }
    (out / "adamw_groups.json").write_text(json.dumps(fixture, indent=1) + "\n")


def write_cosine_groups(out: pathlib.Path) -> None:
    torch.manual_seed(SEED)
    generator = torch.Generator().manual_seed(SEED)
    model = Grouped()
    initial = named(model)
    x, y = data(8, 4, 2, generator)
    fixture = {
        "inputs": to_list(x),
        "targets": to_list(y),
        "initial": initial,
        "floor": COSINE_FLOOR,
        "cosine_steps": COSINE_STEPS,
        "steps": grouped_steps(model, x, y, *cosine_groups(model)),
        "versions": versions(),
    }
    (out / "cosine_groups.json").write_text(json.dumps(fixture, indent=1) + "\n")


def read_metrics(path: pathlib.Path) -> list:
    """Each row of a CSVLogger's metrics.csv with its non-empty values."""
    rows = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            rows.append({k: float(v) for k, v in row.items() if v != ""})
    return rows


# --- weight averaging -------------------------------------------------------------------------


class Mlp(nn.Module):
    def __init__(self, batch_norm: bool = False):
        super().__init__()
        self.fc1 = nn.Linear(4, 8)
        self.bn = nn.BatchNorm1d(8) if batch_norm else nn.Identity()
        self.fc2 = nn.Linear(8, 2)

    def forward(self, x):
        return self.fc2(torch.relu(self.bn(self.fc1(x))))


class LitMlp(pl.LightningModule):
    def __init__(self, initial: dict, batch_norm: bool = False, lr: float = 0.1):
        super().__init__()
        self.net = Mlp(batch_norm)
        self.net.load_state_dict({k: torch.tensor(v) for k, v in initial.items()})
        self.lr = lr
        self.epoch_lrs = []
        self.val_losses = []

    def training_step(self, batch, batch_idx):
        if batch_idx == 0:
            self.epoch_lrs.append(self.trainer.optimizers[0].param_groups[0]["lr"])
        x, y = batch
        return nn.functional.mse_loss(self.net(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", nn.functional.mse_loss(self.net(x), y))

    def on_validation_epoch_end(self):
        self.val_losses.append(self.trainer.callback_metrics["val_loss"].item())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr)


def write_ema(out: pathlib.Path) -> None:
    torch.manual_seed(SEED)
    generator = torch.Generator().manual_seed(SEED + 1)
    initial = named(Mlp())
    x, y = data(16, 4, 2, generator)
    xv, yv = data(8, 4, 2, generator)
    lit = LitMlp(initial)
    with tempfile.TemporaryDirectory() as root:
        # The checkpoint of the last epoch, saved after its validation: the average and the
        # trained weights differ there (at the end of `fit` the module gets the average).
        checkpoints = ModelCheckpoint(dirpath=root, save_top_k=-1, filename="{epoch}")
        fit = trainer(
            root,
            max_epochs=3,
            callbacks=[EMAWeightAveraging(decay=0.9), checkpoints],
            enable_checkpointing=True,
        )
        fit.fit(
            lit,
            DataLoader(TensorDataset(x, y), batch_size=4),
            DataLoader(TensorDataset(xv, yv), batch_size=4),
        )
        checkpoint = torch.load(pathlib.Path(root) / "epoch=2.ckpt", weights_only=False)
    strip = lambda state: {k.removeprefix("net."): to_list(v) for k, v in state.items()}
    fixture = {
        "inputs": to_list(x),
        "targets": to_list(y),
        "val_inputs": to_list(xv),
        "val_targets": to_list(yv),
        "initial": initial,
        "val_losses": lit.val_losses,
        "final": named(lit.net),
        "state_dict": strip(checkpoint["state_dict"]),
        "current_model_state": strip(checkpoint["current_model_state"]),
        "n_averaged": int(checkpoint["averaging_state"]["n_averaged"]),
        "versions": versions(),
    }
    (out / "ema_averaging.json").write_text(json.dumps(fixture, indent=1) + "\n")


def write_swa(out: pathlib.Path) -> None:
    torch.manual_seed(SEED)
    generator = torch.Generator().manual_seed(SEED + 2)
    initial = named(Mlp(batch_norm=True))
    x, y = data(16, 4, 2, generator)
    lit = LitMlp(initial, batch_norm=True)
    with tempfile.TemporaryDirectory() as root:
        swa = StochasticWeightAveraging(swa_lrs=0.05, swa_epoch_start=2, annealing_epochs=2)
        fit = trainer(root, max_epochs=4, callbacks=[swa], limit_val_batches=0)
        fit.fit(lit, DataLoader(TensorDataset(x, y), batch_size=4))
        global_step = fit.global_step
    # Lightning's BatchNorm epoch ends with one optimizer step (its last batch counts as the end
    # of an accumulation window), which applies the last training step's leftover gradients
    # again: the module ends off the average. `average` is the average itself, `final` what the
    # module ends with (its running statistics are those of the average).
    fixture = {
        "inputs": to_list(x),
        "targets": to_list(y),
        "initial": initial,
        "batch_size": 4,
        "epoch_lrs": lit.epoch_lrs,
        "epochs_run": len(lit.epoch_lrs),
        "n_averaged": int(swa.n_averaged.item()),
        "global_step": global_step,
        "average": {k: to_list(v) for k, v in swa._average_model.net.named_parameters()},
        "final": named(lit.net),
        "versions": versions(),
    }
    (out / "swa.json").write_text(json.dumps(fixture, indent=1) + "\n")


class LitBackbone(pl.LightningModule):
    def __init__(self, initial: dict):
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(4, 8), nn.ReLU())
        self.head = nn.Linear(8, 2)
        self.load_state_dict({k: torch.tensor(v) for k, v in initial.items()})
        self.epoch_lrs = []

    def training_step(self, batch, batch_idx):
        if batch_idx == 0:
            self.epoch_lrs.append([g["lr"] for g in self.trainer.optimizers[0].param_groups])
        x, y = batch
        return nn.functional.mse_loss(self.head(self.backbone(x)), y)

    def configure_optimizers(self):
        return torch.optim.SGD(filter(lambda p: p.requires_grad, self.parameters()), lr=0.1)


def write_backbone(out: pathlib.Path) -> None:
    torch.manual_seed(SEED)
    generator = torch.Generator().manual_seed(SEED + 3)
    seed_model = nn.Module()
    seed_model.backbone = nn.Sequential(nn.Linear(4, 8), nn.ReLU())
    seed_model.head = nn.Linear(8, 2)
    initial = named(seed_model)
    x, y = data(16, 4, 2, generator)
    lit = LitBackbone(initial)
    with tempfile.TemporaryDirectory() as root:
        logger = CSVLogger(root, name="backbone")
        finetuning = BackboneFinetuning(unfreeze_backbone_at_epoch=1, lambda_func=lambda epoch: 1.5)
        fit = trainer(
            root,
            max_epochs=4,
            logger=logger,
            log_every_n_steps=1,
            callbacks=[finetuning, LearningRateMonitor(logging_interval="epoch")],
        )
        fit.fit(lit, DataLoader(TensorDataset(x, y), batch_size=4))
        monitored = read_metrics(pathlib.Path(logger.log_dir) / "metrics.csv")
    fixture = {
        "inputs": to_list(x),
        "targets": to_list(y),
        "initial": initial,
        "epoch_lrs": lit.epoch_lrs,
        "monitored": monitored,
        "final": {k: to_list(v) for k, v in lit.state_dict().items()},
        "versions": versions(),
    }
    (out / "backbone_finetuning.json").write_text(json.dumps(fixture, indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=pathlib.Path, default=pathlib.Path("tests/fixtures"))
    args = parser.parse_args()
    args.output_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    write_adamw_groups(args.output_dir)
    write_cosine_groups(args.output_dir)
    write_ema(args.output_dir)
    write_swa(args.output_dir)
    write_backbone(args.output_dir)


if __name__ == "__main__":
    main()
