//! The trainer calls hooks in Lightning's order: the sequences of sections 1.1 to 1.5 of the
//! spec (Lightning's `test_hooks.py` configurations, in entry order) and the DataModule order of
//! section 1.6. Lightning's trace is in `tests/data/lightning_hook_entry_order.txt`; the calls
//! that have no meaning in Rust (`forward`, `train`, `zero_grad`, `clip_gradients` inside
//! `configure_gradient_clipping`, `manual_backward` and `closure`, which are API calls, not
//! hooks) are left out of it.

mod common;

use burn::nn::{Linear, LinearConfig};
use burn::optim::SgdConfig;
use burn::optim::lr_scheduler::step::StepLrSchedulerConfig;
use burn_lightning::prelude::*;
use common::{Pair, Recorder, pair_loader};

/// Lightning's BoringModel with every hook implemented; each hook also records itself.
#[lightning_module]
#[derive(Module, Debug)]
pub struct HookedModel {
    layer: Linear,
    #[module(skip)]
    calls: Vec<&'static str>,
}

impl HookedModel {
    fn new() -> Self {
        Self {
            layer: LinearConfig::new(32, 2).init(&Device::default()),
            calls: Vec::new(),
        }
    }

    fn loss(&self, batch: Pair) -> Tensor<1> {
        (self.layer.forward(batch.x) - batch.y).powi_scalar(2).mean()
    }
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
    fn setup(&mut self, _stage: Stage) {
        self.calls.push("setup");
    }
    #[hook]
    fn configure_model(&mut self) {
        self.calls.push("configure_model");
    }
    #[hook]
    fn configure_optimizers(&mut self) -> OptimizerConfig {
        self.calls.push("configure_optimizers");
        let scheduler = StepLrSchedulerConfig::new(0.1, 1).init().expect("valid scheduler");
        OptimizerConfig::new(SgdConfig::new().init(), 0.1).with_scheduler(scheduler, Interval::Epoch)
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
    fn val_dataloader(&mut self) -> Loader<Pair> {
        self.calls.push("val_dataloader");
        pair_loader(64, 4)
    }
    #[hook]
    fn test_dataloader(&mut self) -> Loader<Pair> {
        self.calls.push("test_dataloader");
        pair_loader(64, 4)
    }
    #[hook]
    fn predict_dataloader(&mut self) -> Loader<Pair> {
        self.calls.push("predict_dataloader");
        pair_loader(64, 4)
    }
    #[hook]
    fn on_before_batch_transfer(&mut self, batch: Pair, _dataloader_idx: usize) -> Pair {
        self.calls.push("on_before_batch_transfer");
        batch
    }
    #[hook]
    fn transfer_batch_to_device(&mut self, batch: Pair, _device: &Device, _dataloader_idx: usize) -> Pair {
        self.calls.push("transfer_batch_to_device");
        batch
    }
    #[hook]
    fn on_after_batch_transfer(&mut self, batch: Pair, _dataloader_idx: usize) -> Pair {
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
    fn on_train_batch_start(&mut self, _batch: &Pair, _batch_idx: usize) {
        self.calls.push("on_train_batch_start");
    }
    #[hook]
    fn training_step(&mut self, batch: Pair, _batch_idx: usize, cx: &mut StepContext) -> Tensor<1> {
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
    fn optimizer_zero_grad(&mut self, _epoch: usize, _batch_idx: usize, _optimizer: &mut Optimizer) {
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
        _epoch: usize,
        _batch_idx: usize,
        optimizer: &mut Optimizer,
        closure: OptimizerClosure<Self>,
    ) {
        self.calls.push("optimizer_step");
        optimizer.step(self, closure);
    }
    #[hook]
    fn lr_scheduler_step(&mut self, scheduler: &mut Scheduler) {
        self.calls.push("lr_scheduler_step");
        scheduler.step();
    }
    #[hook]
    fn on_train_batch_end(&mut self, outputs: Option<&StepOutput>, _batch: &Pair, _batch_idx: usize) {
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
    fn on_validation_batch_start(&mut self, _batch: &Pair, _batch_idx: usize) {
        self.calls.push("on_validation_batch_start");
    }
    #[hook]
    fn validation_step(&mut self, batch: Pair, _batch_idx: usize, cx: &mut StepContext) -> Tensor<1> {
        self.calls.push("validation_step");
        let loss = self.loss(batch);
        cx.log("val_loss", &loss);
        loss
    }
    #[hook]
    fn on_validation_batch_end(&mut self, _outputs: &Tensor<1>, _batch: &Pair, _batch_idx: usize) {
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
    fn teardown(&mut self, _stage: Stage) {
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
    fn on_test_batch_start(&mut self, _batch: &Pair, _batch_idx: usize) {
        self.calls.push("on_test_batch_start");
    }
    #[hook]
    fn test_step(&mut self, batch: Pair, _batch_idx: usize, cx: &mut StepContext) {
        self.calls.push("test_step");
        let loss = self.loss(batch);
        cx.log("test_loss", &loss);
    }
    #[hook]
    fn on_test_batch_end(&mut self, _outputs: &(), _batch: &Pair, _batch_idx: usize) {
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
    fn on_predict_batch_start(&mut self, _batch: &Pair, _batch_idx: usize) {
        self.calls.push("on_predict_batch_start");
    }
    #[hook]
    fn predict_step(&mut self, batch: Pair, _batch_idx: usize) -> Tensor<2> {
        self.calls.push("predict_step");
        self.layer.forward(batch.x)
    }
    #[hook]
    fn on_predict_batch_end(&mut self, _outputs: &Tensor<2>, _batch: &Pair, _batch_idx: usize) {
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

/// A callback that does nothing: the trainer's traces record when each of its hooks runs.
struct HookedCallback;

impl<M: LightningModule> Callback<M> for HookedCallback {
    fn state_dict(&mut self) -> Option<JsonValue> {
        Some(serde_json::json!({"foo": true}))
    }
}

/// Lightning's sequence for `section`, without the calls that are not hooks here.
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
    let start = text
        .find(&format!("#### {section}"))
        .unwrap_or_else(|| panic!("no section {section}"));
    text[start..]
        .lines()
        .skip(1)
        .take_while(|line| !line.starts_with("####"))
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with("lightning ") && !line.starts_with('#'))
        .filter(|line| !NOT_HOOKS.contains(line))
        .map(String::from)
        .collect()
}

fn trainer(dir: &std::path::Path) -> Trainer<HookedModel> {
    Trainer::builder()
        .max_epochs(1)
        .limit_train_batches(2)
        .limit_val_batches(2)
        .limit_test_batches(2)
        .limit_predict_batches(2)
        .enable_progress_bar(false)
        .default_root_dir(dir)
        .callback(HookedCallback)
        .build()
        .unwrap()
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
    let metrics = recorder.record(|| trainer(dir.path()).validate(&HookedModel::new(), ()).unwrap());
    assert_same_sequence(&recorder.take(), &lightning_sequence("validate"));
    assert!(metrics.get("val_loss").is_some());
}

#[test]
fn test_calls_hooks_in_lightnings_order() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = Recorder::new("HookedCallback");
    let metrics = recorder.record(|| trainer(dir.path()).test(&HookedModel::new(), ()).unwrap());
    assert_same_sequence(&recorder.take(), &lightning_sequence("test"));
    assert!(metrics.get("test_loss").is_some());
}

#[test]
fn predict_calls_hooks_in_lightnings_order() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = Recorder::new("HookedCallback");
    let predictions = recorder.record(|| trainer(dir.path()).predict(&HookedModel::new(), ()).unwrap());
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
    let mut trainer = trainer(dir.path());
    let mut data = PairData;
    let datamodule_calls = |calls: Vec<String>| calls.into_iter().filter(|c| c.starts_with("DM.")).collect::<Vec<_>>();

    let model = recorder.record(|| trainer.fit(HookedModel::new(), &mut data).unwrap());
    let calls = recorder.take();
    // Lightning, section 1.6: the datamodule's prepare_data, setup and teardown come first.
    let position = |name: &str| calls.iter().position(|c| c == name).unwrap();
    assert!(position("DM.prepare_data") < position("prepare_data"));
    assert!(position("DM.setup") < position("Callback.setup"));
    assert!(position("DM.teardown") < position("Callback.teardown"));
    // The module's dataloader hooks are not called when the datamodule provides the data.
    assert!(!calls.iter().any(|c| c == "train_dataloader" || c == "val_dataloader"));
    assert_eq!(
        datamodule_calls(calls),
        [
            "DM.prepare_data",
            "DM.setup",
            "DM.val_dataloader",
            "DM.train_dataloader",
            "DM.state_dict",
            "DM.teardown"
        ]
    );

    for (run, expected) in [
        ("validate", "val_dataloader"),
        ("test", "test_dataloader"),
        ("predict", "predict_dataloader"),
    ] {
        recorder.record(|| match run {
            "validate" => drop(trainer.validate(&model, &mut data).unwrap()),
            "test" => drop(trainer.test(&model, &mut data).unwrap()),
            _ => drop(trainer.predict(&model, &mut data).unwrap()),
        });
        let expected: Vec<String> = ["DM.prepare_data", "DM.setup", &format!("DM.{expected}"), "DM.teardown"]
            .map(String::from)
            .into();
        assert_eq!(datamodule_calls(recorder.take()), expected, "{run}");
    }
}
