//! The model summary, as Lightning 2.6 prints it at the start of `fit`: layers down to a depth
//! (modules without parameters included), their types, parameter counts and modes, trainable and
//! frozen totals and their size, the modules in training and evaluation mode; read without
//! initializing lazy parameters.

use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig, Relu};
use burn::optim::SgdConfig;
use burn_lightning::prelude::*;
use burn_lightning::{LayerSummary, summarize};

/// Two layers and a block of two more, so that depth matters.
#[derive(Module, Debug)]
pub struct Block {
    inner: Linear,
    act: Relu,
    outer: Linear,
}

#[lightning_module]
#[derive(Module, Debug)]
pub struct Net {
    l1: Linear,
    act: Relu,
    block: Block,
    drop: Dropout,
    l2: Linear,
}

impl Net {
    fn new(device: &Device) -> Self {
        Self {
            l1: LinearConfig::new(784, 128).init(device),
            act: Relu::new(),
            block: Block {
                inner: LinearConfig::new(128, 64).init(device),
                act: Relu::new(),
                outer: LinearConfig::new(64, 128).with_bias(false).init(device),
            },
            drop: DropoutConfig::new(0.1).init(),
            l2: LinearConfig::new(128, 10).init(device),
        }
    }
}

#[lightning_module]
impl Net {
    #[hook]
    fn training_step(&self, batch: Tensor<2>, _batch_idx: usize) -> Tensor<1> {
        self.l2
            .forward(
                self.block
                    .outer
                    .forward(self.block.inner.forward(self.l1.forward(batch))),
            )
            .mean()
    }
    #[hook]
    fn configure_optimizers(&self) -> OptimizerConfig {
        OptimizerConfig::new(SgdConfig::new().init(), 0.01)
    }
}

fn layer(name: &str, kind: &str, params: usize) -> LayerSummary {
    LayerSummary {
        name: name.into(),
        kind: kind.into(),
        params,
        training: true,
    }
}

const L1: usize = 784 * 128 + 128;
const INNER: usize = 128 * 64 + 64;
const OUTER: usize = 64 * 128;
const L2: usize = 128 * 10 + 10;

#[test]
fn the_summary_lists_layers_to_the_depth_asked_and_counts_every_parameter() {
    let net = Net::new(&Device::default());
    let summary = summarize(&net, 1);
    // Modules without parameters have rows too, as in Lightning 2.6 (`act | ReLU | 0`).
    assert_eq!(
        summary.layers,
        [
            layer("l1", "Linear", L1),
            layer("act", "Relu", 0),
            layer("block", "Block", INNER + OUTER),
            layer("drop", "Dropout", 0),
            layer("l2", "Linear", L2),
        ]
    );
    let total = L1 + INNER + OUTER + L2;
    assert_eq!(summary.total_params(), total);
    assert_eq!(summary.size_bytes, total * 4);
    assert_eq!((summary.modules_in_train_mode, summary.modules_in_eval_mode), (8, 0));

    // Every level: modules, not their parameters; a nested `Relu` takes its type from burn's
    // display of its parent.
    let deep = summarize(&net, usize::MAX);
    assert_eq!(
        deep.layers,
        [
            layer("l1", "Linear", L1),
            layer("act", "Relu", 0),
            layer("block", "Block", INNER + OUTER),
            layer("block.inner", "Linear", INNER),
            layer("block.act", "Relu", 0),
            layer("block.outer", "Linear", OUTER),
            layer("drop", "Dropout", 0),
            layer("l2", "Linear", L2),
        ]
    );
    assert!(summarize(&net, 0).layers.is_empty());

    // Printed as Lightning prints it (without the FLOPs burn cannot count).
    let text = summary.to_string();
    println!("{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "  | Name  | Type    | Params | Mode ");
    assert_eq!(lines[1], "-".repeat(1 + 5 + 7 + 6 + 5 + 3 * 6));
    assert_eq!(lines[2], "0 | l1    | Linear  | 100 K  | train");
    assert_eq!(lines[3], "1 | act   | Relu    | 0      | train");
    assert_eq!(lines[4], "2 | block | Block   | 16.4 K | train");
    assert_eq!(lines[7], lines[1]);
    assert_eq!(lines[10], "118 K     Total params");
    assert_eq!(
        lines[11],
        format!(
            "{:<10}Total estimated model params size (MB)",
            format!("{:.3}", total as f64 * 4e-6)
        )
    );
    assert_eq!(lines[12], "8         Modules in train mode");
    assert_eq!(lines[13], "0         Modules in eval mode");
    assert_eq!(lines.len(), 14);
}

#[test]
fn the_mode_follows_burns_training_flags() {
    // `valid()` turns the dropout's training flag off: it is in evaluation mode.
    let net = Net::new(&Device::default()).valid();
    let summary = summarize(&net, 1);
    let drop = summary.layers.iter().find(|l| l.name == "drop").unwrap();
    assert!(!drop.training);
    assert!(summary.layers.iter().filter(|l| l.name != "drop").all(|l| l.training));
    assert_eq!((summary.modules_in_train_mode, summary.modules_in_eval_mode), (7, 1));
    assert!(summary.to_string().contains("3 | drop  | Dropout | 0      | eval "));
}

#[test]
fn frozen_parameters_are_not_trainable() {
    let device = Device::default().autodiff();
    let mut net = Net::new(&device);
    // Initialized by a forward pass, then frozen.
    let _ = net.l1.forward(Tensor::<2>::zeros([1, 784], &device));
    net.l1 = net.l1.clone().no_grad();
    let summary = summarize(&net, 1);
    assert_eq!(summary.non_trainable_params, L1);
    assert_eq!(summary.trainable_params, INNER + OUTER + L2);
}

#[test]
fn fit_prints_the_summary_unless_turned_off() {
    // The callback is there by default and goes when asked.
    let trainer = Trainer::<Net>::builder().build().unwrap();
    assert!(trainer.callbacks().iter().any(|c| c.name() == "ModelSummary"));
    let trainer = Trainer::<Net>::builder().enable_model_summary(false).build().unwrap();
    assert!(trainer.callbacks().iter().all(|c| c.name() != "ModelSummary"));
}
