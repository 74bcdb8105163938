//! Several optimizers (Lightning's GAN): `configure_optimizers` returns a tuple or an array,
//! manual optimization steps each through its handle, and a step of one optimizer moves only its
//! own parameters. What does not compile (several optimizers under automatic optimization,
//! `cx.optimizer_step` with several) is in `tests/ui`.

mod common;

use burn::nn::{Initializer, Linear, LinearConfig};
use burn::optim::lr_scheduler::step::StepLrSchedulerConfig;
use burn::optim::{AdamConfig, SgdConfig};
use burn_lightning::prelude::*;
use common::recording::{Recording, metric_calls};
use common::{Pair, pair_loader, values};
use std::sync::{Arc, Mutex};

/// What a test's `training_step` does with the two optimizers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Plan {
    /// Lightning's GAN step: the generator's loss (through the discriminator) steps the
    /// generator, then the discriminator's loss steps the discriminator.
    Gan,
    /// The generator's loss, back-propagated through both, steps the generator only.
    GeneratorOnly,
    /// The discriminator's loss steps the discriminator only.
    DiscriminatorOnly,
    /// Toggles the generator, then steps the discriminator with those gradients (a mistake).
    WrongGradients,
    /// The generator steps every batch; the discriminator sums two batches' gradients and steps
    /// every second batch.
    AccumulateDiscriminator,
    /// Steps the discriminator's scheduler by hand every batch, the generator's never.
    StepOneScheduler,
}

type Log = Arc<Mutex<Vec<String>>>;

/// A "generator" (32 -> 8) and a "discriminator" (8 -> 2) on the shared regression pairs.
#[lightning_module]
#[derive(Module, Debug)]
pub struct TwoNets {
    generator: Linear,
    discriminator: Linear,
    #[module(skip)]
    plan: Plan,
    #[module(skip)]
    log: Log,
    /// Optimizer configurations: see [`Optimizers`].
    #[module(skip)]
    optimizers: Optimizers,
    /// Gradients held over from the previous batch (summed by hand).
    #[module(skip)]
    held: Arc<Mutex<Option<Gradients>>>,
}

/// How `configure_optimizers` splits the parameters (the bad ones are errors).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Optimizers {
    /// Generator and discriminator, each its own, with step schedulers.
    Split,
    /// Both optimizers update every parameter.
    BothEverything,
    /// Both optimizers update the discriminator.
    Shared,
    /// Generator and discriminator, each its own Adam (optimizers with state to checkpoint).
    AdamSplit,
}

fn new(plan: Plan, optimizers: Optimizers) -> (TwoNets, Log) {
    let device = Device::default().autodiff();
    let log = Log::default();
    let init = |i, o, value| {
        LinearConfig::new(i, o)
            .with_initializer(Initializer::Constant { value })
            .init(&device)
    };
    let module = TwoNets {
        generator: init(32, 8, 0.05),
        discriminator: init(8, 2, 0.1),
        plan,
        log: log.clone(),
        optimizers,
        held: Default::default(),
    };
    (module, log)
}

impl TwoNets {
    fn loss(&self, batch: &Pair) -> Tensor<1> {
        let predicted = self.discriminator.forward(self.generator.forward(batch.x.clone()));
        (predicted - batch.y.clone()).powi_scalar(2).mean()
    }

    fn note(&self, line: String) {
        self.log.lock().unwrap().push(line);
    }

    fn has_grad(&self, grads: &Gradients) -> (bool, bool) {
        (
            grads.get::<2>(self.generator.weight.id).is_some(),
            grads.get::<2>(self.discriminator.weight.id).is_some(),
        )
    }
}

#[lightning_module(manual_optimization)]
impl TwoNets {
    #[hook]
    fn training_step(&mut self, batch: Pair, batch_idx: usize, cx: &mut StepContext) {
        let (opt_g, opt_d) = self.optimizers();
        match self.plan {
            Plan::Gan => {
                cx.toggle_optimizer(opt_g);
                let grads = cx.manual_backward(self, self.loss(&batch));
                let (g, d) = self.has_grad(&grads);
                self.note(format!("toggled g: grads of g {g}, of d {d}"));
                opt_g.step(cx, self, grads);
                cx.untoggle_optimizer(opt_g);
                cx.toggle_optimizer(opt_d);
                let grads = cx.manual_backward(self, self.loss(&batch).neg());
                let (g, d) = self.has_grad(&grads);
                self.note(format!("toggled d: grads of g {g}, of d {d}"));
                opt_d.step(cx, self, grads);
                cx.untoggle_optimizer(opt_d);
            }
            Plan::GeneratorOnly => {
                // No toggle: the gradients hold both nets; the step applies the generator's.
                let grads = cx.manual_backward(self, self.loss(&batch));
                let (g, d) = self.has_grad(&grads);
                self.note(format!("untoggled: grads of g {g}, of d {d}"));
                opt_g.step(cx, self, grads);
            }
            Plan::DiscriminatorOnly => {
                let grads = cx.manual_backward(self, self.loss(&batch));
                opt_d.step(cx, self, grads);
            }
            Plan::WrongGradients => {
                cx.toggle_optimizer(opt_g);
                let grads = cx.manual_backward(self, self.loss(&batch));
                opt_d.step(cx, self, grads);
            }
            Plan::AccumulateDiscriminator => {
                cx.toggle_optimizer(opt_g);
                let grads = cx.manual_backward(self, self.loss(&batch));
                opt_g.step(cx, self, grads);
                cx.toggle_optimizer(opt_d);
                let mut grads = cx.manual_backward(self, self.loss(&batch));
                grads.scale(self, 0.5);
                let held = self.held.lock().unwrap().take();
                match held {
                    None => *self.held.lock().unwrap() = Some(grads),
                    Some(mut sum) => {
                        sum.accumulate(self, grads);
                        opt_d.step(cx, self, sum);
                    }
                }
            }
            Plan::StepOneScheduler => {
                let lrs = |cx: &mut StepContext| {
                    let g = cx.optimizer_at(opt_g).map(|o| o.lr());
                    let d = cx.optimizer_at(opt_d).map(|o| o.lr());
                    format!("batch {batch_idx}: lr g {g:?}, lr d {d:?}")
                };
                let line = lrs(cx);
                self.note(line);
                assert_eq!(cx.lr_schedulers().count(), 2, "both optimizers have a scheduler");
                cx.lr_scheduler_of(opt_d).expect("opt_d has a scheduler").step();
            }
        }
    }

    #[hook]
    fn on_before_backward(&mut self, _loss: &Tensor<1>) {
        self.note("on_before_backward".into());
    }

    #[hook]
    fn on_after_backward(&mut self, _grads: &Gradients) {
        self.note("on_after_backward".into());
    }

    #[hook]
    fn on_before_optimizer_step(&mut self, optimizer: &Optimizer, _grads: &Gradients) {
        self.note(format!("on_before_optimizer_step({})", optimizer.index()));
    }

    #[hook]
    fn configure_optimizers(&self) -> (OptimizerConfig, OptimizerConfig) {
        let sgd = |lr| OptimizerConfig::new(SgdConfig::new(), lr);
        let schedule = || LrSchedulerConfig::new(|lr| StepLrSchedulerConfig::new(lr, 1).with_gamma(0.5).init());
        match self.optimizers {
            Optimizers::Split => (
                sgd(0.1).for_params(&self.generator).with_scheduler(schedule()),
                sgd(0.2).for_params(&self.discriminator).with_scheduler(schedule()),
            ),
            Optimizers::BothEverything => (sgd(0.1), sgd(0.2)),
            Optimizers::Shared => (
                sgd(0.1).for_params(&self.generator).for_params(&self.discriminator),
                sgd(0.2).for_params(&self.discriminator),
            ),
            Optimizers::AdamSplit => (
                OptimizerConfig::new(AdamConfig::new().init(), 0.01).for_params(&self.generator),
                OptimizerConfig::new(AdamConfig::new().init(), 0.02).for_params(&self.discriminator),
            ),
        }
    }
}

fn builder(dir: &std::path::Path) -> TrainerBuilder<TwoNets> {
    Trainer::builder()
        .default_root_dir(dir)
        .enable_progress_bar(false)
        .enable_checkpointing(false)
        .enable_model_summary(false)
        .enable_logger(false)
        .max_epochs(1)
}

/// Fits one epoch of 4 batches.
fn fit(module: TwoNets) -> (Result<TwoNets, FitError<TwoNets>>, Trainer<TwoNets>) {
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = builder(dir.path()).build().unwrap();
    let result = trainer.fit(module, Loaders::fit(pair_loader(16, 4), None));
    (result, trainer)
}

fn weights(module: &TwoNets) -> (Vec<f32>, Vec<f32>) {
    (
        values(module.generator.weight.val()),
        values(module.discriminator.weight.val()),
    )
}

#[test]
fn stepping_one_optimizer_leaves_the_other_nets_weights_unchanged_bit_for_bit() {
    let (initial_g, initial_d) = weights(&new(Plan::Gan, Optimizers::Split).0);

    // The generator's loss flows through the discriminator, which gets gradients: the
    // generator's step applies only its own.
    let (module, log) = new(Plan::GeneratorOnly, Optimizers::Split);
    let (trained, _) = fit(module);
    let (g, d) = weights(&trained.unwrap());
    assert_eq!(d, initial_d, "the discriminator is not the generator optimizer's");
    assert_ne!(g, initial_g, "the generator trained");
    assert!(
        log.lock()
            .unwrap()
            .contains(&"untoggled: grads of g true, of d true".to_string()),
        "without a toggle, manual_backward returns every gradient"
    );

    let (trained, _) = fit(new(Plan::DiscriminatorOnly, Optimizers::Split).0);
    let (g, d) = weights(&trained.unwrap());
    assert_eq!(g, initial_g, "the generator is not the discriminator optimizer's");
    assert_ne!(d, initial_d, "the discriminator trained");
}

#[test]
fn a_gan_step_toggles_each_optimizer_and_calls_the_hooks_per_backward_and_per_optimizer() {
    let (module, log) = new(Plan::Gan, Optimizers::Split);
    let (trained, trainer) = fit(module);
    let (g, d) = weights(&trained.unwrap());
    let (initial_g, initial_d) = weights(&new(Plan::Gan, Optimizers::Split).0);
    assert_ne!(g, initial_g);
    assert_ne!(d, initial_d);

    let one_batch = [
        "on_before_backward",
        "on_after_backward",
        "toggled g: grads of g true, of d false",
        "on_before_optimizer_step(0)",
        "on_before_backward",
        "on_after_backward",
        "toggled d: grads of g false, of d true",
        "on_before_optimizer_step(1)",
    ];
    let expected: Vec<String> = one_batch
        .iter()
        .cycle()
        .take(4 * one_batch.len())
        .map(|s| s.to_string())
        .collect();
    assert_eq!(*log.lock().unwrap(), expected);
    // Lightning 2.x counts each optimizer's step: two per batch.
    assert_eq!(trainer.global_step(), 8);
}

#[test]
fn max_steps_counts_the_steps_of_every_optimizer() {
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = builder(dir.path()).max_epochs(10).max_steps(6).build().unwrap();
    let (module, log) = new(Plan::Gan, Optimizers::Split);
    trainer.fit(module, Loaders::fit(pair_loader(16, 4), None)).unwrap();
    assert_eq!(trainer.global_step(), 6);
    let steps = log
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.starts_with("on_before_optimizer_step"))
        .count();
    assert_eq!(steps, 6, "three batches of two steps");
}

#[test]
fn gradients_summed_by_hand_step_the_discriminator_every_second_batch() {
    let (module, log) = new(Plan::AccumulateDiscriminator, Optimizers::Split);
    let (trained, trainer) = fit(module);
    trained.unwrap();
    let steps: Vec<String> = log
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.starts_with("on_before_optimizer_step"))
        .cloned()
        .collect();
    assert_eq!(
        steps,
        [0, 0, 1, 0, 0, 1].map(|i| format!("on_before_optimizer_step({i})")),
        "the generator every batch, the discriminator every second"
    );
    assert_eq!(trainer.global_step(), 6);
}

#[test]
fn stepping_with_the_gradients_of_another_toggled_optimizer_is_an_error() {
    let (module, _) = new(Plan::WrongGradients, Optimizers::Split);
    let (initial_g, initial_d) = weights(&module);
    let (result, _) = fit(module);
    let error = result.expect_err("an error, not a silent no-op");
    let message = error.error.to_string();
    assert!(
        message.contains("optimizer 1 was stepped with gradients that hold none of its parameters"),
        "{message}"
    );
    assert_eq!(weights(&error.model), (initial_g, initial_d), "nothing was updated");
}

#[test]
fn several_optimizers_must_not_share_parameters() {
    for (optimizers, expected) in [
        (Optimizers::BothEverything, "optimizer 0 of 2 updates every parameter"),
        (Optimizers::Shared, "optimizers 0 and 1 share parameters"),
    ] {
        let (result, _) = fit(new(Plan::Gan, optimizers).0);
        let message = result.expect_err("refused").error.to_string();
        assert!(message.contains("configure_optimizers"), "{message}");
        assert!(message.contains(expected), "{message}");
        assert!(message.contains("for_params"), "says what to change: {message}");
    }
}

#[test]
fn each_optimizers_scheduler_is_stepped_by_hand_and_monitored_under_its_own_key() {
    let dir = tempfile::tempdir().unwrap();
    let (logger, calls) = Recording::new(dir.path());
    let mut trainer = builder(dir.path())
        .enable_logger(true)
        .logger(logger)
        .log_every_n_steps(1)
        .callback(LearningRateMonitor::new().logging_interval(Interval::Step))
        .build()
        .unwrap();
    let (module, log) = new(Plan::StepOneScheduler, Optimizers::Split);
    trainer.fit(module, Loaders::fit(pair_loader(16, 4), None)).unwrap();
    let lines: Vec<String> = log.lock().unwrap().clone();
    assert_eq!(
        lines,
        [
            "batch 0: lr g Some(0.1), lr d Some(0.2)",
            "batch 1: lr g Some(0.1), lr d Some(0.1)",
            "batch 2: lr g Some(0.1), lr d Some(0.05)",
            "batch 3: lr g Some(0.1), lr d Some(0.025)",
        ]
    );
    // Lightning's `_find_names`: `lr-SGD`, `lr-SGD-1` for two unnamed optimizers of a class.
    let records = metric_calls(&calls.lock().unwrap());
    let first = records
        .iter()
        .find(|(_, m)| m.contains_key("lr-SGD"))
        .expect("the first optimizer's rate is logged");
    assert_eq!(first.1.get("lr-SGD"), Some(&0.1));
    assert_eq!(first.1.get("lr-SGD-1"), Some(&0.2), "{first:?}");
    let last = trainer.callback_metrics();
    assert_eq!(last.get("lr-SGD-1"), Some(0.025));
    assert_eq!(last.get("lr-SGD"), Some(0.1));
}

/// Three optimizers as an array: `self.optimizers()` gives `[OptimizerHandle; 3]`.
#[lightning_module]
#[derive(Module, Debug)]
pub struct ThreeParts {
    a: Linear,
    b: Linear,
    c: Linear,
    #[module(skip)]
    log: Log,
}

#[lightning_module(manual_optimization)]
impl ThreeParts {
    #[hook]
    fn training_step(&mut self, batch: Pair, _batch_idx: usize, cx: &mut StepContext) {
        let handles = self.optimizers();
        let indices: Vec<usize> = handles.iter().map(|h| h.index()).collect();
        self.log.lock().unwrap().push(format!("{indices:?}"));
        let loss = self
            .c
            .forward(self.b.forward(self.a.forward(batch.x)))
            .sub(batch.y)
            .powi_scalar(2)
            .mean();
        let grads = cx.manual_backward(self, loss);
        // Only the last one steps: `a` and `b` keep their weights.
        handles[2].step(cx, self, grads);
    }

    #[hook]
    fn configure_optimizers(&self) -> [OptimizerConfig; 3] {
        let sgd = || OptimizerConfig::new(SgdConfig::new().init(), 0.1);
        [
            sgd().for_params(&self.a),
            sgd().for_params(&self.b),
            sgd().for_params(&self.c),
        ]
    }
}

#[test]
fn an_array_of_optimizers_gives_an_array_of_handles() {
    let device = Device::default().autodiff();
    let log = Log::default();
    let module = ThreeParts {
        a: LinearConfig::new(32, 8).init(&device),
        b: LinearConfig::new(8, 8).init(&device),
        c: LinearConfig::new(8, 2).init(&device),
        log: log.clone(),
    };
    let (a, b, c) = (
        values(module.a.weight.val()),
        values(module.b.weight.val()),
        values(module.c.weight.val()),
    );
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = Trainer::builder()
        .default_root_dir(dir.path())
        .enable_progress_bar(false)
        .enable_checkpointing(false)
        .enable_model_summary(false)
        .enable_logger(false)
        .max_epochs(1)
        .build()
        .unwrap();
    let trained = trainer.fit(module, Loaders::fit(pair_loader(8, 4), None)).unwrap();
    assert_eq!(*log.lock().unwrap(), ["[0, 1, 2]", "[0, 1, 2]"]);
    assert_eq!(values(trained.a.weight.val()), a);
    assert_eq!(values(trained.b.weight.val()), b);
    assert_ne!(values(trained.c.weight.val()), c);
    assert_eq!(trainer.global_step(), 2);
}

/// One optimizer: `self.optimizers()` is one handle, and `cx.optimizer_step` steps it.
#[lightning_module]
#[derive(Module, Debug)]
pub struct Single {
    layer: Linear,
}

#[lightning_module(manual_optimization)]
impl Single {
    #[hook]
    fn training_step(&mut self, batch: Pair, batch_idx: usize, cx: &mut StepContext) {
        let opt = self.optimizers();
        assert_eq!(opt.index(), 0);
        let grads = cx.manual_backward(self, self.layer.forward(batch.x).sub(batch.y).powi_scalar(2).mean());
        if batch_idx == 0 {
            opt.step(cx, self, grads);
        } else {
            cx.optimizer_step(self, grads);
        }
    }

    #[hook]
    fn configure_optimizers(&self) -> OptimizerConfig {
        OptimizerConfig::new(SgdConfig::new().init(), 0.1)
    }
}

#[test]
fn one_optimizer_steps_through_its_handle_or_optimizer_step() {
    let device = Device::default().autodiff();
    let module = Single {
        layer: LinearConfig::new(32, 2).init(&device),
    };
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = Trainer::builder()
        .default_root_dir(dir.path())
        .enable_progress_bar(false)
        .enable_checkpointing(false)
        .enable_model_summary(false)
        .enable_logger(false)
        .max_epochs(1)
        .build()
        .unwrap();
    trainer.fit(module, Loaders::fit(pair_loader(8, 4), None)).unwrap();
    assert_eq!(trainer.global_step(), 2);
}

#[test]
fn a_resumed_gan_restores_both_optimizers_and_trains_as_an_uninterrupted_one() {
    let data = || Loaders::fit(pair_loader(16, 4), None);
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = builder(dir.path()).max_epochs(4).build().unwrap();
    let uninterrupted = trainer.fit(new(Plan::Gan, Optimizers::AdamSplit).0, data()).unwrap();

    let mut trainer = builder(dir.path()).max_epochs(2).build().unwrap();
    let mut halfway = trainer.fit(new(Plan::Gan, Optimizers::AdamSplit).0, data()).unwrap();
    let path = dir.path().join("halfway.ckpt");
    trainer.save_checkpoint(&mut halfway, &path).unwrap();
    let saved = Checkpoint::load(&path).unwrap();
    let loops = saved.loops.as_ref().unwrap();
    assert_eq!(loops.optimizer_steps, 8, "the generator stepped on each of 8 batches");
    assert_eq!(loops.more_optimizers.len(), 1);
    assert_eq!(loops.more_optimizers[0].steps, 8, "so did the discriminator");

    let mut trainer = builder(dir.path()).max_epochs(4).build().unwrap();
    let resumed = trainer
        .fit_from(new(Plan::Gan, Optimizers::AdamSplit).0, data(), &path)
        .unwrap();
    assert_eq!(trainer.global_step(), 32, "two optimizer steps per batch, 16 batches");
    // Adam's moments of both optimizers came back: the weights match bit for bit.
    assert_eq!(weights(&resumed), weights(&uninterrupted));
}
