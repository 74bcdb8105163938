"""Records how PyTorch Lightning's `fit` reads a `CombinedLoader` (tests/combined_loader.rs compares).

For each mode and each `limit_train_batches`, over small unshuffled datasets of unequal sizes
(item `i` of a dataset is the number `i`), a real `Trainer.fit` of one epoch records the epoch
length Lightning plans (`trainer.num_training_batches`) and, for every training batch, the items
of each loader's batch (`null` for a loader that ran out, in `max_size`). `sequential`, which
`fit` refuses, is recorded as the error's message and, read directly, as its epoch length and
order. Usage: combined_loader_fixture.py OUTPUT.json
"""
import json
import sys
import warnings

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities.combined_loader import CombinedLoader
from torch.utils.data import DataLoader

warnings.filterwarnings("ignore")

BATCH_SIZE = 2
# Loader sizes (items): 3, 5 and 2 batches of 2 (the last ones partial where odd).
SIZES = {"two": [5, 9], "three": [5, 9, 4]}
# 0.3 leaves the 3-batch loader under one batch, which Lightning refuses.
LIMITS = [None, 2, 4, 0.5, 0.7, 0.3]
MODES = ["max_size_cycle", "min_size", "max_size"]


def loaders(sizes):
    return [DataLoader(list(range(n)), batch_size=BATCH_SIZE, shuffle=False) for n in sizes]


def items(batch):
    return None if batch is None else [int(i) for i in batch]


class Recorder(pl.LightningModule):
    def __init__(self, train_loader):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.train_loader = train_loader
        self.seen = []

    def train_dataloader(self):
        return self.train_loader

    def training_step(self, batch, batch_idx):
        self.seen.append([items(part) for part in batch])
        return (self.weight**2).sum() + 1.0

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def fit(combined, limit):
    module = Recorder(combined)
    kwargs = {} if limit is None else {"limit_train_batches": limit}
    trainer = pl.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        **kwargs,
    )
    trainer.fit(module)
    return trainer.num_training_batches, module.seen


def main(output):
    cases = []
    for name, sizes in SIZES.items():
        for mode in MODES:
            for limit in LIMITS:
                try:
                    epoch_length, batches = fit(CombinedLoader(loaders(sizes), mode), limit)
                    case = {"epoch_length": epoch_length, "batches": batches}
                except Exception as error:  # Lightning refuses the combination
                    case = {"error": str(error)}
                cases.append({"loaders": name, "sizes": sizes, "mode": mode, "limit": limit, **case})
    sequential_sizes = SIZES["two"]
    try:
        fit(CombinedLoader(loaders(sequential_sizes), "sequential"), None)
        fit_error = None
    except Exception as error:
        fit_error = str(error)
    combined = CombinedLoader(loaders(sequential_sizes), "sequential")
    order = [
        {"loader": dataloader_idx, "batch_idx": batch_idx, "items": items(batch)}
        for batch, batch_idx, dataloader_idx in combined
    ]
    fixture = {
        "lightning": pl.__version__,
        "batch_size": BATCH_SIZE,
        "cases": cases,
        "sequential": {"sizes": sequential_sizes, "fit_error": fit_error, "length": len(combined), "order": order},
    }
    with open(output, "w") as f:
        json.dump(fixture, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main(sys.argv[1])
