//! What freezing part of a network saves per training step: the step time of an MLP with every
//! layer trainable (a), with its first layers frozen, a frozen prefix such as a pretrained
//! backbone (b), and with the same number of layers frozen in its middle (c), frozen as
//! `BackboneFinetuning` and `freeze` freeze them (burn's `set_require_grad(false)`).
//!
//! A frozen prefix records no autodiff graph and gets no gradient: its backward costs nothing.
//! A frozen middle still lies between the loss and a trainable layer, so the gradient with
//! respect to its inputs is still propagated through it; only its weights' gradients and their
//! update are saved.
//!
//! The network: `layers` (default 6) `Linear` layers of `width` (default 512) with ReLUs between,
//! a batch of 256, Adam; a step is forward, backward and the optimizer step, read back (the
//! loss's value) so that its work is done when the clock stops. The three sides alternate
//! (their order rotates every repetition) `--reps` times (default 15), each timing `--steps`
//! steps (default 20) after 3 warm-up steps; the `RATIO` line gives the median step time of (b)
//! and (c) against (a), wall clock and CPU time (all threads, from `/proc`).
//!
//! `cargo bench --bench finetuning [-- --layers N --frozen N --width N --steps N --reps N]`
//! (`--frozen`, default 4: how many layers (b) and (c) freeze).

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::activation::relu;
use burn::tensor::{Distribution, Tensor, TensorData};
use burn_lightning::callbacks::finetuning::freeze;
use burn_lightning::{Device, Part};
use std::time::Instant;

#[derive(Module, Debug)]
struct Mlp {
    layers: Vec<Linear>,
}

impl Mlp {
    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let last = self.layers.len() - 1;
        self.layers.iter().enumerate().fold(x, |x, (i, layer)| {
            let y = layer.forward(x);
            if i == last { y } else { relu(y) }
        })
    }
}

struct Settings {
    layers: usize,
    frozen: usize,
    width: usize,
    steps: usize,
    reps: usize,
}

fn setting(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == &format!("--{name}"))
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().unwrap_or_else(|_| panic!("--{name} takes a number, not {v}")))
        .unwrap_or(default)
}

/// The process's CPU time so far (all threads), in seconds; 0 where `/proc` is missing.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // utime and stime, fields 14 and 15, after the command name in parentheses.
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks: f64 = fields
        .get(11..13)
        .map_or(0.0, |f| f.iter().filter_map(|v| v.parse::<f64>().ok()).sum());
    ticks / 100.0
}

#[derive(Clone, Copy, Debug)]
enum Side {
    AllTrainable,
    FrozenPrefix,
    FrozenMiddle,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::AllTrainable => "a: all trainable",
            Side::FrozenPrefix => "b: frozen prefix",
            Side::FrozenMiddle => "c: frozen middle",
        }
    }
}

struct Run {
    model: Mlp,
    optimizer: ModuleOptimizer,
    x: Tensor<2>,
    y: Tensor<2>,
}

impl Run {
    fn new(side: Side, settings: &Settings, device: &Device) -> Self {
        device.seed(7);
        let layers = (0..settings.layers)
            .map(|_| LinearConfig::new(settings.width, settings.width).init(device))
            .collect();
        let mut model = Mlp { layers };
        let frozen = match side {
            Side::AllTrainable => 0..0,
            Side::FrozenPrefix => 0..settings.frozen,
            // The same number of layers, after a trainable first one.
            Side::FrozenMiddle => 1..settings.frozen + 1,
        };
        for i in frozen {
            let part = Part::of(&model.layers[i]);
            model = freeze(model, &part, true);
        }
        let batch = 256;
        let x = Tensor::random([batch, settings.width], Distribution::Normal(0.0, 1.0), device);
        let y = Tensor::random([batch, settings.width], Distribution::Normal(0.0, 1.0), device);
        Self {
            model,
            optimizer: AdamConfig::new().init(),
            x,
            y,
        }
    }

    fn step(&mut self) -> f32 {
        let loss = (self.model.forward(self.x.clone()) - self.y.clone())
            .powi_scalar(2)
            .mean();
        let grads = GradientsParams::from_grads(loss.backward(), &self.model);
        self.model = self.optimizer.step(1e-4, self.model.clone(), grads);
        let value: TensorData = loss.into_data();
        value.try_to_vec::<f32>().unwrap()[0]
    }

    /// Seconds per step over `steps` steps: wall clock and CPU time.
    fn time(&mut self, steps: usize) -> (f64, f64) {
        let (started, cpu) = (Instant::now(), cpu_seconds());
        for _ in 0..steps {
            std::hint::black_box(self.step());
        }
        (
            started.elapsed().as_secs_f64() / steps as f64,
            (cpu_seconds() - cpu) / steps as f64,
        )
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let settings = Settings {
        layers: setting(&args, "layers", 6),
        frozen: setting(&args, "frozen", 4),
        width: setting(&args, "width", 512),
        steps: setting(&args, "steps", 20),
        reps: setting(&args, "reps", 15),
    };
    assert!(
        settings.frozen + 1 < settings.layers,
        "--frozen must leave a trainable layer after the middle"
    );
    let device = Device::default().autodiff();
    let sides = [Side::AllTrainable, Side::FrozenPrefix, Side::FrozenMiddle];
    let mut runs: Vec<Run> = sides.iter().map(|side| Run::new(*side, &settings, &device)).collect();
    for run in &mut runs {
        run.time(3);
    }
    let mut wall = vec![Vec::new(); sides.len()];
    let mut cpu = vec![Vec::new(); sides.len()];
    for rep in 0..settings.reps {
        for k in 0..sides.len() {
            let i = (k + rep) % sides.len();
            let (w, c) = runs[i].time(settings.steps);
            wall[i].push(w);
            cpu[i].push(c);
        }
    }
    println!(
        "{} Linear layers of {} (batch 256, Adam), {} of them frozen; median of {} repetitions of {} steps",
        settings.layers, settings.width, settings.frozen, settings.reps, settings.steps
    );
    let medians: Vec<(f64, f64)> = (0..sides.len())
        .map(|i| (median(&mut wall[i]), median(&mut cpu[i])))
        .collect();
    for (side, (w, c)) in sides.iter().zip(&medians) {
        println!(
            "BENCH side={:?} wall_ms_per_step={:.3} cpu_ms_per_step={:.3}  ({})",
            side,
            w * 1e3,
            c * 1e3,
            side.name()
        );
    }
    let (wall_a, cpu_a) = medians[0];
    println!(
        "RATIO frozen_prefix/all_trainable wall={:.3} cpu={:.3}  frozen_middle/all_trainable wall={:.3} cpu={:.3}",
        medians[1].0 / wall_a,
        medians[1].1 / cpu_a,
        medians[2].0 / wall_a,
        medians[2].1 / cpu_a
    );
}
