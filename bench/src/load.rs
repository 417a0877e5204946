//! Closed-loop load: `concurrency` tasks, each sending its next request as
//! soon as the previous one is answered, over one HTTP/2 connection (so
//! `concurrency` streams at once), until `requests` have been made or
//! `max_time` has passed. Latencies go into an HDR histogram.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

#[derive(Debug, Clone, Copy)]
pub(crate) struct LoadSpec {
    pub concurrency: usize,
    pub requests: u64,
    pub max_time: Duration,
}

/// What one run measured.
#[derive(Debug, Clone)]
pub(crate) struct LoadResult {
    pub completed: u64,
    pub errors: u64,
    pub elapsed: Duration,
    pub latency: Histogram<u64>,
    /// The first error seen, if any.
    pub first_error: Option<String>,
}

impl LoadResult {
    pub(crate) fn rps(&self) -> f64 {
        self.completed as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// A latency quantile, in microseconds.
    pub(crate) fn quantile_us(&self, q: f64) -> u64 {
        self.latency.value_at_quantile(q)
    }
}

/// Runs `call(task, n)` as described in the module docs. `call` gets the
/// task index and the request number, so a task can vary its requests.
pub(crate) async fn run<F, Fut>(spec: LoadSpec, call: F) -> LoadResult
where
    F: Fn(usize, u64) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send,
{
    let issued = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + spec.max_time;
    let mut tasks = Vec::with_capacity(spec.concurrency);
    for task in 0..spec.concurrency {
        let issued = Arc::clone(&issued);
        let call = call.clone();
        tasks.push(tokio::spawn(async move {
            // 1 µs to 60 s, 3 significant digits.
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)
                .expect("valid histogram bounds");
            let (mut completed, mut errors, mut first_error) = (0u64, 0u64, None);
            loop {
                let n = issued.fetch_add(1, Ordering::Relaxed);
                if n >= spec.requests || Instant::now() >= deadline {
                    break;
                }
                let t = Instant::now();
                match call(task, n).await {
                    Ok(()) => {
                        let us = t.elapsed().as_micros().max(1) as u64;
                        let _ = hist.record(us.min(60_000_000));
                        completed += 1;
                    }
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert(e);
                    }
                }
            }
            (hist, completed, errors, first_error)
        }));
    }
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
    let (mut completed, mut errors, mut first_error) = (0, 0, None);
    for task in tasks {
        if let Ok((hist, c, e, f)) = task.await {
            let _ = latency.add(&hist);
            completed += c;
            errors += e;
            if first_error.is_none() {
                first_error = f;
            }
        }
    }
    LoadResult {
        completed,
        errors,
        elapsed: started.elapsed(),
        latency,
        first_error,
    }
}
