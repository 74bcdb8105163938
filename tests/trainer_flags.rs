//! The trainer's flags change what a run does in ways a user sees: how many batches each loop
//! runs, how many optimizer steps are taken, when validation happens, when fitting stops, and
//! what the trainer's state looks like from inside the hooks.
//!
//! Every module here starts from constant weights (no draws from the device's generator), so
//! that the seeding test, which draws random weights, is not disturbed by tests running beside it.

mod common;

use burn::nn::{Initializer, Linear, LinearConfig};
use burn::optim::SgdConfig;
use burn::optim::lr_scheduler::step::StepLrSchedulerConfig;
use burn_lightning::prelude::*;
use common::{Pair, pair_loader, values};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// What a hook saw of the trainer's state.
#[derive(Clone, Debug, PartialEq)]
pub struct Seen {
    pub hook: &'static str,
    pub function: TrainerFn,
    pub stage: RunningStage,
    pub epoch: usize,
    pub batch_idx: usize,
    pub global_step: usize,
    pub max_epochs: Option<usize>,
    pub max_steps: Option<usize>,
}

/// What the probe does besides recording.
#[derive(Clone, Debug, Default)]
pub struct Script {
    /// `on_train_batch_start` returns `BatchControl::StopEpoch` at this batch index.
    pub stop_epoch_at: Option<usize>,
    /// `training_step` returns `None` (skips the batch) at these batch indices.
    pub skip: Vec<usize>,
    /// `cx.stop()` in every `on_train_batch_end`.
    pub stop_every_batch: bool,
    /// `cx.stop()` in every `on_train_epoch_end`.
    pub stop_every_epoch: bool,
    /// `cx.stop()` once, in the `on_train_batch_end` of this (epoch, batch index).
    pub stop_once_at: Option<(usize, usize)>,
}

/// A linear regressor that records what every hook saw.
#[lightning_module]
#[derive(Module, Debug)]
pub struct Probe {
    layer: Linear,
    #[module(skip)]
    seen: Arc<Mutex<Vec<Seen>>>,
    #[module(skip)]
    losses: Arc<Mutex<Vec<f32>>>,
    #[module(skip)]
    initial_weights: Arc<Mutex<Vec<f32>>>,
    #[module(skip)]
    script: Script,
    /// Learning rate of the first optimizer step of each epoch.
    #[module(skip)]
    lrs: Arc<Mutex<Vec<f64>>>,
    /// Whether `configure_optimizers` adds a StepLR (gamma 0.5, every epoch).
    #[module(skip)]
    epoch_scheduler: bool,
}

impl Probe {
    /// Constant initial weights: no random draws.
    fn new(script: Script) -> Self {
        let config = LinearConfig::new(32, 2).with_initializer(Initializer::Constant { value: 0.05 });
        Self::with_layer(config.init(&Device::default()), script)
    }

    /// Random initial weights, drawn lazily (on first use, inside the run).
    fn random() -> Self {
        Self::with_layer(LinearConfig::new(32, 2).init(&Device::default()), Script::default())
    }

    fn with_layer(layer: Linear, script: Script) -> Self {
        Self {
            layer,
            seen: Arc::default(),
            losses: Arc::default(),
            initial_weights: Arc::default(),
            script,
            lrs: Arc::default(),
            epoch_scheduler: false,
        }
    }

    fn with_epoch_scheduler(mut self) -> Self {
        self.epoch_scheduler = true;
        self
    }

    fn note(&self, hook: &'static str, state: &TrainerState) {
        self.seen.lock().unwrap().push(Seen {
            hook,
            function: state.function,
            stage: state.stage,
            epoch: state.current_epoch,
            batch_idx: state.batch_idx,
            global_step: state.global_step,
            max_epochs: state.max_epochs,
            max_steps: state.max_steps,
        });
    }

    fn loss(&self, batch: Pair) -> Tensor<1> {
        (self.layer.forward(batch.x) - batch.y).powi_scalar(2).mean()
    }
}

#[lightning_module]
impl Probe {
    #[hook]
    fn on_train_start(&mut self, _cx: &mut EpochContext) {
        *self.initial_weights.lock().unwrap() = values(self.layer.weight.val());
    }
    #[hook]
    fn on_train_batch_start(&mut self, _batch: &Pair, batch_idx: usize, cx: &mut StepContext) -> BatchControl {
        self.note("on_train_batch_start", cx);
        if self.script.stop_epoch_at == Some(batch_idx) {
            BatchControl::StopEpoch
        } else {
            BatchControl::Continue
        }
    }
    #[hook]
    fn training_step(&mut self, batch: Pair, batch_idx: usize, cx: &mut StepContext) -> Option<Tensor<1>> {
        self.note("training_step", cx);
        if self.script.skip.contains(&batch_idx) {
            return None;
        }
        let loss = self.loss(batch);
        self.losses.lock().unwrap().push(values(loss.clone())[0]);
        Some(loss)
    }
    #[hook]
    fn on_before_zero_grad(&mut self, _optimizer: &Optimizer, cx: &mut StepContext) {
        self.note("on_before_zero_grad", cx);
    }
    #[hook]
    fn on_before_optimizer_step(&mut self, optimizer: &Optimizer, _grads: &Gradients, cx: &mut StepContext) {
        self.note("on_before_optimizer_step", cx);
        if cx.batch_idx == 0 {
            self.lrs.lock().unwrap().push(optimizer.lr());
        }
    }
    #[hook]
    fn on_train_batch_end(
        &mut self,
        _outputs: Option<&StepOutput>,
        _batch: &Pair,
        batch_idx: usize,
        cx: &mut StepContext,
    ) {
        self.note("on_train_batch_end", cx);
        if self.script.stop_every_batch || self.script.stop_once_at == Some((cx.current_epoch, batch_idx)) {
            cx.stop();
        }
    }
    #[hook]
    fn on_train_epoch_end(&mut self, cx: &mut EpochContext) {
        self.note("on_train_epoch_end", cx);
        if self.script.stop_every_epoch {
            cx.stop();
        }
    }
    #[hook]
    fn validation_step(&self, batch: Pair, _batch_idx: usize, cx: &mut StepContext) {
        self.note("validation_step", cx);
        cx.log("val_loss", self.loss(batch));
    }
    #[hook]
    fn test_step(&self, batch: Pair, _batch_idx: usize, cx: &mut StepContext) {
        self.note("test_step", cx);
        cx.log("test_loss", self.loss(batch));
    }
    #[hook]
    fn predict_step(&self, batch: Pair, _batch_idx: usize, cx: &mut HookContext) -> Tensor<2> {
        self.note("predict_step", cx);
        self.layer.forward(batch.x)
    }
    #[hook]
    fn configure_optimizers(&self) -> OptimizerConfig {
        let config = OptimizerConfig::new(SgdConfig::new().init(), 0.05);
        if self.epoch_scheduler {
            let halving = LrSchedulerConfig::new(|lr| StepLrSchedulerConfig::new(lr, 1).with_gamma(0.5).init());
            return config.with_scheduler(halving.interval(Interval::Epoch));
        }
        config
    }
}

/// A trainer writing under `root`, without progress output or checkpoints.
fn builder(root: &Path) -> TrainerBuilder<Probe> {
    Trainer::builder()
        .default_root_dir(root)
        .enable_progress_bar(false)
        .enable_checkpointing(false)
}

/// `train` items and `val` items, 4 per batch.
fn data(train: usize, val: usize) -> Loaders<Pair> {
    Loaders::fit(pair_loader(train, 4), Some(pair_loader(val, 4)))
}

fn fit(builder: TrainerBuilder<Probe>, model: Probe, data: Loaders<Pair>) -> Vec<Seen> {
    let seen = model.seen.clone();
    builder.build().unwrap().fit(model, data).unwrap();
    seen.lock().unwrap().clone()
}

fn calls<'a>(seen: &'a [Seen], hook: &str) -> Vec<&'a Seen> {
    seen.iter().filter(|s| s.hook == hook).collect()
}

fn count(seen: &[Seen], hook: &str, stage: RunningStage) -> usize {
    seen.iter().filter(|s| s.hook == hook && s.stage == stage).count()
}

/// The number of validation runs: validation batches with index 0 outside the sanity check.
fn validation_runs(seen: &[Seen]) -> Vec<usize> {
    seen.iter()
        .filter(|s| s.hook == "validation_step" && s.stage == RunningStage::Validating && s.batch_idx == 0)
        .map(|s| s.global_step)
        .collect()
}

/// `(epoch, global_step)` at the end of each training epoch.
fn epoch_ends(seen: &[Seen]) -> Vec<(usize, usize)> {
    calls(seen, "on_train_epoch_end")
        .iter()
        .map(|s| (s.epoch, s.global_step))
        .collect()
}

#[test]
fn max_epochs_runs_that_many_full_epochs() {
    let dir = tempfile::tempdir().unwrap();
    let seen = fit(
        builder(dir.path()).max_epochs(3).num_sanity_val_steps(0),
        Probe::new(Script::default()),
        data(12, 4),
    );
    assert_eq!(epoch_ends(&seen), [(0, 3), (1, 6), (2, 9)]);
    assert_eq!(calls(&seen, "training_step").len(), 9);
}

#[test]
fn max_steps_stops_in_the_middle_of_an_epoch() {
    let dir = tempfile::tempdir().unwrap();
    // 5 batches per epoch; the 7th step is the 2nd batch of the 2nd epoch.
    let seen = fit(
        builder(dir.path()).max_steps(7).num_sanity_val_steps(0),
        Probe::new(Script::default()),
        data(20, 4),
    );
    assert_eq!(calls(&seen, "training_step").len(), 7);
    assert_eq!(
        epoch_ends(&seen),
        [(0, 5), (1, 7)],
        "the interrupted epoch still ends, and no third one starts"
    );
    let last = calls(&seen, "training_step").last().copied().cloned().unwrap();
    assert_eq!((last.epoch, last.batch_idx, last.global_step), (1, 1, 6));
}

#[test]
fn the_first_of_max_epochs_and_max_steps_wins() {
    let dir = tempfile::tempdir().unwrap();
    let seen = fit(
        builder(dir.path()).max_epochs(1).max_steps(100).num_sanity_val_steps(0),
        Probe::new(Script::default()),
        data(20, 4),
    );
    assert_eq!(epoch_ends(&seen), [(0, 5)]);
}

#[test]
fn without_max_epochs_or_max_steps_fit_is_bounded_by_1000_epochs() {
    let stop_at_once = || Script {
        stop_once_at: Some((0, 0)),
        ..Script::default()
    };
    let limits = |builder: TrainerBuilder<Probe>| {
        let dir = tempfile::tempdir().unwrap();
        let seen = fit(
            builder.default_root_dir(dir.path()),
            Probe::new(stop_at_once()),
            data(8, 4),
        );
        (seen[0].max_epochs, seen[0].max_steps)
    };
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(limits(builder(dir.path())), (Some(1000), None));
    assert_eq!(limits(builder(dir.path()).max_steps(50)), (None, Some(50)));
    assert_eq!(limits(builder(dir.path()).max_epochs(3)), (Some(3), None));
}

/// Lightning's `_parse_loop_limits`: `max_epochs=-1` is no epoch limit; unset, 1000 epochs with a
/// warning unless `max_steps`, `max_time` or a `Timer` bounds the run.
#[test]
fn max_epochs_minus_one_max_time_and_a_timer_leave_epochs_unbounded() {
    let stop_at_once = || Script {
        stop_once_at: Some((0, 0)),
        ..Script::default()
    };
    let limits = |builder: TrainerBuilder<Probe>| {
        let dir = tempfile::tempdir().unwrap();
        let (seen, warnings) = common::warnings_of(|| {
            fit(
                builder.default_root_dir(dir.path()),
                Probe::new(stop_at_once()),
                data(8, 4),
            )
        });
        let warned = warnings
            .iter()
            .any(|w| w.contains("`max_epochs` was not set. Setting it to 1000 epochs"));
        (seen[0].max_epochs, seen[0].max_steps, warned)
    };
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(
        limits(builder(dir.path())),
        (Some(1000), None, true),
        "the default warns"
    );
    assert_eq!(limits(builder(dir.path()).max_epochs(-1)), (None, None, false));
    assert_eq!(
        limits(builder(dir.path()).max_epochs(MaxCount::Unlimited)),
        (None, None, false)
    );
    assert_eq!(limits(builder(dir.path()).max_steps(-1)), (Some(1000), None, true));
    assert_eq!(limits(builder(dir.path()).max_steps(40)), (None, Some(40), false));
    assert_eq!(limits(builder(dir.path()).max_time("00:01:00:00")), (None, None, false));
    assert_eq!(
        limits(builder(dir.path()).callback(Timer::new(None))),
        (None, None, false)
    );
    // The YAML and CLI form, `max_epochs: -1`, is the same as the builder's.
    let yaml: TrainerConfig =
        serde_json::from_value(serde_json::json!({"max_epochs": -1, "enable_progress_bar": false})).unwrap();
    assert_eq!(limits(builder(dir.path()).config(yaml)), (None, None, false));
    let negative = builder(dir.path()).max_epochs(-2).build().err().unwrap().to_string();
    assert!(
        negative.contains("max_epochs") && negative.contains("-1 for no limit"),
        "{negative}"
    );
}

#[test]
fn max_epochs_minus_one_trains_past_a_thousand_epochs() {
    let dir = tempfile::tempdir().unwrap();
    // One batch per epoch; the probe asks to stop in epoch 1001, past the old 1000-epoch cap.
    let script = Script {
        stop_once_at: Some((1001, 0)),
        ..Script::default()
    };
    let seen = fit(
        builder(dir.path())
            .max_epochs(-1)
            .limit_val_batches(0)
            .enable_model_summary(false),
        Probe::new(script),
        data(4, 4),
    );
    assert_eq!(epoch_ends(&seen).last(), Some(&(1001, 1002)));
}

#[test]
fn a_stop_request_ends_fitting_after_the_current_batch() {
    let dir = tempfile::tempdir().unwrap();
    let script = Script {
        stop_once_at: Some((0, 1)),
        ..Script::default()
    };
    let seen = fit(
        builder(dir.path()).max_epochs(5).num_sanity_val_steps(0),
        Probe::new(script),
        data(20, 4),
    );
    assert_eq!(calls(&seen, "training_step").len(), 2);
    assert_eq!(epoch_ends(&seen), [(0, 2)]);
}

#[test]
fn min_epochs_overrides_stop_requests_made_at_epoch_end() {
    let dir = tempfile::tempdir().unwrap();
    let script = Script {
        stop_every_epoch: true,
        ..Script::default()
    };
    let seen = fit(
        builder(dir.path()).min_epochs(3).max_epochs(10).num_sanity_val_steps(0),
        Probe::new(script),
        data(16, 4),
    );
    // Lightning: `should_stop` is honoured once `min_epochs` epochs are complete.
    assert_eq!(epoch_ends(&seen), [(0, 4), (1, 8), (2, 12)]);
}

#[test]
fn min_epochs_overrides_stop_requests_made_during_an_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let script = Script {
        stop_every_batch: true,
        ..Script::default()
    };
    let seen = fit(
        builder(dir.path()).min_epochs(3).max_epochs(10).num_sanity_val_steps(0),
        Probe::new(script),
        data(16, 4),
    );
    // Lightning's `_can_stop_early` counts completed epochs: the third epoch runs to its end.
    assert_eq!(epoch_ends(&seen), [(0, 4), (1, 8), (2, 12)]);
}

#[test]
fn min_steps_overrides_stop_requests() {
    let dir = tempfile::tempdir().unwrap();
    let script = Script {
        stop_every_batch: true,
        ..Script::default()
    };
    let seen = fit(
        builder(dir.path()).min_steps(6).max_epochs(10).num_sanity_val_steps(0),
        Probe::new(script),
        data(16, 4),
    );
    // 4 batches per epoch: the stop is honoured at the first batch end with global_step >= 6.
    assert_eq!(calls(&seen, "training_step").len(), 6);
    assert_eq!(epoch_ends(&seen), [(0, 4), (1, 6)]);
}

#[test]
fn a_single_stop_request_is_honoured_once_min_steps_is_reached() {
    let dir = tempfile::tempdir().unwrap();
    let script = Script {
        stop_once_at: Some((0, 0)),
        ..Script::default()
    };
    let seen = fit(
        builder(dir.path()).min_steps(6).max_epochs(5).num_sanity_val_steps(0),
        Probe::new(script),
        data(16, 4),
    );
    // Lightning keeps `trainer.should_stop` set and stops as soon as the minimum is met.
    assert_eq!(calls(&seen, "training_step").len(), 6);
}

#[test]
fn limit_train_batches_as_count_and_fraction() {
    for (limit, per_epoch) in [
        (Limit::Batches(3), 3),
        (Limit::Fraction(0.4), 2),
        (Limit::Batches(99), 5),
        (Limit::Fraction(1.0), 5),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let seen = fit(
            builder(dir.path())
                .max_epochs(2)
                .limit_train_batches(limit)
                .num_sanity_val_steps(0),
            Probe::new(Script::default()),
            data(20, 4),
        );
        let batch_indices: Vec<usize> = calls(&seen, "training_step").iter().map(|s| s.batch_idx).collect();
        let expected: Vec<usize> = (0..per_epoch).chain(0..per_epoch).collect();
        assert_eq!(batch_indices, expected, "{limit:?}");
        assert_eq!(epoch_ends(&seen), [(0, per_epoch), (1, 2 * per_epoch)], "{limit:?}");
    }
}

#[test]
fn limit_train_batches_zero_skips_training() {
    let dir = tempfile::tempdir().unwrap();
    let seen = fit(
        builder(dir.path()).max_epochs(2).limit_train_batches(0),
        Probe::new(Script::default()),
        data(20, 4),
    );
    assert!(calls(&seen, "training_step").is_empty());
    assert!(calls(&seen, "on_train_epoch_end").is_empty());
}

#[test]
fn limit_val_batches_as_count_and_fraction() {
    for (limit, per_run) in [
        (Limit::Batches(2), 2),
        (Limit::Fraction(0.75), 3),
        (Limit::All, 4),
        (Limit::Batches(0), 0),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let seen = fit(
            builder(dir.path())
                .max_epochs(2)
                .limit_val_batches(limit)
                .num_sanity_val_steps(0),
            Probe::new(Script::default()),
            data(8, 16),
        );
        assert_eq!(
            count(&seen, "validation_step", RunningStage::Validating),
            2 * per_run,
            "{limit:?}"
        );
    }
}

#[test]
fn limit_val_batches_zero_also_turns_the_sanity_check_off() {
    let dir = tempfile::tempdir().unwrap();
    let seen = fit(
        builder(dir.path()).max_epochs(1).limit_val_batches(0),
        Probe::new(Script::default()),
        data(8, 16),
    );
    assert!(calls(&seen, "validation_step").is_empty());
}

#[test]
fn val_check_interval_as_a_fraction_of_the_epoch() {
    for (interval, steps) in [(0.25, vec![2, 4, 6, 8]), (0.5, vec![4, 8]), (1.0, vec![8])] {
        let dir = tempfile::tempdir().unwrap();
        let seen = fit(
            builder(dir.path())
                .max_epochs(1)
                .val_check_interval(interval)
                .limit_val_batches(1)
                .num_sanity_val_steps(0),
            Probe::new(Script::default()),
            data(32, 4),
        );
        assert_eq!(validation_runs(&seen), steps, "val_check_interval({interval})");
    }
}

#[test]
fn val_check_interval_as_a_number_of_batches() {
    let dir = tempfile::tempdir().unwrap();
    // 8 batches per epoch, validation every 3: after batches 3 and 6 of each epoch.
    let seen = fit(
        builder(dir.path())
            .max_epochs(2)
            .val_check_interval(3)
            .limit_val_batches(1)
            .num_sanity_val_steps(0),
        Probe::new(Script::default()),
        data(32, 4),
    );
    assert_eq!(validation_runs(&seen), [3, 6, 11, 14]);
}

#[test]
fn val_check_interval_counts_across_epochs_without_check_val_every_n_epoch() {
    let dir = tempfile::tempdir().unwrap();
    // 4 batches per epoch, validation every 6 batches counted over the whole fit.
    let seen = fit(
        builder(dir.path())
            .max_epochs(3)
            .val_check_interval(6)
            .check_val_every_n_epoch(None)
            .limit_val_batches(1)
            .num_sanity_val_steps(0),
        Probe::new(Script::default()),
        data(16, 4),
    );
    assert_eq!(validation_runs(&seen), [6, 12]);
}

#[test]
fn without_check_val_every_n_epoch_validation_counts_training_batches_not_steps() {
    let dir = tempfile::tempdir().unwrap();
    // Each epoch trains batches 0 and 1, then batch 2 ends it (`StopEpoch`): three batches
    // counted, two optimizer steps. Lightning counts batches (`total_batch_idx`): validation
    // after the 4th and the 8th batch, when 3 and 6 steps are done.
    let script = Script {
        stop_epoch_at: Some(2),
        ..Script::default()
    };
    let seen = fit(
        builder(dir.path())
            .max_epochs(3)
            .val_check_interval(4)
            .check_val_every_n_epoch(None)
            .limit_val_batches(1)
            .num_sanity_val_steps(0),
        Probe::new(script),
        data(16, 4),
    );
    assert_eq!(validation_runs(&seen), [3, 6]);
}

#[test]
fn limit_batches_of_zero_as_a_fraction_turns_the_loop_off_and_a_whole_float_counts() {
    let dir = tempfile::tempdir().unwrap();
    let seen = fit(
        builder(dir.path()).max_epochs(1).limit_val_batches(0.0),
        Probe::new(Script::default()),
        data(16, 4),
    );
    assert_eq!(
        calls(&seen, "validation_step").len(),
        0,
        "limit_val_batches(0.0) turns validation off"
    );
    let seen = fit(
        builder(dir.path()).max_epochs(1).limit_train_batches(2.0),
        Probe::new(Script::default()),
        data(16, 4),
    );
    assert_eq!(
        calls(&seen, "training_step").len(),
        2,
        "limit_train_batches(2.0) is 2 batches"
    );
}

#[test]
fn limit_train_batches_of_zero_skips_the_fit_loop() {
    let dir = tempfile::tempdir().unwrap();
    let seen = fit(
        builder(dir.path()).max_epochs(2).limit_train_batches(0),
        Probe::new(Script::default()),
        data(16, 16),
    );
    assert_eq!(calls(&seen, "training_step").len(), 0);
    assert_eq!(calls(&seen, "on_train_epoch_end").len(), 0);
    // The sanity check still runs, as in Lightning.
    assert_eq!(count(&seen, "validation_step", RunningStage::SanityChecking), 2);
}

#[test]
fn an_epoch_ended_by_on_train_batch_start_still_steps_epoch_schedulers() {
    let dir = tempfile::tempdir().unwrap();
    let script = Script {
        stop_epoch_at: Some(1),
        ..Script::default()
    };
    let model = Probe::new(script).with_epoch_scheduler();
    let lrs = model.lrs.clone();
    let mut trainer = builder(dir.path())
        .max_epochs(3)
        .num_sanity_val_steps(0)
        .build()
        .unwrap();
    trainer.fit(model, data(16, 4)).unwrap();
    // StepLR with gamma 0.5 every epoch, from the optimizer's 0.05: the rate halves after each
    // of the 3 epochs.
    assert_eq!(*lrs.lock().unwrap(), [0.05, 0.025, 0.0125]);
}

#[test]
fn check_val_every_n_epoch_validates_every_nth_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let seen = fit(
        builder(dir.path())
            .max_epochs(5)
            .check_val_every_n_epoch(Some(2))
            .limit_val_batches(1)
            .num_sanity_val_steps(0),
        Probe::new(Script::default()),
        data(8, 4),
    );
    let epochs: Vec<usize> = seen
        .iter()
        .filter(|s| s.hook == "validation_step" && s.stage == RunningStage::Validating)
        .map(|s| s.epoch)
        .collect();
    assert_eq!(epochs, [1, 3]);
}

#[test]
fn num_sanity_val_steps_runs_that_many_validation_batches_before_training() {
    for (steps, expected) in [(None, 2), (Some(0), 0), (Some(3), 3), (Some(usize::MAX), 4)] {
        let dir = tempfile::tempdir().unwrap();
        let builder = builder(dir.path()).max_epochs(1).limit_val_batches(Limit::All);
        let builder = match steps {
            Some(n) => builder.num_sanity_val_steps(n),
            None => builder,
        };
        let seen = fit(builder, Probe::new(Script::default()), data(8, 16));
        assert_eq!(
            count(&seen, "validation_step", RunningStage::SanityChecking),
            expected,
            "num_sanity_val_steps {steps:?}"
        );
        // The sanity check comes before any training.
        let sanity = seen.iter().rposition(|s| s.stage == RunningStage::SanityChecking);
        let first_train = seen.iter().position(|s| s.hook == "training_step").unwrap();
        assert!(sanity.is_none_or(|i| i < first_train));
        // The real validation still runs every batch.
        assert_eq!(count(&seen, "validation_step", RunningStage::Validating), 4);
    }
}

#[test]
fn num_sanity_val_steps_is_capped_by_a_count_limit_val_batches() {
    let dir = tempfile::tempdir().unwrap();
    let seen = fit(
        builder(dir.path())
            .max_epochs(1)
            .limit_val_batches(2)
            .num_sanity_val_steps(3),
        Probe::new(Script::default()),
        data(8, 16),
    );
    assert_eq!(count(&seen, "validation_step", RunningStage::SanityChecking), 2);
}

#[test]
fn num_sanity_val_steps_is_capped_by_a_fractional_limit_val_batches() {
    let dir = tempfile::tempdir().unwrap();
    // 4 validation batches, half of them per validation run: Lightning's sanity check runs
    // min(num_sanity_val_steps, 2) = 2 batches.
    let seen = fit(
        builder(dir.path())
            .max_epochs(1)
            .limit_val_batches(0.5)
            .num_sanity_val_steps(3),
        Probe::new(Script::default()),
        data(8, 16),
    );
    assert_eq!(count(&seen, "validation_step", RunningStage::Validating), 2);
    assert_eq!(count(&seen, "validation_step", RunningStage::SanityChecking), 2);
}

#[test]
fn fast_dev_run_runs_n_batches_of_each_loop_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let model = Probe::new(Script::default());
    let seen = model.seen.clone();
    // fast_dev_run wins over the other flags and over the default checkpointing.
    let mut trainer = Trainer::builder()
        .default_root_dir(dir.path())
        .enable_progress_bar(false)
        .max_epochs(5)
        .fast_dev_run(2)
        .build()
        .unwrap();
    let mut model = trainer.fit(model, data(40, 40)).unwrap();
    let fitted = seen.lock().unwrap().clone();
    assert_eq!(count(&fitted, "training_step", RunningStage::Training), 2);
    assert_eq!(count(&fitted, "validation_step", RunningStage::Validating), 2);
    assert_eq!(count(&fitted, "validation_step", RunningStage::SanityChecking), 0);
    assert_eq!(epoch_ends(&fitted), [(0, 2)]);
    assert!(trainer.log_dir().is_none());

    seen.lock().unwrap().clear();
    trainer.test(&mut model, Loaders::test(pair_loader(40, 4))).unwrap();
    trainer.validate(&mut model, Loaders::val(pair_loader(40, 4))).unwrap();
    let predictions = trainer
        .predict(&mut model, Loaders::predict(pair_loader(40, 4)))
        .unwrap();
    let evaluated = seen.lock().unwrap().clone();
    assert_eq!(calls(&evaluated, "test_step").len(), 2);
    assert_eq!(calls(&evaluated, "validation_step").len(), 2);
    assert_eq!(predictions.len(), 2);

    let written: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(
        written.is_empty(),
        "fast_dev_run writes nothing under default_root_dir: {written:?}"
    );
}

#[test]
fn returning_stop_epoch_from_on_train_batch_start_ends_the_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let script = Script {
        stop_epoch_at: Some(2),
        ..Script::default()
    };
    let seen = fit(
        builder(dir.path()).max_epochs(2).num_sanity_val_steps(0),
        Probe::new(script),
        data(20, 4),
    );
    let trained: Vec<(usize, usize)> = calls(&seen, "training_step")
        .iter()
        .map(|s| (s.epoch, s.batch_idx))
        .collect();
    assert_eq!(
        trained,
        [(0, 0), (0, 1), (1, 0), (1, 1)],
        "batch 2 and the rest of each epoch are skipped"
    );
    assert_eq!(calls(&seen, "on_train_batch_start").len(), 6);
    assert_eq!(epoch_ends(&seen), [(0, 2), (1, 4)], "the next epoch still runs");
}

#[test]
fn global_step_counts_optimizer_step_calls_also_for_skipped_batches() {
    let dir = tempfile::tempdir().unwrap();
    let script = Script {
        skip: vec![1, 3],
        ..Script::default()
    };
    let seen = fit(
        builder(dir.path()).max_epochs(2).num_sanity_val_steps(0),
        Probe::new(script),
        data(20, 4),
    );
    // As in Lightning, every batch runs `optimizer_step` (a batch whose `training_step` returns
    // no loss skips backward and the update, not the zero-grad and before-step hooks), and
    // `global_step` counts those calls.
    assert_eq!(calls(&seen, "training_step").len(), 10);
    let steps_seen: Vec<usize> = calls(&seen, "training_step").iter().map(|s| s.global_step).collect();
    assert_eq!(steps_seen, (0..10).collect::<Vec<_>>());
    assert_eq!(calls(&seen, "on_before_zero_grad").len(), 10);
    assert_eq!(calls(&seen, "on_before_optimizer_step").len(), 10);
    assert_eq!(epoch_ends(&seen), [(0, 5), (1, 10)]);
}

#[test]
fn a_skipped_batch_leaves_the_weights_alone() {
    let dir = tempfile::tempdir().unwrap();
    let skip_all = Script {
        skip: (0..5).collect(),
        ..Script::default()
    };
    let model = Probe::new(skip_all);
    let before = values(model.layer.weight.val());
    let mut trainer = builder(dir.path())
        .max_epochs(1)
        .num_sanity_val_steps(0)
        .build()
        .unwrap();
    let skipped = trainer.fit(model, data(20, 4)).unwrap();
    assert_eq!(values(skipped.layer.weight.val()), before);

    // The same data with no skipped batch does move them.
    let trained = builder(dir.path())
        .max_epochs(1)
        .num_sanity_val_steps(0)
        .build()
        .unwrap()
        .fit(Probe::new(Script::default()), data(20, 4))
        .unwrap();
    assert_ne!(values(trained.layer.weight.val()), before);
}

#[test]
fn hooks_read_the_trainer_state_through_their_context() {
    let dir = tempfile::tempdir().unwrap();
    let model = Probe::new(Script::default());
    let seen = model.seen.clone();
    let mut trainer = builder(dir.path())
        .max_epochs(2)
        .num_sanity_val_steps(1)
        .limit_val_batches(2)
        .build()
        .unwrap();
    let mut model = trainer.fit(model, data(8, 8)).unwrap();
    let fitted = seen.lock().unwrap().clone();

    let train: Vec<(TrainerFn, RunningStage, usize, usize, usize)> = calls(&fitted, "training_step")
        .iter()
        .map(|s| (s.function, s.stage, s.epoch, s.batch_idx, s.global_step))
        .collect();
    use RunningStage::{SanityChecking, Training, Validating};
    use TrainerFn::Fitting;
    assert_eq!(
        train,
        [
            (Fitting, Training, 0, 0, 0),
            (Fitting, Training, 0, 1, 1),
            (Fitting, Training, 1, 0, 2),
            (Fitting, Training, 1, 1, 3)
        ]
    );
    let val: Vec<(TrainerFn, RunningStage, usize, usize)> = calls(&fitted, "validation_step")
        .iter()
        .map(|s| (s.function, s.stage, s.epoch, s.batch_idx))
        .collect();
    assert_eq!(
        val,
        [
            (Fitting, SanityChecking, 0, 0),
            (Fitting, Validating, 0, 0),
            (Fitting, Validating, 0, 1),
            (Fitting, Validating, 1, 0),
            (Fitting, Validating, 1, 1)
        ]
    );
    // After validation, the training loop's state is back.
    let ends: Vec<(RunningStage, usize)> = calls(&fitted, "on_train_epoch_end")
        .iter()
        .map(|s| (s.stage, s.epoch))
        .collect();
    assert_eq!(ends, [(Training, 0), (Training, 1)]);

    seen.lock().unwrap().clear();
    trainer.validate(&mut model, Loaders::val(pair_loader(8, 4))).unwrap();
    trainer.test(&mut model, Loaders::test(pair_loader(8, 4))).unwrap();
    trainer
        .predict(&mut model, Loaders::predict(pair_loader(8, 4)))
        .unwrap();
    let evaluated: Vec<(&str, TrainerFn, RunningStage, usize)> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|s| (s.hook, s.function, s.stage, s.batch_idx))
        .collect();
    assert_eq!(
        evaluated,
        [
            ("validation_step", TrainerFn::Validating, RunningStage::Validating, 0),
            ("validation_step", TrainerFn::Validating, RunningStage::Validating, 1),
            ("test_step", TrainerFn::Testing, RunningStage::Testing, 0),
            ("test_step", TrainerFn::Testing, RunningStage::Testing, 1),
            ("predict_step", TrainerFn::Predicting, RunningStage::Predicting, 0),
            ("predict_step", TrainerFn::Predicting, RunningStage::Predicting, 1),
        ]
    );
}

/// Counts its own optimizer steps: two per batch.
#[lightning_module]
#[derive(Module, Debug)]
pub struct TwoStepsPerBatch {
    layer: Linear,
    #[module(skip)]
    steps_seen: Arc<Mutex<Vec<usize>>>,
}

#[lightning_module(manual_optimization)]
impl TwoStepsPerBatch {
    #[hook]
    fn training_step(&mut self, batch: Pair, _batch_idx: usize, cx: &mut StepContext) {
        for _ in 0..2 {
            let loss = (self.layer.forward(batch.x.clone()) - batch.y.clone())
                .powi_scalar(2)
                .mean();
            let grads = cx.manual_backward(self, loss);
            cx.optimizer_step(self, grads);
        }
        self.steps_seen.lock().unwrap().push(cx.global_step);
    }
    #[hook]
    fn configure_optimizers(&self) -> OptimizerConfig {
        OptimizerConfig::new(SgdConfig::new().init(), 0.01)
    }
}

#[test]
fn under_manual_optimization_global_step_counts_optimizer_steps_not_batches() {
    let dir = tempfile::tempdir().unwrap();
    let layer = LinearConfig::new(32, 2)
        .with_initializer(Initializer::Zeros)
        .init(&Device::default());
    let steps_seen = Arc::new(Mutex::new(Vec::new()));
    let model = TwoStepsPerBatch {
        layer,
        steps_seen: steps_seen.clone(),
    };
    let mut trainer = Trainer::builder()
        .default_root_dir(dir.path())
        .enable_progress_bar(false)
        .enable_checkpointing(false)
        .max_steps(6)
        .build()
        .unwrap();
    trainer.fit(model, Loaders::fit(pair_loader(40, 4), None)).unwrap();
    // max_steps counts optimizer steps too: 3 batches of 2 steps.
    assert_eq!(*steps_seen.lock().unwrap(), [2, 4, 6]);
}

#[test]
fn the_same_seed_gives_the_same_weights_and_losses_and_another_seed_does_not() {
    let run = |seed: u64| {
        let dir = tempfile::tempdir().unwrap();
        let model = Probe::random();
        let (initial, losses) = (model.initial_weights.clone(), model.losses.clone());
        builder(dir.path())
            .max_steps(4)
            .seed(seed)
            .num_sanity_val_steps(0)
            .build()
            .unwrap()
            .fit(model, data(16, 4))
            .unwrap();
        let initial = initial.lock().unwrap().clone();
        let losses = losses.lock().unwrap().clone();
        (initial, losses)
    };
    let (weights_a, losses_a) = run(7);
    let (weights_b, losses_b) = run(7);
    let (weights_c, losses_c) = run(8);
    assert_eq!(weights_a.len(), 64);
    assert_eq!(losses_a.len(), 4);
    assert_eq!(weights_a, weights_b, "same seed, same initial weights");
    assert_eq!(losses_a, losses_b, "same seed, same losses");
    assert_ne!(weights_a, weights_c, "another seed, other initial weights");
    assert_ne!(losses_a, losses_c, "another seed, other losses");
    // The losses are those of a model that trains.
    assert!(losses_a.windows(2).any(|w| w[0] != w[1]));
}

/// Lightning 2.6's time-based `val_check_interval`: a validation at the first batch end past the
/// interval (a nanosecond: after every batch; an hour: never in a short fit), and, as its side
/// effect in Lightning, checkpoints saved after validation rather than at the epochs' ends.
#[test]
fn a_time_based_val_check_interval_validates_by_the_clock() {
    let dir = tempfile::tempdir().unwrap();
    let every_batch = fit(
        builder(dir.path())
            .max_epochs(2)
            .num_sanity_val_steps(0)
            .val_check_interval(std::time::Duration::from_nanos(1)),
        Probe::new(Script::default()),
        data(12, 4),
    );
    assert_eq!(validation_runs(&every_batch), [1, 2, 3, 4, 5, 6]);

    let hour = |dir: &Path, checkpoint: ModelCheckpoint| {
        let mut trainer = builder(dir)
            .max_epochs(2)
            .num_sanity_val_steps(0)
            .enable_checkpointing(true)
            .val_check_interval("00:01:00:00")
            .callback(checkpoint)
            .build()
            .unwrap();
        let model = Probe::new(Script::default());
        let seen = model.seen.clone();
        trainer.fit(model, data(12, 4)).unwrap();
        let saved = common::file_names(&dir.join("lightning_logs/version_0/checkpoints"));
        let runs = validation_runs(&seen.lock().unwrap());
        (runs, saved)
    };
    let (runs, saved) = hour(&dir.path().join("hour"), ModelCheckpoint::new());
    assert!(runs.is_empty(), "{runs:?}");
    assert!(saved.is_empty(), "no validation, so no checkpoint: {saved:?}");
    let (_, saved) = hour(
        &dir.path().join("epoch_end"),
        ModelCheckpoint::new().save_on_train_epoch_end(Some(true)),
    );
    assert_eq!(saved, ["epoch=1-step=6.ckpt"]);

    // The YAML forms, and the errors of a bad time.
    let yaml: TrainerConfig = serde_json::from_value(serde_json::json!({"val_check_interval": "00:00:15:00"})).unwrap();
    assert_eq!(
        yaml.val_check_interval,
        ValCheckInterval::from(std::time::Duration::from_secs(900))
    );
    let map: TrainerConfig =
        serde_json::from_value(serde_json::json!({"val_check_interval": {"minutes": 15}})).unwrap();
    assert_eq!(map.val_check_interval, yaml.val_check_interval);
    let bad = builder(dir.path())
        .val_check_interval("15 minutes")
        .build()
        .err()
        .unwrap()
        .to_string();
    assert!(
        bad.contains("val_check_interval") && bad.contains("DD:HH:MM:SS"),
        "{bad}"
    );
}
