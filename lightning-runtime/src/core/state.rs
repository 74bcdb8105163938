//! The trainer's state, as every hook can read it (Lightning's `trainer.state`, `current_epoch`,
//! `global_step`, ...), and the one enum that says which loop is running.

use crate::Device;
use crate::core::datamodule::Stage;
use std::path::PathBuf;

/// Which entry point is running (Lightning's `trainer.state.fn`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum TrainerFn {
    Fitting,
    Validating,
    Testing,
    Predicting,
}

impl TrainerFn {
    /// The `stage` that `setup` and `teardown` receive.
    pub fn stage(self) -> Stage {
        match self {
            TrainerFn::Fitting => Stage::Fit,
            TrainerFn::Validating => Stage::Validate,
            TrainerFn::Testing => Stage::Test,
            TrainerFn::Predicting => Stage::Predict,
        }
    }
}

/// Which loop is running (Lightning's `trainer.state.stage`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RunningStage {
    Training,
    SanityChecking,
    Validating,
    Testing,
    Predicting,
}

/// Lightning's `trainer.state.status`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum TrainerStatus {
    Initializing,
    Running,
    Finished,
    Interrupted,
}

/// A loop of the trainer: what runs its batches, owns a dataloader, and keeps its own logged
/// results. The sanity check is a run of the validation loop.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub(crate) enum Loop {
    Train,
    Validation,
    Test,
    Predict,
}

impl Loop {
    /// The loop a running stage belongs to.
    pub(crate) fn of(stage: RunningStage) -> Self {
        match stage {
            RunningStage::Training => Loop::Train,
            RunningStage::SanityChecking | RunningStage::Validating => Loop::Validation,
            RunningStage::Testing => Loop::Test,
            RunningStage::Predicting => Loop::Predict,
        }
    }

    /// The name of the hook that returns this loop's dataloader.
    pub(crate) fn dataloader_hook(self) -> &'static str {
        match self {
            Loop::Train => "train_dataloader",
            Loop::Validation => "val_dataloader",
            Loop::Test => "test_dataloader",
            Loop::Predict => "predict_dataloader",
        }
    }

    /// The flag that limits this loop's batches.
    pub(crate) fn limit_flag(self) -> &'static str {
        match self {
            Loop::Train => "limit_train_batches",
            Loop::Validation => "limit_val_batches",
            Loop::Test => "limit_test_batches",
            Loop::Predict => "limit_predict_batches",
        }
    }
}

/// The trainer's state, readable from every hook through its context (`cx.current_epoch`, ...).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct TrainerState {
    pub status: TrainerStatus,
    /// The running entry point.
    pub function: TrainerFn,
    /// The running loop.
    pub stage: RunningStage,
    /// Epochs completed so far (0 during the first epoch). Kept across `fit` calls on one trainer.
    pub current_epoch: usize,
    /// Optimizer steps taken so far (Lightning counts every `optimizer_step` call, also for a
    /// batch whose `training_step` returned no loss). Kept across `fit` calls on one trainer.
    pub global_step: usize,
    /// Index of the batch in its loop (in its dataloader, when the loop has several).
    pub batch_idx: usize,
    /// The dataloader of the current batch in a validation, test or predict loop (Lightning's
    /// `dataloader_idx`; 0 with one dataloader).
    pub dataloader_idx: usize,
    /// The dataloaders of the current (or last) validation, test or predict loop.
    pub num_dataloaders: usize,
    /// Number of batches the current training epoch runs, once known.
    pub num_training_batches: Option<usize>,
    /// Batches of the current (or last) validation run inside `fit` or of `validate`, once
    /// known; with several dataloaders, those of the current one (Lightning's
    /// `trainer.num_val_batches[dataloader_idx]`).
    pub num_val_batches: Option<usize>,
    /// Batches of the sanity check, once known (Lightning's `trainer.num_sanity_val_batches`).
    pub num_sanity_val_batches: Option<usize>,
    /// Batches of the test run, once known (Lightning's `trainer.num_test_batches`).
    pub num_test_batches: Option<usize>,
    /// Batches of the prediction run, once known (Lightning's `trainer.num_predict_batches`).
    pub num_predict_batches: Option<usize>,
    /// The version of the first logger (Lightning's `trainer.logger.version`): `N` for a run
    /// directory `version_N`, else the directory's name; `None` without a logger.
    pub logger_version: Option<String>,
    /// `max_epochs` as resolved by the trainer (`None`: bounded by `max_steps` only).
    pub max_epochs: Option<usize>,
    /// `max_steps` (`None`: no limit).
    pub max_steps: Option<usize>,
    /// Whether something asked the trainer to stop (early stopping, `cx.stop()`).
    pub should_stop: bool,
    /// The device the module runs on (in data-parallel training, the rank's whose hook runs).
    pub device: Device,
    /// The run directory (`<default_root_dir>/lightning_logs/version_N`, or `default_root_dir`
    /// itself without a logger, as Lightning's `trainer.log_dir`), when one is written.
    pub log_dir: Option<PathBuf>,
    /// The checkpoint this fit resumed from (Lightning's `trainer.ckpt_path`): checkpointing
    /// callbacks never remove it.
    pub ckpt_path: Option<PathBuf>,
    /// Whether validation runs during `fit` (a `validation_step`, a validation dataloader, and
    /// `limit_val_batches` above 0).
    pub validation_enabled: bool,
    /// Whether validation runs once per epoch, at its end (`val_check_interval` of a whole epoch
    /// and `check_val_every_n_epoch(Some(1))`): checkpointing and early stopping then act at the
    /// end of the training epoch, else after each validation run, as Lightning decides.
    pub validates_at_epoch_end: bool,
    /// Whether a validation run (not the sanity check) has completed in this fit.
    pub validation_has_run: bool,
    /// `fast_dev_run` is on: checkpointing and early stopping are off.
    pub fast_dev_run: bool,
    /// The rank whose hook runs (Lightning's `trainer.global_rank`): 0 but in the
    /// `training_step` of another rank of data-parallel training (see [`crate::strategies::ddp`]).
    pub global_rank: usize,
    /// The number of ranks, one per device (Lightning's `trainer.world_size`; 1 on one device).
    pub world_size: usize,
}

impl TrainerState {
    /// True during the sanity-check validation before training.
    pub fn sanity_checking(&self) -> bool {
        self.stage == RunningStage::SanityChecking
    }

    /// True while training (not validating inside fit).
    pub fn training(&self) -> bool {
        self.stage == RunningStage::Training
    }

    /// True while `fit` runs.
    pub fn fitting(&self) -> bool {
        self.function == TrainerFn::Fitting
    }

    /// Records the batches planned for the evaluation loop running as `stage` (once the loop
    /// knows them, from its first batch on).
    pub(crate) fn set_planned_batches(&mut self, stage: RunningStage, planned: Option<usize>) {
        let field = match stage {
            RunningStage::Training => &mut self.num_training_batches,
            RunningStage::SanityChecking => &mut self.num_sanity_val_batches,
            RunningStage::Validating => &mut self.num_val_batches,
            RunningStage::Testing => &mut self.num_test_batches,
            RunningStage::Predicting => &mut self.num_predict_batches,
        };
        *field = planned;
    }

    /// A state for `function` before anything ran.
    pub(crate) fn new(function: TrainerFn, device: Device) -> Self {
        let stage = match function {
            TrainerFn::Fitting => RunningStage::Training,
            TrainerFn::Validating => RunningStage::Validating,
            TrainerFn::Testing => RunningStage::Testing,
            TrainerFn::Predicting => RunningStage::Predicting,
        };
        Self {
            status: TrainerStatus::Initializing,
            function,
            stage,
            current_epoch: 0,
            global_step: 0,
            batch_idx: 0,
            dataloader_idx: 0,
            num_dataloaders: 1,
            num_training_batches: None,
            num_val_batches: None,
            num_sanity_val_batches: None,
            num_test_batches: None,
            num_predict_batches: None,
            logger_version: None,
            max_epochs: None,
            max_steps: None,
            should_stop: false,
            device,
            log_dir: None,
            ckpt_path: None,
            validation_enabled: false,
            validates_at_epoch_end: true,
            validation_has_run: false,
            fast_dev_run: false,
            global_rank: 0,
            world_size: 1,
        }
    }
}
