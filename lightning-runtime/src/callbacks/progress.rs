//! The progress bar (Lightning's `TQDMProgressBar`), drawn with [`indicatif`], and its plain-text
//! form for logs and pipes ([`EpochSummary`]).
//!
//! On a terminal, [`ProgressBar`] draws a bar per loop: the training bar (`Epoch N`, reset every
//! epoch), the validation bar nested below it while validation runs inside `fit` (removed after,
//! Lightning's `leave=False`), and the sanity-check, `validate`, test and predict bars. Each shows
//! position/total, elapsed time, ETA and items per second; the training bar also shows `v_num`
//! and what was logged with `prog_bar(true)`, as Lightning's `get_metrics` does. Metrics are read
//! (which synchronizes with the device) only when the bar redraws: at most
//! [`refresh_rate`](ProgressBar::refresh_rate) times a second, and at the last batch of each loop
//! (where the trainer reads its epoch values anyway); counting any other batch reads the clock
//! and nothing else.
//!
//! When stdout is not a terminal (CI logs, `| cat`), it prints plain lines instead: one per
//! training epoch, and the results of `validate` and `test` ([`EpochSummary`]'s lines).
//!
//! Values are formatted as Lightning's `Tqdm.format_num`: three significant digits (Python's
//! `{:.3g}`), floats padded with zeros to five characters (`2.300`, `0.000168`, `1e-5`).
//! Differences from Lightning, on purpose: the refresh rate is in redraws per second rather than
//! in batches; NaN and infinities print as `nan`, `inf` (tqdm's padding makes them `nan.0`); the
//! training bar counts training batches only, as Lightning 2's does.

use crate::core::output::Output;
use crate::core::state::{RunningStage, TrainerFn, TrainerState};
use crate::hooks::{Callback, CallbackRole, LightningModule, StepOutput};
use crate::{EpochContext, HookContext, StepContext};
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use indicatif;
use indicatif::{MultiProgress, ProgressDrawTarget, ProgressState, ProgressStyle};

/// Formats a value as Lightning's progress bar does (`Tqdm.format_num`: Python's `{:.3g}` with
/// `e+0`/`e-0` shortened, then floats padded with zeros to five characters): `2.300`, `0.123`,
/// `0.000168`, `1e-5`, `1.23e+5`, `-.500`. NaN and infinities print as `nan`, `inf`, `-inf`.
pub fn format_num(value: f64) -> String {
    if !value.is_finite() {
        return value.to_string().to_lowercase();
    }
    const SIGNIFICANT: i32 = 3;
    // The exponent after rounding to three significant digits, as `{:.3g}` decides with it.
    let scientific = format!("{:.*e}", (SIGNIFICANT - 1) as usize, value);
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let strip = |s: &str| -> String {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s.to_string()
        }
    };
    let mut text = if value == 0.0 {
        "0".to_string()
    } else if (-4..SIGNIFICANT).contains(&exponent) {
        strip(&format!("{:.*}", (SIGNIFICANT - 1 - exponent) as usize, value))
    } else {
        let sign = if exponent < 0 { '-' } else { '+' };
        format!("{}e{sign}{}", strip(mantissa), exponent.abs())
    };
    // tqdm replaces `-0` by `-`: `-0.5` shows as `-.5`.
    text = text.replace("-0", "-");
    if !text.contains('e') {
        const PAD: usize = 5;
        if !text.contains('.') && text.len() < PAD {
            text.push('.');
        }
        while text.len() < PAD {
            text.push('0');
        }
    }
    text
}

/// What the progress bar shows after the counts (Lightning's `get_metrics`): `v_num` (the first
/// logger's version, its last four characters when not a number), then every `prog_bar` metric,
/// `name=value` joined by `, `.
pub fn postfix(state: &TrainerState, metrics: &BTreeMap<String, f64>) -> String {
    let version = state.logger_version.as_deref().map(|v| {
        if v.parse::<u64>().is_ok() {
            v.to_string()
        } else {
            v.chars().rev().take(4).collect::<Vec<_>>().into_iter().rev().collect()
        }
    });
    version
        .as_ref()
        .map(|v| format!("v_num={v}"))
        .into_iter()
        .chain(
            metrics
                .iter()
                .filter(|(name, _)| version.is_none() || name.as_str() != "v_num")
                .map(|(name, value)| format!("{name}={}", format_num(*value))),
        )
        .collect::<Vec<_>>()
        .join(", ")
}

/// Prints one plain line per training epoch (its number, the global step, `v_num` and the
/// `prog_bar` metrics, the epoch's duration), and the results of `validate` and `test`, through
/// the trainer's output. It is what [`ProgressBar`] prints when stdout is not a terminal; add it
/// yourself (it then replaces the default progress bar) to get these lines on a terminal too.
#[derive(Debug, Default)]
pub struct EpochSummary {
    epoch_started: Option<Instant>,
}

impl EpochSummary {
    /// `epoch 3 | step 440 | v_num=0, train_loss=0.123 | 1.52s`.
    fn epoch_line(&self, cx: &EpochContext<'_>) -> String {
        let seconds = self.epoch_started.map_or(0.0, |t| t.elapsed().as_secs_f64());
        format!(
            "epoch {} | step {} | {} | {seconds:.2}s",
            cx.current_epoch,
            cx.global_step,
            postfix(cx, &cx.progress_bar_metrics())
        )
    }

    /// `validate | val_acc=0.948, val_loss=0.174`: every metric of the run (what `validate` and
    /// `test` return), as Lightning prints its results table.
    fn results_line(label: &str, metrics: &BTreeMap<String, f64>) -> String {
        let values = metrics
            .iter()
            .map(|(name, value)| format!("{name}={}", format_num(*value)))
            .collect::<Vec<_>>()
            .join(", ");
        format!("{label} | {values}")
    }
}

impl<M: LightningModule> Callback<M> for EpochSummary {
    fn role(&self) -> CallbackRole {
        // Runs after the module's `on_train_epoch_end`, so what it logs there is printed.
        CallbackRole::Monitor
    }

    fn on_train_epoch_start(&mut self, _module: &mut M, _cx: &mut EpochContext<'_>) {
        self.epoch_started = Some(Instant::now());
    }

    fn on_train_epoch_end(&mut self, _module: &mut M, cx: &mut EpochContext<'_>) {
        cx.print(self.epoch_line(cx));
    }

    fn on_validation_end(&mut self, _module: &mut M, cx: &mut HookContext<'_>) {
        if cx.function == TrainerFn::Validating {
            cx.print(Self::results_line("validate", &cx.callback_metrics()));
        }
    }

    fn on_test_end(&mut self, _module: &mut M, cx: &mut HookContext<'_>) {
        cx.print(Self::results_line("test", &cx.callback_metrics()));
    }
}

/// How a [`ProgressBar`] displays.
enum Display {
    /// Bars on stdout when it is a terminal, plain lines otherwise.
    Auto,
    /// Plain lines on stdout.
    Plain,
    /// Plain lines into a writer.
    PlainTo(Arc<Mutex<dyn Write + Send>>),
    /// Bars drawn to this target (taken when the first run starts).
    Bars(Option<ProgressDrawTarget>),
}

/// The default progress bar (Lightning's `TQDMProgressBar`): bars on a terminal, plain lines
/// ([`EpochSummary`]'s) when stdout is not one. Added by default; `enable_progress_bar(false)`
/// turns it off, and one given with `.callback(..)` replaces the default (to change the refresh
/// rate, say). See the [module documentation](self) for what it shows.
pub struct ProgressBar {
    display: Display,
    /// Time between redraws; `None` turns the display off.
    refresh: Option<Duration>,
    refresh_per_second: u8,
    /// Where lines go, once the first run started.
    output: Option<Output>,
    summary: EpochSummary,
    train: Option<indicatif::ProgressBar>,
    /// The bar of the running evaluation loop (sanity check, validation, test or predict).
    eval: Option<indicatif::ProgressBar>,
    /// Finished bars left on screen: kept alive, since `MultiProgress` wipes the lines of a
    /// dropped bar at the next printed line.
    left: Vec<indicatif::ProgressBar>,
    next_draw: Instant,
}

impl std::fmt::Debug for ProgressBar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProgressBar")
            .field("refresh_per_second", &self.refresh_per_second)
            .field("terminal", &self.terminal().is_some())
            .finish_non_exhaustive()
    }
}

impl Default for ProgressBar {
    fn default() -> Self {
        Self::new()
    }
}

/// Redraws per second by default: a few, so that drawing costs nothing next to training.
const DEFAULT_REFRESH_PER_SECOND: u8 = 4;

impl ProgressBar {
    /// Bars on stdout when it is a terminal, plain lines otherwise (also when `TERM=dumb`).
    pub fn new() -> Self {
        Self::with_display(Display::Auto)
    }

    /// Plain lines on stdout, terminal or not.
    pub fn plain() -> Self {
        Self::with_display(Display::Plain)
    }

    /// Plain lines into `writer` (a log file, a buffer).
    pub fn plain_to(writer: impl Write + Send + 'static) -> Self {
        Self::with_display(Display::PlainTo(Arc::new(Mutex::new(writer))))
    }

    /// Bars drawn to `target`, terminal or not: `ProgressDrawTarget::stderr()`, or an in-memory
    /// terminal (`ProgressDrawTarget::term_like`) to see what a person would see.
    pub fn draw_to(target: ProgressDrawTarget) -> Self {
        Self::with_display(Display::Bars(Some(target)))
    }

    fn with_display(display: Display) -> Self {
        let per_second = DEFAULT_REFRESH_PER_SECOND;
        Self {
            display,
            refresh: Some(Duration::from_secs(1) / u32::from(per_second)),
            refresh_per_second: per_second,
            output: None,
            summary: EpochSummary::default(),
            train: None,
            eval: None,
            left: Vec::new(),
            next_draw: Instant::now(),
        }
    }

    /// Redraws the bars at most `per_second` times a second (default 4); 0 turns the display
    /// off, bars and lines (Lightning's `refresh_rate=0`). Lightning counts its refresh rate in
    /// batches; a rate in time keeps the cost the same for fast and slow steps.
    #[must_use]
    pub fn refresh_rate(mut self, per_second: u8) -> Self {
        self.refresh_per_second = per_second;
        self.refresh = (per_second > 0).then(|| Duration::from_secs(1) / u32::from(per_second));
        self
    }

    /// Whether anything is displayed.
    fn enabled(&self) -> bool {
        self.refresh.is_some()
    }

    /// The bars' container, in terminal mode once a run started.
    fn terminal(&self) -> Option<&MultiProgress> {
        match &self.output {
            Some(Output::Bars(multi)) => Some(multi),
            _ => None,
        }
    }

    /// Where this bar's lines go, decided when the first run starts.
    fn output(&mut self) -> Output {
        if let Some(output) = &self.output {
            return output.clone();
        }
        let bars = |target: ProgressDrawTarget| Output::Bars(MultiProgress::with_draw_target(target));
        let output = match &mut self.display {
            Display::Auto => {
                let dumb = std::env::var("TERM").is_ok_and(|term| term == "dumb");
                if std::io::stdout().is_terminal() && !dumb {
                    // indicatif's own limit (20 Hz) stays above ours, so that the redraws we
                    // decide on (at most `refresh_per_second`, and each loop's last batch) show.
                    bars(ProgressDrawTarget::stdout())
                } else {
                    Output::Stdout
                }
            }
            Display::Plain => Output::Stdout,
            Display::PlainTo(writer) => Output::Writer(writer.clone()),
            Display::Bars(target) => bars(target.take().unwrap_or_else(ProgressDrawTarget::stdout)),
        };
        self.output = Some(output.clone());
        output
    }

    /// A new bar titled `title` below the others.
    fn add_bar(&self, title: &str, total: Option<usize>) -> Option<indicatif::ProgressBar> {
        let multi = self.terminal()?;
        let bar = multi.add(match total {
            Some(total) => indicatif::ProgressBar::new(total as u64),
            None => indicatif::ProgressBar::no_length(),
        });
        bar.set_style(bar_style());
        bar.set_prefix(title.to_string());
        Some(bar)
    }

    /// Whether the bars should redraw now, after `done` of `total` batches: at most `refresh`
    /// apart, and always at the last batch. Reads the clock only.
    fn due(&mut self, done: usize, total: Option<usize>) -> bool {
        let Some(refresh) = self.refresh else { return false };
        if total == Some(done) {
            return true;
        }
        let now = Instant::now();
        if now < self.next_draw {
            return false;
        }
        self.next_draw = now + refresh;
        true
    }

    /// Moves the evaluation bar to `done` batches when a redraw is due.
    fn count_eval(&mut self, done: usize, total: Option<usize>) {
        if self.eval.is_none() || !self.due(done, total) {
            return;
        }
        if let Some(bar) = &self.eval {
            update(bar, done, total);
        }
    }

    /// Ends the evaluation bar: left on screen (`leave`), or cleared and removed.
    fn close_eval(&mut self, leave: bool) {
        if let Some(bar) = self.eval.take() {
            if leave {
                bar.finish();
                self.left.push(bar);
            } else {
                bar.finish_and_clear();
                if let Some(multi) = self.terminal() {
                    multi.remove(&bar);
                }
            }
        }
    }

    /// Shows the current `prog_bar` metrics on the training bar (reads them from the device).
    fn show_metrics(&self, state: &TrainerState, metrics: impl FnOnce() -> BTreeMap<String, f64>) {
        if let Some(bar) = &self.train {
            let postfix = postfix(state, &metrics());
            bar.set_message(if postfix.is_empty() {
                postfix
            } else {
                format!(", {postfix}")
            });
        }
    }
}

/// tqdm's look: `Epoch 3:  45%|████▌     | 45/100 [00:01<00:02, 30.00it/s, v_num=0, loss=0.123]`.
fn bar_style() -> ProgressStyle {
    const TEMPLATE: &str = "{prefix}: {percent:>3}%|{wide_bar}| {count} [{elapsed_tqdm}<{eta_tqdm}, {rate}{msg}]";
    ProgressStyle::with_template(TEMPLATE)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .with_key("count", |state: &ProgressState, w: &mut dyn std::fmt::Write| {
            // `?` until the loop knows its number of batches (after its first batch).
            let _ = match state.len() {
                Some(len) => write!(w, "{}/{len}", state.pos()),
                None => write!(w, "{}/?", state.pos()),
            };
        })
        .with_key("elapsed_tqdm", |state: &ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = w.write_str(&format_interval(state.elapsed()));
        })
        .with_key("eta_tqdm", |state: &ProgressState, w: &mut dyn std::fmt::Write| {
            let eta = if state.per_sec() > 0.0 {
                format_interval(state.eta())
            } else {
                "?".into()
            };
            let _ = w.write_str(&eta);
        })
        .with_key("rate", |state: &ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = match state.per_sec() {
                rate if rate >= 1.0 => write!(w, "{rate:.2}it/s"),
                rate if rate > 0.0 => write!(w, "{:.2}s/it", 1.0 / rate),
                _ => w.write_str("?it/s"),
            };
        })
        .progress_chars("█▉▊▋▌▍▎▏ ")
}

/// tqdm's `format_interval`: `mm:ss`, or `h:mm:ss` from an hour on.
fn format_interval(duration: Duration) -> String {
    let seconds = duration.as_secs();
    let (hours, minutes, seconds) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    if hours > 0 {
        format!("{hours}:{minutes:02}:{seconds:02}")
    } else {
        format!("{minutes:02}:{seconds:02}")
    }
}

/// Sets a bar's total (once known) and position.
fn update(bar: &indicatif::ProgressBar, done: usize, total: Option<usize>) {
    if let Some(total) = total {
        bar.set_length(total as u64);
    }
    bar.set_position(done as u64);
}

impl<M: LightningModule> Callback<M> for ProgressBar {
    fn role(&self) -> CallbackRole {
        // Runs after the module's `on_train_epoch_end`, so what it logs there is shown.
        CallbackRole::Monitor
    }

    fn setup(&mut self, _module: &mut M, _stage: crate::Stage, cx: &mut HookContext<'_>) {
        if self.enabled() {
            let output = self.output();
            cx.set_output(output);
        }
    }

    fn on_sanity_check_start(&mut self, _module: &mut M, cx: &mut HookContext<'_>) {
        self.eval = self.add_bar("Sanity Checking DataLoader 0", cx.num_sanity_val_batches);
    }

    fn on_sanity_check_end(&mut self, _module: &mut M, _cx: &mut HookContext<'_>) {
        self.close_eval(false);
    }

    fn on_train_start(&mut self, _module: &mut M, _cx: &mut EpochContext<'_>) {
        if self.train.is_none() {
            self.train = self.add_bar("Epoch 0", None);
        }
    }

    fn on_train_epoch_start(&mut self, module: &mut M, cx: &mut EpochContext<'_>) {
        Callback::<M>::on_train_epoch_start(&mut self.summary, module, cx);
        if let Some(bar) = &self.train {
            bar.reset();
            // Known from the second epoch on (the loop learns it from its first batch).
            match cx.num_training_batches {
                Some(total) => bar.set_length(total as u64),
                None => bar.unset_length(),
            }
            bar.set_prefix(format!("Epoch {}", cx.current_epoch));
        }
    }

    fn on_train_batch_end(
        &mut self,
        _module: &mut M,
        _outputs: Option<&StepOutput<M::TrainExtra>>,
        _batch: &M::Batch,
        batch_idx: usize,
        cx: &mut StepContext<'_>,
    ) {
        let (done, total) = (batch_idx + 1, cx.num_training_batches);
        if self.train.is_none() || !self.due(done, total) {
            return;
        }
        if let Some(bar) = &self.train {
            update(bar, done, total);
        }
        self.show_metrics(cx, || cx.progress_bar_metrics());
    }

    fn on_train_epoch_end(&mut self, module: &mut M, cx: &mut EpochContext<'_>) {
        if !self.enabled() {
            return;
        }
        if self.terminal().is_some() {
            self.show_metrics(cx, || cx.progress_bar_metrics());
        } else {
            Callback::<M>::on_train_epoch_end(&mut self.summary, module, cx);
        }
    }

    fn on_train_end(&mut self, _module: &mut M, _cx: &mut HookContext<'_>) {
        if let Some(bar) = self.train.take() {
            bar.finish();
            self.left.push(bar);
        }
    }

    fn on_validation_start(&mut self, _module: &mut M, cx: &mut EpochContext<'_>) {
        if cx.stage != RunningStage::SanityChecking {
            self.eval = self.add_bar("Validation DataLoader 0", cx.num_val_batches);
        }
    }

    fn on_validation_batch_end(
        &mut self,
        _module: &mut M,
        _outputs: &M::ValidationOutput,
        _batch: &M::Batch,
        batch_idx: usize,
        cx: &mut StepContext<'_>,
    ) {
        let total = if cx.sanity_checking() {
            cx.num_sanity_val_batches
        } else {
            cx.num_val_batches
        };
        self.count_eval(batch_idx + 1, total);
    }

    fn on_validation_end(&mut self, module: &mut M, cx: &mut HookContext<'_>) {
        if cx.sanity_checking() {
            return;
        }
        if cx.fitting() {
            self.close_eval(false);
            self.show_metrics(cx, || cx.progress_bar_metrics());
        } else {
            self.close_eval(true);
            if self.enabled() {
                Callback::<M>::on_validation_end(&mut self.summary, module, cx);
            }
        }
    }

    fn on_test_start(&mut self, _module: &mut M, cx: &mut EpochContext<'_>) {
        self.eval = self.add_bar("Testing DataLoader 0", cx.num_test_batches);
    }

    fn on_test_batch_end(
        &mut self,
        _module: &mut M,
        _outputs: &M::TestOutput,
        _batch: &M::Batch,
        batch_idx: usize,
        cx: &mut StepContext<'_>,
    ) {
        self.count_eval(batch_idx + 1, cx.num_test_batches);
    }

    fn on_test_end(&mut self, module: &mut M, cx: &mut HookContext<'_>) {
        self.close_eval(true);
        if self.enabled() {
            Callback::<M>::on_test_end(&mut self.summary, module, cx);
        }
    }

    fn on_predict_start(&mut self, _module: &mut M, cx: &mut HookContext<'_>) {
        self.eval = self.add_bar("Predicting DataLoader 0", cx.num_predict_batches);
    }

    fn on_predict_batch_end(
        &mut self,
        _module: &mut M,
        _outputs: &M::Prediction,
        _batch: &M::Batch,
        batch_idx: usize,
        cx: &mut HookContext<'_>,
    ) {
        self.count_eval(batch_idx + 1, cx.num_predict_batches);
    }

    fn on_predict_end(&mut self, _module: &mut M, _cx: &mut HookContext<'_>) {
        self.close_eval(true);
    }

    fn on_exception(&mut self, _module: &mut M, _error: &crate::Error, _cx: &mut HookContext<'_>) {
        // The bars stop where they were; the error is printed below them.
        self.close_eval(false);
        if let Some(bar) = self.train.take() {
            bar.abandon();
            self.left.push(bar);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Device;

    #[test]
    fn numbers_are_formatted_as_lightnings_bar_formats_them() {
        let cases = [
            (2.30412, "2.300"),
            (0.1234567, "0.123"),
            (0.5, "0.500"),
            (12.0, "12.00"),
            (100.0, "100.0"),
            (0.0, "0.000"),
            (-0.5, "-.500"),
            (0.00024, "0.00024"),
            (0.000168, "0.000168"),
            (1e-5, "1e-5"),
            (0.000012345, "1.23e-5"),
            (1234.5, "1.23e+3"),
            (123456.0, "1.23e+5"),
            (1e20, "1e+20"),
            (f64::NAN, "nan"),
            (f64::NEG_INFINITY, "-inf"),
        ];
        for (value, shown) in cases {
            assert_eq!(format_num(value), shown, "format_num({value})");
        }
    }

    #[test]
    fn intervals_are_formatted_as_tqdm_formats_them() {
        assert_eq!(format_interval(Duration::from_millis(65_900)), "01:05");
        assert_eq!(format_interval(Duration::from_secs(3 * 3600 + 7)), "3:00:07");
    }

    #[test]
    fn postfix_starts_with_v_num_and_shortens_named_versions() {
        let mut state = TrainerState::new(TrainerFn::Fitting, Device::default());
        let metrics = BTreeMap::from([("loss".to_string(), 0.25), ("lr".to_string(), 0.000168)]);
        assert_eq!(postfix(&state, &metrics), "loss=0.250, lr=0.000168");
        state.logger_version = Some("3".into());
        assert_eq!(postfix(&state, &metrics), "v_num=3, loss=0.250, lr=0.000168");
        state.logger_version = Some("my_experiment".into());
        assert_eq!(postfix(&state, &BTreeMap::new()), "v_num=ment");
    }
}
