//! [`CsvLogger`]: `metrics.csv` and `hparams.yaml` in the log directory, as Lightning's
//! `CSVLogger` writes them (`lightning.pytorch.loggers.CSVLogger` on
//! `lightning.fabric.loggers.csv_logs._ExperimentWriter`).
//!
//! The file Lightning writes: one row per `log_metrics` call, a dictionary of the logged values
//! with `step` added; the header is the sorted union of every key logged so far; a value a row
//! lacks is an empty cell. Rows are buffered and written every `flush_logs_every_n_steps` steps
//! and on `save`/`finalize`: appended while the header stays the same, and the whole file is
//! rewritten under the new header when a new key appears. Lines end in `\r\n` and fields are
//! quoted only where needed, as Python's `csv` module writes them.

use super::{Logger, LoggerDir, Version};
use crate::checkpoint::run_dir::{remove_durable, write_atomic};
use crate::{Error, JsonValue};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The metrics file in the log directory (Lightning's `NAME_METRICS_FILE`).
const METRICS_FILE: &str = "metrics.csv";
/// The hyperparameter file in the log directory (Lightning's `NAME_HPARAMS_FILE`).
const HPARAMS_FILE: &str = "hparams.yaml";

/// Logs to `<save_dir>/<name>/<version>/metrics.csv` and `hparams.yaml` (Lightning's
/// `CSVLogger`).
///
/// ```no_run
/// use burn_lightning_runtime::loggers::{CsvLogger, Version};
///
/// let logger = CsvLogger::new("logs").name("my_exp").version(Version::Number(3));
/// ```
///
/// Starting to write (the first `log_dir`, `log_hyperparams` or `log_metrics` call) removes a
/// `metrics.csv` the directory already holds, as Lightning does: a run into an existing version
/// starts the file afresh.
#[derive(Debug)]
pub struct CsvLogger {
    dir: LoggerDir,
    flush_logs_every_n_steps: usize,
    /// The log directory, once created (and a previous `metrics.csv` in it removed).
    log_dir: Option<PathBuf>,
    /// Rows logged since the last write, cells formatted.
    rows: Vec<BTreeMap<String, String>>,
    /// The header of the file as written: every key so far, sorted.
    keys: BTreeSet<String>,
    /// `(step + 1) / flush_logs_every_n_steps` at the last flush.
    flushed_periods: usize,
    /// Every hyperparameter logged so far (later calls update earlier ones).
    hparams: JsonValue,
}

impl CsvLogger {
    /// `<save_dir>/lightning_logs/version_N`, the next free N, flushing every 100 steps.
    pub fn new(save_dir: impl Into<PathBuf>) -> Self {
        Self::in_dir(LoggerDir::new(save_dir))
    }

    /// Writes to `dir` (for example `LoggerDir::existing(run_dir)`).
    pub fn in_dir(dir: LoggerDir) -> Self {
        Self {
            dir,
            flush_logs_every_n_steps: 100,
            log_dir: None,
            rows: Vec::new(),
            keys: BTreeSet::new(),
            flushed_periods: 0,
            hparams: JsonValue::Object(Default::default()),
        }
    }

    /// The experiment's folder under the save directory (`lightning_logs` by default).
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

    /// Writes the buffered rows each time the step passes a multiple of `n` (Lightning's
    /// `flush_logs_every_n_steps`, 100 by default: the rows logged at step 99 are written then;
    /// a step that skips a multiple, 101 after 98, flushes too). `0` writes only on `save` and
    /// `finalize`.
    #[must_use]
    pub fn flush_logs_every_n_steps(mut self, n: usize) -> Self {
        self.flush_logs_every_n_steps = n;
        self
    }

    /// The log directory, created on the first call; a `metrics.csv` already there is removed
    /// (Lightning's `_ExperimentWriter._check_log_dir_exists`).
    fn experiment_dir(&mut self) -> Result<PathBuf, Error> {
        if let Some(dir) = &self.log_dir {
            return Ok(dir.clone());
        }
        let dir = self.dir.resolve()?;
        let metrics = dir.join(METRICS_FILE);
        if std::fs::symlink_metadata(&metrics).is_ok() {
            tracing::warn!("`{}` exists: it is replaced by this run's metrics", metrics.display());
            remove_durable(&metrics)?;
        }
        self.log_dir = Some(dir.clone());
        Ok(dir)
    }

    /// Whether the rows logged at `step` are written now: `step + 1` reached a multiple of
    /// `flush_logs_every_n_steps` (Lightning's `(step + 1) % n == 0`), or passed one since the
    /// last flush.
    fn flush_due(&mut self, step: usize) -> bool {
        let n = self.flush_logs_every_n_steps;
        if n == 0 {
            return false;
        }
        let periods = (step + 1) / n;
        let due = (step + 1).is_multiple_of(n) || periods > self.flushed_periods;
        if due {
            self.flushed_periods = self.flushed_periods.max(periods);
        }
        due
    }

    /// Writes the buffered rows to `path`: a new file, an append, or a rewrite of the whole file
    /// under a header that grew. Returns the header written.
    fn write_rows(&self, path: &Path) -> Result<BTreeSet<String>, Error> {
        let mut keys = self.keys.clone();
        for row in &self.rows {
            keys.extend(row.keys().cloned());
        }
        let exists = match std::fs::metadata(path) {
            Ok(_) => true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => return Err(Error::io("read", path, e)),
        };
        if exists && keys.len() == self.keys.len() {
            let mut text = String::new();
            push_rows(&mut text, &keys, &self.rows);
            append_lines(path, text.as_bytes())?;
            return Ok(keys);
        }
        // A new file, or a new key: the whole file under the new header (Lightning's
        // `_rewrite_with_new_header`, then the append), replaced in one atomic write.
        let mut old = Vec::new();
        if exists {
            let text = std::fs::read_to_string(path).map_err(|e| Error::io("read", path, e))?;
            let mut records =
                parse_csv(&text).map_err(|e| Error::Data(format!("cannot read `{}`: {e}", path.display())))?;
            if !records.is_empty() {
                let header = records.remove(0);
                keys.extend(header.iter().cloned());
                for (i, record) in records.into_iter().enumerate() {
                    if record.len() > header.len() {
                        return Err(Error::Data(format!(
                            "cannot read `{}`: row {} has {} fields, the header {}",
                            path.display(),
                            i + 2,
                            record.len(),
                            header.len()
                        )));
                    }
                    old.push(header.iter().cloned().zip(record).collect::<BTreeMap<_, _>>());
                }
            }
        }
        let mut text = String::new();
        push_record(&mut text, keys.iter().map(String::as_str));
        push_rows(&mut text, &keys, &old);
        push_rows(&mut text, &keys, &self.rows);
        write_atomic(path, text.as_bytes())?;
        Ok(keys)
    }
}

impl Logger for CsvLogger {
    fn name(&self) -> &str {
        self.dir.logger_name()
    }

    fn root_dir(&self) -> Option<PathBuf> {
        Some(self.dir.root())
    }

    fn log_dir(&mut self) -> Result<PathBuf, Error> {
        self.experiment_dir()
    }

    /// Updates the hyperparameters logged so far with `hparams` and writes them all to
    /// `hparams.yaml` (Lightning's `ExperimentWriter.log_hparams`).
    fn log_hyperparams(&mut self, hparams: &JsonValue) -> Result<(), Error> {
        let path = self.experiment_dir()?.join(HPARAMS_FILE);
        let mut all = self.hparams.clone();
        match (&mut all, hparams) {
            (JsonValue::Object(all), JsonValue::Object(new)) => {
                all.extend(new.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            (all, new) => *all = new.clone(),
        }
        let yaml = serde_saphyr::to_string(&all).map_err(|e| {
            Error::Checkpoint(format!(
                "cannot write the hyperparameters as YAML to `{}`: {e}",
                path.display()
            ))
        })?;
        write_atomic(&path, yaml.as_bytes())?;
        self.hparams = all;
        Ok(())
    }

    /// Buffers a row: `metrics` and `step` (Lightning's `_ExperimentWriter.log_metrics`, where a
    /// logged `step` is replaced by the argument), and writes the buffer when a flush is due.
    fn log_metrics(&mut self, metrics: &BTreeMap<String, f64>, step: usize) -> Result<(), Error> {
        self.experiment_dir()?;
        let mut row: BTreeMap<String, String> = metrics.iter().map(|(k, v)| (k.clone(), format_value(*v))).collect();
        row.insert("step".into(), step.to_string());
        self.rows.push(row);
        if self.flush_due(step) {
            self.save()?;
        }
        Ok(())
    }

    /// Writes the buffered rows. On an error they stay buffered, and the file as it was.
    fn save(&mut self) -> Result<(), Error> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let path = self.experiment_dir()?.join(METRICS_FILE);
        self.keys = self.write_rows(&path)?;
        self.rows.clear();
        Ok(())
    }

    /// Writes the buffered rows and waits until `metrics.csv` is on the disk.
    fn finalize(&mut self, _status: &str) -> Result<(), Error> {
        self.save()?;
        let Some(dir) = &self.log_dir else { return Ok(()) };
        let path = dir.join(METRICS_FILE);
        match std::fs::File::open(&path) {
            Ok(file) => file.sync_data().map_err(|e| Error::io("flush", &path, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("open", &path, e)),
        }
    }
}

/// `bytes` (whole lines) appended to `path`, handed to the operating system (they survive the
/// process being killed; `finalize` waits for the disk). On an error the file is cut back to
/// its previous length, so that it never ends in half a line.
fn append_lines(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(|e| Error::io("open", path, e))?;
    let len = file.metadata().map_err(|e| Error::io("read", path, e))?.len();
    if let Err(e) = file.write_all(bytes) {
        let _ = file.set_len(len);
        return Err(Error::io("append to", path, e));
    }
    Ok(())
}

/// `value` as text that reads back as the same `f64`: the shortest digits that do, in the form
/// Python's `repr` gives them except for integral values (`3`, not `3.0`, so that a column of
/// epochs reads as integers): an exponent below `1e-4` and from `1e16` on (`1e-05`, `1.5e+16`),
/// `nan`, `inf` and `-inf`.
fn format_value(value: f64) -> String {
    if value.is_nan() {
        return "nan".into();
    }
    if value.is_infinite() {
        return if value > 0.0 { "inf" } else { "-inf" }.into();
    }
    let magnitude = value.abs();
    if magnitude == 0.0 || (1e-4..1e16).contains(&magnitude) {
        return format!("{value}");
    }
    let scientific = format!("{value:e}");
    match scientific.split_once('e') {
        Some((mantissa, exponent)) => match exponent.strip_prefix('-') {
            Some(digits) => format!("{mantissa}e-{digits:0>2}"),
            None => format!("{mantissa}e+{exponent:0>2}"),
        },
        None => scientific,
    }
}

/// Appends each row as a record under `keys`, an empty cell where the row has no value.
fn push_rows(out: &mut String, keys: &BTreeSet<String>, rows: &[BTreeMap<String, String>]) {
    for row in rows {
        push_record(out, keys.iter().map(|k| row.get(k).map_or("", String::as_str)));
    }
}

/// Appends one CSV record as Python's `csv` writer does: fields quoted only when they hold a
/// comma, a quote or a line break (quotes doubled), `\r\n` at the end.
fn push_record<'a>(out: &mut String, fields: impl Iterator<Item = &'a str>) {
    for (i, field) in fields.enumerate() {
        if i > 0 {
            out.push(',');
        }
        if field.contains([',', '"', '\r', '\n']) {
            out.push('"');
            out.push_str(&field.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(field);
        }
    }
    out.push_str("\r\n");
}

/// The records of a CSV text (quoted fields, doubled quotes, `\r\n` or `\n` line ends); empty
/// lines are skipped, as Python's `csv.DictReader` skips them.
fn parse_csv(text: &str) -> Result<Vec<Vec<String>>, String> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    // Whether the current record has a field started (a blank line has none).
    let mut started = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if field.is_empty() => {
                started = true;
                loop {
                    match chars.next() {
                        Some('"') if chars.peek() == Some(&'"') => {
                            chars.next();
                            field.push('"');
                        }
                        Some('"') => break,
                        Some(c) => field.push(c),
                        None => return Err(format!("a quoted field in line {} is not closed", records.len() + 1)),
                    }
                }
            }
            ',' => {
                started = true;
                record.push(std::mem::take(&mut field));
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' | '\r' => {
                if started || !field.is_empty() {
                    record.push(std::mem::take(&mut field));
                    records.push(std::mem::take(&mut record));
                }
                started = false;
            }
            c => {
                started = true;
                field.push(c);
            }
        }
    }
    if started || !field.is_empty() {
        record.push(field);
        records.push(record);
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics(values: &[(&str, f64)]) -> BTreeMap<String, f64> {
        values.iter().map(|(k, v)| ((*k).to_string(), *v)).collect()
    }

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap()
    }

    /// The header and the rows of `metrics.csv`, each row a map from column to cell.
    fn read_rows(path: &Path) -> (Vec<String>, Vec<BTreeMap<String, String>>) {
        let mut records = parse_csv(&read(path)).unwrap();
        let header = records.remove(0);
        let rows = records
            .into_iter()
            .map(|r| {
                assert_eq!(r.len(), header.len(), "{r:?}");
                header.iter().cloned().zip(r).collect()
            })
            .collect();
        (header, rows)
    }

    #[test]
    fn step_and_epoch_values_land_in_their_columns() {
        let root = tempfile::tempdir().unwrap();
        let mut logger = CsvLogger::new(root.path());
        let dir = logger.log_dir().unwrap();
        assert_eq!(dir, root.path().join("lightning_logs/version_0"));
        let file = dir.join("metrics.csv");
        // What the trainer sends in an epoch of 100 steps logged every 50.
        logger
            .log_metrics(&metrics(&[("epoch", 0.0), ("train_loss_step", 0.75)]), 49)
            .unwrap();
        assert!(!file.exists(), "flushed before step 99");
        logger
            .log_metrics(&metrics(&[("epoch", 0.0), ("train_loss_step", 0.5)]), 99)
            .unwrap();
        logger
            .log_metrics(
                &metrics(&[("epoch", 0.0), ("train_loss_epoch", 0.625), ("val_loss", 0.25)]),
                99,
            )
            .unwrap();
        assert_eq!(
            read(&file),
            "epoch,step,train_loss_epoch,train_loss_step,val_loss\r\n\
             0,49,,0.75,\r\n\
             0,99,,0.5,\r\n\
             0,99,0.625,,0.25\r\n"
        );
        logger
            .log_metrics(&metrics(&[("epoch", 1.0), ("train_loss_step", 0.125)]), 149)
            .unwrap();
        logger.finalize("success").unwrap();
        let (_, rows) = read_rows(&file);
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[3]["epoch"], "1");
        assert_eq!(rows[3]["step"], "149");
        assert_eq!(rows[3]["train_loss_step"], "0.125");
        assert_eq!(rows[3]["val_loss"], "");
    }

    #[test]
    fn a_new_metric_rewrites_the_header_and_keeps_earlier_rows() {
        let root = tempfile::tempdir().unwrap();
        let mut logger = CsvLogger::new(root.path()).flush_logs_every_n_steps(1);
        let file = logger.log_dir().unwrap().join("metrics.csv");
        logger.log_metrics(&metrics(&[("loss", 1.5)]), 0).unwrap();
        assert_eq!(read(&file), "loss,step\r\n1.5,0\r\n");
        logger
            .log_metrics(&metrics(&[("acc", 0.5), ("loss", 1.25)]), 1)
            .unwrap();
        assert_eq!(read(&file), "acc,loss,step\r\n,1.5,0\r\n0.5,1.25,1\r\n");
        // The same keys: appended.
        logger.log_metrics(&metrics(&[("loss", 1.0)]), 2).unwrap();
        assert_eq!(read(&file), "acc,loss,step\r\n,1.5,0\r\n0.5,1.25,1\r\n,1,2\r\n");
        let (header, rows) = read_rows(&file);
        assert_eq!(header, ["acc", "loss", "step"]);
        assert_eq!(rows[0]["acc"], "");
        // No temporary file is left beside it.
        let names: Vec<_> = std::fs::read_dir(file.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["metrics.csv"]);
    }

    #[test]
    fn rows_are_buffered_until_a_flush_step_or_save() {
        let root = tempfile::tempdir().unwrap();
        let mut logger = CsvLogger::new(root.path()).flush_logs_every_n_steps(10);
        let file = logger.log_dir().unwrap().join("metrics.csv");
        for step in [2, 5, 8] {
            logger.log_metrics(&metrics(&[("loss", 1.0)]), step).unwrap();
        }
        assert!(!file.exists());
        // Step 11 passes step 9, the one that flushes: written although 12 % 10 != 0.
        logger.log_metrics(&metrics(&[("loss", 1.0)]), 11).unwrap();
        assert_eq!(read_rows(&file).1.len(), 4);
        logger.log_metrics(&metrics(&[("loss", 1.0)]), 14).unwrap();
        assert_eq!(read_rows(&file).1.len(), 4);
        logger.save().unwrap();
        assert_eq!(read_rows(&file).1.len(), 5);
    }

    #[test]
    fn values_read_back_exactly() {
        let values = [
            0.1,
            1.0 / 3.0,
            -2.5,
            123_456.789,
            1e-4,
            1e-5,
            1.234_567_890_123_456_7e-7,
            9_007_199_254_740_993.0,
            1e16,
            1.5e300,
            f64::MAX,
            f64::MIN_POSITIVE,
            5e-324,
            0.0,
            -0.0,
            3.0,
        ];
        let root = tempfile::tempdir().unwrap();
        let mut logger = CsvLogger::new(root.path());
        let file = logger.log_dir().unwrap().join("metrics.csv");
        for (step, value) in values.iter().enumerate() {
            logger.log_metrics(&metrics(&[("x", *value)]), step).unwrap();
        }
        logger.finalize("success").unwrap();
        let (_, rows) = read_rows(&file);
        for (row, value) in rows.iter().zip(values) {
            let back: f64 = row["x"].parse().unwrap();
            assert_eq!(back.to_bits(), value.to_bits(), "{value:e} written as {}", row["x"]);
        }
        // Python's forms, except integral values.
        for (value, text) in [
            (0.1, "0.1"),
            (1e-4, "0.0001"),
            (1e-5, "1e-05"),
            (1e16, "1e+16"),
            (1.5e300, "1.5e+300"),
            (-2.5e-7, "-2.5e-07"),
            (1e15, "1000000000000000"),
            (3.0, "3"),
        ] {
            assert_eq!(format_value(value), text);
        }
    }

    #[test]
    fn nan_and_infinities_as_python_writes_them() {
        let root = tempfile::tempdir().unwrap();
        let mut logger = CsvLogger::new(root.path());
        let file = logger.log_dir().unwrap().join("metrics.csv");
        logger
            .log_metrics(
                &metrics(&[("a", f64::NAN), ("b", f64::INFINITY), ("c", f64::NEG_INFINITY)]),
                0,
            )
            .unwrap();
        logger.save().unwrap();
        assert_eq!(read(&file), "a,b,c,step\r\nnan,inf,-inf,0\r\n");
    }

    #[test]
    fn names_with_commas_and_quotes_are_quoted() {
        let root = tempfile::tempdir().unwrap();
        let mut logger = CsvLogger::new(root.path());
        let file = logger.log_dir().unwrap().join("metrics.csv");
        logger.log_metrics(&metrics(&[("a,\"b\"", 1.0)]), 0).unwrap();
        logger.save().unwrap();
        logger.log_metrics(&metrics(&[("z", 2.0)]), 1).unwrap();
        logger.save().unwrap();
        assert_eq!(read(&file), "\"a,\"\"b\"\"\",step,z\r\n1,0,\r\n,1,2\r\n");
        assert_eq!(read_rows(&file).0, ["a,\"b\"", "step", "z"]);
    }

    #[test]
    fn hyperparameters_go_to_hparams_yaml_and_add_up() {
        let root = tempfile::tempdir().unwrap();
        let mut logger = CsvLogger::new(root.path());
        let file = logger.log_dir().unwrap().join("hparams.yaml");
        logger
            .log_hyperparams(&serde_json::json!({"hidden": 128, "lr": 0.001}))
            .unwrap();
        let text = read(&file);
        assert!(text.contains("hidden: 128") && text.contains("lr: 0.001"), "{text}");
        logger
            .log_hyperparams(&serde_json::json!({"lr": 0.01, "name": "mlp"}))
            .unwrap();
        let back: JsonValue = serde_saphyr::from_str(&read(&file)).unwrap();
        assert_eq!(back, serde_json::json!({"hidden": 128, "lr": 0.01, "name": "mlp"}));
    }

    #[test]
    fn an_unwritable_save_dir_is_an_error_naming_the_path() {
        let root = tempfile::tempdir().unwrap();
        // A file where the save directory should be: no directory can be made under it, also
        // for root.
        let blocked = root.path().join("not_a_dir");
        std::fs::write(&blocked, b"").unwrap();
        let mut logger = CsvLogger::new(&blocked);
        for message in [
            logger.log_dir().unwrap_err().to_string(),
            logger
                .log_metrics(&metrics(&[("loss", 1.0)]), 99)
                .unwrap_err()
                .to_string(),
            logger
                .log_hyperparams(&serde_json::json!({"lr": 1.0}))
                .unwrap_err()
                .to_string(),
        ] {
            assert!(message.contains("not_a_dir"), "{message}");
        }

        // metrics.csv itself cannot be written: a directory is in its place.
        let mut logger = CsvLogger::new(root.path()).flush_logs_every_n_steps(1);
        logger.log_dir().unwrap();
        let file = root.path().join("lightning_logs/version_0/metrics.csv");
        std::fs::create_dir(&file).unwrap();
        let message = logger
            .log_metrics(&metrics(&[("loss", 1.0)]), 0)
            .unwrap_err()
            .to_string();
        assert!(message.contains("metrics.csv"), "{message}");
        // The row stays buffered: written once the path is free.
        std::fs::remove_dir(&file).unwrap();
        logger.finalize("success").unwrap();
        assert_eq!(read(&file), "loss,step\r\n1,0\r\n");
    }

    #[test]
    fn loggers_take_the_next_versions_names_and_start_metrics_afresh() {
        let root = tempfile::tempdir().unwrap();
        let mut first = CsvLogger::new(root.path());
        let mut second = CsvLogger::new(root.path());
        assert_eq!(first.log_dir().unwrap(), root.path().join("lightning_logs/version_0"));
        assert_eq!(second.log_dir().unwrap(), root.path().join("lightning_logs/version_1"));
        assert_eq!(Logger::name(&first), "lightning_logs");

        let mut named = CsvLogger::new(root.path())
            .name("exp")
            .version(Version::Named("run".into()));
        assert_eq!(named.log_dir().unwrap(), root.path().join("exp/run"));
        assert_eq!(Logger::name(&named), "exp");

        // A metrics.csv from an earlier run in the same version is replaced, as Lightning does.
        let dir = root.path().join("lightning_logs/version_7");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("metrics.csv"), "old,step\r\n1,0\r\n").unwrap();
        let mut again = CsvLogger::new(root.path()).version(Version::Number(7));
        again.log_metrics(&metrics(&[("new", 2.0)]), 0).unwrap();
        assert!(!dir.join("metrics.csv").exists());
        again.finalize("success").unwrap();
        assert_eq!(read(&dir.join("metrics.csv")), "new,step\r\n2,0\r\n");

        // In an existing directory (the trainer's run directory), as it is.
        let mut existing = CsvLogger::in_dir(LoggerDir::existing(&dir));
        assert_eq!(existing.log_dir().unwrap(), dir);
    }

    #[test]
    fn finalize_without_rows_writes_nothing() {
        let root = tempfile::tempdir().unwrap();
        let mut logger = CsvLogger::new(root.path());
        logger.finalize("failed").unwrap();
        assert!(!root.path().join("lightning_logs").exists());
    }
}
