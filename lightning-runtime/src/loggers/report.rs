//! `report.html`: plots without TensorBoard. A self-contained page written into the run
//! directory at the end of every `fit` (also a failed one, with what was logged until then), and
//! re-written when a later `validate` or `test` on the same trainer sends more values to the
//! loggers: the entry points that ran (when they started, in UTC, how long they took and how they
//! ended), one chart per logged metric (training metrics first, then validation's), the test
//! results as a table (a test logs one value per metric: a chart of one point says less than a
//! row), the hyperparameters and the model summary. Inline SVG and CSS only: no script, no
//! network, no font files (the browser draws the text).
//!
//! Lightning writes no such file; the charts follow what a Lightning user sees in TensorBoard:
//! one chart per tag, so a metric logged both ways has a `name_step` chart and a `name_epoch`
//! chart, with the step the loggers received on the x axis. The `epoch` value added to every
//! record is bookkeeping: it gets no chart.
//!
//! Recording costs nothing per batch: values are appended only when they are sent to the loggers
//! (every `log_every_n_steps` batches and at the end of epochs), and the page is drawn once, at
//! the end of the run.

use crate::callbacks::model_summary::{Summary, human_count};
use crate::core::datamodule::Stage;
use crate::core::state::RunningStage;
use crate::{Error, JsonValue};
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// The report's file name in the run directory.
pub const FILE_NAME: &str = "report.html";

/// The key the trainer adds to every record; bookkeeping, not charted.
const EPOCH_KEY: &str = "epoch";

/// Chart size in pixels (two side by side on a 1200-pixel-wide window).
const CHART_SIZE: (u32, u32) = (560, 300);

/// Series with at most this many points get a marker on every point: sparse series (epoch
/// values, short runs) are readable point by point, dense ones stay a clean line.
const MARKERS_UP_TO: usize = 60;

/// Whether a series holds the values sent every `log_every_n_steps` training batches, or those
/// sent at the end of an epoch (training, validation or test).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum SeriesKind {
    Step,
    Epoch,
}

impl SeriesKind {
    fn as_str(self) -> &'static str {
        match self {
            SeriesKind::Step => "step",
            SeriesKind::Epoch => "epoch",
        }
    }
}

/// Which loop sent a series first, which orders the page: training's charts, then
/// validation's, then the rest; the test loop's epoch values go to a table.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Source {
    Training,
    Validation,
    Other,
    Test,
}

impl From<RunningStage> for Source {
    fn from(stage: RunningStage) -> Self {
        match stage {
            RunningStage::Training => Source::Training,
            RunningStage::Validating | RunningStage::SanityChecking => Source::Validation,
            RunningStage::Testing => Source::Test,
            RunningStage::Predicting => Source::Other,
        }
    }
}

/// The values one metric name received, in the order sent: `(step, value)`.
#[derive(Clone, Debug)]
struct Series {
    kind: SeriesKind,
    source: Source,
    points: Vec<(usize, f64)>,
}

/// One entry point that ran on the trainer and how it ended.
#[derive(Clone, Debug)]
struct RunOutcome {
    stage: Stage,
    failure: Option<String>,
    epochs: usize,
    global_step: usize,
    started: SystemTime,
    duration: Duration,
}

/// What a trainer sent to its loggers, kept for its report (across its fits, validations and
/// tests, as they share one run directory).
#[derive(Clone, Debug, Default)]
pub(crate) struct Recorder {
    series: BTreeMap<String, Series>,
    /// Records received, so that a run can tell whether it logged anything.
    records: usize,
    runs: Vec<RunOutcome>,
    /// The summary the last `fit` wrote: an evaluation runs on a copy without autodiff, whose
    /// parameters would all read as non-trainable.
    summary: Option<Summary>,
}

impl Recorder {
    /// Appends one record the loggers received at `step` from the loop running `stage`.
    /// Allocates only when a series grows past its capacity, or for a name seen for the first
    /// time.
    pub fn record(&mut self, metrics: &BTreeMap<String, f64>, step: usize, kind: SeriesKind, stage: RunningStage) {
        self.records += 1;
        for (name, &value) in metrics {
            match self.series.get_mut(name.as_str()) {
                Some(series) => series.points.push((step, value)),
                None => {
                    self.series.insert(
                        name.clone(),
                        Series {
                            kind,
                            source: stage.into(),
                            points: vec![(step, value)],
                        },
                    );
                }
            }
        }
    }

    /// Records received so far.
    pub fn records(&self) -> usize {
        self.records
    }

    /// Notes that `stage`, started at `started` (its wall-clock time, and the instant for its
    /// duration), ended now, with its error if it failed, at `epochs` and `global_step`.
    pub fn finish_run(
        &mut self,
        stage: Stage,
        failure: Option<&Error>,
        epochs: usize,
        global_step: usize,
        started: (SystemTime, std::time::Instant),
    ) {
        self.runs.push(RunOutcome {
            stage,
            failure: failure.map(ToString::to_string),
            epochs,
            global_step,
            started: started.0,
            duration: started.1.elapsed(),
        });
    }

    /// The summary to show: the one kept from the last `fit`, else `compute`'s (kept when
    /// `keep`, as `fit` does).
    pub fn summary(&mut self, keep: bool, compute: impl FnOnce() -> Summary) -> Summary {
        match (&self.summary, keep) {
            (Some(summary), false) => summary.clone(),
            _ => {
                let summary = compute();
                if keep {
                    self.summary = Some(summary.clone());
                }
                summary
            }
        }
    }

    /// Writes `report.html` into `dir`, atomically.
    pub fn write(&self, dir: &Path, hparams: &JsonValue, summary: &Summary) -> Result<(), Error> {
        let path = dir.join(FILE_NAME);
        let html = self
            .render(dir, hparams, summary)
            .map_err(|message| Error::io("draw the charts of", &path, std::io::Error::other(message)))?;
        crate::checkpoint::run_dir::write_atomic(&path, html.as_bytes())
    }

    /// The page. Errors are plotters' (drawing into a string does not fail in practice).
    fn render(&self, dir: &Path, hparams: &JsonValue, summary: &Summary) -> Result<String, String> {
        let name = dir
            .file_name()
            .map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into_owned());
        let mut html = String::with_capacity(64 * 1024);
        let _ = write!(
            html,
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <title>{title} · burn-lightning report</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
             <header><h1>{title}</h1><p class=\"path\">{path}</p></header>\n",
            title = escape(&name),
            path = escape(&dir.display().to_string()),
        );
        self.render_runs(&mut html);
        self.render_charts(&mut html)?;
        self.render_test_results(&mut html);
        html.push_str("<div class=\"tables\">\n");
        render_hparams(&mut html, hparams);
        render_summary(&mut html, summary);
        html.push_str("</div>\n</body>\n</html>\n");
        Ok(html)
    }

    fn render_runs(&self, html: &mut String) {
        html.push_str(
            "<section id=\"runs\">\n<table class=\"runs\">\n<tr><th>Run</th><th>Started (UTC)</th>\
             <th>Duration</th><th>Outcome</th><th>Epochs</th><th>Global step</th></tr>\n",
        );
        for run in &self.runs {
            let outcome = match &run.failure {
                None => "<td class=\"ok\">finished</td>".to_string(),
                Some(error) => format!("<td class=\"failed\">failed: {}</td>", escape(error)),
            };
            let _ = writeln!(
                html,
                "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td>{outcome}<td>{}</td><td>{}</td></tr>",
                run.stage,
                utc_time(run.started),
                format_duration(run.duration),
                run.epochs,
                run.global_step
            );
        }
        html.push_str("</table>\n</section>\n");
    }

    /// The series charted: every name but `epoch` and the test loop's epoch values, training's
    /// first, then validation's, then the rest, each group by name.
    fn charted(&self) -> Vec<(&String, &Series)> {
        let mut charted: Vec<(&String, &Series)> = self
            .series
            .iter()
            .filter(|(name, series)| *name != EPOCH_KEY && !is_test_result(series))
            .collect();
        // Stable: names stay in order within a group.
        charted.sort_by_key(|(_, series)| series.source);
        charted
    }

    fn render_charts(&self, html: &mut String) -> Result<(), String> {
        let charted = self.charted();
        let _ = writeln!(
            html,
            "<section id=\"metrics\">\n<h2>Metrics</h2>\n<p class=\"note\">One chart per name sent to the \
             loggers, as TensorBoard shows them (x: the step the loggers received; a value logged both \
             ways is <code>name_step</code> and <code>name_epoch</code>); training first, then validation.</p>"
        );
        if charted.is_empty() && !self.series.values().any(is_test_result) {
            html.push_str("<p>Nothing was sent to the loggers.</p>\n");
        }
        html.push_str("<div class=\"charts\">\n");
        for (name, series) in charted {
            render_chart(html, name, series)?;
        }
        html.push_str("</div>\n</section>\n");
        Ok(())
    }

    /// The test loop's epoch values as a table: the last value of each, and its step.
    fn render_test_results(&self, html: &mut String) {
        let results: Vec<(&String, &Series)> = self
            .series
            .iter()
            .filter(|(name, series)| *name != EPOCH_KEY && is_test_result(series))
            .collect();
        if results.is_empty() {
            return;
        }
        html.push_str(
            "<section id=\"test\">\n<h2>Test results</h2>\n<table class=\"results\">\n\
             <tr><th>Test metric</th><th>Value</th><th>Step</th></tr>\n",
        );
        for (name, series) in results {
            if let Some(&(step, value)) = series.points.last() {
                let _ = writeln!(
                    html,
                    "<tr data-metric=\"{name}\"><td>{name}</td><td class=\"num\">{value}</td><td class=\"num\">{step}</td></tr>",
                    name = escape(name),
                    value = crate::callbacks::progress::python_repr(value),
                );
            }
        }
        html.push_str("</table>\n</section>\n");
    }
}

/// Whether `series` holds the values a test run sent at its end (shown as a table).
fn is_test_result(series: &Series) -> bool {
    series.source == Source::Test && series.kind == SeriesKind::Epoch
}

/// `2026-12-07 02:31:05`: a wall-clock time in UTC, from the days since 1970 (the civil
/// calendar, without a time-zone database).
fn utc_time(time: SystemTime) -> String {
    let seconds = time.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, of_day) = ((seconds / 86_400) as i64, seconds % 86_400);
    // Howard Hinnant's `civil_from_days`.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60
    )
}

/// `0.84 s`, `2 min 5 s`, `1 h 3 min`.
fn format_duration(duration: Duration) -> String {
    let seconds = duration.as_secs_f64();
    if seconds < 60.0 {
        format!("{seconds:.2} s")
    } else if seconds < 3600.0 {
        format!("{} min {} s", (seconds / 60.0) as u64, seconds as u64 % 60)
    } else {
        format!("{} h {} min", (seconds / 3600.0) as u64, seconds as u64 / 60 % 60)
    }
}

/// One metric's figure: its name, a line of figures, the SVG chart, and a note on values that
/// could not be plotted.
fn render_chart(html: &mut String, name: &str, series: &Series) -> Result<(), String> {
    let finite: Vec<(usize, f64)> = series.points.iter().copied().filter(|(_, v)| v.is_finite()).collect();
    let _ = write!(
        html,
        "<figure class=\"chart\" data-metric=\"{name}\" data-kind=\"{kind}\" data-values=\"{count}\">\n\
         <figcaption><h3>{name}</h3><span class=\"kind {kind}\">{kind}</span>\n<div class=\"stats\">{count} value{plural}",
        name = escape(name),
        kind = series.kind.as_str(),
        count = series.points.len(),
        plural = if series.points.len() == 1 { "" } else { "s" },
    );
    if let Some(&(step, value)) = series.points.last() {
        let _ = write!(html, " · last <b>{}</b> at step {step}", format_value(value));
    }
    let (min, max) = value_range(&finite);
    if finite.len() > 1 {
        let _ = write!(html, " · min {} · max {}", format_value(min), format_value(max));
    }
    html.push_str("</div></figcaption>\n");
    html.push_str(&chart_svg(series, &finite, (min, max)).map_err(|e| format!("the chart of `{name}`: {e}"))?);
    let skipped: Vec<String> = series
        .points
        .iter()
        .filter(|(_, v)| !v.is_finite())
        .map(|&(step, v)| format!("{} at step {step}", format_value(v)))
        .collect();
    if !skipped.is_empty() {
        const SHOWN: usize = 5;
        let more = skipped.len().saturating_sub(SHOWN);
        let _ = writeln!(
            html,
            "<p class=\"nonfinite\">Not plotted ({} value{} not finite): {}{}</p>",
            skipped.len(),
            if skipped.len() == 1 { " is" } else { "s are" },
            skipped[..skipped.len().min(SHOWN)].join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            },
        );
    }
    html.push_str("</figure>\n");
    Ok(())
}

/// The chart of one series: finite values joined by a line (broken where a value is not
/// finite), with markers when the series is sparse.
fn chart_svg(series: &Series, finite: &[(usize, f64)], (min, max): (f64, f64)) -> Result<String, String> {
    let color = match series.kind {
        SeriesKind::Step => RGBColor(31, 119, 180),
        SeriesKind::Epoch => RGBColor(230, 115, 0),
    };
    let first_step = finite.iter().map(|&(s, _)| s).min().unwrap_or(0) as i64;
    let last_step = finite.iter().map(|&(s, _)| s).max().unwrap_or(1) as i64;
    let step_pad = ((last_step - first_step) / 50).max(1);
    let x_range = (first_step - step_pad).max(0)..last_step + step_pad;
    let value_pad = if max > min {
        (max - min) * 0.08
    } else {
        (max.abs() * 0.1).max(1e-3)
    };
    let y_range = (min - value_pad)..(max + value_pad);
    let tick_decimals = decimals_for(y_range.end - y_range.start);
    let y_label = |v: &f64| format_tick(*v, tick_decimals);
    let x_label = |s: &i64| s.to_string();

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, CHART_SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d(x_range, y_range)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_labels(7)
            .y_labels(6)
            .x_label_formatter(&x_label)
            .y_label_formatter(&y_label)
            .x_desc("step")
            .label_style(("sans-serif", 13).into_font().color(&RGBColor(80, 80, 80)))
            .axis_desc_style(("sans-serif", 13).into_font().color(&RGBColor(80, 80, 80)))
            .bold_line_style(RGBColor(225, 225, 225))
            .light_line_style(RGBColor(245, 245, 245))
            .axis_style(RGBColor(150, 150, 150))
            .draw()
            .map_err(|e| e.to_string())?;
        for segment in finite_segments(&series.points) {
            let line = segment.iter().map(|&(s, v)| (s as i64, v));
            chart
                .draw_series(LineSeries::new(line, color.stroke_width(2)))
                .map_err(|e| e.to_string())?;
        }
        if finite.len() <= MARKERS_UP_TO {
            let markers = finite
                .iter()
                .map(|&(s, v)| Circle::new((s as i64, v), 3, color.filled()));
            chart.draw_series(markers).map_err(|e| e.to_string())?;
        }
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

/// The runs of consecutive finite values: a value that is not finite breaks the line.
fn finite_segments(points: &[(usize, f64)]) -> impl Iterator<Item = &[(usize, f64)]> {
    points
        .split(|(_, v)| !v.is_finite())
        .filter(|segment| !segment.is_empty())
}

/// The smallest and largest finite value; `(0, 0)` when there is none.
fn value_range(finite: &[(usize, f64)]) -> (f64, f64) {
    if finite.is_empty() {
        return (0.0, 0.0);
    }
    finite
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &(_, v)| {
            (lo.min(v), hi.max(v))
        })
}

/// Decimals that tell apart ticks about `span / 5` apart.
fn decimals_for(span: f64) -> usize {
    let tick = span / 5.0;
    if !(tick > 0.0 && tick.is_finite()) {
        return 2;
    }
    (-tick.log10().floor()).clamp(0.0, 8.0) as usize
}

fn format_tick(value: f64, decimals: usize) -> String {
    if value != 0.0 && (value.abs() >= 1e6 || decimals > 6) {
        format!("{value:.2e}")
    } else {
        format!("{value:.decimals$}")
    }
}

/// A value as read in the captions: up to 6 significant decimals, scientific when very large
/// or small, `NaN`/`inf` spelled out.
fn format_value(value: f64) -> String {
    if !value.is_finite() {
        return value.to_string();
    }
    let magnitude = value.abs();
    if magnitude != 0.0 && !(1e-4..1e6).contains(&magnitude) {
        return format!("{value:.4e}");
    }
    let text = format!("{value:.6}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The hyperparameters as a two-column table; nested values are flattened into dotted names.
fn render_hparams(html: &mut String, hparams: &JsonValue) {
    html.push_str("<section id=\"hparams\">\n<h2>Hyperparameters</h2>\n");
    let mut rows = Vec::new();
    flatten(String::new(), hparams, &mut rows);
    if rows.is_empty() {
        html.push_str("<p>The module declares none (<code>#[hparam]</code> fields).</p>\n");
    } else {
        html.push_str("<table>\n<tr><th>Name</th><th>Value</th></tr>\n");
        for (name, value) in rows {
            let _ = writeln!(html, "<tr><td>{}</td><td>{}</td></tr>", escape(&name), escape(&value));
        }
        html.push_str("</table>\n");
    }
    html.push_str("</section>\n");
}

fn flatten(prefix: String, value: &JsonValue, rows: &mut Vec<(String, String)>) {
    match value {
        JsonValue::Object(map) => {
            for (key, value) in map {
                let name = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                flatten(name, value, rows);
            }
        }
        JsonValue::Null if prefix.is_empty() => {}
        JsonValue::String(text) => rows.push((prefix, text.clone())),
        other => rows.push((prefix, other.to_string())),
    }
}

/// Lightning's model summary as a table, with its totals.
fn render_summary(html: &mut String, summary: &Summary) {
    html.push_str("<section id=\"summary\">\n<h2>Model summary</h2>\n");
    if !summary.layers.is_empty() {
        html.push_str("<table>\n<tr><th></th><th>Name</th><th>Type</th><th>Params</th><th>Mode</th></tr>\n");
        for (index, layer) in summary.layers.iter().enumerate() {
            let _ = writeln!(
                html,
                "<tr><td>{index}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
                escape(&layer.name),
                escape(&layer.kind),
                human_count(layer.params).trim_end(),
                if layer.training { "train" } else { "eval" },
            );
        }
        html.push_str("</table>\n");
    }
    let _ = write!(
        html,
        "<table class=\"totals\">\n\
         <tr><td class=\"num\">{}</td><td>Trainable params</td></tr>\n\
         <tr><td class=\"num\">{}</td><td>Non-trainable params</td></tr>\n\
         <tr><td class=\"num\">{}</td><td>Total params</td></tr>\n\
         <tr><td class=\"num\">{:.3}</td><td>Total estimated model params size (MB)</td></tr>\n\
         <tr><td class=\"num\">{}</td><td>Modules in train mode</td></tr>\n\
         <tr><td class=\"num\">{}</td><td>Modules in eval mode</td></tr>\n\
         </table>\n</section>\n",
        human_count(summary.trainable_params).trim_end(),
        human_count(summary.non_trainable_params).trim_end(),
        human_count(summary.total_params()).trim_end(),
        summary.size_mb(),
        summary.modules_in_train_mode,
        summary.modules_in_eval_mode,
    );
}

/// `text` with the characters that are special in HTML (text and attribute values) escaped.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "
body { font-family: system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif; margin: 24px; color: #222; background: #fafafa; }
header h1 { margin: 0 0 4px; font-size: 26px; }
.path { margin: 0 0 16px; color: #666; font-family: ui-monospace, monospace; font-size: 13px; }
h2 { font-size: 19px; margin: 24px 0 8px; }
.note { color: #666; font-size: 13px; margin: 0 0 12px; }
table { border-collapse: collapse; background: #fff; font-size: 14px; }
th, td { border: 1px solid #ddd; padding: 4px 10px; text-align: left; }
th { background: #f0f0f0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.ok { color: #1a7f37; }
td.failed { color: #b42318; }
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(560px, 1fr)); gap: 16px; }
figure.chart { margin: 0; padding: 10px 12px; background: #fff; border: 1px solid #ddd; border-radius: 6px; }
figcaption { margin-bottom: 6px; }
.stats { font-size: 12px; color: #555; margin-top: 3px; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
figcaption h3 { display: inline; font-size: 16px; color: #222; margin-right: 8px; font-family: ui-monospace, monospace; }
.kind { display: inline-block; padding: 0 6px; border-radius: 8px; font-size: 12px; color: #fff; }
.kind.step { background: #1f77b4; }
.kind.epoch { background: #e67300; }
figure svg { max-width: 100%; height: auto; display: block; }
.nonfinite { color: #b42318; font-size: 13px; margin: 6px 0 0; }
.tables { display: flex; flex-wrap: wrap; gap: 32px; align-items: flex-start; }
table.totals { margin-top: 10px; }
table.totals td { border: none; padding: 1px 10px 1px 0; background: transparent; }
table.totals { background: transparent; }
";

#[cfg(test)]
mod tests {
    use super::*;

    fn record(recorder: &mut Recorder, step: usize, kind: SeriesKind, values: &[(&str, f64)]) {
        record_in(recorder, RunningStage::Training, step, kind, values);
    }

    fn record_in(recorder: &mut Recorder, stage: RunningStage, step: usize, kind: SeriesKind, values: &[(&str, f64)]) {
        let metrics = values.iter().map(|&(k, v)| (k.to_string(), v)).collect();
        recorder.record(&metrics, step, kind, stage);
    }

    #[test]
    fn training_charts_come_first_and_test_results_are_a_table() {
        let mut recorder = Recorder::default();
        let stages = [
            (RunningStage::Validating, "val_loss"),
            (RunningStage::Training, "train_loss"),
            (RunningStage::Testing, "test_acc"),
        ];
        for (stage, name) in stages {
            record_in(
                &mut recorder,
                stage,
                3,
                SeriesKind::Epoch,
                &[(name, 0.5), ("epoch", 0.0)],
            );
        }
        let started = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_610_665);
        recorder.finish_run(Stage::Test, None, 0, 0, (started, std::time::Instant::now()));
        let html = recorder
            .render(Path::new("v"), &JsonValue::Null, &Summary::default())
            .unwrap();
        let train = html.find("data-metric=\"train_loss\"").unwrap();
        let val = html.find("data-metric=\"val_loss\"").unwrap();
        assert!(train < val, "training's chart first");
        assert!(!html.contains("<figure class=\"chart\" data-metric=\"test_acc\""));
        assert!(html.contains("<tr data-metric=\"test_acc\"><td>test_acc</td><td class=\"num\">0.5</td>"));
        assert!(html.contains("<td>2026-12-07 02:31:05</td>"), "the start in UTC");
    }

    #[test]
    fn dates_and_durations_read_as_calendars_and_clocks() {
        assert_eq!(utc_time(SystemTime::UNIX_EPOCH), "1970-01-01 00:00:00");
        let leap_day = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400 + 3661);
        assert_eq!(utc_time(leap_day), "2000-02-29 01:01:01");
        assert_eq!(format_duration(Duration::from_millis(840)), "0.84 s");
        assert_eq!(format_duration(Duration::from_secs(125)), "2 min 5 s");
        assert_eq!(format_duration(Duration::from_secs(3780)), "1 h 3 min");
    }

    #[test]
    fn a_chart_per_name_without_the_epoch_bookkeeping() {
        let mut recorder = Recorder::default();
        record(&mut recorder, 0, SeriesKind::Step, &[("loss", 2.0), ("epoch", 0.0)]);
        record(&mut recorder, 1, SeriesKind::Step, &[("loss", 1.0), ("epoch", 0.0)]);
        record(
            &mut recorder,
            1,
            SeriesKind::Epoch,
            &[("val_loss", 1.5), ("epoch", 0.0)],
        );
        let html = recorder
            .render(Path::new("/runs/version_3"), &JsonValue::Null, &Summary::default())
            .unwrap();
        assert_eq!(html.matches("<figure class=\"chart\"").count(), 2);
        assert!(html.contains("data-metric=\"loss\" data-kind=\"step\" data-values=\"2\""));
        assert!(html.contains("data-metric=\"val_loss\" data-kind=\"epoch\" data-values=\"1\""));
        assert!(!html.contains("data-metric=\"epoch\""));
        assert!(html.contains("<h1>version_3</h1>"));
    }

    #[test]
    fn names_are_escaped_and_values_that_are_not_finite_are_listed_not_plotted() {
        let mut recorder = Recorder::default();
        record(&mut recorder, 0, SeriesKind::Step, &[("a<b>&\"c\"", 1.0)]);
        record(&mut recorder, 1, SeriesKind::Step, &[("a<b>&\"c\"", f64::NAN)]);
        record(&mut recorder, 2, SeriesKind::Step, &[("a<b>&\"c\"", f64::INFINITY)]);
        record(&mut recorder, 3, SeriesKind::Step, &[("a<b>&\"c\"", 3.0)]);
        let html = recorder
            .render(Path::new("v"), &JsonValue::Null, &Summary::default())
            .unwrap();
        assert!(html.contains("<h3>a&lt;b&gt;&amp;&quot;c&quot;</h3>"));
        assert!(!html.contains("a<b>"));
        let svg = &html[html.find("<svg").unwrap()..html.find("</svg>").unwrap()];
        assert!(
            !svg.contains("NaN") && !svg.contains("inf"),
            "no coordinate that is not a number"
        );
        assert!(html.contains("Not plotted (2 values are not finite): NaN at step 1, inf at step 2"));
        // Two single-point segments, each with its marker.
        assert_eq!(html.matches("<circle").count(), 2);
    }

    #[test]
    fn values_read_as_numbers() {
        assert_eq!(format_value(0.25), "0.25");
        assert_eq!(format_value(2.0), "2");
        assert_eq!(format_value(1.0 / 3.0), "0.333333");
        assert_eq!(format_value(1.5e-7), "1.5000e-7");
        assert_eq!(format_value(f64::NEG_INFINITY), "-inf");
        assert_eq!(decimals_for(1.0), 1);
        assert_eq!(decimals_for(0.01), 3);
        assert_eq!(decimals_for(1000.0), 0);
    }

    #[test]
    fn hyperparameters_are_flattened() {
        let mut rows = Vec::new();
        let hparams = serde_json::json!({"lr": 0.1, "name": "x", "opt": {"beta": 0.9}});
        flatten(String::new(), &hparams, &mut rows);
        assert_eq!(
            rows,
            [
                ("lr".to_string(), "0.1".to_string()),
                ("name".into(), "x".into()),
                ("opt.beta".into(), "0.9".into())
            ]
        );
    }
}
