//! Checkpoints written by PyTorch Lightning (`.ckpt`): a `torch.save` zip file whose pickle is a
//! dict with `state_dict`, `epoch`, `global_step`, `hyper_parameters`, `pytorch-lightning_version`,
//! the optimizer and callback states, ... Read with burn-store's PyTorch reader, without Python.

use super::Checkpoint;
use super::format::{KeyReport, LoadOptions, key_report};
use crate::{Error, JsonValue};
use burn::module::Module;
use burn::store::pytorch_reader::{PickleValue, PytorchError, PytorchReader};
use burn::store::{ModuleSnapshot, PytorchStore, PytorchStoreError};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// The entry that holds the weights.
const STATE_DICT: &str = "state_dict";
/// Where Lightning saves the datamodule's `hparams` (`LightningDataModule.save_hyperparameters`).
const DATAMODULE_HYPER_PARAMETERS: &str = "datamodule_hyper_parameters";

/// A checkpoint PyTorch Lightning wrote (`trainer.save_checkpoint`, `ModelCheckpoint`), read
/// without Python. [`LoadFromCheckpoint::load_from_lightning_checkpoint`](super::LoadFromCheckpoint::load_from_lightning_checkpoint)
/// rebuilds a module from it; [`restore_module_with`](Self::restore_module_with) loads its
/// weights into a module you built.
///
/// The weights are the `state_dict`'s tensors, loaded through burn-store's `PytorchStore` with
/// its PyTorch adapter: `torch.nn.Linear`'s `[out, in]` weights are transposed to burn's
/// `[in, out]`, normalization layers' `weight`/`bias` fill burn's `gamma`/`beta`, and numbered
/// lists (`layers.0`, `layers.2` of an `nn.Sequential` with activations between) are renumbered
/// contiguously. The optimizer and learning-rate scheduler states are not imported (burn's
/// optimizers keep theirs in another form): resuming a Lightning run starts them afresh.
#[derive(Clone, Debug)]
pub struct LightningCheckpoint {
    /// `epoch` (Lightning's `current_epoch` when saved).
    pub epoch: usize,
    /// `global_step` (optimizer steps) when saved.
    pub global_step: usize,
    /// `hyper_parameters` (what `self.save_hyperparameters()` recorded), as JSON; `null` when the
    /// module saved none.
    pub hyper_parameters: JsonValue,
    /// `pytorch-lightning_version`, the version that wrote it.
    pub lightning_version: Option<String>,
    /// The other top-level entries (`loops`, `callbacks`, `optimizer_states`, `hparams_name`,
    /// ...), as JSON; tensors and Python objects JSON cannot hold are `null`, and so are NaN and
    /// infinite floats.
    pub extra: BTreeMap<String, JsonValue>,
    /// The `state_dict`'s keys, in name order.
    parameter_names: Vec<String>,
    path: PathBuf,
}

impl LightningCheckpoint {
    /// Reads the checkpoint at `path` (its weights are read when loaded into a module). A file
    /// that is not a Lightning checkpoint (another PyTorch file, no PyTorch file at all), that is
    /// truncated or damaged, or whose `epoch` or `global_step` is missing is an error naming the
    /// file and what is wrong.
    pub fn read(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        // A missing or unreadable file is an I/O error, not a format one.
        std::fs::File::open(path).map_err(|e| Error::io("read the Lightning checkpoint", path, e))?;
        let root = PytorchReader::read_pickle_data(path, None).map_err(|e| reader_error(path, e))?;
        let not_lightning = |why: String| {
            Error::Checkpoint(format!(
                "`{}` is not a PyTorch Lightning checkpoint: {why}",
                path.display()
            ))
        };
        let PickleValue::Dict(mut entries) = root else {
            return Err(not_lightning(format!("it holds a {}, not a dict", kind(&root))));
        };
        let parameter_names = match entries.remove(STATE_DICT) {
            Some(PickleValue::Dict(state_dict)) => {
                // The dict also holds the `_metadata` of the `OrderedDict` `state_dict()` returns.
                let mut names: Vec<String> = state_dict
                    .into_iter()
                    .filter(|(_, value)| matches!(value, PickleValue::Unsupported(kind) if kind == "torch.Tensor"))
                    .map(|(name, _)| name)
                    .collect();
                names.sort();
                names
            }
            Some(other) => {
                return Err(not_lightning(format!(
                    "its `{STATE_DICT}` is a {}, not a dict of tensors",
                    kind(&other)
                )));
            }
            None => {
                return Err(not_lightning(format!(
                    "it has no `{STATE_DICT}` entry (its entries: {}; a plain `torch.save(model.state_dict())` file?)",
                    entry_names(&entries)
                )));
            }
        };
        let mut counter = |name: &str| match entries.remove(name) {
            Some(PickleValue::Int(value)) if value >= 0 => Ok(value as usize),
            Some(other) => Err(not_lightning(format!(
                "its `{name}` is {}, not a count",
                json_of(&other)
            ))),
            None => Err(not_lightning(format!(
                "it has a `{STATE_DICT}` but no `{name}` entry (its entries: {STATE_DICT}, {})",
                entry_names(&entries)
            ))),
        };
        let epoch = counter("epoch")?;
        let global_step = counter("global_step")?;
        let hyper_parameters = match entries.remove("hyper_parameters") {
            None | Some(PickleValue::None) => JsonValue::Null,
            Some(value @ PickleValue::Dict(_)) => json_of(&value),
            Some(other) => {
                return Err(not_lightning(format!(
                    "its `hyper_parameters` is a {}, not a dict (an OmegaConf container? save them as a dict)",
                    kind(&other)
                )));
            }
        };
        let lightning_version = match entries.remove("pytorch-lightning_version") {
            Some(PickleValue::String(version)) => Some(version),
            _ => None,
        };
        let extra = entries
            .iter()
            .map(|(name, value)| (name.clone(), json_of(value)))
            .collect();
        Ok(Self {
            epoch,
            global_step,
            hyper_parameters,
            lightning_version,
            extra,
            parameter_names,
            path: path.to_path_buf(),
        })
    }

    /// The file it was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The `state_dict`'s keys (`encoder.weight`), in name order, before any remapping.
    pub fn parameter_names(&self) -> Vec<&str> {
        self.parameter_names.iter().map(String::as_str).collect()
    }

    /// The saved hyperparameters, as the module's `<Name>Hparams` (Lightning saved them with
    /// `self.save_hyperparameters()`; their names must be the module's `#[hparam]` fields).
    pub fn hparams<H: serde::Serialize + serde::de::DeserializeOwned>(&self) -> Result<H, Error> {
        self.to_checkpoint().hparams()
    }

    /// The checkpoint as a module's `on_load_checkpoint` hook sees it: `epoch`, `global_step`,
    /// `hyper_parameters`, `datamodule_hyper_parameters` (a dict; `None` when absent), the
    /// other entries in `extra`, `version` saying `pytorch-lightning <version>`, and no weights.
    pub fn to_checkpoint(&self) -> Checkpoint {
        let mut checkpoint = Checkpoint::new(self.epoch, self.global_step, self.hyper_parameters.clone());
        checkpoint.version = match &self.lightning_version {
            Some(version) => format!("pytorch-lightning {version}"),
            None => "pytorch-lightning".to_string(),
        };
        checkpoint.extra = self.extra.clone();
        checkpoint.datamodule_hyper_parameters = checkpoint
            .extra
            .remove(DATAMODULE_HYPER_PARAMETERS)
            .filter(JsonValue::is_object);
        checkpoint
    }

    /// Loads the `state_dict` into `module`, renamed as `options` say
    /// ([`LoadOptions::remap_key`]), strictly or not ([`LoadOptions::strict`]), with the same
    /// rules as [`Checkpoint::restore_module_with`]: with `strict`, a parameter missing from the
    /// checkpoint or a saved one the module does not have is an error listing them; without,
    /// they are in the report. A tensor of another shape than the module's is an error either
    /// way. Errors name the file. The weights are read from the file at [`path`](Self::path)
    /// now, not when the checkpoint was read.
    pub fn restore_module_with<M: Module>(
        &self,
        mut module: M,
        options: &LoadOptions,
    ) -> Result<(M, KeyReport), Error> {
        let mut store = PytorchStore::from_file(&self.path)
            .with_top_level_key(STATE_DICT)
            .remap(options.key_remapper()?)
            // The applier's result is checked below, with this crate's strict rules and messages.
            .allow_partial(true)
            .validate(false);
        let result = module.load_from(&mut store).map_err(|e| match e {
            PytorchStoreError::Reader(e) => reader_error(&self.path, e),
            other => Error::Checkpoint(format!("cannot load the weights of `{}`: {other}", self.path.display())),
        })?;
        let report = key_report(result, options.strict)
            .map_err(|e| Error::Checkpoint(format!("`{}`: {e}", self.path.display())))?;
        Ok((module, report))
    }
}

/// An error of burn-store's PyTorch reader, as this crate words it: naming the file, and what
/// is wrong with it.
fn reader_error(path: &Path, error: PytorchError) -> Error {
    match error {
        PytorchError::Io(source) => Error::io("read the Lightning checkpoint", path, source),
        PytorchError::InvalidFormat(why) => Error::Checkpoint(format!(
            "`{}` is not a PyTorch Lightning checkpoint: {why}",
            path.display()
        )),
        other => Error::Checkpoint(format!(
            "`{}` is not a readable PyTorch Lightning checkpoint (truncated or damaged?): {other}",
            path.display()
        )),
    }
}

/// The Python type of a pickled value, in words.
fn kind(value: &PickleValue) -> String {
    match value {
        PickleValue::None => "None".into(),
        PickleValue::Bool(_) => "bool".into(),
        PickleValue::Int(_) => "int".into(),
        PickleValue::Float(_) => "float".into(),
        PickleValue::String(_) => "str".into(),
        PickleValue::List(_) => "list".into(),
        PickleValue::Dict(_) => "dict".into(),
        PickleValue::Bytes(_) => "bytes".into(),
        PickleValue::Unsupported(type_name) => type_name.clone(),
    }
}

/// The names of a pickled dict's entries, sorted, at most 8 of them.
fn entry_names(entries: &HashMap<String, PickleValue>) -> String {
    const SHOWN: usize = 8;
    let mut names: Vec<&str> = entries.keys().map(String::as_str).collect();
    names.sort();
    let more = names.len().saturating_sub(SHOWN);
    names.truncate(SHOWN);
    match (names.is_empty(), more) {
        (true, _) => "none".into(),
        (false, 0) => names.join(", "),
        (false, more) => format!("{}, and {more} more", names.join(", ")),
    }
}

/// A pickled value as JSON: what JSON cannot hold (tensors, Python objects, NaN) is `null`.
fn json_of(value: &PickleValue) -> JsonValue {
    match value {
        PickleValue::None | PickleValue::Unsupported(_) => JsonValue::Null,
        PickleValue::Bool(value) => JsonValue::Bool(*value),
        PickleValue::Int(value) => JsonValue::from(*value),
        PickleValue::Float(value) => serde_json::Number::from_f64(*value).map_or(JsonValue::Null, JsonValue::Number),
        PickleValue::String(value) => JsonValue::String(value.clone()),
        PickleValue::List(items) => JsonValue::Array(items.iter().map(json_of).collect()),
        PickleValue::Dict(entries) => JsonValue::Object(
            entries
                .iter()
                .map(|(name, value)| (name.clone(), json_of(value)))
                .collect(),
        ),
        PickleValue::Bytes(bytes) => JsonValue::Array(bytes.iter().map(|byte| JsonValue::from(*byte)).collect()),
    }
}
