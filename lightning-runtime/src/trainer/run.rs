//! What every entry point shares: the module, the data, the callbacks and the trainer's core for
//! one run; setup and teardown in Lightning's order; dataloader resolution; checkpoint writing.

use super::Config;
use crate::checkpoint::Checkpoint;
use crate::context::{Core, RunningStage, TrainerFn, TrainerState, TrainerStatus};
use crate::data::{DataModule, Loader, Stage};
use crate::hooks::{CallbackRole, Callbacks, Hook, LightningModule, dispatch};
use crate::optim::Optimizer;
use crate::{Device, Error};
use std::path::PathBuf;

/// The four dataloaders.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum LoaderKind {
    Train,
    Val,
    Test,
    Predict,
}

impl LoaderKind {
    pub(crate) fn hook_name(self) -> &'static str {
        match self {
            LoaderKind::Train => "train_dataloader",
            LoaderKind::Val => "val_dataloader",
            LoaderKind::Test => "test_dataloader",
            LoaderKind::Predict => "predict_dataloader",
        }
    }
}

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
    pub core: Core,
    pub module: M,
    pub data: D,
    pub stage: Stage,
    pub optimizer: Option<Optimizer>,
    /// The device with autodiff, for training.
    pub train_device: Device,
    /// The same device without autodiff, for evaluation.
    pub eval_device: Device,
    /// Writes checkpoints in the background.
    pub writer: CheckpointWriter,
}

impl<'t, M: LightningModule, D: DataModule<M::Batch>> Run<'t, M, D> {
    pub fn new(
        cfg: &'t Config,
        callbacks: &'t mut Callbacks<M>,
        module: M,
        data: D,
        function: TrainerFn,
        stage: Stage,
    ) -> Self {
        let eval_device = cfg.device.clone().without_autodiff();
        let train_device = eval_device.clone().autodiff();
        if let Some(seed) = cfg.seed {
            crate::seed_everything(&eval_device, seed);
        }
        let running = match function {
            TrainerFn::Fitting => RunningStage::Training,
            TrainerFn::Validating => RunningStage::Validating,
            TrainerFn::Testing => RunningStage::Testing,
            TrainerFn::Predicting => RunningStage::Predicting,
        };
        let state = TrainerState {
            status: TrainerStatus::Running,
            function,
            stage: running,
            current_epoch: 0,
            global_step: 0,
            batch_idx: 0,
            num_training_batches: None,
            max_epochs: cfg.max_epochs,
            max_steps: cfg.max_steps,
            should_stop: false,
            device: if function == TrainerFn::Fitting {
                train_device.clone()
            } else {
                eval_device.clone()
            },
            log_dir: None,
        };
        Self {
            cfg,
            callbacks,
            core: Core::new(state),
            module,
            data,
            stage,
            optimizer: None,
            train_device,
            eval_device,
            writer: CheckpointWriter::default(),
        }
    }

    /// The first misuse a hook reported, if any.
    pub fn check(&mut self) -> Result<(), Error> {
        self.core.take_error()
    }

    /// `configure_callbacks`, `prepare_data`, `setup` and `configure_model`, in Lightning's order.
    pub fn setup(&mut self) -> Result<(), Error> {
        let extra = dispatch::configure_callbacks(&mut self.module);
        merge_callbacks(self.callbacks, extra);
        if let Some(seed) = self.cfg.seed {
            self.data.set_seed(seed);
        }
        {
            let _span = datamodule_span!(self.data, "prepare_data");
            self.data.prepare_data()?;
        }
        dispatch::prepare_data(&mut self.module, &mut self.core);
        {
            let _span = datamodule_span!(self.data, "setup");
            self.data.setup(self.stage)?;
        }
        dispatch::setup(&mut self.module, self.callbacks, &mut self.core, self.stage);
        dispatch::configure_model(&mut self.module, &mut self.core);
        self.check()
    }

    /// `teardown` on the datamodule, the callbacks and the module, once checkpoints are written.
    pub fn teardown(&mut self) -> Result<(), Error> {
        self.finish_checkpoints()?;
        {
            let _span = datamodule_span!(self.data, "teardown");
            self.data.teardown(self.stage);
        }
        dispatch::teardown(&mut self.module, self.callbacks, &mut self.core, self.stage);
        self.core.state.status = TrainerStatus::Finished;
        self.check()
    }

    /// Tells the callbacks about a failure (Lightning's `on_exception`).
    pub fn fail(&mut self, error: &Error) {
        self.core.state.status = TrainerStatus::Interrupted;
        dispatch::on_exception(&mut self.module, self.callbacks, &mut self.core, error);
    }

    /// The dataloader of `kind` on `device`: the datamodule's, else the module's hook.
    pub fn loader(&mut self, kind: LoaderKind, device: &Device) -> Option<Loader<M::Batch>> {
        let from_data = {
            let _span = datamodule_span!(self.data, kind.hook_name());
            match kind {
                LoaderKind::Train => self.data.train_dataloader(),
                LoaderKind::Val => self.data.val_dataloader(),
                LoaderKind::Test => self.data.test_dataloader(),
                LoaderKind::Predict => self.data.predict_dataloader(),
            }
        };
        let loader = from_data.or_else(|| match kind {
            LoaderKind::Train => dispatch::train_dataloader(&mut self.module, &mut self.core),
            LoaderKind::Val => dispatch::val_dataloader(&mut self.module, &mut self.core),
            LoaderKind::Test => dispatch::test_dataloader(&mut self.module, &mut self.core),
            LoaderKind::Predict => dispatch::predict_dataloader(&mut self.module, &mut self.core),
        })?;
        // Batches are built where the module runs; `transfer_batch_to_device` has nothing to move.
        Some(loader.to_device(device))
    }

    /// The dataloader of `kind`, or an error naming what to provide.
    pub fn required_loader(&mut self, kind: LoaderKind, device: &Device) -> Result<Loader<M::Batch>, Error> {
        self.loader(kind, device).ok_or(Error::MissingDataloader {
            stage: self.stage,
            hook: kind.hook_name(),
        })
    }

    /// The three batch-transfer hooks.
    pub fn transfer(&mut self, batch: M::Batch, device: &Device) -> M::Batch {
        let batch = dispatch::on_before_batch_transfer(&mut self.module, &mut self.core, batch, 0);
        let batch = dispatch::transfer_batch_to_device(&mut self.module, &mut self.core, batch, device, 0);
        dispatch::on_after_batch_transfer(&mut self.module, &mut self.core, batch, 0)
    }

    /// Whether batch-end hooks need the batch after the step consumed it.
    pub fn batch_end_needs_batch(&self, hook: Hook) -> bool {
        !self.callbacks.is_empty() || M::OVERRIDDEN.contains(hook)
    }

    /// Writes the checkpoints callbacks asked for during the last hook, then removes the files
    /// they no longer keep (only once the new ones are safely written). The hooks run here; the
    /// serialization and the writing run on a background thread, so that training does not wait
    /// for the disk.
    pub fn save_requested_checkpoints(&mut self) -> Result<(), Error> {
        if self.core.checkpoint_requests.is_empty() && self.core.checkpoint_removals.is_empty() {
            return Ok(());
        }
        let requests = std::mem::take(&mut self.core.checkpoint_requests);
        let removals = std::mem::take(&mut self.core.checkpoint_removals);
        if self.cfg.fast_dev_run.is_some() {
            return Ok(());
        }
        let checkpoint = match requests.is_empty() {
            true => None,
            false => Some(self.checkpoint()?),
        };
        // Snapshots: burn's tensors are immutable values, so these clones of handles keep the
        // current weights and optimizer state while training goes on.
        let module = self.module.clone();
        let optimizer = self.optimizer.as_ref().map(|o| o.module_optimizer().clone());
        self.writer.submit(move || {
            if let Some(checkpoint) = checkpoint {
                let checkpoint = checkpoint.with_payload(module, optimizer)?;
                for path in &requests {
                    checkpoint.save(path)?;
                }
            }
            for path in removals {
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::io("remove the old checkpoint", path, e)),
                }
            }
            Ok(())
        })
    }

    /// Waits for checkpoints being written; returns the first error writing them met.
    pub fn finish_checkpoints(&mut self) -> Result<(), Error> {
        self.writer.wait()
    }

    /// A checkpoint of the current state, without the weights: callback and datamodule states,
    /// then the `on_save_checkpoint` hooks (Lightning's order).
    fn checkpoint(&mut self) -> Result<Checkpoint, Error> {
        let hparams = serde_json::to_value(self.module.hparams())
            .map_err(|e| Error::Checkpoint(format!("cannot serialize the hyperparameters: {e}")))?;
        let mut checkpoint = Checkpoint::new(self.core.state.current_epoch, self.core.state.global_step, hparams);
        for callback in self.callbacks.iter_mut() {
            let name = callback.name();
            let state = {
                let _span = tracing::trace_span!(target: "burn_lightning::hooks", "hook", hook = "state_dict", by = "callback", callback = %name).entered();
                callback.state_dict()
            };
            if let Some(state) = state {
                checkpoint.callbacks.insert(name.into_owned(), state);
            }
        }
        let datamodule_state = {
            let _span = datamodule_span!(self.data, "state_dict");
            self.data.state_dict()
        };
        if let Some(state) = datamodule_state {
            checkpoint.datamodule.insert(self.data.name().into_owned(), state);
        }
        dispatch::on_save_checkpoint(&mut self.module, self.callbacks, &mut self.core, &mut checkpoint);
        self.check()?;
        Ok(checkpoint)
    }

    /// Creates `<default_root_dir>/lightning_logs/version_N` and writes `hparams.yaml` there.
    pub fn create_log_dir(&mut self) -> Result<Option<PathBuf>, Error> {
        if self.cfg.fast_dev_run.is_some() {
            return Ok(None);
        }
        let dir = crate::run_dir::next_version_dir(&self.cfg.default_root_dir)?;
        let yaml = serde_saphyr::to_string(&self.module.hparams())
            .map_err(|e| Error::Checkpoint(format!("cannot write the hyperparameters as YAML: {e}")))?;
        crate::run_dir::write_atomic(&dir.join("hparams.yaml"), yaml.as_bytes())?;
        self.core.state.log_dir = Some(dir.clone());
        Ok(Some(dir))
    }
}

/// One background write at a time: a new one waits for the previous (so files are written in
/// order), and an error is returned by the next `submit` or by `wait`.
#[derive(Default)]
pub(crate) struct CheckpointWriter {
    pending: Option<std::thread::JoinHandle<Result<(), Error>>>,
}

impl CheckpointWriter {
    fn submit(&mut self, job: impl FnOnce() -> Result<(), Error> + Send + 'static) -> Result<(), Error> {
        self.wait()?;
        let handle = std::thread::Builder::new()
            .name("checkpoint-writer".into())
            .spawn(job)
            .map_err(|e| Error::Checkpoint(format!("cannot start the checkpoint writer thread: {e}")))?;
        self.pending = Some(handle);
        Ok(())
    }

    fn wait(&mut self) -> Result<(), Error> {
        match self.pending.take() {
            None => Ok(()),
            Some(handle) => handle
                .join()
                .unwrap_or_else(|_| Err(Error::Checkpoint("writing a checkpoint panicked".into()))),
        }
    }
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
