#!/usr/bin/env python3
"""Writes what PyTorch Lightning gives a script to read back, for the same runs as
tests/lightning_numbers.rs, to tests/data/lightning_numbers.json:

- `loop_limits`: `trainer.fit_loop.max_epochs` / `max_steps` once `fit` started, for the flags
  of each case, and whether Lightning warned that it picked 1000 epochs (`_parse_loop_limits`);
- `fit_steps`: the CSV rows (step and keys) a fit of 3 epochs of 10 batches writes, validating at
  each epoch's end: validation values share the step of the epoch's last training row;
- `manual_steps`: the rows of a manual-optimization fit that steps its optimizer on every other
  batch, with `log_every_n_steps=2`: the step counts every batch (`_batches_that_stepped`);
- `validate`, `test`: what `trainer.validate()` / `trainer.test()` return and what
  `trainer.logged_metrics` holds afterwards, with the logger off, for values logged with
  `logger=True` and `logger=False`.

Run it through `bash scripts/lightning_numbers.sh` (the venv of scripts/python_venv.sh; a few
seconds on a CPU).
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
import warnings
from pathlib import Path

import torch
from pytorch_lightning import Callback, LightningModule, Trainer
from pytorch_lightning.loggers import CSVLogger
from torch.utils.data import DataLoader, TensorDataset


def loader(batches: int, batch_size: int = 4) -> DataLoader:
    x = torch.arange(batches * batch_size * 2, dtype=torch.float32).reshape(-1, 2) / 100.0
    y = x.sum(dim=1, keepdim=True)
    return DataLoader(TensorDataset(x, y), batch_size=batch_size)


class Regressor(LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.layer(x), y)
        self.log("train_loss", loss, on_step=True, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.layer(x), y)
        self.log("val_loss", loss)
        self.log("val_hidden", loss, logger=False)

    def test_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.layer(x), y)
        self.log("test_loss", loss)
        self.log("test_hidden", loss, logger=False)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


class ManualRegressor(Regressor):
    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.layer(x), y)
        self.log("train_loss", loss)
        if batch_idx % 2 == 1:
            optimizer = self.optimizers()
            optimizer.zero_grad()
            self.manual_backward(loss)
            optimizer.step()


def quiet(**flags) -> dict:
    return dict(
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
        **flags,
    )


def rows(log_dir: str) -> list[dict]:
    path = Path(log_dir) / "metrics.csv"
    with path.open() as f:
        return [
            {"step": int(row["step"]), "keys": sorted(k for k, v in row.items() if v != "" and k != "step")}
            for row in csv.DictReader(f)
        ]


def loop_limits() -> list[dict]:
    cases = {
        "unset": {},
        "max_epochs=-1": {"max_epochs": -1},
        "max_steps=40": {"max_steps": 40},
        "max_time": {"max_time": "00:01:00:00"},
        "max_epochs=3": {"max_epochs": 3},
    }
    out = []
    for name, flags in cases.items():
        seen = {}

        class Limits(Callback):
            def on_fit_start(self, trainer, pl_module):
                # `_parse_loop_limits` runs when `fit` starts.
                seen.update(max_epochs=trainer.fit_loop.max_epochs, max_steps=trainer.fit_loop.max_steps)
                trainer.should_stop = True

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            trainer = Trainer(logger=False, callbacks=[Limits()], **quiet(**flags))
            trainer.fit(Regressor(), loader(2))
        warned = any("Setting it to 1000 epochs" in str(w.message) for w in caught)
        out.append({"case": name, **seen, "warned": warned})
    return out


def fit_steps(root: str) -> list[dict]:
    logger = CSVLogger(root, name="fit")
    trainer = Trainer(logger=logger, max_epochs=3, log_every_n_steps=5, **quiet())
    trainer.fit(Regressor(), loader(10), loader(2))
    return rows(logger.log_dir)


def manual_steps(root: str) -> list[dict]:
    logger = CSVLogger(root, name="manual")
    trainer = Trainer(logger=logger, max_epochs=1, log_every_n_steps=2, **quiet())
    trainer.fit(ManualRegressor(), loader(6), loader(2))
    return rows(logger.log_dir)


def validate() -> dict:
    trainer = Trainer(logger=False, **quiet())
    returned = trainer.validate(Regressor(), loader(2), verbose=False)
    return {
        "returned_keys": [sorted(results) for results in returned],
        "logged_metrics_keys": sorted(trainer.logged_metrics),
        "callback_metrics_keys": sorted(trainer.callback_metrics),
    }


def test() -> dict:
    trainer = Trainer(logger=False, **quiet())
    returned = trainer.test(Regressor(), loader(2), verbose=False)
    return {
        "returned_keys": [sorted(results) for results in returned],
        "logged_metrics_keys": sorted(trainer.logged_metrics),
        "callback_metrics_keys": sorted(trainer.callback_metrics),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--output", required=True)
    args = parser.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as root:
        numbers = {
            "lightning": __import__("pytorch_lightning").__version__,
            "loop_limits": loop_limits(),
            "fit_steps": fit_steps(root),
            "manual_steps": manual_steps(root),
            "validate": validate(),
            "test": test(),
        }
    Path(args.output).write_text(json.dumps(numbers, indent=1) + "\n")


if __name__ == "__main__":
    main()
