//! Several validation, test and predict dataloaders, as Lightning runs them (its "sequential"
//! mode): each dataloader's batches in turn with its `dataloader_idx`, logged names suffixed with
//! `/dataloader_idx_N`, epoch values reduced per dataloader, limits and the sanity check per
//! dataloader, the results of each returned, tabled and drawn, and an error when their number
//! changes between epochs.

mod common;

use burn::nn::{Linear, LinearConfig};
use burn::optim::SgdConfig;
use burn_lightning::callbacks::progress::indicatif::InMemoryTerm;
use burn_lightning::prelude::*;
use common::{Pair, pair_loader};
use std::io::Write;
use std::sync::{Arc, Mutex};

/// `(stage, dataloader_idx, batch_idx)` of every evaluation and predict step.
type Seen = Arc<Mutex<Vec<(RunningStage, usize, usize)>>>;

#[lightning_module]
#[derive(Module, Debug)]
pub struct Net {
    layer: Linear,
    #[module(skip)]
    seen: Seen,
    /// Logs `batch_idx` under one name for every dataloader (`add_dataloader_idx(false)`).
    #[module(skip)]
    one_name: bool,
}

impl Net {
    fn new() -> Self {
        Self {
            layer: LinearConfig::new(32, 2).init(&Device::default()),
            seen: Seen::default(),
            one_name: false,
        }
    }

    fn record(&self, stage: RunningStage, dataloader_idx: usize, batch_idx: usize) {
        self.seen.lock().unwrap().push((stage, dataloader_idx, batch_idx));
    }
}

#[lightning_module]
impl Net {
    #[hook]
    fn training_step(&self, batch: Pair, _batch_idx: usize) -> Tensor<1> {
        (self.layer.forward(batch.x) - batch.y).powi_scalar(2).mean()
    }

    /// Logs the batch's index: its mean over a dataloader's batches tells which batches were
    /// reduced together.
    #[hook]
    fn validation_step(&self, _batch: Pair, batch_idx: usize, dataloader_idx: usize, cx: &mut StepContext) {
        self.record(cx.stage, dataloader_idx, batch_idx);
        if self.one_name {
            cx.log_with(
                "batch_idx",
                batch_idx as f64,
                LogOptions::new().add_dataloader_idx(false),
            );
        } else {
            cx.log("batch_idx", batch_idx as f64);
            cx.log_with(
                &format!("count_{dataloader_idx}"),
                1.0,
                LogOptions::new().reduce(Reduce::Sum).add_dataloader_idx(false),
            );
        }
    }

    /// Logged outside the batches: in every dataloader's results, without a suffix.
    #[hook]
    fn on_validation_epoch_end(&mut self, cx: &mut EpochContext) {
        cx.log("epoch_mark", 7.0);
    }

    /// Takes no `dataloader_idx`: it may be left out, and `cx` still says which.
    #[hook]
    fn test_step(&self, _batch: Pair, batch_idx: usize, cx: &mut StepContext) {
        self.record(cx.stage, cx.dataloader_idx, batch_idx);
        cx.log("batch_idx", batch_idx as f64);
    }

    #[hook]
    fn predict_step(&self, batch: Pair, batch_idx: usize, dataloader_idx: usize) -> (usize, usize, usize) {
        (dataloader_idx, batch_idx, batch.x.dims()[0])
    }

    #[hook]
    fn configure_optimizers(&self) -> OptimizerConfig {
        OptimizerConfig::new(SgdConfig::new().init(), 0.01)
    }
}

fn builder(root: &std::path::Path) -> TrainerBuilder<Net> {
    Trainer::builder()
        .default_root_dir(root)
        .enable_progress_bar(false)
        .enable_checkpointing(false)
        .enable_model_summary(false)
}

/// Two validation dataloaders of 2 and 3 batches of 4.
fn two_val_loaders() -> [Loader<Pair>; 2] {
    [pair_loader(8, 4), pair_loader(12, 4)]
}

#[test]
fn validate_reduces_and_returns_each_dataloaders_values_under_suffixed_names() -> Result<(), Error> {
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = builder(dir.path()).build()?;
    let mut model = Net::new();
    let results = trainer.validate(&mut model, Loaders::val(two_val_loaders()))?;
    // The mean batch index of 2 batches is 0.5, of 3 batches 1.0: reduced per dataloader.
    let expected = [
        Metrics::from(
            [
                ("batch_idx/dataloader_idx_0", 0.5),
                ("count_0", 2.0),
                ("epoch_mark", 7.0),
            ]
            .map(|(k, v)| (k.to_string(), v))
            .into_iter()
            .collect::<std::collections::BTreeMap<_, _>>(),
        ),
        Metrics::from(
            [
                ("batch_idx/dataloader_idx_1", 1.0),
                ("count_1", 3.0),
                ("epoch_mark", 7.0),
            ]
            .map(|(k, v)| (k.to_string(), v))
            .into_iter()
            .collect::<std::collections::BTreeMap<_, _>>(),
        ),
    ];
    assert_eq!(results, expected);
    // `callback_metrics` holds every dataloader's keys.
    let callback_metrics = trainer.callback_metrics();
    assert_eq!(callback_metrics.get("batch_idx/dataloader_idx_0"), Some(0.5));
    assert_eq!(callback_metrics.get("batch_idx/dataloader_idx_1"), Some(1.0));
    let seen = model.seen.lock().unwrap().clone();
    let order: Vec<(usize, usize)> = seen.iter().map(|&(_, d, b)| (d, b)).collect();
    assert_eq!(order, [(0, 0), (0, 1), (1, 0), (1, 1), (1, 2)]);
    Ok(())
}

#[test]
fn one_dataloader_keeps_plain_names_and_returns_a_list_of_one() -> Result<(), Error> {
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = builder(dir.path()).build()?;
    let results = trainer.validate(&mut Net::new(), Loaders::val(pair_loader(8, 4)))?;
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].get("batch_idx"), Some(0.5));
    Ok(())
}

#[test]
fn one_name_logged_from_two_dataloaders_without_the_suffix_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = builder(dir.path()).build().unwrap();
    let mut model = Net {
        one_name: true,
        ..Net::new()
    };
    let error = trainer
        .validate(&mut model, Loaders::val(two_val_loaders()))
        .unwrap_err()
        .to_string();
    assert!(error.contains("`batch_idx`"), "{error}");
    assert!(error.contains("add_dataloader_idx(false)"), "{error}");
    assert!(
        error.contains("dataloader 0") && error.contains("dataloader 1"),
        "{error}"
    );
}

#[test]
fn limits_and_the_sanity_check_count_the_batches_of_each_dataloader() -> Result<(), Error> {
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = builder(dir.path())
        .max_epochs(1)
        .limit_train_batches(1)
        .limit_val_batches(2)
        .num_sanity_val_steps(1)
        .build()?;
    let model = Net::new();
    let seen = model.seen.clone();
    let loaders = [pair_loader(16, 4), pair_loader(12, 4)];
    trainer.fit(model, Loaders::fit(pair_loader(8, 4), loaders))?;
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [
            (RunningStage::SanityChecking, 0, 0),
            (RunningStage::SanityChecking, 1, 0),
            (RunningStage::Validating, 0, 0),
            (RunningStage::Validating, 0, 1),
            (RunningStage::Validating, 1, 0),
            (RunningStage::Validating, 1, 1),
        ]
    );
    Ok(())
}

#[test]
fn test_and_predict_run_every_dataloader_in_turn() -> Result<(), Error> {
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = builder(dir.path()).limit_test_batches(1).build()?;
    let mut model = Net::new();
    let results = trainer.test(&mut model, Loaders::test(vec![pair_loader(8, 4), pair_loader(8, 4)]))?;
    assert_eq!(results.len(), 2);
    assert_eq!(results[1].get("batch_idx/dataloader_idx_1"), Some(0.0));
    let steps: Vec<usize> = model.seen.lock().unwrap().iter().map(|&(_, d, _)| d).collect();
    assert_eq!(
        steps,
        [0, 1],
        "one batch of each (`limit_test_batches(1)`), `cx.dataloader_idx` tells which"
    );

    let predictions = trainer.predict(&mut model, Loaders::predict([pair_loader(4, 4), pair_loader(6, 4)]))?;
    assert_eq!(predictions, [(0, 0, 4), (1, 0, 4), (1, 1, 2)]);
    Ok(())
}

/// A datamodule whose validation dataloaders grow by one at every request.
struct Growing(usize);

impl DataModule<Pair> for Growing {
    fn train_dataloader(&mut self) -> Option<Loader<Pair>> {
        Some(pair_loader(4, 4))
    }
    fn val_dataloaders(&mut self) -> Vec<Loader<Pair>> {
        self.0 += 1;
        (0..self.0).map(|_| pair_loader(4, 4)).collect()
    }
}

#[test]
fn a_number_of_val_dataloaders_that_changes_between_epochs_is_an_error_naming_the_stage() {
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = builder(dir.path())
        .max_epochs(3)
        .reload_dataloaders_every_n_epochs(1)
        .build()
        .unwrap();
    let error = trainer.fit(Net::new(), Growing(0)).unwrap_err().error.to_string();
    assert!(
        error.contains("validation stage had 1 dataloaders and now has 2"),
        "{error}"
    );
    assert!(error.contains("reload_dataloaders_every_n_epochs"), "{error}");
}

/// A buffer the plain-mode bar and the trainer's results table write into.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn the_results_table_has_a_column_per_dataloader() -> Result<(), Error> {
    let dir = tempfile::tempdir().unwrap();
    let out = Shared::default();
    let mut trainer = builder(dir.path())
        .enable_progress_bar(true)
        .callback(ProgressBar::plain_to(out.clone()))
        .build()?;
    trainer.validate(&mut Net::new(), Loaders::val(two_val_loaders()))?;
    let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["Validate", "metric", "DataLoader", "0", "DataLoader", "1"]
    );
    // One row per name, the suffix gone, a blank where a dataloader did not log it.
    let row = |name: &str| {
        let line = lines
            .iter()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap();
        line.split_whitespace().skip(1).collect::<Vec<_>>()
    };
    assert_eq!(row("batch_idx"), ["0.5", "1.0"]);
    assert_eq!(row("epoch_mark"), ["7.0", "7.0"]);
    assert_eq!(row("count_1"), ["3.0"]);
    assert!(
        lines
            .iter()
            .find(|l| l.contains("count_1"))
            .unwrap()
            .find("3.0")
            .unwrap()
            > 60,
        "in the second column"
    );
    Ok(())
}

#[test]
fn the_bar_restarts_for_each_dataloader_with_its_title() -> Result<(), Error> {
    let dir = tempfile::tempdir().unwrap();
    let term = InMemoryTerm::new(24, 100);
    let mut trainer = builder(dir.path())
        .enable_progress_bar(true)
        .callback(ProgressBar::draw_to(term.clone()))
        .build()?;
    trainer.validate(&mut Net::new(), Loaders::val(two_val_loaders()))?;
    let screen = term.contents();
    // The bar stays as last drawn: the second dataloader's, with its 3 batches.
    let bar = screen
        .lines()
        .find(|l| l.starts_with("Validation DataLoader"))
        .unwrap_or_else(|| panic!("no validation bar in:\n{screen}"));
    assert!(bar.starts_with("Validation DataLoader 1: 100%"), "{bar}");
    assert!(bar.contains("| 3/3 ["), "{bar}");
    Ok(())
}
