//! `max_time` and the `Timer` callback, as Lightning's: a limit in `"DD:HH:MM:SS"`, a `Duration`
//! or a `TimeSpan`; checked after every training batch; the stop works as a stop request does
//! (the epoch's validation runs, the checkpoint is saved, `min_epochs` is honoured); and the
//! time each stage took.

mod common;

use burn::nn::{Linear, LinearConfig};
use burn::optim::SgdConfig;
use burn_lightning::prelude::*;
use burn_lightning::{MaxTime, TimeSpan, Timer};
use common::{Pair, file_names, pair_loader};
use std::time::Duration;

#[lightning_module]
#[derive(Module, Debug)]
pub struct Net {
    layer: Linear,
}

#[lightning_module]
impl Net {
    #[hook]
    fn training_step(&self, batch: Pair, _batch_idx: usize) -> Tensor<1> {
        (self.layer.forward(batch.x) - batch.y).powi_scalar(2).mean()
    }
    #[hook]
    fn validation_step(&self, batch: Pair, _batch_idx: usize, cx: &mut StepContext) {
        cx.log(
            "val_loss",
            (self.layer.forward(batch.x) - batch.y).powi_scalar(2).mean(),
        );
    }
    #[hook]
    fn test_step(&self, batch: Pair, _batch_idx: usize, cx: &mut StepContext) {
        cx.log(
            "test_loss",
            (self.layer.forward(batch.x) - batch.y).powi_scalar(2).mean(),
        );
    }
    #[hook]
    fn configure_optimizers(&self) -> OptimizerConfig {
        OptimizerConfig::new(SgdConfig::new().init(), 0.01)
    }
}

fn net() -> Net {
    Net {
        layer: LinearConfig::new(32, 2).init(&Device::default()),
    }
}

/// 4 training batches, 1 validation batch.
fn data() -> Loaders<Pair> {
    Loaders::fit(pair_loader(16, 4), Some(pair_loader(4, 4)))
}

fn builder(root: &std::path::Path) -> TrainerBuilder<Net> {
    Trainer::builder()
        .default_root_dir(root)
        .enable_progress_bar(false)
        .enable_model_summary(false)
        .num_sanity_val_steps(0)
        .max_epochs(5)
}

#[test]
fn max_time_takes_lightnings_forms_and_rejects_others_naming_the_flag() {
    let parsed = |m: MaxTime| {
        let dir = tempfile::tempdir().unwrap();
        builder(dir.path()).max_time(m).build().map(|_| ())
    };
    assert!(parsed("00:12:00:00".into()).is_ok());
    assert!(parsed(Duration::from_secs(3).into()).is_ok());
    assert!(
        parsed(
            TimeSpan {
                days: 1,
                hours: 2,
                ..TimeSpan::default()
            }
            .into()
        )
        .is_ok()
    );
    for bad in ["12:00:00", "1:2:3:4:5", "aa:00:00:00", "", "-1:00:00:00"] {
        let error = parsed(bad.into())
            .err()
            .unwrap_or_else(|| panic!("{bad:?} was accepted"));
        assert!(error.to_string().contains("`max_time`"), "{bad:?}: {error}");
        assert!(error.to_string().contains("DD:HH:MM:SS"), "{bad:?}: {error}");
    }
}

#[test]
fn a_spent_time_limit_stops_after_the_batch_then_validates_and_saves() {
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = builder(dir.path()).max_time("00:00:00:00").build().unwrap();
    trainer.fit(net(), data()).unwrap();
    // One batch, then the stop: the epoch's validation runs (Lightning validates before stopping
    // early) and the checkpoint of the epoch is saved.
    assert_eq!((trainer.current_epoch(), trainer.global_step()), (1, 1));
    assert!(trainer.callback_metrics().get("val_loss").is_some());
    let checkpoints = dir.path().join("lightning_logs/version_0/checkpoints");
    assert_eq!(file_names(&checkpoints), ["epoch=0-step=1.ckpt"]);

    // `min_epochs` wins over the limit, as over any stop request.
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = builder(dir.path())
        .max_time(Duration::ZERO)
        .min_epochs(2)
        .build()
        .unwrap();
    trainer.fit(net(), data()).unwrap();
    assert_eq!(trainer.current_epoch(), 2);

    // A limit not reached changes nothing.
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = builder(dir.path()).max_time("01:00:00:00").build().unwrap();
    trainer.fit(net(), data()).unwrap();
    assert_eq!((trainer.current_epoch(), trainer.global_step()), (5, 20));
}

#[test]
fn the_timer_measures_each_stage() {
    let dir = tempfile::tempdir().unwrap();
    let timer = Timer::new(None);
    let mut trainer = builder(dir.path()).callback(timer.clone()).build().unwrap();
    assert_eq!(trainer.callbacks().iter().filter(|c| c.name() == "Timer").count(), 1);
    let mut model = trainer.fit(net(), data()).unwrap();
    let training = timer.time_elapsed(RunningStage::Training);
    assert!(training > Duration::ZERO);
    assert!(timer.time_elapsed(RunningStage::Validating) > Duration::ZERO);
    assert!(timer.time_elapsed(RunningStage::Validating) < training);
    assert_eq!(timer.time_elapsed(RunningStage::Testing), Duration::ZERO);
    // Finished stages stay measured.
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(timer.time_elapsed(RunningStage::Training), training);
    trainer.test(&mut model, Loaders::test(pair_loader(8, 4))).unwrap();
    assert!(timer.time_elapsed(RunningStage::Testing) > Duration::ZERO);
    assert_eq!(timer.time_remaining(), None);
    // A Timer given is not doubled by `max_time`.
    let trainer = builder(dir.path())
        .callback(Timer::new(None))
        .max_time("00:00:01:00")
        .build()
        .unwrap();
    assert_eq!(trainer.callbacks().iter().filter(|c| c.name() == "Timer").count(), 1);
}
