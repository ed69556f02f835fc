//! Progress bars for the long steps (reading logs, cross-validation fits),
//! drawn on stderr only when stderr is a terminal: piped or captured output
//! (`--json`, tests, cron) stays exactly what it was.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

fn target() -> ProgressDrawTarget {
    if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    }
}

/// A bar over `total` bytes with throughput and a message (rows so far).
pub fn bytes(total: u64, prefix: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), target());
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix:>10} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} {msg} ({eta})",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_prefix(prefix.to_owned());
    bar
}

/// A bar over `total` steps (e.g. fits), with the elapsed time.
pub fn steps(total: u64, prefix: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), target());
    bar.set_style(
        ProgressStyle::with_template("{prefix:>10} [{bar:30}] {pos}/{len} {msg} ({elapsed})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(prefix.to_owned());
    bar
}

/// A spinner for a step of unknown length (a single fit).
pub fn spinner(prefix: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(None, target());
    bar.set_style(
        ProgressStyle::with_template("{prefix:>10} {spinner} {msg} ({elapsed})")
            .expect("valid template"),
    );
    bar.set_prefix(prefix.to_owned());
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}

/// Rows per second for a bar's message.
pub fn rate(rows: usize, bar: &ProgressBar) -> String {
    let secs = bar.elapsed().as_secs_f64().max(1e-3);
    format!("{rows} rows, {:.0} rows/s", rows as f64 / secs)
}
