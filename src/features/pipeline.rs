//! A bounded, ordered parallel map: worker threads prepare jobs (batches) while the consumer (the
//! engine) runs earlier ones, with at most a fixed number of jobs started and not yet consumed, so
//! memory stays flat however long the job list is.

use std::collections::BTreeMap;
use std::sync::{mpsc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::{Error, Result};

/// How many workers prepare batches and how many batches may be in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flow {
    /// Preparation threads.
    pub workers: usize,
    /// Jobs started and not yet consumed (being prepared, waiting, or being consumed), at most.
    pub in_flight: usize,
}

impl Flow {
    /// One worker per core, and two prepared batches waiting beyond those being prepared.
    pub fn for_this_machine() -> Flow {
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
        Flow { workers, in_flight: workers + 2 }
    }
}

/// What the consumer's side of a run looked like.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Waited {
    /// Time the consumer spent waiting for the next job's result.
    pub waiting: Duration,
    /// The whole run, from the first job to the last consumed.
    pub total: Duration,
}

struct Window {
    next: usize,
    consumed: usize,
    stop: bool,
}

/// Runs `work` on every job on `flow.workers` threads and hands each result to `consume` in job
/// order. A job starts only while fewer than `flow.in_flight` jobs are started and not yet
/// consumed. The first error from `consume` stops the run (no further job starts) and is returned.
pub fn ordered<J, T, W, C>(jobs: &[J], flow: Flow, work: W, mut consume: C) -> Result<Waited>
where
    J: Sync,
    T: Send,
    W: Fn(&J) -> T + Sync,
    C: FnMut(T) -> Result<()>,
{
    let started = Instant::now();
    let in_flight = flow.in_flight.max(1);
    let window = Mutex::new(Window { next: 0, consumed: 0, stop: false });
    let moved = Condvar::new();
    let (tx, rx) = mpsc::channel::<(usize, T)>();
    let mut waited = Waited::default();
    let stop = || {
        window.lock().expect("window lock").stop = true;
        moved.notify_all();
    };
    std::thread::scope(|scope| {
        for _ in 0..flow.workers.clamp(1, jobs.len().max(1)) {
            let (tx, window, moved, work) = (tx.clone(), &window, &moved, &work);
            scope.spawn(move || loop {
                let job = {
                    let mut w = window.lock().expect("window lock");
                    while !w.stop && w.next < jobs.len() && w.next >= w.consumed + in_flight {
                        w = moved.wait(w).expect("window lock");
                    }
                    if w.stop || w.next >= jobs.len() {
                        return;
                    }
                    w.next += 1;
                    w.next - 1
                };
                if tx.send((job, work(&jobs[job]))).is_err() {
                    return;
                }
            });
        }
        drop(tx);
        let mut pending = BTreeMap::new();
        let mut next = 0;
        let result = (|| {
            while next < jobs.len() {
                let Some(out) = pending.remove(&next) else {
                    let t = Instant::now();
                    let (job, out) =
                        rx.recv().map_err(|_| Error::Invalid("a batch preparation thread stopped".into()))?;
                    waited.waiting += t.elapsed();
                    pending.insert(job, out);
                    continue;
                };
                consume(out)?;
                next += 1;
                window.lock().expect("window lock").consumed = next;
                moved.notify_all();
            }
            Ok(())
        })();
        if result.is_err() {
            stop();
        }
        result
    })?;
    waited.total = started.elapsed();
    Ok(waited)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn results_come_in_job_order_with_a_bounded_number_in_flight() {
        let jobs: Vec<usize> = (0..60).collect();
        let flow = Flow { workers: 4, in_flight: 5 };
        let (live, peak) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let mut seen = Vec::new();
        ordered(
            &jobs,
            flow,
            |&j| {
                let now = live.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                // Later jobs finish first now and then: the consumer must reorder.
                std::thread::sleep(Duration::from_micros(((j * 7919) % 5) as u64 * 300));
                j * 10
            },
            |v| {
                live.fetch_sub(1, Ordering::SeqCst);
                seen.push(v);
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(seen, jobs.iter().map(|j| j * 10).collect::<Vec<_>>());
        let peak = peak.load(Ordering::SeqCst);
        assert!(peak <= flow.in_flight, "{peak} jobs alive at once, more than {}", flow.in_flight);
        assert!(peak > 1, "jobs ran in parallel ({peak})");
    }

    #[test]
    fn an_error_from_the_consumer_stops_the_run() {
        let jobs: Vec<usize> = (0..1000).collect();
        let started = AtomicUsize::new(0);
        let err = ordered(
            &jobs,
            Flow { workers: 3, in_flight: 4 },
            |&j| {
                started.fetch_add(1, Ordering::SeqCst);
                j
            },
            |j| if j == 2 { Err(Error::Invalid(format!("job {j} failed"))) } else { Ok(()) },
        )
        .unwrap_err();
        assert!(err.to_string().contains("job 2 failed"), "{err}");
        let started = started.load(Ordering::SeqCst);
        assert!(started <= 2 + 4, "{started} jobs started after the failure");
    }

    #[test]
    fn no_jobs_is_no_work() {
        let w = ordered(&[] as &[u8], Flow::for_this_machine(), |_| (), |_| Ok(())).unwrap();
        assert_eq!(w.waiting, Duration::ZERO);
    }
}
