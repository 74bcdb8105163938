//! Every metric of `burn_lightning::metrics`, in every configuration
//! `scripts/torchmetrics_fixture.py` lists, against torchmetrics 1.9.0 itself: the same inputs,
//! batch by batch, give the same `forward` (the batch's value) and `compute` (the value of all
//! batches) to 1e-6 (relative to the value above 1: torchmetrics sums in `f32`, whose last bit
//! at 50 is 4e-6, in its own order). The inputs and torchmetrics' values are in
//! `tests/fixtures/torchmetrics.json`; when `REFERENCE_PYTHON` names the python of
//! `scripts/python_venv.sh` (CI sets it), the script runs again and the committed file must be
//! what it writes.

use burn_lightning::metrics::{
    AUROC, Accuracy, Average, ConfusionMatrix, F1Score, MaxMetric, MeanAbsoluteError, MeanMetric, MeanSquaredError,
    MetricCollection, MinMetric, Normalize, Precision, Preds, Recall, SumMetric, Target, Task, Values,
};
use burn_lightning::prelude::*;
use serde_json::Value as Json;

const FIXTURE: &str = "tests/fixtures/torchmetrics.json";
const TOLERANCE: f64 = 1e-6;

fn fixture() -> Json {
    let text = std::fs::read_to_string(FIXTURE).expect("tests/fixtures/torchmetrics.json");
    serde_json::from_str(&text).expect("valid JSON")
}

/// A number of the fixture (`"nan"`, `"inf"` and `"-inf"` are strings there).
fn number(value: &Json) -> f64 {
    match value {
        Json::String(s) if s == "nan" => f64::NAN,
        Json::String(s) if s == "inf" => f64::INFINITY,
        Json::String(s) if s == "-inf" => f64::NEG_INFINITY,
        other => other.as_f64().unwrap_or_else(|| panic!("not a number: {other}")),
    }
}

/// Every number of a nested list, in order.
fn flat(value: &Json) -> Vec<f64> {
    match value {
        Json::Array(items) => items.iter().flat_map(flat).collect(),
        other => vec![number(other)],
    }
}

fn is_integral(value: &Json) -> bool {
    flat_json(value).iter().all(|v| v.is_i64() || v.is_u64())
}

fn flat_json(value: &Json) -> Vec<&Json> {
    match value {
        Json::Array(items) => items.iter().flat_map(flat_json).collect(),
        other => vec![other],
    }
}

fn floats(value: &Json, device: &Device) -> Tensor<2> {
    let values: Vec<f32> = flat(value).into_iter().map(|v| v as f32).collect();
    let rows = value.as_array().unwrap().len();
    let columns = values.len().checked_div(rows).unwrap_or(0);
    Tensor::from_data(TensorData::new(values, [rows, columns]), device)
}

fn ints(value: &Json, device: &Device) -> Tensor<2, Int> {
    let values: Vec<i64> = flat_json(value).into_iter().map(|v| v.as_i64().unwrap()).collect();
    let rows = value.as_array().unwrap().len();
    let columns = values.len() / rows;
    Tensor::from_data(TensorData::new(values, [rows, columns]), device)
}

fn preds(batch: &Json, device: &Device) -> Preds {
    Preds::Scores(floats(&batch["preds"], device))
}

fn target(batch: &Json, device: &Device) -> Target {
    let target = &batch["target"];
    if is_integral(target) {
        Target::Labels(ints(target, device))
    } else {
        Target::Values(floats(target, device))
    }
}

/// What the test asks of a metric of predictions and targets.
trait Scalar {
    fn forward_batch(&self, preds: Preds, target: Target) -> Tensor<1>;
    fn compute_value(&self) -> f64;
}

macro_rules! scalar {
    ($($ty:ty),*) => {$(
        impl Scalar for $ty {
            fn forward_batch(&self, preds: Preds, target: Target) -> Tensor<1> {
                self.forward(preds, target)
            }
            fn compute_value(&self) -> f64 {
                self.compute().unwrap()
            }
        }
    )*};
}
scalar!(
    Accuracy,
    Precision,
    Recall,
    F1Score,
    AUROC,
    MeanSquaredError,
    MeanAbsoluteError
);

fn task(args: &Json) -> Task {
    match args["task"].as_str().unwrap() {
        "binary" => Task::Binary,
        "multiclass" => Task::Multiclass {
            num_classes: args["num_classes"].as_u64().unwrap() as usize,
        },
        "multilabel" => Task::Multilabel {
            num_labels: args["num_labels"].as_u64().unwrap() as usize,
        },
        other => panic!("unknown task {other}"),
    }
}

fn average(args: &Json, default: Average) -> Average {
    match args["average"].as_str() {
        None => default,
        Some("micro") => Average::Micro,
        Some("macro") => Average::Macro,
        Some("weighted") => Average::Weighted,
        Some(other) => panic!("unknown average {other}"),
    }
}

macro_rules! stat_metric {
    ($ty:ident, $args:expr) => {{
        let args = $args;
        let mut metric = $ty::new(task(args)).average(average(args, Average::Micro));
        if let Some(k) = args["top_k"].as_u64() {
            metric = metric.top_k(k as usize);
        }
        if let Some(threshold) = args["threshold"].as_f64() {
            metric = metric.threshold(threshold);
        }
        Box::new(metric) as Box<dyn Scalar>
    }};
}

fn scalar_metric(name: &str, args: &Json) -> Box<dyn Scalar> {
    match name {
        "Accuracy" => stat_metric!(Accuracy, args),
        "Precision" => stat_metric!(Precision, args),
        "Recall" => stat_metric!(Recall, args),
        "F1Score" => stat_metric!(F1Score, args),
        "AUROC" => Box::new(AUROC::new(task(args)).average(average(args, Average::Macro))),
        "MeanSquaredError" => Box::new(MeanSquaredError::new().squared(args["squared"].as_bool().unwrap_or(true))),
        "MeanAbsoluteError" => Box::new(MeanAbsoluteError::new()),
        other => panic!("no metric {other}"),
    }
}

fn assert_close(case: &str, what: &str, ours: &[f64], theirs: &[f64]) {
    assert_eq!(
        ours.len(),
        theirs.len(),
        "{case}: {what}: {ours:?} vs torchmetrics {theirs:?}"
    );
    for (a, b) in ours.iter().zip(theirs) {
        let same = (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= TOLERANCE * b.abs().max(1.0);
        assert!(same, "{case}: {what}: {ours:?} vs torchmetrics {theirs:?}");
    }
}

fn read(tensor: Tensor<1>) -> Vec<f64> {
    tensor.into_data().try_into_vec_as::<f64>().unwrap()
}

#[test]
fn every_metric_computes_what_torchmetrics_computes() {
    let fixture = fixture();
    let device = Device::default();
    let cases = fixture["cases"].as_array().unwrap();
    assert!(cases.len() >= 80, "the fixture lists every configuration");
    let mut checked = std::collections::BTreeSet::new();
    for case in cases {
        let name = case["metric"].as_str().unwrap();
        let args = &case["args"];
        let input = case["input"].as_str().unwrap();
        let label = format!("{name} {args} on {input}");
        let batches = fixture["inputs"][input].as_array().unwrap();
        let expected_forward = case["forward"].as_array().unwrap();
        let expected = flat(&case["compute"]);
        match name {
            "ConfusionMatrix" => {
                let normalize = match args["normalize"].as_str() {
                    None => Normalize::None,
                    Some("true") => Normalize::True,
                    Some("pred") => Normalize::Pred,
                    Some("all") => Normalize::All,
                    Some(other) => panic!("unknown normalize {other}"),
                };
                let metric = ConfusionMatrix::new(task(args)).normalize(normalize);
                for batch in batches {
                    metric.update(preds(batch, &device), target(batch, &device));
                }
                let matrix = metric.compute().unwrap();
                let theirs_shape: Vec<usize> = shape(&case["compute"]);
                assert_eq!(matrix.shape().to_vec(), theirs_shape, "{label}: shape");
                assert_close(&label, "compute", &matrix.try_into_vec_as::<f64>().unwrap(), &expected);
            }
            "MeanMetric" | "SumMetric" | "MaxMetric" | "MinMetric" => {
                let weighted = args["weighted"].as_bool().unwrap_or(false);
                let values = |batch: &Json| -> Values { floats_1d(&batch["value"], &device).into() };
                let weights = |batch: &Json| -> Values { floats_1d(&batch["weight"], &device).into() };
                let (forward, value): (Vec<Vec<f64>>, f64) = match name {
                    "MeanMetric" => {
                        let metric = MeanMetric::new();
                        let forward = batches
                            .iter()
                            .map(|b| match weighted {
                                true => read(metric.forward_weighted(values(b), weights(b))),
                                false => read(metric.forward(values(b))),
                            })
                            .collect();
                        (forward, metric.compute().unwrap())
                    }
                    "SumMetric" => {
                        let metric = SumMetric::new();
                        let forward = batches.iter().map(|b| read(metric.forward(values(b)))).collect();
                        (forward, metric.compute().unwrap())
                    }
                    "MaxMetric" => {
                        let metric = MaxMetric::new();
                        let forward = batches.iter().map(|b| read(metric.forward(values(b)))).collect();
                        (forward, metric.compute().unwrap())
                    }
                    _ => {
                        let metric = MinMetric::new();
                        let forward = batches.iter().map(|b| read(metric.forward(values(b)))).collect();
                        (forward, metric.compute().unwrap())
                    }
                };
                for (i, (ours, theirs)) in forward.iter().zip(expected_forward).enumerate() {
                    assert_close(&label, &format!("forward of batch {i}"), ours, &flat(theirs));
                }
                assert_close(&label, "compute", &[value], &expected);
            }
            _ => {
                let metric = scalar_metric(name, args);
                for (i, batch) in batches.iter().enumerate() {
                    let ours = read(metric.forward_batch(preds(batch, &device), target(batch, &device)));
                    assert_close(
                        &label,
                        &format!("forward of batch {i}"),
                        &ours,
                        &flat(&expected_forward[i]),
                    );
                }
                assert_close(&label, "compute", &[metric.compute_value()], &expected);
            }
        }
        checked.insert(name);
    }
    let all = [
        "Accuracy",
        "Precision",
        "Recall",
        "F1Score",
        "AUROC",
        "ConfusionMatrix",
        "MeanSquaredError",
        "MeanAbsoluteError",
        "MeanMetric",
        "SumMetric",
        "MaxMetric",
        "MinMetric",
    ];
    assert_eq!(checked, all.into_iter().collect(), "every metric has cases");
}

fn floats_1d(value: &Json, device: &Device) -> Tensor<1> {
    let values: Vec<f32> = flat(value).into_iter().map(|v| v as f32).collect();
    let n = values.len();
    Tensor::from_data(TensorData::new(values, [n]), device)
}

fn shape(value: &Json) -> Vec<usize> {
    match value {
        Json::Array(items) => {
            let mut shape = vec![items.len()];
            if let Some(first) = items.first() {
                shape.extend(self::shape(first));
            }
            shape
        }
        _ => Vec::new(),
    }
}

#[test]
fn a_metric_collection_computes_each_of_its_metrics_under_its_prefix() {
    let fixture = fixture();
    let device = Device::default();
    let collection = MetricCollection::new()
        .with("acc", Accuracy::multiclass(5))
        .with("f1", F1Score::multiclass(5).average(Average::Macro))
        .prefix("val_");
    let input = fixture["collection"]["input"].as_str().unwrap();
    for batch in fixture["inputs"][input].as_array().unwrap() {
        collection.update(preds(batch, &device), target(batch, &device));
    }
    let ours = collection.compute().unwrap();
    let theirs = fixture["collection"]["values"].as_object().unwrap();
    assert_eq!(ours.keys().collect::<Vec<_>>(), theirs.keys().collect::<Vec<_>>());
    for (key, value) in theirs {
        assert_close(&format!("collection {key}"), "compute", &[ours[key]], &[number(value)]);
    }
    assert_eq!(collection.keys(), ["val_acc", "val_f1"]);
}

#[test]
fn the_committed_fixture_is_what_torchmetrics_writes() {
    let Ok(python) = std::env::var("REFERENCE_PYTHON") else {
        eprintln!(
            "REFERENCE_PYTHON is not set (scripts/python_venv.sh makes it): the committed fixture is used as it is"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("torchmetrics.json");
    let status = std::process::Command::new(&python)
        .args(["scripts/torchmetrics_fixture.py", "--output"])
        .arg(&output)
        .status()
        .unwrap_or_else(|e| panic!("cannot run `{python}` (REFERENCE_PYTHON): {e}"));
    assert!(status.success(), "scripts/torchmetrics_fixture.py failed");
    let written: Json = serde_json::from_str(&std::fs::read_to_string(&output).unwrap()).unwrap();
    assert!(
        written == fixture(),
        "tests/fixtures/torchmetrics.json differs from what scripts/torchmetrics_fixture.py writes now: run `bash scripts/torchmetrics_fixture.sh`"
    );
}
