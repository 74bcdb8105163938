//! An optimizer updates only the parameters it was given (`OptimizerConfig::for_params`), as a
//! torch optimizer built from `self.head.parameters()`.

mod common;

use burn::nn::{Initializer, Linear, LinearConfig};
use burn::optim::SgdConfig;
use burn_lightning::prelude::*;
use common::{Pair, pair_loader, values};

/// A body and a head; `head_only` trains the head alone.
#[lightning_module]
#[derive(Module, Debug)]
pub struct TwoPart {
    body: Linear,
    head: Linear,
    #[module(skip)]
    head_only: bool,
}

impl TwoPart {
    fn new(head_only: bool) -> Self {
        let device = Device::default();
        let constant = Initializer::Constant { value: 0.05 };
        Self {
            body: LinearConfig::new(32, 8)
                .with_initializer(constant.clone())
                .init(&device),
            head: LinearConfig::new(8, 2).with_initializer(constant).init(&device),
            head_only,
        }
    }
}

#[lightning_module]
impl TwoPart {
    #[hook]
    fn training_step(&mut self, batch: Pair, _batch_idx: usize) -> Tensor<1> {
        let predicted = self.head.forward(self.body.forward(batch.x));
        (predicted - batch.y).powi_scalar(2).mean()
    }
    #[hook]
    fn configure_optimizers(&self) -> OptimizerConfig {
        let config = OptimizerConfig::new(SgdConfig::new().init(), 0.1);
        if self.head_only {
            return config.for_params(&self.head);
        }
        config
    }
}

fn fit(model: TwoPart) -> TwoPart {
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = Trainer::builder()
        .default_root_dir(dir.path())
        .enable_progress_bar(false)
        .enable_checkpointing(false)
        .enable_model_summary(false)
        .enable_logger(false)
        .max_epochs(1)
        .build()
        .unwrap();
    trainer.fit(model, Loaders::fit(pair_loader(16, 4), None)).unwrap()
}

#[test]
fn an_optimizer_for_the_head_leaves_the_body_unchanged() {
    let initial = TwoPart::new(false);
    let (body, head) = (values(initial.body.weight.val()), values(initial.head.weight.val()));

    let trained = fit(TwoPart::new(true));
    assert_eq!(
        values(trained.body.weight.val()),
        body,
        "the body is not the optimizer's"
    );
    assert_ne!(values(trained.head.weight.val()), head, "the head is");

    let trained = fit(TwoPart::new(false));
    assert_ne!(
        values(trained.body.weight.val()),
        body,
        "without for_params, everything trains"
    );
}
