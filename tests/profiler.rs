//! The profiler, as Lightning's `profiler="simple"` and `"advanced"`: time per hook and loop
//! phase printed and written to `<run dir>/fit-profiler.txt` at the end of `fit`, and a Chrome
//! trace with one track per thread; nothing when it is off; the user's own subscriber keeps
//! hearing events.

mod common;

use burn::nn::{Linear, LinearConfig};
use burn::optim::SgdConfig;
use burn_lightning::prelude::*;
use common::{Pair, file_names, pair_loader};
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use tracing::Subscriber;
use tracing_subscriber::Registry;
use tracing_subscriber::layer::{Context, Layer, Layered, SubscriberExt};

#[lightning_module]
#[derive(Module, Debug)]
pub struct Net {
    layer: Linear,
}

#[lightning_module]
impl Net {
    #[hook]
    fn training_step(&self, batch: Pair, _batch_idx: usize) -> Tensor<1> {
        (self.layer.forward(batch.x) - batch.y).powi_scalar(2).mean()
    }
    #[hook]
    fn on_train_start(&mut self) {
        tracing::warn!(target: "user_code", "training starts");
    }
    #[hook]
    fn validation_step(&self, batch: Pair, _batch_idx: usize, cx: &mut StepContext) {
        cx.log(
            "val_loss",
            (self.layer.forward(batch.x) - batch.y).powi_scalar(2).mean(),
        );
    }
    #[hook]
    fn test_step(&self, batch: Pair, _batch_idx: usize, cx: &mut StepContext) {
        cx.log(
            "test_loss",
            (self.layer.forward(batch.x) - batch.y).powi_scalar(2).mean(),
        );
    }
    #[hook]
    fn configure_optimizers(&self) -> OptimizerConfig {
        OptimizerConfig::new(SgdConfig::new().init(), 0.01)
    }
}

fn net() -> Net {
    Net {
        layer: LinearConfig::new(32, 2).init(&Device::default()),
    }
}

/// 4 training batches and 2 validation batches an epoch.
fn data() -> Loaders<Pair> {
    Loaders::fit(pair_loader(16, 4), Some(pair_loader(8, 4)))
}

/// Two epochs, no sanity check; checkpoints on (the writer thread runs).
fn builder(root: &Path) -> TrainerBuilder<Net> {
    Trainer::builder()
        .default_root_dir(root)
        .enable_progress_bar(false)
        .enable_model_summary(false)
        .num_sanity_val_steps(0)
        .max_epochs(2)
}

/// A row of the report: mean (s), calls, total (s), percentage.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    mean: f64,
    calls: u64,
    total: f64,
    percent: f64,
}

/// The report's action rows by action, and its `Total` row's calls and seconds.
fn parse_report(report: &str) -> (HashMap<String, Row>, u64, f64) {
    let mut rows = HashMap::new();
    let mut total = None;
    for line in report.lines().filter(|l| l.starts_with('|')) {
        let cells: Vec<&str> = line.split('|').map(str::trim).filter(|c| !c.is_empty()).collect();
        assert_eq!(cells.len(), 5, "five columns: {line}");
        match cells[0] {
            "Action" => assert_eq!(
                cells[1..],
                ["Mean duration (s)", "Num calls", "Total time (s)", "Percentage %"]
            ),
            "Total" => {
                assert_eq!(cells[4], "100 %");
                total = Some((cells[2].parse().unwrap(), cells[3].parse().unwrap()));
            }
            action => {
                let row = Row {
                    mean: cells[1].parse().unwrap(),
                    calls: cells[2].parse().unwrap(),
                    total: cells[3].parse().unwrap(),
                    percent: cells[4].parse().unwrap(),
                };
                assert!(rows.insert(action.to_string(), row).is_none(), "{action} listed once");
            }
        }
    }
    let (calls, seconds) = total.expect("a Total row");
    (rows, calls, seconds)
}

#[test]
fn simple_reports_time_per_hook_and_loop_phase_in_the_run_directory() {
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = builder(dir.path()).profiler("simple").build().unwrap();
    trainer.fit(net(), data()).unwrap();
    let run_dir = trainer.log_dir().unwrap().to_path_buf();
    assert!(
        !file_names(&run_dir).contains(&"fit-trace.json".to_string()),
        "simple writes no trace"
    );
    let report = std::fs::read_to_string(run_dir.join("fit-profiler.txt")).unwrap();
    assert!(report.starts_with("FIT Profiler Report"), "{report}");
    let (rows, total_calls, wall) = parse_report(&report);
    let calls = |action: &str| rows.get(action).map(|r| r.calls);

    // Two epochs of 4 training batches and 2 validation batches.
    assert_eq!(
        calls("[Strategy]SingleDeviceStrategy.training_step"),
        Some(8),
        "{report}"
    );
    assert_eq!(calls("[LightningModule]Net.optimizer_step"), Some(8), "{report}");
    assert_eq!(
        calls("[Strategy]SingleDeviceStrategy.validation_step"),
        Some(4),
        "{report}"
    );
    assert_eq!(calls("run_training_epoch"), Some(2), "{report}");
    assert_eq!(calls("run_training_batch"), Some(8), "{report}");
    assert_eq!(calls("run_validation"), Some(2), "{report}");
    assert_eq!(calls("run_validation_batch"), Some(4), "{report}");
    assert_eq!(calls("[LightningModule]Net.on_train_start"), Some(1), "{report}");
    // Lightning times each fetch of a batch: one per batch, not the fetch that finds the
    // loader exhausted.
    assert_eq!(calls("[_TrainingEpochLoop].train_dataloader_next"), Some(8), "{report}");
    assert_eq!(calls("[_EvaluationLoop].val_next"), Some(4), "{report}");
    // The module's steps and backward as the strategy runs them, as Lightning 2.6 names them.
    assert_eq!(calls("[Strategy]SingleDeviceStrategy.backward"), Some(8), "{report}");
    assert!(
        !rows.keys().any(|action| action.starts_with("[LightningModule]Net.")
            && action.ends_with("_step")
            && !action.ends_with("optimizer_step")),
        "{report}"
    );
    assert_eq!(
        calls("[Callback]ModelCheckpoint.on_validation_end"),
        Some(2),
        "{report}"
    );
    // The checkpoint writer's thread is timed too: one checkpoint an epoch.
    assert_eq!(calls("write_checkpoint"), Some(2), "{report}");

    assert_eq!(total_calls, rows.values().map(|r| r.calls).sum::<u64>());
    for (action, row) in &rows {
        assert!((0.0..=100.0).contains(&row.percent), "{action}: {row:?}\n{report}");
        assert!(row.total <= wall, "{action} within the run: {row:?}\n{report}");
        let mean = row.total / row.calls as f64;
        assert!((row.mean - mean).abs() <= 1e-5 + mean * 1e-3, "{action}: {row:?}");
    }
    // Nested phases contain what runs inside them.
    let share = |action: &str| rows[action].percent;
    assert!(share("run_training_epoch") >= share("run_training_batch"), "{report}");
    assert!(
        share("run_training_batch") >= share("[LightningModule]Net.optimizer_step"),
        "{report}"
    );
    assert!(
        share("[LightningModule]Net.optimizer_step") >= share("[Strategy]SingleDeviceStrategy.training_step"),
        "{report}"
    );
    // Largest share first.
    let order: Vec<f64> = report
        .lines()
        .filter(|l| l.starts_with('|'))
        .skip(2)
        .map(|l| l.split('|').nth(5).unwrap().trim().parse().unwrap())
        .collect();
    assert!(order.windows(2).all(|w| w[0] >= w[1]), "{report}");
}

#[test]
fn validate_and_test_write_their_own_stage_reports_and_a_second_fit_appends() {
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = builder(dir.path())
        .max_epochs(1)
        .profiler(Profiler::Simple)
        .build()
        .unwrap();
    let mut model = trainer.fit(net(), data()).unwrap();
    let run_dir = trainer.log_dir().unwrap().to_path_buf();
    trainer.test(&mut model, Loaders::test(pair_loader(12, 4))).unwrap();
    let report = std::fs::read_to_string(run_dir.join("test-profiler.txt")).unwrap();
    assert!(report.starts_with("TEST Profiler Report"), "{report}");
    let (rows, _, _) = parse_report(&report);
    assert_eq!(rows["[Strategy]SingleDeviceStrategy.test_step"].calls, 3, "{report}");
    assert_eq!(rows["run_test"].calls, 1, "{report}");
    assert!(
        !rows.contains_key("[Strategy]SingleDeviceStrategy.training_step"),
        "each run reports its own"
    );

    // As Lightning appends to its file: the second fit's report follows the first's.
    trainer.fit(model, data()).unwrap();
    let both = std::fs::read_to_string(run_dir.join("fit-profiler.txt")).unwrap();
    assert_eq!(both.matches("FIT Profiler Report").count(), 2, "{both}");
}

/// The trace's events, after checking the document's shape.
fn trace_events(path: &Path) -> Vec<Value> {
    let trace: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).expect("the trace is JSON");
    let events = trace["traceEvents"].as_array().expect("traceEvents").clone();
    for event in &events {
        let phase = event["ph"].as_str().expect("every event has a phase");
        assert!(
            event["name"].is_string() && event["pid"].is_u64() && event["tid"].is_u64(),
            "{event}"
        );
        match phase {
            "X" => assert!(
                event["ts"].as_f64().is_some_and(|t| t >= 0.0) && event["dur"].as_f64().is_some_and(|d| d >= 0.0),
                "{event}"
            ),
            "M" => assert!(event["args"].is_object(), "{event}"),
            other => panic!("unexpected phase {other}: {event}"),
        }
    }
    events
}

fn complete_events<'e>(events: &'e [Value], name: &str) -> Vec<&'e Value> {
    events.iter().filter(|e| e["ph"] == "X" && e["name"] == name).collect()
}

#[test]
fn advanced_writes_a_chrome_trace_with_a_track_per_thread() {
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = builder(dir.path()).profiler("advanced").build().unwrap();
    trainer.fit(net(), data()).unwrap();
    let run_dir = trainer.log_dir().unwrap().to_path_buf();
    assert!(file_names(&run_dir).contains(&"fit-profiler.txt".to_string()));
    let events = trace_events(&run_dir.join("fit-trace.json"));

    let threads: HashMap<u64, &str> = events
        .iter()
        .filter(|e| e["ph"] == "M" && e["name"] == "thread_name")
        .map(|e| (e["tid"].as_u64().unwrap(), e["args"]["name"].as_str().unwrap()))
        .collect();
    assert!(threads.len() >= 2, "{threads:?}");
    let track = |prefix: &str| {
        *threads
            .iter()
            .find(|(_, name)| name.starts_with(prefix))
            .unwrap_or_else(|| panic!("a {prefix} track: {threads:?}"))
            .0
    };
    let (trainer_track, writer_track) = (track("trainer"), track("checkpoint-writer"));

    let steps = complete_events(&events, "[Strategy]SingleDeviceStrategy.training_step");
    assert_eq!(steps.len(), 8);
    assert!(steps.iter().all(|e| e["tid"] == trainer_track));
    let writes = complete_events(&events, "write_checkpoint");
    assert_eq!(writes.len(), 2);
    assert!(writes.iter().all(|e| e["tid"] == writer_track));

    // Every training step lies inside a training batch of its thread, as Perfetto nests them.
    let batches = complete_events(&events, "run_training_batch");
    assert_eq!(batches.len(), 8);
    let span = |e: &Value| {
        (
            e["ts"].as_f64().unwrap(),
            e["ts"].as_f64().unwrap() + e["dur"].as_f64().unwrap(),
        )
    };
    for step in &steps {
        let (start, end) = span(step);
        assert!(
            batches.iter().any(|b| {
                let (b_start, b_end) = span(b);
                b_start <= start && end <= b_end + 1e-3
            }),
            "{step} lies in a batch"
        );
    }
}

/// Fails the fit at its first validation, after the first epoch's training batches.
struct FailAtValidation;

#[derive(Debug, thiserror::Error)]
#[error("no validation today")]
struct Refused;

impl Callback<Net> for FailAtValidation {
    fn on_validation_start(&mut self, _module: &mut Net, cx: &mut EpochContext<'_>) {
        cx.fail(Error::user(Refused));
    }
}

#[test]
fn a_failed_fit_still_writes_its_report_and_a_complete_trace() {
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = builder(dir.path())
        .profiler(Profiler::Advanced)
        .callback(FailAtValidation)
        .build()
        .unwrap();
    let failed = trainer.fit(net(), data()).unwrap_err();
    assert!(failed.to_string().contains("no validation today"), "{failed}");
    let run_dir = trainer.log_dir().unwrap().to_path_buf();
    let events = trace_events(&run_dir.join("fit-trace.json"));
    assert_eq!(
        complete_events(&events, "[Strategy]SingleDeviceStrategy.training_step").len(),
        4
    );
    let report = std::fs::read_to_string(run_dir.join("fit-profiler.txt")).unwrap();
    assert_eq!(parse_report(&report).0["run_training_batch"].calls, 4, "{report}");
}

#[test]
fn off_by_default_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = builder(dir.path()).build().unwrap();
    trainer.fit(net(), data()).unwrap();
    let names = file_names(trainer.log_dir().unwrap());
    assert!(
        !names.iter().any(|n| n.contains("profiler") || n.contains("trace")),
        "{names:?}"
    );
}

#[test]
fn an_unknown_profiler_is_a_config_error_naming_the_accepted_values() {
    let dir = tempfile::tempdir().unwrap();
    let error = builder(dir.path()).profiler("fancy").build().err().unwrap();
    assert!(matches!(error, Error::Config { flag: "profiler", .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains("\"fancy\"") && message.contains("\"simple\"") && message.contains("\"advanced\""),
        "{message}"
    );
}

/// Collects the messages of the events it hears.
#[derive(Clone, Default)]
struct Heard(Arc<Mutex<Vec<String>>>);

impl<S: Subscriber> Layer<S> for Heard {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        struct Message(String);
        impl tracing::field::Visit for Message {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.0 = format!("{value:?}");
                }
            }
        }
        let mut message = Message(String::new());
        event.record(&mut message);
        self.0.lock().unwrap().push(message.0);
    }
}

#[test]
fn the_users_subscriber_keeps_hearing_events_and_is_back_after_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let heard = Heard::default();
    let subscriber = tracing_subscriber::registry().with(heard.clone());
    tracing::subscriber::with_default(subscriber, || {
        let users = || tracing::dispatcher::get_default(|d| d.is::<Layered<Heard, Registry>>());
        assert!(users());
        let mut trainer = builder(dir.path()).max_epochs(1).profiler("simple").build().unwrap();
        trainer.fit(net(), data()).unwrap();
        assert!(users(), "the user's subscriber is the thread's again");
        tracing::info!("after the fit");
        assert!(trainer.log_dir().unwrap().join("fit-profiler.txt").exists());
    });
    let heard = heard.0.lock().unwrap();
    assert!(heard.iter().any(|m| m == "training starts"), "{heard:?}");
    assert_eq!(heard.last().map(String::as_str), Some("after the fit"));
}
