//! Checkpoints: the module's weights, the optimizer's state and the trainer's counters in one
//! file, written atomically (a crash while saving leaves the previous file intact).
//!
//! Format 2 is a [safetensors](https://huggingface.co/docs/safetensors) file, so standard tools
//! open the weights (Python: `safetensors.numpy.load_file("epoch=0-step=4.ckpt")`): one tensor
//! per parameter under its path (`l1.weight`), the optimizer's state (burn's record) as the
//! `u8` tensor `__burn_lightning__.optimizer`, and in the header's `__metadata__`: `format`,
//! `format_version`, the JSON metadata (Lightning's keys: `epoch`, `global_step`,
//! `hyper_parameters`, `callbacks`, ...) under `checkpoint`, the parameters' burn ids, and a
//! CRC-32C checksum per section (`metadata`, `weights`, `optimizer`). Format 3 adds weight sets
//! and covers the version in the metadata checksum; format 4, the one written now, adds
//! `header_checksum`: a CRC-32C of the header's bytes as written (its length, its JSON, its
//! padding), computed with the checksum's own 8 hex digits as zeros. A damaged byte anywhere is
//! an error naming the file and the section, never a different model. A version this reader does
//! not know is refused: a newer one with a message saying to upgrade, 0 and 1 as damage. Format
//! 1 (a `BLCKPT01` header, written before the first release) is refused with a message saying so.

use super::lightning::LightningCheckpoint;
use super::run_dir::write_atomic_parts;
use crate::core::checkpoint_data::{Blob, Checkpoint, DeferredWeights, SavedTensor, Weights};
use crate::core::state::{TrainerFn, TrainerState};
use crate::hooks::context::Core;
use crate::hooks::{LightningModule, dispatch};
use crate::{Device, Error, JsonValue};
use burn::module::Module;
use burn::store::burn_pack::Tensor as PackTensor;
use burn::store::{ApplyResult, KeyRemapper, ModuleSnapshot};
use burn::tensor::{Bytes, DType};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// How format 1 files began.
const MAGIC_V1: &[u8; 8] = b"BLCKPT01";
/// `format` in the header of the files this crate writes.
const FORMAT: &str = "burn-lightning-checkpoint";
/// The oldest format this version reads (format 1 was not safetensors).
const FORMAT_VERSION_OLDEST: u32 = 2;
/// The format of a checkpoint with weight sets besides the module's (weight averaging): a
/// version that reads format 2 only would take the sets for parameters of the module, so it is
/// told to upgrade instead. From it on, the metadata checksum covers the version.
const FORMAT_VERSION_SETS: u32 = 3;
/// The format this version writes, and the newest it reads: format 3 with `header_checksum`.
const FORMAT_VERSION: u32 = 4;
/// The header key of the header's own checksum (format 4).
const HEADER_CHECKSUM: &str = "header_checksum";
/// What the header checksum's 8 hex digits are while it is computed.
const HEADER_CHECKSUM_PLACEHOLDER: &str = "00000000";
/// The tensor that holds the optimizer's state.
const OPTIMIZER_TENSOR: &str = "__burn_lightning__.optimizer";
/// What the tensors of a weight set are named with, before the set's name and a dot.
const WEIGHT_SET_PREFIX: &str = "__burn_lightning__.weights.";

impl Checkpoint {
    /// A checkpoint without weights yet: what `on_save_checkpoint` hooks see and extend.
    pub(crate) fn new(epoch: usize, global_step: usize, hyper_parameters: JsonValue) -> Self {
        Self {
            epoch,
            global_step,
            version: env!("CARGO_PKG_VERSION").to_string(),
            hyper_parameters,
            datamodule_hyper_parameters: None,
            callbacks: BTreeMap::new(),
            datamodule: BTreeMap::new(),
            extra: BTreeMap::new(),
            loops: None,
            metrics: BTreeMap::new(),
            epoch_logs: Vec::new(),
            epoch_logs_by_rank: Vec::new(),
            optimizer_parts: Vec::new(),
            weights: Weights::None,
            weight_sets: BTreeMap::new(),
            optimizer: Blob::default(),
        }
    }

    /// Saves the weights of `module` as the checkpoint's weights, in place of the trained
    /// module's (Lightning's `checkpoint["state_dict"] = ...` in `on_save_checkpoint`: what
    /// `WeightAveraging` does with the averaged weights). `module` is a snapshot of tensor
    /// handles; its weights are read when the file is written, on the writer thread.
    pub fn replace_weights<M: Module + 'static>(&mut self, module: M) {
        self.weights = Weights::Deferred(deferred(module));
    }

    /// Saves the weights of `module` beside the module's, under `name` (Lightning's
    /// `checkpoint["current_model_state"]`), read back with [`load_weights`](Self::load_weights).
    /// In the file they are the tensors `__burn_lightning__.weights.{name}.{path}`.
    pub fn insert_weights<M: Module + 'static>(&mut self, name: &str, module: M) {
        self.weight_sets
            .insert(name.to_string(), Weights::Deferred(deferred(module)));
    }

    /// Whether the checkpoint holds weights under `name` (see [`insert_weights`](Self::insert_weights)).
    pub fn has_weights(&self, name: &str) -> bool {
        self.weight_sets.contains_key(name)
    }

    /// Loads the weights saved under `name` into `module`, strictly (see
    /// [`restore_module`](Self::restore_module)).
    pub fn load_weights<M: Module>(&self, name: &str, module: M) -> Result<M, Error> {
        let weights = self.weight_sets.get(name).ok_or_else(|| {
            Error::Checkpoint(format!(
                "the checkpoint holds no weights named `{name}` (it holds: {})",
                self.weight_sets.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })?;
        restore_tensors(weights, module, true, &KeyRemapper::new()).map(|(module, _)| module)
    }

    /// A checkpoint of `module` alone: its weights and hyperparameters, at epoch and step 0,
    /// without optimizer state (to export a module, or load it elsewhere with
    /// [`LoadFromCheckpoint`]).
    pub fn of_module<M: LightningModule>(module: &M) -> Result<Self, Error> {
        let hparams = serde_json::to_value(module.hparams())
            .map_err(|e| Error::Checkpoint(format!("cannot serialize the hyperparameters: {e}")))?;
        let mut checkpoint = Checkpoint::new(0, 0, hparams);
        checkpoint.metrics = crate::metrics::MetricsSnapshot::of(module, &Default::default()).to_json()?;
        checkpoint.with_payload(module.clone(), Vec::new())
    }

    /// Adds the weights of `module` and the states of `optimizers` (those `configure_optimizers`
    /// returned, in order). Both are snapshots (clones of tensor handles), so this can run on
    /// another thread while training goes on.
    pub(crate) fn with_payload<M: Module>(
        mut self,
        module: M,
        optimizers: Vec<burn::optim::ModuleOptimizer>,
    ) -> Result<Self, Error> {
        let read = |why: String| Error::Checkpoint(format!("cannot read the module's weights: {why}"));
        self.weights = Weights::Tensors(match std::mem::take(&mut self.weights) {
            // A callback replaced them (`replace_weights`).
            Weights::Deferred(weights) => (weights.0)().map_err(read)?,
            _ => module_tensors(module).map_err(read)?,
        });
        for weights in self.weight_sets.values_mut() {
            if let Weights::Deferred(deferred) = weights {
                *weights = Weights::Tensors((deferred.0)().map_err(read)?);
            }
        }
        let mut states = Vec::with_capacity(optimizers.len());
        for optimizer in optimizers {
            let state = optimizer
                .into_bytes()
                .map_err(|e| Error::Checkpoint(format!("cannot serialize the optimizer's state: {e}")))?;
            states.push(into_vec(state));
        }
        self.optimizer_parts = match states.len() {
            0 | 1 => Vec::new(),
            _ => states.iter().map(Vec::len).collect(),
        };
        self.optimizer = Blob::owned(states.concat());
        Ok(self)
    }

    /// The name of the first weight holding a value that is not finite (NaN or infinite), if
    /// any: a checkpoint that must not replace one whose weights are finite.
    pub(crate) fn first_non_finite_weight(&self) -> Option<&str> {
        let Weights::Tensors(tensors) = &self.weights else {
            return None;
        };
        tensors
            .iter()
            .find(|tensor| !all_finite(tensor.dtype, &tensor.data))
            .map(|tensor| tensor.name.as_str())
    }

    /// The state of each optimizer, in the order `configure_optimizers` returned them (one
    /// entry, maybe empty, for a checkpoint of a module with one optimizer).
    pub(crate) fn optimizer_states(&self) -> Result<Vec<&[u8]>, Error> {
        if self.optimizer_parts.is_empty() {
            return Ok(vec![&self.optimizer[..]]);
        }
        if self.optimizer_parts.iter().sum::<usize>() != self.optimizer.len() {
            return Err(Error::Checkpoint(format!(
                "the optimizer section holds {} bytes, but its {} optimizers' states add up to {}: the file is damaged",
                self.optimizer.len(),
                self.optimizer_parts.len(),
                self.optimizer_parts.iter().sum::<usize>()
            )));
        }
        let mut rest = &self.optimizer[..];
        Ok(self
            .optimizer_parts
            .iter()
            .map(|&len| {
                let (part, after) = rest.split_at(len);
                rest = after;
                part
            })
            .collect())
    }

    /// Writes the checkpoint to `path`, atomically, in format 2.
    pub fn save(&self, path: &Path) -> Result<(), Error> {
        let bytes = self.encode()?;
        write_atomic_parts(path, &[&bytes])
    }

    /// The bytes of the checkpoint in format 2.
    fn encode(&self) -> Result<Vec<u8>, Error> {
        let failed = |why: String| Error::Checkpoint(format!("cannot encode the checkpoint: {why}"));
        fn written(weights: &Weights) -> Result<&[SavedTensor], String> {
            match weights {
                Weights::Tensors(tensors) => Ok(tensors.as_slice()),
                Weights::None => Ok(&[]),
                Weights::Deferred(_) => Err("its weights were not read yet".into()),
            }
        }
        let tensors = written(&self.weights).map_err(failed)?;
        for t in tensors {
            if t.name.starts_with("__burn_lightning__") {
                return Err(failed(format!(
                    "the module has a parameter named `{}`, a name checkpoints reserve",
                    t.name
                )));
            }
        }
        // Weight sets are tensors of their own, named with their set's prefix.
        let mut set_tensors = Vec::new();
        for (name, weights) in &self.weight_sets {
            for t in written(weights).map_err(failed)? {
                set_tensors.push(SavedTensor {
                    name: format!("{WEIGHT_SET_PREFIX}{name}.{}", t.name),
                    ..t.clone()
                });
            }
        }
        let tensors: Vec<&SavedTensor> = tensors.iter().chain(&set_tensors).collect();
        let metadata = serde_json::to_string(self).map_err(|e| failed(e.to_string()))?;
        let param_ids: BTreeMap<&str, u64> = tensors
            .iter()
            .filter_map(|t| t.param_id.map(|id| (t.name.as_str(), id)))
            .collect();
        let param_ids = serde_json::to_string(&param_ids).map_err(|e| failed(e.to_string()))?;
        let mut views = Vec::with_capacity(tensors.len() + 1);
        for t in tensors {
            let dtype = safetensors_dtype(t.dtype).ok_or_else(|| {
                failed(format!(
                    "the parameter `{}` has the type {:?}, which checkpoints cannot hold yet",
                    t.name, t.dtype
                ))
            })?;
            let view =
                TensorView::new(dtype, t.shape.clone(), &t.data).map_err(|e| failed(format!("`{}`: {e}", t.name)))?;
            views.push((t.name.clone(), view));
        }
        views.push((
            OPTIMIZER_TENSOR.to_string(),
            TensorView::new(Dtype::U8, vec![self.optimizer.len()], &self.optimizer)
                .map_err(|e| failed(e.to_string()))?,
        ));
        let version = FORMAT_VERSION;
        let checksums = Checksums {
            metadata: metadata_checksum(&metadata, &param_ids, version),
            weights: weights_checksum(
                views
                    .iter()
                    .filter(|(name, _)| name != OPTIMIZER_TENSOR)
                    .map(|(n, v)| (n.as_str(), v.dtype(), v.shape(), v.data())),
            ),
            optimizer: crc32c::crc32c(&self.optimizer),
        };
        let header = HashMap::from([
            ("format".to_string(), FORMAT.to_string()),
            ("format_version".to_string(), version.to_string()),
            ("checkpoint".to_string(), metadata),
            ("param_ids".to_string(), param_ids),
            (
                "checksums".to_string(),
                serde_json::to_string(&checksums).map_err(|e| failed(e.to_string()))?,
            ),
            (HEADER_CHECKSUM.to_string(), HEADER_CHECKSUM_PLACEHOLDER.to_string()),
        ]);
        let mut bytes = safetensors::serialize(views, Some(header)).map_err(|e| failed(e.to_string()))?;
        let at = header_checksum_at(&bytes).map_err(failed)?;
        let checksum = format!("{:08x}", crc32c::crc32c(&bytes[..header_end(&bytes).map_err(failed)?]));
        bytes[at..at + HEADER_CHECKSUM_PLACEHOLDER.len()].copy_from_slice(checksum.as_bytes());
        Ok(bytes)
    }

    /// Reads a checkpoint written by [`save`](Self::save). A file that
    /// is not a checkpoint, is damaged (a checksum differs, it is truncated or extended), or
    /// was written in a newer format is an error naming the file and what is wrong.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let bytes = std::fs::read(path).map_err(|e| Error::io("read the checkpoint", path, e))?;
        let bad = |why: &str| Error::Checkpoint(format!("`{}` is not a valid checkpoint: {why}", path.display()));
        Self::decode_any(Blob::owned(bytes)).map_err(|why| bad(&why))
    }

    /// Reads a checkpoint from the bytes of a file (see [`load`](Self::load)).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        Self::decode_any(Blob::owned(bytes.to_vec()))
            .map_err(|why| Error::Checkpoint(format!("not a valid checkpoint: {why}")))
    }

    fn decode_any(bytes: Blob) -> Result<Self, String> {
        if bytes.starts_with(MAGIC_V1) {
            return Err(
                "it is in checkpoint format 1, which burn-lightning 0.1 wrote before its release; this version reads formats 2 \
                 to 4: load it with the version that wrote it and save the module again"
                    .into(),
            );
        }
        Self::decode(&bytes)
    }

    fn decode(bytes: &Blob) -> Result<Self, String> {
        let file = SafeTensors::deserialize(bytes)
            .map_err(|e| format!("its header is damaged or it is truncated or extended ({e})"))?;
        let (_, info) = SafeTensors::read_metadata(bytes).map_err(|e| format!("its header is damaged ({e})"))?;
        let header = info
            .metadata()
            .as_ref()
            .ok_or("it has no checkpoint metadata (a safetensors file of weights only?)")?;
        let entry = |key: &str| {
            header
                .get(key)
                .ok_or_else(|| format!("its header has no `{key}` (damaged, or not a checkpoint)"))
        };
        if entry("format")? != FORMAT {
            return Err(format!("its header says format `{}`, not `{FORMAT}`", entry("format")?));
        }
        let version: u32 = entry("format_version")?
            .parse()
            .map_err(|_| "its `format_version` is damaged".to_string())?;
        if version > FORMAT_VERSION {
            return Err(format!(
                "it was written in checkpoint format {version} by a newer burn-lightning; this version reads formats up to {FORMAT_VERSION}: upgrade burn-lightning to load it"
            ));
        }
        if version < FORMAT_VERSION_OLDEST {
            return Err(format!(
                "its header says checkpoint format {version}, which no burn-lightning writes in this layout (it reads \
                 formats {FORMAT_VERSION_OLDEST} to {FORMAT_VERSION}): the header is damaged"
            ));
        }
        let header_checksum = match version >= FORMAT_VERSION {
            true => Some(entry(HEADER_CHECKSUM)?),
            false => None,
        };
        let checksums: Checksums =
            serde_json::from_str(entry("checksums")?).map_err(|_| "its checksums are damaged".to_string())?;
        let damaged = |section: &str| format!("the {section} section is damaged (its checksum does not match)");
        let metadata = entry("checkpoint")?;
        let param_ids = entry("param_ids")?;
        if metadata_checksum(metadata, param_ids, version) != checksums.metadata {
            return Err(damaged("metadata"));
        }
        let mut named = file.tensors();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let optimizer = named
            .iter()
            .position(|(name, _)| name == OPTIMIZER_TENSOR)
            .map(|i| named.remove(i).1)
            .ok_or_else(|| damaged("optimizer"))?;
        if weights_checksum(named.iter().map(|(n, v)| (n.as_str(), v.dtype(), v.shape(), v.data())))
            != checksums.weights
        {
            return Err(damaged("weights"));
        }
        if crc32c::crc32c(optimizer.data()) != checksums.optimizer {
            return Err(damaged("optimizer"));
        }
        // Last, so that a damaged section is named: what the header checksum alone sees is the
        // rest of the header (its padding, the JSON around the sections, the version).
        if let Some(written) = header_checksum {
            check_header_checksum(&bytes[..], written)?;
        }
        let mut checkpoint: Checkpoint =
            serde_json::from_str(metadata).map_err(|e| format!("its metadata does not describe a checkpoint ({e})"))?;
        let param_ids: HashMap<String, u64> =
            serde_json::from_str(param_ids).map_err(|e| format!("its parameter ids are invalid ({e})"))?;
        let mut tensors = Vec::with_capacity(named.len());
        let mut sets: BTreeMap<String, Vec<SavedTensor>> = BTreeMap::new();
        for (name, view) in named {
            let dtype = burn_dtype(view.dtype()).ok_or_else(|| {
                format!(
                    "the tensor `{name}` has the type {:?}, which burn cannot load",
                    view.dtype()
                )
            })?;
            let tensor = SavedTensor {
                param_id: param_ids.get(&name).copied(),
                name,
                dtype,
                shape: view.shape().to_vec(),
                data: Blob::part_of(bytes, view.data()),
            };
            match tensor.name.strip_prefix(WEIGHT_SET_PREFIX) {
                Some(in_set) => {
                    let (set, path) = in_set
                        .split_once('.')
                        .ok_or_else(|| format!("the tensor `{}` names no weight set", tensor.name))?;
                    let (set, path) = (set.to_string(), path.to_string());
                    sets.entry(set).or_default().push(SavedTensor { name: path, ..tensor });
                }
                None => tensors.push(tensor),
            }
        }
        checkpoint.weights = Weights::Tensors(tensors);
        checkpoint.weight_sets = sets.into_iter().map(|(name, t)| (name, Weights::Tensors(t))).collect();
        checkpoint.optimizer = Blob::part_of(bytes, optimizer.data());
        Ok(checkpoint)
    }

    /// Loads the saved weights into `module`, which must have the same parameters: a parameter
    /// missing from the checkpoint, one the module does not have, or one of another shape is
    /// an error listing them (Lightning's `strict=True`).
    pub fn restore_module<M: Module>(&self, module: M) -> Result<M, Error> {
        self.restore_module_with(module, true).map(|(module, _)| module)
    }

    /// Loads the saved weights into `module`. With `strict`, as
    /// [`restore_module`](Self::restore_module); without, the parameters both have are loaded
    /// and the others are listed in the report (Lightning's `strict=False`). A saved tensor of
    /// another shape than the module's is an error either way.
    pub fn restore_module_with<M: Module>(&self, module: M, strict: bool) -> Result<(M, KeyReport), Error> {
        self.restore_module_remapped(module, strict, &KeyRemapper::new())
    }

    /// [`restore_module_with`](Self::restore_module_with), with the saved names renamed by
    /// `remapper` first.
    fn restore_module_remapped<M: Module>(
        &self,
        module: M,
        strict: bool,
        remapper: &KeyRemapper,
    ) -> Result<(M, KeyReport), Error> {
        let (module, report) = restore_tensors(&self.weights, module, strict, remapper)?;
        // The metric objects' states, on the module's device.
        let device = module
            .devices()
            .into_iter()
            .next()
            .unwrap_or_default()
            .without_autodiff();
        crate::metrics::restore(&module, &self.metrics, &device)?;
        Ok((module, report))
    }

    /// Lightning's `load_from_checkpoint`, for a module you built (for example from
    /// [`hparams`](Self::hparams)): calls its `on_load_checkpoint` hook with this checkpoint, then
    /// loads the saved weights into it. [`LoadFromCheckpoint`] builds the module too.
    pub fn load_into<M: LightningModule>(&self, mut module: M) -> Result<M, Error> {
        self.on_load_checkpoint(&mut module)?;
        self.restore_module(module)
    }

    fn on_load_checkpoint<M: LightningModule>(&self, module: &mut M) -> Result<(), Error> {
        let device = module.devices().into_iter().next().unwrap_or_default();
        let mut state = TrainerState::new(TrainerFn::Fitting, device);
        state.current_epoch = self.epoch;
        state.global_step = self.global_step;
        let mut core = Core::new(state);
        dispatch::on_load_checkpoint(module, &mut [], &mut core, &mut (), self)
    }

    /// The saved hyperparameters, as the module's `<Name>Hparams`.
    pub fn hparams<H: serde::Serialize + serde::de::DeserializeOwned>(&self) -> Result<H, Error> {
        self.hparams_with(&serde_json::Map::new())
    }

    /// The saved hyperparameters with `overrides`, as `H`. An override `H` does not have is an
    /// error naming it; a saved value `H` does not have is ignored with a warning.
    fn hparams_with<H: serde::Serialize + serde::de::DeserializeOwned>(
        &self,
        overrides: &serde_json::Map<String, JsonValue>,
    ) -> Result<H, Error> {
        let mut values = match &self.hyper_parameters {
            JsonValue::Object(map) => map.clone(),
            JsonValue::Null => serde_json::Map::new(),
            other => {
                return Err(Error::Checkpoint(format!(
                    "the saved hyperparameters are not a map of names to values: {other}"
                )));
            }
        };
        let saved: Vec<String> = values.keys().cloned().collect();
        values.extend(overrides.iter().map(|(k, v)| (k.clone(), v.clone())));
        let hparams: H = serde_json::from_value(JsonValue::Object(values)).map_err(|e| {
            Error::Checkpoint(format!(
                "the saved hyperparameters do not fit this module: {e} (give a value with `LoadOptions::hparam`)"
            ))
        })?;
        let known = match serde_json::to_value(&hparams) {
            Ok(JsonValue::Object(map)) => map,
            _ => serde_json::Map::new(),
        };
        let names = || known.keys().map(String::as_str).collect::<Vec<_>>().join(", ");
        if let Some(unknown) = overrides.keys().find(|k| !known.contains_key(*k)) {
            return Err(Error::Checkpoint(format!(
                "`{unknown}` is not a hyperparameter of this module; its hyperparameters are: {}",
                names()
            )));
        }
        let ignored: Vec<&str> = saved
            .iter()
            .map(String::as_str)
            .filter(|k| !known.contains_key(*k))
            .collect();
        if !ignored.is_empty() {
            tracing::warn!(target: "burn_lightning",
                "the checkpoint's hyperparameters {} are not fields of this module (saved by another version of it?): ignored",
                ignored.join(", "));
        }
        Ok(hparams)
    }

    /// Whether the checkpoint holds optimizer state.
    pub fn has_optimizer_state(&self) -> bool {
        !self.optimizer.is_empty()
    }

    /// The names of the saved parameters (`l1.weight`), in name order.
    pub fn parameter_names(&self) -> Vec<&str> {
        match &self.weights {
            Weights::Tensors(tensors) => tensors.iter().map(|t| t.name.as_str()).collect(),
            _ => Vec::new(),
        }
    }

    /// The dtype each saved parameter is stored in (`("l1.weight", DType::F16)` after a
    /// `16-true` fit), in name order.
    pub fn parameter_dtypes(&self) -> Vec<(&str, DType)> {
        match &self.weights {
            Weights::Tensors(tensors) => tensors.iter().map(|t| (t.name.as_str(), t.dtype)).collect(),
            _ => Vec::new(),
        }
    }
}

/// Lightning's `LightningModule.load_from_checkpoint`: rebuilds a module from the
/// hyperparameters a checkpoint saved (with overrides), then loads its weights.
///
/// Implement [`from_hparams`](Self::from_hparams), the constructor Lightning calls with the saved
/// hyperparameters (its `__init__(**hparams)`):
///
/// ```ignore
/// impl LoadFromCheckpoint for LitMnist {
///     fn from_hparams(hparams: &LitMnistHparams, device: &Device) -> Self {
///         LitMnist::new(hparams, device)
///     }
/// }
/// let model = LitMnist::load_from_checkpoint("lightning_logs/version_0/checkpoints/last.ckpt")?;
/// ```
pub trait LoadFromCheckpoint: LightningModule {
    /// Builds the module, its layers on `device`, from hyperparameters.
    fn from_hparams(hparams: &Self::Hparams, device: &Device) -> Self;

    /// Rebuilds the module from the checkpoint at `path`, on the default device, and loads its
    /// weights strictly (every parameter, and only those).
    fn load_from_checkpoint(path: impl AsRef<Path>) -> Result<Self, Error> {
        Self::load_from_checkpoint_with(path, LoadOptions::new()).map(|loaded| loaded.module)
    }

    /// Rebuilds the module from the checkpoint at `path` as `options` say: the device,
    /// hyperparameters overriding the saved ones, strict or non-strict loading. Saved
    /// hyperparameters the module no longer has are ignored (with a warning); fields it gained
    /// since take their defaults. Calls the module's `on_load_checkpoint` hook before loading
    /// the weights.
    fn load_from_checkpoint_with(path: impl AsRef<Path>, options: LoadOptions) -> Result<Loaded<Self>, Error> {
        let path = path.as_ref();
        let checkpoint = Checkpoint::load(path)?;
        let hparams: Self::Hparams = checkpoint.hparams_with(&options.overrides)?;
        let remapper = options.key_remapper()?;
        let device = options.device.unwrap_or_default();
        let mut module = Self::from_hparams(&hparams, &device);
        checkpoint.on_load_checkpoint(&mut module)?;
        let (module, report) = checkpoint.restore_module_remapped(module, options.strict, &remapper)?;
        Ok(Loaded {
            module,
            checkpoint,
            report,
        })
    }

    /// Rebuilds the module from a checkpoint that PyTorch Lightning wrote (`trainer.save_checkpoint`,
    /// `ModelCheckpoint`) as `options` say, as
    /// [`load_from_checkpoint_with`](Self::load_from_checkpoint_with) does for this crate's own:
    /// the module is built with [`from_hparams`](Self::from_hparams) from the saved
    /// `hyper_parameters` (with `options`' overrides), its `on_load_checkpoint` hook sees the
    /// checkpoint's `epoch`, `global_step`, hyperparameters and other entries, then the
    /// `state_dict` is loaded (renamed by [`LoadOptions::remap_key`]; `torch.nn.Linear` weights
    /// are transposed to burn's `[in, out]`). See [`LightningCheckpoint`] for what is read.
    fn load_from_lightning_checkpoint(
        path: impl AsRef<Path>,
        options: LoadOptions,
    ) -> Result<Loaded<Self, LightningCheckpoint>, Error> {
        let checkpoint = LightningCheckpoint::read(path)?;
        let as_checkpoint = checkpoint.to_checkpoint();
        let hparams: Self::Hparams = as_checkpoint.hparams_with(&options.overrides)?;
        let device = options.device.clone().unwrap_or_default();
        let mut module = Self::from_hparams(&hparams, &device);
        as_checkpoint.on_load_checkpoint(&mut module)?;
        let (module, report) = checkpoint.restore_module_with(module, &options)?;
        Ok(Loaded {
            module,
            checkpoint,
            report,
        })
    }
}

/// How [`LoadFromCheckpoint::load_from_checkpoint_with`] loads.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    device: Option<Device>,
    pub(crate) strict: bool,
    overrides: serde_json::Map<String, JsonValue>,
    key_remapping: Vec<(String, String)>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            device: None,
            strict: true,
            overrides: serde_json::Map::new(),
            key_remapping: Vec::new(),
        }
    }
}

impl LoadOptions {
    /// Strict, on the default device, with the saved hyperparameters.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds the module on `device` (Lightning's `map_location`).
    pub fn device(mut self, device: Device) -> Self {
        self.device = Some(device);
        self
    }

    /// `false` loads the parameters the module and the checkpoint both have and reports the
    /// others (Lightning's `strict=False`).
    pub fn strict(mut self, strict: bool) -> Self {
        self.strict = strict;
        self
    }

    /// Overrides a saved hyperparameter (Lightning's `**kwargs`). A name the module does not
    /// have is an error when loading.
    pub fn hparam(mut self, name: &str, value: impl Serialize) -> Self {
        let value = serde_json::to_value(value).unwrap_or(JsonValue::Null);
        self.overrides.insert(name.to_string(), value);
        self
    }

    /// Renames the saved parameters before they are matched with the module's: every name
    /// `pattern` (a regular expression) matches has the match replaced by `replacement` (`$1`
    /// names a group), as burn-store's `KeyRemapper` does. Rules apply in the order given, each
    /// to the result of the ones before: `.remap_key(r"^encoder\.", "hidden.")` loads the saved
    /// `encoder.weight` into the field `hidden`. An invalid pattern is an error when loading.
    pub fn remap_key(mut self, pattern: &str, replacement: &str) -> Self {
        self.key_remapping.push((pattern.to_string(), replacement.to_string()));
        self
    }

    /// The renaming rules, compiled.
    pub(crate) fn key_remapper(&self) -> Result<KeyRemapper, Error> {
        self.key_remapping
            .iter()
            .try_fold(KeyRemapper::new(), |remapper, (pattern, replacement)| {
                remapper.add_pattern(pattern, replacement.as_str()).map_err(|e| {
                    Error::Checkpoint(format!(
                        "`remap_key` was given `{pattern}`, which is not a regular expression: {e}"
                    ))
                })
            })
    }
}

/// What [`LoadFromCheckpoint::load_from_checkpoint_with`] (`C` is [`Checkpoint`]) and
/// [`LoadFromCheckpoint::load_from_lightning_checkpoint`] (`C` is [`LightningCheckpoint`]) return.
#[derive(Debug)]
pub struct Loaded<M, C = Checkpoint> {
    /// The module, with the saved weights.
    pub module: M,
    /// The checkpoint it came from (epoch, step, callback states, ...).
    pub checkpoint: C,
    /// What a non-strict load left out.
    pub report: KeyReport,
}

/// What a non-strict load left out (Lightning's `missing_keys` and `unexpected_keys`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyReport {
    /// Parameters of the module the checkpoint has no value for: they keep their values.
    pub missing: Vec<String>,
    /// Saved parameters the module does not have.
    pub unexpected: Vec<String>,
}

/// What `module.apply` left out, or an error listing what does not fit: with `strict`, every
/// parameter must be loaded and every saved tensor used; either way, a tensor of another shape is
/// an error.
pub(crate) fn key_report(result: ApplyResult, strict: bool) -> Result<KeyReport, Error> {
    let report = KeyReport {
        missing: result.missing.iter().map(|(path, _)| path.clone()).collect(),
        unexpected: result.unused.clone(),
    };
    let mut problems = Vec::new();
    if strict && !report.missing.is_empty() {
        problems.push(format!("missing from the checkpoint: {}", report.missing.join(", ")));
    }
    if strict && !report.unexpected.is_empty() {
        problems.push(format!("not in the module: {}", report.unexpected.join(", ")));
    }
    for error in &result.errors {
        problems.push(error.to_string());
    }
    if !problems.is_empty() {
        let hint = if strict && result.errors.is_empty() {
            " (load with `strict(false)` to load the parameters both have, or rename the saved ones with `remap_key`)"
        } else {
            ""
        };
        return Err(Error::Checkpoint(format!(
            "the saved weights do not fit this module: {}{hint}",
            problems.join("; ")
        )));
    }
    Ok(report)
}

/// The tensors of a module, as a checkpoint saves them.
/// Whether every value of a float tensor's bytes (little-endian, as burn gives them) is finite;
/// true for other dtypes.
fn all_finite(dtype: DType, bytes: &[u8]) -> bool {
    let half = |exponent: u16| {
        bytes
            .chunks_exact(2)
            .all(|b| u16::from_le_bytes([b[0], b[1]]) & exponent != exponent)
    };
    match dtype {
        DType::F64 => bytes
            .chunks_exact(8)
            .all(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")).is_finite()),
        DType::F32 | DType::Flex32 => bytes
            .chunks_exact(4)
            .all(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")).is_finite()),
        DType::F16 => half(0x7C00),
        DType::BF16 => half(0x7F80),
        _ => true,
    }
}

fn module_tensors<M: Module>(module: M) -> Result<Vec<SavedTensor>, String> {
    let mut tensors = Vec::new();
    for tensor in module.collect(None, None, false) {
        let (name, dtype, shape, param_id, bytes) = tensor.into_parts().map_err(|e| e.to_string())?;
        tensors.push(SavedTensor {
            name,
            dtype,
            shape: shape.to_vec(),
            param_id,
            data: Blob::owned(into_vec(bytes)),
        });
    }
    Ok(tensors)
}

/// A snapshot of `module` whose weights are read when the checkpoint is written.
fn deferred<M: Module + 'static>(module: M) -> DeferredWeights {
    // A mutex makes the snapshot `Sync` (a module is `Send` only); it is read once.
    let module = std::sync::Mutex::new(module);
    DeferredWeights(std::sync::Arc::new(move || {
        let module = module
            .lock()
            .map_err(|_| "a thread reading the weights panicked".to_string())?;
        module_tensors(module.clone())
    }))
}

/// Loads `weights` into `module` (see [`Checkpoint::restore_module_with`]).
fn restore_tensors<M: Module>(
    weights: &Weights,
    mut module: M,
    strict: bool,
    remapper: &KeyRemapper,
) -> Result<(M, KeyReport), Error> {
    let resolved;
    let tensors = match weights {
        Weights::None => return Err(Error::Checkpoint("the checkpoint holds no weights".into())),
        Weights::Tensors(tensors) => tensors,
        Weights::Deferred(deferred) => {
            resolved = (deferred.0)().map_err(|e| Error::Checkpoint(format!("cannot read the weights: {e}")))?;
            &resolved
        }
    };
    // Each tensor gets a zero-copy window on the file's buffer: loading holds one copy of
    // the file besides the module's weights.
    let tensors = tensors
        .iter()
        .map(|t| {
            let data = t.data.clone();
            PackTensor::deferred(
                t.name.clone(),
                t.dtype,
                t.shape.clone(),
                t.param_id,
                data.len(),
                move || Ok(Bytes::from_bytes_vec(data.to_vec())),
            )
        })
        .collect();
    let tensors = if remapper.is_empty() {
        tensors
    } else {
        remapper.remap(tensors).0
    };
    let result = module.apply(tensors, None, None, false);
    let report = key_report(result, strict)?;
    Ok((module, report))
}

/// The checksums of a format 2 file, one per section.
#[derive(Serialize, Deserialize)]
struct Checksums {
    metadata: u32,
    weights: u32,
    optimizer: u32,
}

/// Over the metadata and parameter ids, and from format 3 on the format version too (so that a
/// damaged version digit is not read as another format).
fn metadata_checksum(metadata: &str, param_ids: &str, version: u32) -> u32 {
    let crc = crc32c::crc32c(metadata.as_bytes());
    let crc = crc32c::crc32c_append(crc, param_ids.as_bytes());
    match version {
        ..FORMAT_VERSION_SETS => crc,
        _ => crc32c::crc32c_append(crc, version.to_string().as_bytes()),
    }
}

/// Where the header of safetensors `bytes` ends: its 8-byte length, then the JSON and its
/// padding.
fn header_end(bytes: &[u8]) -> Result<usize, String> {
    let length: [u8; 8] = bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or("it is truncated")?;
    usize::try_from(u64::from_le_bytes(length))
        .ok()
        .and_then(|n| n.checked_add(8))
        .filter(|&end| end <= bytes.len())
        .ok_or_else(|| "its header length is damaged".to_string())
}

/// Where the 8 hex digits of the header checksum lie in `bytes`: after the one
/// `"header_checksum":"` of the header (the metadata's own quotes are escaped, so it cannot
/// hold another).
fn header_checksum_at(bytes: &[u8]) -> Result<usize, String> {
    let header = &bytes[..header_end(bytes)?];
    let key = format!(r#""{HEADER_CHECKSUM}":""#);
    let mut found = header
        .windows(key.len())
        .enumerate()
        .filter(|(_, w)| *w == key.as_bytes())
        .map(|(i, _)| i + key.len());
    match (found.next(), found.next()) {
        (Some(at), None) if at + HEADER_CHECKSUM_PLACEHOLDER.len() <= header.len() => Ok(at),
        _ => Err(format!("its `{HEADER_CHECKSUM}` is damaged")),
    }
}

/// Checks the header checksum `written` (its header entry, which must be the bytes at its
/// place) against the header's bytes with the checksum as zeros.
fn check_header_checksum(bytes: &[u8], written: &str) -> Result<(), String> {
    let damaged = || "the header is damaged (its checksum does not match)".to_string();
    let at = header_checksum_at(bytes)?;
    let digits = &bytes[at..at + HEADER_CHECKSUM_PLACEHOLDER.len()];
    // Lowercase hex as written: `A` for `a` would read as the same number.
    let lowercase_hex = |b: &u8| b.is_ascii_digit() || (b'a'..=b'f').contains(b);
    if digits != written.as_bytes() || !digits.iter().all(lowercase_hex) {
        return Err(damaged());
    }
    let expected = u32::from_str_radix(written, 16).map_err(|_| damaged())?;
    let end = header_end(bytes)?;
    let crc = crc32c::crc32c(&bytes[..at]);
    let crc = crc32c::crc32c_append(crc, HEADER_CHECKSUM_PLACEHOLDER.as_bytes());
    let crc = crc32c::crc32c_append(crc, &bytes[at + HEADER_CHECKSUM_PLACEHOLDER.len()..end]);
    if crc != expected {
        return Err(damaged());
    }
    Ok(())
}

/// Over each tensor's name, type, shape and bytes, in name order.
fn weights_checksum<'a>(tensors: impl Iterator<Item = (&'a str, Dtype, &'a [usize], &'a [u8])>) -> u32 {
    let mut named: Vec<_> = tensors.collect();
    named.sort_by(|a, b| a.0.cmp(b.0));
    named.into_iter().fold(0, |crc, (name, dtype, shape, data)| {
        let mut crc = crc32c::crc32c_append(crc, name.as_bytes());
        crc = crc32c::crc32c_append(crc, format!("{dtype:?}{shape:?}").as_bytes());
        crc32c::crc32c_append(crc, data)
    })
}

fn safetensors_dtype(dtype: DType) -> Option<Dtype> {
    Some(match dtype {
        DType::F64 => Dtype::F64,
        DType::F32 | DType::Flex32 => Dtype::F32,
        DType::F16 => Dtype::F16,
        DType::BF16 => Dtype::BF16,
        DType::I64 => Dtype::I64,
        DType::I32 => Dtype::I32,
        DType::I16 => Dtype::I16,
        DType::I8 => Dtype::I8,
        DType::U64 => Dtype::U64,
        DType::U32 => Dtype::U32,
        DType::U16 => Dtype::U16,
        DType::U8 => Dtype::U8,
        DType::Bool(burn::tensor::BoolStore::Native | burn::tensor::BoolStore::U8) => Dtype::BOOL,
        _ => return None,
    })
}

fn burn_dtype(dtype: Dtype) -> Option<DType> {
    Some(match dtype {
        Dtype::F64 => DType::F64,
        Dtype::F32 => DType::F32,
        Dtype::F16 => DType::F16,
        Dtype::BF16 => DType::BF16,
        Dtype::I64 => DType::I64,
        Dtype::I32 => DType::I32,
        Dtype::I16 => DType::I16,
        Dtype::I8 => DType::I8,
        Dtype::U64 => DType::U64,
        Dtype::U32 => DType::U32,
        Dtype::U16 => DType::U16,
        Dtype::U8 => DType::U8,
        Dtype::BOOL => DType::Bool(burn::tensor::BoolStore::Native),
        _ => return None,
    })
}

/// The bytes of a burnpack record, without copying them when their allocation allows.
fn into_vec(bytes: Bytes) -> Vec<u8> {
    bytes.try_into_vec::<u8>().unwrap_or_else(|bytes| bytes.to_vec())
}
