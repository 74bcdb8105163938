//! Where the lines a run prints go: stdout, above the progress bars (which the progress bar
//! callback sets up), or a writer.

use indicatif::MultiProgress;
use std::io::Write;
use std::sync::{Arc, Mutex};

/// Where the lines a run prints go (`cx.print`, the epoch lines, results).
#[derive(Clone, Default)]
pub(crate) enum Output {
    /// Plain lines on stdout.
    #[default]
    Stdout,
    /// Above the progress bars, which are redrawn below.
    Bars(MultiProgress),
    /// Plain lines into a writer.
    Writer(Arc<Mutex<dyn Write + Send>>),
}

impl Output {
    pub(crate) fn println(&self, line: &str) {
        match self {
            Output::Bars(multi) if !multi.is_hidden() => {
                let _ = multi.println(line);
            }
            // `println!`, as before the bars existed: captured by the test harness.
            Output::Stdout | Output::Bars(_) => println!("{line}"),
            Output::Writer(writer) => {
                // A line that cannot be written is not worth ending the run for.
                if let Ok(mut writer) = writer.lock() {
                    let _ = writeln!(writer, "{line}");
                    let _ = writer.flush();
                }
            }
        }
    }
}
