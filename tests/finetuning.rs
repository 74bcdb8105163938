//! Fine-tuning against Lightning's `BackboneFinetuning` (`tests/fixtures/backbone_finetuning.json`,
//! from `bash scripts/optim_fixtures.sh`): the backbone is frozen (no gradient, its weights kept),
//! unfrozen at its epoch as a new param group at a tenth of the head's rate, which then grows by
//! `lambda_func`; `LearningRateMonitor` renames `lr-SGD` to `lr-SGD/pg1` and adds `lr-SGD/pg2`
//! as Lightning's does; a resumed fit trains the backbone again. `freeze` keeps `BatchNorm`
//! layers training with `train_bn`, as torch's `requires_grad = False` leaves them.

mod common;

use burn::nn::{BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Linear, LinearConfig};
use burn::optim::SgdConfig;
use burn::tensor::activation::relu;
use burn_lightning::callbacks::finetuning::{freeze, make_trainable};
use burn_lightning::prelude::*;
use burn_lightning::{FinetuneOptimizer, Finetuning, JsonValue, Part};
use common::fixture::{self, assert_close};
use common::recording::{Recording, metric_calls};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// torch's `nn.Sequential(nn.Linear(4, 8), nn.ReLU())`.
#[derive(Module, Debug)]
pub struct Backbone {
    fc: Linear,
}

/// What the fine-tuned module saw.
#[derive(Default, Debug)]
pub struct Seen {
    /// Each epoch's param group rates, at its first step.
    lrs: Vec<Vec<f64>>,
    /// For each step: whether the backbone's weight had a gradient.
    backbone_grads: Vec<bool>,
}

#[lightning_module]
#[derive(Module, Debug)]
pub struct Transfer {
    backbone: Backbone,
    head: Linear,
    #[module(skip)]
    seen: Arc<Mutex<Seen>>,
}

impl Transfer {
    fn from_fixture(fixture: &JsonValue) -> Self {
        let device = Device::default();
        let state = &fixture["initial"];
        Self {
            backbone: Backbone {
                fc: fixture::linear(state, "backbone.0.", &device),
            },
            head: fixture::linear(state, "head.", &device),
            seen: Arc::default(),
        }
    }

    fn torch_state(&self) -> Vec<f32> {
        let (w1, b1) = fixture::torch_linear(&self.backbone.fc);
        let (w2, b2) = fixture::torch_linear(&self.head);
        [w1, b1, w2, b2].concat()
    }
}

#[lightning_module]
impl Transfer {
    #[hook]
    fn training_step(&self, batch: TensorBatch, batch_idx: usize, cx: &mut StepContext) -> Tensor<1> {
        if batch_idx == 0 {
            let optimizer = cx.optimizer().expect("readable");
            let lrs = (0..optimizer.group_count()).map(|g| optimizer.group_lr(g)).collect();
            self.seen.lock().unwrap().lrs.push(lrs);
        }
        let out = self.head.forward(relu(self.backbone.fc.forward(batch.x)));
        (out - batch.y).powi_scalar(2).mean()
    }

    #[hook]
    fn on_after_backward(&mut self, grads: &Gradients) {
        let has = grads.get::<2>(self.backbone.fc.weight.id).is_some();
        self.seen.lock().unwrap().backbone_grads.push(has);
    }

    #[hook]
    fn configure_optimizers(&self) -> OptimizerConfig {
        // torch: `SGD(filter(lambda p: p.requires_grad, self.parameters()), lr=0.1)`.
        OptimizerConfig::new(SgdConfig::new(), 0.1).param_group(Params::trainable(self))
    }
}

fn backbone_finetuning() -> BackboneFinetuning<Transfer> {
    BackboneFinetuning::new(|model: &Transfer| &model.backbone)
        .unfreeze_backbone_at_epoch(1)
        .lambda_func(|_| 1.5)
}

fn builder(root: &Path, epochs: usize) -> TrainerBuilder<Transfer> {
    Trainer::builder()
        .default_root_dir(root)
        .enable_progress_bar(false)
        .enable_model_summary(false)
        .enable_report(false)
        .max_epochs(epochs)
}

fn data(fixture: &JsonValue) -> Loaders<TensorBatch> {
    Loaders::fit(fixture::loader(fixture, "inputs", "targets", 4), None)
}

#[test]
fn the_backbone_unfreezes_into_a_new_group_at_lightnings_rates() {
    let fixture = fixture::load("backbone_finetuning.json");
    let dir = tempfile::tempdir().unwrap();
    let (logger, calls) = Recording::new(dir.path());
    let model = Transfer::from_fixture(&fixture);
    let initial = model.torch_state();
    let seen = model.seen.clone();
    let mut trainer = builder(dir.path(), 4)
        .logger(logger)
        .log_every_n_steps(1)
        .enable_checkpointing(false)
        .callback(backbone_finetuning())
        .callback(LearningRateMonitor::new().logging_interval(Interval::Epoch))
        .build()
        .unwrap();
    let model = trainer.fit(model, data(&fixture)).unwrap();

    let seen = seen.lock().unwrap();
    let lightning: Vec<Vec<f64>> = serde_json::from_value(fixture["epoch_lrs"].clone()).unwrap();
    assert_eq!(seen.lrs.len(), lightning.len());
    for (ours, theirs) in seen.lrs.iter().zip(&lightning) {
        assert_eq!(ours.len(), theirs.len(), "{:?} vs Lightning's {lightning:?}", seen.lrs);
        for (a, b) in ours.iter().zip(theirs) {
            assert!((a - b).abs() < 1e-12, "{:?} vs Lightning's {lightning:?}", seen.lrs);
        }
    }
    // Frozen for the first epoch's 4 steps: no gradient, so the first step after it still
    // starts from the initial backbone.
    assert_eq!(&seen.backbone_grads[..4], [false; 4]);
    assert!(seen.backbone_grads[4..].iter().all(|g| *g));

    // The monitor's keys and values, as Lightning logs them at each epoch start.
    let ours: Vec<(usize, Vec<(String, f64)>)> = metric_calls(&calls.lock().unwrap())
        .into_iter()
        .filter(|(_, m)| m.keys().any(|k| k.starts_with("lr-")))
        .map(|(step, m)| (step, m.into_iter().collect()))
        .collect();
    let theirs: Vec<(usize, Vec<(String, f64)>)> = fixture["monitored"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|row| {
            let row = row.as_object().unwrap();
            let mut lrs: Vec<(String, f64)> = row
                .iter()
                .filter(|(k, _)| k.starts_with("lr-"))
                .map(|(k, v)| (k.clone(), v.as_f64().unwrap()))
                .collect();
            lrs.sort_by(|a, b| a.0.cmp(&b.0));
            (!lrs.is_empty()).then(|| (row["step"].as_f64().unwrap() as usize, lrs))
        })
        .collect();
    assert_eq!(theirs[0].1[0].0, "lr-SGD");
    assert_eq!(theirs[1].1[1].0, "lr-SGD/pg2");
    assert_eq!(ours.len(), theirs.len(), "ours {ours:?}\nLightning's {theirs:?}");
    for ((step, values), (their_step, their_values)) in ours.iter().zip(&theirs) {
        assert_eq!(step, their_step);
        assert_eq!(values.len(), their_values.len(), "{values:?} vs {their_values:?}");
        for ((key, value), (their_key, their_value)) in values.iter().zip(their_values) {
            assert_eq!(key, their_key);
            assert!((value - their_value).abs() < 1e-12, "{key}: {value} vs {their_value}");
        }
    }

    let final_state: Vec<f32> = ["backbone.0.weight", "backbone.0.bias", "head.weight", "head.bias"]
        .iter()
        .flat_map(|name| {
            let value = &fixture["final"][*name];
            match value[0].is_array() {
                true => fixture::matrix(value).0,
                false => fixture::vector(value),
            }
        })
        .collect();
    assert_close(&model.torch_state(), &final_state, 2e-6, "final weights");
    assert_ne!(
        model.torch_state()[..32],
        initial[..32],
        "the backbone trained once unfrozen"
    );
}

#[test]
fn a_resumed_fit_trains_the_unfrozen_backbone_in_its_restored_group() {
    let fixture = fixture::load("backbone_finetuning.json");
    let dir = tempfile::tempdir().unwrap();
    let mut whole = builder(&dir.path().join("whole"), 4)
        .callback(backbone_finetuning())
        .build()
        .unwrap();
    let uninterrupted = whole.fit(Transfer::from_fixture(&fixture), data(&fixture)).unwrap();

    let root = dir.path().join("resumed");
    let mut first = builder(&root, 2).callback(backbone_finetuning()).build().unwrap();
    first.fit(Transfer::from_fixture(&fixture), data(&fixture)).unwrap();
    let resumed = Transfer::from_fixture(&fixture);
    let seen = resumed.seen.clone();
    let mut second = builder(&root, 4).callback(backbone_finetuning()).build().unwrap();
    let resumed = second.fit_from(resumed, data(&fixture), CkptPath::Last).unwrap();

    let seen = seen.lock().unwrap();
    // Lightning's rates: 0.1 * 0.1 at the unfreezing, then 1.5 times the last, each epoch.
    let unfrozen = 0.1 * 0.1;
    assert_eq!(
        seen.lrs,
        [vec![0.1, 1.5 * unfrozen], vec![0.1, 1.5 * (1.5 * unfrozen)]],
        "the group and its rate, restored"
    );
    assert!(
        seen.backbone_grads.iter().all(|g| *g),
        "the backbone trains again after the resume"
    );
    assert_eq!(resumed.torch_state(), uninterrupted.torch_state(), "bit for bit");
}

/// Lightning's `FeatureExtractorFreezeUnfreeze` example of `BaseFinetuning`: no rate given, so
/// the new group gets the first group's divided by `initial_denom_lr`.
struct FreezeUnfreeze;

impl Finetuning<Transfer> for FreezeUnfreeze {
    fn freeze_before_training(&mut self, module: Transfer) -> Transfer {
        let part = Part::of(&module.backbone);
        freeze(module, &part, true)
    }

    fn finetune_function(&mut self, module: Transfer, epoch: usize, optimizer: &mut FinetuneOptimizer) -> Transfer {
        if epoch != 1 {
            return module;
        }
        let part = Part::of(&module.backbone);
        optimizer.unfreeze_and_add_param_group(module, &part, None, 10.0, true)
    }
}

#[test]
fn a_finetuning_of_ones_own_adds_its_group_at_a_tenth_of_the_rate() {
    let fixture = fixture::load("backbone_finetuning.json");
    let dir = tempfile::tempdir().unwrap();
    let model = Transfer::from_fixture(&fixture);
    let seen = model.seen.clone();
    let mut trainer = builder(dir.path(), 2)
        .enable_checkpointing(false)
        .callback(BaseFinetuning::new(FreezeUnfreeze))
        .build()
        .unwrap();
    trainer.fit(model, data(&fixture)).unwrap();
    assert_eq!(seen.lock().unwrap().lrs, [vec![0.1], vec![0.1, 0.01]]);
}

#[derive(Module, Debug)]
struct WithNorm {
    fc: Linear,
    bn: BatchNorm,
}

fn statistics(net: &WithNorm) -> Vec<f32> {
    fixture::values(net.valid().bn.running_mean.value())
}

#[test]
fn frozen_batch_norms_keep_training_with_train_bn_as_torchs_requires_grad_leaves_them() {
    let device = Device::default().autodiff();
    let net = WithNorm {
        fc: LinearConfig::new(2, 3).init(&device),
        bn: BatchNormConfig::new(3).init(&device),
    };
    let x = Tensor::<2>::from_data(
        TensorData::new(vec![1.0f32, 2.0, -3.0, 4.0, 0.5, -6.0], [3, 2]),
        &device,
    );
    let part = Part::of(&net);

    let kept = freeze(net.clone(), &part, true);
    assert!(!kept.fc.weight.val().is_require_grad(), "frozen");
    assert!(kept.bn.gamma.val().is_require_grad(), "the BatchNorm trains");
    let before = statistics(&kept);
    let _ = kept.bn.forward(kept.fc.forward(x.clone()));
    assert_ne!(statistics(&kept), before, "its statistics update");
    let frozen = freeze(net.clone(), &part, false);
    assert!(!frozen.bn.gamma.val().is_require_grad());
    let before = statistics(&frozen);
    let out = frozen.bn.forward(frozen.fc.forward(x.clone()));
    assert_eq!(statistics(&frozen), before, "train_bn = false: the statistics stay");
    assert!(!out.is_tracked(), "a frozen module's forward records no graph");

    let thawed = make_trainable(frozen, &part);
    assert!(thawed.fc.weight.val().is_require_grad() && thawed.bn.gamma.val().is_require_grad());
    let before = statistics(&thawed);
    let _ = thawed.bn.forward(thawed.fc.forward(x));
    assert_ne!(statistics(&thawed), before, "training again");
}

#[derive(Module, Debug)]
struct WithDropout {
    fc: Linear,
    drop: Dropout,
}

/// `freeze` leaves dropout on, with `train_bn` or without, as torch's `requires_grad = False`
/// does (burn's `Module::freeze` would turn it off): a frozen part's forward still drops.
#[test]
fn frozen_parts_keep_their_dropout_on_as_torchs_requires_grad_leaves_it() {
    let device = Device::default().autodiff();
    let net = WithDropout {
        fc: LinearConfig::new(2, 2).init(&device),
        drop: DropoutConfig::new(0.5).init(),
    };
    let part = Part::of(&net);
    let ones = Tensor::<2>::ones([16, 16], &device);
    for train_bn in [true, false] {
        let frozen = freeze(net.clone(), &part, train_bn);
        assert!(!frozen.fc.weight.val().is_require_grad(), "frozen");
        // Dropout zeroes about half and scales the rest by 2; turned off, it is the identity.
        let values = fixture::values(frozen.drop.forward(ones.clone()));
        let dropped = values.iter().filter(|&&v| v == 0.0).count();
        let kept = values.iter().filter(|&&v| v == 2.0).count();
        assert!(
            dropped > 0 && kept > 0 && dropped + kept == values.len(),
            "train_bn = {train_bn}: {dropped} zeros and {kept} twos in {} values",
            values.len()
        );
    }
}
