//! SIGINT (Ctrl-C), SIGTERM and SIGHUP (a closed terminal, a dropped ssh connection) during a
//! run: the run stops at the next batch boundary with
//! [`Error::Interrupted`](crate::Error::Interrupted), so `on_exception` runs (an
//! [`OnExceptionCheckpoint`](crate::OnExceptionCheckpoint) saves a checkpoint there), pending
//! checkpoints are written and the loggers are closed; then `fit` exits the process with 130, 143
//! or 129, as a shell expects (or returns the error: `exit_on_signal(false)`). After SIGHUP the
//! terminal is gone and writes to it fail: the handler points stdout and stderr, where they are
//! a terminal, at `/dev/null`, so that no `println!` panics on the way out. A second signal
//! during that shutdown exits at once (within the watchdog's 50 ms), saying on stderr that the
//! on-exception checkpoint was abandoned, and removing the temporary files of the writes in
//! progress.
//!
//! A run that never reaches a batch boundary (a dataloader that blocks forever, a hook that never
//! returns) still ends: a watchdog thread waits `signal_timeout` (10 s by default) after the
//! signal; then it lets the queued checkpoint writes finish, flushes the loggers, says on stderr
//! why the run ends without `on_exception` (the stuck thread holds the module), and exits with
//! the signal's status, whatever `exit_on_signal` says.
//!
//! In a SLURM batch job, SIGUSR1 asks the training loop to save an HPC checkpoint and requeue the
//! job at its next batch boundary (see [`crate::strategies::slurm`]).
//!
//! The handlers are installed once per process, at the first run. While no run is active they
//! behave as the default action (the process terminates), so a program is interruptible as
//! usual before and after training.

use crate::loggers::Logger;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

/// Runs (in any thread) that are listening for signals.
static ACTIVE: AtomicUsize = AtomicUsize::new(0);
/// The first signal received during active runs, or 0.
static RECEIVED: AtomicI32 = AtomicI32::new(0);

/// A signal received during the shutdown of the first, or 0: the watchdog exits at once.
static SECOND: AtomicI32 = AtomicI32::new(0);
/// Whether the watchdog runs (else a second signal exits in the handler itself).
static WATCHDOG: AtomicBool = AtomicBool::new(false);
/// Whether a run saw the signal at a batch boundary (then it shuts down by itself).
static AT_BOUNDARY: AtomicBool = AtomicBool::new(false);
/// How long the watchdog waits for a boundary after a signal, in milliseconds.
static TIMEOUT_MS: AtomicU64 = AtomicU64::new(10_000);
/// SLURM's auto-requeue signal (SIGUSR1) arrived during an active run and is not handled yet.
static REQUEUE: AtomicBool = AtomicBool::new(false);
/// The loggers of the active runs, flushed by the watchdog when it ends a stuck run.
static RUN_LOGGERS: Mutex<Vec<Weak<SharedLoggers>>> = Mutex::new(Vec::new());

type SharedLoggers = Mutex<Vec<Box<dyn Logger>>>;

/// Listens for SIGINT and SIGTERM while it lives (one per run).
pub(crate) struct SignalGuard(());

impl SignalGuard {
    /// `timeout`: how long a signalled run may take to reach a batch boundary before the
    /// watchdog ends the process (the trainer's `signal_timeout`).
    pub(crate) fn listen(timeout: Duration) -> Self {
        install();
        TIMEOUT_MS.store(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX), Ordering::SeqCst);
        if ACTIVE.fetch_add(1, Ordering::SeqCst) == 0 {
            RECEIVED.store(0, Ordering::SeqCst);
            AT_BOUNDARY.store(false, Ordering::SeqCst);
            REQUEUE.store(false, Ordering::SeqCst);
        }
        Self(())
    }
}

impl Drop for SignalGuard {
    fn drop(&mut self) {
        if ACTIVE.fetch_sub(1, Ordering::SeqCst) == 1 {
            RECEIVED.store(0, Ordering::SeqCst);
            AT_BOUNDARY.store(false, Ordering::SeqCst);
        }
    }
}

/// A run's loggers, lent by the trainer for the run and given back when it ends; shared so that
/// the watchdog can flush them when the run's thread is stuck (it is then outside the loggers,
/// waiting for a batch).
pub(crate) struct RunLoggers<'t> {
    home: &'t mut Vec<Box<dyn Logger>>,
    shared: Arc<SharedLoggers>,
}

impl<'t> RunLoggers<'t> {
    pub(crate) fn new(home: &'t mut Vec<Box<dyn Logger>>) -> Self {
        let shared = Arc::new(Mutex::new(std::mem::take(home)));
        let mut registry = RUN_LOGGERS.lock().unwrap_or_else(PoisonError::into_inner);
        registry.retain(|weak| weak.strong_count() > 0);
        registry.push(Arc::downgrade(&shared));
        Self { home, shared }
    }

    /// The loggers (uncontended but for the watchdog's last flush).
    pub(crate) fn lock(&self) -> MutexGuard<'_, Vec<Box<dyn Logger>>> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for RunLoggers<'_> {
    fn drop(&mut self) {
        let loggers = std::mem::take(&mut *self.shared.lock().unwrap_or_else(PoisonError::into_inner));
        *self.home = loggers;
    }
}

/// Called where a run sees the signal, at a batch boundary: it shuts down by itself, and the
/// watchdog has nothing to do.
pub(crate) fn reached_boundary() {
    AT_BOUNDARY.store(true, Ordering::SeqCst);
}

/// The signal that asked the active runs to stop, if one did.
#[inline]
pub(crate) fn received() -> Option<i32> {
    match RECEIVED.load(Ordering::Relaxed) {
        0 => None,
        signal => Some(signal),
    }
}

/// Whether SLURM asked for a requeue (SIGUSR1, see [`crate::strategies::slurm`]) since the
/// last call: the training loop then saves the HPC checkpoint and requeues the job.
#[inline]
pub(crate) fn take_requeue() -> bool {
    REQUEUE.load(Ordering::Relaxed) && REQUEUE.swap(false, Ordering::SeqCst)
}

/// The conventional exit status after `signal` (130 for SIGINT, 143 for SIGTERM, 129 for
/// SIGHUP).
pub(crate) fn exit_status(signal: i32) -> i32 {
    128 + signal
}

/// The signal's name (`SIGINT`).
pub(crate) fn name(signal: i32) -> String {
    #[cfg(unix)]
    if let Some(name) = signal_hook::low_level::signal_name(signal) {
        return name.to_string();
    }
    format!("signal {signal}")
}

#[cfg(unix)]
fn install() {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        for signal in [SIGINT, SIGTERM, SIGHUP] {
            // SAFETY: the action only touches atomics and calls async-signal-safe functions
            // (`emulate_default_handler`, `exit`, `open`, `fstat`, `dup2`, `close`).
            let registered = unsafe { signal_hook::low_level::register(signal, move || on_signal(signal)) };
            if let Err(e) = registered {
                tracing::warn!(target: "burn_lightning", "cannot handle {}: {e}; it will end runs abruptly", name(signal));
            }
        }
        // SLURM's auto-requeue, in a SLURM batch job only: elsewhere SIGUSR1 keeps its default.
        if crate::strategies::slurm::detected() {
            let usr1 = signal_hook::consts::SIGUSR1;
            // SAFETY: the action only touches atomics and calls `emulate_default_handler`.
            let registered = unsafe { signal_hook::low_level::register(usr1, on_requeue_signal) };
            if let Err(e) = registered {
                tracing::warn!(target: "burn_lightning", "cannot handle SIGUSR1: {e}; SLURM's auto-requeue is off");
            }
        }
        let watchdog = std::thread::Builder::new().name("signal-watchdog".into()).spawn(watchdog);
        WATCHDOG.store(watchdog.is_ok(), Ordering::SeqCst);
        if let Err(e) = watchdog {
            tracing::warn!(target: "burn_lightning", "cannot start the signal watchdog: {e}; a stuck run will ignore signals");
        }
    });
}

/// Polls for a signal that no batch boundary answered within the timeout, and ends the process
/// then (the polling costs a wake-up every 50 ms, on a thread of its own).
#[cfg(unix)]
fn watchdog() {
    let mut signalled_at: Option<Instant> = None;
    loop {
        std::thread::sleep(Duration::from_millis(50));
        let second = SECOND.load(Ordering::SeqCst);
        if second != 0 {
            abandon_shutdown(second);
        }
        let signal = RECEIVED.load(Ordering::SeqCst);
        if signal == 0 || AT_BOUNDARY.load(Ordering::SeqCst) {
            signalled_at = None;
            continue;
        }
        let since = *signalled_at.get_or_insert_with(Instant::now);
        let timeout = Duration::from_millis(TIMEOUT_MS.load(Ordering::SeqCst));
        if since.elapsed() >= timeout {
            end_stuck_run(signal, timeout);
        }
    }
}

/// A second signal during the shutdown: exits now, removing the temporary files of the writes in
/// progress (the on-exception checkpoint's, if it was being written) and saying so.
#[cfg(unix)]
fn abandon_shutdown(signal: i32) -> ! {
    use std::io::Write as _;
    let removed = crate::checkpoint::run_dir::abandon_writes_in_progress();
    let _ = writeln!(
        std::io::stderr(),
        "{} again: exiting at once with {}; the on-exception checkpoint and the rest of the shutdown \
         (queued checkpoints, logger flushes) were abandoned ({removed} partly written file(s) removed)",
        name(signal),
        exit_status(signal)
    );
    std::process::exit(exit_status(signal));
}

/// Ends a run that did not reach a batch boundary in `timeout` after `signal`: the queued
/// checkpoints are written and the loggers flushed (each given a bounded time), then the process
/// exits with the signal's status.
#[cfg(unix)]
fn end_stuck_run(signal: i32, timeout: Duration) -> ! {
    use std::io::Write as _;
    let status = exit_status(signal);
    // Writes to stderr may fail (a closed terminal): never a panic here.
    let _ = writeln!(
        std::io::stderr(),
        "{}: the run reached no batch boundary within {:.1} s (a dataloader or hook that does not return?); \
         ending it without `on_exception` and its checkpoint, since the stuck thread holds the module. \
         Writing the queued checkpoints and flushing the loggers, then exiting with {status} \
         (the wait is the trainer's `signal_timeout`)",
        name(signal),
        timeout.as_secs_f64()
    );
    let limit = Duration::from_secs(60);
    if !crate::checkpoint::writer::wait_for_queued_writes(limit) {
        let _ = writeln!(
            std::io::stderr(),
            "the queued checkpoint writes did not finish within {limit:?}"
        );
    }
    let runs: Vec<_> = RUN_LOGGERS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .filter_map(Weak::upgrade)
        .collect();
    for loggers in runs {
        // A thread stuck inside a logger holds its lock: skip those after a while.
        let started = Instant::now();
        let guard = loop {
            match loggers.try_lock() {
                Ok(guard) => break Some(guard),
                Err(std::sync::TryLockError::Poisoned(poisoned)) => break Some(poisoned.into_inner()),
                Err(std::sync::TryLockError::WouldBlock) if started.elapsed() < Duration::from_secs(5) => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(std::sync::TryLockError::WouldBlock) => break None,
            }
        };
        let Some(mut guard) = guard else {
            let _ = writeln!(std::io::stderr(), "a logger is busy (stuck?): not flushed");
            continue;
        };
        for logger in guard.iter_mut() {
            if let Err(e) = logger.finalize("interrupted") {
                let _ = writeln!(std::io::stderr(), "flushing the logger `{}` failed: {e}", logger.name());
            }
        }
    }
    std::process::exit(status);
}

#[cfg(not(unix))]
fn install() {}

#[cfg(unix)]
fn on_signal(signal: i32) {
    if ACTIVE.load(Ordering::SeqCst) == 0 {
        // No run: what the signal would have done without us.
        let _ = signal_hook::low_level::emulate_default_handler(signal);
        return;
    }
    if signal == signal_hook::consts::SIGHUP {
        silence_terminal();
    }
    if RECEIVED
        .compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst)
        .is_err()
    {
        // A second signal while the run shuts down: at once, by the watchdog (which removes
        // partly written files and says so), or here if there is none.
        if !WATCHDOG.load(Ordering::SeqCst) {
            signal_hook::low_level::exit(exit_status(signal));
        }
        let _ = SECOND.compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst);
    }
}

/// SIGUSR1 in a SLURM job: asks the active run to save the HPC checkpoint and requeue.
#[cfg(unix)]
fn on_requeue_signal() {
    if ACTIVE.load(Ordering::SeqCst) == 0 {
        let _ = signal_hook::low_level::emulate_default_handler(signal_hook::consts::SIGUSR1);
        return;
    }
    REQUEUE.store(true, Ordering::SeqCst);
}

/// After a hangup, writes to the terminal fail (`EIO`), and `println!` panics on them: stdout and
/// stderr, where they are a terminal (a character device), now write to `/dev/null`. Files and
/// pipes are left as they are. Only async-signal-safe calls.
#[cfg(unix)]
fn silence_terminal() {
    // SAFETY: `open`, `fstat`, `dup2` and `close` are async-signal-safe; the path is a
    // NUL-terminated literal and `stat` a local.
    unsafe {
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY);
        if null < 0 {
            return;
        }
        for fd in [libc::STDOUT_FILENO, libc::STDERR_FILENO] {
            let mut stat: libc::stat = std::mem::zeroed();
            if libc::fstat(fd, &mut stat) == 0 && (stat.st_mode & libc::S_IFMT) == libc::S_IFCHR {
                libc::dup2(null, fd);
            }
        }
        libc::close(null);
    }
}
