//! SIGINT (Ctrl-C) and SIGTERM during a run: the run stops at the next batch boundary with
//! [`Error::Interrupted`](crate::Error::Interrupted), so `on_exception` runs (an
//! [`OnExceptionCheckpoint`](crate::OnExceptionCheckpoint) saves a checkpoint there), pending
//! checkpoints are written and the loggers are closed; then `fit` exits the process with 130 or
//! 143, as a shell expects (or returns the error: `exit_on_signal(false)`). A second signal
//! during that shutdown exits at once.
//!
//! The handlers are installed once per process, at the first run. While no run is active they
//! behave as the default action (the process terminates), so a program is interruptible as
//! usual before and after training.

use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};

/// Runs (in any thread) that are listening for signals.
static ACTIVE: AtomicUsize = AtomicUsize::new(0);
/// The first signal received during active runs, or 0.
static RECEIVED: AtomicI32 = AtomicI32::new(0);

/// Listens for SIGINT and SIGTERM while it lives (one per run).
pub(crate) struct SignalGuard(());

impl SignalGuard {
    pub(crate) fn listen() -> Self {
        install();
        if ACTIVE.fetch_add(1, Ordering::SeqCst) == 0 {
            RECEIVED.store(0, Ordering::SeqCst);
        }
        Self(())
    }
}

impl Drop for SignalGuard {
    fn drop(&mut self) {
        if ACTIVE.fetch_sub(1, Ordering::SeqCst) == 1 {
            RECEIVED.store(0, Ordering::SeqCst);
        }
    }
}

/// The signal that asked the active runs to stop, if one did.
#[inline]
pub(crate) fn received() -> Option<i32> {
    match RECEIVED.load(Ordering::Relaxed) {
        0 => None,
        signal => Some(signal),
    }
}

/// The conventional exit status after `signal` (130 for SIGINT, 143 for SIGTERM).
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
    use signal_hook::consts::{SIGINT, SIGTERM};
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        for signal in [SIGINT, SIGTERM] {
            // SAFETY: the action only touches atomics and calls async-signal-safe functions
            // (`emulate_default_handler`, `exit`).
            let registered = unsafe { signal_hook::low_level::register(signal, move || on_signal(signal)) };
            if let Err(e) = registered {
                tracing::warn!(target: "burn_lightning", "cannot handle {}: {e}; it will end runs abruptly", name(signal));
            }
        }
    });
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
    if RECEIVED
        .compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst)
        .is_err()
    {
        // A second signal while the run shuts down: at once.
        signal_hook::low_level::exit(exit_status(signal));
    }
}
