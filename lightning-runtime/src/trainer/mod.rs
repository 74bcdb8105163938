//! The [`Trainer`] and its builder: Lightning's flags ([`TrainerConfig`](config::TrainerConfig), checked by
//! [`TrainerBuilder::build`]), the entry points `fit`, `validate`, `test` and `predict`, and which
//! checkpoint `ckpt_path` names.
//!
//! Uses every folder below it; the loops it runs are in `loops`, which never names the
//! `Trainer`: each entry point lends a loop the validated flags and the trainer's session.

mod builder;
pub mod ckpt_path;
pub mod config;
pub mod removed;

pub use crate::core::error::FitError;
pub use crate::core::flags::{Limit, ValCheckInterval};
pub use crate::optim::ClipAlgorithm;
pub use builder::TrainerBuilder;
pub(crate) use builder::validate_overfit_batches;

use crate::Error;
use crate::callbacks::{EarlyStopping, ModelCheckpoint, OnExceptionCheckpoint};
use crate::checkpoint::restore::{Counters, save_checkpoint};
use crate::core::checkpoint_data::Checkpoint;
use crate::core::datamodule::DataModule;
use crate::core::logging::Metrics;
use crate::core::state::Loop;
use crate::hooks::{
    Callback, Callbacks, ConfigureOptimizers, LightningModule, PredictStep, TestStep, TrainingStep, ValidationStep,
};
use crate::loggers::Logger;
use crate::loops::{Config, Session, evaluate, fit};
use ckpt_path::{CkptPath, Places};
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Runs a [`LightningModule`]: `fit`, `validate`, `test`, `predict`, with Lightning's hook order,
/// flags and logging.
///
/// ```ignore
/// let mut trainer = Trainer::builder().max_epochs(5).build()?;
/// let model = trainer.fit(model, &mut datamodule)?;
/// let metrics = trainer.test(&model, &mut datamodule)?;
/// ```
pub struct Trainer<M: LightningModule> {
    config: Config,
    /// Callbacks, loggers, metrics, progress and optimizers: what each loop borrows.
    session: Session<M>,
}

impl<M: LightningModule> Trainer<M> {
    /// A trainer that has run nothing yet.
    pub(crate) fn from_parts(config: Config, callbacks: Callbacks<M>, loggers: Vec<Box<dyn Logger>>) -> Self {
        Self {
            config,
            session: Session::new(callbacks, loggers),
        }
    }

    /// The validated flags.
    pub(crate) fn config(&self) -> &Config {
        &self.config
    }
}

impl<M: LightningModule> Trainer<M> {
    /// A builder with Lightning's defaults.
    pub fn builder() -> TrainerBuilder<M> {
        TrainerBuilder::new()
    }

    /// Trains `model` on the data of `data` (a [`DataModule`], [`Loaders`](crate::Loaders), or
    /// `()` when the module's own dataloader hooks provide it) and returns the trained module.
    /// On failure the module comes back inside the [`FitError`]. A second `fit` on the same
    /// trainer goes on from the first one's epoch and step, in the same run directory.
    pub fn fit<D>(&mut self, model: M, data: D) -> Result<M, FitError<M>>
    where
        M: TrainingStep + ConfigureOptimizers,
        D: DataModule<M::Batch, M::ValBatch, M::TestBatch, M::PredictBatch>,
    {
        // Lightning: in a SLURM job, a fit without `ckpt_path` resumes from the newest HPC
        // checkpoint (that of a requeued job), when there is one.
        if crate::strategies::slurm::detected()
            && crate::strategies::slurm::hpc_resume_path(&self.config.default_root_dir).is_some()
        {
            return self.fit_from(model, data, CkptPath::Hpc);
        }
        let result = fit::fit(&self.config, &mut self.session, model, data, None);
        if let Err(FitError {
            error: Error::Interrupted { signal, .. },
            ..
        }) = &result
        {
            self.exit_after_signal(*signal);
        }
        result
    }

    /// Lightning's `trainer.fit(model, datamodule, ckpt_path=...)`: resumes the fit saved in a
    /// checkpoint, a path or [`CkptPath::Last`] / [`CkptPath::Best`] (`"last"` / `"best"`).
    ///
    /// Restores, in Lightning's order: the module's `on_load_checkpoint` and its weights, the
    /// datamodule's state (`load_state_dict`), the callbacks' `on_load_checkpoint` and states
    /// (by state key), then, after `configure_optimizers`, the optimizer's and scheduler's
    /// states, `current_epoch`, `global_step` and the logging step. The sanity check is
    /// skipped. A checkpoint saved inside an epoch (`every_n_train_steps`) continues at the
    /// next batch with the same data order, which Lightning does not do (it restarts the
    /// epoch's data): the completed epochs' shuffles are drawn again and the batches already
    /// seen are loaded and skipped. What ran after the saved batch's `on_train_batch_end` (a
    /// validation due then, its step's logging) is not run again. The device's random
    /// generator cannot be read back from burn, so it is not restored: dropout masks after a
    /// resume differ from an uninterrupted run's.
    ///
    /// A missing file, weights of another module, or `Best` without a monitored
    /// `ModelCheckpoint` are errors naming what is wrong.
    pub fn fit_from<D>(&mut self, model: M, data: D, ckpt_path: impl Into<CkptPath>) -> Result<M, FitError<M>>
    where
        M: TrainingStep + ConfigureOptimizers,
        D: DataModule<M::Batch, M::ValBatch, M::TestBatch, M::PredictBatch>,
    {
        let resume = match self.load_checkpoint(&ckpt_path.into()) {
            Ok(resume) => resume,
            Err(error) => return Err(FitError { model, error }),
        };
        if resume.is_none() {
            tracing::warn!(target: "burn_lightning",
                "`ckpt_path=\"last\"` is set, but there is no last checkpoint available. No checkpoint will be loaded: \
                 training starts from scratch.");
        }
        let resume = resume.as_ref().map(|(path, checkpoint)| (path.as_path(), checkpoint));
        let result = fit::fit(&self.config, &mut self.session, model, data, resume);
        if let Err(FitError {
            error: Error::Interrupted { signal, .. },
            ..
        }) = &result
        {
            self.exit_after_signal(*signal);
        }
        result
    }

    /// Lightning's `trainer.save_checkpoint(path)`, from outside a hook (after `fit`): writes a
    /// checkpoint of `model`, the last fit's optimizer and scheduler states, the trainer's
    /// counters and the callbacks' states, after the `on_save_checkpoint` hooks, atomically.
    /// [`fit_from`](Self::fit_from) resumes it at the start of the next epoch. The datamodule's
    /// state is not in it (the trainer does not hold the datamodule after `fit`).
    pub fn save_checkpoint(&mut self, model: &mut M, path: impl AsRef<Path>) -> Result<(), Error> {
        let session = &mut self.session;
        let progress = &session.progress;
        let counters = Counters {
            current_epoch: progress.current_epoch,
            global_step: progress.global_step,
            total_batches: progress.total_batches,
            batches_that_stepped: progress.batches_that_stepped,
            log_dir: progress.log_dir.clone(),
        };
        save_checkpoint(
            model,
            &mut session.callbacks,
            session.optimizer.as_ref(),
            &session.more_optimizers,
            counters,
            path.as_ref(),
        )
    }

    /// The file `ckpt_path` names (`last` and `best` from this trainer's checkpoints); `None`
    /// when `"last"` finds none.
    pub(crate) fn resolve_ckpt_path(&self, ckpt_path: &CkptPath) -> Result<Option<PathBuf>, Error> {
        ckpt_path.resolve(&self.checkpoint_places())
    }

    /// Where this trainer's checkpoints can be, for `"last"` and `"best"`.
    fn checkpoint_places(&self) -> Places<'_> {
        let versions_root = match self.session.loggers.first() {
            Some(logger) => logger.root_dir(),
            None if self.config.default_logger => Some(self.config.default_root_dir.join("lightning_logs")),
            None => None,
        };
        Places {
            model_checkpoints: self.checkpoint_callbacks(),
            on_exception: self.callbacks_of::<OnExceptionCheckpoint>().collect(),
            log_dir: self.session.progress.log_dir.as_deref(),
            versions_root,
            default_root_dir: &self.config.default_root_dir,
        }
    }

    /// The checkpoint `ckpt_path` names, read, with its path; `None` when `"last"` finds none.
    fn load_checkpoint(&self, ckpt_path: &CkptPath) -> Result<Option<(PathBuf, Checkpoint)>, Error> {
        let Some(path) = self.resolve_ckpt_path(ckpt_path)? else {
            return Ok(None);
        };
        let checkpoint = Checkpoint::load(&path)?;
        Ok(Some((path, checkpoint)))
    }

    /// Loads the weights of the checkpoint `ckpt_path` names into `model` (after its
    /// `on_load_checkpoint`), as Lightning's `validate`/`test`/`predict` with `ckpt_path` do.
    fn load_weights(&self, model: &mut M, ckpt_path: CkptPath) -> Result<(), Error> {
        let Some((path, checkpoint)) = self.load_checkpoint(&ckpt_path)? else {
            return Err(Error::config(
                "ckpt_path",
                "`last`: no checkpoint was found (see `CkptPath::Last` for where it looks); train first, or give a path",
            ));
        };
        println!("Restoring states from the checkpoint path at {}", path.display());
        *model = checkpoint.load_into(model.clone())?;
        println!("Loaded model weights from the checkpoint at {}", path.display());
        Ok(())
    }

    /// [`validate`](Self::validate) with the weights of a checkpoint (Lightning's
    /// `trainer.validate(model, ckpt_path=...)`); they stay in `model`.
    pub fn validate_from<D>(
        &mut self,
        model: &mut M,
        data: D,
        ckpt_path: impl Into<CkptPath>,
    ) -> Result<Vec<Metrics>, Error>
    where
        M: ValidationStep,
        D: DataModule<M::Batch, M::ValBatch, M::TestBatch, M::PredictBatch>,
    {
        self.load_weights(model, ckpt_path.into())?;
        self.validate(model, data)
    }

    /// [`test`](Self::test) with the weights of a checkpoint (Lightning's
    /// `trainer.test(model, ckpt_path=...)`); they stay in `model`.
    pub fn test_from<D>(
        &mut self,
        model: &mut M,
        data: D,
        ckpt_path: impl Into<CkptPath>,
    ) -> Result<Vec<Metrics>, Error>
    where
        M: TestStep,
        D: DataModule<M::Batch, M::ValBatch, M::TestBatch, M::PredictBatch>,
    {
        self.load_weights(model, ckpt_path.into())?;
        self.test(model, data)
    }

    /// [`predict`](Self::predict) with the weights of a checkpoint (Lightning's
    /// `trainer.predict(model, ckpt_path=...)`); they stay in `model`.
    pub fn predict_from<D>(
        &mut self,
        model: &mut M,
        data: D,
        ckpt_path: impl Into<CkptPath>,
    ) -> Result<Vec<M::Prediction>, Error>
    where
        M: PredictStep,
        D: DataModule<M::Batch, M::ValBatch, M::TestBatch, M::PredictBatch>,
    {
        self.load_weights(model, ckpt_path.into())?;
        self.predict(model, data)
    }

    /// After a run a signal stopped, and cleaned up after: exits as the signal would have
    /// (status 130, 143 or 129), unless `exit_on_signal(false)`.
    fn exit_after_signal(&self, signal: i32) {
        if self.config.exit_on_signal {
            let status = crate::loops::signals::exit_status(signal);
            // After a hangup or with a closed pipe, stderr may be gone: no panic for it.
            let _ = writeln!(
                std::io::stderr(),
                "{}: stopped after saving what was pending; exiting with {status}",
                crate::loops::signals::name(signal)
            );
            std::process::exit(status);
        }
    }

    /// Runs the validation loop once on `model` and returns its epoch metrics, one [`Metrics`]
    /// per validation dataloader (Lightning's list of dicts: one element with one dataloader,
    /// none with `limit_val_batches(0)`). What hooks set on `&mut self` stays in `model`, as in
    /// Lightning.
    pub fn validate<D>(&mut self, model: &mut M, data: D) -> Result<Vec<Metrics>, Error>
    where
        M: ValidationStep,
        D: DataModule<M::Batch, M::ValBatch, M::TestBatch, M::PredictBatch>,
    {
        let result = evaluate::evaluate(&self.config, &mut self.session, model, data, Loop::Validation);
        if let Err(Error::Interrupted { signal, .. }) = &result {
            self.exit_after_signal(*signal);
        }
        result
    }

    /// Runs the test loop once on `model` and returns its epoch metrics, one [`Metrics`] per
    /// test dataloader (as [`validate`](Self::validate)). What hooks set on `&mut self`
    /// (outputs collected in `on_test_epoch_end`, say) stays in `model`.
    pub fn test<D>(&mut self, model: &mut M, data: D) -> Result<Vec<Metrics>, Error>
    where
        M: TestStep,
        D: DataModule<M::Batch, M::ValBatch, M::TestBatch, M::PredictBatch>,
    {
        let result = evaluate::evaluate(&self.config, &mut self.session, model, data, Loop::Test);
        if let Err(Error::Interrupted { signal, .. }) = &result {
            self.exit_after_signal(*signal);
        }
        result
    }

    /// Runs `predict_step` over the prediction data and returns the predictions, in order.
    pub fn predict<D>(&mut self, model: &mut M, data: D) -> Result<Vec<M::Prediction>, Error>
    where
        M: PredictStep,
        D: DataModule<M::Batch, M::ValBatch, M::TestBatch, M::PredictBatch>,
    {
        let result = evaluate::predict(&self.config, &mut self.session, model, data);
        if let Err(Error::Interrupted { signal, .. }) = &result {
            self.exit_after_signal(*signal);
        }
        result
    }

    /// The metrics of the last run (Lightning's `trainer.callback_metrics`).
    pub fn callback_metrics(&self) -> &Metrics {
        &self.session.callback_metrics
    }

    /// Everything the last run sent to the loggers (Lightning's `trainer.logged_metrics`).
    pub fn logged_metrics(&self) -> &Metrics {
        &self.session.logged_metrics
    }

    /// What the last run logged with `prog_bar(true)` (Lightning's
    /// `trainer.progress_bar_metrics`).
    pub fn progress_bar_metrics(&self) -> &Metrics {
        &self.session.progress_bar_metrics
    }

    /// The loggers, the first one's directory being the run directory.
    pub fn loggers(&self) -> &[Box<dyn Logger>] {
        &self.session.loggers
    }

    /// The run directory of this trainer's fits (`<default_root_dir>/lightning_logs/version_N`).
    pub fn log_dir(&self) -> Option<&Path> {
        self.session.progress.log_dir.as_deref()
    }

    /// Epochs completed by this trainer's fits.
    pub fn current_epoch(&self) -> usize {
        self.session.progress.current_epoch
    }

    /// Optimizer steps taken by this trainer's fits.
    pub fn global_step(&self) -> usize {
        self.session.progress.global_step
    }

    /// The callbacks, in the order they run.
    pub fn callbacks(&self) -> &[Box<dyn Callback<M>>] {
        &self.session.callbacks
    }

    /// The first callback of type `C`, to read its state after `fit`.
    pub fn callback<C: Callback<M>>(&self) -> Option<&C> {
        self.callbacks_of::<C>().next()
    }

    /// Every callback of type `C`, in the order they run.
    pub fn callbacks_of<C: Callback<M>>(&self) -> impl Iterator<Item = &C> {
        self.session.callbacks.iter().filter_map(|callback| {
            let callback: &dyn std::any::Any = &**callback;
            callback.downcast_ref::<C>()
        })
    }

    /// The first [`ModelCheckpoint`] (Lightning's `trainer.checkpoint_callback`): after `fit`,
    /// its `best_model_path()`, `best_model_score()`, `last_model_path()`, ...
    pub fn checkpoint_callback(&self) -> Option<&ModelCheckpoint> {
        self.callback()
    }

    /// Every [`ModelCheckpoint`] (Lightning's `trainer.checkpoint_callbacks`).
    pub fn checkpoint_callbacks(&self) -> Vec<&ModelCheckpoint> {
        self.callbacks_of().collect()
    }

    /// The first [`EarlyStopping`] (Lightning's `trainer.early_stopping_callback`): after
    /// `fit`, its `stopped_epoch()`, `stop_reason()`, `wait_count()`, `best_score()`.
    pub fn early_stopping_callback(&self) -> Option<&EarlyStopping> {
        self.callback()
    }

    /// Every [`EarlyStopping`] (Lightning's `trainer.early_stopping_callbacks`).
    pub fn early_stopping_callbacks(&self) -> Vec<&EarlyStopping> {
        self.callbacks_of().collect()
    }
}
