"""PyTorch and PyTorch Lightning on the work of `benches/trainer_overhead.rs`.

The same two models (the 784-128-10 perceptron `mlp` and the LeNet-5-sized `cnn`), the same IDX
files (`examples/data/mnist`: the first 7,000 training images for training, the last 1,000 for
validation, normalized with mean 0.1307 and std 0.3081), batch size 64, Adam with learning rate
1e-3, and the same work per epoch: every training batch (shuffled every epoch), then every
validation batch in evaluation mode, with the epoch means of the training loss and of the
validation loss and accuracy read back once per epoch.

Sides:
- `pytorch`: a hand-written PyTorch loop;
- `lightning`: `pytorch_lightning.Trainer` with its defaults (logger, checkpoint every epoch,
  progress bar, model summary, sanity check);
- `lightning-minimal`: the same with `logger=False`, `enable_checkpointing=False`,
  `enable_progress_bar=False`.

`torch.set_num_threads` is set to the machine's cores (`os.cpu_count()`), as many threads as
burn's flex backend uses. `--accelerator cuda` trains on the first GPU instead (the batches are
moved there as Lightning moves them; `scripts/gpu-run.sh` compares this with burn's CUDA backend). Runs of the sides alternate, `--reps` times each; the first epoch of
every run is a warm-up and is left out; the time of an epoch runs from its start to the next
epoch's start (or the end of training). Prints `BENCH` lines (wall clock and process CPU time,
minimum, quartiles and maximum over the timed epochs) and, with `--startup-reps N`, `STARTUP`
lines: the time from spawning a child Python process (`--child SIDE`) to its first optimizer
step, and its peak RSS (`ru_maxrss`), medians over N children.
"""

import argparse
import gzip
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

FIRST_STEP_MARKER = "FIRST_OPTIMIZER_STEP_DONE"
IS_CHILD = False
_first_step_seen = False

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

SEED = 42
BATCH_SIZE = 64
VAL_ITEMS = 1000
PIXELS = 28 * 28


def optimizer_stepped():
    """Prints the first-step marker once, in a child process."""
    global _first_step_seen
    if IS_CHILD and not _first_step_seen:
        _first_step_seen = True
        print(FIRST_STEP_MARKER, flush=True)


def read_idx(path):
    """An IDX file of unsigned bytes (gzipped or not) as a uint8 tensor of its dimensions."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path}: not an IDX file of unsigned bytes")
    rank = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(rank)]
    data = torch.frombuffer(bytearray(raw[4 + 4 * rank:]), dtype=torch.uint8)
    return data.reshape(dims)


def load_data(directory):
    """Training and validation tensors: (images [n, 784] float, labels [n] int64)."""
    images = read_idx(directory / "train-images-idx3-ubyte.gz").reshape(-1, PIXELS)
    labels = read_idx(directory / "train-labels-idx1-ubyte.gz").to(torch.int64)
    images = (images.to(torch.float32) / 255.0 - 0.1307) / 0.3081
    split = len(labels) - VAL_ITEMS
    return (images[:split], labels[:split]), (images[split:], labels[split:])


def loaders(data):
    from torch.utils.data import DataLoader, TensorDataset

    (train_x, train_y), (val_x, val_y) = data
    generator = torch.Generator().manual_seed(SEED)
    train = DataLoader(TensorDataset(train_x, train_y), batch_size=BATCH_SIZE, shuffle=True, generator=generator)
    val = DataLoader(TensorDataset(val_x, val_y), batch_size=BATCH_SIZE)
    return train, val


class Mlp(nn.Module):
    """784-128-10 with ReLU."""

    def __init__(self):
        super().__init__()
        self.l1 = nn.Linear(PIXELS, 128)
        self.l2 = nn.Linear(128, 10)

    def forward(self, x):
        return self.l2(F.relu(self.l1(x)))


class Lenet(nn.Module):
    """LeNet-5 with ReLU and max pooling, as `examples/common/lit_lenet.rs`."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = x.reshape(-1, 1, 28, 28)
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = x.flatten(1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


MODELS = {"mlp": Mlp, "cnn": Lenet}


def loss_and_accuracy(model, batch):
    images, targets = batch
    logits = model(images)
    loss = F.cross_entropy(logits, targets)
    accuracy = (logits.argmax(1) == targets).float().mean()
    return loss, accuracy


class Marks:
    """Epoch starts and the end of training: (wall, cpu) pairs."""

    def __init__(self):
        self.starts = []
        self.finished = None

    @staticmethod
    def now():
        return time.perf_counter(), time.process_time()

    def periods(self):
        """Wall and CPU seconds per epoch, start to next start, first epoch left out."""
        nexts = self.starts[1:] + [self.finished]
        pairs = list(zip(self.starts, nexts))[1:]
        return [n[0] - s[0] for s, n in pairs], [n[1] - s[1] for s, n in pairs]


def epoch_mean(values, sizes):
    values = torch.stack(values).tolist()
    return sum(v * n for v, n in zip(values, sizes)) / sum(sizes)


def run_pytorch(model_name, data, epochs, accelerator):
    device = torch.device(accelerator)
    torch.manual_seed(SEED)
    model = MODELS[model_name]().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    train, val = loaders(data)
    marks = Marks()
    for epoch in range(epochs):
        marks.starts.append(Marks.now())
        model.train()
        losses, sizes = [], []
        for batch in train:
            batch = [t.to(device) for t in batch]
            loss, _ = loss_and_accuracy(model, batch)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            optimizer_stepped()
            losses.append(loss.detach())
            sizes.append(len(batch[1]))
        train_loss = epoch_mean(losses, sizes)
        model.eval()
        val_losses, val_accs, val_sizes = [], [], []
        with torch.no_grad():
            for batch in val:
                batch = [t.to(device) for t in batch]
                loss, accuracy = loss_and_accuracy(model, batch)
                val_losses.append(loss)
                val_accs.append(accuracy)
                val_sizes.append(len(batch[1]))
        val_loss, val_acc = epoch_mean(val_losses, val_sizes), epoch_mean(val_accs, val_sizes)
        print(f"pytorch {model_name} epoch {epoch} | train_loss={train_loss:.4f} val_loss={val_loss:.4f} "
              f"val_acc={val_acc:.4f}", flush=True)
    marks.finished = Marks.now()
    return marks


def run_lightning(model_name, data, epochs, accelerator, minimal):
    import pytorch_lightning as pl

    class Lit(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.model = MODELS[model_name]()

        def training_step(self, batch, batch_idx):
            loss, _ = loss_and_accuracy(self.model, batch)
            self.log("train_loss", loss, on_epoch=True, prog_bar=True)
            return loss

        def validation_step(self, batch, batch_idx):
            loss, accuracy = loss_and_accuracy(self.model, batch)
            self.log("val_loss", loss, prog_bar=True)
            self.log("val_acc", accuracy, prog_bar=True)

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=1e-3)

    marks = Marks()

    class EpochTimer(pl.Callback):
        def on_train_epoch_start(self, trainer, module):
            marks.starts.append(Marks.now())

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            optimizer_stepped()

        def on_train_end(self, trainer, module):
            marks.finished = Marks.now()

    with tempfile.TemporaryDirectory() as root:
        flags = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False) if minimal else {}
        trainer = pl.Trainer(max_epochs=epochs, accelerator=accelerator, devices=1, default_root_dir=root,
                             callbacks=[EpochTimer()], **flags)
        torch.manual_seed(SEED)
        train, val = loaders(data)
        trainer.fit(Lit(), train, val)
    return marks


SIDES = {
    "pytorch": lambda m, d, e, a: run_pytorch(m, d, e, a),
    "lightning": lambda m, d, e, a: run_lightning(m, d, e, a, minimal=False),
    "lightning-minimal": lambda m, d, e, a: run_lightning(m, d, e, a, minimal=True),
}


def quantiles(values):
    values = sorted(values)
    if not values:
        return [float("nan")] * 5

    def q(p):
        rank = p * (len(values) - 1)
        low, high = int(rank), min(int(rank) + 1, len(values) - 1)
        return values[low] + (values[high] - values[low]) * (rank - low)

    return [q(p) for p in (0.0, 0.25, 0.5, 0.75, 1.0)]


def fields(prefix, values):
    names = ("min", "q1", "median", "q3", "max")
    return " ".join(f"{prefix}_{n}={v:.6f}" for n, v in zip(names, quantiles(values)))


def startup(model, side, epochs, accelerator, data):
    """Seconds from spawn to the child's first optimizer step, and its peak RSS in kB."""
    spawned = time.perf_counter()
    child = subprocess.Popen([sys.executable, __file__, "--child", side, "--models", model, "--epochs", str(epochs),
                              "--accelerator", accelerator, "--data", str(data)],
                             stdout=subprocess.PIPE, text=True)
    first_step, peak = None, None
    for line in child.stdout:
        # A progress bar may have left part of a line before the marker.
        line = line.rstrip("\n")
        if line.endswith(FIRST_STEP_MARKER) and first_step is None:
            first_step = time.perf_counter() - spawned
        elif line.startswith("PEAK_RSS_KB "):
            peak = int(line.split()[1])
    if child.wait() != 0:
        raise SystemExit(f"child {model} {side} failed")
    if first_step is None:
        raise SystemExit(f"child {model} {side} never reported its first optimizer step")
    return first_step, peak


def main():
    global IS_CHILD
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="mlp,cnn")
    parser.add_argument("--sides", default=",".join(SIDES))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--startup-reps", type=int, default=0)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "examples/data/mnist")
    parser.add_argument("--accelerator", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--child")
    args = parser.parse_args()
    if args.epochs < 2 or args.reps < 1:
        raise SystemExit("need at least 2 epochs (the first is a warm-up) and 1 repetition")
    models, sides = args.models.split(","), args.sides.split(",")
    for side in sides + ([args.child] if args.child else []):
        if side not in SIDES:
            raise SystemExit(f"unknown side {side!r}: expected one of {', '.join(SIDES)}")

    torch.set_num_threads(os.cpu_count())
    warnings.filterwarnings("ignore")
    data = load_data(args.data)
    if args.child:
        IS_CHILD = True
        SIDES[args.child](models[0], data, args.epochs, args.accelerator)
        print(f"PEAK_RSS_KB {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}", flush=True)
        return

    import importlib.metadata

    device = torch.cuda.get_device_name(0) if args.accelerator == "cuda" else "cpu"
    print(f"VERSIONS torch={torch.__version__} pytorch_lightning={importlib.metadata.version('pytorch-lightning')} "
          f"python={sys.version.split()[0]} threads={torch.get_num_threads()} device={device.replace(' ', '_')}",
          flush=True)
    for model in models:
        walls = {side: [] for side in sides}
        cpus = {side: [] for side in sides}
        for rep in range(args.reps):
            order = sides[rep % len(sides):] + sides[:rep % len(sides)]
            for side in order:
                wall, cpu = SIDES[side](model, data, args.epochs, args.accelerator).periods()
                walls[side] += wall
                cpus[side] += cpu
                print(f"{model} rep {rep + 1}/{args.reps}: {side} {statistics.median(wall):.4f} s/epoch", flush=True)
        for side in sides:
            print(f"BENCH model={model} side={side} epochs_timed={len(walls[side])} "
                  f"{fields('wall', walls[side])} {fields('cpu', cpus[side])} same_work=n/a", flush=True)
    if args.startup_reps > 0:
        for model in models:
            for side in sides:
                runs = [startup(model, side, args.epochs, args.accelerator, args.data) for _ in range(args.startup_reps)]
                seconds = [s for s, _ in runs]
                peaks = [p / 1024 for _, p in runs if p is not None]
                print(f"STARTUP model={model} side={side} first_step_s={statistics.median(seconds):.4f} "
                      f"first_step_min_s={min(seconds):.4f} peak_rss_mb={statistics.median(peaks):.1f}", flush=True)


if __name__ == "__main__":
    main()
