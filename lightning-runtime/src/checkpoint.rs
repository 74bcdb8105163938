//! Checkpoints: the module's weights, the optimizer's state and the trainer's counters in one
//! file, written atomically (a crash while saving leaves the previous file intact).
//!
//! Layout: the magic `BLCKPT01`, a little-endian `u64` length and that many bytes of JSON
//! metadata (Lightning's keys: `epoch`, `global_step`, `hyper_parameters`, `callbacks`, ...), then
//! the module's burnpack record and the optimizer's burnpack record, whose lengths the metadata
//! gives.

use crate::context::Core;
use crate::hooks::{LightningModule, dispatch};
use crate::run_dir::write_atomic_parts;
use crate::state::{TrainerFn, TrainerState};
use crate::{Error, JsonValue};
use burn::module::Module;
use burn::store::ModuleRecord;
use burn::tensor::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

const MAGIC: &[u8; 8] = b"BLCKPT01";

/// A checkpoint, as `on_save_checkpoint` sees it before it is written and `on_load_checkpoint`
/// after it is read. Add your own entries to [`extra`](Self::extra).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Checkpoint {
    /// `current_epoch` when saved.
    pub epoch: usize,
    /// `global_step` (optimizer steps) when saved.
    pub global_step: usize,
    /// The `burn-lightning` version that wrote it.
    pub version: String,
    /// The module's hyperparameters (`#[hparam]` fields).
    pub hyper_parameters: JsonValue,
    /// Each callback's `state_dict`, by callback name.
    pub callbacks: BTreeMap<String, JsonValue>,
    /// The datamodule's `state_dict`, by datamodule name.
    pub datamodule: BTreeMap<String, JsonValue>,
    /// What `on_save_checkpoint` hooks added.
    pub extra: BTreeMap<String, JsonValue>,
    #[serde(skip)]
    pub(crate) model: Vec<u8>,
    #[serde(skip)]
    pub(crate) optimizer: Vec<u8>,
    model_bytes: u64,
    optimizer_bytes: u64,
}

impl Checkpoint {
    /// A checkpoint without weights yet: what `on_save_checkpoint` hooks see and extend.
    pub(crate) fn new(epoch: usize, global_step: usize, hyper_parameters: JsonValue) -> Self {
        Self {
            epoch,
            global_step,
            version: env!("CARGO_PKG_VERSION").to_string(),
            hyper_parameters,
            callbacks: BTreeMap::new(),
            datamodule: BTreeMap::new(),
            extra: BTreeMap::new(),
            model: Vec::new(),
            optimizer: Vec::new(),
            model_bytes: 0,
            optimizer_bytes: 0,
        }
    }

    /// Adds the serialized weights of `module` and state of `optimizer`. Both are snapshots
    /// (clones of tensor handles), so this can run on another thread while training goes on.
    pub(crate) fn with_payload<M: Module>(
        mut self,
        module: M,
        optimizer: Option<burn::optim::ModuleOptimizer>,
    ) -> Result<Self, Error> {
        let model = module
            .into_record()
            .into_bytes()
            .map_err(|e| Error::Checkpoint(format!("cannot serialize the module's weights: {e}")))?;
        self.model = into_vec(model);
        if let Some(optimizer) = optimizer {
            let state = optimizer
                .into_bytes()
                .map_err(|e| Error::Checkpoint(format!("cannot serialize the optimizer's state: {e}")))?;
            self.optimizer = into_vec(state);
        }
        self.model_bytes = self.model.len() as u64;
        self.optimizer_bytes = self.optimizer.len() as u64;
        Ok(self)
    }

    /// Writes the checkpoint to `path`, atomically.
    pub fn save(&self, path: &Path) -> Result<(), Error> {
        // `model_bytes` and `optimizer_bytes` are set with the payloads, which serde skips.
        let json = serde_json::to_vec(self)
            .map_err(|e| Error::Checkpoint(format!("cannot encode the checkpoint metadata: {e}")))?;
        let json_len = (json.len() as u64).to_le_bytes();
        write_atomic_parts(path, &[MAGIC, &json_len, &json, &self.model, &self.optimizer])
    }

    /// Reads a checkpoint written by [`save`](Self::save).
    pub fn load(path: &Path) -> Result<Self, Error> {
        let bytes = std::fs::read(path).map_err(|e| Error::io("read the checkpoint", path, e))?;
        let bad = |why: &str| {
            Error::Checkpoint(format!(
                "`{}` is not a burn-lightning checkpoint: {why}",
                path.display()
            ))
        };
        if bytes.len() < 16 || &bytes[..8] != MAGIC {
            return Err(bad("it does not start with the checkpoint header"));
        }
        let meta_len = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes")) as usize;
        let meta_end = 16usize
            .checked_add(meta_len)
            .filter(|end| *end <= bytes.len())
            .ok_or_else(|| bad("it is truncated"))?;
        let mut checkpoint: Checkpoint =
            serde_json::from_slice(&bytes[16..meta_end]).map_err(|e| bad(&format!("its metadata is invalid ({e})")))?;
        let model_end = meta_end
            .checked_add(checkpoint.model_bytes as usize)
            .filter(|end| *end <= bytes.len())
            .ok_or_else(|| bad("it is truncated"))?;
        let optimizer_end = model_end
            .checked_add(checkpoint.optimizer_bytes as usize)
            .filter(|end| *end == bytes.len())
            .ok_or_else(|| bad("its length does not match its metadata"))?;
        checkpoint.model = bytes[meta_end..model_end].to_vec();
        checkpoint.optimizer = bytes[model_end..optimizer_end].to_vec();
        Ok(checkpoint)
    }

    /// Loads the saved weights into `module` (which must have the same structure).
    pub fn restore_module<M: Module>(&self, module: M) -> Result<M, Error> {
        let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(self.model.clone()))
            .map_err(|e| Error::Checkpoint(format!("cannot read the saved weights: {e}")))?;
        module
            .try_load_record(record)
            .map_err(|e| Error::Checkpoint(format!("the saved weights do not fit this module: {e}")))
    }

    /// Lightning's `load_from_checkpoint`, for a module you built (for example from
    /// [`hparams`](Self::hparams)): calls its `on_load_checkpoint` hook with this checkpoint, then
    /// loads the saved weights into it.
    pub fn load_into<M: LightningModule>(&self, mut module: M) -> Result<M, Error> {
        let device = module.devices().into_iter().next().unwrap_or_default();
        let mut state = TrainerState::new(TrainerFn::Fitting, device);
        state.current_epoch = self.epoch;
        state.global_step = self.global_step;
        let mut core = Core::new(state);
        dispatch::on_load_checkpoint(&mut module, &mut [], &mut core, &mut (), self)?;
        self.restore_module(module)
    }

    /// The saved hyperparameters, as the module's `<Name>Hparams`.
    pub fn hparams<H: serde::de::DeserializeOwned>(&self) -> Result<H, Error> {
        serde_json::from_value(self.hyper_parameters.clone())
            .map_err(|e| Error::Checkpoint(format!("the saved hyperparameters do not fit this module: {e}")))
    }

    /// Whether the checkpoint holds optimizer state.
    pub fn has_optimizer_state(&self) -> bool {
        !self.optimizer.is_empty()
    }
}

/// The bytes of a burnpack record, without copying them when their allocation allows.
fn into_vec(bytes: Bytes) -> Vec<u8> {
    bytes.try_into_vec::<u8>().unwrap_or_else(|bytes| bytes.to_vec())
}
