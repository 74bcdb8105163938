//! A GAN on MNIST with manual optimization and two optimizers: Lightning's GAN example.
//!
//! `configure_optimizers` returns one Adam for the generator and one for the discriminator,
//! each given its own sub-module (`for_params`). `training_step` gets their handles with
//! `self.optimizers()` and steps each with the gradients of its own loss, toggling it while its
//! loss is back-propagated. After every epoch a grid of 64 digits generated from the same noise
//! is written to `<run directory>/samples/epoch_NNN.png`.
//!
//! `cargo run --release --example gan [-- EPOCHS]` (default 40, batches of 32 from the 8,000
//! shipped training digits; 5 to 10 seconds an epoch on one core). Digits take shape after about
//! 10 epochs and are mostly readable, if speckled, after 40.

#[path = "common/mnist.rs"]
mod mnist;

use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::optim::AdamConfig;
use burn::tensor::Distribution;
use burn::tensor::activation::{leaky_relu, softplus, tanh};
use burn_lightning::prelude::*;
use mnist::{MnistBatch, MnistData, PIXELS};

/// Size of the generator's input noise.
const LATENT: usize = 64;
/// The sample grid: `GRID` x `GRID` digits.
const GRID: usize = 8;

/// Three linear layers with LeakyReLU(0.2) between them, and dropout after each (while
/// training; 0 for none).
#[derive(Module, Debug)]
pub struct Mlp {
    l1: Linear,
    l2: Linear,
    l3: Linear,
    dropout: Dropout,
}

impl Mlp {
    fn new(sizes: [usize; 4], dropout: f64, device: &Device) -> Self {
        Self {
            l1: LinearConfig::new(sizes[0], sizes[1]).init(device),
            l2: LinearConfig::new(sizes[1], sizes[2]).init(device),
            l3: LinearConfig::new(sizes[2], sizes[3]).init(device),
            dropout: DropoutConfig::new(dropout).init(),
        }
    }

    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let x = self.dropout.forward(leaky_relu(self.l1.forward(x), 0.2));
        let x = self.dropout.forward(leaky_relu(self.l2.forward(x), 0.2));
        self.l3.forward(x)
    }
}

/// An MLP generator and discriminator (with dropout), trained with the non-saturating GAN loss.
#[lightning_module]
#[derive(Module, Debug)]
pub struct Gan {
    /// Noise `[n, 64]` to images `[n, 784]` (through tanh).
    generator: Mlp,
    /// Images to the logit that each is real.
    discriminator: Mlp,
    /// Adam's learning rate, for both optimizers.
    #[hparam(default = 2e-4)]
    lr: f64,
    /// Adam's beta1, for both optimizers (0.5, as DCGAN).
    #[hparam(default = 0.5)]
    beta1: f64,
    /// The noise the sample grids are generated from, the same every epoch.
    #[module(skip)]
    fixed_noise: Vec<f32>,
}

impl Gan {
    fn new(hparams: &GanHparams, device: &Device) -> Self {
        Self {
            generator: Mlp::new([LATENT, 256, 512, PIXELS], 0.0, device),
            // Dropout keeps the discriminator from overpowering the generator.
            discriminator: Mlp::new([PIXELS, 512, 256, 1], 0.3, device),
            lr: hparams.lr,
            beta1: hparams.beta1,
            fixed_noise: normal_noise(GRID * GRID * LATENT, 42),
        }
    }

    /// Images in [-1, 1], `[n, 784]`, from noise `[n, LATENT]`.
    fn generate(&self, noise: Tensor<2>) -> Tensor<2> {
        tanh(self.generator.forward(noise))
    }

    /// The discriminator's logit that each image is real, `[n, 1]`.
    fn discriminate(&self, images: Tensor<2>) -> Tensor<2> {
        self.discriminator.forward(images)
    }

    fn adam(&self) -> OptimizerConfig {
        OptimizerConfig::new(AdamConfig::new().with_beta_1(self.beta1 as f32), self.lr)
    }

    /// The sample grid as PNG bytes: generated digits from the fixed noise, white on black.
    fn sample_grid_png(&self) -> Result<Vec<u8>, Error> {
        let device = self.generator.l1.weight.device();
        let noise = Tensor::<2>::from_data(
            TensorData::new(self.fixed_noise.clone(), [GRID * GRID, LATENT]),
            &device,
        );
        let images: Vec<f32> = self
            .generate(noise)
            .detach()
            .into_data()
            .try_to_vec::<f32>()
            .map_err(|e| Error::user(format!("cannot read the generated images: {e:?}")))?;
        const PAD: usize = 2;
        let side = GRID * (28 + PAD) + PAD;
        let mut pixels = vec![0u8; side * side];
        for (k, image) in images.chunks(PIXELS).enumerate() {
            let (top, left) = (PAD + (k / GRID) * (28 + PAD), PAD + (k % GRID) * (28 + PAD));
            for (i, value) in image.iter().enumerate() {
                let gray = ((value + 1.0) * 127.5).round().clamp(0.0, 255.0) as u8;
                pixels[(top + i / 28) * side + left + i % 28] = gray;
            }
        }
        let mut bytes = Vec::new();
        let mut encoder = png::Encoder::new(&mut bytes, side as u32, side as u32);
        encoder.set_color(png::ColorType::Grayscale);
        encoder.set_depth(png::BitDepth::Eight);
        let encode = |e: png::EncodingError| Error::user(format!("cannot encode the sample grid: {e}"));
        let mut writer = encoder.write_header().map_err(encode)?;
        writer.write_image_data(&pixels).map_err(encode)?;
        writer.finish().map_err(encode)?;
        Ok(bytes)
    }
}

#[lightning_module(manual_optimization)]
impl Gan {
    /// One generator step, then one discriminator step (Lightning's GAN `training_step`).
    #[hook]
    fn training_step(&mut self, batch: MnistBatch, _batch_idx: usize, cx: &mut StepContext) {
        let (opt_g, opt_d) = self.optimizers();
        // Undo the loader's normalization, to the generator's range [-1, 1].
        let real = batch
            .images
            .mul_scalar(0.3081)
            .add_scalar(0.1307)
            .mul_scalar(2.0)
            .sub_scalar(1.0);
        let [n, _] = real.dims();
        let noise = Tensor::random([n, LATENT], Distribution::Normal(0.0, 1.0), &real.device());

        // Generator: make the discriminator call its images real. Only the generator's
        // gradients are kept, and only its parameters move.
        cx.toggle_optimizer(opt_g);
        let fake = self.generate(noise);
        let g_loss = softplus(self.discriminate(fake.clone()).neg(), 1.0).mean();
        let grads = cx.manual_backward(self, g_loss.clone());
        opt_g.step(cx, self, grads);
        cx.untoggle_optimizer(opt_g);

        // Discriminator: real images are real (a target of 0.9, one-sided label smoothing, so
        // it does not overpower the generator), generated ones fake.
        cx.toggle_optimizer(opt_d);
        let real_logits = self.discriminate(real);
        let real_loss = (softplus(real_logits.clone().neg(), 1.0).mul_scalar(0.9)
            + softplus(real_logits, 1.0).mul_scalar(0.1))
        .mean();
        let fake_loss = softplus(self.discriminate(fake.detach()), 1.0).mean();
        let d_loss = (real_loss + fake_loss).div_scalar(2.0);
        let grads = cx.manual_backward(self, d_loss.clone());
        opt_d.step(cx, self, grads);
        cx.untoggle_optimizer(opt_d);

        cx.log_with("g_loss", g_loss, LogOptions::new().on_epoch(true).prog_bar(true));
        cx.log_with("d_loss", d_loss, LogOptions::new().on_epoch(true).prog_bar(true));
    }

    /// Writes this epoch's sample grid into the run directory, atomically.
    #[hook]
    fn on_train_epoch_end(&mut self, cx: &mut EpochContext) -> Result<(), Error> {
        let Some(dir) = cx.log_dir() else { return Ok(()) };
        let path = dir.join("samples").join(format!("epoch_{:03}.png", cx.current_epoch));
        burn_lightning::checkpoint::run_dir::write_atomic(&path, &self.sample_grid_png()?)?;
        cx.print(format!("samples: {}", path.display()));
        Ok(())
    }

    /// Adam(2e-4, beta1 0.5) for each network, each with its own parameters.
    #[hook]
    fn configure_optimizers(&self) -> (OptimizerConfig, OptimizerConfig) {
        (
            self.adam().for_params(&self.generator),
            self.adam().for_params(&self.discriminator),
        )
    }
}

/// `count` standard normal values from a seeded generator (splitmix64 and Box-Muller): the
/// grids' noise, the same on every run and backend.
fn normal_noise(count: usize, seed: u64) -> Vec<f32> {
    let mut state = seed;
    let mut uniform = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        // In (0, 1]: the logarithm below stays finite.
        ((z >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    };
    (0..count)
        .map(|_| {
            let (u, v) = (uniform(), uniform());
            ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
        })
        .collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    mnist::trace_hooks_from_env();
    let epochs: usize = std::env::args().nth(1).map(|a| a.parse()).transpose()?.unwrap_or(40);
    let device = Device::default();
    let model = Gan::new(&GanHparams::new(), &device);
    // Every shipped training digit trains (no validation items: the GAN has no validation step).
    let mut data = MnistData::new(MnistData::bundled_dir(), 32, 0, 7);
    let mut trainer = Trainer::builder()
        .max_epochs(epochs)
        .seed(7)
        .device(device)
        .default_root_dir("target/gan")
        .build()?;
    trainer.fit(model, &mut data)?;
    Ok(())
}
