#!/usr/bin/env python3
"""Writes the PyTorch Lightning checkpoint that tests/lightning_import.rs imports.

Run it through `bash scripts/lightning_checkpoint_fixture.sh`, which makes the virtual environment
with the pinned torch and pytorch-lightning. It writes, under tests/fixtures/ (or --output-dir):

    lit_mlp.ckpt            `trainer.save_checkpoint` after training `LitMlp` (a 4-8-3 MLP, Adam)
                            for 2 epochs of 4 batches on CPU with a fixed seed: its `state_dict`
                            has `encoder.{weight,bias}` and `head.{weight,bias}`, its
                            `hyper_parameters` come from `self.save_hyperparameters()`
    lit_mlp.json            what the Rust test compares with: the checkpoint's `epoch`,
                            `global_step` and `hyper_parameters` (read back from the file), the
                            `state_dict` keys and shapes, fixed `inputs` and the trained model's
                            `logits` for them (float32, eval mode), and the versions that wrote it
    plain_state_dict.pt     `torch.save(model.state_dict())`: a PyTorch file that is not a
                            Lightning checkpoint
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import tempfile

import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

SEED = 1234
# Fixed inputs whose logits the Rust test recomputes: exact binary fractions, so both sides start
# from the same float32 values.
INPUTS = [
    [0.5, -1.0, 0.25, 2.0],
    [-0.75, 0.125, 1.5, -0.5],
    [0.0, 0.0, 0.0, 0.0],
    [1.0, 1.0, -1.0, -1.0],
    [-2.0, 0.375, 0.625, 0.875],
]


class LitMlp(pl.LightningModule):
    """Two `nn.Linear`s with a ReLU between; every constructor argument is a hyperparameter."""

    def __init__(self, in_features: int = 4, hidden_size: int = 8, out_features: int = 3, lr: float = 0.05):
        super().__init__()
        self.save_hyperparameters()
        self.encoder = nn.Linear(in_features, hidden_size)
        self.head = nn.Linear(hidden_size, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.encoder(x)))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.cross_entropy(self(x), y)
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)


def main() -> None:
    root = pathlib.Path(__file__).resolve().parent.parent
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", type=pathlib.Path, default=root / "tests" / "fixtures")
    args = parser.parse_args()
    output_dir: pathlib.Path = args.output_dir
    output_dir.mkdir(parents=True, exist_ok=True)

    pl.seed_everything(SEED, workers=True)
    torch.use_deterministic_algorithms(True)
    # Three classes, separable by a fixed linear rule, so training moves the weights.
    features = torch.randn(64, 4)
    labels = (features @ torch.tensor([[1.0, -1.0, 0.5], [0.5, 1.0, -1.0], [-1.0, 0.5, 1.0], [0.25, 0.25, 0.25]])).argmax(1)
    loader = DataLoader(TensorDataset(features, labels), batch_size=16, shuffle=False)

    model = LitMlp(hidden_size=8)
    with tempfile.TemporaryDirectory() as scratch:
        trainer = pl.Trainer(
            default_root_dir=scratch,
            accelerator="cpu",
            devices=1,
            max_epochs=2,
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            deterministic=True,
        )
        trainer.fit(model, loader)
        checkpoint_path = output_dir / "lit_mlp.ckpt"
        trainer.save_checkpoint(checkpoint_path)

    model.eval()
    with torch.no_grad():
        logits = model(torch.tensor(INPUTS, dtype=torch.float32))
    torch.save(model.state_dict(), output_dir / "plain_state_dict.pt")

    # What the file holds, read back rather than assumed.
    saved = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
    expected = {
        "written_by": "bash scripts/lightning_checkpoint_fixture.sh",
        "pytorch_lightning_version": saved["pytorch-lightning_version"],
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "epoch": saved["epoch"],
        "global_step": saved["global_step"],
        "hyper_parameters": dict(saved["hyper_parameters"]),
        "state_dict": {name: list(tensor.shape) for name, tensor in saved["state_dict"].items()},
        "top_level_keys": sorted(saved.keys()),
        "inputs": INPUTS,
        "logits": logits.tolist(),
    }
    (output_dir / "lit_mlp.json").write_text(json.dumps(expected, indent=2) + "\n")
    print(f"wrote {checkpoint_path}, {output_dir / 'lit_mlp.json'} and {output_dir / 'plain_state_dict.pt'}")


if __name__ == "__main__":
    main()
