//! The delivery loop every target shares: one queue per calendar, a limit on
//! how many calendars are worked at once, batches within a calendar, and
//! retries with jittered exponential backoff for retryable failures.
//!
//! Results are handed to the caller per calendar as soon as that calendar is
//! done, so the engine records acknowledgements while other calendars are
//! still being written.
//!
//! **Giving up on an outage.** Each client retries within a call and the
//! loop retries calls, which is right for a blip but multiplies into a
//! cycle that never ends when the service is down (every calendar paying
//! every backoff in turn). So the loop watches for progress: once a call
//! comes back with nothing but retryable failures and nothing has
//! succeeded (or failed for good) for [`DeliveryOptions::give_up_after`],
//! the target counts as unreachable for the rest of this delivery. Calls in
//! flight are dropped (as a crash would drop them: every op is idempotent
//! on replay), calendars not started are not, and all of it is answered
//! as a retryable failure, so the work stays pending for the next cycle.

use std::sync::Mutex;
use std::time::{Duration, Instant};

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
    /// How long the target may answer nothing but retryable failures before
    /// the rest of the delivery is left for the next cycle.
    pub give_up_after: Duration,
}

impl Default for DeliveryOptions {
    fn default() -> Self {
        DeliveryOptions {
            calendar_concurrency: 4096,
            batch: 100,
            retries: 3,
            backoff: Duration::from_millis(200),
            give_up_after: Duration::from_secs(60),
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
    let outage = Outage::new(opts.give_up_after);
    let mut results = stream::iter(work)
        .map(|w| deliver_calendar(target, w, opts, &outage))
        .buffer_unordered(concurrency);
    while let Some((ops, outcomes)) = results.next().await {
        on_done(ops, outcomes);
    }
}

/// Whether the target is making progress (see the module doc).
struct Outage {
    give_up_after: Duration,
    last_progress: Mutex<Instant>,
    down: tokio::sync::watch::Sender<Option<String>>,
}

impl Outage {
    fn new(give_up_after: Duration) -> Self {
        Self {
            give_up_after,
            last_progress: Mutex::new(Instant::now()),
            down: tokio::sync::watch::Sender::new(None),
        }
    }

    /// Takes in a call's outcomes; gives up when the call made no progress
    /// and nothing else has for `give_up_after`.
    fn observe(&self, kind: &str, outcomes: &[Outcome]) {
        let mut last = crate::lock(&self.last_progress);
        let failure = outcomes.iter().find_map(|o| match o {
            Outcome::Failed {
                retryable: true,
                message,
            } => Some(message),
            _ => None,
        });
        let progressed = outcomes.iter().any(|o| {
            !matches!(
                o,
                Outcome::Failed {
                    retryable: true,
                    ..
                }
            )
        });
        if progressed {
            *last = Instant::now();
        } else if let Some(message) = failure {
            let quiet = last.elapsed();
            if quiet >= self.give_up_after && self.down.borrow().is_none() {
                self.down.send_replace(Some(format!(
                    "left for the next cycle: the {kind} target has answered nothing but failures for {}s (last: {message})",
                    quiet.as_secs()
                )));
            }
        }
    }

    /// Why the delivery gave up, once it has.
    fn reason(&self) -> Option<String> {
        self.down.borrow().clone()
    }

    /// Resolves when the delivery gives up.
    async fn given_up(&self) -> String {
        let mut rx = self.down.subscribe();
        let reason = rx
            .wait_for(Option::is_some)
            .await
            .map(|r| r.clone().unwrap_or_default());
        match reason {
            Ok(reason) => reason,
            // The sender lives as long as `self`.
            Err(_) => std::future::pending().await,
        }
    }
}

async fn deliver_calendar(
    target: &Target,
    w: CalendarWork,
    opts: &DeliveryOptions,
    outage: &Outage,
) -> (Vec<CalendarOp>, Vec<Outcome>) {
    let mut outcomes: Vec<Option<Outcome>> = vec![None; w.ops.len()];
    'batches: for start in (0..w.ops.len()).step_by(opts.batch.max(1)) {
        let end = (start + opts.batch.max(1)).min(w.ops.len());
        let mut todo: Vec<usize> = (start..end).collect();
        let mut attempt = 0;
        loop {
            if outage.reason().is_some() {
                break 'batches;
            }
            // The first attempt hands the ops over as they are; only retries,
            // a subset, are gathered (cloned) into a batch of their own.
            let batch: Vec<CalendarOp>;
            let ops = if attempt == 0 {
                &w.ops[start..end]
            } else {
                batch = todo.iter().map(|&i| w.ops[i].clone()).collect();
                &batch[..]
            };
            let got = tokio::select! {
                biased;
                got = target.apply(&w.calendar, ops) => got,
                _ = outage.given_up() => break 'batches,
            };
            outage.observe(target.kind(), &got);
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
            tokio::select! {
                () = tokio::time::sleep(backoff(opts.backoff, attempt)) => {}
                _ = outage.given_up() => break 'batches,
            }
            todo = again;
        }
    }
    let gave_up = outage.reason();
    let outcomes = outcomes
        .into_iter()
        .map(|o| match (o, &gave_up) {
            // A retryable failure, or never tried, once the delivery gave up.
            (
                Some(Outcome::Failed {
                    retryable: true, ..
                })
                | None,
                Some(reason),
            ) => Outcome::Failed {
                retryable: true,
                message: reason.clone(),
            },
            (Some(o), _) => o,
            (None, None) => Outcome::Failed {
                retryable: true,
                message: "not attempted".into(),
            },
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
mod outage_tests {
    use super::*;
    use crate::caldav::{CaldavSettings, CaldavTarget, ClientSettings};
    use crate::OpKind;

    fn work(calendars: usize) -> Vec<CalendarWork> {
        (0..calendars)
            .map(|c| CalendarWork {
                calendar: format!("p{c}@example.ac.uk"),
                ops: (0..3)
                    .map(|e| CalendarOp {
                        kind: OpKind::Delete,
                        profile: "teaching".into(),
                        person_id: format!("P{c}"),
                        event_id: format!("E{e}"),
                        calendar: format!("p{c}@example.ac.uk"),
                        event: None,
                        prior: None,
                    })
                    .collect(),
            })
            .collect()
    }

    /// A server that refuses every connection: the delivery gives up after
    /// `give_up_after` without progress instead of paying every backoff of
    /// every calendar, and leaves all of it pending.
    #[tokio::test]
    async fn an_unreachable_target_is_given_up_on_and_everything_stays_pending() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port(); // bound, then closed: connections are refused
        let target = Target::Caldav(
            CaldavTarget::with_client(
                "caldav",
                CaldavSettings {
                    calendar_url: format!("http://127.0.0.1:{port}/{{email}}/timetable/"),
                    username: None,
                    password: None,
                },
                ClientSettings {
                    attempts: 2,
                    backoff: Duration::from_millis(100),
                    ..ClientSettings::default()
                },
            )
            .unwrap(),
        );
        let opts = DeliveryOptions {
            calendar_concurrency: 2,
            retries: 50,
            backoff: Duration::from_millis(100),
            give_up_after: Duration::from_millis(500),
            ..DeliveryOptions::default()
        };
        let started = Instant::now();
        let mut answered = Vec::new();
        deliver(&target, work(200), &opts, |ops, outcomes| {
            assert_eq!(ops.len(), outcomes.len());
            answered.extend(outcomes);
        })
        .await;
        // Without giving up: 200 calendars, 2 at a time, 50 retries each.
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "took {:?}",
            started.elapsed()
        );
        assert_eq!(answered.len(), 600);
        assert!(answered.iter().all(|o| matches!(
            o,
            Outcome::Failed {
                retryable: true,
                ..
            }
        )));
        let gave_up = answered
            .iter()
            .filter(|o| matches!(o, Outcome::Failed { message, .. } if message.starts_with("left for the next cycle: the caldav target has answered nothing but failures")))
            .count();
        assert!(gave_up >= 500, "{gave_up} of 600 say why they were left");
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
