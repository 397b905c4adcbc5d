//! The delivery loop every target shares: one queue per calendar, a limit on
//! how many calendars are worked at once, batches within a calendar, and
//! retries with jittered exponential backoff for retryable failures.
//!
//! Results are handed to the caller per calendar as soon as that calendar is
//! done, so the engine records acknowledgements while other calendars are
//! still being written.

use std::time::Duration;

use futures_util::stream::{self, StreamExt};

use crate::{CalendarOp, Outcome, Target};

#[derive(Debug, Clone)]
pub struct DeliveryOptions {
    /// Calendars worked on at once, further capped by the target's
    /// [`Target::calendar_concurrency`] (which is what normally decides).
    pub calendar_concurrency: usize,
    /// Ops handed to the target per call.
    pub batch: usize,
    /// Extra attempts for retryable failures within one cycle.
    pub retries: u32,
    /// First backoff; doubles per attempt, with jitter.
    pub backoff: Duration,
}

impl Default for DeliveryOptions {
    fn default() -> Self {
        DeliveryOptions {
            calendar_concurrency: 4096,
            batch: 100,
            retries: 3,
            backoff: Duration::from_millis(200),
        }
    }
}

/// Work for one calendar.
pub struct CalendarWork {
    pub calendar: String,
    pub ops: Vec<CalendarOp>,
}

/// Delivers `work` through `target`, calling `on_done(ops, outcomes)` once per calendar.
pub async fn deliver(
    target: &Target,
    work: Vec<CalendarWork>,
    opts: &DeliveryOptions,
    mut on_done: impl FnMut(Vec<CalendarOp>, Vec<Outcome>),
) {
    let concurrency = opts
        .calendar_concurrency
        .min(target.calendar_concurrency())
        .max(1);
    let mut results = stream::iter(work)
        .map(|w| deliver_calendar(target, w, opts))
        .buffer_unordered(concurrency);
    while let Some((ops, outcomes)) = results.next().await {
        on_done(ops, outcomes);
    }
}

async fn deliver_calendar(
    target: &Target,
    w: CalendarWork,
    opts: &DeliveryOptions,
) -> (Vec<CalendarOp>, Vec<Outcome>) {
    let mut outcomes: Vec<Option<Outcome>> = vec![None; w.ops.len()];
    for start in (0..w.ops.len()).step_by(opts.batch.max(1)) {
        let end = (start + opts.batch.max(1)).min(w.ops.len());
        let mut todo: Vec<usize> = (start..end).collect();
        let mut attempt = 0;
        loop {
            // The first attempt hands the ops over as they are; only retries,
            // a subset, are gathered (cloned) into a batch of their own.
            let got = if attempt == 0 {
                target.apply(&w.calendar, &w.ops[start..end]).await
            } else {
                let batch: Vec<CalendarOp> = todo.iter().map(|&i| w.ops[i].clone()).collect();
                target.apply(&w.calendar, &batch).await
            };
            let mut again = Vec::new();
            for (k, &i) in todo.iter().enumerate() {
                let o = got.get(k).cloned().unwrap_or(Outcome::Failed {
                    retryable: true,
                    message: "the target gave no answer for this operation".into(),
                });
                if matches!(
                    o,
                    Outcome::Failed {
                        retryable: true,
                        ..
                    }
                ) && attempt < opts.retries
                {
                    again.push(i);
                }
                outcomes[i] = Some(o);
            }
            if again.is_empty() {
                break;
            }
            attempt += 1;
            tokio::time::sleep(backoff(opts.backoff, attempt)).await;
            todo = again;
        }
    }
    let outcomes = outcomes
        .into_iter()
        .map(|o| {
            o.unwrap_or(Outcome::Failed {
                retryable: true,
                message: "not attempted".into(),
            })
        })
        .collect();
    (w.ops, outcomes)
}

/// `base * 2^(attempt-1)`, plus up to 50% jitter, capped at 60 s.
pub fn backoff(base: Duration, attempt: u32) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let jitter = exp.mul_f64(f64::from(nanos % 1000) / 2000.0);
    (exp + jitter).min(Duration::from_secs(60))
}

/// Runs `each` for every calendar in `calendars`, `width` at a time, and
/// adds up what they answer (cleardown: events removed). Every calendar is
/// tried; the first error comes back after all are done, so one calendar
/// that fails does not stop the others.
pub async fn sum_per_calendar<E, F, Fut>(
    calendars: &[String],
    width: usize,
    each: F,
) -> Result<u64, E>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<u64, E>>,
{
    let mut results = stream::iter(calendars.iter().cloned())
        .map(each)
        .buffer_unordered(width.max(1));
    let mut total = 0;
    let mut first_error = None;
    while let Some(r) = results.next().await {
        match r {
            Ok(n) => total += n,
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(total),
    }
}

#[cfg(test)]
mod sum_tests {
    use super::*;

    #[tokio::test]
    async fn every_calendar_is_tried_and_the_first_error_comes_back() {
        let tried = std::sync::Mutex::new(Vec::new());
        let cals: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let r = sum_per_calendar(&cals, 2, |c| {
            tried.lock().unwrap().push(c.clone());
            async move {
                match c.as_str() {
                    "b" => Err(format!("{c} failed")),
                    _ => Ok(2),
                }
            }
        })
        .await;
        assert_eq!(r, Err("b failed".to_string()));
        assert_eq!(tried.lock().unwrap().len(), 3);
        let ok = sum_per_calendar(&cals[..1], 2, |_| async { Ok::<_, String>(5) }).await;
        assert_eq!(ok, Ok(5));
    }
}
