//! How the CLI shows the library's progress: an indicatif bar when stderr is a terminal, plain lines
//! otherwise (logs, CI), each with the rate and, once a task has run a little, the time left.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use graft::train::progress::{set_observer, ProgressMode, ProgressObserver, Snapshot, TaskObserver};
use indicatif::{ProgressBar, ProgressStyle};

/// Installs the terminal observer for this process.
pub fn install() {
    set_observer(Box::new(Terminal));
}

struct Terminal;

impl ProgressObserver for Terminal {
    fn begin(&self, mode: ProgressMode, task: &Snapshot) -> Box<dyn TaskObserver> {
        if mode == ProgressMode::Auto && std::io::stderr().is_terminal() {
            return Box::new(Bar::new(task));
        }
        Box::new(Lines { every: (task.total / 10).max(1), printed: 0, last_line: Instant::now() })
    }
}

/// Sub-step resolution of the bar (so that batches within an epoch move it).
const SCALE: u64 = 1000;

struct Bar(ProgressBar);

impl Bar {
    fn new(task: &Snapshot) -> Self {
        let bar = ProgressBar::new(task.total * SCALE);
        let style = ProgressStyle::with_template("{prefix:>12} [{bar:30}] {wide_msg}").expect("valid template");
        bar.set_style(style.progress_chars("=> "));
        bar.set_prefix(task.label.clone());
        bar.enable_steady_tick(Duration::from_millis(500));
        Bar(bar)
    }
}

impl TaskObserver for Bar {
    fn update(&mut self, task: &Snapshot) {
        self.0.set_position((task.position() * SCALE as f64) as u64);
        self.0.set_message(status(task, Duration::ZERO));
    }

    fn finish(&mut self, task: &Snapshot, msg: &str) {
        self.0.set_position((task.position() * SCALE as f64) as u64);
        self.0.finish_with_message(msg.to_string());
    }
}

/// Plain lines: one every tenth of the steps (and at the end), and within a long step at most one
/// every [`LINE_EVERY`].
struct Lines {
    every: u64,
    printed: u64,
    last_line: Instant,
}

/// Least time between two lines about progress within a step.
const LINE_EVERY: Duration = Duration::from_secs(3);

/// Tasks shorter than this show no ETA on their lines.
const ETA_AFTER: Duration = Duration::from_secs(2);

impl TaskObserver for Lines {
    fn update(&mut self, task: &Snapshot) {
        let step_done = task.done > self.printed && task.within.is_none();
        let crossed = task.done / self.every > self.printed / self.every || task.done >= task.total;
        let print = if step_done { crossed } else { self.last_line.elapsed() >= LINE_EVERY };
        if print {
            eprintln!("{}: {}", task.label, status(task, ETA_AFTER));
            self.last_line = Instant::now();
        }
        if step_done {
            self.printed = task.done;
        }
    }

    fn finish(&mut self, task: &Snapshot, msg: &str) {
        eprintln!("{}: {msg}", task.label);
    }
}

/// `3/12 epochs, batch 120/245, 7.1 s/epoch, eta 1m 04s  loss …`: the ETA once the task has run
/// for `eta_after`.
fn status(task: &Snapshot, eta_after: Duration) -> String {
    let mut s = format!("{}/{} {}", task.done, task.total, task.unit);
    if let Some((done, of)) = task.within {
        s.push_str(&format!(", batch {done}/{of}"));
    }
    if let Some(rate) = task.rate() {
        s.push_str(&format!(", {}", rate_text(rate, &task.unit)));
    }
    if let (Some(eta), true) = (task.eta(), task.elapsed >= eta_after) {
        if task.position() < task.total as f64 {
            s.push_str(&format!(", eta {}", duration_text(eta)));
        }
    }
    if !task.message.is_empty() && task.within.is_none() {
        s.push_str("  ");
        s.push_str(&task.message);
    }
    s
}

/// `12.3 items/s`, or `7.1 s/epoch` below one step a second.
fn rate_text(per_second: f64, unit: &str) -> String {
    if per_second >= 1.0 {
        format!("{per_second:.1} {unit}/s")
    } else {
        format!("{:.1} s/{}", 1.0 / per_second, unit.strip_suffix('s').unwrap_or(unit))
    }
}

/// `38s`, `4m 05s`, `2h 03m`.
fn duration_text(d: Duration) -> String {
    let s = d.as_secs_f64().round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        _ => format!("{}h {:02}m", s / 3600, s % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(done: u64, within: Option<(u64, u64)>, secs: u64) -> Snapshot {
        Snapshot {
            label: "holdout".into(),
            unit: "epochs".into(),
            total: 12,
            done,
            within,
            start: 0,
            elapsed: Duration::from_secs(secs),
            message: "loss 0.5".into(),
        }
    }

    #[test]
    fn a_long_epoch_shows_its_batches_and_an_eta() {
        let s = status(&task(2, Some((50, 100)), 15), ETA_AFTER);
        assert_eq!(s, "2/12 epochs, batch 50/100, 6.0 s/epoch, eta 57s");
        let s = status(&task(3, None, 21), ETA_AFTER);
        assert_eq!(s, "3/12 epochs, 7.0 s/epoch, eta 1m 03s  loss 0.5");
        assert_eq!(status(&task(12, None, 1), ETA_AFTER), "12/12 epochs, 12.0 epochs/s  loss 0.5");
        assert_eq!(status(&task(1, None, 1), ETA_AFTER), "1/12 epochs, 1.0 epochs/s  loss 0.5", "too early for an ETA");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration_text(Duration::from_secs(0)), "0s");
        assert_eq!(duration_text(Duration::from_secs(245)), "4m 05s");
        assert_eq!(duration_text(Duration::from_secs(7380)), "2h 03m");
    }
}
