//! Weight averaging against Lightning's (`tests/fixtures/ema_averaging.json` and `swa.json`, from
//! `bash scripts/optim_fixtures.sh`): `WeightAveraging::ema` validates with the averaged weights,
//! saves them as the checkpoint's weights with the trained ones under `current_model_state`, and
//! ends the fit with them; `StochasticWeightAveraging` anneals the rate with SWALR, averages the
//! epochs' weights and computes the BatchNorm statistics of the average in one more epoch. A
//! resumed fit restores the average and ends as an uninterrupted one.

mod common;

use burn::nn::{BatchNorm, Linear};
use burn::optim::SgdConfig;
use burn::tensor::activation::relu;
use burn_lightning::prelude::*;
use burn_lightning::{JsonValue, StochasticWeightAveraging, WeightAveraging};
use common::fixture::{self, assert_close};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The fixtures' `Mlp`: `fc2(relu(bn(fc1(x))))`, the BatchNorm in the SWA fixture only.
#[lightning_module]
#[derive(Module, Debug)]
pub struct Mlp {
    fc1: Linear,
    bn: Option<BatchNorm>,
    fc2: Linear,
    /// The rate of the first step of each epoch, and each validation's loss.
    #[module(skip)]
    seen: Arc<Mutex<(Vec<f64>, Vec<f64>)>>,
}

impl Mlp {
    fn from_fixture(fixture: &JsonValue) -> Self {
        let device = Device::default();
        let state = &fixture["initial"];
        Self {
            fc1: fixture::linear(state, "fc1.", &device),
            bn: state
                .get("bn.weight")
                .map(|_| fixture::batch_norm(state, "bn.", &device)),
            fc2: fixture::linear(state, "fc2.", &device),
            seen: Arc::default(),
        }
    }

    fn loss(&self, batch: TensorBatch) -> Tensor<1> {
        let hidden = self.fc1.forward(batch.x);
        let hidden = match &self.bn {
            Some(bn) => bn.forward(hidden),
            None => hidden,
        };
        (self.fc2.forward(relu(hidden)) - batch.y).powi_scalar(2).mean()
    }

    /// The parameters (and running statistics), as torch's `state_dict` lays them out.
    fn torch_state(&self) -> Vec<(&'static str, Vec<f32>)> {
        let (w1, b1) = fixture::torch_linear(&self.fc1);
        let (w2, b2) = fixture::torch_linear(&self.fc2);
        let mut state = vec![("fc1.weight", w1), ("fc1.bias", b1)];
        if let Some(bn) = &self.bn {
            state.push(("bn.weight", fixture::values(bn.gamma.val())));
            state.push(("bn.bias", fixture::values(bn.beta.val())));
            state.push(("bn.running_mean", fixture::values(bn.running_mean.value())));
            state.push(("bn.running_var", fixture::values(bn.running_var.value())));
        }
        state.extend([("fc2.weight", w2), ("fc2.bias", b2)]);
        state
    }
}

#[lightning_module]
impl Mlp {
    #[hook]
    fn training_step(&self, batch: TensorBatch, batch_idx: usize, cx: &mut StepContext) -> Tensor<1> {
        if batch_idx == 0 {
            let lr = cx.optimizer().expect("readable").lr();
            self.seen.lock().unwrap().0.push(lr);
        }
        self.loss(batch)
    }

    #[hook]
    fn validation_step(&self, batch: TensorBatch, _batch_idx: usize, cx: &mut StepContext) {
        cx.log("val_loss", self.loss(batch));
    }

    #[hook]
    fn on_validation_epoch_end(&mut self, cx: &mut EpochContext) {
        let loss = cx.callback_metrics()["val_loss"];
        self.seen.lock().unwrap().1.push(loss);
    }

    #[hook]
    fn configure_optimizers(&self) -> OptimizerConfig {
        OptimizerConfig::new(SgdConfig::new(), 0.1)
    }
}

/// Compares `state` (torch's layout) with the fixture's `expected`, running variances times
/// `variance_scale` (burn's BatchNorm keeps the biased variance, torch's the unbiased one).
fn assert_state(state: &[(&str, Vec<f32>)], expected: &JsonValue, variance_scale: f32, what: &str) {
    for (name, values) in state {
        let value = &expected[*name];
        let mut torch = match value[0].is_array() {
            true => fixture::matrix(value).0,
            false => fixture::vector(value),
        };
        if name.ends_with("running_var") {
            torch.iter_mut().for_each(|v| *v *= variance_scale);
        }
        assert_close(values, &torch, 2e-5, &format!("{what}: {name}"));
    }
}

fn builder(root: &Path, epochs: usize) -> TrainerBuilder<Mlp> {
    Trainer::builder()
        .default_root_dir(root)
        .enable_progress_bar(false)
        .enable_model_summary(false)
        .enable_report(false)
        .num_sanity_val_steps(0)
        .max_epochs(epochs)
}

fn ema_data(fixture: &JsonValue) -> Loaders<TensorBatch> {
    Loaders::fit(
        fixture::loader(fixture, "inputs", "targets", 4),
        Some(fixture::loader(fixture, "val_inputs", "val_targets", 4)),
    )
}

/// The checkpoint `root`'s first run saved for epoch `epoch`.
fn checkpoint_of_epoch(root: &Path, epoch: usize) -> PathBuf {
    let dir = root.join("lightning_logs/version_0/checkpoints");
    std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&format!("epoch={epoch}-"))
        })
        .unwrap_or_else(|| panic!("no checkpoint of epoch {epoch} in {}", dir.display()))
}

#[test]
fn ema_validates_saves_and_ends_with_the_average_as_lightning() {
    let fixture = fixture::load("ema_averaging.json");
    let dir = tempfile::tempdir().unwrap();
    let model = Mlp::from_fixture(&fixture);
    let seen = model.seen.clone();
    let mut trainer = builder(dir.path(), 3)
        .callback(WeightAveraging::ema(0.9))
        .callback(ModelCheckpoint::new().save_top_k(-1))
        .build()
        .unwrap();
    let model = trainer.fit(model, ema_data(&fixture)).unwrap();

    // Each epoch's validation ran on the average.
    let val_losses: Vec<f32> = seen.lock().unwrap().1.iter().map(|v| *v as f32).collect();
    assert_close(
        &val_losses,
        &fixture::vector(&fixture["val_losses"]),
        1e-5,
        "validation losses",
    );
    // `fit` ends with the average.
    assert_state(&model.torch_state(), &fixture["final"], 1.0, "final weights");

    // The last epoch's checkpoint: the average as its weights, the trained ones beside.
    let checkpoint = Checkpoint::load(&checkpoint_of_epoch(dir.path(), 2)).unwrap();
    let saved = checkpoint.restore_module(Mlp::from_fixture(&fixture)).unwrap();
    assert_state(
        &saved.torch_state(),
        &fixture["state_dict"],
        1.0,
        "the checkpoint's weights",
    );
    let current = checkpoint
        .load_weights("current_model_state", Mlp::from_fixture(&fixture))
        .unwrap();
    assert_state(
        &current.torch_state(),
        &fixture["current_model_state"],
        1.0,
        "current_model_state",
    );
    assert_eq!(
        checkpoint.extra["averaging_state"]["n_averaged"], fixture["n_averaged"],
        "the averaging's state, as Lightning's `averaging_state`"
    );
}

/// EMA's schedule (Lightning's `EMAWeightAveraging.should_update`): after optimizer step index
/// `i` (zero-based) when `i % update_every_n_steps == 0` and `i >= update_starting_at_step`.
#[test]
fn ema_every_n_steps_updates_at_lightnings_step_indices() {
    let fixture = fixture::load("ema_averaging.json");
    let schedules: [(usize, Option<usize>); 2] = [(3, None), (3, Some(5))];
    for (every, start) in schedules {
        let dir = tempfile::tempdir().unwrap();
        let mut ema = WeightAveraging::ema(0.9).update_every_n_steps(every);
        if let Some(start) = start {
            ema = ema.update_starting_at_step(start);
        }
        let mut trainer = builder(dir.path(), 3)
            .callback(ema)
            .callback(ModelCheckpoint::new().save_top_k(-1))
            .build()
            .unwrap();
        trainer.fit(Mlp::from_fixture(&fixture), ema_data(&fixture)).unwrap();
        for epoch in 0..3 {
            let checkpoint = Checkpoint::load(&checkpoint_of_epoch(dir.path(), epoch)).unwrap();
            let expected = (0..checkpoint.global_step)
                .filter(|step| step % every == 0 && start.is_none_or(|start| *step >= start))
                .count();
            assert!(checkpoint.global_step > epoch * 3, "each epoch takes several steps");
            // Before the first update there is no average yet: the checkpoint holds the trained
            // weights only (Lightning's holds its copy from `setup`, the initial weights).
            let n_averaged = checkpoint
                .extra
                .get("averaging_state")
                .map_or(0, |state| state["n_averaged"].as_u64().unwrap() as usize);
            assert_eq!(
                n_averaged, expected,
                "updates after epoch {epoch} (every {every} steps, from step {start:?})"
            );
            assert_eq!(checkpoint.has_weights("current_model_state"), expected > 0);
        }
    }
}

#[test]
fn a_checkpoint_with_weight_sets_is_format_4_and_any_damage_to_it_is_an_error() {
    let fixture = fixture::load("ema_averaging.json");
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = builder(dir.path(), 1)
        .callback(WeightAveraging::ema(0.9))
        .build()
        .unwrap();
    trainer.fit(Mlp::from_fixture(&fixture), ema_data(&fixture)).unwrap();
    let good = std::fs::read(checkpoint_of_epoch(dir.path(), 0)).unwrap();
    let text = String::from_utf8_lossy(&good);
    assert!(text.contains(r#""format_version":"4""#));
    assert!(text.contains("__burn_lightning__.weights.current_model_state.fc1.weight"));
    assert!(
        Checkpoint::from_bytes(&good)
            .unwrap()
            .has_weights("current_model_state")
    );
    let mut loaded = Vec::new();
    for i in 0..good.len() {
        for mask in [0x01u8, 0x80] {
            let mut bytes = good.clone();
            bytes[i] ^= mask;
            match std::panic::catch_unwind(|| Checkpoint::from_bytes(&bytes).is_ok()) {
                Ok(false) => {}
                Ok(true) => loaded.push(format!("byte {i} ^ {mask:#x}")),
                Err(_) => loaded.push(format!("byte {i} ^ {mask:#x} panicked")),
            }
        }
    }
    assert_eq!(loaded, Vec::<String>::new(), "damaged files that loaded or panicked");
}

#[test]
fn a_resumed_ema_fit_restores_the_average_and_ends_as_an_uninterrupted_one() {
    let fixture = fixture::load("ema_averaging.json");
    let dir = tempfile::tempdir().unwrap();
    let whole = Mlp::from_fixture(&fixture);
    let whole_seen = whole.seen.clone();
    let mut trainer = builder(&dir.path().join("whole"), 3)
        .callback(WeightAveraging::ema(0.9))
        .build()
        .unwrap();
    let whole = trainer.fit(whole, ema_data(&fixture)).unwrap();

    let root = dir.path().join("resumed");
    let mut first = builder(&root, 2).callback(WeightAveraging::ema(0.9)).build().unwrap();
    first.fit(Mlp::from_fixture(&fixture), ema_data(&fixture)).unwrap();
    let resumed = Mlp::from_fixture(&fixture);
    let resumed_seen = resumed.seen.clone();
    let mut second = builder(&root, 3).callback(WeightAveraging::ema(0.9)).build().unwrap();
    let resumed = second.fit_from(resumed, ema_data(&fixture), CkptPath::Last).unwrap();

    assert_eq!(
        resumed.torch_state(),
        whole.torch_state(),
        "the final average, bit for bit"
    );
    assert_eq!(
        resumed_seen.lock().unwrap().1.last(),
        whole_seen.lock().unwrap().1.last(),
        "the last validation ran on the same average"
    );
}

#[test]
fn swa_anneals_averages_and_recomputes_batch_norm_statistics_as_lightning() {
    let fixture = fixture::load("swa.json");
    let dir = tempfile::tempdir().unwrap();
    let model = Mlp::from_fixture(&fixture);
    let seen = model.seen.clone();
    let swa = || {
        StochasticWeightAveraging::new(0.05)
            .swa_epoch_start(2usize)
            .annealing_epochs(2)
    };
    let mut trainer = builder(dir.path(), 4).callback(swa()).build().unwrap();
    let model = trainer
        .fit(
            model,
            Loaders::fit(fixture::loader(&fixture, "inputs", "targets", 4), None),
        )
        .unwrap();

    // SWALR from the second epoch on, and one more epoch for the BatchNorm statistics.
    let lrs = seen.lock().unwrap().0.clone();
    let torch_lrs: Vec<f64> = fixture["epoch_lrs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(
        lrs.len(),
        fixture["epochs_run"].as_u64().unwrap() as usize,
        "epochs run: {lrs:?}"
    );
    for (lr, torch_lr) in lrs.iter().zip(&torch_lrs) {
        assert!((lr - torch_lr).abs() < 1e-12, "{lrs:?} vs Lightning's {torch_lrs:?}");
    }
    // The BatchNorm epoch takes no optimizer step. Lightning's takes one at its last batch
    // (the end of its accumulation window), with the last training step's leftover gradients:
    // its global step is 17, and its module ends off the average by that step.
    assert_eq!(trainer.global_step(), 16);
    assert_eq!(fixture["global_step"], 17);
    let callback = trainer.callback::<StochasticWeightAveraging<Mlp>>().unwrap();
    assert_eq!(callback.n_averaged() as u64, fixture["n_averaged"].as_u64().unwrap());
    // The module ends with the average and the mean of the batches' statistics computed with
    // it (burn's variance is the biased one: torch's times (n - 1) / n for batches of n).
    let state = model.torch_state();
    let (statistics, parameters): (Vec<_>, Vec<_>) = state.into_iter().partition(|(name, _)| name.contains("running"));
    assert_state(&parameters, &fixture["average"], 1.0, "the average");
    let n = fixture["batch_size"].as_f64().unwrap() as f32;
    assert_state(
        &statistics,
        &fixture["final"],
        (n - 1.0) / n,
        "the BatchNorm statistics",
    );
}

#[test]
fn a_resumed_swa_fit_restores_the_average_and_the_annealing() {
    let fixture = fixture::load("swa.json");
    let data = || Loaders::fit(fixture::loader(&fixture, "inputs", "targets", 4), None);
    let swa = || {
        StochasticWeightAveraging::new(0.05)
            .swa_epoch_start(2usize)
            .annealing_epochs(2)
    };
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = builder(&dir.path().join("whole"), 4).callback(swa()).build().unwrap();
    let whole = trainer.fit(Mlp::from_fixture(&fixture), data()).unwrap();

    // Stopped after the third epoch: averaging started, SWALR stepped twice.
    let root = dir.path().join("resumed");
    let mut first = builder(&root, 3).callback(swa()).build().unwrap();
    first.fit(Mlp::from_fixture(&fixture), data()).unwrap();
    let checkpoint = checkpoint_of_epoch(&root, 2);
    let resumed = Mlp::from_fixture(&fixture);
    let seen = resumed.seen.clone();
    let mut second = builder(&root, 4).callback(swa()).build().unwrap();
    let resumed = second.fit_from(resumed, data(), checkpoint).unwrap();

    assert_eq!(seen.lock().unwrap().0, [0.05, 0.05], "SWALR's rate, restored");
    assert_eq!(resumed.torch_state(), whole.torch_state(), "bit for bit");
}

#[test]
fn bad_settings_are_errors_naming_the_callback() {
    let fixture = fixture::load("swa.json");
    for (callback, expected) in [
        (StochasticWeightAveraging::new(-1.0), "`swa_lrs`"),
        (
            StochasticWeightAveraging::new(0.05).swa_epoch_start(1.5),
            "a fraction of `max_epochs`",
        ),
        (
            StochasticWeightAveraging::new(0.05).swa_epoch_start(0usize),
            "epochs count from 1",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut trainer = builder(dir.path(), 2).callback(callback).build().unwrap();
        let error = trainer
            .fit(
                Mlp::from_fixture(&fixture),
                Loaders::fit(fixture::loader(&fixture, "inputs", "targets", 4), None),
            )
            .expect_err("refused")
            .error
            .to_string();
        assert!(error.contains("StochasticWeightAveraging"), "{error}");
        assert!(error.contains(expected), "{error}");
    }
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = builder(dir.path(), 2)
        .callback(WeightAveraging::ema(1.5))
        .build()
        .unwrap();
    let error = trainer
        .fit(
            Mlp::from_fixture(&fixture),
            Loaders::fit(fixture::loader(&fixture, "inputs", "targets", 4), None),
        )
        .expect_err("refused")
        .error
        .to_string();
    assert!(error.contains("decay is 1.5"), "{error}");
}
