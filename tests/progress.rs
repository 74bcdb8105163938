//! The progress bar as a person sees it: bars drawn into an in-memory terminal (an epoch bar with
//! its batch count, `v_num` and the `prog_bar` metrics, the validation bar nested below it while
//! validation runs and gone after; lines that fit the terminal, a first frame with the total;
//! the results table and why `fit` stopped below the bars), plain lines when stdout is not a
//! terminal (checked on the real stdout of a child process), and nothing with
//! `enable_progress_bar(false)`.

mod common;

use burn::nn::{Linear, LinearConfig};
use burn::optim::SgdConfig;
use burn_lightning::callbacks::progress::indicatif::InMemoryTerm;
use burn_lightning::callbacks::progress::{format_num, python_repr};
use burn_lightning::prelude::*;
use common::{Pair, pair_loader};
use std::io::Write;
use std::sync::{Arc, Mutex};

/// Learning rates told apart only with enough significant digits.
const LEARNING_RATES: [f64; 2] = [0.00024, 0.000168];

#[lightning_module]
#[derive(Module, Debug)]
pub struct Net {
    layer: Linear,
}

#[lightning_module]
impl Net {
    #[hook]
    fn training_step(&self, batch: Pair, _batch_idx: usize, cx: &mut StepContext) -> Tensor<1> {
        let loss = (self.layer.forward(batch.x) - batch.y).powi_scalar(2).mean();
        cx.log_with("loss", &loss, LogOptions::new().prog_bar(true));
        cx.log("hidden_loss", &loss);
        loss
    }
    #[hook]
    fn on_train_epoch_end(&mut self, cx: &mut EpochContext) {
        let lr = LEARNING_RATES[cx.current_epoch % 2];
        cx.log_with("lr", lr, EpochLogOptions::new().prog_bar(true));
    }
    #[hook]
    fn validation_step(&self, batch: Pair, _batch_idx: usize, cx: &mut StepContext) {
        let loss = (self.layer.forward(batch.x) - batch.y).powi_scalar(2).mean();
        cx.log_with("val_loss", loss, LogOptions::new().prog_bar(true));
    }
    #[hook]
    fn test_step(&self, batch: Pair, _batch_idx: usize, cx: &mut StepContext) {
        cx.log(
            "test_loss",
            (self.layer.forward(batch.x) - batch.y).powi_scalar(2).mean(),
        );
    }
    #[hook]
    fn predict_step(&self, batch: Pair, _batch_idx: usize) -> Tensor<2> {
        self.layer.forward(batch.x)
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

/// 4 training batches, 2 validation batches.
fn data() -> Loaders<Pair> {
    Loaders::fit(pair_loader(16, 4), Some(pair_loader(8, 4)))
}

fn builder(root: &std::path::Path) -> TrainerBuilder<Net> {
    Trainer::builder()
        .default_root_dir(root)
        .max_epochs(2)
        .seed(7)
        .enable_model_summary(false)
        .enable_checkpointing(false)
}

/// What the terminal showed at moments of the run: `(what, screen)`.
type Screens = Arc<Mutex<Vec<(String, String)>>>;

/// Takes pictures of the terminal after the progress bar drew the last batch of each
/// evaluation run, and at the start of each epoch's first batch; prints a line through the
/// trainer at each epoch's end.
struct Camera {
    term: InMemoryTerm,
    screens: Screens,
}

impl Camera {
    fn snap(&self, what: String) {
        self.screens.lock().unwrap().push((what, self.term.contents()));
    }
}

impl Callback<Net> for Camera {
    fn on_train_batch_start(&mut self, _module: &mut Net, _batch: &Pair, batch_idx: usize, cx: &mut StepContext<'_>) {
        if batch_idx == 0 {
            self.snap(format!("first batch of epoch {}", cx.current_epoch));
        }
    }
    fn on_validation_batch_end(
        &mut self,
        _module: &mut Net,
        _outputs: &(),
        _batch: &Pair,
        batch_idx: usize,
        _dataloader_idx: usize,
        cx: &mut StepContext<'_>,
    ) {
        if batch_idx == 1 {
            self.snap(format!("{:?} in epoch {}", cx.stage, cx.current_epoch));
        }
    }
    fn on_train_epoch_end(&mut self, _module: &mut Net, cx: &mut EpochContext<'_>) {
        cx.print(format!("a line printed at the end of epoch {}", cx.current_epoch));
    }
    fn on_test_end(&mut self, _module: &mut Net, _cx: &mut HookContext<'_>) {
        self.snap("test end".into());
    }
}

fn screen_at<'a>(screens: &'a [(String, String)], what: &str) -> &'a str {
    &screens
        .iter()
        .find(|(w, _)| w == what)
        .unwrap_or_else(|| panic!("no screen at {what}; screens: {screens:#?}"))
        .1
}

/// The index of the first line of `screen` that starts with `start`.
fn line_starting(screen: &str, start: &str) -> usize {
    screen
        .lines()
        .position(|l| l.starts_with(start))
        .unwrap_or_else(|| panic!("no line starting with {start:?} in:\n{screen}"))
}

#[test]
fn terminal_bars_show_counts_v_num_and_prog_bar_metrics_and_nest_validation() -> Result<(), Error> {
    let root = tempfile::tempdir().unwrap();
    let term = InMemoryTerm::new(48, 140);
    let screens = Screens::default();
    let mut trainer = builder(root.path())
        .callback(ProgressBar::draw_to(term.clone()))
        .callback(Camera {
            term: term.clone(),
            screens: screens.clone(),
        })
        .build()?;
    let mut model = trainer.fit(net(), data())?;
    let screens_in_fit = screens.lock().unwrap().clone();

    // The sanity check has its own bar, with the 2 batches it runs.
    let sanity = screen_at(&screens_in_fit, "SanityChecking in epoch 0");
    let line = sanity
        .lines()
        .nth(line_starting(sanity, "Sanity Checking DataLoader 0: 100%"))
        .unwrap();
    assert!(line.contains("| 2/2 ["), "{line}");
    assert!(line.contains("it/s"), "{line}");

    // Validation inside fit: the epoch bar, full, with v_num and the prog_bar metrics logged so
    // far, and the validation bar below it.
    let validating = screen_at(&screens_in_fit, "Validating in epoch 0");
    println!("the terminal during validation in epoch 0:\n{validating}");
    let epoch = line_starting(validating, "Epoch 0: 100%");
    let validation = line_starting(validating, "Validation DataLoader 0: 100%");
    assert!(
        validation > epoch,
        "the validation bar is below the epoch bar:\n{validating}"
    );
    let epoch_line = validating.lines().nth(epoch).unwrap();
    assert!(epoch_line.contains("| 4/4 ["), "{epoch_line}");
    assert!(epoch_line.contains(", v_num=0, loss="), "{epoch_line}");
    assert!(!epoch_line.contains("hidden_loss"), "{epoch_line}");
    assert!(
        validating.lines().nth(validation).unwrap().contains("| 2/2 ["),
        "{validating}"
    );

    // After fit: the last epoch's bar with the final prog_bar metrics, the lines printed through
    // the trainer above it, and no validation or sanity-check bar left.
    let screen = term.contents();
    let metrics = trainer.progress_bar_metrics().clone();
    let last = screen.lines().nth(line_starting(&screen, "Epoch 1: 100%")).unwrap();
    for name in ["loss", "lr", "val_loss"] {
        let shown = format!("{name}={}", format_num(metrics.get(name).unwrap()));
        assert!(last.contains(&shown), "{shown} in {last}");
    }
    assert!(last.contains("lr=0.000168"), "{last}");
    assert!(!screen.contains("Validation") && !screen.contains("Sanity"), "{screen}");
    let printed = line_starting(&screen, "a line printed at the end of epoch 1");
    assert!(printed < line_starting(&screen, "Epoch 1"), "{screen}");
    // Why `fit` stopped, below the bars.
    let stopped = line_starting(&screen, "`Trainer.fit` stopped: `max_epochs=2` reached.");
    assert_eq!(stopped, line_starting(&screen, "Epoch 1") + 1, "{screen}");

    // `test` and `predict` leave their bars below, and the test results are printed below the
    // test bar as Lightning's table.
    trainer.test(&mut model, data_for_test())?;
    let loss = trainer.callback_metrics().get("test_loss").unwrap();
    let test = screen_at(&screens.lock().unwrap(), "test end").to_string();
    assert!(test.contains("Testing DataLoader 0: 100%"), "{test}");
    let predictions = trainer.predict(&mut model, Loaders::predict(pair_loader(12, 4)))?;
    assert_eq!(predictions.len(), 3);
    let screen = term.contents();
    println!("the terminal after fit, test and predict:\n{screen}");
    let lines: Vec<&str> = screen.lines().collect();
    let testing = line_starting(&screen, "Testing DataLoader 0: 100%");
    assert!(testing > stopped, "{screen}");
    assert_eq!(lines[testing + 1], "─".repeat(140), "{screen}");
    assert_eq!(
        lines[testing + 2].trim(),
        "Test metric             DataLoader 0",
        "{screen}"
    );
    let row = lines[testing + 4];
    assert!(
        row.trim_start().starts_with("test_loss") && row.ends_with(&python_repr(loss)),
        "{row}"
    );
    assert!(!row.contains('\u{1b}'), "{row}");
    let predict = line_starting(&screen, "Predicting DataLoader 0: 100%");
    assert!(predict > testing + 5, "{screen}");
    assert!(lines[predict].contains("| 3/3 ["), "{screen}");
    // No bar ever showed an unknown total.
    for (what, screen) in screens.lock().unwrap().iter() {
        assert!(!screen.contains("/?"), "at {what}:\n{screen}");
    }
    Ok(())
}

/// The first frame of every epoch bar shows its total (`0/4`), from the first batch on.
#[test]
fn the_first_frame_shows_the_total() -> Result<(), Error> {
    let root = tempfile::tempdir().unwrap();
    let term = InMemoryTerm::new(24, 100);
    let screens = Screens::default();
    let mut trainer = builder(root.path())
        .callback(ProgressBar::draw_to(term.clone()))
        .callback(Camera {
            term: term.clone(),
            screens: screens.clone(),
        })
        .build()?;
    trainer.fit(net(), data())?;
    let screens = screens.lock().unwrap();
    for epoch in 0..2 {
        let first = screen_at(&screens, &format!("first batch of epoch {epoch}"));
        let line = first
            .lines()
            .nth(line_starting(first, &format!("Epoch {epoch}:   0%|")))
            .unwrap();
        assert!(line.contains("| 0/4 [00:00<?, ?it/s"), "{line}");
    }
    Ok(())
}

/// At 80 and 120 columns, with a metrics suffix longer than the terminal leaves, every bar keeps
/// at least one cell and its line is cut at the width: nothing wraps onto a second row.
#[test]
fn lines_fit_the_terminal_at_80_and_120_columns() -> Result<(), Error> {
    for width in [80, 120] {
        let root = tempfile::tempdir().unwrap();
        let term = InMemoryTerm::new(30, width);
        let mut trainer = builder(root.path())
            .callback(ProgressBar::draw_to(term.clone()))
            .callback(LongMetrics)
            .build()?;
        trainer.fit(net(), data())?;
        let screen = term.contents();
        println!("at {width} columns:\n{screen}");
        let epoch = screen.lines().nth(line_starting(&screen, "Epoch 1: 100%|")).unwrap();
        assert_eq!(epoch.chars().count(), usize::from(width), "{screen}");
        assert!(epoch.contains("█| 4/4 ["), "at least one bar cell: {epoch}");
        assert!(epoch.contains(", v_num=0, "), "{epoch}");
        // The line after the bar is why fit stopped, not the rest of a wrapped line.
        let next = screen
            .lines()
            .nth(line_starting(&screen, "Epoch 1: 100%|") + 1)
            .unwrap();
        assert!(next.starts_with("`Trainer.fit` stopped:"), "{screen}");
        if width == 120 {
            // The whole screen, pinned. The elapsed time and the rate change from run to run
            // (and the rate's digits move where the line is cut), so the expected line is built
            // around the drawn ones, then cut at the width.
            let stamp = epoch
                .split_once("4/4 [")
                .and_then(|(_, rest)| rest.split_once("it/s"))
                .map(|(stamp, _)| stamp)
                .unwrap_or_else(|| panic!("no `4/4 [..it/s` in {epoch}"));
            let rate = stamp.get(5..).and_then(|s| s.strip_prefix("<00:00, "));
            assert!(
                rate.is_some_and(|rate| rate.parse::<f64>().is_ok()),
                "`MM:SS<00:00, RATE` expected: {stamp}"
            );
            let line = format!(
                "Epoch 1: 100%|█| 4/4 [{stamp}it/s, v_num=0, a_rather_long_metric_name=0.123, \
                 and_a_third_one=0.123, another_rather_long_metric_name=0.123"
            );
            let line: String = line.chars().take(120).collect();
            assert_eq!(
                screen.trim_end(),
                format!("{line}\n`Trainer.fit` stopped: `max_epochs=2` reached.")
            );
        }
    }
    Ok(())
}

/// `bash scripts/terminal_panes.sh --out tests/data/terminal_panes.txt` keeps the example's
/// terminal in tmux at 80 and 120 columns (README "What the progress bar shows"); a capture
/// made again must show what Lightning's terminal shows: every line within its width, the
/// first frame with its total, a bar cell kept beside a suffix cut at the width, and below the
/// summary and the bars, why `fit` stopped, then the test table.
#[test]
fn the_kept_tmux_captures_fit_their_widths_in_lightnings_order() {
    let text = include_str!("data/terminal_panes.txt");
    let mut widths = Vec::new();
    for section in text.split("=== ").skip(1) {
        let (title, pane) = section.split_once('\n').unwrap();
        let width: usize = title.split(' ').next().unwrap().parse().unwrap();
        for line in pane.lines() {
            assert!(line.chars().count() <= width, "wider than {width}: {line}");
        }
        if title.ends_with("the first frame of epoch 0 seen") {
            assert!(
                pane.starts_with("Epoch 0:   0%|") && pane.contains("| 0/110 ["),
                "{pane}"
            );
        } else if title.ends_with("a frame of epoch 1") {
            let bar = pane.split('|').nth(1).unwrap();
            assert!(!bar.is_empty(), "no bar cell: {pane}");
            assert_eq!(pane.trim_end().chars().count(), width, "cut at the width: {pane}");
        } else {
            assert!(title.ends_with("the final pane"), "{title}");
            let at = |start: &str| line_starting(pane, start);
            let order = [
                at("  | Name "),
                at("0         Modules in eval mode"),
                at("Epoch 9: 100%|"),
                at("`Trainer.fit` stopped: `max_epochs=10` reached."),
                at("Testing DataLoader 0: 100%|"),
                at("       Test metric "),
                at("        test_acc "),
                at("test accuracy: "),
            ];
            assert!(order.is_sorted(), "{order:?} in\n{pane}");
            assert_eq!(
                order[3],
                order[2] + 1,
                "the stop line right below the last bar:\n{pane}"
            );
            widths.push(width);
        }
    }
    assert_eq!(widths, [80, 120]);
}

/// Logs metrics with long names to the progress bar: a suffix wider than the terminal.
struct LongMetrics;

impl Callback<Net> for LongMetrics {
    fn on_train_batch_end(
        &mut self,
        _module: &mut Net,
        _outputs: Option<&StepOutput<()>>,
        _batch: &Pair,
        _batch_idx: usize,
        cx: &mut StepContext<'_>,
    ) {
        for name in [
            "a_rather_long_metric_name",
            "another_rather_long_metric_name",
            "and_a_third_one",
        ] {
            cx.log_with(name, 0.123, LogOptions::new().prog_bar(true));
        }
    }
}

fn data_for_test() -> Loaders<Pair> {
    Loaders::test(pair_loader(8, 4))
}

/// A buffer the plain-mode bar writes into.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Shared {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

#[test]
fn plain_lines_show_prog_bar_metrics_with_enough_digits() -> Result<(), Error> {
    let root = tempfile::tempdir().unwrap();
    let out = Shared::default();
    let mut trainer = builder(root.path())
        .callback(ProgressBar::plain_to(out.clone()))
        .build()?;
    let mut model = trainer.fit(net(), data())?;
    trainer.validate(&mut model, data())?;
    let text = out.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.len(),
        8,
        "two epoch lines, why fit stopped, and the validate table:\n{text}"
    );
    for (epoch, lr) in ["0.00024", "0.000168"].iter().enumerate() {
        let line = lines[epoch];
        let start = format!("epoch {epoch} | step {} | v_num=0, loss=", 4 * (epoch + 1));
        assert!(line.starts_with(&start), "{line}");
        assert!(line.contains(&format!(", lr={lr}, val_loss=")), "{line}");
        assert!(line.ends_with('s'), "ends with the epoch's duration: {line}");
        assert!(!line.contains("hidden_loss"), "only prog_bar metrics: {line}");
    }
    assert_eq!(lines[2], "`Trainer.fit` stopped: `max_epochs=2` reached.");
    // Lightning's table, 120 columns wide when the output is not a terminal.
    assert_eq!(lines[3], "─".repeat(120));
    assert_eq!(lines[4].trim(), "Validate metric           DataLoader 0");
    assert!(lines[6].trim_start().starts_with("val_loss "), "{}", lines[6]);
    assert!(!text.contains('\u{1b}'), "no escape codes: {text:?}");
    Ok(())
}

/// Why `fit` stopped names what asked it to: the early-stopping reason, or the time limit.
#[test]
fn fit_says_early_stopping_or_max_time_stopped_it() -> Result<(), Error> {
    let stopped_line = |trainer: &mut Trainer<Net>, out: &Shared| -> Result<String, Error> {
        trainer.fit(net(), data())?;
        let text = out.text();
        Ok(text
            .lines()
            .find(|l| l.starts_with("`Trainer.fit` stopped: "))
            .unwrap_or_else(|| panic!("no stop line in\n{text}"))
            .to_string())
    };
    let root = tempfile::tempdir().unwrap();
    let out = Shared::default();
    let mut trainer = builder(root.path())
        .max_epochs(5)
        .callback(ProgressBar::plain_to(out.clone()))
        .callback(EarlyStopping::new("val_loss", Mode::Min).stopping_threshold(10.5))
        .build()?;
    let line = stopped_line(&mut trainer, &out)?;
    assert!(
        line.starts_with("`Trainer.fit` stopped: early stopping: Stopping threshold reached: val_loss = ")
            && line.ends_with(" < 10.5."),
        "{line}"
    );

    let root = tempfile::tempdir().unwrap();
    let out = Shared::default();
    let mut trainer = builder(root.path())
        .max_epochs(5)
        .max_time(std::time::Duration::ZERO)
        .callback(ProgressBar::plain_to(out.clone()))
        .build()?;
    let line = stopped_line(&mut trainer, &out)?;
    assert!(
        line.starts_with("`Trainer.fit` stopped: `max_time` reached (elapsed "),
        "{line}"
    );
    Ok(())
}

#[test]
fn without_a_logger_there_is_no_v_num() -> Result<(), Error> {
    let root = tempfile::tempdir().unwrap();
    let out = Shared::default();
    let mut trainer = builder(root.path())
        .max_epochs(1)
        .enable_logger(false)
        .callback(ProgressBar::plain_to(out.clone()))
        .build()?;
    trainer.fit(net(), data())?;
    let text = out.text();
    assert!(text.starts_with("epoch 0 | step 4 | loss="), "{text}");
    Ok(())
}

#[test]
fn refresh_rate_zero_displays_nothing() -> Result<(), Error> {
    let root = tempfile::tempdir().unwrap();
    let out = Shared::default();
    let mut trainer = builder(root.path())
        .max_epochs(1)
        .callback(ProgressBar::plain_to(out.clone()).refresh_rate(0))
        .build()?;
    let mut model = trainer.fit(net(), data())?;
    trainer.test(&mut model, data_for_test())?;
    assert_eq!(out.text(), "");
    Ok(())
}

#[test]
fn a_progress_bar_given_with_enable_progress_bar_false_is_a_configuration_error() {
    let root = tempfile::tempdir().unwrap();
    let error = builder(root.path())
        .enable_progress_bar(false)
        .callback(ProgressBar::plain())
        .build()
        .err()
        .expect("a configuration error");
    let message = error.to_string();
    assert!(message.contains("enable_progress_bar"), "{message}");
}

/// Runs the ignored test `name` of this binary in a child process whose stdout is a pipe, and
/// returns what it printed.
fn child_stdout(name: &str) -> String {
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", name, "--nocapture", "--test-threads=1"])
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
fn default_bar_prints_plain_lines_when_stdout_is_not_a_terminal() {
    let stdout = child_stdout("fit_with_defaults");
    // The first line follows the test harness's `test fit_with_defaults ... `.
    let epochs: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.find("epoch ").map(|at| &l[at..]))
        .filter(|l| l.contains(" | step "))
        .collect();
    assert_eq!(epochs.len(), 2, "{stdout}");
    assert!(epochs[1].starts_with("epoch 1 | step 8 | v_num=0, loss="), "{stdout}");
    assert!(
        stdout.contains("`Trainer.fit` stopped: `max_epochs=2` reached."),
        "{stdout}"
    );
    assert!(
        stdout.contains("Test metric") && stdout.contains("test_loss"),
        "{stdout}"
    );
    assert!(!stdout.contains('\u{1b}'), "no escape codes: {stdout:?}");
}

#[test]
fn enable_progress_bar_false_prints_no_bar_or_epoch_line() {
    let stdout = child_stdout("fit_without_progress_bar");
    assert!(
        !stdout.contains("epoch ") && !stdout.contains("DataLoader 0:"),
        "{stdout}"
    );
    // What Lightning prints without a progress bar too: why fit stopped and the results.
    assert!(
        stdout.contains("`Trainer.fit` stopped:") && stdout.contains("Test metric"),
        "{stdout}"
    );
    assert!(stdout.contains("child done"), "the child ran: {stdout}");
}

fn fit_and_test(enable_progress_bar: bool) {
    let root = tempfile::tempdir().unwrap();
    let mut trainer = builder(root.path())
        .enable_progress_bar(enable_progress_bar)
        .build()
        .unwrap();
    let mut model = trainer.fit(net(), data()).unwrap();
    trainer.test(&mut model, data_for_test()).unwrap();
    println!("child done");
}

#[test]
#[ignore = "run by default_bar_prints_plain_lines_when_stdout_is_not_a_terminal"]
fn fit_with_defaults() {
    fit_and_test(true);
}

#[test]
#[ignore = "run by enable_progress_bar_false_prints_no_bar_or_epoch_line"]
fn fit_without_progress_bar() {
    fit_and_test(false);
}
