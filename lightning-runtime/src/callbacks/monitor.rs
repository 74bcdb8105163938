//! What the checkpointing and early-stopping callbacks share: the context they read metrics from
//! and ask for checkpoints through, and how their states write scores and paths.

use crate::core::state::TrainerState;
use crate::{EpochContext, Error, HookContext, JsonValue, StepContext};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What the checkpointing and early-stopping callbacks need from a hook's context, at the end
/// of a training batch (`StepContext`), of a training epoch (`EpochContext`) or of a
/// validation run (`HookContext`).
pub(super) trait MonitorContext: std::ops::Deref<Target = TrainerState> {
    fn metrics(&self) -> BTreeMap<String, f64>;
    fn run_dir(&self) -> Option<PathBuf>;
    fn save(&mut self, path: PathBuf, weights_only: bool);
    fn link(&mut self, target: PathBuf, link: PathBuf);
    fn remove(&mut self, path: PathBuf);
    fn taken(&self, path: &Path) -> bool;
    fn request_stop(&mut self);
}

macro_rules! monitor_context {
    ($($ty:ident),*) => {$(
        impl MonitorContext for $ty<'_> {
            fn metrics(&self) -> BTreeMap<String, f64> {
                self.callback_metrics()
            }
            fn run_dir(&self) -> Option<PathBuf> {
                self.log_dir().map(Path::to_path_buf)
            }
            fn save(&mut self, path: PathBuf, weights_only: bool) {
                match weights_only {
                    true => self.save_checkpoint_weights_only(path),
                    false => self.save_checkpoint(path),
                }
            }
            fn link(&mut self, target: PathBuf, link: PathBuf) {
                self.link_checkpoint(target, link);
            }
            fn remove(&mut self, path: PathBuf) {
                self.remove_checkpoint(path);
            }
            fn taken(&self, path: &Path) -> bool {
                self.checkpoint_exists(path)
            }
            fn request_stop(&mut self) {
                self.stop();
            }
        }
    )*};
}
monitor_context!(StepContext, EpochContext, HookContext);

/// A score in a callback's state: a number, or Lightning's `inf`, `-inf` and `nan` as strings
/// (JSON has no non-finite numbers).
pub(super) fn score_to_json(score: f64) -> JsonValue {
    match score {
        s if s.is_nan() => JsonValue::from("nan"),
        f64::INFINITY => JsonValue::from("inf"),
        f64::NEG_INFINITY => JsonValue::from("-inf"),
        s => JsonValue::from(s),
    }
}

/// Reads back what [`score_to_json`] wrote (`null` is no score).
pub(super) fn score_from_json(value: &JsonValue, key: &str, callback: &str) -> Result<Option<f64>, Error> {
    match value {
        JsonValue::Null => Ok(None),
        JsonValue::Number(n) => Ok(n.as_f64()),
        JsonValue::String(s) => match s.as_str() {
            "nan" => Ok(Some(f64::NAN)),
            "inf" => Ok(Some(f64::INFINITY)),
            "-inf" => Ok(Some(f64::NEG_INFINITY)),
            _ => Err(bad_state(callback, key, value)),
        },
        _ => Err(bad_state(callback, key, value)),
    }
}

pub(super) fn bad_state(callback: &str, key: &str, value: &JsonValue) -> Error {
    Error::Checkpoint(format!(
        "the {callback} state in the checkpoint has `{key}` = {value}, which it cannot read; \
         the checkpoint was not written by this version, or was edited"
    ))
}

/// A path in a callback's state: Lightning writes `""` for none.
pub(super) fn path_to_json(path: Option<&Path>) -> JsonValue {
    JsonValue::from(path.map_or(String::new(), |p| p.display().to_string()))
}

pub(super) fn path_from_json(value: &JsonValue, key: &str, callback: &str) -> Result<Option<PathBuf>, Error> {
    match value {
        JsonValue::Null => Ok(None),
        JsonValue::String(s) if s.is_empty() => Ok(None),
        JsonValue::String(s) => Ok(Some(PathBuf::from(s))),
        _ => Err(bad_state(callback, key, value)),
    }
}
