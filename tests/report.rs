//! `report.html`: written into the run directory at the end of `fit` (also a failed one), with
//! the runs (when they started, how long they took), one chart per metric the loggers received
//! (training's first), plotting exactly the values they received, the test results as a table,
//! the hyperparameters and the model summary; re-written when a later `validate` or `test` logs
//! more; not written with `enable_report(false)` or under `fast_dev_run`.

mod common;

use burn::nn::{Linear, LinearConfig};
use burn::optim::SgdConfig;
use burn_lightning::prelude::*;
use common::{Pair, pair_loader};
use std::collections::BTreeMap;
use std::path::Path;

/// A name with characters that are special in HTML.
const ODD_NAME: &str = "a<b>&c";

/// Logs `train_loss` per step, `ramp` both ways (its value is the global step), and in
/// validation `val_loss` and [`ODD_NAME`] per epoch; fails in `on_train_epoch_end` of epoch
/// `fail_at` when set.
#[lightning_module]
#[derive(Module, Debug)]
pub struct Net {
    layer: Linear,
    #[hparam(default = 0.05)]
    lr: f64,
    #[module(skip)]
    fail_at: Option<usize>,
    #[module(skip)]
    panic_at_step: Option<usize>,
}

impl Net {
    fn new(fail_at: Option<usize>) -> Self {
        Self {
            layer: LinearConfig::new(32, 2).init(&Device::default()),
            lr: 0.05,
            fail_at,
            panic_at_step: None,
        }
    }

    fn loss(&self, batch: Pair) -> Tensor<1> {
        (self.layer.forward(batch.x) - batch.y).powi_scalar(2).mean()
    }
}

#[lightning_module]
impl Net {
    #[hook]
    fn training_step(&self, batch: Pair, _batch_idx: usize, cx: &mut StepContext) -> Tensor<1> {
        assert_ne!(Some(cx.global_step), self.panic_at_step, "a panic the test asked for");
        let loss = self.loss(batch);
        cx.log("train_loss", &loss);
        let step = cx.global_step as f64;
        cx.log_with("ramp", step, LogOptions::new().on_step(true).on_epoch(true));
        loss
    }
    #[hook]
    fn validation_step(&self, batch: Pair, _batch_idx: usize, cx: &mut StepContext) {
        cx.log("val_loss", self.loss(batch));
        cx.log(ODD_NAME, 1.0 + cx.current_epoch as f64);
    }
    #[hook]
    fn test_step(&self, batch: Pair, _batch_idx: usize, cx: &mut StepContext) {
        cx.log("test_loss", self.loss(batch));
    }
    #[hook]
    fn on_train_epoch_end(&mut self, cx: &mut EpochContext) -> Result<(), Error> {
        if self.fail_at == Some(cx.current_epoch) {
            return Err(Error::Data("a failure the test asked for".into()));
        }
        Ok(())
    }
    #[hook]
    fn configure_optimizers(&self) -> OptimizerConfig {
        OptimizerConfig::new(SgdConfig::new().init(), self.lr)
    }
}

/// 4 training batches and 1 validation batch per epoch.
fn data() -> Loaders<Pair> {
    Loaders::fit(pair_loader(16, 4), Some(pair_loader(4, 4)))
}

/// A quiet trainer writing into `root`, with a CSV logger to compare the report with.
fn trainer(root: &Path, report: bool) -> Trainer<Net> {
    Trainer::builder()
        .max_epochs(3)
        .log_every_n_steps(2)
        .default_root_dir(root)
        .logger(CsvLogger::new(root))
        .enable_progress_bar(false)
        .enable_model_summary(false)
        .enable_checkpointing(false)
        .enable_report(report)
        .build()
        .unwrap()
}

/// What the CSV logger received: `name -> [(step, value)]`, without `epoch`.
fn csv_series(run_dir: &Path) -> BTreeMap<String, Vec<(usize, f64)>> {
    let text = std::fs::read_to_string(run_dir.join("metrics.csv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let mut series: BTreeMap<String, Vec<(usize, f64)>> = BTreeMap::new();
    for line in lines {
        let cells: Vec<&str> = line.split(',').collect();
        let step: usize = cells[header.iter().position(|h| *h == "step").unwrap()]
            .parse()
            .unwrap();
        for (name, cell) in header.iter().zip(&cells) {
            if !cell.is_empty() && *name != "step" && *name != "epoch" {
                series
                    .entry(name.to_string())
                    .or_default()
                    .push((step, cell.parse().unwrap()));
            }
        }
    }
    series
}

/// One chart of the report: its title and the pixel coordinates of its plotted points.
#[derive(Debug)]
struct Chart {
    title: String,
    svg_count: usize,
    points: Vec<(f64, f64)>,
}

fn charts(html: &str) -> Vec<Chart> {
    html.split("<figure class=\"chart\"")
        .skip(1)
        .map(|figure| {
            let figure = &figure[..figure.find("</figure>").expect("a closed figure")];
            let title = between(figure, "<h3>", "</h3>").to_string();
            // The data lines are the polylines 2 pixels wide (axes and ticks are 1 pixel wide).
            let points = figure
                .split("<polyline")
                .skip(1)
                .filter(|polyline| polyline[..polyline.find("/>").unwrap()].contains("stroke-width=\"2\""))
                .flat_map(|polyline| between(polyline, "points=\"", "\"").split_whitespace())
                .map(|pair| {
                    let (x, y) = pair.split_once(',').unwrap();
                    (x.parse().unwrap(), y.parse().unwrap())
                })
                .collect();
            Chart {
                title,
                svg_count: figure.matches("<svg").count(),
                points,
            }
        })
        .collect()
}

fn between<'a>(text: &'a str, start: &str, end: &str) -> &'a str {
    let from = text.find(start).unwrap_or_else(|| panic!("no {start} in {text}")) + start.len();
    &text[from..from + text[from..].find(end).unwrap()]
}

fn escaped(name: &str) -> String {
    name.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Every chart plots exactly the values the CSV logger received, in order: as many points,
/// x growing with the step and y an affine image of the value (within a pixel of rounding).
fn assert_charts_match(html: &str, logged: &BTreeMap<String, Vec<(usize, f64)>>) {
    let charts = charts(html);
    let mut titles: Vec<&str> = charts.iter().map(|c| c.title.as_str()).collect();
    titles.sort_unstable();
    let mut expected: Vec<String> = logged.keys().map(|name| escaped(name)).collect();
    expected.sort_unstable();
    assert_eq!(titles, expected, "one chart per logged metric, titled with its name");
    for (name, values) in logged {
        let chart = charts.iter().find(|c| c.title == escaped(name)).unwrap();
        assert_eq!(chart.svg_count, 1, "{name}: one SVG");
        assert_eq!(chart.points.len(), values.len(), "{name}: a point per logged value");
        // The affine map is pinned by the extreme points (steps grow, so the first and last
        // for x; the smallest and largest value for y): interpolating between them keeps the
        // pixels' rounding within a pixel or two, whatever values the run produced.
        let (first, last) = (values[0], values[values.len() - 1]);
        let (p_first, p_last) = (chart.points[0], chart.points[values.len() - 1]);
        let by_value = |a: &usize, b: &usize| values[*a].1.total_cmp(&values[*b].1);
        let low = (0..values.len()).min_by(by_value).unwrap();
        let high = (0..values.len()).max_by(by_value).unwrap();
        let (v_low, v_high) = (values[low].1, values[high].1);
        let (y_low, y_high) = (chart.points[low].1, chart.points[high].1);
        for (&(step, value), &(x, y)) in values.iter().zip(&chart.points) {
            if last.0 != first.0 {
                let expected_x =
                    p_first.0 + (p_last.0 - p_first.0) * (step - first.0) as f64 / (last.0 - first.0) as f64;
                assert!(
                    (x - expected_x).abs() <= 2.0,
                    "{name}: step {step} at x {x}, not {expected_x}"
                );
            }
            if v_high != v_low {
                let expected_y = y_low + (y_high - y_low) * (value - v_low) / (v_high - v_low);
                assert!(
                    (y - expected_y).abs() <= 2.0,
                    "{name}: {value} at y {y}, not {expected_y}"
                );
            }
        }
    }
}

#[test]
fn fit_writes_a_report_with_a_chart_per_logged_metric_the_hyperparameters_and_the_summary() {
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = trainer(dir.path(), true);
    trainer.fit(Net::new(None), data()).unwrap();
    let run_dir = trainer.log_dir().unwrap().to_path_buf();
    let html = std::fs::read_to_string(run_dir.join("report.html")).unwrap();
    if let Ok(copy) = std::env::var("REPORT_TEST_COPY") {
        std::fs::write(copy, &html).unwrap();
    }

    let logged = csv_series(&run_dir);
    let names: Vec<&str> = logged.keys().map(String::as_str).collect();
    assert_eq!(names, [ODD_NAME, "ramp_epoch", "ramp_step", "train_loss", "val_loss"]);
    // 12 steps logged every 2, 3 epochs.
    assert_eq!(logged["train_loss"].len(), 6);
    assert_eq!(logged["ramp_epoch"].len(), 3);
    assert_charts_match(&html, &logged);
    // The ramp's value is its step: its points go up, drawn right and up (SVG y grows down).
    let ramp = charts(&html).into_iter().find(|c| c.title == "ramp_step").unwrap();
    assert!(
        ramp.points.windows(2).all(|w| w[1].0 > w[0].0 && w[1].1 < w[0].1),
        "{ramp:?}"
    );
    assert!(html.contains("data-kind=\"step\" data-values=\"6\""));
    assert!(html.contains(&format!("data-metric=\"{}\" data-kind=\"epoch\"", escaped(ODD_NAME))));
    assert!(!html.contains(ODD_NAME), "the name is escaped");

    assert!(html.contains(&format!("<h1>{}</h1>", run_dir.file_name().unwrap().to_string_lossy())));
    // The run: when it started (UTC), how long it took, how it ended.
    let run = between(&html, "<tr><td>fit</td>", "</tr>");
    assert!(
        run.ends_with("<td class=\"ok\">finished</td><td>3</td><td>12</td>"),
        "{run}"
    );
    let started = between(run, "<td>", "</td>");
    assert_eq!(started.len(), "2026-12-07 02:31:05".len(), "{started}");
    assert!(started.starts_with("20") && started.as_bytes()[10] == b' ', "{started}");
    assert!(run.contains(" s</td>"), "a duration: {run}");
    // Training's charts first, then validation's.
    let titles: Vec<String> = charts(&html).into_iter().map(|c| c.title).collect();
    assert_eq!(
        titles,
        ["ramp_epoch", "ramp_step", "train_loss", &escaped(ODD_NAME), "val_loss"]
    );
    assert!(
        html.contains("<tr><td>lr</td><td>0.05</td></tr>"),
        "the hyperparameters"
    );
    assert!(html.contains("<tr><td>0</td><td>layer</td><td>Linear</td><td class=\"num\">66</td><td>train</td></tr>"));
    assert!(html.contains("<td class=\"num\">1</td><td>Modules in train mode</td>"));
    assert!(html.contains("<td class=\"num\">66</td><td>Total params</td>"));
    // Self-contained: nothing to run or fetch.
    for outside in ["<script", "<link", "<img", "src=", "href=", "@import", "url("] {
        assert!(!html.contains(outside), "{outside}");
    }
}

#[test]
fn a_failing_fit_still_writes_what_was_logged() {
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = trainer(dir.path(), true);
    let error = trainer.fit(Net::new(Some(1)), data()).unwrap_err();
    assert!(error.to_string().contains("a failure the test asked for"));
    let run_dir = trainer.log_dir().unwrap().to_path_buf();
    let html = std::fs::read_to_string(run_dir.join("report.html")).unwrap();
    assert!(html.contains("<td class=\"failed\">failed: a failure the test asked for</td>"));
    let logged = csv_series(&run_dir);
    // Epoch 0 in full, and the step values and validation of epoch 1 before it failed.
    assert_eq!(logged["train_loss"].len(), 4);
    assert_eq!(logged["val_loss"].len(), 2);
    assert_eq!(logged["ramp_epoch"].len(), 1);
    assert_charts_match(&html, &logged);
}

#[test]
fn a_fit_that_panics_still_writes_what_was_logged() {
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = trainer(dir.path(), true);
    let model = Net {
        panic_at_step: Some(6),
        ..Net::new(None)
    };
    let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = trainer.fit(model, data());
    }));
    assert!(panic.is_err(), "the panic goes on to the caller");
    let run_dir = trainer.log_dir().unwrap().to_path_buf();
    let html = std::fs::read_to_string(run_dir.join("report.html")).unwrap();
    assert!(html.contains("<td class=\"failed\">failed: the run panicked: "));
    let logged = csv_series(&run_dir);
    assert_eq!(logged["train_loss"].len(), 3, "steps 1, 3 and 5");
    assert_charts_match(&html, &logged);
}

#[test]
fn a_validation_after_fit_adds_its_values_and_its_run() {
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = trainer(dir.path(), true);
    let mut model = trainer.fit(Net::new(None), data()).unwrap();
    trainer.validate(&mut model, data()).unwrap();
    let run_dir = trainer.log_dir().unwrap().to_path_buf();
    let html = std::fs::read_to_string(run_dir.join("report.html")).unwrap();
    assert!(between(&html, "<tr><td>validate</td>", "</tr>").contains("<td class=\"ok\">finished</td>"));
    let logged = csv_series(&run_dir);
    assert_eq!(logged["val_loss"].len(), 4, "3 in fit and 1 in validate");
    assert_charts_match(&html, &logged);
    // The summary is still the trained module's (trainable parameters), not the evaluation copy's.
    assert!(html.contains("<td class=\"num\">66</td><td>Trainable params</td>"));
}

#[test]
fn no_report_with_enable_report_false_or_under_fast_dev_run() {
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = trainer(dir.path(), false);
    trainer.fit(Net::new(None), data()).unwrap();
    let run_dir = trainer.log_dir().unwrap();
    assert!(run_dir.join("metrics.csv").exists(), "the run itself wrote its files");
    assert!(!run_dir.join("report.html").exists());

    let dir = tempfile::tempdir().unwrap();
    let mut trainer = Trainer::builder()
        .fast_dev_run(2)
        .default_root_dir(dir.path())
        .enable_progress_bar(false)
        .enable_model_summary(false)
        .build()
        .unwrap();
    trainer.fit(Net::new(None), data()).unwrap();
    assert!(common::files_under(dir.path()).is_empty());
}

#[test]
fn without_loggers_the_report_still_charts_what_was_logged() {
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = Trainer::builder()
        .max_epochs(1)
        .log_every_n_steps(1)
        .default_root_dir(dir.path())
        .enable_logger(false)
        .enable_progress_bar(false)
        .enable_model_summary(false)
        .enable_checkpointing(false)
        .build()
        .unwrap();
    trainer.fit(Net::new(None), data()).unwrap();
    let run_dir = trainer.log_dir().unwrap();
    let html = std::fs::read_to_string(run_dir.join("report.html")).unwrap();
    let train_loss = charts(&html).into_iter().find(|c| c.title == "train_loss").unwrap();
    assert_eq!(train_loss.points.len(), 4, "one per batch");
    assert_eq!(charts(&html).len(), 5);
}

/// A test on a trainer that did not fit: its results as a table, not one-point charts, and the
/// summary of the module as it would train (its parameters trainable).
#[test]
fn a_test_only_report_tables_the_results_and_counts_trainable_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = trainer(dir.path(), true);
    let mut model = Net::new(None);
    let metrics = trainer.test(&mut model, Loaders::test(pair_loader(8, 4))).unwrap();
    // The CSV logger's directory (the trainer keeps the run directory of its fits only).
    let run_dir = dir.path().join("lightning_logs/version_0");
    let html = std::fs::read_to_string(run_dir.join("report.html")).unwrap();
    assert!(charts(&html).is_empty(), "no one-point chart");
    let loss = metrics[0].get("test_loss").unwrap();
    let row = between(&html, "<tr data-metric=\"test_loss\">", "</tr>");
    assert!(
        row.starts_with(&format!("<td>test_loss</td><td class=\"num\">{loss}</td>")),
        "{row}"
    );
    assert!(
        html.contains("<td class=\"num\">66</td><td>Trainable params</td>"),
        "{html}"
    );
    assert!(html.contains("<td class=\"num\">0</td><td>Non-trainable params</td>"));
}
