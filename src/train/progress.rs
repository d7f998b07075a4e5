//! Progress reporting: an indicatif bar when stderr is a terminal, plain lines otherwise (logs, CI),
//! nothing when quiet.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// How progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressMode {
    /// A bar on a terminal, lines elsewhere.
    Auto,
    /// Plain lines.
    Lines,
    Quiet,
}

/// Progress of one long task counted in steps (epochs, images).
pub struct Progress {
    bar: Option<ProgressBar>,
    lines: bool,
    label: String,
    total: u64,
    done: u64,
    every: u64,
}

impl Progress {
    /// Starts a task of `total` steps, labelled `label`, with `unit` in the bar's rate (`epoch`, `img`).
    pub fn new(mode: ProgressMode, label: &str, total: u64, unit: &str) -> Self {
        let tty = std::io::stderr().is_terminal();
        let bar = (mode == ProgressMode::Auto && tty).then(|| {
            let bar = ProgressBar::new(total);
            let template =
                format!("{{prefix:>12}} [{{bar:30}}] {{pos}}/{{len}} {unit} {{per_sec}} eta {{eta}}  {{msg}}");
            bar.set_style(ProgressStyle::with_template(&template).expect("valid template").progress_chars("=> "));
            bar.set_prefix(label.to_string());
            bar
        });
        let lines = mode == ProgressMode::Lines || (mode == ProgressMode::Auto && !tty);
        Progress { bar, lines, label: label.to_string(), total, done: 0, every: (total / 10).max(1) }
    }

    /// Advances by `n` steps with a status message (shown on the bar, or every tenth of the way as a
    /// plain line).
    pub fn advance(&mut self, n: u64, msg: impl FnOnce() -> String) {
        self.done += n;
        if let Some(bar) = &self.bar {
            bar.set_message(msg());
            bar.inc(n);
        } else if self.lines && (self.done % self.every < n || self.done >= self.total) {
            eprintln!("{}: {}/{} {}", self.label, self.done, self.total, msg());
        }
    }

    /// Ends the task with a closing message.
    pub fn finish(&self, msg: &str) {
        match &self.bar {
            Some(bar) => bar.finish_with_message(msg.to_string()),
            None if self.lines => eprintln!("{}: {msg}", self.label),
            None => {}
        }
    }
}
