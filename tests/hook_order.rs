//! The trainer calls hooks in Lightning's order: the sequences of sections 1.1 to 1.5 of the
//! spec (Lightning's `test_hooks.py` configurations, in entry order) and the DataModule order of
//! section 1.6, plus the flags that change the order (no sanity check, validation twice per
//! epoch, no training batches, no validation step, `on_*_model_train` implemented) and the
//! arguments `test_hooks.py` checks (`stage`, `batch_idx`, `epoch`, `dataloader_idx`).
//! Lightning's trace is in `tests/data/lightning_hook_entry_order.txt`, made by
//! `bash scripts/lightning_hook_trace.sh` (run by hand, not by CI); the calls that have no meaning
//! in Rust (`forward`, `train`, `zero_grad`, `clip_gradients` inside
//! `configure_gradient_clipping`, `manual_backward` and `closure`, which are API calls, not
//! hooks) are left out of it.

mod common;

use burn::nn::{Linear, LinearConfig};
use burn::optim::SgdConfig;
use burn::optim::lr_scheduler::step::StepLrSchedulerConfig;
use burn_lightning::prelude::*;
use burn_lightning::{LightningModule, TrainerBuilder};
use common::{Pair, Recorder, pair_loader};
use std::sync::{Arc, Mutex};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

/// Lightning's BoringModel with every hook implemented; each hook also records itself.
#[lightning_module]
#[derive(Module, Debug)]
pub struct HookedModel {
    layer: Linear,
    #[module(skip)]
    calls: Vec<&'static str>,
    /// Validation, test and predict dataloaders its hooks return.
    #[module(skip)]
    loaders: usize,
}

impl HookedModel {
    fn new() -> Self {
        Self {
            layer: LinearConfig::new(32, 2).init(&Device::default()),
            calls: Vec::new(),
            loaders: 1,
        }
    }

    /// Two validation, test and predict dataloaders.
    fn with_two_dataloaders() -> Self {
        Self {
            loaders: 2,
            ..Self::new()
        }
    }

    fn eval_loaders(&self) -> Vec<Loader<Pair>> {
        (0..self.loaders).map(|_| pair_loader(64, 4)).collect()
    }

    fn loss(&self, batch: Pair) -> Tensor<1> {
        squared_error(&self.layer, batch)
    }
}

fn squared_error(layer: &Linear, batch: Pair) -> Tensor<1> {
    (layer.forward(batch.x) - batch.y).powi_scalar(2).mean()
}

/// BoringModel's optimizer: SGD (learning rate 0.1) with a StepLR scheduler stepped every epoch.
fn sgd_with_step_lr() -> OptimizerConfig {
    OptimizerConfig::new(SgdConfig::new().init(), 0.1)
        .with_scheduler(LrSchedulerConfig::new(|lr| StepLrSchedulerConfig::new(lr, 1).init()).interval(Interval::Epoch))
}

/// The arguments of a batch hook of an evaluation or predict loop: Lightning passes
/// `dataloader_idx` only when the loop has several dataloaders.
fn batch_arguments(hook: &'static str, batch_idx: usize, dataloader_idx: usize, state: &TrainerState) {
    if state.num_dataloaders > 1 {
        arguments(
            hook,
            format_args!("batch_idx={batch_idx} dataloader_idx={dataloader_idx}"),
        );
    } else {
        arguments(hook, format_args!("batch_idx={batch_idx}"));
    }
}

/// Emits the arguments of the running hook, which `record_with_arguments` appends to the hook's
/// entry in the trace (`setup stage=fit`); without that recorder nothing listens.
fn arguments(hook: &'static str, args: std::fmt::Arguments<'_>) {
    tracing::trace!(target: "hook_order::arguments", hook, args = %args);
}

#[lightning_module]
impl HookedModel {
    #[hook]
    fn configure_callbacks(&mut self) -> Callbacks<Self> {
        self.calls.push("configure_callbacks");
        Vec::new()
    }
    #[hook]
    fn prepare_data(&mut self, _cx: &mut HookContext) {
        self.calls.push("prepare_data");
    }
    #[hook]
    fn setup(&mut self, stage: Stage) {
        arguments("setup", format_args!("stage={}", stage.as_str()));
        self.calls.push("setup");
    }
    #[hook]
    fn configure_model(&mut self) {
        self.calls.push("configure_model");
    }
    #[hook]
    fn configure_optimizers(&mut self) -> OptimizerConfig {
        self.calls.push("configure_optimizers");
        sgd_with_step_lr()
    }
    #[hook]
    fn on_fit_start(&mut self) {
        self.calls.push("on_fit_start");
    }
    #[hook]
    fn train_dataloader(&mut self) -> Loader<Pair> {
        self.calls.push("train_dataloader");
        pair_loader(64, 4)
    }
    #[hook]
    fn val_dataloader(&mut self) -> Vec<Loader<Pair>> {
        self.calls.push("val_dataloader");
        self.eval_loaders()
    }
    #[hook]
    fn test_dataloader(&mut self) -> Vec<Loader<Pair>> {
        self.calls.push("test_dataloader");
        self.eval_loaders()
    }
    #[hook]
    fn predict_dataloader(&mut self) -> Vec<Loader<Pair>> {
        self.calls.push("predict_dataloader");
        self.eval_loaders()
    }
    #[hook]
    fn on_before_batch_transfer(&mut self, batch: Pair, dataloader_idx: usize) -> Pair {
        arguments(
            "on_before_batch_transfer",
            format_args!("dataloader_idx={dataloader_idx}"),
        );
        self.calls.push("on_before_batch_transfer");
        batch
    }
    #[hook]
    fn transfer_batch_to_device(&mut self, batch: Pair, _device: &Device, dataloader_idx: usize) -> Pair {
        arguments(
            "transfer_batch_to_device",
            format_args!("dataloader_idx={dataloader_idx}"),
        );
        self.calls.push("transfer_batch_to_device");
        batch
    }
    #[hook]
    fn on_after_batch_transfer(&mut self, batch: Pair, dataloader_idx: usize) -> Pair {
        arguments(
            "on_after_batch_transfer",
            format_args!("dataloader_idx={dataloader_idx}"),
        );
        self.calls.push("on_after_batch_transfer");
        batch
    }
    #[hook]
    fn on_train_start(&mut self) {
        self.calls.push("on_train_start");
    }
    #[hook]
    fn on_train_epoch_start(&mut self, _cx: &mut EpochContext) {
        self.calls.push("on_train_epoch_start");
    }
    #[hook]
    fn on_train_batch_start(&mut self, _batch: &Pair, batch_idx: usize) {
        arguments("on_train_batch_start", format_args!("batch_idx={batch_idx}"));
        self.calls.push("on_train_batch_start");
    }
    #[hook]
    fn training_step(&mut self, batch: Pair, batch_idx: usize, cx: &mut StepContext) -> Tensor<1> {
        arguments("training_step", format_args!("batch_idx={batch_idx}"));
        self.calls.push("training_step");
        let loss = self.loss(batch);
        cx.log("train_loss", &loss);
        loss
    }
    #[hook]
    fn on_before_zero_grad(&mut self, _optimizer: &Optimizer) {
        self.calls.push("on_before_zero_grad");
    }
    #[hook]
    fn optimizer_zero_grad(&mut self, epoch: usize, batch_idx: usize, _optimizer: &mut Optimizer) {
        arguments(
            "optimizer_zero_grad",
            format_args!("epoch={epoch} batch_idx={batch_idx}"),
        );
        self.calls.push("optimizer_zero_grad");
    }
    #[hook]
    fn on_before_backward(&mut self, _loss: &Tensor<1>) {
        self.calls.push("on_before_backward");
    }
    #[hook]
    fn backward(&mut self, loss: Tensor<1>) -> Gradients {
        self.calls.push("backward");
        Gradients::from_loss(&loss, self)
    }
    #[hook]
    fn on_after_backward(&mut self, grads: &Gradients) {
        assert!(!grads.is_empty());
        self.calls.push("on_after_backward");
    }
    #[hook]
    fn on_before_optimizer_step(&mut self, _optimizer: &Optimizer, _grads: &Gradients) {
        self.calls.push("on_before_optimizer_step");
    }
    #[hook]
    fn configure_gradient_clipping(
        &mut self,
        _optimizer: &Optimizer,
        _grads: &mut Gradients,
        _clip: Option<GradientClip>,
    ) {
        self.calls.push("configure_gradient_clipping");
    }
    #[hook]
    fn optimizer_step(
        &mut self,
        epoch: usize,
        batch_idx: usize,
        optimizer: &mut Optimizer,
        closure: OptimizerClosure<Self>,
    ) {
        arguments("optimizer_step", format_args!("epoch={epoch} batch_idx={batch_idx}"));
        self.calls.push("optimizer_step");
        optimizer.step(self, closure);
    }
    #[hook]
    fn lr_scheduler_step(&mut self, scheduler: &mut Scheduler, metric: Option<f64>) {
        assert_eq!(metric, None, "StepLR follows no metric");
        self.calls.push("lr_scheduler_step");
        scheduler.step();
    }
    #[hook]
    fn on_train_batch_end(&mut self, outputs: Option<&StepOutput>, _batch: &Pair, batch_idx: usize) {
        arguments("on_train_batch_end", format_args!("batch_idx={batch_idx}"));
        assert!(outputs.is_some());
        self.calls.push("on_train_batch_end");
    }
    #[hook]
    fn on_validation_model_zero_grad(&mut self) {
        self.calls.push("on_validation_model_zero_grad");
    }
    #[hook]
    fn on_validation_model_eval(&mut self) {
        self.calls.push("on_validation_model_eval");
    }
    #[hook]
    fn on_validation_start(&mut self) {
        self.calls.push("on_validation_start");
    }
    #[hook]
    fn on_validation_epoch_start(&mut self) {
        self.calls.push("on_validation_epoch_start");
    }
    #[hook]
    fn on_validation_batch_start(
        &mut self,
        _batch: &Pair,
        batch_idx: usize,
        dataloader_idx: usize,
        cx: &mut StepContext,
    ) {
        batch_arguments("on_validation_batch_start", batch_idx, dataloader_idx, cx);
        self.calls.push("on_validation_batch_start");
    }
    #[hook]
    fn validation_step(
        &mut self,
        batch: Pair,
        batch_idx: usize,
        dataloader_idx: usize,
        cx: &mut StepContext,
    ) -> Tensor<1> {
        batch_arguments("validation_step", batch_idx, dataloader_idx, cx);
        self.calls.push("validation_step");
        let loss = self.loss(batch);
        cx.log("val_loss", &loss);
        loss
    }
    #[hook]
    fn on_validation_batch_end(
        &mut self,
        _outputs: &Tensor<1>,
        _batch: &Pair,
        batch_idx: usize,
        dataloader_idx: usize,
        cx: &mut StepContext,
    ) {
        batch_arguments("on_validation_batch_end", batch_idx, dataloader_idx, cx);
        self.calls.push("on_validation_batch_end");
    }
    #[hook]
    fn on_validation_epoch_end(&mut self) {
        self.calls.push("on_validation_epoch_end");
    }
    #[hook]
    fn on_validation_end(&mut self) {
        self.calls.push("on_validation_end");
    }
    #[hook]
    fn on_train_epoch_end(&mut self) {
        self.calls.push("on_train_epoch_end");
    }
    #[hook]
    fn on_save_checkpoint(&mut self, checkpoint: &mut Checkpoint) {
        self.calls.push("on_save_checkpoint");
        checkpoint.extra.insert("hooked".into(), true.into());
    }
    #[hook]
    fn on_load_checkpoint(&mut self, _checkpoint: &Checkpoint) {
        self.calls.push("on_load_checkpoint");
    }
    #[hook]
    fn on_train_end(&mut self) {
        self.calls.push("on_train_end");
    }
    #[hook]
    fn on_fit_end(&mut self) {
        self.calls.push("on_fit_end");
    }
    #[hook]
    fn teardown(&mut self, stage: Stage) {
        arguments("teardown", format_args!("stage={}", stage.as_str()));
        self.calls.push("teardown");
    }
    #[hook]
    fn on_test_model_eval(&mut self) {
        self.calls.push("on_test_model_eval");
    }
    #[hook]
    fn on_test_start(&mut self) {
        self.calls.push("on_test_start");
    }
    #[hook]
    fn on_test_epoch_start(&mut self) {
        self.calls.push("on_test_epoch_start");
    }
    #[hook]
    fn on_test_batch_start(&mut self, _batch: &Pair, batch_idx: usize, dataloader_idx: usize, cx: &mut StepContext) {
        batch_arguments("on_test_batch_start", batch_idx, dataloader_idx, cx);
        self.calls.push("on_test_batch_start");
    }
    #[hook]
    fn test_step(&mut self, batch: Pair, batch_idx: usize, dataloader_idx: usize, cx: &mut StepContext) {
        batch_arguments("test_step", batch_idx, dataloader_idx, cx);
        self.calls.push("test_step");
        let loss = self.loss(batch);
        cx.log("test_loss", &loss);
    }
    #[hook]
    fn on_test_batch_end(
        &mut self,
        _outputs: &(),
        _batch: &Pair,
        batch_idx: usize,
        dataloader_idx: usize,
        cx: &mut StepContext,
    ) {
        batch_arguments("on_test_batch_end", batch_idx, dataloader_idx, cx);
        self.calls.push("on_test_batch_end");
    }
    #[hook]
    fn on_test_epoch_end(&mut self) {
        self.calls.push("on_test_epoch_end");
    }
    #[hook]
    fn on_test_end(&mut self) {
        self.calls.push("on_test_end");
    }
    #[hook]
    fn on_predict_model_eval(&mut self) {
        self.calls.push("on_predict_model_eval");
    }
    #[hook]
    fn on_predict_start(&mut self) {
        self.calls.push("on_predict_start");
    }
    #[hook]
    fn on_predict_epoch_start(&mut self) {
        self.calls.push("on_predict_epoch_start");
    }
    #[hook]
    fn on_predict_batch_start(&mut self, _batch: &Pair, batch_idx: usize, dataloader_idx: usize, cx: &mut HookContext) {
        batch_arguments("on_predict_batch_start", batch_idx, dataloader_idx, cx);
        self.calls.push("on_predict_batch_start");
    }
    #[hook]
    fn predict_step(
        &mut self,
        batch: Pair,
        batch_idx: usize,
        dataloader_idx: usize,
        cx: &mut HookContext,
    ) -> Tensor<2> {
        batch_arguments("predict_step", batch_idx, dataloader_idx, cx);
        self.calls.push("predict_step");
        self.layer.forward(batch.x)
    }
    #[hook]
    fn on_predict_batch_end(
        &mut self,
        _outputs: &Tensor<2>,
        _batch: &Pair,
        batch_idx: usize,
        dataloader_idx: usize,
        cx: &mut HookContext,
    ) {
        batch_arguments("on_predict_batch_end", batch_idx, dataloader_idx, cx);
        self.calls.push("on_predict_batch_end");
    }
    #[hook]
    fn on_predict_epoch_end(&mut self) {
        self.calls.push("on_predict_epoch_end");
    }
    #[hook]
    fn on_predict_end(&mut self) {
        self.calls.push("on_predict_end");
    }
}

/// A callback that does nothing but tell its arguments: the trainer's traces record when each of
/// its hooks runs.
struct HookedCallback;

impl<M: LightningModule> Callback<M> for HookedCallback {
    fn state_dict(&mut self) -> Option<JsonValue> {
        Some(serde_json::json!({"foo": true}))
    }
    fn setup(&mut self, _module: &mut M, stage: Stage, _cx: &mut HookContext<'_>) {
        arguments("setup", format_args!("stage={}", stage.as_str()));
    }
    fn teardown(&mut self, _module: &mut M, stage: Stage, _cx: &mut HookContext<'_>) {
        arguments("teardown", format_args!("stage={}", stage.as_str()));
    }
    fn on_train_batch_start(
        &mut self,
        _module: &mut M,
        _batch: &M::Batch,
        batch_idx: usize,
        _cx: &mut StepContext<'_>,
    ) {
        arguments("on_train_batch_start", format_args!("batch_idx={batch_idx}"));
    }
    fn on_train_batch_end(
        &mut self,
        _module: &mut M,
        _outputs: Option<&StepOutput<M::TrainExtra>>,
        _batch: &M::Batch,
        batch_idx: usize,
        _cx: &mut StepContext<'_>,
    ) {
        arguments("on_train_batch_end", format_args!("batch_idx={batch_idx}"));
    }
    fn on_validation_batch_start(
        &mut self,
        _module: &mut M,
        _batch: &M::ValBatch,
        batch_idx: usize,
        dataloader_idx: usize,
        cx: &mut StepContext<'_>,
    ) {
        batch_arguments("on_validation_batch_start", batch_idx, dataloader_idx, cx);
    }
    fn on_validation_batch_end(
        &mut self,
        _module: &mut M,
        _outputs: &M::ValidationOutput,
        _batch: &M::ValBatch,
        batch_idx: usize,
        dataloader_idx: usize,
        cx: &mut StepContext<'_>,
    ) {
        batch_arguments("on_validation_batch_end", batch_idx, dataloader_idx, cx);
    }
    fn on_test_batch_start(
        &mut self,
        _module: &mut M,
        _batch: &M::TestBatch,
        batch_idx: usize,
        dataloader_idx: usize,
        cx: &mut StepContext<'_>,
    ) {
        batch_arguments("on_test_batch_start", batch_idx, dataloader_idx, cx);
    }
    fn on_test_batch_end(
        &mut self,
        _module: &mut M,
        _outputs: &M::TestOutput,
        _batch: &M::TestBatch,
        batch_idx: usize,
        dataloader_idx: usize,
        cx: &mut StepContext<'_>,
    ) {
        batch_arguments("on_test_batch_end", batch_idx, dataloader_idx, cx);
    }
    fn on_predict_batch_start(
        &mut self,
        _module: &mut M,
        _batch: &M::PredictBatch,
        batch_idx: usize,
        dataloader_idx: usize,
        cx: &mut HookContext<'_>,
    ) {
        batch_arguments("on_predict_batch_start", batch_idx, dataloader_idx, cx);
    }
    fn on_predict_batch_end(
        &mut self,
        _module: &mut M,
        _outputs: &M::Prediction,
        _batch: &M::PredictBatch,
        batch_idx: usize,
        dataloader_idx: usize,
        cx: &mut HookContext<'_>,
    ) {
        batch_arguments("on_predict_batch_end", batch_idx, dataloader_idx, cx);
    }
}

/// Lightning's sequence for the section titled `section` (the title up to its `(...)`), without
/// the calls that are not hooks here.
fn lightning_sequence(section: &str) -> Vec<String> {
    const NOT_HOOKS: &[&str] = &[
        "forward",
        "train",
        "zero_grad",
        "clip_gradients",
        "manual_backward",
        "closure",
    ];
    let text = include_str!("data/lightning_hook_entry_order.txt");
    let is_header = |line: &str| {
        line.strip_prefix("#### ")
            .is_some_and(|title| title == section || title.starts_with(&format!("{section} (")))
    };
    let start = text
        .lines()
        .position(is_header)
        .unwrap_or_else(|| panic!("no section {section}"));
    text.lines()
        .skip(start + 1)
        .take_while(|line| !line.starts_with("####"))
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with("lightning ") && !line.starts_with('#'))
        .filter(|line| !NOT_HOOKS.contains(line))
        .map(String::from)
        .collect()
}

/// test_hooks.py's trainer: one epoch of 2 batches of everything, with the hooked callback.
fn builder<M: LightningModule>(dir: &std::path::Path) -> TrainerBuilder<M> {
    Trainer::builder()
        .max_epochs(1)
        .limit_train_batches(2)
        .limit_val_batches(2)
        .limit_test_batches(2)
        .limit_predict_batches(2)
        .enable_progress_bar(false)
        .default_root_dir(dir)
        .callback(HookedCallback)
}

fn trainer<M: LightningModule>(dir: &std::path::Path) -> Trainer<M> {
    builder(dir).build().unwrap()
}

/// Runs `f` recording the hooks, as `Recorder::record` does, with the arguments the hooked module
/// and callback emit appended to their entries: `setup stage=fit`.
fn record_with_arguments<T>(recorder: &Recorder, f: impl FnOnce() -> T) -> T {
    let subscriber = tracing_subscriber::registry()
        .with(recorder.clone())
        .with(ArgumentsLayer(recorder.calls.clone()));
    tracing::subscriber::with_default(subscriber, f)
}

/// Appends each `arguments` event to the last recorded call, which is the hook emitting it: the
/// hooked module and callback emit their arguments before anything else.
struct ArgumentsLayer(Arc<Mutex<Vec<String>>>);

#[derive(Default)]
struct ArgumentFields {
    hook: String,
    args: String,
}

impl tracing::field::Visit for ArgumentFields {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        match field.name() {
            "hook" => self.hook = value.to_string(),
            "args" => self.args = value.to_string(),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "hook" => self.hook = format!("{value:?}").trim_matches('"').to_string(),
            "args" => self.args = format!("{value:?}"),
            _ => {}
        }
    }
}

impl<S: Subscriber> Layer<S> for ArgumentsLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if event.metadata().target() != "hook_order::arguments" {
            return;
        }
        let mut fields = ArgumentFields::default();
        event.record(&mut fields);
        let mut calls = self.0.lock().unwrap();
        let last = calls.last_mut().expect("arguments emitted outside any hook");
        assert!(
            *last == fields.hook || *last == format!("Callback.{}", fields.hook),
            "arguments of {} emitted while the last recorded call is {last}",
            fields.hook
        );
        last.push(' ');
        last.push_str(&fields.args);
    }
}

/// Shows the first difference, which a plain `assert_eq!` on 150 lines hides.
fn assert_same_sequence(ours: &[String], lightning: &[String]) {
    let first_difference = ours.iter().zip(lightning).position(|(a, b)| a != b);
    if let Some(i) = first_difference.or((ours.len() != lightning.len()).then(|| ours.len().min(lightning.len()))) {
        let from = i.saturating_sub(3);
        panic!(
            "hook order differs at call {i}:\n  ours:      {:?}\n  lightning: {:?}",
            &ours[from..(i + 4).min(ours.len())],
            &lightning[from..(i + 4).min(lightning.len())]
        );
    }
}

#[test]
fn fit_calls_hooks_in_lightnings_order() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = Recorder::new("HookedCallback");
    let model = recorder.record(|| trainer(dir.path()).fit(HookedModel::new(), ()).unwrap());
    let ours = recorder.take();
    assert_same_sequence(&ours, &lightning_sequence("fit automatic"));
    // The trace is not only the trainer's intent: the module's own methods ran in that order.
    let module_calls: Vec<&str> = ours.iter().filter(|c| !c.contains('.')).map(String::as_str).collect();
    assert_eq!(model.calls, module_calls);
}

#[test]
fn validate_calls_hooks_in_lightnings_order() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = Recorder::new("HookedCallback");
    let metrics = recorder.record(|| trainer(dir.path()).validate(&mut HookedModel::new(), ()).unwrap());
    assert_same_sequence(&recorder.take(), &lightning_sequence("validate"));
    // Lightning's list of one dict for one dataloader.
    assert_eq!(metrics.len(), 1);
    assert!(metrics[0].get("val_loss").is_some());
}

#[test]
fn test_calls_hooks_in_lightnings_order() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = Recorder::new("HookedCallback");
    let metrics = recorder.record(|| trainer(dir.path()).test(&mut HookedModel::new(), ()).unwrap());
    assert_same_sequence(&recorder.take(), &lightning_sequence("test"));
    assert_eq!(metrics.len(), 1);
    assert!(metrics[0].get("test_loss").is_some());
}

#[test]
fn predict_calls_hooks_in_lightnings_order() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = Recorder::new("HookedCallback");
    let predictions = recorder.record(|| trainer(dir.path()).predict(&mut HookedModel::new(), ()).unwrap());
    assert_same_sequence(&recorder.take(), &lightning_sequence("predict"));
    assert_eq!(predictions.len(), 2);
    assert_eq!(predictions[0].dims(), [4, 2]);
}

/// The same BoringModel under manual optimization; its hooks are traced by the trainer.
#[lightning_module]
#[derive(Module, Debug)]
pub struct ManualModel {
    layer: Linear,
}

#[lightning_module(manual_optimization)]
impl ManualModel {
    #[hook]
    fn training_step(&mut self, batch: Pair, _batch_idx: usize, cx: &mut StepContext) -> Tensor<1> {
        let loss = (self.layer.forward(batch.x) - batch.y).powi_scalar(2).mean();
        let grads = cx.manual_backward(self, loss.clone());
        cx.optimizer_step(self, grads);
        loss
    }
    #[hook]
    fn validation_step(&self, batch: Pair, _batch_idx: usize, cx: &mut StepContext) {
        cx.log(
            "val_loss",
            (self.layer.forward(batch.x) - batch.y).powi_scalar(2).mean(),
        );
    }
    #[hook]
    fn configure_optimizers(&self) -> OptimizerConfig {
        OptimizerConfig::new(SgdConfig::new().init(), 0.1)
    }
    #[hook]
    fn train_dataloader(&mut self) -> Loader<Pair> {
        pair_loader(64, 4)
    }
    #[hook]
    fn val_dataloader(&mut self) -> Loader<Pair> {
        pair_loader(64, 4)
    }
}

#[test]
fn manual_fit_calls_hooks_in_lightnings_order() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = Recorder::new("HookedCallback");
    let mut trainer = Trainer::builder()
        .max_epochs(1)
        .limit_train_batches(2)
        .limit_val_batches(2)
        .enable_progress_bar(false)
        .default_root_dir(dir.path())
        .callback(HookedCallback)
        .build()
        .unwrap();
    let model = ManualModel {
        layer: LinearConfig::new(32, 2).init(&Device::default()),
    };
    recorder.record(|| trainer.fit(model, ()).unwrap());
    assert_same_sequence(&recorder.take(), &lightning_sequence("fit manual"));
}

/// A datamodule over the pair data.
#[derive(Default)]
struct PairData;

impl DataModule<Pair> for PairData {
    fn train_dataloader(&mut self) -> Option<Loader<Pair>> {
        Some(pair_loader(64, 4))
    }
    fn val_dataloader(&mut self) -> Option<Loader<Pair>> {
        Some(pair_loader(64, 4))
    }
    fn test_dataloader(&mut self) -> Option<Loader<Pair>> {
        Some(pair_loader(64, 4))
    }
    fn predict_dataloader(&mut self) -> Option<Loader<Pair>> {
        Some(pair_loader(64, 4))
    }
    fn state_dict(&mut self) -> Option<JsonValue> {
        Some(serde_json::json!({"seen": true}))
    }
}

#[test]
fn datamodule_hooks_run_in_lightnings_order_and_before_the_modules() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = Recorder::new("HookedCallback");
    let mut trainer: Trainer<HookedModel> = trainer(dir.path());
    let mut data = PairData;
    let datamodule_calls = |calls: Vec<String>| calls.into_iter().filter(|c| c.starts_with("DM.")).collect::<Vec<_>>();

    let mut model = recorder.record(|| trainer.fit(HookedModel::new(), &mut data).unwrap());
    let calls = recorder.take();
    // Lightning, section 1.6: the datamodule's prepare_data, setup and teardown come first.
    let position = |name: &str| calls.iter().position(|c| c == name).unwrap();
    assert!(position("DM.prepare_data") < position("prepare_data"));
    assert!(position("DM.setup") < position("Callback.setup"));
    assert!(position("DM.teardown") < position("Callback.teardown"));
    // The module's dataloader hooks are not called when the datamodule provides the data.
    assert!(!calls.iter().any(|c| c == "train_dataloader" || c == "val_dataloader"));
    assert_eq!(datamodule_calls(calls), lightning_sequence("datamodule fit"));

    for run in ["validate", "test", "predict"] {
        recorder.record(|| match run {
            "validate" => drop(trainer.validate(&mut model, &mut data).unwrap()),
            "test" => drop(trainer.test(&mut model, &mut data).unwrap()),
            _ => drop(trainer.predict(&mut model, &mut data).unwrap()),
        });
        assert_eq!(
            datamodule_calls(recorder.take()),
            lightning_sequence(&format!("datamodule {run}")),
            "{run}"
        );
    }
}

#[test]
fn fit_without_sanity_check_calls_hooks_in_lightnings_order() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = Recorder::new("HookedCallback");
    let mut trainer = builder(dir.path()).num_sanity_val_steps(0).build().unwrap();
    recorder.record(|| trainer.fit(HookedModel::new(), ()).unwrap());
    assert_same_sequence(&recorder.take(), &lightning_sequence("fit num_sanity_val_steps=0"));
}

#[test]
fn fit_validating_twice_per_epoch_calls_hooks_in_lightnings_order() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = Recorder::new("HookedCallback");
    let mut trainer = builder(dir.path()).val_check_interval(0.5).build().unwrap();
    recorder.record(|| trainer.fit(HookedModel::new(), ()).unwrap());
    assert_same_sequence(&recorder.take(), &lightning_sequence("fit val_check_interval=0.5"));
}

#[test]
fn fit_without_training_batches_calls_hooks_in_lightnings_order() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = Recorder::new("HookedCallback");
    let mut trainer = builder(dir.path()).limit_train_batches(0usize).build().unwrap();
    recorder.record(|| trainer.fit(HookedModel::new(), ()).unwrap());
    assert_same_sequence(&recorder.take(), &lightning_sequence("fit limit_train_batches=0"));
}

/// BoringModel with `on_validation_model_train` and `on_test_model_train` implemented, which
/// Lightning calls only when they are. Like Lightning's HookedModel, it implements BoringModel's
/// hooks, `prepare_data` and `configure_model`; the trainer traces the others.
#[lightning_module]
#[derive(Module, Debug)]
pub struct ModelTrainModel {
    layer: Linear,
}

#[lightning_module]
impl ModelTrainModel {
    #[hook]
    fn prepare_data(&mut self) {}
    #[hook]
    fn configure_model(&mut self) {}
    #[hook]
    fn configure_optimizers(&self) -> OptimizerConfig {
        sgd_with_step_lr()
    }
    #[hook]
    fn train_dataloader(&mut self) -> Loader<Pair> {
        pair_loader(64, 4)
    }
    #[hook]
    fn val_dataloader(&mut self) -> Loader<Pair> {
        pair_loader(64, 4)
    }
    #[hook]
    fn test_dataloader(&mut self) -> Loader<Pair> {
        pair_loader(64, 4)
    }
    #[hook]
    fn training_step(&self, batch: Pair, _batch_idx: usize) -> Tensor<1> {
        squared_error(&self.layer, batch)
    }
    #[hook]
    fn validation_step(&self, batch: Pair, _batch_idx: usize, cx: &mut StepContext) {
        cx.log("val_loss", squared_error(&self.layer, batch));
    }
    #[hook]
    fn test_step(&self, batch: Pair, _batch_idx: usize, cx: &mut StepContext) {
        cx.log("test_loss", squared_error(&self.layer, batch));
    }
    #[hook]
    fn on_validation_model_train(&mut self) {}
    #[hook]
    fn on_test_model_train(&mut self) {}
}

#[test]
fn fit_calls_an_implemented_on_validation_model_train_as_lightning_does() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = Recorder::new("HookedCallback");
    let model = ModelTrainModel {
        layer: LinearConfig::new(32, 2).init(&Device::default()),
    };
    recorder.record(|| trainer(dir.path()).fit(model, ()).unwrap());
    assert_same_sequence(&recorder.take(), &lightning_sequence("fit on_validation_model_train"));
}

#[test]
fn test_calls_an_implemented_on_test_model_train_as_lightning_does() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = Recorder::new("HookedCallback");
    let mut model = ModelTrainModel {
        layer: LinearConfig::new(32, 2).init(&Device::default()),
    };
    recorder.record(|| trainer(dir.path()).test(&mut model, ()).unwrap());
    assert_same_sequence(&recorder.take(), &lightning_sequence("test on_test_model_train"));
}

/// BoringModel without `validation_step` and `val_dataloader` (Lightning's run sets both to
/// `None`): nothing to validate, so no sanity check and no validation.
#[lightning_module]
#[derive(Module, Debug)]
pub struct NoValidationModel {
    layer: Linear,
}

#[lightning_module]
impl NoValidationModel {
    #[hook]
    fn prepare_data(&mut self) {}
    #[hook]
    fn configure_model(&mut self) {}
    #[hook]
    fn configure_optimizers(&self) -> OptimizerConfig {
        sgd_with_step_lr()
    }
    #[hook]
    fn train_dataloader(&mut self) -> Loader<Pair> {
        pair_loader(64, 4)
    }
    #[hook]
    fn training_step(&self, batch: Pair, _batch_idx: usize) -> Tensor<1> {
        squared_error(&self.layer, batch)
    }
}

#[test]
fn fit_without_validation_step_calls_hooks_in_lightnings_order() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = Recorder::new("HookedCallback");
    let model = NoValidationModel {
        layer: LinearConfig::new(32, 2).init(&Device::default()),
    };
    recorder.record(|| trainer(dir.path()).fit(model, ()).unwrap());
    assert_same_sequence(&recorder.take(), &lightning_sequence("fit without validation_step"));
}

#[test]
fn fit_passes_lightnings_hook_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = Recorder::new("HookedCallback");
    record_with_arguments(&recorder, || trainer(dir.path()).fit(HookedModel::new(), ()).unwrap());
    assert_same_sequence(&recorder.take(), &lightning_sequence("fit automatic arguments"));
}

#[test]
fn validate_passes_lightnings_hook_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = Recorder::new("HookedCallback");
    record_with_arguments(&recorder, || {
        trainer(dir.path()).validate(&mut HookedModel::new(), ()).unwrap()
    });
    assert_same_sequence(&recorder.take(), &lightning_sequence("validate arguments"));
}

#[test]
fn test_passes_lightnings_hook_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = Recorder::new("HookedCallback");
    record_with_arguments(&recorder, || {
        trainer(dir.path()).test(&mut HookedModel::new(), ()).unwrap()
    });
    assert_same_sequence(&recorder.take(), &lightning_sequence("test arguments"));
}

#[test]
fn predict_passes_lightnings_hook_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = Recorder::new("HookedCallback");
    record_with_arguments(&recorder, || {
        trainer(dir.path()).predict(&mut HookedModel::new(), ()).unwrap()
    });
    assert_same_sequence(&recorder.take(), &lightning_sequence("predict arguments"));
}

/// Two validation dataloaders inside `fit`: the sanity check and the validation run each
/// dataloader's batches in turn, and every batch hook and step gets its `dataloader_idx`.
#[test]
fn fit_with_two_val_dataloaders_runs_them_in_turn_as_lightning_does() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = Recorder::new("HookedCallback");
    record_with_arguments(&recorder, || {
        trainer(dir.path())
            .fit(HookedModel::with_two_dataloaders(), ())
            .unwrap()
    });
    assert_same_sequence(
        &recorder.take(),
        &lightning_sequence("fit two val dataloaders arguments"),
    );
}

#[test]
fn validate_with_two_dataloaders_returns_the_results_of_each() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = Recorder::new("HookedCallback");
    let results = record_with_arguments(&recorder, || {
        trainer(dir.path())
            .validate(&mut HookedModel::with_two_dataloaders(), ())
            .unwrap()
    });
    assert_same_sequence(
        &recorder.take(),
        &lightning_sequence("validate two dataloaders arguments"),
    );
    // Lightning's list of dicts: each dataloader's `val_loss`, suffixed with its index.
    let keys: Vec<Vec<&String>> = results.iter().map(|metrics| metrics.keys().collect()).collect();
    assert_eq!(keys, [["val_loss/dataloader_idx_0"], ["val_loss/dataloader_idx_1"]]);
}

#[test]
fn test_with_two_dataloaders_calls_hooks_in_lightnings_order() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = Recorder::new("HookedCallback");
    let results = record_with_arguments(&recorder, || {
        trainer(dir.path())
            .test(&mut HookedModel::with_two_dataloaders(), ())
            .unwrap()
    });
    assert_same_sequence(&recorder.take(), &lightning_sequence("test two dataloaders arguments"));
    assert_eq!(results.len(), 2);
}

#[test]
fn predict_with_two_dataloaders_calls_hooks_in_lightnings_order() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = Recorder::new("HookedCallback");
    let predictions = record_with_arguments(&recorder, || {
        trainer(dir.path())
            .predict(&mut HookedModel::with_two_dataloaders(), ())
            .unwrap()
    });
    assert_same_sequence(
        &recorder.take(),
        &lightning_sequence("predict two dataloaders arguments"),
    );
    // Two batches of each dataloader, in dataloader order.
    assert_eq!(predictions.len(), 4);
}
