//! Where the lines a run prints go: stdout, above the progress bars (which the progress bar
//! callback sets up), below them once they are finished, or a writer.

use indicatif::{MultiProgress, TermLike};
use std::io::Write;
use std::sync::{Arc, Mutex};

/// Where the lines a run prints go (`cx.print`, the epoch lines, results).
#[derive(Clone, Default)]
pub(crate) enum Output {
    /// Plain lines on stdout.
    #[default]
    Stdout,
    /// Above the progress bars while they are drawn (they are redrawn below); once the progress
    /// bar froze them at the end of its loop (its draw target hidden), straight to the terminal,
    /// below them.
    Bars {
        multi: MultiProgress,
        terminal: Arc<dyn TermLike>,
    },
    /// Plain lines into a writer.
    Writer(Arc<Mutex<dyn Write + Send>>),
}

impl Output {
    pub(crate) fn println(&self, line: &str) {
        match self {
            Output::Bars { multi, .. } if !multi.is_hidden() => {
                let _ = multi.println(line);
            }
            Output::Bars { terminal, .. } => {
                // Lines of text a terminal shows one by one; `write_line` takes one line.
                for part in line.lines() {
                    let _ = terminal.write_line(part);
                }
                if line.is_empty() {
                    let _ = terminal.write_line("");
                }
                let _ = terminal.flush();
            }
            // `println!`, as before the bars existed: captured by the test harness.
            Output::Stdout => println!("{line}"),
            Output::Writer(writer) => {
                // A line that cannot be written is not worth ending the run for.
                if let Ok(mut writer) = writer.lock() {
                    let _ = writeln!(writer, "{line}");
                    let _ = writer.flush();
                }
            }
        }
    }

    /// The width lines are laid out for: the terminal's under bars; on stdout, `$COLUMNS`, the
    /// terminal's, else 120, as Python's `shutil.get_terminal_size` (which Lightning's results
    /// table reads) decides; 120 in a writer.
    pub(crate) fn width(&self) -> usize {
        match self {
            Output::Bars { terminal, .. } => usize::from(terminal.width()).max(1),
            Output::Writer(_) => 120,
            Output::Stdout => std::env::var("COLUMNS")
                .ok()
                .and_then(|columns| columns.trim().parse::<usize>().ok())
                .filter(|columns| *columns > 0)
                .or_else(|| {
                    use std::io::IsTerminal;
                    std::io::stdout()
                        .is_terminal()
                        .then(|| usize::from(console::Term::stdout().size().1))
                })
                .unwrap_or(120),
        }
    }
}
