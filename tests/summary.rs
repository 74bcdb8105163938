//! The model summary, as Lightning prints it at the start of `fit`: layers down to a depth, their
//! types and parameter counts, trainable and frozen totals and their size, read without
//! initializing lazy parameters.

use burn::nn::{Linear, LinearConfig, Relu};
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
    block: Block,
    l2: Linear,
}

impl Net {
    fn new(device: &Device) -> Self {
        Self {
            l1: LinearConfig::new(784, 128).init(device),
            block: Block {
                inner: LinearConfig::new(128, 64).init(device),
                act: Relu::new(),
                outer: LinearConfig::new(64, 128).with_bias(false).init(device),
            },
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
    assert_eq!(
        summary.layers,
        [
            layer("l1", "Linear", L1),
            layer("block", "Block", INNER + OUTER),
            layer("l2", "Linear", L2),
        ]
    );
    let total = L1 + INNER + OUTER + L2;
    assert_eq!(summary.total_params(), total);
    assert_eq!(summary.size_bytes, total * 4);

    // Every level: modules only, not their parameters or the parameterless `Relu`.
    let deep = summarize(&net, usize::MAX);
    assert_eq!(
        deep.layers,
        [
            layer("l1", "Linear", L1),
            layer("block", "Block", INNER + OUTER),
            layer("block.inner", "Linear", INNER),
            layer("block.outer", "Linear", OUTER),
            layer("l2", "Linear", L2),
        ]
    );
    assert!(summarize(&net, 0).layers.is_empty());

    // Printed as Lightning prints it.
    let text = summary.to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "  | Name  | Type   | Params");
    assert_eq!(lines[2], "0 | l1    | Linear | 100 K ");
    assert_eq!(lines[3], "1 | block | Block  | 16.4 K");
    assert!(
        text.ends_with(&format!(
            "{:<10.3}Total estimated model params size (MB)",
            total as f64 * 4e-6
        )),
        "{text}"
    );
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
