//! The profiler (Lightning's `profiler` flag): time per hook and loop phase, and a Chrome trace.
//!
//! Uses `core` and `checkpoint` (its report is written atomically into the run directory); the
//! loops open its sessions.
//!
//! It is built on the `tracing` spans the trainer already opens around every hook call
//! (`hook` spans) and loop phase (`phase` spans), all of target [`TARGET`] at trace level: with
//! the profiler off nothing listens to them, and each costs a level check.
//!
//! With the profiler on, a session installs, for the length of one run (`fit`, `validate`,
//! `test` or `predict`), a subscriber made of a [`Registry`], the timing layer and a layer that
//! forwards events to the subscriber that was in effect before (the user's own, global or
//! thread-scoped), so that warnings still print. It is installed as the *thread's* default
//! (`tracing::dispatcher::set_default`), never as the global one: the user's global subscriber
//! is neither replaced nor lost, and other threads are not profiled. The checkpoint writer
//! thread takes the spawning thread's subscriber with it, so its `write_checkpoint` spans are
//! timed too.
//!
//! What differs from Lightning, on purpose:
//! - `"advanced"` is not Python's cProfile: it writes the same report as `"simple"` and a Chrome
//!   trace (`<stage>-trace.json`, which Perfetto and `chrome://tracing` open), with one track
//!   per thread.
//! - The report is printed and also written to `<run dir>/<stage>-profiler.txt` (Lightning
//!   writes a file only when given a `filename`; here the file is always written when the run
//!   has a directory, and appended to by a later run of the same stage, as Lightning appends).
//! - Each run (`fit`, `test`, ...) reports what it timed itself; Lightning's profiler object
//!   keeps adding up across the runs of a trainer.
//! - Besides Lightning's actions, loop phases it does not time have their own rows
//!   (`run_validation`, `run_validation_batch`, `run_test`, `run_predict`, `run_sanity_check`,
//!   `write_checkpoint` on the writer thread).
//! - While a profiled run runs, the spans opened on the trainer thread go to the profiler only,
//!   not to the user's subscriber (events do reach it); the profiler's subscriber also raises
//!   `tracing`'s global level hint to TRACE for that while, which costs the other threads a
//!   check per disabled trace callsite. Both end with the run.

use crate::Error;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use tracing::span::{Attributes, Id};
use tracing::subscriber::Interest;
use tracing::{Dispatch, Event, Metadata, Subscriber};
use tracing_subscriber::Registry;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// The target of the trainer's hook and phase spans.
pub const TARGET: &str = "burn_lightning::hooks";

/// Which profiler a run uses (Lightning's `profiler="simple"` / `"advanced"`); off by default.
/// [`TrainerBuilder::profiler`](crate::TrainerBuilder::profiler) takes this or its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profiler {
    /// Time per hook and loop phase (mean, calls, total, share of the run), printed at the end
    /// of the run and written to `<run dir>/<stage>-profiler.txt`.
    Simple,
    /// What [`Simple`](Profiler::Simple) does, and a Chrome trace of every hook and phase, one
    /// track per thread, written to `<run dir>/<stage>-trace.json` (opens in Perfetto).
    Advanced,
}

impl Profiler {
    /// The names the builder accepts, as Lightning spells them.
    pub const NAMES: [&'static str; 2] = ["simple", "advanced"];

    /// Lightning's name of this profiler.
    pub fn name(self) -> &'static str {
        match self {
            Profiler::Simple => "simple",
            Profiler::Advanced => "advanced",
        }
    }
}

impl std::str::FromStr for Profiler {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self, Error> {
        match name {
            "simple" => Ok(Profiler::Simple),
            "advanced" => Ok(Profiler::Advanced),
            other => {
                let hint = if matches!(other, "pytorch" | "xla") {
                    " (Lightning's \"pytorch\" and \"xla\" profile PyTorch's operators and have no equivalent here)"
                } else {
                    ""
                };
                Err(Error::config(
                    "profiler",
                    format!(
                        "unknown profiler {other:?}{hint}; use \"simple\" (time per hook and loop phase) or \
                         \"advanced\" (that and a Chrome trace)"
                    ),
                ))
            }
        }
    }
}

/// What [`TrainerBuilder::profiler`](crate::TrainerBuilder::profiler) takes: a [`Profiler`], or
/// its name (`"simple"`, `"advanced"`), checked by `build()`.
#[derive(Clone, Debug)]
pub struct ProfilerChoice(Choice);

#[derive(Clone, Debug)]
enum Choice {
    Known(Profiler),
    Named(String),
}

impl From<Profiler> for ProfilerChoice {
    fn from(profiler: Profiler) -> Self {
        ProfilerChoice(Choice::Known(profiler))
    }
}

impl From<&str> for ProfilerChoice {
    fn from(name: &str) -> Self {
        ProfilerChoice(Choice::Named(name.to_string()))
    }
}

impl From<String> for ProfilerChoice {
    fn from(name: String) -> Self {
        ProfilerChoice(Choice::Named(name))
    }
}

impl ProfilerChoice {
    /// The profiler's name, as the `profiler` flag of [`TrainerConfig`](crate::TrainerConfig)
    /// holds it (checked by `build()`).
    pub(crate) fn into_name(self) -> String {
        match self.0 {
            Choice::Known(profiler) => profiler.name().to_string(),
            Choice::Named(name) => name,
        }
    }
}

/// One run's profiling: the thread-scoped subscriber while it lives, the report at the end.
pub(crate) struct Session {
    kind: Profiler,
    recorder: Arc<Recorder>,
    /// Restores the thread's previous subscriber when dropped.
    guard: Option<tracing::dispatcher::DefaultGuard>,
}

impl Session {
    /// Starts profiling the current thread (and the checkpoint writer threads it starts) when
    /// `profiler` is set; `module` is the module's type name and `strategy` Lightning's strategy
    /// class (`SingleDeviceStrategy`, `DDPStrategy`), for the report's action names.
    pub(crate) fn start(profiler: Option<Profiler>, module: &str, strategy: &'static str) -> Option<Session> {
        let kind = profiler?;
        let outer = tracing::dispatcher::get_default(Dispatch::clone);
        let recorder = Arc::new(Recorder::new(
            short_type_name(module),
            strategy,
            kind == Profiler::Advanced,
        ));
        let subscriber = Registry::default()
            .with(Timing(recorder.clone()))
            .with(ForwardEvents(outer));
        let guard = tracing::dispatcher::set_default(&Dispatch::new(subscriber));
        Some(Session {
            kind,
            recorder,
            guard: Some(guard),
        })
    }

    /// Lightning's `profiler.describe()`: stops profiling, prints the report headed by `stage`
    /// (`fit`, `validate`, ...) and writes it to `<dir>/<stage>-profiler.txt` (and, for
    /// [`Profiler::Advanced`], the trace to `<dir>/<stage>-trace.json`). Without a run directory
    /// (`fast_dev_run`) the report is printed only.
    pub(crate) fn describe(mut self, stage: &str, dir: Option<&Path>) -> Result<(), Error> {
        self.stop();
        let report = self.recorder.report(stage);
        println!("{report}");
        let Some(dir) = dir else { return Ok(()) };
        let report_path = dir.join(format!("{stage}-profiler.txt"));
        // Lightning opens the file in append mode: a second run of the stage adds its report.
        let earlier = match std::fs::read(&report_path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(Error::io("read", &report_path, e)),
        };
        crate::checkpoint::run_dir::write_atomic_parts(&report_path, &[&earlier, report.as_bytes()])?;
        if self.kind == Profiler::Advanced {
            let trace_path = dir.join(format!("{stage}-trace.json"));
            crate::checkpoint::run_dir::write_atomic(&trace_path, &self.recorder.chrome_trace(stage))?;
            println!("{} trace: {}", stage.to_uppercase(), trace_path.display());
        }
        Ok(())
    }

    /// Puts the thread's previous subscriber back, and lets `tracing` forget this one's level.
    fn stop(&mut self) {
        if self.guard.take().is_some() {
            // The subscriber is gone now (the checkpoint writer threads that held it were
            // joined): rebuilding drops its TRACE level hint and its callsite interests.
            tracing::callsite::rebuild_interest_cache();
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The report with `describe`, written when `profiler` is some; also when the run failed (the
/// report of a failed run is as useful). Returns the report's error.
pub(crate) fn finish(profiler: Option<Session>, stage: &str, dir: Option<&Path>) -> Result<(), Error> {
    profiler.map_or(Ok(()), |session| session.describe(stage, dir))
}

/// `value` as Lightning's report prints it, Python's `f"{value:.5}"`: 5 significant digits,
/// trailing zeros dropped but one digit after the point kept (`0.5`, `12.346`, `100.0`), and
/// scientific notation below 1e-4 or from 1e5 on (`1.2346e-05`, `1.2346e+05`).
fn significant(value: f64) -> String {
    const PRECISION: i32 = 5;
    if !value.is_finite() {
        return if value.is_nan() {
            "nan".into()
        } else if value > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        };
    }
    if value == 0.0 {
        return "0.0".into();
    }
    // The exponent after rounding to the precision decides the notation, as Python's does.
    let scientific = format!("{:.*e}", (PRECISION - 1) as usize, value);
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let strip = |text: &str| -> String {
        if text.contains('.') {
            text.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            text.to_string()
        }
    };
    if (-4..PRECISION).contains(&exponent) {
        let fixed = strip(&format!("{:.*}", (PRECISION - 1 - exponent) as usize, value));
        if fixed.contains('.') {
            fixed
        } else {
            format!("{fixed}.0")
        }
    } else {
        let sign = if exponent < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", strip(mantissa), exponent.abs())
    }
}

/// `my_crate::model::LitModel<B>` -> `LitModel`.
fn short_type_name(full: &str) -> String {
    let without_generics = full.split('<').next().unwrap_or(full);
    without_generics
        .rsplit("::")
        .next()
        .unwrap_or(without_generics)
        .to_string()
}

/// What one action (a hook of one owner, or a loop phase) took over the run.
#[derive(Clone, Copy, Default, Debug)]
struct ActionStats {
    calls: u64,
    total: Duration,
}

/// A finished span, for the Chrome trace.
struct TraceSpan {
    name: Arc<str>,
    category: &'static str,
    track: u64,
    start: Duration,
    duration: Duration,
}

#[derive(Default)]
struct Trace {
    spans: Vec<TraceSpan>,
    /// Track (thread) number -> thread name.
    threads: BTreeMap<u64, String>,
}

/// What the timing layer records, shared with the [`Session`].
struct Recorder {
    started: Instant,
    module: String,
    /// Lightning's strategy class, for the step hooks it times (`SingleDeviceStrategy`).
    strategy: &'static str,
    /// The thread the session started on: the trainer's.
    trainer_track: u64,
    names: Mutex<HashSet<Arc<str>>>,
    actions: Mutex<HashMap<Arc<str>, ActionStats>>,
    /// The spans, for [`Profiler::Advanced`] only (about 50 bytes each).
    trace: Option<Mutex<Trace>>,
}

/// Locks `mutex`, also after a panic elsewhere (what it guards stays consistent: plain inserts).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

static NEXT_TRACK: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// This thread's track number in traces: unique in the process, stable for the thread.
    static TRACK: u64 = NEXT_TRACK.fetch_add(1, Ordering::Relaxed);
}

impl Recorder {
    fn new(module: String, strategy: &'static str, traces: bool) -> Self {
        Self {
            started: Instant::now(),
            module,
            strategy,
            trainer_track: TRACK.with(|t| *t),
            names: Mutex::default(),
            actions: Mutex::default(),
            trace: traces.then(Mutex::default),
        }
    }

    /// One shared copy of each action name.
    fn intern(&self, name: String) -> Arc<str> {
        let mut names = lock(&self.names);
        match names.get(name.as_str()) {
            Some(interned) => interned.clone(),
            None => {
                let interned: Arc<str> = name.into();
                names.insert(interned.clone());
                interned
            }
        }
    }

    fn record(&self, timed: &Timed, entered: Instant, exited: Instant) {
        let duration = exited.saturating_duration_since(entered);
        {
            let mut actions = lock(&self.actions);
            let stats = actions.entry(timed.action.clone()).or_default();
            stats.calls += 1;
            stats.total += duration;
        }
        if let Some(trace) = &self.trace {
            let track = TRACK.with(|t| *t);
            let mut trace = lock(trace);
            trace.threads.entry(track).or_insert_with(|| self.thread_name(track));
            trace.spans.push(TraceSpan {
                name: timed.action.clone(),
                category: timed.category,
                track,
                start: entered.saturating_duration_since(self.started),
                duration,
            });
        }
    }

    /// The current thread's name in the trace: the trainer's thread says so.
    fn thread_name(&self, track: u64) -> String {
        let current = std::thread::current();
        let os_name = current.name().map_or_else(|| format!("thread {track}"), str::to_string);
        if track == self.trainer_track {
            format!("trainer ({os_name})")
        } else {
            os_name
        }
    }

    /// Lightning's `SimpleProfiler.summary()` (extended): the run's wall time and calls, then
    /// every action by its share of the run, largest first. Nested actions are each counted
    /// in full (`run_training_epoch` includes its batches), as in Lightning.
    fn report(&self, stage: &str) -> String {
        let wall = self.started.elapsed();
        let mut rows: Vec<(Arc<str>, ActionStats)> = lock(&self.actions)
            .iter()
            .map(|(name, stats)| (name.clone(), *stats))
            .collect();
        rows.sort_by(|a, b| b.1.total.cmp(&a.1.total).then_with(|| a.0.cmp(&b.0)));
        let share = |d: Duration| 100.0 * d.as_secs_f64() / wall.as_secs_f64().max(f64::MIN_POSITIVE);
        let total_calls: u64 = rows.iter().map(|(_, s)| s.calls).sum();

        let header = [
            "Action",
            "Mean duration (s)",
            "Num calls",
            "Total time (s)",
            "Percentage %",
        ];
        let mut table: Vec<[String; 5]> = vec![header.map(str::to_string)];
        table.push([
            "Total".into(),
            "-".into(),
            total_calls.to_string(),
            significant(wall.as_secs_f64()),
            "100 %".into(),
        ]);
        for (name, stats) in &rows {
            let mean = stats.total.as_secs_f64() / stats.calls.max(1) as f64;
            table.push([
                name.to_string(),
                significant(mean),
                stats.calls.to_string(),
                significant(stats.total.as_secs_f64()),
                significant(share(stats.total)),
            ]);
        }
        let mut widths = [0; 5];
        for row in &table {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let line = |row: &[String; 5]| {
            let mut out = String::from("|");
            for (cell, width) in row.iter().zip(widths) {
                let _ = write!(out, "  {cell:<width$}  |");
            }
            out
        };
        let rule = "-".repeat(line(&table[0]).chars().count());
        let mut out = format!("{} Profiler Report\n{rule}\n", stage.to_uppercase());
        for (i, row) in table.iter().enumerate() {
            let _ = writeln!(out, "{}", line(row));
            // Rules under the header, under the total, and at the end.
            if i <= 1 {
                let _ = writeln!(out, "{rule}");
            }
        }
        let _ = writeln!(out, "{rule}");
        out
    }

    /// The Chrome trace event format (JSON object form): one complete event (`"ph": "X"`) per
    /// span, thread-name metadata per track, times in microseconds from the start of the run.
    fn chrome_trace(&self, stage: &str) -> Vec<u8> {
        let Some(trace) = &self.trace else { return Vec::new() };
        let trace = lock(trace);
        let pid = std::process::id();
        let mut events = Vec::with_capacity(2 * trace.threads.len() + 1);
        events.push(serde_json::json!({
            "name": "process_name", "ph": "M", "pid": pid, "tid": 0,
            "args": { "name": format!("burn-lightning {stage}") },
        }));
        for (track, name) in &trace.threads {
            events.push(serde_json::json!({
                "name": "thread_name", "ph": "M", "pid": pid, "tid": track, "args": { "name": name },
            }));
            // The trainer's track first.
            let order = if *track == self.trainer_track { 0 } else { *track };
            events.push(serde_json::json!({
                "name": "thread_sort_index", "ph": "M", "pid": pid, "tid": track,
                "args": { "sort_index": order },
            }));
        }
        let micros = |d: Duration| d.as_nanos() as f64 / 1000.0;
        // Written one event at a time: a long run has many, and a `Value` each would cost more
        // than the run's own bookkeeping.
        let mut out = Vec::with_capacity(64 * (events.len() + trace.spans.len()) + 64);
        out.extend_from_slice(b"{\"displayTimeUnit\":\"ms\",\"traceEvents\":[");
        let mut result = Ok(());
        for (i, event) in events.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            result = result.and_then(|()| serde_json::to_writer(&mut out, event));
        }
        // `events` holds the process name at least: every span follows a comma.
        for span in &trace.spans {
            out.push(b',');
            let event = CompleteEvent {
                name: &span.name,
                cat: span.category,
                ph: "X",
                pid,
                tid: span.track,
                ts: micros(span.start),
                dur: micros(span.duration),
            };
            result = result.and_then(|()| serde_json::to_writer(&mut out, &event));
        }
        out.extend_from_slice(b"]}");
        // Serializing strings and numbers into memory cannot fail.
        debug_assert!(result.is_ok());
        out
    }
}

/// A Chrome trace "complete event": a span with its start and duration, in microseconds.
#[derive(serde::Serialize)]
struct CompleteEvent<'a> {
    name: &'a str,
    cat: &'static str,
    ph: &'static str,
    pid: u32,
    tid: u64,
    ts: f64,
    dur: f64,
}

/// The span extension of a timed span: its action, and when it was entered.
struct Timed {
    action: Arc<str>,
    category: &'static str,
    entered: Option<Instant>,
}

/// The fields of a hook or phase span.
#[derive(Default)]
struct SpanFields {
    hook: Option<String>,
    by: Option<String>,
    owner: Option<String>,
    phase: Option<String>,
}

impl tracing::field::Visit for SpanFields {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.set(field.name(), value.to_string());
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        // `callback = %name` arrives here, and prints as `Display` does. Fields the report does
        // not name (`overridden`) are not formatted.
        if Self::NAMED.contains(&field.name()) {
            self.set(field.name(), format!("{value:?}"));
        }
    }

    fn record_bool(&mut self, _: &tracing::field::Field, _: bool) {}
}

impl SpanFields {
    /// The fields action names are made of.
    const NAMED: [&'static str; 5] = ["hook", "by", "callback", "datamodule", "phase"];

    fn set(&mut self, name: &str, value: String) {
        match name {
            "hook" => self.hook = Some(value),
            "by" => self.by = Some(value),
            "callback" | "datamodule" => self.owner = Some(value),
            "phase" => self.phase = Some(value),
            _ => {}
        }
    }

    /// Lightning's action names: `[LightningModule]LitModel.on_train_start`,
    /// `[Callback]ModelCheckpoint.on_train_epoch_end`, `[LightningDataModule]MnistData.setup`,
    /// the steps and `backward` as the strategy that runs them
    /// (`[Strategy]SingleDeviceStrategy.training_step`: Lightning calls the module's steps
    /// through its strategy and times that), and loop phases by their own name
    /// (`run_training_batch`).
    fn action(self, module: &str, strategy: &str) -> Option<(String, &'static str)> {
        if let Some(phase) = self.phase {
            return Some((phase, "phase"));
        }
        let hook = self.hook?;
        let owner = self.owner.unwrap_or_default();
        let name = match self.by.as_deref() {
            Some("module") if STRATEGY_HOOKS.contains(&hook.as_str()) => format!("[Strategy]{strategy}.{hook}"),
            Some("module") => format!("[LightningModule]{module}.{hook}"),
            Some("callback") => format!("[Callback]{owner}.{hook}"),
            Some("datamodule") => format!("[LightningDataModule]{owner}.{hook}"),
            _ => hook,
        };
        Some((name, "hook"))
    }
}

/// The module's hooks Lightning calls through its strategy (`call._call_strategy_hook`), and
/// times under the strategy's name.
const STRATEGY_HOOKS: [&str; 5] = [
    "training_step",
    "validation_step",
    "test_step",
    "predict_step",
    "backward",
];

/// The field a phase span records as `true` when what it timed does not count: a fetch that
/// found the loader exhausted (Lightning counts `train_dataloader_next` once per batch).
pub(crate) const DISCARD_FIELD: &str = "discard";

/// Times the hook and phase spans.
struct Timing(Arc<Recorder>);

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Timing {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if attrs.metadata().target() != TARGET {
            return;
        }
        let mut fields = SpanFields::default();
        attrs.record(&mut fields);
        let Some((action, category)) = fields.action(&self.0.module, self.0.strategy) else {
            return;
        };
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(Timed {
                action: self.0.intern(action),
                category,
                entered: None,
            });
        }
    }

    fn on_record(&self, id: &Id, values: &tracing::span::Record<'_>, ctx: Context<'_, S>) {
        struct Discard(bool);
        impl tracing::field::Visit for Discard {
            fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
                self.0 |= field.name() == DISCARD_FIELD && value;
            }
            fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
        }
        let mut discard = Discard(false);
        values.record(&mut discard);
        if discard.0
            && let Some(span) = ctx.span(id)
        {
            span.extensions_mut().remove::<Timed>();
        }
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(timed) = span.extensions_mut().get_mut::<Timed>()
        {
            timed.entered = Some(Instant::now());
        }
    }

    fn on_exit(&self, id: &Id, ctx: Context<'_, S>) {
        let exited = Instant::now();
        if let Some(span) = ctx.span(id)
            && let Some(timed) = span.extensions_mut().get_mut::<Timed>()
            && let Some(entered) = timed.entered.take()
        {
            self.0.record(timed, entered, exited);
        }
    }
}

/// Lets the trainer's spans in, and hands events to the subscriber that was in effect before
/// the profiler's, when it wants them: the user's warnings still print. Other spans are off
/// while the profiler's subscriber is the thread's.
struct ForwardEvents(Dispatch);

impl<S: Subscriber> Layer<S> for ForwardEvents {
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        if metadata.target() == TARGET {
            Interest::always()
        } else if metadata.is_event() {
            // Whether the outer subscriber wants it is asked per event.
            Interest::sometimes()
        } else {
            Interest::never()
        }
    }

    fn enabled(&self, metadata: &Metadata<'_>, _: Context<'_, S>) -> bool {
        metadata.target() == TARGET || (metadata.is_event() && self.0.enabled(metadata))
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(LevelFilter::TRACE)
    }

    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        if self.0.enabled(event.metadata()) {
            self.0.event(event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_unknown_names_are_config_errors() {
        assert_eq!("simple".parse::<Profiler>().unwrap(), Profiler::Simple);
        assert_eq!("advanced".parse::<Profiler>().unwrap(), Profiler::Advanced);
        for name in Profiler::NAMES {
            assert_eq!(name.parse::<Profiler>().unwrap().name(), name);
        }
        let error = "Simple".parse::<Profiler>().unwrap_err();
        assert!(matches!(error, Error::Config { flag: "profiler", .. }), "{error:?}");
        let message = error.to_string();
        assert!(
            message.contains("\"simple\"") && message.contains("\"advanced\""),
            "{message}"
        );
        let message = "pytorch".parse::<Profiler>().unwrap_err().to_string();
        assert!(message.contains("no equivalent"), "{message}");
    }

    /// Python's `f"{value:.5}"` for these values.
    #[test]
    fn numbers_are_formatted_as_python_formats_them() {
        let cases = [
            (0.0012345678, "0.0012346"),
            (12.345678, "12.346"),
            (123456.7, "1.2346e+05"),
            (0.000012345, "1.2345e-05"),
            (0.00001, "1e-05"),
            (99999.9, "1e+05"),
            (2.5, "2.5"),
            (100.0, "100.0"),
            (1.0, "1.0"),
            (0.0, "0.0"),
        ];
        for (value, printed) in cases {
            assert_eq!(significant(value), printed, "f\"{{{value}:.5}}\"");
        }
    }

    #[test]
    fn short_type_names_drop_paths_and_generics() {
        assert_eq!(short_type_name("my_crate::model::LitModel<burn::Flex>"), "LitModel");
        assert_eq!(short_type_name("Plain"), "Plain");
    }

    /// Opens a hook span as the trainer does, for `work`.
    fn in_hook_span(hook: &'static str, work: impl FnOnce()) {
        let _span = tracing::trace_span!(target: TARGET, "hook", hook = hook, by = "module").entered();
        work();
    }

    #[test]
    fn a_session_times_hook_and_phase_spans_by_action_and_then_removes_itself() {
        let session = Session::start(Some(Profiler::Advanced), "crate::Net<B>", "SingleDeviceStrategy").unwrap();
        {
            let _phase = tracing::trace_span!(target: TARGET, "phase", phase = "run_training_epoch").entered();
            for _ in 0..3 {
                in_hook_span("training_step", || std::thread::sleep(Duration::from_millis(2)));
            }
            let _callback = tracing::trace_span!(target: TARGET, "hook", hook = "on_train_epoch_end",
                by = "callback", callback = %"ModelCheckpoint")
            .entered();
        }
        std::thread::Builder::new()
            .name("worker".into())
            .spawn({
                let dispatch = tracing::dispatcher::get_default(Dispatch::clone);
                move || {
                    tracing::dispatcher::with_default(&dispatch, || {
                        let _span = tracing::trace_span!(target: TARGET, "phase", phase = "write_checkpoint").entered();
                    })
                }
            })
            .unwrap()
            .join()
            .unwrap();
        let recorder = session.recorder.clone();
        drop(session);
        // Removed: spans after the session are not recorded.
        in_hook_span("training_step", || {});

        let actions = lock(&recorder.actions).clone();
        let calls = |name: &str| actions.get(name).map(|s| s.calls);
        assert_eq!(calls("[Strategy]SingleDeviceStrategy.training_step"), Some(3));
        assert_eq!(calls("[Callback]ModelCheckpoint.on_train_epoch_end"), Some(1));
        assert_eq!(calls("run_training_epoch"), Some(1));
        assert_eq!(calls("write_checkpoint"), Some(1));
        let epoch = actions["run_training_epoch"].total;
        assert!(epoch >= actions["[Strategy]SingleDeviceStrategy.training_step"].total);
        assert!(epoch >= Duration::from_millis(6));

        let report = recorder.report("fit");
        assert!(report.starts_with("FIT Profiler Report\n"), "{report}");
        assert!(
            report.contains("Mean duration (s)") && report.contains("Percentage %"),
            "{report}"
        );
        // The largest share comes first, after the total.
        let first_action = report
            .lines()
            .filter(|l| l.starts_with('|'))
            .nth(2)
            .unwrap()
            .split('|')
            .nth(1)
            .unwrap()
            .trim()
            .to_string();
        assert_eq!(first_action, "run_training_epoch", "{report}");

        let trace: serde_json::Value = serde_json::from_slice(&recorder.chrome_trace("fit")).unwrap();
        let events = trace["traceEvents"].as_array().unwrap();
        let thread_names: Vec<&str> = events
            .iter()
            .filter(|e| e["name"] == "thread_name")
            .map(|e| e["args"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(thread_names.len(), 2, "{thread_names:?}");
        assert!(thread_names.contains(&"worker"), "{thread_names:?}");
        assert!(
            thread_names.iter().any(|n| n.starts_with("trainer")),
            "{thread_names:?}"
        );
        let steps = events
            .iter()
            .filter(|e| e["ph"] == "X" && e["name"] == "[Strategy]SingleDeviceStrategy.training_step")
            .count();
        assert_eq!(steps, 3);
    }

    #[test]
    fn no_profiler_no_session() {
        assert!(Session::start(None, "Net", "SingleDeviceStrategy").is_none());
    }
}
