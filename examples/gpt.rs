//! A character-level GPT (minGPT / nanoGPT-shaped) trained with the Lightning trainer on eight
//! Shakespeare tragedies (`examples/data/shakespeare`, 1.1 MB, 76 characters), driven by
//! `LightningCli`: token and position embeddings, `n_layer` pre-norm blocks of causal
//! self-attention (burn's `MultiHeadAttention` with a causal mask) and a GELU MLP, the logits
//! computed from the token embedding's weight (weight tying), AdamW with param groups (no
//! weight decay on biases, norms and embeddings), a linear warm-up then a cosine decay stepped
//! every optimizer step, gradient clipping and a sample of generated text at each validation.
//!
//! `cargo run --example gpt` trains 2,000 steps (8 epochs of 250 batches of 16 windows of 64
//! characters) and validates on the held-out last 10% of the text after each epoch; CI's short
//! run and resume are in `scripts/ci_gpt.sh` (README "A transformer");
//! `-- fit --ckpt_path last` resumes; `--trainer.precision bf16-mixed`,
//! `--trainer.accumulate_grad_batches 4` (divide `--model.warmup_steps` and
//! `--model.decay_steps` by it); a GPU-sized model:
//! `--model.n_layer 6 --model.n_head 6 --model.n_embd 384 --model.block_size 256
//! --data.block_size 256 --data.batch_size 64 --model.dropout 0.2 --model.lr 1e-3
//! --trainer.max_steps 5000 --model.decay_steps 4900`; `-- --help` lists every option.

use burn::data::dataloader::DataLoaderBuilder;
use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::InMemDataset;
use burn::nn::attention::{MhaInput, MultiHeadAttention, MultiHeadAttentionConfig, generate_autoregressive_mask};
use burn::nn::{
    Dropout, DropoutConfig, Embedding, EmbeddingConfig, Gelu, Initializer, LayerNorm, LayerNormConfig, Linear,
    LinearConfig,
};
use burn::optim::AdamWConfig;
use burn::optim::lr_scheduler::{
    LrSchedulerConfig as BurnScheduler, cosine::CosineAnnealingLrSchedulerConfig, linear::LinearLrSchedulerConfig,
    sequential::SequentialLrSchedulerConfig,
};
use burn::tensor::activation::softmax;
use burn_lightning::prelude::*;
use serde::{Deserialize, Serialize};
use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

/// The characters of the corpus, sorted: token `i` is `VOCAB[i]`. `CharCorpus::read` refuses a
/// text with any other character.
pub const VOCAB: &str = "\n !\"&'(),-./12345:;?ABCDEFGHIJKLMNOPQRSTUVWXYZ[]abcdefghijklmnopqrstuvwxyz{}";

/// The share of the text, from its end, held out for validation.
const VAL_FRACTION: f64 = 0.1;

/// minGPT's initialization: weights drawn from N(0, 0.02), biases zero.
const INIT_STD: f64 = 0.02;

// ---------------------------------------------------------------------------------------------
// Data

/// The text as tokens, split into training and validation.
#[derive(Clone, Debug)]
pub struct CharCorpus {
    pub train: Arc<Vec<i64>>,
    pub val: Arc<Vec<i64>>,
}

impl CharCorpus {
    /// Reads a (gzipped or plain) text and encodes it with [`VOCAB`].
    pub fn read(path: &Path) -> Result<Self, Error> {
        let raw = std::fs::read(path).map_err(|e| Error::user(format!("cannot read `{}`: {e}", path.display())))?;
        let text = if raw.starts_with(&[0x1f, 0x8b]) {
            let mut out = String::new();
            flate2::read::GzDecoder::new(raw.as_slice())
                .read_to_string(&mut out)
                .map_err(|e| Error::user(format!("`{}` is not gzipped UTF-8 text: {e}", path.display())))?;
            out
        } else {
            String::from_utf8(raw).map_err(|e| Error::user(format!("`{}` is not UTF-8: {e}", path.display())))?
        };
        let tokens = encode(&text).map_err(|c| {
            Error::user(format!(
                "`{}` holds {c:?}, which is not in the example's vocabulary (VOCAB in examples/gpt.rs)",
                path.display()
            ))
        })?;
        let split = ((tokens.len() as f64) * (1.0 - VAL_FRACTION)) as usize;
        Ok(Self {
            val: Arc::new(tokens[split..].to_vec()),
            train: Arc::new(tokens[..split].to_vec()),
        })
    }
}

/// The tokens of `text`, or the first character outside [`VOCAB`].
pub fn encode(text: &str) -> Result<Vec<i64>, char> {
    text.chars().map(|c| VOCAB.find(c).map(|i| i as i64).ok_or(c)).collect()
}

/// The text of `tokens`.
pub fn decode(tokens: &[i64]) -> String {
    let chars: Vec<char> = VOCAB.chars().collect();
    tokens.iter().map(|&t| chars[t as usize]).collect()
}

/// SplitMix64: the window offsets' generator, four lines that `benches/pytorch/gpt.py` repeats
/// so that both frameworks see the same batches in the same order.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The start offsets of epoch `epoch`'s training windows: `count` uniform draws in
/// `0..tokens - block_size` from SplitMix64 seeded with `seed * 1000 + epoch`.
pub fn train_offsets(tokens: usize, block_size: usize, count: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut state = seed.wrapping_mul(1000).wrapping_add(epoch);
    let range = (tokens - block_size) as u64;
    (0..count).map(|_| (splitmix64(&mut state) % range) as usize).collect()
}

/// Inputs `[batch, block_size]` and the same windows shifted by one character, the targets.
#[derive(Clone, Debug)]
pub struct CharBatch {
    pub inputs: Tensor<2, Int>,
    pub targets: Tensor<2, Int>,
}

/// Tokens are integers: nothing to cast under any precision.
impl CastFloats for CharBatch {
    fn cast_floats(self, _dtype: FloatDType) -> Self {
        self
    }
}

/// Builds batches of windows from their start offsets.
#[derive(Clone, Debug)]
struct WindowBatcher {
    tokens: Arc<Vec<i64>>,
    block_size: usize,
}

impl Batcher<usize, CharBatch> for WindowBatcher {
    fn batch(&self, starts: Vec<usize>, device: &Device) -> CharBatch {
        let (n, t) = (starts.len(), self.block_size);
        let mut inputs = Vec::with_capacity(n * t);
        let mut targets = Vec::with_capacity(n * t);
        for start in starts {
            inputs.extend_from_slice(&self.tokens[start..start + t]);
            targets.extend_from_slice(&self.tokens[start + 1..start + t + 1]);
        }
        CharBatch {
            inputs: Tensor::from_data(TensorData::new(inputs, [n, t]), device),
            targets: Tensor::from_data(TensorData::new(targets, [n, t]), device),
        }
    }
}

/// The corpus as a Lightning datamodule. A training epoch is `batches_per_epoch` batches of
/// windows at random offsets, new ones each epoch (the trainer reloads the training loader every
/// epoch; the epoch count is in checkpoints, so a resumed fit goes on with the next epoch's
/// windows). Validation is the first `val_batches` batches of consecutive windows of the
/// held-out text, the same every time.
#[derive(Serialize, Deserialize, DataOptions)]
#[serde(default, deny_unknown_fields)]
pub struct ShakespeareData {
    /// The text file (gzipped or plain).
    path: PathBuf,
    /// Windows per batch.
    batch_size: usize,
    /// Characters per window (at most `--model.block_size`).
    block_size: usize,
    /// Training batches per epoch.
    batches_per_epoch: usize,
    /// Validation batches (at most what the held-out text holds).
    val_batches: usize,
    /// The windows' seed: the trainer's replaces it (`set_seed`).
    seed: u64,
    #[serde(skip)]
    corpus: Option<CharCorpus>,
    /// Training loaders handed out so far: the epoch whose windows come next.
    #[serde(skip)]
    epochs_served: u64,
}

/// The corpus shipped with the repository: `examples/data/shakespeare` in the source tree this
/// was compiled from, or `$BURN_LIGHTNING_DATA_DIR/shakespeare` where the variable is set (a
/// binary run away from its source tree: the GPU checks' pack, `scripts/gpu-pack.sh`), as
/// `MnistData::bundled_dir` finds MNIST.
pub fn bundled_corpus() -> PathBuf {
    let dir = match std::env::var_os("BURN_LIGHTNING_DATA_DIR") {
        Some(dir) => PathBuf::from(dir).join("shakespeare"),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/data/shakespeare"),
    };
    dir.join("tragedies.txt.gz")
}

impl Default for ShakespeareData {
    fn default() -> Self {
        Self {
            path: bundled_corpus(),
            batch_size: 16,
            block_size: 64,
            batches_per_epoch: 250,
            val_batches: 16,
            seed: 1337,
            corpus: None,
            epochs_served: 0,
        }
    }
}

impl DataModule<CharBatch> for ShakespeareData {
    fn set_seed(&mut self, seed: u64) {
        self.seed = seed;
    }

    fn setup(&mut self, _stage: Stage) -> Result<(), Error> {
        burn_lightning::check_batch_size(self.batch_size, "--data.batch_size")?;
        if self.block_size == 0 || self.batches_per_epoch == 0 || self.val_batches == 0 {
            return Err(Error::user(
                "--data.block_size, --data.batches_per_epoch and --data.val_batches must be at least 1",
            ));
        }
        if self.corpus.is_none() {
            let corpus = CharCorpus::read(&self.path)?;
            if corpus.train.len() <= self.block_size + 1 || corpus.val.len() <= self.block_size + 1 {
                return Err(Error::user(format!(
                    "`{}` is too short for windows of {} characters (--data.block_size): its training \
                     part has {} and its held-out part {}",
                    self.path.display(),
                    self.block_size,
                    corpus.train.len(),
                    corpus.val.len()
                )));
            }
            let val_windows = (corpus.val.len() - 1) / self.block_size;
            if val_windows < self.val_batches * self.batch_size {
                return Err(Error::user(format!(
                    "the held-out text has {val_windows} windows of {} characters, fewer than \
                     --data.val_batches {} x --data.batch_size {}: lower one of them",
                    self.block_size, self.val_batches, self.batch_size
                )));
            }
            self.corpus = Some(corpus);
        }
        Ok(())
    }

    fn train_dataloader(&mut self) -> Option<Loader<CharBatch>> {
        let corpus = self.corpus.as_ref()?;
        let count = self.batches_per_epoch * self.batch_size;
        let starts = train_offsets(
            corpus.train.len(),
            self.block_size,
            count,
            self.seed,
            self.epochs_served,
        );
        self.epochs_served += 1;
        let batcher = WindowBatcher {
            tokens: corpus.train.clone(),
            block_size: self.block_size,
        };
        Some(
            DataLoaderBuilder::new(batcher)
                .batch_size(self.batch_size)
                .build(InMemDataset::new(starts)),
        )
    }

    fn val_dataloader(&mut self) -> Option<Loader<CharBatch>> {
        let corpus = self.corpus.as_ref()?;
        let starts = (0..self.val_batches * self.batch_size)
            .map(|i| i * self.block_size)
            .collect();
        let batcher = WindowBatcher {
            tokens: corpus.val.clone(),
            block_size: self.block_size,
        };
        Some(
            DataLoaderBuilder::new(batcher)
                .batch_size(self.batch_size)
                .build(InMemDataset::new(starts)),
        )
    }

    fn test_dataloader(&mut self) -> Option<Loader<CharBatch>> {
        self.val_dataloader()
    }

    fn predict_dataloader(&mut self) -> Option<Loader<CharBatch>> {
        self.val_dataloader()
    }

    fn state_dict(&mut self) -> Option<serde_json::Value> {
        Some(serde_json::json!({ "epochs_served": self.epochs_served }))
    }

    fn load_state_dict(&mut self, state: serde_json::Value) -> Result<(), Error> {
        self.epochs_served = state["epochs_served"]
            .as_u64()
            .ok_or_else(|| Error::user("the checkpoint's datamodule state has no `epochs_served`"))?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Model

/// A linear layer with minGPT's initialization: weights from N(0, `std`), zero bias.
fn linear(d_input: usize, d_output: usize, std: f64, device: &Device) -> Linear {
    let mut layer = LinearConfig::new(d_input, d_output)
        .with_initializer(Initializer::Normal { mean: 0.0, std })
        .init(device);
    layer.bias = Some(Initializer::Zeros.init([d_output], device));
    layer
}

/// A pre-norm transformer block: `x + attn(ln_1(x))`, then `x + mlp(ln_2(x))`.
#[derive(Module, Debug)]
pub struct Block {
    ln_1: LayerNorm,
    attn: MultiHeadAttention,
    ln_2: LayerNorm,
    fc: Linear,
    gelu: Gelu,
    proj: Linear,
    resid_dropout: Dropout,
}

impl Block {
    fn new(hparams: &GptHparams, device: &Device) -> Self {
        let d = hparams.n_embd;
        // GPT-2's scaled initialization of the projections into the residual stream.
        let proj_std = INIT_STD / (2.0 * hparams.n_layer as f64).sqrt();
        let mut attn = MultiHeadAttentionConfig::new(d, hparams.n_head)
            .with_dropout(hparams.dropout)
            .init(device);
        attn.query = linear(d, d, INIT_STD, device);
        attn.key = linear(d, d, INIT_STD, device);
        attn.value = linear(d, d, INIT_STD, device);
        attn.output = linear(d, d, proj_std, device);
        Self {
            ln_1: LayerNormConfig::new(d).init(device),
            attn,
            ln_2: LayerNormConfig::new(d).init(device),
            fc: linear(d, 4 * d, INIT_STD, device),
            gelu: Gelu::new(),
            proj: linear(4 * d, d, proj_std, device),
            resid_dropout: DropoutConfig::new(hparams.dropout).init(),
        }
    }

    fn forward(&self, x: Tensor<3>, causal: Tensor<3, Bool>) -> Tensor<3> {
        let attended = self
            .attn
            .forward(MhaInput::self_attn(self.ln_1.forward(x.clone())).mask_attn(causal))
            .context;
        let x = x + self.resid_dropout.forward(attended);
        let mlp = self
            .proj
            .forward(self.gelu.forward(self.fc.forward(self.ln_2.forward(x.clone()))));
        x + self.resid_dropout.forward(mlp)
    }
}

/// A character-level GPT.
#[lightning_module]
#[derive(Module, Debug)]
pub struct Gpt {
    wte: Embedding,
    wpe: Embedding,
    drop: Dropout,
    blocks: Vec<Block>,
    ln_f: LayerNorm,
    /// Transformer blocks.
    #[hparam(default = 2)]
    n_layer: usize,
    /// Attention heads per block.
    #[hparam(default = 4)]
    n_head: usize,
    /// Width of the residual stream.
    #[hparam(default = 64)]
    n_embd: usize,
    /// The longest context (positions of the position embedding).
    #[hparam(default = 64)]
    block_size: usize,
    /// Dropout on the embeddings, the attention weights and the residual branches.
    #[hparam(default = 0.0)]
    dropout: f64,
    /// AdamW's peak learning rate.
    #[hparam(default = 3e-3)]
    lr: f64,
    /// The weight decay of the weight matrices (biases, norms and embeddings get none).
    #[hparam(default = 0.1)]
    weight_decay: f64,
    /// Optimizer steps of the linear warm-up from `lr / warmup_steps` to `lr`.
    #[hparam(default = 100)]
    warmup_steps: usize,
    /// Optimizer steps of the cosine decay from `lr` to `lr / 10` after the warm-up.
    #[hparam(default = 1900)]
    decay_steps: usize,
    /// Characters generated at each validation.
    #[hparam(default = 200)]
    sample_chars: usize,
    /// The losses of the validation batches so far, printed (their mean) at the end of each
    /// validation with more digits than the progress line shows.
    #[module(skip)]
    val_losses: Arc<Mutex<Vec<f64>>>,
}

impl Gpt {
    pub fn new(hparams: &GptHparams, device: &Device) -> Self {
        let embedding = |n| {
            EmbeddingConfig::new(n, hparams.n_embd)
                .with_initializer(Initializer::Normal {
                    mean: 0.0,
                    std: INIT_STD,
                })
                .init(device)
        };
        Self {
            wte: embedding(VOCAB.chars().count()),
            wpe: embedding(hparams.block_size),
            drop: DropoutConfig::new(hparams.dropout).init(),
            blocks: (0..hparams.n_layer).map(|_| Block::new(hparams, device)).collect(),
            ln_f: LayerNormConfig::new(hparams.n_embd).init(device),
            n_layer: hparams.n_layer,
            n_head: hparams.n_head,
            n_embd: hparams.n_embd,
            block_size: hparams.block_size,
            dropout: hparams.dropout,
            lr: hparams.lr,
            weight_decay: hparams.weight_decay,
            warmup_steps: hparams.warmup_steps,
            decay_steps: hparams.decay_steps,
            sample_chars: hparams.sample_chars,
            val_losses: Arc::default(),
        }
    }

    /// Logits `[batch * t, vocab]` of token windows `[batch, t]`.
    pub fn forward(&self, tokens: Tensor<2, Int>) -> Result<Tensor<2>, Error> {
        let [batch, t] = tokens.dims();
        if t > self.block_size {
            return Err(Error::user(format!(
                "windows of {t} characters are longer than the model's context: set \
                 --data.block_size at most --model.block_size ({})",
                self.block_size
            )));
        }
        let device = tokens.device();
        let positions = Tensor::<1, Int>::arange(0..t as i64, &device).reshape([1, t]);
        let mut x = self
            .drop
            .forward(self.wte.forward(tokens) + self.wpe.forward(positions));
        let causal = generate_autoregressive_mask(batch, t, &device);
        for block in &self.blocks {
            x = block.forward(x, causal.clone());
        }
        let x = self.ln_f.forward(x).reshape([batch * t, self.n_embd]);
        // Weight tying: the output layer is the token embedding, transposed.
        Ok(x.matmul(self.wte.weight.val().transpose()))
    }

    /// The mean cross-entropy of a batch, computed in f32 (as torch's autocast computes it).
    fn loss(&self, batch: CharBatch) -> Result<Tensor<1>, Error> {
        let [batch_size, t] = batch.targets.dims();
        let logits = self.forward(batch.inputs)?.cast(FloatDType::F32);
        Ok(burn::nn::loss::CrossEntropyLossConfig::new()
            .init(&logits.device())
            .forward(logits, batch.targets.reshape([batch_size * t])))
    }

    /// `count` characters after a newline, each drawn from the model's distribution (temperature
    /// 1) with a fixed seed, so that samples of successive validations compare.
    pub fn generate(&self, count: usize, device: &Device) -> Result<String, Error> {
        let mut tokens = vec![0i64]; // "\n"
        let mut state = 42u64;
        for _ in 0..count {
            let context = &tokens[tokens.len().saturating_sub(self.block_size)..];
            let input = Tensor::<2, Int>::from_data(TensorData::new(context.to_vec(), [1, context.len()]), device);
            let logits = self.forward(input)?.cast(FloatDType::F32);
            let last = logits.slice_dim(0, context.len() - 1..context.len());
            let probs: Vec<f32> = softmax(last, 1)
                .into_data()
                .try_to_vec::<f32>()
                .map_err(|e| Error::user(format!("cannot read the probabilities: {e:?}")))?;
            let draw = (splitmix64(&mut state) >> 11) as f32 / (1u64 << 53) as f32;
            let mut cumulative = 0.0;
            let next = probs
                .iter()
                .position(|p| {
                    cumulative += p;
                    draw < cumulative
                })
                .unwrap_or(probs.len() - 1);
            tokens.push(next as i64);
        }
        Ok(decode(&tokens[1..]))
    }

    /// The warm-up then cosine schedule, stepped every optimizer step.
    fn warmup_cosine(&self) -> LrSchedulerConfig {
        let (warmup, decay) = (self.warmup_steps.max(1), self.decay_steps.max(1));
        LrSchedulerConfig::new(move |lr| {
            SequentialLrSchedulerConfig::new(
                vec![
                    BurnScheduler::Linear(LinearLrSchedulerConfig::new(lr / warmup as f64, lr, warmup)),
                    BurnScheduler::Cosine(CosineAnnealingLrSchedulerConfig::new(lr, decay).with_min_lr(lr / 10.0)),
                ],
                vec![warmup],
            )
            .init()
        })
        .interval(Interval::Step)
    }
}

#[lightning_module]
impl Gpt {
    #[hook]
    fn training_step(&self, batch: CharBatch, _batch_idx: usize, cx: &mut StepContext) -> Result<Tensor<1>, Error> {
        let loss = self.loss(cx.cast_input(batch))?;
        cx.log_with("train_loss", &loss, LogOptions::new().prog_bar(true));
        Ok(loss)
    }

    #[hook]
    fn validation_step(&self, batch: CharBatch, _batch_idx: usize, cx: &mut StepContext) -> Result<(), Error> {
        let loss = self.loss(cx.cast_input(batch))?;
        if cx.stage != RunningStage::SanityChecking {
            let value = f64::from(loss.clone().into_scalar::<f32>());
            self.val_losses.lock().expect("not poisoned").push(value);
        }
        cx.log_with("val_loss", loss, LogOptions::new().prog_bar(true));
        Ok(())
    }

    /// The loss on the held-out text (`test` runs on the validation windows: the corpus has
    /// no third split).
    #[hook]
    fn test_step(&self, batch: CharBatch, _batch_idx: usize, cx: &mut StepContext) -> Result<(), Error> {
        let loss = self.loss(cx.cast_input(batch))?;
        cx.log("test_loss", loss);
        Ok(())
    }

    /// The most likely next character at every position `[batch, t]`.
    #[hook]
    fn predict_step(&self, batch: CharBatch, _batch_idx: usize) -> Result<Tensor<2, Int>, Error> {
        let [batch_size, t] = batch.inputs.dims();
        Ok(self.forward(batch.inputs)?.argmax(1).reshape([batch_size, t]))
    }

    /// Counts the tokens trained on, and notes when the first batch was done.
    #[hook]
    fn on_train_batch_end(&mut self, _outputs: Option<&StepOutput>, batch: &CharBatch, _batch_idx: usize) {
        let tokens = batch.inputs.dims().iter().product::<usize>();
        if FIRST_BATCH_DONE.set(Instant::now()).is_err() {
            TOKENS_AFTER_FIRST_BATCH.fetch_add(tokens, Ordering::Relaxed);
        }
    }

    /// The validation loss to 4 decimals (`step S: val_loss L`, what `benches/run_all.sh`
    /// reads), and a sample of generated text, printed and written to
    /// `<run dir>/samples/step_N.txt`.
    #[hook]
    fn on_validation_epoch_end(&mut self, cx: &mut EpochContext) -> Result<(), Error> {
        if cx.stage == RunningStage::SanityChecking {
            return Ok(());
        }
        let losses = std::mem::take(&mut *self.val_losses.lock().expect("not poisoned"));
        let mean = losses.iter().sum::<f64>() / losses.len().max(1) as f64;
        cx.print(format!("step {}: val_loss {mean:.4}", cx.global_step));
        if self.sample_chars == 0 {
            return Ok(());
        }
        let device = cx.device.clone();
        let text = self.valid().generate(self.sample_chars, &device.without_autodiff())?;
        if let Some(dir) = cx.log_dir() {
            let path = dir.join("samples").join(format!("step_{}.txt", cx.global_step));
            burn_lightning::checkpoint::run_dir::write_atomic(&path, text.as_bytes())?;
        }
        cx.print(format!("sample at step {}:\n{text}\n", cx.global_step));
        Ok(())
    }

    /// AdamW (torch's defaults, nanoGPT's beta_2 0.99) with minGPT's two param groups.
    #[hook]
    fn configure_optimizers(&self) -> OptimizerConfig {
        let adamw = AdamWConfig::new().with_beta_2(0.99).with_epsilon(1e-8);
        OptimizerConfig::new(adamw, self.lr)
            .param_group(ParamGroupConfig::new(Params::decay(self)).weight_decay(self.weight_decay))
            .param_group(ParamGroupConfig::new(Params::no_decay(self)).weight_decay(0.0))
            .with_scheduler(self.warmup_cosine())
    }
}

/// When `run` started (the process, for the figures' purposes).
static STARTED: OnceLock<Instant> = OnceLock::new();
/// When the first training batch (forward, backward and, without accumulation, the optimizer
/// step) was done.
static FIRST_BATCH_DONE: OnceLock<Instant> = OnceLock::new();
/// Input tokens of the training batches after the first.
static TOKENS_AFTER_FIRST_BATCH: AtomicUsize = AtomicUsize::new(0);

/// The process's peak resident memory in MB (`VmHWM`; Linux only).
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn main() -> ExitCode {
    run(std::env::args_os())
}

/// The example with its command line (program name first).
pub fn run(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let started = *STARTED.get_or_init(Instant::now);
    let cli = LightningCli::<Gpt, ShakespeareData>::new(Gpt::new).trainer_defaults(
        TrainerConfig::default()
            .max_steps(2000)
            .seed(1337)
            .gradient_clip_val(1.0)
            .reload_dataloaders_every_n_epochs(1)
            .default_root_dir("target/gpt"),
    );
    let run = match cli.run_from(args) {
        Ok(Some(run)) => run,
        Ok(None) => return ExitCode::SUCCESS,
        Err(error) => return error.exit(),
    };
    if let Some(first) = FIRST_BATCH_DONE.get() {
        let tokens = TOKENS_AFTER_FIRST_BATCH.load(Ordering::Relaxed);
        println!(
            "throughput: {:.0} tokens/s after the first batch (validation included); first batch done \
             {:.2} s after start; peak RSS {} MB",
            tokens as f64 / first.elapsed().as_secs_f64(),
            (*first - started).as_secs_f64(),
            peak_rss_mb().map_or("unknown".into(), |mb| format!("{mb:.0}"))
        );
    }
    let val_loss = run.trainer.callback_metrics().get("val_loss");
    println!(
        "validation loss: {} (run directory: {})",
        val_loss.map_or("not logged".into(), |loss| format!("{loss:.4}")),
        run.trainer.log_dir().map_or("none".into(), |d| d.display().to_string())
    );
    ExitCode::SUCCESS
}
