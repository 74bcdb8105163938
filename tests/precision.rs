//! The `precision` flag: every value of Lightning trains on flex with the weights, the batches
//! and the checkpoints in the dtypes Lightning would use; `16-mixed` scales the loss as torch's
//! `GradScaler` (a step with inf gradients skipped and not counted, the scale halved; doubled
//! after N good steps); bad values are errors of `build()`.

mod common;

use burn::nn::{Initializer, Linear, LinearConfig};
use burn::optim::SgdConfig;
use burn::optim::lr_scheduler::step::StepLrSchedulerConfig;
use burn::tensor::DType;
use burn_lightning::LossScalerState;
use burn_lightning::optim::precision::module_dtype;
use burn_lightning::prelude::*;
use common::{Pair, files_under, pair_loader, values};
use std::path::Path;
use std::sync::{Arc, Mutex};

impl CastFloats for Pair {
    fn cast_floats(self, dtype: FloatDType) -> Self {
        Pair {
            x: self.x.cast_floats(dtype),
            y: self.y.cast_floats(dtype),
        }
    }
}

/// What a step saw.
#[derive(Clone, Debug, PartialEq)]
struct Seen {
    hook: &'static str,
    batch_idx: usize,
    global_step: usize,
    weights: Option<FloatDType>,
    batch: FloatDType,
    loss_scale: Option<f64>,
    loss: f32,
    /// The weight matrix the step computed with, as `f32`.
    weight_values: Vec<f32>,
    /// The optimizer's learning rate.
    lr: f64,
}

/// A linear regressor with constant initial weights that notes the dtypes its steps see.
#[lightning_module]
#[derive(Module, Debug)]
pub struct Regressor {
    layer: Linear,
    #[module(skip)]
    seen: Arc<Mutex<Vec<Seen>>>,
    /// The batch whose loss is multiplied by infinity (its gradients are not finite).
    #[module(skip)]
    inf_at: Option<usize>,
    /// Whether the loss is computed in the dtype of the step (half under `16-mixed`).
    #[module(skip)]
    half_loss: bool,
    /// Whether the learning rate halves after every optimizer step.
    #[module(skip)]
    halving_schedule: bool,
}

impl Regressor {
    fn new() -> Self {
        let config = LinearConfig::new(32, 2).with_initializer(Initializer::Constant { value: 0.05 });
        Self {
            layer: config.init(&Device::default()),
            seen: Arc::default(),
            inf_at: None,
            half_loss: false,
            halving_schedule: false,
        }
    }

    /// The mean squared error, computed in `f32` (as torch's autocast computes `mse_loss`).
    fn loss(&self, batch: Pair) -> Tensor<1> {
        if self.half_loss {
            return (self.layer.forward(batch.x) - batch.y).powi_scalar(2).mean();
        }
        let prediction = self.layer.forward(batch.x).cast(FloatDType::F32);
        (prediction - batch.y.cast(FloatDType::F32)).powi_scalar(2).mean()
    }

    fn note(&self, hook: &'static str, batch: &Pair, batch_idx: usize, loss: &Tensor<1>, cx: &StepContext) {
        self.seen.lock().unwrap().push(Seen {
            hook,
            batch_idx,
            global_step: cx.global_step,
            weights: module_dtype(self),
            batch: batch.x.dtype().into(),
            loss_scale: cx.loss_scale(),
            loss: values(loss.clone())[0],
            weight_values: self.weights(),
            lr: cx.optimizer().map_or(f64::NAN, Optimizer::lr),
        });
    }

    fn weights(&self) -> Vec<f32> {
        values(self.layer.weight.val())
    }

    fn seen(&self, hook: &str) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.hook == hook)
            .cloned()
            .collect()
    }
}

#[lightning_module]
impl Regressor {
    #[hook]
    fn training_step(&mut self, batch: Pair, batch_idx: usize, cx: &mut StepContext) -> Tensor<1> {
        let batch = cx.cast_input(batch);
        let loss = self.loss(batch.clone());
        self.note("training_step", &batch, batch_idx, &loss, cx);
        if self.inf_at == Some(batch_idx) {
            return loss.mul_scalar(f32::INFINITY);
        }
        loss
    }
    #[hook]
    fn validation_step(&mut self, batch: Pair, batch_idx: usize, cx: &mut StepContext) {
        let batch = cx.cast_input(batch);
        let loss = self.loss(batch.clone());
        self.note("validation_step", &batch, batch_idx, &loss, cx);
        cx.log("val_loss", loss);
    }
    #[hook]
    fn configure_optimizers(&self) -> OptimizerConfig {
        let config = OptimizerConfig::new(SgdConfig::new().init(), 0.05);
        if self.halving_schedule {
            let halving = LrSchedulerConfig::new(|lr| StepLrSchedulerConfig::new(lr, 1).with_gamma(0.5).init());
            return config.with_scheduler(halving.interval(Interval::Step));
        }
        config
    }
}

fn builder(root: &Path) -> TrainerBuilder<Regressor> {
    Trainer::builder()
        .default_root_dir(root)
        .enable_progress_bar(false)
        .enable_model_summary(false)
        .enable_logger(false)
        .num_sanity_val_steps(0)
}

fn checkpoint_dtypes(root: &Path) -> Vec<DType> {
    let path = files_under(root)
        .into_iter()
        .find(|path| path.extension().is_some_and(|e| e == "ckpt"))
        .expect("ModelCheckpoint saved a checkpoint");
    let checkpoint = Checkpoint::load(&root.join(path)).unwrap();
    checkpoint
        .parameter_dtypes()
        .into_iter()
        .map(|(_, dtype)| dtype)
        .collect()
}

#[test]
fn every_precision_trains_with_the_dtypes_lightning_uses() {
    for precision in Precision::ALL {
        let dir = tempfile::tempdir().unwrap();
        let mut trainer = builder(dir.path()).precision(precision).max_epochs(3).build().unwrap();
        let model = trainer
            .fit(
                Regressor::new(),
                Loaders::fit(pair_loader(64, 16), Some(pair_loader(16, 16))),
            )
            .unwrap();
        assert_eq!(trainer.global_step(), 12, "{precision}");

        let steps = model.seen("training_step");
        let compute = precision.compute_dtype();
        for step in &steps {
            assert_eq!(step.weights, Some(compute), "{precision}: weights in training_step");
            assert_eq!(step.batch, compute, "{precision}: batch after cast_input");
            assert_eq!(
                step.loss_scale.is_some(),
                precision == Precision::F16Mixed,
                "{precision}"
            );
        }
        // Validation runs on the weights as they are kept: the f32 masters under mixed precision.
        for step in model.seen("validation_step") {
            assert_eq!(
                step.weights,
                Some(precision.param_dtype()),
                "{precision}: weights in validation"
            );
            assert_eq!(step.batch, precision.param_dtype(), "{precision}: batch in validation");
        }
        let first = steps.first().unwrap().loss;
        let last = steps.last().unwrap().loss;
        assert!(last < first * 0.5, "{precision}: the loss went from {first} to {last}");

        // The module fit returns, and the checkpoint, hold the weights in the module's dtype.
        assert_eq!(module_dtype(&model), Some(precision.param_dtype()), "{precision}");
        let saved = checkpoint_dtypes(dir.path());
        assert_eq!(saved.len(), 2, "{precision}: weight and bias");
        assert!(
            saved.iter().all(|dtype| *dtype == DType::from(precision.param_dtype())),
            "{precision}: checkpoint holds {saved:?}"
        );
    }
}

#[test]
fn thirty_two_true_is_the_default_and_casts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = builder(dir.path()).max_epochs(1).build().unwrap();
    let model = trainer
        .fit(Regressor::new(), Loaders::fit(pair_loader(32, 16), None))
        .unwrap();
    let steps = model.seen("training_step");
    assert_eq!(steps.len(), 2);
    assert!(
        steps
            .iter()
            .all(|s| s.weights == Some(FloatDType::F32) && s.batch == FloatDType::F32)
    );
    assert!(steps.iter().all(|s| s.loss_scale.is_none()));
}

#[test]
fn sixteen_mixed_skips_the_update_and_the_scheduler_on_inf_gradients_and_halves_the_scale() {
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = builder(dir.path())
        .precision("16-mixed")
        .max_epochs(1)
        .enable_checkpointing(false)
        .build()
        .unwrap();
    let mut model = Regressor::new();
    model.inf_at = Some(1);
    model.halving_schedule = true;
    let model = trainer.fit(model, Loaders::fit(pair_loader(64, 16), None)).unwrap();
    let steps = model.seen("training_step");
    let scales: Vec<Option<f64>> = steps.iter().map(|s| s.loss_scale).collect();
    assert_eq!(scales, [Some(65536.0), Some(65536.0), Some(32768.0), Some(32768.0)]);
    let global_steps: Vec<usize> = steps.iter().map(|s| s.global_step).collect();
    // Lightning counts every completed `optimizer_step` call, also one the scaler skipped.
    assert_eq!(global_steps, [0, 1, 2, 3]);
    assert_eq!(trainer.global_step(), 4);
    // ... and skips the schedulers' next step after it (`_skip_next_scheduler_step`): the rate
    // halves after every step but the skipped one.
    let lrs: Vec<f64> = steps.iter().map(|s| s.lr).collect();
    assert_eq!(lrs, [0.05, 0.025, 0.025, 0.0125]);
    // Step 0 changed the weights, step 1 (inf gradients) did not, step 2 did.
    assert_ne!(steps[1].weight_values, steps[0].weight_values);
    assert_eq!(
        steps[2].weight_values, steps[1].weight_values,
        "the skipped step updated nothing"
    );
    assert_ne!(steps[3].weight_values, steps[2].weight_values);
    assert!(model.weights().iter().all(|w| w.is_finite()));
}

#[test]
fn the_loss_scale_doubles_after_n_steps_without_inf() {
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = builder(dir.path())
        .precision(Precision::F16Mixed)
        .grad_scaler_growth_interval(3)
        .max_epochs(1)
        .enable_checkpointing(false)
        .build()
        .unwrap();
    let model = trainer
        .fit(Regressor::new(), Loaders::fit(pair_loader(112, 16), None))
        .unwrap();
    let scales: Vec<f64> = model
        .seen("training_step")
        .iter()
        .map(|s| s.loss_scale.unwrap())
        .collect();
    assert_eq!(
        scales,
        [65536.0, 65536.0, 65536.0, 131072.0, 131072.0, 131072.0, 262144.0]
    );
    assert_eq!(trainer.global_step(), 7);
}

#[test]
fn a_string_that_is_not_a_precision_is_an_error_listing_the_valid_ones() {
    let dir = tempfile::tempdir().unwrap();
    for bad in ["fp16", "16-true-mixed", "half", ""] {
        let error = builder(dir.path()).precision(bad).build().err().expect("an error");
        let message = error.to_string();
        assert!(message.contains("precision"), "{message}");
        for valid in Precision::ALL {
            assert!(message.contains(valid.as_str()), "{message} lists {valid}");
        }
    }
    let error = builder(dir.path())
        .precision(8)
        .build()
        .err()
        .expect("8 bits is no precision");
    assert!(error.to_string().contains("`8`"), "{error}");
}

#[test]
fn lightning_aliases_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    for (alias, precision) in [
        ("16", Precision::F16Mixed),
        ("bf16", Precision::Bf16Mixed),
        ("32", Precision::F32True),
        ("64", Precision::F64True),
    ] {
        assert_eq!(alias.parse::<Precision>(), Ok(precision));
        assert!(builder(dir.path()).precision(alias).build().is_ok(), "{alias}");
    }
    assert!(builder(dir.path()).precision(16).build().is_ok());
}

#[test]
fn flex_runs_every_precision() {
    let device = Device::flex();
    assert_eq!(Precision::supported_on(&device), Precision::ALL.to_vec());
}

/// A module with manual optimization, for the refusal of mixed precision there.
#[lightning_module]
#[derive(Module, Debug)]
pub struct Manual {
    layer: Linear,
}

#[lightning_module(manual_optimization)]
impl Manual {
    #[hook]
    fn training_step(&mut self, batch: Pair, _batch_idx: usize, cx: &mut StepContext) {
        let batch = cx.cast_input(batch);
        let loss = (self.layer.forward(batch.x) - batch.y).powi_scalar(2).mean();
        let grads = cx.manual_backward(self, loss);
        cx.optimizer_step(self, grads);
    }
    #[hook]
    fn configure_optimizers(&self) -> OptimizerConfig {
        OptimizerConfig::new(SgdConfig::new().init(), 0.05)
    }
}

#[test]
fn mixed_precision_under_manual_optimization_is_refused_and_true_half_trains() {
    let dir = tempfile::tempdir().unwrap();
    let manual = || {
        Trainer::<Manual>::builder()
            .default_root_dir(dir.path())
            .enable_progress_bar(false)
    };
    let error = manual().precision("16-mixed").build().err().expect("refused");
    assert!(error.to_string().contains("manual optimization"), "{error}");
    let mut trainer = manual()
        .precision("bf16-true")
        .max_epochs(1)
        .enable_checkpointing(false)
        .enable_logger(false)
        .build()
        .unwrap();
    let model = Manual {
        layer: LinearConfig::new(32, 2).init(&Device::default()),
    };
    let model = trainer.fit(model, Loaders::fit(pair_loader(32, 16), None)).unwrap();
    assert_eq!(module_dtype(&model), Some(FloatDType::BF16));
    assert_eq!(trainer.global_step(), 2);
}

#[test]
fn a_fit_resumed_in_another_precision_trains_in_the_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let data = || Loaders::fit(pair_loader(32, 16), None);
    let mut trainer = builder(dir.path())
        .precision("bf16-true")
        .max_epochs(1)
        .build()
        .unwrap();
    trainer.fit(Regressor::new(), data()).unwrap();
    let saved = files_under(dir.path())
        .into_iter()
        .find(|path| path.extension().is_some_and(|e| e == "ckpt"))
        .expect("a checkpoint");
    assert_eq!(checkpoint_dtypes(dir.path()), [DType::BF16, DType::BF16]);

    let mut trainer = builder(dir.path()).max_epochs(2).build().unwrap();
    let model = trainer
        .fit_from(Regressor::new(), data(), dir.path().join(saved))
        .unwrap();
    assert_eq!(trainer.global_step(), 4);
    let steps = model.seen("training_step");
    assert_eq!(steps.len(), 2, "the second epoch only");
    assert!(steps.iter().all(|s| s.weights == Some(FloatDType::F32)), "{steps:?}");
    assert_eq!(module_dtype(&model), Some(FloatDType::F32));
}

#[test]
fn a_half_precision_loss_under_sixteen_mixed_skips_the_first_step() {
    // Its gradient, 65536, is infinite in f16: the scaler halves the scale and goes on.
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = builder(dir.path())
        .precision("16-mixed")
        .max_epochs(1)
        .enable_checkpointing(false)
        .build()
        .unwrap();
    let mut model = Regressor::new();
    model.half_loss = true;
    let model = trainer.fit(model, Loaders::fit(pair_loader(48, 16), None)).unwrap();
    let steps = model.seen("training_step");
    let scales: Vec<Option<f64>> = steps.iter().map(|s| s.loss_scale).collect();
    assert_eq!(scales, [Some(65536.0), Some(32768.0), Some(32768.0)]);
    assert_eq!(
        steps[1].weight_values, steps[0].weight_values,
        "the first step was skipped"
    );
    assert_ne!(steps[2].weight_values, steps[1].weight_values);
    assert_eq!(trainer.global_step(), 3);
}

#[test]
fn a_resumed_sixteen_mixed_fit_goes_on_with_the_saved_loss_scale() {
    // The half-precision loss overflows at 65536: the first step is skipped and the scale halved.
    let dir = tempfile::tempdir().unwrap();
    let data = || Loaders::fit(pair_loader(48, 16), None);
    let half_loss = || {
        let mut model = Regressor::new();
        model.half_loss = true;
        model
    };
    let mut trainer = builder(dir.path()).precision("16-mixed").max_epochs(1).build().unwrap();
    trainer.fit(half_loss(), data()).unwrap();
    let saved = files_under(dir.path())
        .into_iter()
        .find(|path| path.extension().is_some_and(|e| e == "ckpt"))
        .expect("a checkpoint");
    let saved = dir.path().join(saved);
    let scaler = Checkpoint::load(&saved).unwrap().loops.unwrap().loss_scaler;
    assert_eq!(
        scaler,
        Some(LossScalerState {
            scale: 32768.0,
            growth_tracker: 2
        })
    );

    let mut trainer = builder(dir.path()).precision("16-mixed").max_epochs(2).build().unwrap();
    let model = trainer.fit_from(half_loss(), data(), &saved).unwrap();
    let scales: Vec<Option<f64>> = model.seen("training_step").iter().map(|s| s.loss_scale).collect();
    assert_eq!(
        scales,
        [Some(32768.0); 3],
        "the resumed epoch starts from the saved scale, not torch's 65536"
    );
}
