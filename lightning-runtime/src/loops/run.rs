//! What every entry point shares: the module, the data, the callbacks and the trainer's core for
//! one run; setup and teardown in Lightning's order; dataloader resolution; checkpoint writing.

use super::{Config, Progress};
use crate::checkpoint::Checkpoint;
use crate::checkpoint::writer::CheckpointWriter;
use crate::core::datamodule::{DataModule, Loader, Stage, call_transfer_hook};
use crate::core::state::{Loop, TrainerFn, TrainerState, TrainerStatus};
use crate::hooks::context::{AfterHook, Core};
use crate::hooks::{Callback, CallbackRole, Callbacks, Hook, LightningModule, dispatch};
use crate::loggers::Logger;
use crate::loggers::report::SeriesKind;
use crate::optim::Optimizer;
use crate::{Device, Error};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// Calls a hook through its generated dispatch function (callbacks, then the module), then runs
/// the after-hook protocol: the one place that writes the checkpoints hooks asked for and
/// returns the first error a hook met. `hook!(run.on_train_start())`, `hook!(run.setup(stage))`.
macro_rules! hook {
    ($run:ident . $name:ident ( $($arg:expr),* $(,)? )) => {{
        let mut after = $crate::loops::run::CheckpointSink {
            data: &mut $run.data,
            optimizer: $run.optimizer.as_mut(),
            more_optimizers: &mut $run.more_optimizers,
            writer: &mut $run.writer,
        };
        let output =
            $crate::hooks::dispatch::$name(&mut $run.module, $run.callbacks, &mut $run.core, &mut after $(, $arg)*);
        $run.after_hook(output)?
    }};
}
pub(crate) use hook;

/// As [`hook!`], for a dispatch function a [`TransferStage`] picks:
/// `stage_hook!(run, S::module_before(batch, dataloader_idx))`.
macro_rules! stage_hook {
    ($run:ident, $stage:ident :: $name:ident ( $($arg:expr),* $(,)? )) => {{
        let mut after = $crate::loops::run::CheckpointSink {
            data: &mut $run.data,
            optimizer: $run.optimizer.as_mut(),
            more_optimizers: &mut $run.more_optimizers,
            writer: &mut $run.writer,
        };
        let output = $stage::$name(&mut $run.module, $run.callbacks, &mut $run.core, &mut after $(, $arg)*);
        $run.after_hook(output)?
    }};
}

/// A stage whose batches go through the batch-transfer hooks: its batch type, and the
/// datamodule's and the module's hooks for that type. Lightning runs the hooks on the batches of
/// every stage; each stage has its own batch type, so its own methods.
pub(crate) trait TransferStage<M: LightningModule> {
    type Batch: 'static;

    fn data_before<D: DataModule<M::Batch, M::ValBatch, M::TestBatch, M::PredictBatch>>(
        data: &mut D,
        batch: Self::Batch,
        dataloader_idx: usize,
    ) -> Result<Self::Batch, Error>;
    fn data_to_device<D: DataModule<M::Batch, M::ValBatch, M::TestBatch, M::PredictBatch>>(
        data: &mut D,
        batch: Self::Batch,
        device: &Device,
        dataloader_idx: usize,
    ) -> Result<Self::Batch, Error>;
    fn data_after<D: DataModule<M::Batch, M::ValBatch, M::TestBatch, M::PredictBatch>>(
        data: &mut D,
        batch: Self::Batch,
        dataloader_idx: usize,
    ) -> Result<Self::Batch, Error>;
    fn module_before<A: AfterHook<M>>(
        module: &mut M,
        callbacks: &mut [Box<dyn Callback<M>>],
        core: &mut Core,
        after: &mut A,
        batch: Self::Batch,
        dataloader_idx: usize,
    ) -> Result<Self::Batch, Error>;
    fn module_to_device<A: AfterHook<M>>(
        module: &mut M,
        callbacks: &mut [Box<dyn Callback<M>>],
        core: &mut Core,
        after: &mut A,
        batch: Self::Batch,
        device: &Device,
        dataloader_idx: usize,
    ) -> Result<Self::Batch, Error>;
    fn module_after<A: AfterHook<M>>(
        module: &mut M,
        callbacks: &mut [Box<dyn Callback<M>>],
        core: &mut Core,
        after: &mut A,
        batch: Self::Batch,
        dataloader_idx: usize,
    ) -> Result<Self::Batch, Error>;
}

/// A [`TransferStage`]: the stage's marker type, its batch type, the datamodule's hooks and the
/// module's dispatch functions of that stage.
macro_rules! transfer_stage {
    ($(#[$doc:meta])* $stage:ident, $batch:ident, [$d_before:ident, $d_to_device:ident, $d_after:ident], [$before:ident, $to_device:ident, $after:ident]) => {
        $(#[$doc])*
        pub(crate) struct $stage;

        impl<M: LightningModule> TransferStage<M> for $stage {
            type Batch = M::$batch;

            fn data_before<D: DataModule<M::Batch, M::ValBatch, M::TestBatch, M::PredictBatch>>(
                data: &mut D,
                batch: M::$batch,
                dataloader_idx: usize,
            ) -> Result<M::$batch, Error> {
                data.$d_before(batch, dataloader_idx)
            }
            fn data_to_device<D: DataModule<M::Batch, M::ValBatch, M::TestBatch, M::PredictBatch>>(
                data: &mut D,
                batch: M::$batch,
                device: &Device,
                dataloader_idx: usize,
            ) -> Result<M::$batch, Error> {
                data.$d_to_device(batch, device, dataloader_idx)
            }
            fn data_after<D: DataModule<M::Batch, M::ValBatch, M::TestBatch, M::PredictBatch>>(
                data: &mut D,
                batch: M::$batch,
                dataloader_idx: usize,
            ) -> Result<M::$batch, Error> {
                data.$d_after(batch, dataloader_idx)
            }
            fn module_before<A: AfterHook<M>>(
                module: &mut M,
                callbacks: &mut [Box<dyn Callback<M>>],
                core: &mut Core,
                after: &mut A,
                batch: M::$batch,
                dataloader_idx: usize,
            ) -> Result<M::$batch, Error> {
                dispatch::$before(module, callbacks, core, after, batch, dataloader_idx)
            }
            fn module_to_device<A: AfterHook<M>>(
                module: &mut M,
                callbacks: &mut [Box<dyn Callback<M>>],
                core: &mut Core,
                after: &mut A,
                batch: M::$batch,
                device: &Device,
                dataloader_idx: usize,
            ) -> Result<M::$batch, Error> {
                dispatch::$to_device(module, callbacks, core, after, batch, device, dataloader_idx)
            }
            fn module_after<A: AfterHook<M>>(
                module: &mut M,
                callbacks: &mut [Box<dyn Callback<M>>],
                core: &mut Core,
                after: &mut A,
                batch: M::$batch,
                dataloader_idx: usize,
            ) -> Result<M::$batch, Error> {
                dispatch::$after(module, callbacks, core, after, batch, dataloader_idx)
            }
        }
    };
}

transfer_stage!(
    /// Training batches (`M::Batch`).
    TrainBatches,
    Batch,
    [on_before_batch_transfer, transfer_batch_to_device, on_after_batch_transfer],
    [on_before_batch_transfer, transfer_batch_to_device, on_after_batch_transfer]
);
transfer_stage!(
    /// Validation batches, the sanity check's too (`M::ValBatch`).
    ValBatches,
    ValBatch,
    [on_before_val_batch_transfer, transfer_val_batch_to_device, on_after_val_batch_transfer],
    [on_before_batch_transfer_val, transfer_batch_to_device_val, on_after_batch_transfer_val]
);
transfer_stage!(
    /// Test batches (`M::TestBatch`).
    TestBatches,
    TestBatch,
    [on_before_test_batch_transfer, transfer_test_batch_to_device, on_after_test_batch_transfer],
    [on_before_batch_transfer_test, transfer_batch_to_device_test, on_after_batch_transfer_test]
);
transfer_stage!(
    /// Prediction batches (`M::PredictBatch`).
    PredictBatches,
    PredictBatch,
    [on_before_predict_batch_transfer, transfer_predict_batch_to_device, on_after_predict_batch_transfer],
    [on_before_batch_transfer_predict, transfer_batch_to_device_predict, on_after_batch_transfer_predict]
);

macro_rules! datamodule_span {
    ($data:expr, $hook:expr) => {
        $data.is_datamodule().then(|| {
            tracing::trace_span!(target: "burn_lightning::hooks", "hook", hook = $hook, by = "datamodule", datamodule = %$data.name()).entered()
        })
    };
}

pub(crate) struct Run<'t, M: LightningModule, D> {
    pub cfg: &'t Config,
    pub callbacks: &'t mut Callbacks<M>,
    pub loggers: crate::loops::signals::RunLoggers<'t>,
    /// Everything sent to the loggers in this run (Lightning's `logged_metrics`).
    pub logged: BTreeMap<String, f64>,
    /// Training batches that stepped the optimizer, across fits (Lightning's
    /// `_batches_that_stepped`): the step the loggers receive.
    pub batches_that_stepped: usize,
    /// Batches of each evaluation loop and dataloader whose step values went to the loggers in
    /// this run (the step they are logged at: Lightning's `_seen_batches_per_dataloader`).
    pub eval_batches_logged: HashMap<(Loop, usize), usize>,
    /// The batch-transfer hooks both the module and the datamodule override, warned about once.
    warned_transfer_hooks: std::collections::HashSet<Hook>,
    pub core: Core,
    pub module: M,
    pub data: D,
    pub stage: Stage,
    pub optimizer: Option<Optimizer>,
    /// The optimizers after the first, when `configure_optimizers` returned several (manual
    /// optimization).
    pub more_optimizers: Vec<Optimizer>,
    /// The device with autodiff, for training.
    pub train_device: Device,
    /// The same device without autodiff, for evaluation.
    pub eval_device: Device,
    /// Writes checkpoints in the background.
    pub writer: CheckpointWriter,
    /// Stops the run at the next batch on SIGINT or SIGTERM.
    _signals: crate::loops::signals::SignalGuard,
    /// The `version_N` this run numbered and created, until something worth keeping is in it.
    new_run_dir: Option<PathBuf>,
    /// What was sent to the loggers, for `report.html` (the trainer's, for the run's length).
    pub report: crate::loggers::report::Recorder,
    /// When the run started (the clock's time, for `report.html`, and the instant).
    started: (std::time::SystemTime, std::time::Instant),
}

impl<'t, M: LightningModule, D: DataModule<M::Batch, M::ValBatch, M::TestBatch, M::PredictBatch>> Run<'t, M, D> {
    pub fn new(
        cfg: &'t Config,
        callbacks: &'t mut Callbacks<M>,
        loggers: &'t mut Vec<Box<dyn Logger>>,
        module: M,
        data: D,
        function: TrainerFn,
        progress: &Progress,
    ) -> Self {
        let eval_device = cfg.device.clone().without_autodiff();
        let train_device = eval_device.clone().autodiff();
        if let Some(seed) = cfg.seed {
            crate::seed_everything(&eval_device, seed);
        }
        let device = if function == TrainerFn::Fitting {
            train_device.clone()
        } else {
            eval_device.clone()
        };
        let mut state = TrainerState::new(function, device);
        state.status = TrainerStatus::Running;
        state.current_epoch = progress.current_epoch;
        state.global_step = progress.global_step;
        state.max_epochs = cfg.max_epochs;
        state.max_steps = cfg.max_steps;
        state.log_dir = progress.log_dir.clone();
        state.logger_version = progress
            .log_dir
            .as_deref()
            .filter(|_| !loggers.is_empty())
            .and_then(logger_version);
        state.fast_dev_run = cfg.fast_dev_run.is_some();
        state.world_size = 1 + cfg.replica_devices.len();
        if let Some(group) = &cfg.process_group {
            state.world_size = group.world_size;
            state.global_rank = group.rank;
        }
        let mut core = Core::new(state);
        core.process_group = cfg
            .process_group
            .clone()
            .map(|group| group as std::sync::Arc<dyn crate::core::distributed::Collectives>);
        core.metrics.set_sync(core.process_group.clone());
        core.has_logger = cfg.fast_dev_run.is_none() && (cfg.default_logger || !loggers.is_empty());
        core.detect_anomaly = cfg.detect_anomaly;
        core.precision = crate::optim::precision::PrecisionState::with_growth_interval(
            cfg.precision,
            cfg.grad_scaler_growth_interval,
        );
        Self {
            cfg,
            callbacks,
            loggers: crate::loops::signals::RunLoggers::new(loggers),
            logged: BTreeMap::new(),
            warned_transfer_hooks: std::collections::HashSet::new(),
            batches_that_stepped: progress.batches_that_stepped,
            eval_batches_logged: HashMap::new(),
            core,
            module,
            data,
            stage: function.stage(),
            optimizer: None,
            more_optimizers: Vec::new(),
            train_device,
            eval_device,
            writer: CheckpointWriter::new(),
            _signals: crate::loops::signals::SignalGuard::listen(cfg.signal_timeout),
            new_run_dir: None,
            report: Default::default(),
            started: (std::time::SystemTime::now(), std::time::Instant::now()),
        }
    }

    /// What runs at every hook boundary, after the dispatched hook wrote the checkpoints it
    /// asked for: the hook's error, then an error the checkpoint writer met since the last hook
    /// (with the file's path).
    pub fn after_hook<T>(&mut self, output: Result<T, Error>) -> Result<T, Error> {
        let output = output?;
        self.writer.take_error()?;
        if !self.core.logger_records.is_empty() {
            self.send_callback_records()?;
        }
        if !self.core.optimizer_requests.is_empty() {
            self.apply_optimizer_requests()?;
        }
        if !self.core.checkpoints_to_announce.is_empty() {
            self.announce_checkpoints()?;
        }
        Ok(output)
    }

    /// Tells the loggers of the checkpoints asked for since the last time.
    #[cold]
    fn announce_checkpoints(&mut self) -> Result<(), Error> {
        let paths = std::mem::take(&mut self.core.checkpoints_to_announce);
        for logger in self.loggers.lock().iter_mut() {
            for path in &paths {
                logger.after_save_checkpoint(path)?;
            }
        }
        Ok(())
    }

    /// A training epoch ended: the loggers that send in the background catch up.
    pub fn loggers_epoch_end(&mut self) -> Result<(), Error> {
        if self.cfg.fast_dev_run.is_some() {
            return Ok(());
        }
        for logger in self.loggers.lock().iter_mut() {
            logger.epoch_end()?;
        }
        Ok(())
    }

    /// Makes the changes of the optimizers hooks asked for that no callback boundary made (a
    /// step hook's, a module hook's).
    #[cold]
    fn apply_optimizer_requests(&mut self) -> Result<(), Error> {
        apply_optimizer_requests(&mut self.core, self.optimizer.as_mut(), &mut self.more_optimizers)
    }

    /// Sends what callbacks asked to send straight to the loggers, at the current step.
    #[cold]
    fn send_callback_records(&mut self) -> Result<(), Error> {
        for record in std::mem::take(&mut self.core.logger_records) {
            self.send_to_loggers(record, self.batches_that_stepped)?;
        }
        Ok(())
    }

    /// Refreshes the learning rates hooks read (`cx.learning_rates()`) from the optimizers.
    pub fn sync_learning_rates(&mut self) {
        crate::optim::sync_learning_rates(
            &mut self.core.learning_rates,
            self.optimizer.as_ref(),
            &self.more_optimizers,
        );
    }

    /// Calls a step hook (`training_step` and friends are called directly, not dispatched):
    /// traces it, and returns what it returned or deferred.
    pub fn step<T>(
        &mut self,
        name: &'static str,
        call: impl FnOnce(&mut M, &mut Core) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let output = {
            let _span =
                tracing::trace_span!(target: "burn_lightning::hooks", "hook", hook = name, by = "module").entered();
            call(&mut self.module, &mut self.core)
        };
        let output = self.core.take_error().and(output);
        let flushed = self.save_requested_checkpoints();
        let output = output?;
        flushed?;
        self.after_hook(Ok(output))
    }

    /// `configure_callbacks`, `prepare_data`, `setup` and `configure_model`, in Lightning's order.
    pub fn setup(&mut self) -> Result<(), Error> {
        let extra = hook!(self.configure_callbacks());
        merge_callbacks(self.callbacks, extra);
        if let Some(seed) = self.cfg.seed {
            self.data.set_seed(seed);
        }
        self.data.set_device(&self.eval_device);
        {
            let _span = datamodule_span!(self.data, "prepare_data");
            self.data.prepare_data()?;
        }
        hook!(self.prepare_data());
        {
            let _span = datamodule_span!(self.data, "setup");
            self.data.setup(self.stage)?;
        }
        let stage = self.stage;
        hook!(self.setup(stage));
        hook!(self.configure_model());
        Ok(())
    }

    /// `teardown` on the datamodule, the callbacks and the module, once checkpoints are written.
    pub fn teardown(&mut self) -> Result<(), Error> {
        self.finish_checkpoints()?;
        {
            let _span = datamodule_span!(self.data, "teardown");
            self.data.teardown(self.stage);
        }
        let stage = self.stage;
        hook!(self.teardown(stage));
        self.finish_checkpoints()?;
        self.finalize_loggers("success")?;
        // Several processes: every rank returns once rank zero's files are written, so that a
        // `fit_from` that follows reads the checkpoint on every rank (Lightning's barrier).
        if let Some(group) = &self.cfg.process_group {
            group.barrier();
        }
        self.core.state.status = TrainerStatus::Finished;
        Ok(())
    }

    /// SLURM's auto-requeue (SIGUSR1; Lightning's `_slurm_sigusr_handler_fn`): flushes the
    /// loggers, saves `<default_root_dir>/hpc_ckpt_<N>.ckpt` (written before this returns) and
    /// requeues the job with `scontrol requeue` (rank zero); training goes on until SLURM stops
    /// the job. A failed requeue is a warning, as in Lightning.
    pub fn save_hpc_checkpoint_and_requeue(&mut self) -> Result<(), Error> {
        self.core.output.println("Handling auto-requeue signal: SIGUSR1");
        for logger in self.loggers.lock().iter_mut() {
            logger.save()?;
        }
        let dir = &self.cfg.default_root_dir;
        std::fs::create_dir_all(dir).map_err(|e| Error::io("create the directory", dir, e))?;
        let path = crate::strategies::slurm::hpc_save_path(dir);
        self.core.checkpoint_requests.push(path);
        self.save_requested_checkpoints()?;
        self.finish_checkpoints()?;
        if self.cfg.process_group.as_ref().is_none_or(|group| group.rank == 0) {
            match crate::strategies::slurm::requeue() {
                Ok(id) => self.core.output.println(&format!("Requeued SLURM job: {id}")),
                Err(why) => {
                    tracing::warn!(target: "burn_lightning", "requeuing the SLURM job failed: {why}");
                    self.core
                        .output
                        .println(&format!("warning: requeuing the SLURM job failed: {why}"));
                }
            }
        }
        Ok(())
    }

    /// Tells the callbacks about a failure (Lightning's `on_exception`), then writes what is
    /// still pending: the checkpoints asked for before the failure are not lost.
    pub fn fail(&mut self, error: &Error) {
        self.core.state.status = TrainerStatus::Interrupted;
        // The run already failed: what these report is secondary, so it is traced, not returned.
        let _ = self.core.take_error();
        // A failure inside `on_save_checkpoint` is not met again by the checkpoints below.
        if std::mem::take(&mut self.core.saving_checkpoint) {
            self.core.skip_on_save_checkpoint = true;
        }
        // A panic here (a hook failing again) must not cost the checkpoints, the loggers and the
        // report that follow: it is traced like an error.
        let panicked = |payload: Box<dyn std::any::Any + Send>| Err(Error::panic(payload.as_ref()));
        let handled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut after = CheckpointSink {
                data: &mut self.data,
                optimizer: self.optimizer.as_mut(),
                more_optimizers: &mut self.more_optimizers,
                writer: &mut self.writer,
            };
            dispatch::on_exception(&mut self.module, self.callbacks, &mut self.core, &mut after, error)
        }))
        .unwrap_or_else(panicked);
        if let Err(e) = handled {
            tracing::error!(target: "burn_lightning", "`on_exception` failed: {e}");
        }
        let written = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.save_requested_checkpoints()
                .and_then(|()| self.finish_checkpoints())
        }))
        .unwrap_or_else(panicked);
        if let Err(e) = written {
            tracing::error!(target: "burn_lightning", "writing checkpoints after the failure failed: {e}");
        }
        // A signal is not a failure of the run: trackers record it apart (MLflow's KILLED).
        let status = match error {
            Error::Interrupted { .. } => "interrupted",
            _ => "failed",
        };
        if let Err(e) = self.finalize_loggers(status) {
            tracing::error!(target: "burn_lightning", "closing the loggers after the failure failed: {e}");
        }
        self.remove_unused_run_dir();
    }

    /// A run that failed before training (before its first optimizer step, having logged no value
    /// and written no checkpoint) leaves no `version_N` behind (only what this run numbered and created itself, with nothing in it but its
    /// `hparams.yaml` and the loggers' headers).
    fn remove_unused_run_dir(&mut self) {
        let Some(dir) = self.new_run_dir.take() else { return };
        let trained = self.core.state.global_step > 0;
        if trained || !self.logged.is_empty() || self.report.records() > 0 || !self.core.checkpoints_written.is_empty()
        {
            return;
        }
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {
                self.core.state.log_dir = None;
                // The default logger this run added wrote there; the next run adds its own.
                let mut loggers = self.loggers.lock();
                if self.cfg.default_logger && loggers.len() == 1 {
                    loggers.pop();
                }
            }
            Err(e) => {
                tracing::warn!(target: "burn_lightning", "cannot remove the unused run directory `{}`: {e}", dir.display())
            }
        }
    }

    /// The dataloaders of `kind` on `device`, in `dataloader_idx` order: the datamodule's
    /// (`from_data`), else the module's hook's (`from_module`); empty when neither gives one.
    /// Training has one at most. `B` is the stage's batch type.
    fn loaders<B: Clone + Send + 'static>(
        &mut self,
        kind: Loop,
        device: &Device,
        from_data: fn(&mut D) -> Vec<Loader<B>>,
        from_module: fn(&mut Self) -> Result<Vec<Loader<B>>, Error>,
    ) -> Result<Vec<Loader<B>>, Error> {
        let from_data = {
            let _span = datamodule_span!(self.data, kind.dataloader_hook());
            from_data(&mut self.data)
        };
        let loaders = if from_data.is_empty() {
            from_module(self)?
        } else {
            from_data
        };
        // `overfit_batches`: the fit trains and validates on the same few batches every epoch.
        let overfits = !self.cfg.overfit_batches.is_off()
            && self.stage == crate::Stage::Fit
            && matches!(kind, Loop::Train | Loop::Validation);
        loaders
            .into_iter()
            // Batches are built where the module runs; `transfer_batch_to_device` has nothing
            // to move.
            .map(|loader| loader.to_device(device))
            .map(|loader| match overfits {
                true => super::batches::overfit_replay(kind, &loader, self.cfg.overfit_batches),
                false => Ok(loader),
            })
            .collect()
    }

    /// The training dataloader on `device`, if any.
    pub fn train_loader(&mut self, device: &Device) -> Result<Option<Loader<M::Batch>>, Error> {
        let loaders = self.loaders(
            Loop::Train,
            device,
            |data| data.train_dataloader().into_iter().collect(),
            |run| Ok(hook!(run.train_dataloader()).into_iter().collect()),
        )?;
        Ok(loaders.into_iter().next())
    }

    /// The validation dataloaders on `device`.
    pub fn val_loaders(&mut self, device: &Device) -> Result<Vec<Loader<M::ValBatch>>, Error> {
        self.loaders(
            Loop::Validation,
            device,
            |data| data.val_dataloaders(),
            |run| Ok(hook!(run.val_dataloader())),
        )
    }

    /// The test dataloaders on `device`.
    pub fn test_loaders(&mut self, device: &Device) -> Result<Vec<Loader<M::TestBatch>>, Error> {
        self.loaders(
            Loop::Test,
            device,
            |data| data.test_dataloaders(),
            |run| Ok(hook!(run.test_dataloader())),
        )
    }

    /// The prediction dataloaders on `device`.
    pub fn predict_loaders(&mut self, device: &Device) -> Result<Vec<Loader<M::PredictBatch>>, Error> {
        self.loaders(
            Loop::Predict,
            device,
            |data| data.predict_dataloaders(),
            |run| Ok(hook!(run.predict_dataloader())),
        )
    }

    /// `loaders` of `kind` (at least one), or an error naming what to provide.
    pub fn required<B>(&self, kind: Loop, loaders: Vec<Loader<B>>) -> Result<Vec<Loader<B>>, Error> {
        if loaders.is_empty() {
            return Err(Error::MissingDataloader {
                stage: self.stage,
                hook: kind.dataloader_hook(),
            });
        }
        Ok(loaders)
    }

    /// The training dataloader, or an error naming what to provide.
    pub fn required_train_loader(&mut self, device: &Device) -> Result<Loader<M::Batch>, Error> {
        self.train_loader(device)?.ok_or(Error::MissingDataloader {
            stage: self.stage,
            hook: Loop::Train.dataloader_hook(),
        })
    }

    /// The three batch-transfer hooks, for a batch of stage `S` from dataloader
    /// `dataloader_idx`: each the datamodule's when it overrides it for the stage's batch type
    /// (Lightning's precedence), else the module's, which `#[lightning_module]` implements for
    /// every stage's type.
    pub fn transfer<S: TransferStage<M>>(
        &mut self,
        batch: S::Batch,
        device: &Device,
        dataloader_idx: usize,
    ) -> Result<S::Batch, Error> {
        let (batch, by_data) = call_transfer_hook(|| S::data_before(&mut self.data, batch, dataloader_idx));
        let batch = match by_data {
            true => self.datamodule_transfer_hook(Hook::OnBeforeBatchTransfer, batch)?,
            false => stage_hook!(self, S::module_before(batch?, dataloader_idx)),
        };
        let (batch, by_data) = call_transfer_hook(|| S::data_to_device(&mut self.data, batch, device, dataloader_idx));
        let batch = match by_data {
            true => self.datamodule_transfer_hook(Hook::TransferBatchToDevice, batch)?,
            false => stage_hook!(self, S::module_to_device(batch?, device, dataloader_idx)),
        };
        let (batch, by_data) = call_transfer_hook(|| S::data_after(&mut self.data, batch, dataloader_idx));
        match by_data {
            true => self.datamodule_transfer_hook(Hook::OnAfterBatchTransfer, batch),
            false => Ok(stage_hook!(self, S::module_after(batch?, dataloader_idx))),
        }
    }

    /// The output of a batch-transfer hook the datamodule overrides; the first time, in a run
    /// whose module overrides it too, Lightning's warning that the datamodule's is used.
    fn datamodule_transfer_hook<B>(&mut self, hook: Hook, batch: Result<B, Error>) -> Result<B, Error> {
        if M::OVERRIDDEN.contains(hook) && self.warned_transfer_hooks.insert(hook) {
            tracing::warn!(target: "burn_lightning",
                "You have overridden `{}` in both `LightningModule` and `LightningDataModule` (`{}`). \
                 It will use the implementation from `LightningDataModule` instance.",
                hook.name(), self.data.name());
        }
        batch
    }

    /// Whether batch-end hooks need the batch after the step consumed it.
    pub fn batch_end_needs_batch(&self, hook: Hook) -> bool {
        !self.callbacks.is_empty() || M::OVERRIDDEN.contains(hook)
    }

    /// Writes the checkpoints hooks asked for and not yet written.
    pub fn save_requested_checkpoints(&mut self) -> Result<(), Error> {
        let mut sink = CheckpointSink {
            data: &mut self.data,
            optimizer: self.optimizer.as_mut(),
            more_optimizers: &mut self.more_optimizers,
            writer: &mut self.writer,
        };
        sink.after_hook(&mut self.module, self.callbacks, &mut self.core)
    }

    /// Waits for checkpoints being written; returns the first error writing them met.
    pub fn finish_checkpoints(&mut self) -> Result<(), Error> {
        // Checkpoints still waiting for the ranks' metric states go on without them.
        self.core.metric_gathers.clear();
        self.writer.finish()
    }

    /// Several processes, at the end of a training batch (every rank calls this at the same
    /// points): when a checkpoint of this batch waits for them, what every rank accumulated of
    /// the epoch (the metric objects' states, the `cx.log` values) is gathered and handed to it.
    /// One scalar all-reduce per batch says whether one waits (checkpoints are decided on rank
    /// zero alone).
    pub fn gather_checkpointed_metrics(&mut self) -> Result<(), Error> {
        if !std::mem::take(&mut self.core.gather_metrics_at_batch_end) {
            return Ok(());
        }
        let Some(group) = self.core.process_group.clone() else {
            return Ok(());
        };
        let waiting = std::mem::take(&mut self.core.metric_gathers);
        if !group.checkpoint_waits(!waiting.is_empty())? {
            return Ok(());
        }
        let metrics = crate::metrics::gathered_across(&self.module, &*group)?;
        let epoch_logs = self.core.metrics.epoch_logs_snapshot().read();
        let epoch_logs = gather_epoch_logs(&*group, &epoch_logs)?;
        let gathered = std::sync::Arc::new(crate::hooks::context::GatheredStates { metrics, epoch_logs });
        for sender in waiting {
            // A writer that stopped has nothing to wait for.
            let _ = sender.send(gathered.clone());
        }
        Ok(())
    }

    /// The run directory, created once per trainer (a second `fit` goes on writing into the
    /// first one's directory, as Lightning's logger keeps its version): the first logger's
    /// directory, else `<default_root_dir>/lightning_logs/version_N`, where the default
    /// TensorBoard logger then writes; without any logger, `default_root_dir` itself. With a
    /// logger, writes `hparams.yaml` there and gives the hyperparameters to every logger.
    pub fn create_log_dir(&mut self) -> Result<Option<PathBuf>, Error> {
        if self.cfg.fast_dev_run.is_some() || self.cfg.tuning.as_ref().is_some_and(|tuning| !tuning.run_dir) {
            return Ok(None);
        }
        // Several processes: the run directory is rank zero's alone.
        if self.cfg.process_group.as_ref().is_some_and(|group| group.rank != 0) {
            return Ok(None);
        }
        let first_dir = match self.core.state.log_dir {
            Some(_) => None,
            None => self.loggers.lock().first_mut().map(|logger| logger.log_dir()),
        };
        let dir = match (self.core.state.log_dir.clone(), first_dir) {
            (Some(dir), _) => dir,
            (None, Some(dir)) => dir?,
            // The learning-rate finder's search keeps its plot in a `version_N` of its own.
            (None, None) if self.cfg.default_logger || self.cfg.tuning.is_some() => {
                let dir = crate::checkpoint::run_dir::next_version_dir(&self.cfg.default_root_dir)?;
                self.new_run_dir = Some(dir.clone());
                if self.cfg.default_logger {
                    self.loggers.lock().push(Box::new(crate::loggers::default_logger(&dir)));
                }
                dir
            }
            // Without a logger, Lightning's `trainer.log_dir` is `default_root_dir` itself:
            // checkpoints go to `<default_root_dir>/checkpoints`, and no `version_N` is made.
            (None, None) => {
                let dir = self.cfg.default_root_dir.clone();
                std::fs::create_dir_all(&dir).map_err(|e| Error::io("create the run directory", &dir, e))?;
                self.core.state.log_dir = Some(dir.clone());
                return Ok(Some(dir));
            }
        };
        let hparams = self.module.hparams();
        let mut yaml = serde_saphyr::to_string(&hparams)
            .map_err(|e| Error::Checkpoint(format!("cannot write the hyperparameters as YAML: {e}")))?;
        let mut json = serde_json::to_value(&hparams)
            .map_err(|e| Error::Checkpoint(format!("cannot serialize the hyperparameters: {e}")))?;
        // The datamodule's join the module's (Lightning's `_log_hyperparams`), written after
        // them so that the module's keep their order.
        if let Some(added) = merge_datamodule_hparams(&mut json, self.data.hparams())? {
            yaml.push_str(
                &serde_saphyr::to_string(&added)
                    .map_err(|e| Error::Checkpoint(format!("cannot write the hyperparameters as YAML: {e}")))?,
            );
        }
        crate::checkpoint::run_dir::write_atomic(&dir.join("hparams.yaml"), yaml.as_bytes())?;
        let mut loggers = self.loggers.lock();
        for logger in loggers.iter_mut() {
            logger.log_hyperparams(&json)?;
        }
        if !loggers.is_empty() {
            self.core.state.logger_version = logger_version(&dir);
        }
        self.core.state.log_dir = Some(dir.clone());
        Ok(Some(dir))
    }

    /// Sends `metrics` (epoch values) to every logger at `step`, with `epoch` added (Lightning's
    /// `_LoggerConnector.log_metrics`), and saves them. Nothing happens when there is nothing
    /// to send, or no run directory (`fast_dev_run`).
    pub fn log_metrics(&mut self, metrics: BTreeMap<String, f64>, step: usize) -> Result<(), Error> {
        self.send_metrics(Self::with_epoch(metrics, &self.core), step, SeriesKind::Epoch)
    }

    /// [`log_metrics`](Self::log_metrics) for the step values of a training batch.
    pub fn log_step_metrics(&mut self, metrics: BTreeMap<String, f64>, step: usize) -> Result<(), Error> {
        self.send_metrics(Self::with_epoch(metrics, &self.core), step, SeriesKind::Step)
    }

    /// Sends `metrics` to every logger at `step` as they are, without `epoch` (Lightning's
    /// `log_metrics(metrics, step=step)`: evaluation step values, what callbacks send).
    pub fn send_to_loggers(&mut self, metrics: BTreeMap<String, f64>, step: usize) -> Result<(), Error> {
        self.send_metrics(metrics, step, SeriesKind::Step)
    }

    /// `metrics` with the current epoch, as Lightning adds it when no step is given.
    fn with_epoch(mut metrics: BTreeMap<String, f64>, core: &Core) -> BTreeMap<String, f64> {
        if !metrics.is_empty() {
            metrics
                .entry("epoch".to_string())
                .or_insert(core.state.current_epoch as f64);
        }
        metrics
    }

    fn send_metrics(&mut self, metrics: BTreeMap<String, f64>, step: usize, kind: SeriesKind) -> Result<(), Error> {
        if metrics.is_empty() || self.cfg.fast_dev_run.is_some() {
            return Ok(());
        }
        // An evaluation on a new trainer makes its run directory (and default logger) here.
        if self.core.state.log_dir.is_none() && (self.cfg.default_logger || !self.loggers.lock().is_empty()) {
            self.create_log_dir()?;
        }
        // The report charts what the loggers get, also with `enable_logger(false)`: it is the
        // way to see the curves without any logger's files.
        if self.cfg.enable_report && self.core.state.log_dir.is_some() {
            self.report.record(&metrics, step, kind, self.core.state.stage);
        }
        let mut loggers = self.loggers.lock();
        if loggers.is_empty() {
            return Ok(());
        }
        for logger in loggers.iter_mut() {
            logger.log_metrics(&metrics, step)?;
            logger.save()?;
        }
        self.logged.extend(metrics);
        Ok(())
    }

    /// Writes `report.html` into the run directory once the run ended with `result` (see
    /// [`crate::loggers::report`]): after every `fit`, and after an evaluation that sent values to the
    /// loggers (more than the `records_before` the recorder had when it started). A failure to
    /// write it is the run's error when the run succeeded; after a failure it is traced, the
    /// run's own error coming first.
    pub fn finish_report<T>(&mut self, result: Result<T, Error>, records_before: usize) -> Result<T, Error> {
        match (self.write_report(result.as_ref().err(), records_before), result) {
            (Ok(()), result) => result,
            (Err(write_error), Ok(_)) => Err(write_error),
            (Err(write_error), Err(error)) => {
                tracing::error!(target: "burn_lightning", "writing report.html after the failure failed: {write_error}");
                Err(error)
            }
        }
    }

    fn write_report(&mut self, failure: Option<&Error>, records_before: usize) -> Result<(), Error> {
        let fitting = self.stage == Stage::Fit;
        let logged_more = self.report.records() > records_before;
        let Some(dir) = self.core.state.log_dir.clone() else {
            return Ok(());
        };
        if !self.cfg.enable_report || self.cfg.fast_dev_run.is_some() || !(fitting || logged_more) {
            return Ok(());
        }
        let state = &self.core.state;
        self.report.finish_run(
            self.stage,
            failure,
            state.current_epoch,
            state.global_step,
            self.started,
        );
        let module = &self.module;
        let train_device = &self.train_device;
        // Lightning's default depth (`ModelSummary(max_depth=1)`). An evaluation runs on a copy
        // without autodiff, whose parameters all read as frozen: the summary is of the module
        // as `fit` would train it.
        let summary = self.report.summary(fitting, || {
            if fitting {
                crate::callbacks::model_summary::summarize(module, 1)
            } else {
                crate::callbacks::model_summary::summarize(&module.clone().fork(train_device).train(), 1)
            }
        });
        let hparams = serde_json::to_value(self.module.hparams())
            .map_err(|e| Error::Checkpoint(format!("cannot serialize the hyperparameters: {e}")))?;
        self.report.write(&dir, &hparams, &summary)
    }

    /// Flushes and closes the loggers once the run ended with `status`.
    pub fn finalize_loggers(&mut self, status: &str) -> Result<(), Error> {
        let mut first_error = match self.core.checkpoints_to_announce.is_empty() {
            true => Ok(()),
            false => self.announce_checkpoints(),
        };
        for logger in self.loggers.lock().iter_mut() {
            let result = logger.finalize(status);
            if first_error.is_ok() {
                first_error = result;
            }
        }
        first_error
    }
}

/// Makes the changes of the optimizers hooks asked for (param groups, rates, schedulers), then
/// names the learning rates again (a new group changes the monitor's keys).
fn apply_optimizer_requests(
    core: &mut Core,
    mut optimizer: Option<&mut Optimizer>,
    more_optimizers: &mut [Optimizer],
) -> Result<(), Error> {
    let configured = usize::from(optimizer.is_some()) + more_optimizers.len();
    for request in std::mem::take(&mut core.optimizer_requests) {
        let index = request.optimizer();
        let target = match index {
            0 => optimizer.as_deref_mut(),
            i => more_optimizers.get_mut(i - 1),
        };
        let Some(target) = target else {
            return Err(Error::Hook {
                hook: "configure_optimizers",
                message: match configured {
                    0 => format!(
                        "a hook asked to change optimizer {index}, but optimizers exist during `fit` only, after \
                         `configure_optimizers`"
                    ),
                    n => format!("a hook asked to change optimizer {index}, but `configure_optimizers` returned {n}"),
                },
            });
        };
        request.apply(target)?;
    }
    core.learning_rates.clear();
    crate::optim::sync_learning_rates(&mut core.learning_rates, optimizer.as_deref(), more_optimizers);
    Ok(())
}

/// Every rank's `cx.log` accumulators of the training epoch, in rank order (one all-gather,
/// as JSON bytes).
fn gather_epoch_logs(
    group: &dyn crate::core::distributed::Collectives,
    local: &[crate::core::logging::SavedEpochLog],
) -> Result<Vec<Vec<crate::core::logging::SavedEpochLog>>, Error> {
    let bytes = serde_json::to_vec(local)
        .map_err(|e| Error::Checkpoint(format!("cannot save the values logged in the epoch: {e}")))?;
    let buffer: Vec<f64> = bytes.iter().map(|&b| f64::from(b)).collect();
    group
        .all_gather_for_checkpoint(&buffer)?
        .iter()
        .enumerate()
        .map(|(rank, buffer)| {
            let bytes: Vec<u8> = buffer.iter().map(|&b| b as u8).collect();
            serde_json::from_slice(&bytes).map_err(|e| {
                Error::Checkpoint(format!(
                    "rank {rank} sent the values it logged in the epoch damaged: {e}"
                ))
            })
        })
        .collect()
}

/// The trainer's after-hook protocol inside a run (see [`AfterHook`]): right after the callback
/// or module hook that asked, makes the changes of the optimizers it asked for (so the next
/// callback sees them, as Lightning's callbacks see each other's `add_param_group`), takes the
/// checkpoint (callback and datamodule states, then the `on_save_checkpoint` hooks, in
/// Lightning's order, and a snapshot of the weights and the optimizer state) and hands it to the
/// background writer, followed by the removals asked for.
pub(crate) struct CheckpointSink<'r, D> {
    pub data: &'r mut D,
    pub optimizer: Option<&'r mut Optimizer>,
    pub more_optimizers: &'r mut [Optimizer],
    pub writer: &'r mut CheckpointWriter,
}

impl<M: LightningModule, D: DataModule<M::Batch, M::ValBatch, M::TestBatch, M::PredictBatch>> AfterHook<M>
    for CheckpointSink<'_, D>
{
    #[inline]
    fn after_hook(
        &mut self,
        module: &mut M,
        callbacks: &mut [Box<dyn Callback<M>>],
        core: &mut Core,
    ) -> Result<(), Error> {
        if !core.optimizer_requests.is_empty() {
            apply_optimizer_requests(core, self.optimizer.as_deref_mut(), self.more_optimizers)?;
        }
        if !core.has_checkpoint_requests() {
            return Ok(());
        }
        self.save(module, callbacks, core)
    }
}

impl<D> CheckpointSink<'_, D> {
    fn save<M: LightningModule>(
        &mut self,
        module: &mut M,
        callbacks: &mut [Box<dyn Callback<M>>],
        core: &mut Core,
    ) -> Result<(), Error>
    where
        D: DataModule<M::Batch, M::ValBatch, M::TestBatch, M::PredictBatch>,
    {
        let requests = std::mem::take(&mut core.checkpoint_requests);
        let removals = std::mem::take(&mut core.checkpoint_removals);
        let weights_only_requests = std::mem::take(&mut core.weights_only_requests);
        let links = std::mem::take(&mut core.checkpoint_links);
        // Temporary files a killed run left are removed before the first checkpoint this run
        // writes into a directory: there, and in every run directory of its root (a resumed
        // fit writes into a new `version_N`), those whose writer is gone.
        let stale: Vec<PathBuf> = requests
            .iter()
            .chain(&weights_only_requests)
            .filter_map(|p| p.parent().map(Path::to_path_buf))
            .filter(|dir| core.cleaned_dirs.insert(dir.clone()))
            .collect();
        let checkpoint = match requests.is_empty() {
            true => None,
            false => Some(self.checkpoint(module, callbacks, core)?),
        };
        // Lightning's `weights_only`: no callback states and no `on_save_checkpoint` hooks.
        let weights_only = match weights_only_requests.is_empty() {
            true => None,
            false => Some(self.weights_only_checkpoint(module, core)?),
        };
        // Snapshots: burn's tensors are immutable values, so these clones of handles keep the
        // current weights and optimizer state while training goes on. The metric objects'
        // states are shared by every clone of the module: their tensors are taken now.
        let metrics = checkpoint
            .is_some()
            .then(|| crate::metrics::MetricsSnapshot::of(&*module, &core.metrics.checkpointed_metrics()));
        // Several processes: what every rank accumulated of the training epoch, gathered at the
        // end of this batch (this process holds its own share only).
        let gathered = match &metrics {
            Some(_) if core.gather_metrics_at_batch_end && core.state.function == TrainerFn::Fitting => {
                let (sender, receiver) = std::sync::mpsc::channel();
                core.metric_gathers.push(sender);
                Some(receiver)
            }
            _ => None,
        };
        let epoch_logs = match checkpoint.is_some() && core.state.function == TrainerFn::Fitting {
            true => core.metrics.epoch_logs_snapshot(),
            false => Default::default(),
        };
        let module = module.clone();
        let optimizers =
            crate::checkpoint::restore::optimizer_snapshots(self.optimizer.as_deref(), self.more_optimizers);
        let non_finite_paths = self.writer.non_finite_paths();
        self.writer.submit(Box::new(move || {
            let mut cleaned = Vec::new();
            for dir in stale
                .iter()
                .flat_map(|dir| crate::checkpoint::run_dir::temp_file_dirs(dir))
            {
                if !cleaned.contains(&dir) {
                    crate::checkpoint::run_dir::clean_stale_temp_files(&dir)?;
                    cleaned.push(dir);
                }
            }
            let mut non_finite_paths = non_finite_paths
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            // The first checkpoint just written whose weights are not finite, and the weight.
            let mut non_finite: Option<(PathBuf, String)> = None;
            let mut saved = |checkpoint: &Checkpoint, paths: &[PathBuf]| -> Result<(), Error> {
                for path in paths {
                    checkpoint.save(path)?;
                }
                if let Some(weight) = checkpoint.first_non_finite_weight() {
                    non_finite_paths.extend(paths.iter().cloned());
                    if let (None, Some(path)) = (&non_finite, paths.first()) {
                        non_finite = Some((path.clone(), weight.to_string()));
                    }
                }
                Ok(())
            };
            if let Some(mut checkpoint) = checkpoint {
                let metrics = metrics.unwrap_or_default();
                checkpoint.metrics = match gathered.map(|receiver| receiver.recv()) {
                    Some(Ok(gathered)) => {
                        checkpoint.epoch_logs_by_rank = gathered.epoch_logs.clone();
                        metrics.to_json_gathered(&gathered.metrics)?
                    }
                    Some(Err(_)) => {
                        tracing::warn!(target: "burn_lightning",
                            "the checkpoint holds this rank's share of the training epoch's metric states and logged \
                             values only: the run ended before the ranks could gather theirs");
                        metrics.to_json()?
                    }
                    None => metrics.to_json()?,
                };
                checkpoint.epoch_logs = epoch_logs.read();
                // Cloning the module copies tensor handles, not weights.
                let checkpoint = checkpoint.with_payload(module.clone(), optimizers)?;
                saved(&checkpoint, &requests)?;
            }
            if let Some(checkpoint) = weights_only {
                let checkpoint = checkpoint.with_payload(module, Vec::new())?;
                saved(&checkpoint, &weights_only_requests)?;
            }
            for (target, link) in links {
                crate::checkpoint::run_dir::link_atomic(&target, &link)?;
            }
            for path in removals {
                // Weights that are not finite never replace the last finite ones: the older
                // checkpoint stays unless its own weights were not finite either.
                if let Some((new, weight)) = &non_finite
                    && !non_finite_paths.contains(&path)
                {
                    tracing::warn!(target: "burn_lightning",
                        "kept `{}`: `{}`, written to replace it, holds weights that are not finite (`{weight}`)",
                        path.display(), new.display());
                    continue;
                }
                non_finite_paths.remove(&path);
                crate::checkpoint::run_dir::remove_durable(&path)?;
            }
            Ok(())
        }))
    }

    /// A checkpoint of the counters, hyperparameters and datamodule state, without the weights.
    fn weights_only_checkpoint<M: LightningModule>(&mut self, module: &M, core: &Core) -> Result<Checkpoint, Error>
    where
        D: DataModule<M::Batch, M::ValBatch, M::TestBatch, M::PredictBatch>,
    {
        let hparams = serde_json::to_value(module.hparams())
            .map_err(|e| Error::Checkpoint(format!("cannot serialize the hyperparameters: {e}")))?;
        let mut checkpoint = Checkpoint::new(core.state.current_epoch, core.state.global_step, hparams);
        checkpoint.datamodule_hyper_parameters = self.data.hparams();
        if let Some(state) = self.data.state_dict() {
            checkpoint.datamodule.insert(self.data.name().into_owned(), state);
        }
        Ok(checkpoint)
    }

    /// A checkpoint of the current state, without the weights: callback and datamodule states,
    /// then the `on_save_checkpoint` hooks (Lightning's order).
    fn checkpoint<M: LightningModule>(
        &mut self,
        module: &mut M,
        callbacks: &mut [Box<dyn Callback<M>>],
        core: &mut Core,
    ) -> Result<Checkpoint, Error>
    where
        D: DataModule<M::Batch, M::ValBatch, M::TestBatch, M::PredictBatch>,
    {
        let hparams = serde_json::to_value(module.hparams())
            .map_err(|e| Error::Checkpoint(format!("cannot serialize the hyperparameters: {e}")))?;
        let mut checkpoint = Checkpoint::new(core.state.current_epoch, core.state.global_step, hparams);
        checkpoint.datamodule_hyper_parameters = self.data.hparams();
        if core.state.function == TrainerFn::Fitting {
            checkpoint.loops = Some(crate::checkpoint::restore::loop_progress(
                core,
                self.optimizer.as_deref(),
                self.more_optimizers,
            )?);
        }
        for callback in callbacks.iter_mut() {
            let key = callback.state_key();
            let state = {
                let _span = tracing::trace_span!(target: "burn_lightning::hooks", "hook", hook = "state_dict", by = "callback", callback = %callback.name()).entered();
                callback.state_dict()
            };
            if let Some(state) = state {
                checkpoint.callbacks.insert(key.into_owned(), state);
            }
        }
        let datamodule_state = {
            let _span = datamodule_span!(self.data, "state_dict");
            self.data.state_dict()
        };
        if let Some(state) = datamodule_state {
            checkpoint.datamodule.insert(self.data.name().into_owned(), state);
        }
        if core.skip_on_save_checkpoint {
            tracing::warn!(target: "burn_lightning",
                "the run failed in `on_save_checkpoint`: this checkpoint is written without the `on_save_checkpoint` hooks");
        } else {
            // Left set when a hook panics or fails: `fail` then knows where the run failed.
            core.saving_checkpoint = true;
            dispatch::on_save_checkpoint(module, callbacks, core, &mut (), &mut checkpoint)?;
            core.saving_checkpoint = false;
        }
        Ok(checkpoint)
    }
}

/// Lightning's `logger.version`, from the run directory: `N` of `version_N`, else its name.
/// Adds the datamodule's hyperparameters `data` to the module's `module` (both JSON objects) and
/// returns those it added; a name both have with different values is an error, as Lightning's
/// "Error while merging hparams".
fn merge_datamodule_hparams(
    module: &mut serde_json::Value,
    data: Option<serde_json::Value>,
) -> Result<Option<serde_json::Map<String, serde_json::Value>>, Error> {
    let Some(data) = data else { return Ok(None) };
    let serde_json::Value::Object(data) = data else {
        return Err(Error::config(
            "datamodule hparams",
            format!("`DataModule::hparams` must return a JSON object of names and values, not `{data}`"),
        ));
    };
    let Some(module) = module.as_object_mut() else {
        return Ok(None);
    };
    let clashes: Vec<&str> = data
        .iter()
        .filter(|(name, value)| module.get(*name).is_some_and(|mine| mine != *value))
        .map(|(name, _)| name.as_str())
        .collect();
    if !clashes.is_empty() {
        return Err(Error::config(
            "datamodule hparams",
            format!(
                "the hyperparameters {clashes:?} are in both the module's and the datamodule's with different values; \
                 rename one of them"
            ),
        ));
    }
    let added: serde_json::Map<String, serde_json::Value> = data
        .into_iter()
        .filter(|(name, _)| !module.contains_key(name))
        .collect();
    module.extend(added.clone());
    Ok((!added.is_empty()).then_some(added))
}

fn logger_version(dir: &Path) -> Option<String> {
    let name = dir.file_name()?.to_str()?;
    let number = name.strip_prefix("version_").filter(|n| n.parse::<usize>().is_ok());
    Some(number.unwrap_or(name).to_string())
}

/// Adds `extra` to `callbacks` (a callback with the same name replaces the existing one, as
/// Lightning replaces callbacks of the same type), then puts checkpointing callbacks last.
pub(crate) fn merge_callbacks<M: LightningModule>(callbacks: &mut Callbacks<M>, extra: Callbacks<M>) {
    for callback in extra {
        let name = callback.name();
        match callbacks.iter().position(|c| c.name() == name) {
            Some(i) => callbacks[i] = callback,
            None => callbacks.push(callback),
        }
    }
    // Stable: the relative order of the others is kept.
    callbacks.sort_by_key(|c| c.role() == CallbackRole::Checkpoint);
}
