//! [`TensorBoardLogger`]: TensorBoard event files, as Lightning's `TensorBoardLogger` writes them.
//!
//! An event file is a sequence of TFRecords (a `u64` little-endian length, the masked CRC32C of
//! those 8 bytes, the data, the masked CRC32C of the data), each holding one `tensorboard.Event`
//! protocol buffer. The first says `file_version = "brain.Event:2"`; each scalar is an `Event`
//! with a `Summary` of one `simple_value`. Hyperparameters go in as the `hparams` plugin's three
//! summaries (the experiment, the session start with the values, the session end), as
//! `torch.utils.tensorboard.summary.hparams` writes them, so that the HParams tab shows the run.

use super::{Logger, LoggerDir, Version};
use crate::{Error, JsonValue};
use prost::Message;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Writes TensorBoard event files into `<save_dir>/<name>/version_N` (Lightning's
/// `TensorBoardLogger`). View them with `tensorboard --logdir <save_dir>`.
///
/// The event file (`events.out.tfevents.<unix secs>.<host>.<pid>.<n>`) is created on the first
/// write and stays open behind a buffer; [`Logger::save`] flushes it to disk and
/// [`Logger::finalize`] closes it.
///
/// ```no_run
/// use burn_lightning_runtime::loggers::{Logger, TensorBoardLogger};
/// use burn_lightning_runtime::Version;
/// use std::collections::BTreeMap;
///
/// let mut logger = TensorBoardLogger::new("runs").name("mnist").version(Version::Number(3));
/// logger.log_metrics(&BTreeMap::from([("train_loss".to_string(), 0.25)]), 10)?;
/// logger.finalize("success")?;
/// # Ok::<(), burn_lightning_runtime::Error>(())
/// ```
#[derive(Debug)]
pub struct TensorBoardLogger {
    dir: LoggerDir,
    default_hp_metric: bool,
    writer: Option<EventWriter>,
}

impl TensorBoardLogger {
    /// Logs to `<save_dir>/lightning_logs/version_N`, the next free N.
    pub fn new(save_dir: impl Into<PathBuf>) -> Self {
        Self::in_dir(LoggerDir::new(save_dir))
    }

    /// Logs to the directory `dir` resolves to (the trainer passes [`LoggerDir::existing`] with
    /// its run directory).
    pub fn in_dir(dir: LoggerDir) -> Self {
        Self {
            dir,
            default_hp_metric: true,
            writer: None,
        }
    }

    /// The folder under the save directory (`lightning_logs` by default).
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.dir = self.dir.name(name);
        self
    }

    /// The version directory (the next free `version_N` by default).
    #[must_use]
    pub fn version(mut self, version: Version) -> Self {
        self.dir = self.dir.version(version);
        self
    }

    /// Whether [`Logger::log_hyperparams`] also logs `hp_metric = -1` at step 0 and names it as
    /// the experiment's metric (true by default, as in Lightning). Without it, as in Lightning,
    /// the hyperparameters go only to `hparams.yaml`, not to TensorBoard.
    #[must_use]
    pub fn default_hp_metric(mut self, on: bool) -> Self {
        self.default_hp_metric = on;
        self
    }

    /// The directory under which the logger's folder is (`save_dir`).
    pub fn save_dir(&self) -> &Path {
        self.dir.save_dir()
    }

    /// The event file, once something was written to it.
    pub fn event_file(&self) -> Option<&Path> {
        self.writer.as_ref().map(|w| w.path.as_path())
    }

    /// The open event file, created (with its `file_version` record) on the first call.
    fn writer(&mut self) -> Result<&mut EventWriter, Error> {
        if self.writer.is_none() {
            let dir = self.dir.resolve()?;
            self.writer = Some(EventWriter::create(&dir)?);
        }
        Ok(self.writer.as_mut().expect("just created"))
    }

    /// Writes `hparams` as the hparams plugin's experiment, session start and session end
    /// summaries (what `torch.utils.tensorboard.summary.hparams(hparams, metrics)` returns).
    fn write_hparams_summaries(&mut self, hparams: &JsonValue, metrics: &[&str]) -> Result<(), Error> {
        let entries: Vec<(&str, &JsonValue)> = match hparams {
            JsonValue::Object(map) => map.iter().map(|(k, v)| (k.as_str(), v)).collect(),
            JsonValue::Null => Vec::new(),
            other => {
                return Err(Error::Data(format!(
                    "the hyperparameters must be a JSON object of names to values, not `{other}`"
                )));
            }
        };
        let mut infos = Vec::with_capacity(entries.len());
        let mut values = BTreeMap::new();
        for (name, value) in entries {
            let (kind, data_type) = match value {
                JsonValue::Number(n) => (Kind::Number(n.as_f64().unwrap_or(f64::NAN)), DATA_TYPE_FLOAT64),
                JsonValue::String(s) => (Kind::String(s.clone()), DATA_TYPE_STRING),
                JsonValue::Bool(b) => (Kind::Bool(*b), DATA_TYPE_BOOL),
                // Nested values (and null) as their JSON text, as Lightning writes them as `str(v)`.
                other => (Kind::String(other.to_string()), DATA_TYPE_STRING),
            };
            infos.push(HParamInfo {
                name: name.to_string(),
                r#type: data_type,
            });
            values.insert(name.to_string(), ProtoValue { kind: Some(kind) });
        }
        let now = wall_time();
        let experiment = HParamsPluginData {
            version: HPARAMS_PLUGIN_DATA_VERSION,
            experiment: Some(Experiment {
                hparam_infos: infos,
                metric_infos: metrics
                    .iter()
                    .map(|tag| MetricInfo {
                        name: Some(MetricName { tag: tag.to_string() }),
                    })
                    .collect(),
            }),
            ..Default::default()
        };
        let start = HParamsPluginData {
            version: HPARAMS_PLUGIN_DATA_VERSION,
            session_start_info: Some(SessionStartInfo {
                hparams: values,
                start_time_secs: now,
            }),
            ..Default::default()
        };
        let end = HParamsPluginData {
            version: HPARAMS_PLUGIN_DATA_VERSION,
            session_end_info: Some(SessionEndInfo { status: STATUS_SUCCESS }),
            ..Default::default()
        };
        let writer = self.writer()?;
        for (tag, content) in [
            ("_hparams_/experiment", experiment),
            ("_hparams_/session_start_info", start),
            ("_hparams_/session_end_info", end),
        ] {
            let value = SummaryValue {
                tag: tag.to_string(),
                simple_value: None,
                metadata: Some(SummaryMetadata {
                    plugin_data: Some(PluginData {
                        plugin_name: "hparams".into(),
                        content: content.encode_to_vec(),
                    }),
                }),
            };
            writer.write_event(&Event {
                wall_time: now,
                step: 0,
                file_version: None,
                summary: Some(Summary { value: vec![value] }),
            })?;
        }
        Ok(())
    }
}

impl Logger for TensorBoardLogger {
    fn name(&self) -> &str {
        self.dir.logger_name()
    }

    fn root_dir(&self) -> Option<PathBuf> {
        Some(self.dir.root())
    }

    fn log_dir(&mut self) -> Result<PathBuf, Error> {
        self.dir.resolve()
    }

    /// Writes `hparams.yaml` into the log directory and, with the default `hp_metric`, the
    /// hparams plugin's summaries (see [`TensorBoardLogger::default_hp_metric`]).
    fn log_hyperparams(&mut self, hparams: &JsonValue) -> Result<(), Error> {
        let dir = self.dir.resolve()?;
        let yaml = serde_saphyr::to_string(hparams)
            .map_err(|e| Error::Checkpoint(format!("cannot write the hyperparameters as YAML: {e}")))?;
        crate::checkpoint::run_dir::write_atomic(&dir.join("hparams.yaml"), yaml.as_bytes())?;
        if self.default_hp_metric {
            self.log_metrics(&BTreeMap::from([("hp_metric".to_string(), -1.0)]), 0)?;
            self.write_hparams_summaries(hparams, &["hp_metric"])?;
        }
        Ok(())
    }

    /// One scalar event per metric, its value as a 32-bit float (NaN and infinities as they are).
    fn log_metrics(&mut self, metrics: &BTreeMap<String, f64>, step: usize) -> Result<(), Error> {
        if metrics.is_empty() {
            return Ok(());
        }
        if metrics.contains_key("") {
            return Err(Error::Data(format!(
                "TensorBoard cannot take the metric name `` (an empty tag) logged at step {step}: give the value a name"
            )));
        }
        let step = i64::try_from(step).unwrap_or(i64::MAX);
        let now = wall_time();
        let writer = self.writer()?;
        for (name, &value) in metrics {
            writer.write_event(&Event {
                wall_time: now,
                step,
                file_version: None,
                summary: Some(Summary {
                    value: vec![SummaryValue {
                        tag: name.clone(),
                        #[allow(clippy::cast_possible_truncation)]
                        simple_value: Some(value as f32),
                        metadata: None,
                    }],
                }),
            })?;
        }
        Ok(())
    }

    /// Hands what is buffered to the operating system (it survives the process being killed);
    /// the trainer calls it after every `log_metrics`, on the training thread, so it does not
    /// wait for the disk.
    fn save(&mut self) -> Result<(), Error> {
        match &mut self.writer {
            Some(writer) => writer.flush(false),
            None => Ok(()),
        }
    }

    /// Flushes to the disk itself and closes the file.
    fn finalize(&mut self, _status: &str) -> Result<(), Error> {
        if let Some(writer) = &mut self.writer {
            writer.flush(true)?;
        }
        self.writer = None;
        Ok(())
    }
}

/// The open event file.
#[derive(Debug)]
struct EventWriter {
    path: PathBuf,
    file: BufWriter<File>,
    /// Reused for each record's encoding.
    buf: Vec<u8>,
}

impl EventWriter {
    /// Creates the event file in `dir` and writes its first record (the file version).
    fn create(dir: &Path) -> Result<Self, Error> {
        /// Tells apart the event files one process opens in the same second (torch's `_global_uid`).
        static FILE_COUNTER: AtomicUsize = AtomicUsize::new(0);
        let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let n = FILE_COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!(
            "events.out.tfevents.{secs:010}.{}.{}.{n}",
            hostname(),
            std::process::id()
        );
        let path = dir.join(name);
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| Error::io("create the TensorBoard event file", &path, e))?;
        let mut writer = Self {
            path,
            file: BufWriter::new(file),
            buf: Vec::new(),
        };
        writer.write_event(&Event {
            wall_time: wall_time(),
            step: 0,
            file_version: Some(FILE_VERSION.into()),
            summary: None,
        })?;
        Ok(writer)
    }

    fn write_event(&mut self, event: &Event) -> Result<(), Error> {
        self.buf.clear();
        event.encode(&mut self.buf).expect("a Vec grows as needed");
        let len = (self.buf.len() as u64).to_le_bytes();
        let write = |file: &mut BufWriter<File>| -> std::io::Result<()> {
            file.write_all(&len)?;
            file.write_all(&masked_crc32c(&len).to_le_bytes())?;
            file.write_all(&self.buf)?;
            file.write_all(&masked_crc32c(&self.buf).to_le_bytes())
        };
        write(&mut self.file).map_err(|e| Error::io("write the TensorBoard event file", &self.path, e))
    }

    /// Writes the buffer out; with `durable`, also waits until the data is on the disk.
    fn flush(&mut self, durable: bool) -> Result<(), Error> {
        self.file
            .flush()
            .and_then(|()| {
                if durable {
                    self.file.get_ref().sync_data()
                } else {
                    Ok(())
                }
            })
            .map_err(|e| Error::io("flush the TensorBoard event file", &self.path, e))
    }
}

/// The first record's `file_version`.
const FILE_VERSION: &str = "brain.Event:2";

/// TFRecord's checksum: the CRC32C of `data`, rotated right by 15 bits plus `0xa282ead8`.
pub fn masked_crc32c(data: &[u8]) -> u32 {
    crc32c::crc32c(data).rotate_right(15).wrapping_add(0xa282_ead8)
}

fn wall_time() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The host's name for the event file's name (what Python's `socket.gethostname()` gives).
fn hostname() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .map(|s| s.trim().replace(['/', '\\'], "_"))
        .unwrap_or_default();
    if name.is_empty() { "localhost".into() } else { name }
}

// The few messages of tensorboard's `event.proto`, `summary.proto` and the hparams plugin's
// `plugin_data.proto`/`api.proto` that the logger writes, with their field numbers. A `oneof`
// member is an `Option` here, written only when set.

/// `tensorboard.Event`.
#[derive(Clone, PartialEq, Message)]
struct Event {
    #[prost(double, tag = "1")]
    wall_time: f64,
    #[prost(int64, tag = "2")]
    step: i64,
    /// In the `what` oneof.
    #[prost(string, optional, tag = "3")]
    file_version: Option<String>,
    /// In the `what` oneof.
    #[prost(message, optional, tag = "5")]
    summary: Option<Summary>,
}

/// `tensorboard.Summary`.
#[derive(Clone, PartialEq, Message)]
struct Summary {
    #[prost(message, repeated, tag = "1")]
    value: Vec<SummaryValue>,
}

/// `tensorboard.Summary.Value`.
#[derive(Clone, PartialEq, Message)]
struct SummaryValue {
    #[prost(string, tag = "1")]
    tag: String,
    /// In the `value` oneof.
    #[prost(float, optional, tag = "2")]
    simple_value: Option<f32>,
    #[prost(message, optional, tag = "9")]
    metadata: Option<SummaryMetadata>,
}

/// `tensorboard.SummaryMetadata`.
#[derive(Clone, PartialEq, Message)]
struct SummaryMetadata {
    #[prost(message, optional, tag = "1")]
    plugin_data: Option<PluginData>,
}

/// `tensorboard.SummaryMetadata.PluginData`.
#[derive(Clone, PartialEq, Message)]
struct PluginData {
    #[prost(string, tag = "1")]
    plugin_name: String,
    #[prost(bytes = "vec", tag = "2")]
    content: Vec<u8>,
}

/// `tensorboard.hparams.HParamsPluginData` (`PLUGIN_DATA_VERSION` 0).
#[derive(Clone, PartialEq, Message)]
struct HParamsPluginData {
    #[prost(int32, tag = "1")]
    version: i32,
    /// In the `data` oneof.
    #[prost(message, optional, tag = "2")]
    experiment: Option<Experiment>,
    /// In the `data` oneof.
    #[prost(message, optional, tag = "3")]
    session_start_info: Option<SessionStartInfo>,
    /// In the `data` oneof.
    #[prost(message, optional, tag = "4")]
    session_end_info: Option<SessionEndInfo>,
}

const HPARAMS_PLUGIN_DATA_VERSION: i32 = 0;

/// `tensorboard.hparams.Experiment`.
#[derive(Clone, PartialEq, Message)]
struct Experiment {
    #[prost(message, repeated, tag = "4")]
    hparam_infos: Vec<HParamInfo>,
    #[prost(message, repeated, tag = "5")]
    metric_infos: Vec<MetricInfo>,
}

/// `tensorboard.hparams.HParamInfo`.
#[derive(Clone, PartialEq, Message)]
struct HParamInfo {
    #[prost(string, tag = "1")]
    name: String,
    /// A `tensorboard.hparams.DataType`.
    #[prost(int32, tag = "4")]
    r#type: i32,
}

const DATA_TYPE_STRING: i32 = 1;
const DATA_TYPE_BOOL: i32 = 2;
const DATA_TYPE_FLOAT64: i32 = 3;

/// `tensorboard.hparams.MetricInfo`.
#[derive(Clone, PartialEq, Message)]
struct MetricInfo {
    #[prost(message, optional, tag = "1")]
    name: Option<MetricName>,
}

/// `tensorboard.hparams.MetricName`.
#[derive(Clone, PartialEq, Message)]
struct MetricName {
    #[prost(string, tag = "2")]
    tag: String,
}

/// `tensorboard.hparams.SessionStartInfo`.
#[derive(Clone, PartialEq, Message)]
struct SessionStartInfo {
    #[prost(btree_map = "string, message", tag = "1")]
    hparams: BTreeMap<String, ProtoValue>,
    #[prost(double, tag = "5")]
    start_time_secs: f64,
}

/// `tensorboard.hparams.SessionEndInfo`.
#[derive(Clone, PartialEq, Message)]
struct SessionEndInfo {
    /// A `tensorboard.hparams.Status`.
    #[prost(int32, tag = "1")]
    status: i32,
}

const STATUS_SUCCESS: i32 = 1;

/// `google.protobuf.Value`, without its null, struct and list kinds.
#[derive(Clone, PartialEq, Message)]
struct ProtoValue {
    #[prost(oneof = "Kind", tags = "2, 3, 4")]
    kind: Option<Kind>,
}

/// `google.protobuf.Value.kind`.
#[derive(Clone, PartialEq, prost::Oneof)]
enum Kind {
    #[prost(double, tag = "2")]
    Number(f64),
    #[prost(string, tag = "3")]
    String(String),
    #[prost(bool, tag = "4")]
    Bool(bool),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::manual_rotate, reason = "the mask as TFRecord's spec writes it")]
    fn masked_crc_matches_the_known_vector() {
        // CRC32C's check value.
        let crc = crc32c::crc32c(b"123456789");
        assert_eq!(crc, 0xE306_9283);
        // ((crc >> 15) | (crc << 17)) + 0xa282ead8, by hand: 0xE3069283 >> 15 = 0x0001C60D,
        // 0xE3069283 << 17 = 0x25060000 (kept to 32 bits); their OR is 0x2507C60D, plus
        // 0xA282EAD8 is 0xC78AB0E5.
        assert_eq!((crc >> 15) | (crc << 17), 0x2507_C60D);
        assert_eq!(masked_crc32c(b"123456789"), 0xC78A_B0E5);
        // The addition wraps: the mask of an empty slice (CRC 0) is the constant itself, and a
        // CRC whose rotation is large overflows.
        assert_eq!(masked_crc32c(b""), 0xa282_ead8);
        assert_eq!(0xFFFF_FFFFu32.rotate_right(15).wrapping_add(0xa282_ead8), 0xa282_ead7);
    }

    #[test]
    fn an_empty_metric_name_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut logger = TensorBoardLogger::new(dir.path());
        let err = logger
            .log_metrics(&BTreeMap::from([(String::new(), 1.0), ("ok".into(), 2.0)]), 3)
            .unwrap_err();
        assert!(err.to_string().contains("metric name ``"), "{err}");
        // Nothing was written, not even the file.
        assert!(logger.event_file().is_none());
    }

    #[test]
    fn writes_lazily_into_the_version_dir_and_flushes() {
        let dir = tempfile::tempdir().unwrap();
        let mut logger = TensorBoardLogger::new(dir.path())
            .name("tb")
            .version(Version::Number(7));
        assert_eq!(Logger::name(&logger), "tb");
        logger.save().unwrap();
        assert!(
            !dir.path().join("tb").exists(),
            "nothing is created before the first write"
        );
        logger.log_metrics(&BTreeMap::from([("loss".into(), 0.5)]), 1).unwrap();
        let file = logger.event_file().unwrap().to_path_buf();
        assert_eq!(file.parent().unwrap(), dir.path().join("tb/version_7"));
        let name = file.file_name().unwrap().to_str().unwrap().to_string();
        assert!(name.starts_with("events.out.tfevents."), "{name}");
        assert!(name.contains(&format!(".{}.", std::process::id())), "{name}");
        logger.finalize("success").unwrap();
        assert!(logger.event_file().is_none());
        let bytes = std::fs::read(&file).unwrap();
        // Two records: the file version and the scalar; each is framed and checksummed.
        let mut rest = bytes.as_slice();
        let mut events = Vec::new();
        while !rest.is_empty() {
            let len = u64::from_le_bytes(rest[..8].try_into().unwrap()) as usize;
            assert_eq!(
                u32::from_le_bytes(rest[8..12].try_into().unwrap()),
                masked_crc32c(&rest[..8])
            );
            let data = &rest[12..12 + len];
            let crc = u32::from_le_bytes(rest[12 + len..16 + len].try_into().unwrap());
            assert_eq!(crc, masked_crc32c(data));
            events.push(Event::decode(data).unwrap());
            rest = &rest[16 + len..];
        }
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].file_version.as_deref(), Some(FILE_VERSION));
        assert_eq!(events[1].step, 1);
        let value = &events[1].summary.as_ref().unwrap().value[0];
        assert_eq!((value.tag.as_str(), value.simple_value), ("loss", Some(0.5)));
    }

    #[test]
    fn hyperparameters_go_to_yaml_and_the_hparams_plugin() {
        let dir = tempfile::tempdir().unwrap();
        let mut logger = TensorBoardLogger::in_dir(LoggerDir::existing(dir.path()));
        let hparams = serde_json::json!({"lr": 0.001, "name": "mlp", "deep": true, "sizes": [1, 2]});
        logger.log_hyperparams(&hparams).unwrap();
        logger.finalize("success").unwrap();
        let yaml = std::fs::read_to_string(dir.path().join("hparams.yaml")).unwrap();
        assert!(yaml.contains("lr: 0.001"), "{yaml}");
        let bytes = std::fs::read(
            std::fs::read_dir(dir.path())
                .unwrap()
                .find_map(|e| {
                    let path = e.unwrap().path();
                    path.file_name()?
                        .to_str()?
                        .starts_with("events.out.tfevents.")
                        .then_some(path)
                })
                .unwrap(),
        )
        .unwrap();
        let mut rest = bytes.as_slice();
        let mut events = Vec::new();
        while !rest.is_empty() {
            let len = u64::from_le_bytes(rest[..8].try_into().unwrap()) as usize;
            events.push(Event::decode(&rest[12..12 + len]).unwrap());
            rest = &rest[16 + len..];
        }
        // file version, hp_metric, experiment, session start, session end
        assert_eq!(events.len(), 5);
        let start = &events[3].summary.as_ref().unwrap().value[0];
        assert_eq!(start.tag, "_hparams_/session_start_info");
        let plugin = start.metadata.as_ref().unwrap().plugin_data.as_ref().unwrap();
        assert_eq!(plugin.plugin_name, "hparams");
        let data = HParamsPluginData::decode(plugin.content.as_slice()).unwrap();
        let values = data.session_start_info.unwrap().hparams;
        assert_eq!(values["lr"].kind, Some(Kind::Number(0.001)));
        assert_eq!(values["name"].kind, Some(Kind::String("mlp".into())));
        assert_eq!(values["deep"].kind, Some(Kind::Bool(true)));
        assert_eq!(values["sizes"].kind, Some(Kind::String("[1,2]".into())));
    }
}
