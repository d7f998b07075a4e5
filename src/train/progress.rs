//! Progress of long tasks (epochs, batches within an epoch, embedded items). The library only
//! describes how far a task has got; the program shows it through a [`ProgressObserver`] that it
//! installs once with [`set_observer`] (the `graft` CLI draws an indicatif bar on a terminal and
//! prints plain lines elsewhere). With no observer installed nothing is shown.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How progress should be shown; the observer decides what each mode looks like.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressMode {
    /// A bar on a terminal, lines elsewhere.
    Auto,
    /// Plain lines.
    Lines,
    /// Nothing: the observer is not called.
    Quiet,
}

/// How far one task has got, as shown to the observer.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    /// What the task is (a run name, `embedding`).
    pub label: String,
    /// What a step is, plural (`epochs`, `items`).
    pub unit: String,
    /// Steps in all.
    pub total: u64,
    /// Whole steps done.
    pub done: u64,
    /// Progress within the step under way, `(done, of)`: the batches of the current epoch.
    pub within: Option<(u64, u64)>,
    /// Steps that were already done when this process started the task (a resumed run).
    pub start: u64,
    /// Time since this process started the task.
    pub elapsed: Duration,
    /// The latest status (e.g. the last epoch's loss).
    pub message: String,
}

impl Snapshot {
    /// Steps done, counting the step under way as a fraction.
    pub fn position(&self) -> f64 {
        let within = self.within.map_or(0.0, |(d, of)| d as f64 / of.max(1) as f64);
        (self.done as f64 + within.min(1.0)).min(self.total as f64)
    }

    /// Steps per second in this process (`None` before any progress).
    pub fn rate(&self) -> Option<f64> {
        let progressed = self.position() - self.start as f64;
        let secs = self.elapsed.as_secs_f64();
        (progressed > 0.0 && secs > 0.0).then(|| progressed / secs)
    }

    /// Time left at the rate so far (`None` before any progress).
    pub fn eta(&self) -> Option<Duration> {
        let left = (self.total as f64 - self.position()).max(0.0);
        self.rate().map(|r| Duration::from_secs_f64(left / r))
    }
}

/// Shows progress; installed once per process with [`set_observer`].
pub trait ProgressObserver: Send + Sync {
    /// A task starts; the returned view receives its updates.
    fn begin(&self, mode: ProgressMode, task: &Snapshot) -> Box<dyn TaskObserver>;
}

/// The view of one task.
pub trait TaskObserver: Send {
    /// Steps were done, or the step under way moved on (at most every [`WITHIN_EVERY`]).
    fn update(&mut self, task: &Snapshot);
    /// The task ended, with a closing message.
    fn finish(&mut self, task: &Snapshot, msg: &str);
}

/// Least time between two reports of progress within a step.
pub const WITHIN_EVERY: Duration = Duration::from_millis(200);

static OBSERVER: OnceLock<Box<dyn ProgressObserver>> = OnceLock::new();

/// Installs the process's progress observer; returns false (and keeps the first) when one was
/// already installed.
pub fn set_observer(observer: Box<dyn ProgressObserver>) -> bool {
    OBSERVER.set(observer).is_ok()
}

/// Progress of one long task counted in steps (epochs, items), reported to the installed observer.
pub struct Progress {
    view: Option<Box<dyn TaskObserver>>,
    task: Snapshot,
    started: Instant,
    last_within: Instant,
}

impl Progress {
    /// Starts a task of `total` steps, labelled `label`, counted in `unit` (`epochs`, `items`).
    pub fn new(mode: ProgressMode, label: &str, total: u64, unit: &str) -> Self {
        Self::with_observer(mode, label, total, unit, OBSERVER.get().map(Box::as_ref))
    }

    /// [`Progress::new`] reporting to `observer` instead of the installed one.
    pub fn with_observer(
        mode: ProgressMode,
        label: &str,
        total: u64,
        unit: &str,
        observer: Option<&dyn ProgressObserver>,
    ) -> Self {
        let task = Snapshot {
            label: label.to_string(),
            unit: unit.to_string(),
            total,
            done: 0,
            within: None,
            start: 0,
            elapsed: Duration::ZERO,
            message: String::new(),
        };
        let view = observer.filter(|_| mode != ProgressMode::Quiet).map(|o| o.begin(mode, &task));
        let now = Instant::now();
        Progress { view, task, started: now, last_within: now }
    }

    /// Marks `n` steps as done before this process started (a resumed run); they do not count
    /// towards the rate.
    pub fn resumed(&mut self, n: u64) {
        self.task.done += n;
        self.task.start = self.task.done;
        self.report();
    }

    /// Advances by `n` steps with a status message.
    pub fn advance(&mut self, n: u64, msg: impl FnOnce() -> String) {
        self.task.done += n;
        self.task.within = None;
        if self.view.is_some() {
            self.task.message = msg();
            self.report();
        }
    }

    /// Progress within the step under way: `done` of `of` (e.g. batches of an epoch). Reported at
    /// most every [`WITHIN_EVERY`].
    pub fn within(&mut self, done: u64, of: u64) {
        self.task.within = Some((done, of));
        if self.view.is_some() && self.last_within.elapsed() >= WITHIN_EVERY {
            self.last_within = Instant::now();
            self.report();
        }
    }

    /// Ends the task with a closing message.
    pub fn finish(&mut self, msg: &str) {
        self.task.elapsed = self.started.elapsed();
        if let Some(view) = &mut self.view {
            view.finish(&self.task, msg);
        }
    }

    fn report(&mut self) {
        self.task.elapsed = self.started.elapsed();
        if let Some(view) = &mut self.view {
            view.update(&self.task);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    type Log = Arc<Mutex<Vec<(String, Snapshot)>>>;

    struct Recorder(Log);
    struct View(Log);

    impl ProgressObserver for Recorder {
        fn begin(&self, _: ProgressMode, task: &Snapshot) -> Box<dyn TaskObserver> {
            self.0.lock().unwrap().push(("begin".into(), task.clone()));
            Box::new(View(self.0.clone()))
        }
    }

    impl TaskObserver for View {
        fn update(&mut self, task: &Snapshot) {
            self.0.lock().unwrap().push(("update".into(), task.clone()));
        }
        fn finish(&mut self, task: &Snapshot, msg: &str) {
            self.0.lock().unwrap().push((format!("finish {msg}"), task.clone()));
        }
    }

    fn snapshot(done: u64, within: Option<(u64, u64)>, start: u64, secs: f64) -> Snapshot {
        Snapshot {
            label: "t".into(),
            unit: "epochs".into(),
            total: 10,
            done,
            within,
            start,
            elapsed: Duration::from_secs_f64(secs),
            message: String::new(),
        }
    }

    #[test]
    fn eta_counts_the_step_under_way_and_not_resumed_steps() {
        assert_eq!(snapshot(0, None, 0, 1.0).eta(), None);
        let halfway = snapshot(2, Some((1, 2)), 0, 5.0);
        assert_eq!(halfway.position(), 2.5);
        assert_eq!(halfway.eta(), Some(Duration::from_secs(15)));
        let first_epoch = snapshot(0, Some((25, 100)), 0, 2.0);
        assert_eq!(first_epoch.eta(), Some(Duration::from_secs(78)), "an ETA before the first epoch ends");
        let resumed = snapshot(6, None, 4, 4.0);
        assert_eq!(resumed.rate(), Some(0.5));
        assert_eq!(resumed.eta(), Some(Duration::from_secs(8)));
    }

    #[test]
    fn batches_within_an_epoch_reach_the_observer() {
        let log: Log = Default::default();
        let recorder = Recorder(log.clone());
        let mut p = Progress::with_observer(ProgressMode::Auto, "fold-1", 3, "epochs", Some(&recorder));
        p.resumed(1);
        std::thread::sleep(WITHIN_EVERY);
        p.within(5, 10);
        p.within(6, 10);
        p.advance(1, || "loss 0.5".into());
        p.finish("done");
        let log = log.lock().unwrap();
        let events: Vec<&str> = log.iter().map(|(e, _)| e.as_str()).collect();
        assert_eq!(events, ["begin", "update", "update", "update", "finish done"], "the second within is throttled");
        assert_eq!((log[2].1.done, log[2].1.within, log[2].1.start), (1, Some((5, 10)), 1));
        assert_eq!((log[3].1.done, log[3].1.within, log[3].1.message.as_str()), (2, None, "loss 0.5"));
    }

    #[test]
    fn quiet_reaches_no_observer() {
        let log: Log = Default::default();
        let recorder = Recorder(log.clone());
        let mut p = Progress::with_observer(ProgressMode::Quiet, "x", 3, "epochs", Some(&recorder));
        p.advance(1, || unreachable!("no message is built when nothing shows it"));
        p.finish("done");
        assert!(log.lock().unwrap().is_empty());
    }
}
