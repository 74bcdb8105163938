//! `TensorBoardLogger` writes event files TensorBoard reads: a run with hyperparameters and
//! several metrics over several steps (`epoch`, a NaN, an infinity, a large value) is read back
//! here by hand (TFRecord framing with an independent CRC32C, the first record's file version,
//! every scalar) and, when `REFERENCE_PYTHON` names a python with PyPI's `tensorboard`
//! (`scripts/python_venv.sh` makes one; `.ci/run` sets it), by TensorBoard itself through
//! `scripts/check_tensorboard.py`, which must also fail on a wrong expected value.

use burn_lightning::loggers::{Logger, TensorBoardLogger};
use burn_lightning::{JsonValue, Version};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// CRC32C (Castagnoli, reflected polynomial 0x82F63B78), bit by bit: independent of the crate
/// the logger uses.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[allow(clippy::manual_rotate, reason = "the mask as TFRecord's spec writes it")]
fn masked(crc: u32) -> u32 {
    ((crc >> 15) | (crc << 17)).wrapping_add(0xa282_ead8)
}

#[test]
fn the_reference_crc_matches_the_known_vector() {
    assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    assert_eq!(masked(crc32c(b"123456789")), 0xC78A_B0E5);
}

/// A protocol buffer field's value, by wire type.
#[derive(Debug, Clone, Copy)]
enum Field<'a> {
    Varint(u64),
    Fixed64([u8; 8]),
    Bytes(&'a [u8]),
    Fixed32([u8; 4]),
}

fn varint(buf: &mut &[u8]) -> u64 {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = buf.split_first().expect("truncated varint");
        *buf = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return value;
        }
    }
    panic!("varint longer than 10 bytes")
}

/// The fields of one message, in order.
fn fields(mut buf: &[u8]) -> Vec<(u64, Field<'_>)> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let key = varint(&mut buf);
        let field = match key & 7 {
            0 => Field::Varint(varint(&mut buf)),
            1 => {
                let (v, rest) = buf.split_at(8);
                buf = rest;
                Field::Fixed64(v.try_into().unwrap())
            }
            2 => {
                let len = varint(&mut buf) as usize;
                let (v, rest) = buf.split_at(len);
                buf = rest;
                Field::Bytes(v)
            }
            5 => {
                let (v, rest) = buf.split_at(4);
                buf = rest;
                Field::Fixed32(v.try_into().unwrap())
            }
            other => panic!("unexpected wire type {other}"),
        };
        out.push((key >> 3, field));
    }
    out
}

/// The records of a TFRecord file, each length and CRC checked.
fn records(bytes: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        assert!(rest.len() >= 12, "truncated record header");
        let len_bytes = &rest[..8];
        let len = u64::from_le_bytes(len_bytes.try_into().unwrap()) as usize;
        let len_crc = u32::from_le_bytes(rest[8..12].try_into().unwrap());
        assert_eq!(len_crc, masked(crc32c(len_bytes)), "length CRC of record {}", out.len());
        assert!(rest.len() >= 16 + len, "truncated record {}", out.len());
        let data = &rest[12..12 + len];
        let data_crc = u32::from_le_bytes(rest[12 + len..16 + len].try_into().unwrap());
        assert_eq!(data_crc, masked(crc32c(data)), "data CRC of record {}", out.len());
        out.push(data);
        rest = &rest[16 + len..];
    }
    out
}

/// Every `simple_value` of the events, by tag: (step, value).
fn scalars(events: &[&[u8]]) -> BTreeMap<String, Vec<(i64, f32)>> {
    let mut out: BTreeMap<String, Vec<(i64, f32)>> = BTreeMap::new();
    for event in events {
        let mut step = 0;
        let mut summary = None;
        for (number, field) in fields(event) {
            match (number, field) {
                (2, Field::Varint(v)) => step = v as i64,
                (5, Field::Bytes(b)) => summary = Some(b),
                _ => {}
            }
        }
        for (number, field) in fields(summary.unwrap_or_default()) {
            let (1, Field::Bytes(value)) = (number, field) else {
                continue;
            };
            let mut tag = None;
            let mut simple = None;
            for (number, field) in fields(value) {
                match (number, field) {
                    (1, Field::Bytes(b)) => tag = Some(String::from_utf8(b.to_vec()).unwrap()),
                    (2, Field::Fixed32(b)) => simple = Some(f32::from_le_bytes(b)),
                    _ => {}
                }
            }
            if let (Some(tag), Some(simple)) = (tag, simple) {
                out.entry(tag).or_default().push((step, simple));
            }
        }
    }
    out
}

/// The expected JSON's form of a float32: its exact value, or "nan", "inf", "-inf".
fn json_value(v: f32) -> JsonValue {
    if v.is_nan() {
        json!("nan")
    } else if v.is_infinite() {
        json!(if v > 0.0 { "inf" } else { "-inf" })
    } else {
        json!(f64::from(v))
    }
}

struct Run {
    log_dir: PathBuf,
    expected: JsonValue,
    scalars: BTreeMap<String, Vec<(i64, f32)>>,
}

/// Writes the run with `TensorBoardLogger` and returns what TensorBoard should read.
fn write_run(save_dir: &Path) -> Run {
    let mut logger = TensorBoardLogger::new(save_dir).name("tb").version(Version::Number(0));
    let log_dir = logger.log_dir().unwrap();
    assert_eq!(log_dir, save_dir.join("tb/version_0"));
    let hparams = json!({
        "lr": 0.001,
        "hidden": 128,
        "optimizer": "adam",
        "nesterov": true,
        "betas": [0.9, 0.999],
        "schedule": {"gamma": 0.5},
    });
    logger.log_hyperparams(&hparams).unwrap();

    // What TensorBoard should show: hp_metric = -1 at step 0 (Lightning's default), then these.
    let mut scalars: BTreeMap<String, Vec<(i64, f32)>> = BTreeMap::new();
    scalars.insert("hp_metric".into(), vec![(0, -1.0)]);
    for step in 0..6usize {
        let mut metrics = BTreeMap::new();
        metrics.insert("train_loss".to_string(), 1.0 / (step as f64 + 1.0) + 0.1);
        metrics.insert("epoch".to_string(), (step / 2) as f64);
        if step % 2 == 1 {
            metrics.insert("val/acc".to_string(), 0.5 + step as f64 * 0.05);
        }
        if step == 3 {
            metrics.insert("diverged".to_string(), f64::NAN);
            metrics.insert("grad_norm".to_string(), 1.0e30);
            metrics.insert("overflow".to_string(), 1.0e300);
            metrics.insert("underflow".to_string(), f64::NEG_INFINITY);
        }
        logger.log_metrics(&metrics, step * 10).unwrap();
        for (name, value) in metrics {
            scalars
                .entry(name)
                .or_default()
                .push(((step * 10) as i64, value as f32));
        }
        if step == 2 {
            logger.save().unwrap();
        }
    }
    logger.finalize("success").unwrap();

    let expected = json!({
        "scalars": scalars
            .iter()
            .map(|(tag, points)| {
                let points: Vec<JsonValue> = points.iter().map(|&(s, v)| json!([s, json_value(v)])).collect();
                (tag.clone(), JsonValue::Array(points))
            })
            .collect::<serde_json::Map<_, _>>(),
        "hparams": {
            "lr": 0.001,
            "hidden": 128,
            "optimizer": "adam",
            "nesterov": true,
            "betas": "[0.9,0.999]",
            "schedule": "{\"gamma\":0.5}",
        },
        "metrics": ["hp_metric"],
    });
    Run {
        log_dir,
        expected,
        scalars,
    }
}

fn event_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("events.out.tfevents.")
        })
        .collect();
    files.sort();
    files
}

fn same_bits(a: &[(i64, f32)], b: &[(i64, f32)]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.0 == y.0 && (x.1.to_bits() == y.1.to_bits() || (x.1.is_nan() && y.1.is_nan())))
}

/// Runs the TensorBoard check on `log_dir` against `expected`; its exit success and output.
fn tensorboard_check(python: &str, log_dir: &Path, expected: &JsonValue) -> (bool, String) {
    let expected_path = log_dir.parent().unwrap().join("expected.json");
    std::fs::write(&expected_path, serde_json::to_vec_pretty(expected).unwrap()).unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = Command::new(python)
        .arg(root.join("scripts/check_tensorboard.py"))
        .arg(log_dir)
        .arg(&expected_path)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{python}` (REFERENCE_PYTHON): {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[test]
fn tensorboard_reads_the_run() {
    let save_dir = tempfile::tempdir().unwrap();
    let run = write_run(save_dir.path());

    // hparams.yaml, as Lightning writes it.
    let yaml = std::fs::read_to_string(run.log_dir.join("hparams.yaml")).unwrap();
    assert!(yaml.contains("optimizer: adam"), "{yaml}");

    // The framing, the file version and every scalar, read back here.
    let files = event_files(&run.log_dir);
    assert_eq!(files.len(), 1, "{files:?}");
    let name = files[0].file_name().unwrap().to_str().unwrap().to_string();
    let parts: Vec<&str> = name.trim_start_matches("events.out.tfevents.").split('.').collect();
    assert!(parts.len() >= 4, "{name}");
    assert!(parts[0].len() >= 10 && parts[0].parse::<u64>().is_ok(), "{name}");
    assert_eq!(parts[parts.len() - 2], std::process::id().to_string(), "{name}");
    let bytes = std::fs::read(&files[0]).unwrap();
    let events = records(&bytes);
    // file version + hp_metric + 3 hparams summaries + the metrics.
    let logged: usize = run.scalars.values().map(Vec::len).sum::<usize>() - 1;
    assert_eq!(events.len(), 5 + logged);
    let first = fields(events[0]);
    let (1, Field::Fixed64(wall_time)) = first[0] else {
        panic!("first event: {first:?}")
    };
    assert!(f64::from_le_bytes(wall_time) > 1.7e9, "wall_time {first:?}");
    assert!(
        first.iter().any(|f| matches!(f, (3, Field::Bytes(b"brain.Event:2")))),
        "first event: {first:?}"
    );
    let read = scalars(&events);
    assert_eq!(read.keys().collect::<Vec<_>>(), run.scalars.keys().collect::<Vec<_>>());
    for (tag, points) in &run.scalars {
        assert!(
            same_bits(&read[tag], points),
            "{tag}: read {:?}, wrote {points:?}",
            read[tag]
        );
    }
    assert!(read["diverged"][0].1.is_nan());
    assert_eq!(read["overflow"][0].1, f32::INFINITY);

    // TensorBoard itself.
    let Ok(python) = std::env::var("REFERENCE_PYTHON") else {
        eprintln!("REFERENCE_PYTHON is not set: skipping the check by TensorBoard");
        return;
    };
    let (ok, output) = tensorboard_check(&python, &run.log_dir, &run.expected);
    println!("{output}");
    assert!(ok, "TensorBoard does not read the run as expected:\n{output}");

    // And the check notices a value one float32 ulp off.
    let mut wrong = run.expected.clone();
    let next = f32::from_bits(run.scalars["train_loss"][2].1.to_bits() + 1);
    wrong["scalars"]["train_loss"][2][1] = json!(f64::from(next));
    let (ok, output) = tensorboard_check(&python, &run.log_dir, &wrong);
    println!("with a wrong expected value:\n{output}");
    assert!(
        !ok && output.contains("'train_loss'"),
        "the check missed a wrong value:\n{output}"
    );

    // And a wrong hyperparameter.
    let mut wrong = run.expected.clone();
    wrong["hparams"]["optimizer"] = json!("sgd");
    let (ok, output) = tensorboard_check(&python, &run.log_dir, &wrong);
    println!("with a wrong expected hyperparameter:\n{output}");
    assert!(
        !ok && output.contains("'optimizer'"),
        "the check missed a wrong hyperparameter:\n{output}"
    );
}

/// A module that logs per step, both ways and per epoch, for the trainer test below.
mod trained {
    use burn::nn::{Linear, LinearConfig};
    use burn::optim::SgdConfig;
    use burn_lightning::prelude::*;

    #[derive(Clone, Debug)]
    pub struct Pair {
        pub x: Tensor<2>,
        pub y: Tensor<2>,
    }

    #[lightning_module]
    #[derive(Module, Debug)]
    pub struct Regressor {
        layer: Linear,
        /// SGD's learning rate.
        #[hparam(default = 0.05)]
        pub lr: f64,
    }

    impl Regressor {
        pub fn new() -> Self {
            Self {
                layer: LinearConfig::new(4, 1).init(&Device::default()),
                lr: 0.05,
            }
        }
        fn loss(&self, batch: Pair) -> Tensor<1> {
            (self.layer.forward(batch.x) - batch.y).powi_scalar(2).mean()
        }
    }

    #[lightning_module]
    impl Regressor {
        #[hook]
        fn training_step(&self, batch: Pair, _batch_idx: usize, cx: &mut StepContext) -> Tensor<1> {
            let loss = self.loss(batch);
            cx.log_with("train_loss", &loss, LogOptions::new().on_step(true).on_epoch(true));
            loss
        }
        #[hook]
        fn validation_step(&self, batch: Pair, _batch_idx: usize, cx: &mut StepContext) {
            cx.log("val_loss", self.loss(batch));
        }
        #[hook]
        fn configure_optimizers(&self) -> OptimizerConfig {
            OptimizerConfig::new(SgdConfig::new().init(), self.lr)
        }
    }

    /// `n` batches of 2 items.
    pub fn loader(n: usize) -> Loader<Pair> {
        use burn::data::dataloader::DataLoaderBuilder;
        use burn::data::dataloader::batcher::Batcher;
        use burn::data::dataset::InMemDataset;
        #[derive(Clone)]
        struct B;
        impl Batcher<f32, Pair> for B {
            fn batch(&self, items: Vec<f32>, device: &Device) -> Pair {
                let n = items.len();
                let x: Vec<f32> = items.iter().flat_map(|v| [*v, -v, v * 0.5, 1.0]).collect();
                Pair {
                    x: Tensor::from_data(TensorData::new(x, [n, 4]), device),
                    y: Tensor::from_data(TensorData::new(items, [n, 1]), device),
                }
            }
        }
        let items: Vec<f32> = (0..2 * n).map(|i| (i as f32 * 0.37).sin()).collect();
        DataLoaderBuilder::new(B).batch_size(2).build(InMemDataset::new(items))
    }
}

#[test]
fn the_default_logger_writes_what_the_trainer_logged_and_tensorboard_reads_it() {
    use burn_lightning::prelude::*;
    let root = tempfile::tempdir().unwrap();
    // No logger given: the trainer's default TensorBoard logger, in the run directory.
    let mut trainer = Trainer::builder()
        .default_root_dir(root.path())
        .enable_progress_bar(false)
        .max_epochs(3)
        .log_every_n_steps(2)
        .build()
        .unwrap();
    trainer
        .fit(
            trained::Regressor::new(),
            Loaders::fit(trained::loader(5), Some(trained::loader(2))),
        )
        .unwrap();
    let run_dir = root.path().join("lightning_logs/version_0");
    assert_eq!(trainer.log_dir(), Some(run_dir.as_path()));
    assert_eq!(trainer.loggers().len(), 1);
    assert_eq!(trainer.loggers()[0].name(), "lightning_logs");

    // Every second batch that stepped (counted over the whole fit: 15 batches), the epoch values
    // and validation at the epoch's last step, `epoch` with all of them: what Lightning's
    // connector sends. Read back here, every value bit for bit with what the
    // trainer reports as logged last.
    let files = event_files(&run_dir);
    assert_eq!(files.len(), 1, "{files:?}");
    let bytes = std::fs::read(&files[0]).unwrap();
    let read = scalars(&records(&bytes));
    let steps = |tag: &str| read[tag].iter().map(|(s, _)| *s).collect::<Vec<_>>();
    assert_eq!(steps("train_loss_step"), [1, 3, 5, 7, 9, 11, 13]);
    assert_eq!(steps("train_loss_epoch"), [4, 9, 14]);
    assert_eq!(steps("val_loss"), [4, 9, 14]);
    assert_eq!(steps("hp_metric"), [0]);
    let epochs: Vec<f32> = read["epoch"].iter().map(|(_, v)| *v).collect();
    assert_eq!(epochs, [0., 0., 0., 0., 1., 1., 1., 1., 1., 2., 2., 2., 2.]);
    for (tag, value) in trainer.logged_metrics().iter() {
        let last = read[tag.as_str()].last().unwrap().1;
        assert_eq!(last.to_bits(), (*value as f32).to_bits(), "{tag}");
    }

    let Ok(python) = std::env::var("REFERENCE_PYTHON") else {
        eprintln!("REFERENCE_PYTHON is not set: skipping the check by TensorBoard");
        return;
    };
    let expected = json!({
        "scalars": read
            .iter()
            .map(|(tag, points)| {
                let points: Vec<JsonValue> = points.iter().map(|&(s, v)| json!([s, json_value(v)])).collect();
                (tag.clone(), JsonValue::Array(points))
            })
            .collect::<serde_json::Map<_, _>>(),
        "hparams": {"lr": 0.05},
        "metrics": ["hp_metric"],
    });
    let (ok, output) = tensorboard_check(&python, &run_dir, &expected);
    println!("{output}");
    assert!(ok, "TensorBoard does not read the trainer's run as logged:\n{output}");
}
