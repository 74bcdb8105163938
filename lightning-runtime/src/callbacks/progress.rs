//! The progress bar (Lightning's `TQDMProgressBar`), drawn with [`indicatif`], and its plain-text
//! form for logs and pipes ([`EpochSummary`]).
//!
//! On a terminal, [`ProgressBar`] draws a bar per loop: the training bar (`Epoch N`, reset every
//! epoch), the validation bar nested below it while validation runs inside `fit` (removed after,
//! Lightning's `leave=False`), and the sanity-check, `validate`, test and predict bars. Each line
//! is tqdm's, as Lightning formats it (`{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining},
//! {rate_noinv_fmt}{postfix}]`), laid out for the terminal's width at every redraw: the bar takes
//! what the text leaves, at least one cell, and a line longer than the terminal is cut at its
//! width (tqdm's `dynamic_ncols`), so it never wraps. A bar is first drawn once its loop knows its
//! number of batches (after fetching its first batch: burn's loaders know their items, not their
//! batches), so the first frame reads `0/110`, not `0/?`. The training bar also shows `v_num` and
//! what was logged with `prog_bar(true)`, as Lightning's `get_metrics` does. Metrics are read
//! (which synchronizes with the device) only when the bar redraws: at most
//! [`refresh_rate`](ProgressBar::refresh_rate) times a second, and at the last batch of each loop
//! (where the trainer reads its epoch values anyway); counting any other batch reads the clock
//! and nothing else.
//!
//! When a loop's bars are done (the end of training, of `validate`, `test` or `predict`), they stay
//! on screen as last drawn, and what the run prints afterwards goes below them: the trainer's
//! results table of `validate` and `test` ([`results_table`]), and why `fit` stopped.
//!
//! When stdout is not a terminal (CI logs, `| cat`), it prints plain lines instead: one per
//! training epoch ([`EpochSummary`]'s lines).
//!
//! Values are formatted as Lightning's `Tqdm.format_num`: three significant digits (Python's
//! `{:.3g}`), floats padded with zeros to five characters (`2.300`, `0.000168`, `1e-5`).
//! Differences from Lightning, on purpose: the refresh rate is in redraws per second rather than
//! in batches; NaN and infinities print as `nan`, `inf` (tqdm's padding makes them `nan.0`); the
//! training bar counts training batches only, as Lightning 2's does; every bar's rate is the
//! average over its loop (Lightning's training bar uses `smoothing=0`, its evaluation bars an
//! exponential average).

use crate::core::output::Output;
use crate::core::state::{RunningStage, TrainerState};
use crate::hooks::{Callback, CallbackRole, LightningModule, StepOutput};
use crate::{EpochContext, HookContext, StepContext};
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

pub use indicatif;
use indicatif::{MultiProgress, ProgressDrawTarget, ProgressState, ProgressStyle, TermLike};

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
/// `prog_bar` metrics, the epoch's duration) through the trainer's output. It is what [`ProgressBar`] prints when stdout is not a terminal; add it
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
}

/// Lightning's results table after `validate` and `test` (`_EvaluationLoop._print_results`
/// without `rich`), laid out for `width` columns, one column per dataloader:
///
/// ```text
/// ────────────────────────────────────────────────────────────────────────────────
///        Test metric             DataLoader 0             DataLoader 1
/// ────────────────────────────────────────────────────────────────────────────────
///         test_acc            0.9484999775886536       0.8779999613761902
///         test_loss           0.18226367235183716      0.4102998375892639
/// ────────────────────────────────────────────────────────────────────────────────
/// ```
///
/// Names lose their `/dataloader_idx_N` (the column says it); a dataloader without a metric
/// shows a blank. Values print as Python prints them (`repr`); metrics by name. Columns that do
/// not fit the width go to further tables below, as Lightning's do. Empty when nothing was
/// logged, as Lightning prints nothing then.
pub fn results_table(stage: &str, results: &[crate::Metrics], width: usize) -> String {
    let results: Vec<BTreeMap<&str, f64>> = results
        .iter()
        .map(|metrics| {
            metrics
                .iter()
                .map(|(name, value)| (name.split("/dataloader_idx_").next().unwrap_or(name), *value))
                .collect()
        })
        .collect();
    let names: std::collections::BTreeSet<&str> = results.iter().flat_map(|r| r.keys().copied()).collect();
    if names.is_empty() {
        return String::new();
    }
    let headers: Vec<String> = (0..results.len()).map(|i| format!("DataLoader {i}")).collect();
    let longest = names.iter().map(|name| name.chars().count()).max().unwrap_or(0);
    let longest_header = headers.iter().map(String::len).max().unwrap_or(0);
    let column = longest.max(longest_header).max(25).min(width / 2).max(1);
    let half = (width / 2).max(1);
    let columns_per_table = (width.saturating_sub(column) / column).max(1);
    let cell = |text: &str| format!("{text:^column$}");
    let row = |cells: &[&str]| {
        cells
            .iter()
            .map(|text| cell(text))
            .collect::<String>()
            .trim_end()
            .to_string()
    };
    // `"test Metric".capitalize()`.
    let mut title: String = stage.chars().take(1).flat_map(char::to_uppercase).collect();
    title.push_str(&stage.chars().skip(1).collect::<String>().to_lowercase());
    title.push_str(" metric");
    let rule = "─".repeat(width);
    let mut tables = Vec::new();
    for first in (0..results.len()).step_by(columns_per_table) {
        let shown = first..(first + columns_per_table).min(results.len());
        let mut heading = vec![title.as_str()];
        heading.extend(headers[shown.clone()].iter().map(String::as_str));
        let mut lines = vec![rule.clone(), row(&heading), rule.clone()];
        for name in &names {
            let values: Vec<String> = results[shown.clone()]
                .iter()
                .map(|r| r.get(name).map_or_else(|| " ".to_string(), |v| python_repr(*v)))
                .collect();
            let chars: Vec<char> = name.chars().collect();
            if chars.len() > half {
                // Lightning cuts a long name into pieces of half the width; the values go with
                // the first piece.
                let mut rest: &[char] = &chars;
                let mut first_piece = true;
                while rest.len() > half {
                    let piece: String = rest[..half].iter().collect();
                    let mut cells = vec![piece.as_str()];
                    cells.extend(values.iter().map(|v| if first_piece { v.as_str() } else { " " }));
                    lines.push(row(&cells));
                    first_piece = false;
                    rest = &rest[half..];
                }
                let piece: String = rest.iter().collect();
                lines.push(row(&[piece.as_str(), " "]));
            } else {
                let mut cells = vec![*name];
                cells.extend(values.iter().map(String::as_str));
                lines.push(row(&cells));
            }
        }
        lines.push(rule.clone());
        tables.push(lines.join("\n"));
    }
    tables.join("\n")
}

/// Python's `repr` of a float (what `f"{value}"` prints): the shortest digits that read back to
/// the same value, fixed between 1e-4 and 1e16 (`0.0001`, `1.0`, `100.0`), else scientific with
/// a two-digit exponent (`1e-05`, `1.5e+16`).
pub fn python_repr(value: f64) -> String {
    if value.is_nan() {
        return "nan".into();
    }
    if value.is_infinite() {
        return if value > 0.0 { "inf" } else { "-inf" }.into();
    }
    // Rust's `{:e}` gives the shortest round-trip digits: `9.485e-1`.
    let scientific = format!("{value:e}");
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    if (-4..16).contains(&exponent) {
        if exponent >= 0 {
            let point = exponent as usize + 1;
            let whole = if digits.len() >= point {
                digits[..point].to_string()
            } else {
                format!("{digits}{}", "0".repeat(point - digits.len()))
            };
            let fraction = if digits.len() > point { &digits[point..] } else { "0" };
            format!("{sign}{whole}.{fraction}")
        } else {
            format!("{sign}0.{}{digits}", "0".repeat((-exponent - 1) as usize))
        }
    } else {
        let (first, rest) = digits.split_at(1);
        let fraction = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let exponent_sign = if exponent < 0 { '-' } else { '+' };
        format!("{sign}{first}{fraction}e{exponent_sign}{:02}", exponent.abs())
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
    /// Bars drawn on this terminal.
    Bars(Terminal),
}

/// What a [`Display`] resolved to when the first run started.
enum Resolved {
    Plain(Output),
    /// Bars on a terminal, with indicatif's limit on redraws per second (none: every redraw
    /// this callback decides on is drawn, as on a terminal given with `draw_to`).
    Bars(Terminal, Option<u8>),
}

/// The terminal the bars are drawn on. indicatif asks it for its width just before it formats
/// a bar; the width is kept, so that the bar's line is laid out for the width it is drawn at
/// (indicatif allows one element of a template to take the free width, which cannot trim a
/// long metrics suffix: the line is laid out here instead).
#[derive(Clone)]
struct Terminal {
    inner: Arc<dyn TermLike>,
    width: Arc<AtomicU16>,
}

impl Terminal {
    fn new(inner: Arc<dyn TermLike>) -> Self {
        let width = Arc::new(AtomicU16::new(inner.width()));
        Self { inner, width }
    }
}

impl std::fmt::Debug for Terminal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Terminal")
            .field("width", &self.width.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl TermLike for Terminal {
    fn width(&self) -> u16 {
        let width = self.inner.width();
        self.width.store(width, Ordering::Relaxed);
        width
    }
    fn height(&self) -> u16 {
        self.inner.height()
    }
    fn move_cursor_up(&self, n: usize) -> std::io::Result<()> {
        self.inner.move_cursor_up(n)
    }
    fn move_cursor_down(&self, n: usize) -> std::io::Result<()> {
        self.inner.move_cursor_down(n)
    }
    fn move_cursor_right(&self, n: usize) -> std::io::Result<()> {
        self.inner.move_cursor_right(n)
    }
    fn move_cursor_left(&self, n: usize) -> std::io::Result<()> {
        self.inner.move_cursor_left(n)
    }
    fn write_line(&self, s: &str) -> std::io::Result<()> {
        self.inner.write_line(s)
    }
    fn write_str(&self, s: &str) -> std::io::Result<()> {
        self.inner.write_str(s)
    }
    fn clear_line(&self) -> std::io::Result<()> {
        self.inner.clear_line()
    }
    fn flush(&self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// What a bar's line shows besides its counts, read when indicatif draws it.
#[derive(Default)]
struct BarText {
    title: String,
    /// `name=value, ...`, without the leading `, `.
    postfix: String,
}

/// One loop's bar: indicatif's bar (which keeps the counts and the clock) drawing tqdm's line.
struct Bar {
    bar: indicatif::ProgressBar,
    text: Arc<Mutex<BarText>>,
    /// Whether it is drawn yet: not before its loop knows its number of batches.
    shown: bool,
}

/// Locks `mutex`, also after a panic elsewhere (its text stays whole: plain assignments).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Bar {
    /// A bar titled `title`, not drawn yet, whose line is laid out for the terminal's `width`.
    fn new(title: &str, width: Arc<AtomicU16>) -> Self {
        let text = Arc::new(Mutex::new(BarText {
            title: title.to_string(),
            postfix: String::new(),
        }));
        let shared = text.clone();
        let style = ProgressStyle::with_template("{tqdm}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .with_key("tqdm", move |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                let text = lock(&shared);
                let line = TqdmLine {
                    title: &text.title,
                    n: state.pos() as usize,
                    total: state.len().map(|len| len as usize),
                    elapsed: state.elapsed(),
                    postfix: &text.postfix,
                }
                .render(usize::from(width.load(Ordering::Relaxed)));
                let _ = w.write_str(&line);
            });
        let bar = indicatif::ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
        bar.set_style(style);
        Self {
            bar,
            text,
            shown: false,
        }
    }

    fn set_title(&self, title: String) {
        lock(&self.text).title = title;
    }

    fn set_postfix(&self, postfix: String) {
        lock(&self.text).postfix = postfix;
    }

    /// Adds the bar to `multi` with its total, and draws its first frame (`0/110`).
    fn show(&mut self, multi: &MultiProgress, total: usize) {
        self.bar.set_length(total as u64);
        self.bar.reset();
        self.bar = multi.add(self.bar.clone());
        self.shown = true;
        self.bar.tick();
    }

    /// Moves it to `done` batches of `total`, redrawing it.
    fn update(&self, done: usize, total: Option<usize>) {
        // Each call redraws: the length only when it changed.
        if let Some(total) = total.filter(|total| self.bar.length() != Some(*total as u64)) {
            self.bar.set_length(total as u64);
        }
        self.bar.set_position(done as u64);
    }
}

/// One line of tqdm's `format_meter` with Lightning's `BAR_FORMAT`:
/// `{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_noinv_fmt}{postfix}]`.
#[derive(Clone, Copy, Debug)]
pub struct TqdmLine<'a> {
    /// The bar's description (`Epoch 3`).
    pub title: &'a str,
    /// Batches done.
    pub n: usize,
    /// Batches in the loop, when known.
    pub total: Option<usize>,
    /// Time since the loop (or the epoch) started.
    pub elapsed: Duration,
    /// The metrics (`v_num=0, loss=0.123`), without the leading `, `.
    pub postfix: &'a str,
}

impl TqdmLine<'_> {
    /// The line for a terminal `width` columns wide (tqdm's `dynamic_ncols`): the bar takes the
    /// columns the text leaves, at least one, and the line is cut at `width` columns, so it
    /// never wraps (0: no width known, 80 columns).
    pub fn render(&self, width: usize) -> String {
        let width = if width == 0 { 80 } else { width };
        let seconds = self.elapsed.as_secs_f64();
        // Lightning's training bar averages over the epoch (`smoothing=0`).
        let rate = (self.n > 0 && seconds > 0.0).then(|| self.n as f64 / seconds);
        let rate_text = rate.map_or_else(|| "?it/s".to_string(), |rate| format!("{rate:5.2}it/s"));
        let postfix = if self.postfix.is_empty() {
            String::new()
        } else {
            format!(", {}", self.postfix)
        };
        let elapsed = format_interval(self.elapsed);
        let desc = if self.title.is_empty() {
            String::new()
        } else {
            format!("{}: ", self.title)
        };
        let Some(total) = self.total else {
            // tqdm without a total: no bar, no percentage, no ETA.
            let line = format!("{desc}{}it [{elapsed}, {rate_text}{postfix}]", self.n);
            return console::truncate_str(&line, width, "").into_owned();
        };
        let fraction = if total == 0 {
            1.0
        } else {
            (self.n as f64 / total as f64).clamp(0.0, 1.0)
        };
        let remaining = match rate {
            Some(rate) => format_interval(Duration::from_secs_f64(total.saturating_sub(self.n) as f64 / rate)),
            None => "?".into(),
        };
        let left = format!("{desc}{:3.0}%|", fraction * 100.0);
        let right = format!("| {}/{total} [{elapsed}<{remaining}, {rate_text}{postfix}]", self.n);
        let text_width = console::measure_text_width(&left) + console::measure_text_width(&right);
        let bar = tqdm_bar(fraction, width.saturating_sub(text_width).max(1));
        let line = format!("{left}{bar}{right}");
        console::truncate_str(&line, width, "").into_owned()
    }
}

/// tqdm's `Bar` in its Unicode charset: whole blocks, the fraction of the next cell in eighths,
/// then spaces, `cells` wide.
fn tqdm_bar(fraction: f64, cells: usize) -> String {
    const CHARSET: [char; 9] = [' ', '▏', '▎', '▍', '▌', '▋', '▊', '▉', '█'];
    let eighths = (fraction * cells as f64 * 8.0) as usize;
    let (full, partial) = (eighths / 8, eighths % 8);
    let mut bar: String = std::iter::repeat_n(CHARSET[8], full.min(cells)).collect();
    if full < cells {
        bar.push(CHARSET[partial]);
        bar.extend(std::iter::repeat_n(' ', cells - full - 1));
    }
    bar
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
    /// Where lines go, decided when the first run starts.
    resolved: Option<Resolved>,
    /// The bars being drawn (terminal mode): made at the start of a run when there are none, and
    /// let go (its bars frozen on screen) when a loop's bars are done.
    multi: Option<MultiProgress>,
    summary: EpochSummary,
    train: Option<Bar>,
    /// The bar of the running evaluation loop (sanity check, validation, test or predict).
    eval: Option<Bar>,
    /// The dataloader the evaluation bar counts (Lightning's bar restarts, retitled, for each).
    eval_dataloader: usize,
    /// Finished bars left on screen: kept alive until they are frozen, since `MultiProgress`
    /// wipes the lines of a dropped bar at the next printed line.
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

/// indicatif's own limit on redraws of stdout (its default): above ours, so that the redraws we
/// decide on (at most `refresh_per_second`, and each loop's boundaries) show, while a run of
/// many tiny epochs does not redraw more than this.
const TERMINAL_HZ: u8 = 20;

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

    /// Bars drawn on `terminal`, stdout being a terminal or not: an in-memory terminal
    /// (`indicatif::InMemoryTerm`) to see what a person would see, or `console::Term::stderr()`.
    /// Every redraw the bar decides on is drawn (on stdout, indicatif limits them to 20 a
    /// second).
    pub fn draw_to(terminal: impl TermLike + 'static) -> Self {
        Self::with_display(Display::Bars(Terminal::new(Arc::new(terminal))))
    }

    fn with_display(display: Display) -> Self {
        let per_second = DEFAULT_REFRESH_PER_SECOND;
        Self {
            display,
            refresh: Some(Duration::from_secs(1) / u32::from(per_second)),
            refresh_per_second: per_second,
            resolved: None,
            multi: None,
            summary: EpochSummary::default(),
            train: None,
            eval: None,
            eval_dataloader: 0,
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

    /// The bars' container, in terminal mode while bars are drawn.
    fn terminal(&self) -> Option<&MultiProgress> {
        self.multi.as_ref()
    }

    /// Where this run's lines go: plain lines, or above the bars of a container (a new one when
    /// the last was frozen).
    fn output(&mut self) -> Output {
        if self.resolved.is_none() {
            let resolved = match &self.display {
                Display::Auto => {
                    let dumb = std::env::var("TERM").is_ok_and(|term| term == "dumb");
                    if std::io::stdout().is_terminal() && !dumb {
                        Resolved::Bars(Terminal::new(Arc::new(console::Term::stdout())), Some(TERMINAL_HZ))
                    } else {
                        Resolved::Plain(Output::Stdout)
                    }
                }
                Display::Plain => Resolved::Plain(Output::Stdout),
                Display::PlainTo(writer) => Resolved::Plain(Output::Writer(writer.clone())),
                Display::Bars(terminal) => Resolved::Bars(terminal.clone(), None),
            };
            self.resolved = Some(resolved);
        }
        match &self.resolved {
            Some(Resolved::Bars(terminal, hz)) => {
                let multi = self.multi.get_or_insert_with(|| {
                    let boxed = Box::new(terminal.clone());
                    MultiProgress::with_draw_target(match hz {
                        Some(hz) => ProgressDrawTarget::term_like_with_hz(boxed, *hz),
                        None => ProgressDrawTarget::term_like(boxed),
                    })
                });
                Output::Bars {
                    multi: multi.clone(),
                    terminal: Arc::new(terminal.clone()),
                }
            }
            Some(Resolved::Plain(output)) => output.clone(),
            None => Output::Stdout,
        }
    }

    /// A bar titled `title`, drawn once its total is known ([`show`](Self::show)).
    fn new_bar(&self, title: &str) -> Option<Bar> {
        self.terminal()?;
        match &self.resolved {
            Some(Resolved::Bars(terminal, _)) => Some(Bar::new(title, terminal.width.clone())),
            _ => None,
        }
    }

    /// Draws `bar` below the others once `total` is known.
    fn show(multi: Option<&MultiProgress>, bar: Option<&mut Bar>, total: Option<usize>) {
        if let (Some(multi), Some(bar), Some(total)) = (multi, bar, total)
            && !bar.shown
        {
            bar.show(multi, total);
        }
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

    /// A new evaluation bar, titled for dataloader 0.
    fn new_eval_bar(&mut self, title: &str) {
        self.eval = self.new_bar(&format!("{title} DataLoader 0"));
        self.eval_dataloader = 0;
    }

    /// Before a batch of dataloader `dataloader_idx`: the first batch of another dataloader
    /// restarts the evaluation bar with that dataloader's title and total (Lightning's
    /// `has_dataloader_changed` then `reset`), then it is shown once its total is known.
    fn eval_batch_start(&mut self, title: &str, dataloader_idx: usize, total: Option<usize>) {
        if dataloader_idx != self.eval_dataloader {
            self.eval_dataloader = dataloader_idx;
            if let Some(bar) = &mut self.eval {
                bar.set_title(format!("{title} DataLoader {dataloader_idx}"));
                if bar.shown {
                    if let Some(total) = total {
                        bar.bar.set_length(total as u64);
                    }
                    bar.bar.reset();
                }
            }
        }
        Self::show(self.multi.as_ref(), self.eval.as_mut(), total);
    }

    /// Moves the evaluation bar to `done` batches when a redraw is due.
    fn count_eval(&mut self, done: usize, total: Option<usize>) {
        if !self.eval.as_ref().is_some_and(|bar| bar.shown) || !self.due(done, total) {
            return;
        }
        if let Some(bar) = &self.eval {
            bar.update(done, total);
        }
    }

    /// Ends the evaluation bar: left on screen (`leave`), or cleared and removed.
    fn close_eval(&mut self, leave: bool) {
        let Some(Bar { bar, shown, .. }) = self.eval.take() else {
            return;
        };
        if !shown {
            return;
        }
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

    /// The loop's bars are done: they stay on screen as last drawn, and the container stops
    /// drawing, so that what the run prints next (results, why `fit` stopped) goes below them.
    /// The next run draws its bars in a new container, below.
    fn freeze(&mut self) {
        if let Some(multi) = self.multi.take() {
            multi.set_draw_target(ProgressDrawTarget::hidden());
        }
        self.left.clear();
    }

    /// Shows the current `prog_bar` metrics on the training bar (reads them from the device)
    /// and redraws it.
    fn show_metrics(&self, state: &TrainerState, metrics: impl FnOnce() -> BTreeMap<String, f64>) {
        if let Some(bar) = self.train.as_ref().filter(|bar| bar.shown) {
            bar.set_postfix(postfix(state, &metrics()));
            bar.bar.tick();
        }
    }
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

    fn on_sanity_check_start(&mut self, _module: &mut M, _cx: &mut HookContext<'_>) {
        self.new_eval_bar("Sanity Checking");
    }

    fn on_sanity_check_end(&mut self, _module: &mut M, _cx: &mut HookContext<'_>) {
        self.close_eval(false);
    }

    fn on_train_start(&mut self, _module: &mut M, _cx: &mut EpochContext<'_>) {
        if self.train.is_none() {
            self.train = self.new_bar("Epoch 0");
        }
    }

    fn on_train_epoch_start(&mut self, module: &mut M, cx: &mut EpochContext<'_>) {
        Callback::<M>::on_train_epoch_start(&mut self.summary, module, cx);
        let multi = self.multi.clone();
        if let Some(bar) = &mut self.train {
            bar.set_title(format!("Epoch {}", cx.current_epoch));
            if bar.shown {
                // Known from the second epoch on (the loop learns it from its first batch).
                if let Some(total) = cx.num_training_batches {
                    bar.bar.set_length(total as u64);
                }
                bar.bar.reset();
            } else {
                Self::show(multi.as_ref(), Some(bar), cx.num_training_batches);
            }
        }
    }

    fn on_train_batch_start(
        &mut self,
        _module: &mut M,
        _batch: &M::Batch,
        _batch_idx: usize,
        cx: &mut StepContext<'_>,
    ) {
        Self::show(self.multi.as_ref(), self.train.as_mut(), cx.num_training_batches);
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
        if !self.train.as_ref().is_some_and(|bar| bar.shown) || !self.due(done, total) {
            return;
        }
        if let Some(bar) = &self.train {
            bar.set_postfix(postfix(cx, &cx.progress_bar_metrics()));
            bar.update(done, total);
        }
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
        if let Some(Bar { bar, shown, .. }) = self.train.take()
            && shown
        {
            bar.finish();
            self.left.push(bar);
        }
        // What `fit` prints from now on (why it stopped) goes below the bars.
        self.freeze();
    }

    fn on_validation_start(&mut self, _module: &mut M, cx: &mut EpochContext<'_>) {
        if cx.stage != RunningStage::SanityChecking {
            self.new_eval_bar("Validation");
        }
    }

    fn on_validation_batch_start(
        &mut self,
        _module: &mut M,
        _batch: &M::ValBatch,
        _batch_idx: usize,
        dataloader_idx: usize,
        cx: &mut StepContext<'_>,
    ) {
        let (title, total) = if cx.sanity_checking() {
            ("Sanity Checking", cx.num_sanity_val_batches)
        } else {
            ("Validation", cx.num_val_batches)
        };
        self.eval_batch_start(title, dataloader_idx, total);
    }

    fn on_validation_batch_end(
        &mut self,
        _module: &mut M,
        _outputs: &M::ValidationOutput,
        _batch: &M::ValBatch,
        batch_idx: usize,
        _dataloader_idx: usize,
        cx: &mut StepContext<'_>,
    ) {
        let total = if cx.sanity_checking() {
            cx.num_sanity_val_batches
        } else {
            cx.num_val_batches
        };
        self.count_eval(batch_idx + 1, total);
    }

    fn on_validation_end(&mut self, _module: &mut M, cx: &mut HookContext<'_>) {
        if cx.sanity_checking() {
            return;
        }
        if cx.fitting() {
            self.close_eval(false);
            self.show_metrics(cx, || cx.progress_bar_metrics());
        } else {
            // The trainer prints the results table next, below the bars.
            self.close_eval(true);
            self.freeze();
        }
    }

    fn on_test_start(&mut self, _module: &mut M, _cx: &mut EpochContext<'_>) {
        self.new_eval_bar("Testing");
    }

    fn on_test_batch_start(
        &mut self,
        _module: &mut M,
        _batch: &M::TestBatch,
        _batch_idx: usize,
        dataloader_idx: usize,
        cx: &mut StepContext<'_>,
    ) {
        self.eval_batch_start("Testing", dataloader_idx, cx.num_test_batches);
    }

    fn on_test_batch_end(
        &mut self,
        _module: &mut M,
        _outputs: &M::TestOutput,
        _batch: &M::TestBatch,
        batch_idx: usize,
        _dataloader_idx: usize,
        cx: &mut StepContext<'_>,
    ) {
        self.count_eval(batch_idx + 1, cx.num_test_batches);
    }

    fn on_test_end(&mut self, _module: &mut M, _cx: &mut HookContext<'_>) {
        self.close_eval(true);
        // The trainer prints the results table next, below the bars.
        self.freeze();
    }

    fn on_predict_start(&mut self, _module: &mut M, _cx: &mut HookContext<'_>) {
        self.new_eval_bar("Predicting");
    }

    fn on_predict_batch_start(
        &mut self,
        _module: &mut M,
        _batch: &M::PredictBatch,
        _batch_idx: usize,
        dataloader_idx: usize,
        cx: &mut HookContext<'_>,
    ) {
        self.eval_batch_start("Predicting", dataloader_idx, cx.num_predict_batches);
    }

    fn on_predict_batch_end(
        &mut self,
        _module: &mut M,
        _outputs: &M::Prediction,
        _batch: &M::PredictBatch,
        batch_idx: usize,
        _dataloader_idx: usize,
        cx: &mut HookContext<'_>,
    ) {
        self.count_eval(batch_idx + 1, cx.num_predict_batches);
    }

    fn on_predict_end(&mut self, _module: &mut M, _cx: &mut HookContext<'_>) {
        self.close_eval(true);
        self.freeze();
    }

    fn on_exception(&mut self, _module: &mut M, _error: &crate::Error, _cx: &mut HookContext<'_>) {
        // The bars stop where they were; the error is printed below them.
        self.close_eval(false);
        if let Some(Bar { bar, shown, .. }) = self.train.take()
            && shown
        {
            bar.abandon();
            self.left.push(bar);
        }
        self.freeze();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Device;
    use crate::core::state::TrainerFn;

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

    /// tqdm's own output for these inputs (tqdm 4.67.1's `format_meter` with `ncols` at the
    /// width, Lightning's `BAR_FORMAT` and the average rate).
    #[test]
    fn lines_are_tqdms_and_fit_the_terminal() {
        let line = |n, total, postfix, width| {
            TqdmLine {
                title: "Epoch 1",
                n,
                total: Some(total),
                elapsed: Duration::from_secs(2),
                postfix,
            }
            .render(width)
        };
        assert_eq!(
            line(55, 110, "v_num=0, loss=0.123", 80),
            "Epoch 1:  50%|██████      | 55/110 [00:02<00:02, 27.50it/s, v_num=0, loss=0.123]"
        );
        assert_eq!(
            line(55, 110, "v_num=0", 80),
            "Epoch 1:  50%|████████████            | 55/110 [00:02<00:02, 27.50it/s, v_num=0]"
        );
        // A suffix longer than the terminal: one bar cell, and the line cut at the width.
        let long = "v_num=0, train_loss_epoch=0.0389, train_loss_step=0.0337, val_acc=0.955, val_loss=0.140";
        let cut = line(110, 110, long, 80);
        assert_eq!(
            cut,
            "Epoch 1: 100%|█| 110/110 [00:02<00:00, 55.00it/s, v_num=0, train_loss_epoch=0.03"
        );
        assert_eq!(
            line(110, 110, long, 160),
            "Epoch 1: 100%|███████████████████████| 110/110 [00:02<00:00, 55.00it/s, v_num=0, \
             train_loss_epoch=0.0389, train_loss_step=0.0337, val_acc=0.955, val_loss=0.140]"
        );
        // The first frame: no rate, no ETA yet.
        let first = TqdmLine {
            title: "Validation DataLoader 0",
            n: 0,
            total: Some(16),
            elapsed: Duration::ZERO,
            postfix: "",
        }
        .render(60);
        assert_eq!(first, "Validation DataLoader 0:   0%|       | 0/16 [00:00<?, ?it/s]");
        assert_eq!(tqdm_bar(0.5, 4), "██  ");
        assert_eq!(tqdm_bar(1.0 / 16.0, 2), "▏ ");
        assert_eq!(tqdm_bar(1.0, 3), "███");
    }

    #[test]
    fn floats_print_as_python_prints_them() {
        let cases = [
            (0.9484999775886536, "0.9484999775886536"),
            (1.0, "1.0"),
            (100.0, "100.0"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (1e16, "1e+16"),
            (123456789.0, "123456789.0"),
            (-0.5, "-0.5"),
            (0.0, "0.0"),
            (f64::NAN, "nan"),
            (f64::NEG_INFINITY, "-inf"),
        ];
        for (value, printed) in cases {
            assert_eq!(python_repr(value), printed, "repr({value})");
        }
    }

    /// Lightning's `_print_results` (its branch without `rich`) gives these lines.
    #[test]
    fn results_print_as_lightnings_table() {
        let map = BTreeMap::from([("test_loss".to_string(), 0.5), ("test_acc".to_string(), 0.25)]);
        let metrics = [crate::Metrics::from(map)];
        let table = results_table("test", &metrics, 80);
        let rule = "─".repeat(80);
        let expected = [
            rule.as_str(),
            "       Test metric             DataLoader 0",
            rule.as_str(),
            "        test_acc                   0.25",
            "        test_loss                   0.5",
            rule.as_str(),
        ]
        .join("\n");
        assert_eq!(table, expected);
        assert!(results_table("validate", &metrics, 120).contains("     Validate metric     "));
        assert_eq!(results_table("test", &[crate::Metrics::default()], 80), "");
        assert_eq!(results_table("test", &[], 80), "");
        // A name longer than half the width is cut into pieces, the value beside the first.
        let long = [crate::Metrics::from(BTreeMap::from([("x".repeat(50), 1.0)]))];
        let lines: Vec<String> = results_table("test", &long, 80).lines().map(str::to_string).collect();
        assert_eq!(lines[1], format!("{:14}Test metric{:29}DataLoader 0", "", ""));
        assert_eq!(lines[3], format!("{}{:18}1.0", "x".repeat(40), ""));
        assert_eq!(lines[4], format!("{:15}{}", "", "x".repeat(10)));
    }

    /// Several dataloaders: a column each, names without their `/dataloader_idx_N`, a blank
    /// where a dataloader did not log the metric, and the columns that do not fit in a second
    /// table (Lightning's `num_cols`).
    #[test]
    fn results_of_several_dataloaders_print_a_column_each() {
        let results = [
            crate::Metrics::from(BTreeMap::from([
                ("val_loss/dataloader_idx_0".to_string(), 0.5),
                ("epoch_mark".to_string(), 3.0),
            ])),
            crate::Metrics::from(BTreeMap::from([
                ("val_loss/dataloader_idx_1".to_string(), 0.75),
                ("val_acc/dataloader_idx_1".to_string(), 0.25),
                ("epoch_mark".to_string(), 3.0),
            ])),
        ];
        // Lightning 2.6.6's `_print_results` (without `rich`) on these results, at 80 and 60
        // columns.
        let rule = |n| "─".repeat(n);
        let expected = [
            rule(80),
            "     Validate metric           DataLoader 0             DataLoader 1".into(),
            rule(80),
            "       epoch_mark                   3.0                      3.0".into(),
            "         val_acc                                            0.25".into(),
            "        val_loss                    0.5                     0.75".into(),
            rule(80),
        ]
        .join("\n");
        assert_eq!(results_table("validate", &results, 80), expected);
        let expected = [
            rule(60),
            "     Validate metric           DataLoader 0".into(),
            rule(60),
            "       epoch_mark                   3.0".into(),
            "         val_acc".into(),
            "        val_loss                    0.5".into(),
            rule(60),
            rule(60),
            "     Validate metric           DataLoader 1".into(),
            rule(60),
            "       epoch_mark                   3.0".into(),
            "         val_acc                   0.25".into(),
            "        val_loss                   0.75".into(),
            rule(60),
        ]
        .join("\n");
        assert_eq!(results_table("validate", &results, 60), expected);
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
