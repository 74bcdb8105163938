//! Components a configuration names by kind and options, in LightningCLI's form: `class_path`
//! and `init_args`. The trainer's `logger` and `callbacks` flags hold them, and
//! [`LightningCli`](crate::cli::LightningCli)'s `--optimizer` and `--lr_scheduler`; the registries
//! of the loggers, callbacks and optimizers build them (see `loggers::registry`).

use crate::JsonValue;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Map;

/// A component chosen by name, with its options: `{class_path: CSVLogger, init_args: {name:
/// exp}}` in YAML, or its name alone (`csv`, `EarlyStopping`). Names match Lightning's class
/// names (`CSVLogger`, also written `lightning.pytorch.loggers.CSVLogger`) and shorter aliases
/// (`csv`), ignoring case, `_` and `-`.
#[derive(Clone, Debug, PartialEq)]
pub struct ComponentSpec {
    /// The name as written.
    pub class_path: String,
    /// Its options, by name (Lightning's `init_args`).
    pub init_args: Map<String, JsonValue>,
}

impl ComponentSpec {
    /// The component called `name`, with no options.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            class_path: name.into(),
            init_args: Map::new(),
        }
    }

    /// With the option `key` set to `value`.
    #[must_use]
    pub fn arg(mut self, key: &str, value: impl Serialize) -> Self {
        let value = serde_json::to_value(value).unwrap_or(JsonValue::Null);
        self.init_args.insert(key.to_string(), value);
        self
    }

    /// The name without its module path: `lightning.pytorch.loggers.CSVLogger` -> `CSVLogger`.
    pub fn short_name(&self) -> &str {
        self.class_path.rsplit('.').next().unwrap_or(&self.class_path)
    }

    /// Whether it names one of `names` (ignoring case, `_`, `-` and a module path).
    pub fn is_one_of(&self, names: &[&str]) -> bool {
        let own = normalized(self.short_name());
        names.iter().any(|name| normalized(name) == own)
    }

    /// Reads a spec: a name, or a mapping with `class_path` and optional `init_args`.
    pub fn from_json(value: &JsonValue) -> Result<Self, String> {
        match value {
            JsonValue::String(name) if !name.trim().is_empty() => Ok(Self::new(name.trim())),
            JsonValue::Object(map) => {
                let class_path = match map.get("class_path") {
                    Some(JsonValue::String(name)) => name.clone(),
                    _ => {
                        return Err(format!(
                            "expected `{{class_path: Name, init_args: {{...}}}}` or a name, found {value}"
                        ));
                    }
                };
                if let Some(key) = map
                    .keys()
                    .find(|key| !matches!(key.as_str(), "class_path" | "init_args"))
                {
                    return Err(format!(
                        "`{key}` is not a key of a component; give `class_path` and `init_args`"
                    ));
                }
                let init_args = match map.get("init_args") {
                    None | Some(JsonValue::Null) => Map::new(),
                    Some(JsonValue::Object(args)) => args.clone(),
                    Some(other) => return Err(format!("`init_args` must be a mapping of options, found {other}")),
                };
                Ok(Self { class_path, init_args })
            }
            other => Err(format!(
                "expected a name or `{{class_path: Name, init_args: {{...}}}}`, found {other}"
            )),
        }
    }

    /// As a YAML/JSON value: `{class_path, init_args}`.
    pub fn to_json(&self) -> JsonValue {
        serde_json::json!({ "class_path": self.class_path, "init_args": self.init_args })
    }
}

/// Lowercase, without `_` and `-`: how names are compared.
fn normalized(name: &str) -> String {
    name.chars()
        .filter(|c| !matches!(c, '_' | '-'))
        .flat_map(char::to_lowercase)
        .collect()
}

impl Serialize for ComponentSpec {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for ComponentSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = JsonValue::deserialize(deserializer)?;
        Self::from_json(&value).map_err(D::Error::custom)
    }
}

/// Lightning's `logger` flag: `true` (a TensorBoard logger in the run directory unless loggers
/// are given), `false` (none), or the loggers to write with, by name and options.
#[derive(Clone, Debug, PartialEq)]
pub enum LoggerFlag {
    /// `true` or `false`.
    Enabled(bool),
    /// The loggers (`csv`, `[tensorboard, csv]`, `{class_path: CSVLogger, init_args: {..}}`).
    Loggers(Vec<ComponentSpec>),
}

impl Default for LoggerFlag {
    fn default() -> Self {
        LoggerFlag::Enabled(true)
    }
}

impl LoggerFlag {
    /// Whether values go to loggers at all.
    pub fn enabled(&self) -> bool {
        match self {
            LoggerFlag::Enabled(on) => *on,
            LoggerFlag::Loggers(specs) => !specs.is_empty(),
        }
    }

    /// The loggers named, if any.
    pub fn specs(&self) -> &[ComponentSpec] {
        match self {
            LoggerFlag::Enabled(_) => &[],
            LoggerFlag::Loggers(specs) => specs,
        }
    }
}

impl From<bool> for LoggerFlag {
    fn from(on: bool) -> Self {
        LoggerFlag::Enabled(on)
    }
}

impl Serialize for LoggerFlag {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            LoggerFlag::Enabled(on) => serializer.serialize_bool(*on),
            LoggerFlag::Loggers(specs) if specs.len() == 1 => specs[0].serialize(serializer),
            LoggerFlag::Loggers(specs) => specs.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for LoggerFlag {
    /// `true`, `false` (null is `true`, Lightning's default), a logger, or a list of them (an
    /// empty list is `false`).
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match JsonValue::deserialize(deserializer)? {
            JsonValue::Null => Ok(LoggerFlag::Enabled(true)),
            JsonValue::Bool(on) => Ok(LoggerFlag::Enabled(on)),
            JsonValue::Array(items) if items.is_empty() => Ok(LoggerFlag::Enabled(false)),
            other => specs(&other).map(LoggerFlag::Loggers).map_err(D::Error::custom),
        }
    }
}

/// One component or a list of them.
pub(crate) fn specs(value: &JsonValue) -> Result<Vec<ComponentSpec>, String> {
    match value {
        JsonValue::Null => Ok(Vec::new()),
        JsonValue::Array(items) => items.iter().map(ComponentSpec::from_json).collect(),
        one => Ok(vec![ComponentSpec::from_json(one)?]),
    }
}

/// `callbacks`: a component or a list of them, serialized as a list.
pub(crate) mod callback_specs {
    use super::*;

    pub fn serialize<S: Serializer>(value: &[ComponentSpec], serializer: S) -> Result<S::Ok, S::Error> {
        value.serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<ComponentSpec>, D::Error> {
        let value = JsonValue::deserialize(deserializer)?;
        specs(&value).map_err(D::Error::custom)
    }
}

/// The error of an option of a component: its options are read with serde, whose message names
/// the option.
pub(crate) fn read_options<T: serde::de::DeserializeOwned>(spec: &ComponentSpec) -> Result<T, String> {
    serde_json::from_value(JsonValue::Object(spec.init_args.clone()))
        .map_err(|e| format!("`{}`: {e}", spec.short_name()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_read_lightnings_forms() {
        let spec = ComponentSpec::from_json(&serde_json::json!({
            "class_path": "lightning.pytorch.loggers.CSVLogger",
            "init_args": {"name": "exp"}
        }))
        .unwrap();
        assert!(spec.is_one_of(&["CSVLogger", "csv"]));
        assert_eq!(spec.init_args["name"], "exp");
        assert!(ComponentSpec::new("csv").is_one_of(&["CSVLogger", "csv"]));
        assert!(ComponentSpec::new("early_stopping").is_one_of(&["EarlyStopping"]));
        let typo = ComponentSpec::from_json(&serde_json::json!({"class_path": "X", "init": {}})).unwrap_err();
        assert!(typo.contains("`init`"), "{typo}");
        let flag: LoggerFlag = serde_json::from_value(serde_json::json!(["tensorboard", "csv"])).unwrap();
        assert_eq!(flag.specs().len(), 2);
        let off: LoggerFlag = serde_json::from_value(serde_json::json!(false)).unwrap();
        assert!(!off.enabled());
        let one: LoggerFlag = serde_json::from_value(serde_json::json!("csv")).unwrap();
        assert_eq!(serde_json::to_value(&one).unwrap()["class_path"], "csv");
    }
}
