//! Progress bars on a terminal, rate-limited log lines elsewhere.

use super::*;

pub fn progress_bar(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg:>12} [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec}, ETA {eta})",
        )
        .expect("valid template"),
    );
    bar.set_message(what.to_string());
    log_when_not_a_terminal(bar)
}

/// A spinner for work of unknown length (`template` in indicatif's syntax).
pub fn progress_spinner(template: &str) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(ProgressStyle::with_template(template).expect("valid template"));
    log_when_not_a_terminal(bar)
}

/// On a terminal the bar draws itself; elsewhere (a log file, a batch scheduler's output)
/// indicatif would print nothing, so its line goes to the log instead, at most once every
/// `MOLE_PROGRESS_EVERY` seconds (default 10).
pub(super) fn log_when_not_a_terminal(bar: ProgressBar) -> ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        let every = std::env::var("MOLE_PROGRESS_EVERY")
            .ok()
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v >= 0.0)
            .unwrap_or(10.0);
        let log = ProgressLog {
            every: std::time::Duration::from_secs_f64(every),
            last: std::sync::Mutex::new(None),
        };
        bar.set_draw_target(indicatif::ProgressDrawTarget::term_like_with_hz(
            Box::new(log),
            1,
        ));
    }
    bar
}

/// An indicatif "terminal" that turns redraws into log lines, rate-limited.
#[derive(Debug)]
pub(super) struct ProgressLog {
    every: std::time::Duration,
    last: std::sync::Mutex<Option<std::time::Instant>>,
}

impl ProgressLog {
    fn log(&self, line: &str) {
        let line = line.trim();
        if line.is_empty() {
            return;
        }
        let Ok(mut last) = self.last.lock() else {
            return;
        };
        if last.is_none_or(|t| t.elapsed() >= self.every) {
            tracing::info!("{line}");
            *last = Some(std::time::Instant::now());
        }
    }
}

impl indicatif::TermLike for ProgressLog {
    fn width(&self) -> u16 {
        // a short bar in log lines
        72
    }
    fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn write_line(&self, s: &str) -> std::io::Result<()> {
        self.log(s);
        Ok(())
    }
    fn write_str(&self, s: &str) -> std::io::Result<()> {
        self.log(s);
        Ok(())
    }
    fn clear_line(&self) -> std::io::Result<()> {
        Ok(())
    }
    fn flush(&self) -> std::io::Result<()> {
        Ok(())
    }
}
