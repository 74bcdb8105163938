//! Learning-rate schedulers as Lightning's `lr_scheduler_config` dict: a scheduler starts from
//! its optimizer's learning rate, steps every `interval` and `frequency`, and a
//! `ReduceLrOnPlateau` steps after the validation that produced its monitored metric.

mod common;

use burn::nn::{Initializer, Linear, LinearConfig};
use burn::optim::SgdConfig;
use burn::optim::lr_scheduler::step::StepLrSchedulerConfig;
use burn_lightning::prelude::*;
use common::{Pair, pair_loader};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Which scheduler `configure_optimizers` returns.
#[derive(Clone, Copy, Debug)]
enum Schedule {
    /// StepLR halving every interval.
    Halving { interval: Interval, frequency: usize },
    /// ReduceLROnPlateau (factor 0.5, patience 1) on `val_metric` (or a misspelled name).
    Plateau {
        interval: Interval,
        frequency: usize,
        monitor: &'static str,
        strict: bool,
    },
    /// A scheduler whose construction fails.
    Broken,
}

/// A linear regressor that logs a scripted `val_metric` in each validation run and records the
/// learning rate of every optimizer step.
#[lightning_module]
#[derive(Module, Debug)]
pub struct Scheduled {
    layer: Linear,
    #[module(skip)]
    schedule: Schedule,
    /// The value `val_metric` takes in the n-th validation run (the last one repeats).
    #[module(skip)]
    script: Vec<f64>,
    #[module(skip)]
    validations: Arc<Mutex<usize>>,
    /// `(epoch, batch_idx, lr)` of every optimizer step.
    #[module(skip)]
    lrs: Arc<Mutex<Vec<(usize, usize, f64)>>>,
    /// The learning rate `training_step` read from `cx.optimizer()`.
    #[module(skip)]
    step_lrs: Arc<Mutex<Vec<f64>>>,
    /// The learning rate the scheduler was built from, and the name the optimizer reports.
    #[module(skip)]
    seen: Arc<Mutex<(Option<f64>, Option<String>)>>,
}

impl Scheduled {
    fn new(schedule: Schedule, script: &[f64]) -> Self {
        let config = LinearConfig::new(32, 2).with_initializer(Initializer::Constant { value: 0.05 });
        Self {
            layer: config.init(&Device::default()),
            schedule,
            script: script.to_vec(),
            validations: Arc::default(),
            lrs: Arc::default(),
            step_lrs: Arc::default(),
            seen: Arc::default(),
        }
    }

    /// The learning rate of the first optimizer step of each epoch.
    fn epoch_lrs(&self) -> Vec<f64> {
        let lrs = self.lrs.lock().unwrap();
        lrs.iter()
            .filter(|(_, batch, _)| *batch == 0)
            .map(|(_, _, lr)| *lr)
            .collect()
    }
}

#[lightning_module]
impl Scheduled {
    #[hook]
    fn training_step(&mut self, batch: Pair, _batch_idx: usize, cx: &mut StepContext) -> Tensor<1> {
        let lr = cx.optimizer().expect("readable in training_step").lr();
        self.step_lrs.lock().unwrap().push(lr);
        (self.layer.forward(batch.x) - batch.y).powi_scalar(2).mean()
    }
    #[hook]
    fn validation_step(&self, _batch: Pair, batch_idx: usize, cx: &mut StepContext) {
        let run = *self.validations.lock().unwrap();
        let value = self.script[run.min(self.script.len() - 1)];
        cx.log("val_metric", value);
        if batch_idx == 0 {
            *self.validations.lock().unwrap() += 1;
        }
    }
    #[hook]
    fn on_before_optimizer_step(&mut self, optimizer: &Optimizer, _grads: &Gradients, cx: &mut StepContext) {
        self.lrs
            .lock()
            .unwrap()
            .push((cx.current_epoch, cx.batch_idx, optimizer.lr()));
        self.seen.lock().unwrap().1 = optimizer.scheduler_name().map(str::to_string);
    }
    #[hook]
    fn configure_optimizers(&self) -> OptimizerConfig {
        let optimizer = OptimizerConfig::new(SgdConfig::new().init(), 1.0);
        let seen = self.seen.clone();
        let scheduler = match self.schedule {
            Schedule::Halving { interval, frequency } => LrSchedulerConfig::new(move |lr| {
                seen.lock().unwrap().0 = Some(lr);
                StepLrSchedulerConfig::new(lr, 1).with_gamma(0.5).init()
            })
            .interval(interval)
            .frequency(frequency)
            .name("halving"),
            Schedule::Plateau {
                interval,
                frequency,
                monitor,
                strict,
            } => {
                let plateau = ReduceLrOnPlateau::new().factor(0.5).patience(1);
                LrSchedulerConfig::reduce_on_plateau(plateau, monitor)
                    .interval(interval)
                    .frequency(frequency)
                    .strict(strict)
            }
            Schedule::Broken => LrSchedulerConfig::new(|lr| StepLrSchedulerConfig::new(lr, 0).init()),
        };
        optimizer.with_scheduler(scheduler)
    }
}

fn builder(root: &Path) -> TrainerBuilder<Scheduled> {
    Trainer::builder()
        .default_root_dir(root)
        .enable_progress_bar(false)
        .enable_checkpointing(false)
        .enable_model_summary(false)
        .enable_logger(false)
        .num_sanity_val_steps(0)
}

/// 4 training batches and 1 validation batch per epoch.
fn data() -> Loaders<Pair> {
    Loaders::fit(pair_loader(16, 4), Some(pair_loader(4, 4)))
}

fn plateau(interval: Interval, frequency: usize) -> Schedule {
    Schedule::Plateau {
        interval,
        frequency,
        monitor: "val_metric",
        strict: true,
    }
}

/// The monitored values of 8 epochs, and the learning rate torch's `ReduceLROnPlateau(factor=0.5,
/// patience=1)` (threshold 1e-4 relative) gives after each: a value counts as better below
/// `best * 0.9999`; a second check in a row that is not lowers the rate.
///   5.0 best | 4.0 best | 4.0 bad 1 | 3.99999 bad 2: 0.5 | 3.0 best |
///   3.5 bad 1 | 3.2 bad 2: 0.25 | 3.0 bad 1
const VALUES: [f64; 8] = [5.0, 4.0, 4.0, 3.99999, 3.0, 3.5, 3.2, 3.0];
const LR_AFTER: [f64; 8] = [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25];

#[test]
fn an_epoch_plateau_scheduler_follows_lightnings_numbers_after_each_validation() {
    let dir = tempfile::tempdir().unwrap();
    let model = Scheduled::new(plateau(Interval::Epoch, 1), &VALUES);
    let mut trainer = builder(dir.path()).max_epochs(9).build().unwrap();
    let model = trainer.fit(model, data()).unwrap();
    // Epoch e trains with the rate the plateau set after epoch e - 1's validation.
    let mut expected = vec![1.0];
    expected.extend(LR_AFTER);
    assert_eq!(model.epoch_lrs(), expected);
}

#[test]
fn a_plateau_scheduler_with_a_frequency_steps_every_that_many_epochs() {
    // Stepped after epochs 1, 3, 5, 7 (Lightning's `(epoch + 1) % frequency == 0`), it sees
    // 4.0 best | 3.99999 bad 1 | 3.5 best | 3.0 best.
    let dir = tempfile::tempdir().unwrap();
    let model = Scheduled::new(plateau(Interval::Epoch, 2), &VALUES);
    let mut trainer = builder(dir.path()).max_epochs(8).build().unwrap();
    let model = trainer.fit(model, data()).unwrap();
    assert_eq!(model.epoch_lrs(), [1.0; 8]);

    // With patience 1, two checks without improvement in a row lower the rate.
    let values = [5.0, 5.0, 5.0, 5.0, 5.0, 5.0];
    let model = Scheduled::new(plateau(Interval::Epoch, 2), &values);
    let mut trainer = builder(dir.path()).max_epochs(6).build().unwrap();
    let model = trainer.fit(model, data()).unwrap();
    // Checks after epochs 1 (best), 3 (bad 1), 5 (bad 2: 0.5, seen by no epoch).
    assert_eq!(model.epoch_lrs(), [1.0; 6]);
    let mut trainer = builder(dir.path()).max_epochs(8).build().unwrap();
    let model = trainer
        .fit(Scheduled::new(plateau(Interval::Epoch, 2), &values), data())
        .unwrap();
    assert_eq!(model.epoch_lrs(), [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.5, 0.5]);
}

#[test]
fn a_step_plateau_scheduler_steps_after_each_optimizer_step_with_the_last_validation() {
    // Validation every 2 batches (after batches 1 and 3); a step plateau with frequency 2 steps
    // right after them (Lightning's `on_advance_end`), with the value just logged: 5.0 best |
    // 5.0 bad 1 | 5.0 bad 2: 0.5 (after epoch 1's batch 1) | 5.0 bad 1.
    let dir = tempfile::tempdir().unwrap();
    let model = Scheduled::new(plateau(Interval::Step, 2), &[5.0]);
    let mut trainer = builder(dir.path())
        .max_epochs(2)
        .val_check_interval(2usize)
        .build()
        .unwrap();
    let model = trainer.fit(model, data()).unwrap();
    let lrs: Vec<f64> = model.lrs.lock().unwrap().iter().map(|(_, _, lr)| *lr).collect();
    assert_eq!(lrs, [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.5, 0.5]);
    assert_eq!(*model.validations.lock().unwrap(), 4);

    // With frequency 1 it is due after batch 0, before any validation logged the metric:
    // Lightning raises there.
    let model = Scheduled::new(plateau(Interval::Step, 1), &[5.0]);
    let mut trainer = builder(dir.path())
        .max_epochs(2)
        .val_check_interval(2usize)
        .build()
        .unwrap();
    let error = trainer.fit(model, data()).map(|_| ()).unwrap_err().into_error();
    assert!(error.to_string().contains("`val_metric`"), "{error}");
    assert_eq!(trainer.global_step(), 1);
}

#[test]
fn a_plateau_monitoring_a_metric_never_logged_is_an_error_naming_it_after_the_first_validation() {
    let dir = tempfile::tempdir().unwrap();
    let typo = Schedule::Plateau {
        interval: Interval::Epoch,
        frequency: 1,
        monitor: "val_metrc",
        strict: true,
    };
    let model = Scheduled::new(typo, &[1.0]);
    let validations = model.validations.clone();
    let mut trainer = builder(dir.path()).max_epochs(3).build().unwrap();
    let error = trainer.fit(model, data()).map(|_| ()).unwrap_err().into_error();
    match &error {
        Error::Hook { hook, message } => {
            assert_eq!(*hook, "lr_scheduler_step");
            assert!(message.contains("`val_metrc`"), "{message}");
            assert!(message.contains("val_metric"), "names what is available: {message}");
        }
        other => panic!("expected a hook error, got {other:?}"),
    }
    assert_eq!(*validations.lock().unwrap(), 1, "found at the end of the first epoch");
    assert_eq!(trainer.current_epoch(), 0);
    assert_eq!(trainer.global_step(), 4);
}

#[test]
fn a_plateau_that_is_not_strict_skips_its_step_while_the_metric_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let typo = Schedule::Plateau {
        interval: Interval::Epoch,
        frequency: 1,
        monitor: "val_metrc",
        strict: false,
    };
    let mut trainer = builder(dir.path()).max_epochs(3).build().unwrap();
    let model = trainer.fit(Scheduled::new(typo, &[1.0]), data()).unwrap();
    assert_eq!(model.epoch_lrs(), [1.0; 3]);
}

#[test]
fn a_scheduler_starts_from_its_optimizers_learning_rate_and_steps_every_frequency_batches() {
    let dir = tempfile::tempdir().unwrap();
    let halving = Schedule::Halving {
        interval: Interval::Step,
        frequency: 2,
    };
    let mut trainer = builder(dir.path()).max_epochs(2).build().unwrap();
    let model = trainer.fit(Scheduled::new(halving, &[1.0]), data()).unwrap();
    assert_eq!(
        model.seen.lock().unwrap().0,
        Some(1.0),
        "built from the optimizer's rate"
    );
    assert_eq!(model.seen.lock().unwrap().1.as_deref(), Some("halving"));
    // Halved after batches 1 and 3 of every epoch (Lightning's `(batch_idx + 1) % frequency`).
    let lrs: Vec<f64> = model.lrs.lock().unwrap().iter().map(|(_, _, lr)| *lr).collect();
    assert_eq!(lrs, [1.0, 1.0, 0.5, 0.5, 0.25, 0.25, 0.125, 0.125]);
    assert_eq!(
        *model.step_lrs.lock().unwrap(),
        lrs,
        "what training_step reads with cx.optimizer()"
    );
}

#[test]
fn an_epoch_scheduler_with_a_frequency_steps_every_that_many_epochs() {
    let dir = tempfile::tempdir().unwrap();
    let halving = Schedule::Halving {
        interval: Interval::Epoch,
        frequency: 2,
    };
    let mut trainer = builder(dir.path()).max_epochs(5).build().unwrap();
    let model = trainer.fit(Scheduled::new(halving, &[1.0]), data()).unwrap();
    assert_eq!(model.epoch_lrs(), [1.0, 1.0, 0.5, 0.5, 0.25]);
}

#[test]
fn a_scheduler_that_cannot_step_or_be_built_is_an_error_naming_configure_optimizers() {
    let dir = tempfile::tempdir().unwrap();
    let never = Schedule::Halving {
        interval: Interval::Epoch,
        frequency: 0,
    };
    for (schedule, expected) in [(never, "frequency"), (Schedule::Broken, "could not be built")] {
        let mut trainer = builder(dir.path()).max_epochs(1).build().unwrap();
        let error = trainer
            .fit(Scheduled::new(schedule, &[1.0]), data())
            .map(|_| ())
            .unwrap_err()
            .into_error();
        match &error {
            Error::Hook { hook, message } => {
                assert_eq!(*hook, "configure_optimizers");
                assert!(message.contains(expected), "{message}");
            }
            other => panic!("expected a hook error, got {other:?}"),
        }
    }
}

/// Manual optimization steps its scheduler by hand.
#[lightning_module]
#[derive(Module, Debug)]
pub struct ManualScheduled {
    layer: Linear,
    #[module(skip)]
    lrs: Arc<Mutex<Vec<f64>>>,
}

#[lightning_module(manual_optimization)]
impl ManualScheduled {
    #[hook]
    fn training_step(&mut self, batch: Pair, _batch_idx: usize, cx: &mut StepContext) {
        let loss = (self.layer.forward(batch.x) - batch.y).powi_scalar(2).mean();
        let grads = cx.manual_backward(self, loss);
        cx.optimizer_step(self, grads);
        self.lrs
            .lock()
            .unwrap()
            .push(cx.optimizer().expect("an optimizer").lr());
        cx.lr_scheduler().expect("the configured scheduler").step();
    }
    #[hook]
    fn configure_optimizers(&self) -> OptimizerConfig {
        let halving = LrSchedulerConfig::new(|lr| StepLrSchedulerConfig::new(lr, 1).with_gamma(0.5).init());
        OptimizerConfig::new(SgdConfig::new().init(), 1.0).with_scheduler(halving.interval(Interval::Step))
    }
}

#[test]
fn manual_optimization_steps_its_scheduler_by_hand_and_the_trainer_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let model = ManualScheduled {
        layer: LinearConfig::new(32, 2)
            .with_initializer(Initializer::Zeros)
            .init(&Device::default()),
        lrs: Arc::default(),
    };
    let lrs = model.lrs.clone();
    let mut trainer = Trainer::builder()
        .default_root_dir(dir.path())
        .enable_progress_bar(false)
        .enable_checkpointing(false)
        .enable_model_summary(false)
        .enable_logger(false)
        .max_epochs(1)
        .build()
        .unwrap();
    trainer.fit(model, Loaders::fit(pair_loader(16, 4), None)).unwrap();
    // One halving per batch, by hand; a trainer stepping it too would halve twice.
    assert_eq!(*lrs.lock().unwrap(), [1.0, 0.5, 0.25, 0.125]);
}
