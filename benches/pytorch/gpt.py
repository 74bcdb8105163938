"""The character-level GPT of `examples/gpt.rs` in PyTorch Lightning, for the side-by-side figures.

Same data (`examples/data/shakespeare/tragedies.txt.gz`, the first 90% for training, the rest
held out), tokenizer (the sorted characters of the text, which is `VOCAB` in the example), batch
order (each epoch `batches_per_epoch` batches of windows at offsets drawn by the same SplitMix64
from `seed * 1000 + epoch`; validation the first `val_batches` batches of consecutive held-out
windows), model (token and position embeddings, pre-norm blocks of causal self-attention with
separate query/key/value/output projections and a GELU MLP, logits from the token embedding's
weight), initialization scheme (N(0, 0.02), zero biases, the residual projections at
0.02 / sqrt(2 n_layer); the draws differ: burn's generator is not torch's), AdamW with the same two
param groups, betas (0.9, 0.99), eps 1e-8, the same warm-up then cosine (burn's linear and cosine
schedulers' formulas, stepped every optimizer step), gradient clipping at norm 1.0, and the
trainer's defaults on both sides (TensorBoard logger, a checkpoint every epoch, sanity check,
progress bar).

Attention is `F.scaled_dot_product_attention(is_causal=True)`, as nanoGPT writes it: torch's
fused kernel, where burn's `MultiHeadAttention` runs matmul, mask, softmax and matmul.

Prints `step S: val_loss L` after each validation and, at the end, the line the example prints:
`throughput: T tokens/s after the first batch (validation included); first batch done X s after
start; peak RSS M MB` (start: when this script began, before importing torch).
"""

import time

STARTED = time.perf_counter()

import argparse  # noqa: E402
import gzip  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import pytorch_lightning as pl  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
MASK64 = (1 << 64) - 1
INIT_STD = 0.02


def splitmix64(state):
    """(new state, output): `splitmix64` of examples/gpt.rs."""
    state = (state + 0x9E3779B97F4A7C15) & MASK64
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return state, z ^ (z >> 31)


def train_offsets(tokens, block_size, count, seed, epoch):
    state = (seed * 1000 + epoch) & MASK64
    out = []
    for _ in range(count):
        state, value = splitmix64(state)
        out.append(value % (tokens - block_size))
    return out


class Windows(torch.utils.data.Dataset):
    def __init__(self, tokens, starts, block_size):
        self.tokens, self.starts, self.block_size = tokens, starts, block_size

    def __len__(self):
        return len(self.starts)

    def __getitem__(self, i):
        s = self.starts[i]
        window = self.tokens[s: s + self.block_size + 1]
        return window[:-1], window[1:]


class ShakespeareData(pl.LightningDataModule):
    def __init__(self, args):
        super().__init__()
        self.args = args
        text = gzip.decompress(Path(args.path).read_bytes()).decode()
        self.vocab = sorted(set(text))
        index = {c: i for i, c in enumerate(self.vocab)}
        tokens = torch.tensor([index[c] for c in text], dtype=torch.int64)
        split = int(len(tokens) * 0.9)
        self.train, self.val = tokens[:split], tokens[split:]

    def train_dataloader(self):
        a = self.args
        starts = train_offsets(len(self.train), a.block_size, a.batches_per_epoch * a.batch_size, a.seed,
                               self.trainer.current_epoch)
        return torch.utils.data.DataLoader(Windows(self.train, starts, a.block_size), batch_size=a.batch_size)

    def val_dataloader(self):
        a = self.args
        starts = [i * a.block_size for i in range(a.val_batches * a.batch_size)]
        return torch.utils.data.DataLoader(Windows(self.val, starts, a.block_size), batch_size=a.batch_size)


def linear(d_in, d_out, std):
    layer = nn.Linear(d_in, d_out)
    nn.init.normal_(layer.weight, 0.0, std)
    nn.init.zeros_(layer.bias)
    return layer


class Block(nn.Module):
    def __init__(self, a):
        super().__init__()
        d, proj_std = a.n_embd, INIT_STD / math.sqrt(2 * a.n_layer)
        self.n_head, self.dropout = a.n_head, a.dropout
        self.ln_1 = nn.LayerNorm(d)
        self.query, self.key, self.value = (linear(d, d, INIT_STD) for _ in range(3))
        self.output = linear(d, d, proj_std)
        self.ln_2 = nn.LayerNorm(d)
        self.fc = linear(d, 4 * d, INIT_STD)
        self.proj = linear(4 * d, d, proj_std)
        self.resid_dropout = nn.Dropout(a.dropout)

    def attention(self, x):
        b, t, d = x.shape
        q, k, v = (lin(x).view(b, t, self.n_head, d // self.n_head).transpose(1, 2)
                   for lin in (self.query, self.key, self.value))
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0,
                                           is_causal=True)
        return self.output(y.transpose(1, 2).reshape(b, t, d))

    def forward(self, x):
        x = x + self.resid_dropout(self.attention(self.ln_1(x)))
        return x + self.resid_dropout(self.proj(F.gelu(self.fc(self.ln_2(x)))))


class Gpt(pl.LightningModule):
    def __init__(self, args, vocab):
        super().__init__()
        self.args, self.vocab = args, vocab
        self.wte = nn.Embedding(len(vocab), args.n_embd)
        self.wpe = nn.Embedding(args.block_size, args.n_embd)
        nn.init.normal_(self.wte.weight, 0.0, INIT_STD)
        nn.init.normal_(self.wpe.weight, 0.0, INIT_STD)
        self.drop = nn.Dropout(args.dropout)
        self.blocks = nn.ModuleList(Block(args) for _ in range(args.n_layer))
        self.ln_f = nn.LayerNorm(args.n_embd)
        self.val_losses = []
        self.first_batch_done = None
        self.tokens_after_first = 0

    def forward(self, tokens):
        t = tokens.shape[1]
        x = self.drop(self.wte(tokens) + self.wpe(torch.arange(t, device=tokens.device)))
        for block in self.blocks:
            x = block(x)
        return self.ln_f(x) @ self.wte.weight.t()

    def loss(self, batch):
        inputs, targets = batch
        logits = self(inputs)
        return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), targets.reshape(-1))

    def training_step(self, batch, batch_idx):
        loss = self.loss(batch)
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx):
        if self.first_batch_done is None:
            self.first_batch_done = time.perf_counter()
        else:
            self.tokens_after_first += batch[0].numel()

    def validation_step(self, batch, batch_idx):
        loss = self.loss(batch)
        if not self.trainer.sanity_checking:
            self.val_losses.append(loss.item())
        self.log("val_loss", loss, prog_bar=True)

    @torch.no_grad()
    def generate(self, count):
        tokens, state = [0], 42
        for _ in range(count):
            context = torch.tensor([tokens[-self.args.block_size:]], device=self.device)
            probs = F.softmax(self(context)[0, -1].float(), dim=-1).tolist()
            state, value = splitmix64(state)
            draw, cumulative, chosen = (value >> 11) / float(1 << 53), 0.0, len(probs) - 1
            for i, p in enumerate(probs):
                cumulative += p
                if draw < cumulative:
                    chosen = i
                    break
            tokens.append(chosen)
        return "".join(self.vocab[t] for t in tokens[1:])

    def on_validation_epoch_end(self):
        if self.trainer.sanity_checking:
            return
        mean = sum(self.val_losses) / max(len(self.val_losses), 1)
        self.val_losses = []
        print(f"step {self.global_step}: val_loss {mean:.4f}", flush=True)
        if self.args.sample_chars:
            print(f"sample at step {self.global_step}:\n{self.generate(self.args.sample_chars)}\n", flush=True)

    def configure_optimizers(self):
        a = self.args
        no_decay = [p for n, p in self.named_parameters() if p.dim() < 2 or n.startswith(("wte.", "wpe."))]
        no_decay_ids = {id(p) for p in no_decay}
        decay = [p for p in self.parameters() if id(p) not in no_decay_ids]
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": a.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=a.lr, betas=(0.9, 0.99), eps=1e-8)
        warmup, decay_steps = max(a.warmup_steps, 1), max(a.decay_steps, 1)

        def factor(step):
            # burn's LinearLrScheduler(lr / warmup, lr, warmup), then
            # CosineAnnealingLrScheduler(lr, decay_steps, min_lr = lr / 10), as the example.
            if step < warmup:
                start = 1.0 / warmup
                return start + step * (1.0 - start) / warmup
            j = step - warmup
            return 0.1 + 0.5 * 0.9 * (1.0 + math.cos(j / decay_steps * math.pi))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # Each option also under the example's name (`--model.n_embd`, `--data.batch_size`,
    # `--trainer.max_steps`), so that one list of flags configures both sides.
    def option(name, section, *more, **kwargs):
        p.add_argument(f"--{name}", f"--{section}.{name}", *more, dest=name, **kwargs)

    option("n_layer", "model", type=int, default=2)
    option("n_head", "model", type=int, default=4)
    option("n_embd", "model", type=int, default=64)
    option("block_size", "model", "--data.block_size", type=int, default=64)
    option("dropout", "model", type=float, default=0.0)
    option("lr", "model", type=float, default=3e-3)
    option("weight_decay", "model", type=float, default=0.1)
    option("warmup_steps", "model", type=int, default=100)
    option("decay_steps", "model", type=int, default=1900)
    option("sample_chars", "model", type=int, default=200)
    # The example's `--data.path`; the GPU checks' pack (scripts/gpu-pack.sh) has its own copy.
    option("path", "data", default=str(ROOT / "examples/data/shakespeare/tragedies.txt.gz"))
    option("batch_size", "data", type=int, default=16)
    option("batches_per_epoch", "data", type=int, default=250)
    option("val_batches", "data", type=int, default=16)
    option("seed", "data", type=int, default=1337)
    option("max_steps", "trainer", type=int, default=2000)
    option("accumulate_grad_batches", "trainer", type=int, default=1)
    option("precision", "trainer", default="32-true")
    option("accelerator", "trainer", default="cpu")
    option("default_root_dir", "trainer", default=str(ROOT / "target/gpt-lightning"))
    a = p.parse_args()
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    torch.set_num_threads(os.cpu_count())
    pl.seed_everything(a.seed)
    data = ShakespeareData(a)
    model = Gpt(a, data.vocab)
    trainer = pl.Trainer(max_steps=a.max_steps, gradient_clip_val=1.0, accumulate_grad_batches=a.accumulate_grad_batches,
                         precision=a.precision, accelerator=a.accelerator, devices=1,
                         reload_dataloaders_every_n_epochs=1, default_root_dir=a.default_root_dir)
    trainer.fit(model, data)
    elapsed = time.perf_counter() - model.first_batch_done
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"throughput: {model.tokens_after_first / elapsed:.0f} tokens/s after the first batch (validation included); "
          f"first batch done {model.first_batch_done - STARTED:.2f} s after start; peak RSS {peak_mb:.0f} MB")
    print(f"validation loss: {trainer.callback_metrics['val_loss'].item():.4f}")


if __name__ == "__main__":
    main()
