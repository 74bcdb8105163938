//! Parameter groups the torch way: minGPT's "no weight decay on biases and norms" written with
//! `Params` and `ParamGroupConfig` moves the parameters as torch's AdamW moves them
//! (`tests/fixtures/adamw_groups.json`, from `bash scripts/optim_fixtures.sh`), a scheduler scales
//! each group's rate as torch's StepLR does and a cosine decays each to its own floor
//! (`cosine_groups.json`), `LearningRateMonitor` logs what Lightning logs under
//! Lightning's keys, a resume from a checkpoint keeps every group, and mistakes are errors naming
//! what to change.

mod common;

use burn::nn::{LayerNorm, Linear};
use burn::optim::AdamWConfig;
use burn::optim::lr_scheduler::cosine::CosineAnnealingLrSchedulerConfig;
use burn::optim::lr_scheduler::step::StepLrSchedulerConfig;
use burn_lightning::JsonValue;
use burn_lightning::prelude::*;
use common::fixture::{self, assert_close};
use common::recording::{Recording, metric_calls};
use std::sync::{Arc, Mutex};

/// How `configure_optimizers` configures the optimizer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setup {
    /// The fixture's: decayed weights, undecayed biases and norms at twice the rate, StepLR.
    TorchGroups,
    /// The same groups under a cosine decay to a tenth of each group's rate over 5 steps.
    Cosine,
    /// A parameter in both groups.
    Overlapping,
    /// A group's own weight decay on a type-erased `ModuleOptimizer`.
    ErasedWithDecay,
    /// A group whose selection matched nothing.
    Empty,
}

/// torch's `Grouped`: `fc2(ln(fc1(x)))`.
#[lightning_module]
#[derive(Module, Debug)]
pub struct Grouped {
    fc1: Linear,
    ln: LayerNorm,
    fc2: Linear,
    #[module(skip)]
    setup: Setup,
    /// After every optimizer step: the parameters as torch lays them out, and the rates it used.
    #[module(skip)]
    seen: Arc<Mutex<Vec<Step>>>,
}

/// The parameters after an optimizer step and the rates of its groups.
type Step = (Vec<f32>, Vec<f64>);

impl Grouped {
    fn from_fixture(fixture: &JsonValue, setup: Setup) -> Self {
        let device = Device::default();
        let state = &fixture["initial"];
        Self {
            fc1: fixture::linear(state, "fc1.", &device),
            ln: fixture::layer_norm(state, "ln.", &device),
            fc2: fixture::linear(state, "fc2.", &device),
            setup,
            seen: Arc::default(),
        }
    }

    fn loss(&self, batch: TensorBatch) -> Tensor<1> {
        let out = self.fc2.forward(self.ln.forward(self.fc1.forward(batch.x)));
        (out - batch.y).powi_scalar(2).mean()
    }

    /// The parameters in the order of torch's `state_dict`, laid out as torch's.
    fn torch_params(&self) -> Vec<f32> {
        let (w1, b1) = fixture::torch_linear(&self.fc1);
        let (w2, b2) = fixture::torch_linear(&self.fc2);
        let gamma = fixture::values(self.ln.gamma.val());
        let beta = fixture::values(self.ln.beta.as_ref().unwrap().val());
        [w1, b1, gamma, beta, w2, b2].concat()
    }
}

#[lightning_module]
impl Grouped {
    #[hook]
    fn training_step(&self, batch: TensorBatch, _batch_idx: usize, cx: &mut StepContext) -> Tensor<1> {
        let optimizer = cx.optimizer().expect("readable in training_step");
        let rates = (0..optimizer.group_count()).map(|g| optimizer.group_lr(g)).collect();
        self.seen.lock().unwrap().push((Vec::new(), rates));
        self.loss(batch)
    }

    #[hook]
    fn on_train_batch_end(&mut self, _outputs: Option<&StepOutput>, _batch: &TensorBatch, _batch_idx: usize) {
        let params = self.torch_params();
        self.seen.lock().unwrap().last_mut().unwrap().0 = params;
    }

    #[hook]
    fn configure_optimizers(&self) -> OptimizerConfig {
        // torch: `AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay,
        // "weight_decay": 0.0, "lr": 0.02}], lr=0.01, eps=1e-8, weight_decay=0.05)`.
        let adamw = AdamWConfig::new().with_epsilon(1e-8).with_weight_decay(0.05);
        let decay = ParamGroupConfig::new(Params::decay(self)).weight_decay(0.1);
        let no_decay = ParamGroupConfig::new(Params::no_decay(self)).weight_decay(0.0).lr(0.02);
        let step_lr = LrSchedulerConfig::new(|lr| StepLrSchedulerConfig::new(lr, 2).with_gamma(0.5).init())
            .interval(Interval::Step);
        match self.setup {
            Setup::TorchGroups => OptimizerConfig::new(adamw, 0.01)
                .param_group(decay)
                .param_group(no_decay)
                .with_scheduler(step_lr),
            // Built per group from its own rate: each decays to its own floor.
            Setup::Cosine => OptimizerConfig::new(adamw, 0.01)
                .param_group(decay)
                .param_group(no_decay)
                .with_scheduler(
                    LrSchedulerConfig::new(|lr| {
                        CosineAnnealingLrSchedulerConfig::new(lr, 5)
                            .with_min_lr(lr / 10.0)
                            .init()
                    })
                    .interval(Interval::Step),
                ),
            Setup::Overlapping => OptimizerConfig::new(adamw, 0.01)
                .param_group(decay)
                .param_group(ParamGroupConfig::new(Params::of(&self.fc1))),
            Setup::ErasedWithDecay => OptimizerConfig::new(adamw.init(), 0.01)
                .param_group(decay)
                .param_group(no_decay),
            Setup::Empty => OptimizerConfig::new(adamw, 0.01)
                .param_group(decay)
                .param_group(ParamGroupConfig::new(Params::matching(self, |p| p.is_embedding()))),
        }
    }
}

fn builder(dir: &std::path::Path) -> TrainerBuilder<Grouped> {
    Trainer::builder()
        .default_root_dir(dir)
        .enable_progress_bar(false)
        .enable_model_summary(false)
        .enable_checkpointing(false)
        .enable_report(false)
        .max_epochs(3)
}

/// Fits `setup` on the fixture's data (3 epochs of 2 batches) and compares each step's rates
/// and parameters with torch's.
fn assert_steps_as_torchs(fixture_name: &str, setup: Setup) -> Vec<Vec<f64>> {
    let fixture = fixture::load(fixture_name);
    let model = Grouped::from_fixture(&fixture, setup);
    let seen = model.seen.clone();
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = builder(dir.path()).build().unwrap();
    trainer
        .fit(
            model,
            Loaders::fit(fixture::loader(&fixture, "inputs", "targets", 4), None),
        )
        .unwrap();
    let seen = seen.lock().unwrap();
    let steps = fixture["steps"].as_array().unwrap();
    assert_eq!(seen.len(), steps.len(), "6 optimizer steps");
    let names = [
        "fc1.weight",
        "fc1.bias",
        "ln.weight",
        "ln.bias",
        "fc2.weight",
        "fc2.bias",
    ];
    for (i, ((params, rates), step)) in seen.iter().zip(steps).enumerate() {
        let torch_rates: Vec<f64> = step["lrs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(rates.len(), torch_rates.len(), "step {i}: groups");
        for (rate, torch_rate) in rates.iter().zip(&torch_rates) {
            assert!(
                (rate - torch_rate).abs() < 1e-12,
                "step {i}: rates {rates:?}, torch {torch_rates:?}"
            );
        }
        let torch: Vec<f32> = names
            .iter()
            .flat_map(|name| {
                let value = &step["params"][*name];
                match value[0].is_array() {
                    true => fixture::matrix(value).0,
                    false => fixture::vector(value),
                }
            })
            .collect();
        assert_close(params, &torch, 2e-6, &format!("parameters after step {}", i + 1));
    }
    seen.iter().map(|(_, rates)| rates.clone()).collect()
}

#[test]
fn decayed_and_undecayed_parameters_move_as_torchs_adamw_moves_them() {
    // StepLR halves each group's own rate every 2 steps: 0.01 and 0.02, then 0.005 and 0.01...
    assert_steps_as_torchs("adamw_groups.json", Setup::TorchGroups);
}

/// A cosine built per group decays each group to its own floor, as torch's `LambdaLR` with the
/// cosine factor (`tests/fixtures/cosine_groups.json`).
#[test]
fn a_cosine_decays_each_group_to_its_own_floor_as_torchs_does() {
    let rates = assert_steps_as_torchs("cosine_groups.json", Setup::Cosine);
    let last = rates.last().unwrap();
    assert!(
        (last[0] - 0.001).abs() < 1e-12 && (last[1] - 0.002).abs() < 1e-12,
        "the floors: {last:?}"
    );
}

#[test]
fn the_learning_rate_monitor_logs_each_group_and_its_weight_decay_as_lightning_does() {
    let fixture = fixture::load("adamw_groups.json");
    let dir = tempfile::tempdir().unwrap();
    let (logger, calls) = Recording::new(dir.path());
    let mut trainer = builder(dir.path())
        .logger(logger)
        .log_every_n_steps(1)
        .callback(
            LearningRateMonitor::new()
                .logging_interval(Interval::Step)
                .log_weight_decay(true),
        )
        .build()
        .unwrap();
    trainer
        .fit(
            Grouped::from_fixture(&fixture, Setup::TorchGroups),
            Loaders::fit(fixture::loader(&fixture, "inputs", "targets", 4), None),
        )
        .unwrap();
    let ours: Vec<(usize, Vec<(String, f64)>)> = metric_calls(&calls.lock().unwrap())
        .into_iter()
        .filter(|(_, m)| m.keys().any(|k| k.starts_with("lr-")))
        .map(|(step, m)| (step, m.into_iter().filter(|(k, _)| k.starts_with("lr-")).collect()))
        .collect();
    let lightning: Vec<(usize, Vec<(String, f64)>)> = fixture["monitored"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|row| {
            let row = row.as_object().unwrap();
            let lrs: Vec<(String, f64)> = row
                .iter()
                .filter(|(k, _)| k.starts_with("lr-"))
                .map(|(k, v)| (k.clone(), v.as_f64().unwrap()))
                .collect();
            (!lrs.is_empty()).then(|| (row["step"].as_f64().unwrap() as usize, lrs))
        })
        .collect();
    assert_eq!(
        ours.iter()
            .map(|(_, m)| m.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>())
            .next(),
        Some(vec![
            "lr-AdamW/pg1".to_string(),
            "lr-AdamW/pg1-weight_decay".to_string(),
            "lr-AdamW/pg2".to_string(),
            "lr-AdamW/pg2-weight_decay".to_string(),
        ]),
        "Lightning's keys"
    );
    assert_eq!(ours.len(), lightning.len(), "ours {ours:?}\nLightning's {lightning:?}");
    for ((step, values), (lightning_step, lightning_values)) in ours.iter().zip(&lightning) {
        assert_eq!(step, lightning_step);
        let mut sorted = lightning_values.clone();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        for ((key, value), (lightning_key, lightning_value)) in values.iter().zip(&sorted) {
            assert_eq!(key, lightning_key);
            assert!(
                (value - lightning_value).abs() < 1e-9,
                "{key} at step {step}: {value} vs {lightning_value}"
            );
        }
    }
}

#[test]
fn a_resumed_fit_keeps_every_group_and_trains_as_an_uninterrupted_one() {
    let fixture = fixture::load("adamw_groups.json");
    let data = || Loaders::fit(fixture::loader(&fixture, "inputs", "targets", 4), None);
    let dir = tempfile::tempdir().unwrap();
    let mut whole = builder(&dir.path().join("whole")).build().unwrap();
    let uninterrupted = whole
        .fit(Grouped::from_fixture(&fixture, Setup::TorchGroups), data())
        .unwrap();

    let root = dir.path().join("resumed");
    let mut first = builder(&root).max_epochs(2).enable_checkpointing(true).build().unwrap();
    first
        .fit(Grouped::from_fixture(&fixture, Setup::TorchGroups), data())
        .unwrap();
    // A fresh module: its weights, its optimizer's groups and their moments come from the file.
    let mut second = builder(&root).build().unwrap();
    let resumed = second
        .fit_from(
            Grouped::from_fixture(&fixture, Setup::TorchGroups),
            data(),
            CkptPath::Last,
        )
        .unwrap();
    assert_eq!(resumed.torch_params(), uninterrupted.torch_params(), "bit for bit");
}

#[test]
fn group_mistakes_are_errors_that_say_what_to_change() {
    let fixture = fixture::load("adamw_groups.json");
    for (setup, expected) in [
        (Setup::Overlapping, "is in param groups 1 and 2"),
        (
            Setup::ErasedWithDecay,
            "give `OptimizerConfig::new` the optimizer's configuration",
        ),
        (Setup::Empty, "param group 2 holds no parameter"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut trainer = builder(dir.path()).build().unwrap();
        let error = trainer
            .fit(
                Grouped::from_fixture(&fixture, setup),
                Loaders::fit(fixture::loader(&fixture, "inputs", "targets", 4), None),
            )
            .expect_err("refused")
            .error
            .to_string();
        assert!(error.contains("configure_optimizers"), "{error}");
        assert!(error.contains(expected), "{setup:?}: {error}");
    }
}

/// minGPT's rule, written as the GPT example will write it, picks the same parameters as a
/// predicate on module types and names.
#[test]
fn min_gpts_split_is_one_line_per_group() {
    let fixture = fixture::load("adamw_groups.json");
    let model = Grouped::from_fixture(&fixture, Setup::TorchGroups);
    assert_eq!(
        Params::decay(&model).paths().collect::<Vec<_>>(),
        ["fc1.weight", "fc2.weight"]
    );
    assert_eq!(
        Params::no_decay(&model).paths().collect::<Vec<_>>(),
        ["fc1.bias", "ln.gamma", "ln.beta", "fc2.bias"]
    );
    let by_predicate = Params::matching(&model, |p| p.in_module::<Linear>() && p.name() == "weight");
    assert_eq!(by_predicate, Params::decay(&model));
}
