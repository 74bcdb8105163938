//! Writes checkpoints on one background thread per run, in the order they are asked for, as
//! burn-train's `AsyncCheckpointer` does: training goes on while a checkpoint is written, and an
//! error writing one is reported at the next hook boundary.

use crate::Error;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Jobs queued or being written, in every writer of the process.
static QUEUED: AtomicUsize = AtomicUsize::new(0);

/// Waits until every checkpoint job queued in the process is done, at most `limit`; whether
/// they all are. What ends a stuck run calls it before exiting.
pub(crate) fn wait_for_queued_writes(limit: Duration) -> bool {
    let started = Instant::now();
    while QUEUED.load(Ordering::SeqCst) > 0 {
        if started.elapsed() >= limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

/// Work for the writer thread: serialize and write checkpoints, remove old ones.
pub(crate) type Job = Box<dyn FnOnce() -> Result<(), Error> + Send>;

/// How many jobs may wait while one is being written. Each holds a snapshot of the weights and
/// optimizer state, kept alive until it is written; past this, [`CheckpointWriter::submit`]
/// waits for the writer.
const QUEUE_BOUND: usize = 1;

/// Runs checkpoint jobs in order on one long-lived thread, started by the first job.
///
/// Dropping the writer waits for the jobs queued, so that checkpoints asked for are written even
/// when `fit` unwinds from a panic.
#[derive(Default)]
pub(crate) struct CheckpointWriter {
    worker: Option<Worker>,
    non_finite: NonFinitePaths,
}

/// The checkpoints this writer wrote whose weights are not finite: removing one of them never
/// loses the last finite weights.
pub(crate) type NonFinitePaths = std::sync::Arc<std::sync::Mutex<std::collections::HashSet<std::path::PathBuf>>>;

struct Worker {
    jobs: SyncSender<Job>,
    errors: Receiver<Error>,
    thread: JoinHandle<()>,
}

impl CheckpointWriter {
    /// A writer with no thread yet: a run that never checkpoints starts none.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Queues `job` after the ones already queued (waiting if the queue is full), then returns
    /// the error an earlier job met, if any. `job` is queued even then: it holds the newest
    /// checkpoint, better written than lost.
    pub(crate) fn submit(&mut self, job: Job) -> Result<(), Error> {
        let earlier = self.take_error();
        let worker = match &mut self.worker {
            Some(worker) => worker,
            None => self.worker.insert(Worker::spawn()?),
        };
        QUEUED.fetch_add(1, Ordering::SeqCst);
        if let Err(returned) = worker.jobs.send(job) {
            QUEUED.fetch_sub(1, Ordering::SeqCst);
            // The thread catches the jobs' panics, so it only stops once the queue is closed;
            // just in case, run the job here rather than lose a checkpoint.
            let stopped = self.finish();
            let ran = run_job(returned.0);
            return earlier.and(stopped).and(ran);
        }
        earlier
    }

    /// The paths of the checkpoints it wrote whose weights are not finite, for its jobs.
    pub(crate) fn non_finite_paths(&self) -> NonFinitePaths {
        self.non_finite.clone()
    }

    /// The first error a finished job met and that was not reported yet, without waiting.
    pub(crate) fn take_error(&mut self) -> Result<(), Error> {
        match self.worker.as_ref().map(|w| w.errors.try_recv()) {
            Some(Ok(error)) => Err(error),
            None | Some(Err(TryRecvError::Empty | TryRecvError::Disconnected)) => Ok(()),
        }
    }

    /// Waits for every queued job and stops the thread; returns the first error not reported
    /// yet. The errors after it are logged. A later [`submit`](Self::submit) starts a new thread.
    pub(crate) fn finish(&mut self) -> Result<(), Error> {
        let Some(Worker { jobs, errors, thread }) = self.worker.take() else {
            return Ok(());
        };
        // Closing the queue ends the thread's loop once the queued jobs are done.
        drop(jobs);
        // The thread catches the jobs' panics; a panic here would be its own, with nothing to add.
        let _ = thread.join();
        let mut errors = errors.try_iter();
        let first = errors.next();
        for later in errors {
            tracing::error!("writing a checkpoint failed: {later}");
        }
        first.map_or(Ok(()), Err)
    }
}

impl Drop for CheckpointWriter {
    fn drop(&mut self) {
        let result = self.finish();
        if !std::thread::panicking()
            && let Err(error) = result
        {
            tracing::error!("writing a checkpoint failed: {error}");
        }
    }
}

impl Worker {
    fn spawn() -> Result<Self, Error> {
        let (jobs, queue) = sync_channel::<Job>(QUEUE_BOUND);
        let (report, errors) = std::sync::mpsc::channel();
        // The spawning thread's subscriber (the profiler's, when on) hears this thread too.
        let dispatch = tracing::dispatcher::get_default(tracing::Dispatch::clone);
        let thread = std::thread::Builder::new()
            .name("checkpoint-writer".into())
            .spawn(move || {
                tracing::dispatcher::with_default(&dispatch, || {
                    for job in queue {
                        let _span =
                            tracing::trace_span!(target: "burn_lightning::hooks", "phase", phase = "write_checkpoint")
                                .entered();
                        let result = run_job(job);
                        QUEUED.fetch_sub(1, Ordering::SeqCst);
                        if let Err(error) = result {
                            // Fails only once the writer is gone, and it joins this thread first.
                            let _ = report.send(error);
                        }
                    }
                })
            })
            .map_err(|e| Error::Checkpoint(format!("cannot start the checkpoint writer thread: {e}")))?;
        Ok(Worker { jobs, errors, thread })
    }
}

/// Runs `job`, turning a panic into an error that keeps its message.
fn run_job(job: Job) -> Result<(), Error> {
    catch_unwind(AssertUnwindSafe(job)).unwrap_or_else(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("no message");
        Err(Error::Checkpoint(format!("writing a checkpoint panicked: {message}")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::sync::{Arc, Mutex, mpsc};
    use std::time::Duration;

    /// A job that fails as writing `path` does.
    fn failing(path: &'static str) -> Job {
        Box::new(move || Err(Error::io("write", Path::new(path), std::io::Error::other("disk full"))))
    }

    /// [`failing`], once the test sends on the returned gate: until then, the test knows the job
    /// has not failed yet.
    fn failing_after_gate(path: &'static str) -> (mpsc::Sender<()>, Job) {
        let (open, gate) = mpsc::channel::<()>();
        let job: Job = Box::new(move || {
            gate.recv().unwrap();
            failing(path)()
        });
        (open, job)
    }

    /// A job that sends `()` on `done` when it runs.
    fn signal(done: &mpsc::Sender<()>) -> Job {
        let done = done.clone();
        Box::new(move || {
            done.send(()).unwrap();
            Ok(())
        })
    }

    #[test]
    fn jobs_run_in_order_on_one_background_thread() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut writer = CheckpointWriter::new();
        assert!(writer.worker.is_none(), "no thread before the first job");
        for i in 0..20 {
            let log = log.clone();
            writer
                .submit(Box::new(move || {
                    std::thread::sleep(Duration::from_millis(if i % 3 == 0 { 5 } else { 0 }));
                    log.lock().unwrap().push((i, std::thread::current().id()));
                    Ok(())
                }))
                .unwrap();
        }
        writer.finish().unwrap();
        let log = log.lock().unwrap();
        assert_eq!(
            log.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
            (0..20).collect::<Vec<_>>()
        );
        let thread = log[0].1;
        assert_ne!(thread, std::thread::current().id());
        assert!(log.iter().all(|(_, t)| *t == thread), "one thread runs every job");
    }

    #[test]
    fn an_earlier_error_is_returned_by_the_next_submit() {
        let (done, finished) = mpsc::channel();
        let mut writer = CheckpointWriter::new();
        let (open, job) = failing_after_gate("/run/epoch=0.ckpt");
        writer.submit(job).unwrap();
        writer.submit(signal(&done)).unwrap();
        open.send(()).unwrap();
        // The second job ran, so the first one's error was reported before it.
        finished.recv().unwrap();
        let error = writer.submit(signal(&done)).unwrap_err();
        assert!(error.to_string().contains("/run/epoch=0.ckpt"), "{error}");
        assert!(error.to_string().contains("disk full"), "{error}");
        writer.finish().unwrap();
        // The job submitted with the error report was queued and ran all the same.
        assert_eq!(finished.try_iter().count(), 1);
    }

    #[test]
    fn an_earlier_error_is_returned_by_take_error_once() {
        let (done, finished) = mpsc::channel();
        let mut writer = CheckpointWriter::new();
        writer.take_error().unwrap();
        let (open, job) = failing_after_gate("/run/last.ckpt");
        writer.submit(job).unwrap();
        writer.submit(signal(&done)).unwrap();
        open.send(()).unwrap();
        finished.recv().unwrap();
        let error = writer.take_error().unwrap_err();
        assert!(error.to_string().contains("/run/last.ckpt"), "{error}");
        writer.take_error().unwrap();
        writer.finish().unwrap();
    }

    #[test]
    fn finish_waits_and_returns_the_first_error() {
        let (done, finished) = mpsc::channel();
        let mut writer = CheckpointWriter::new();
        let (open, job) = failing_after_gate("/run/first.ckpt");
        writer.submit(job).unwrap();
        // The first job waits for the gate: it cannot have failed when this one is queued.
        writer
            .submit(Box::new(move || {
                std::thread::sleep(Duration::from_millis(100));
                done.send(()).unwrap();
                failing("/run/second.ckpt")()
            }))
            .unwrap();
        open.send(()).unwrap();
        let error = writer.finish().unwrap_err();
        assert!(error.to_string().contains("/run/first.ckpt"), "{error}");
        assert_eq!(finished.try_iter().count(), 1, "finish waited for the last job");
        // Idempotent: each error is reported once, and there is nothing left to wait for.
        writer.finish().unwrap();
        writer.finish().unwrap();
        assert!(writer.worker.is_none());
    }

    #[test]
    fn finish_joins_and_a_later_submit_starts_a_new_thread() {
        let threads = Arc::new(Mutex::new(Vec::new()));
        let mut writer = CheckpointWriter::new();
        for round in 1..=2 {
            let threads_ = threads.clone();
            writer
                .submit(Box::new(move || {
                    std::thread::sleep(Duration::from_millis(50));
                    threads_.lock().unwrap().push(std::thread::current().id());
                    Ok(())
                }))
                .unwrap();
            writer.finish().unwrap();
            assert_eq!(threads.lock().unwrap().len(), round, "finish waited for the job");
            assert!(writer.worker.is_none());
        }
        let threads = threads.lock().unwrap();
        assert_ne!(threads[0], threads[1]);
    }

    #[test]
    fn a_panicking_job_reports_its_message_and_later_jobs_still_run() {
        let (done, finished) = mpsc::channel();
        let mut writer = CheckpointWriter::new();
        let (open, gate) = mpsc::channel::<()>();
        writer
            .submit(Box::new(move || {
                gate.recv().unwrap();
                panic!("cannot serialize layer {}", 3)
            }))
            .unwrap();
        writer.submit(signal(&done)).unwrap();
        open.send(()).unwrap();
        let error = writer.finish().unwrap_err();
        assert!(matches!(error, Error::Checkpoint(_)), "{error:?}");
        assert!(error.to_string().contains("cannot serialize layer 3"), "{error}");
        assert_eq!(finished.try_iter().count(), 1, "the job after the panic ran");

        // A `&str` payload keeps its message too, and the same thread goes on serving jobs.
        let (open, gate) = mpsc::channel::<()>();
        writer
            .submit(Box::new(move || {
                gate.recv().unwrap();
                panic!("static message")
            }))
            .unwrap();
        writer.submit(signal(&done)).unwrap();
        open.send(()).unwrap();
        finished.recv().unwrap();
        let error = writer.submit(signal(&done)).unwrap_err();
        assert!(error.to_string().contains("static message"), "{error}");
        writer.finish().unwrap();
        assert_eq!(finished.try_iter().count(), 1);
    }

    #[test]
    fn dropping_the_writer_waits_for_queued_jobs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("last.ckpt");
        let mut writer = CheckpointWriter::new();
        let target = path.clone();
        writer
            .submit(Box::new(move || {
                std::thread::sleep(Duration::from_millis(200));
                crate::checkpoint::run_dir::write_atomic(&target, b"weights")
            }))
            .unwrap();
        drop(writer);
        assert_eq!(std::fs::read(&path).unwrap(), b"weights");
    }

    #[test]
    fn queued_jobs_are_written_when_the_thread_owning_the_writer_panics() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("last.ckpt");
        let target = path.clone();
        let outcome = std::thread::spawn(move || {
            let mut writer = CheckpointWriter::new();
            // An error the drop must not turn into a second panic.
            writer.submit(failing("/run/broken.ckpt")).unwrap();
            // This submit may report the error above; the job is queued all the same.
            let _ = writer.submit(Box::new(move || {
                std::thread::sleep(Duration::from_millis(200));
                crate::checkpoint::run_dir::write_atomic(&target, b"weights")
            }));
            panic!("the training step failed");
        })
        .join();
        let payload = outcome.unwrap_err();
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"the training step failed"));
        assert_eq!(std::fs::read(&path).unwrap(), b"weights");
    }
}
