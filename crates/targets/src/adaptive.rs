//! Adaptive concurrency per calendar (mailbox, Google user): an AIMD limit
//! on requests in flight, modelled on Vector's adaptive request concurrency
//! (ARC).
//!
//! * The limit starts at `initial` and never leaves `1..=max` (`max` is the
//!   service's published cap, e.g. Outlook's 4 per mailbox).
//! * **Decrease** (multiplicative, × `decrease_ratio`): on back-pressure
//!   (429, 503, timeouts) and on rising latency, i.e. a response slower than
//!   the long-term mean by more than `rtt_deviation_scale` mean deviations
//!   *and* by more than `rtt_tolerance` of the mean, twice in a row (judged
//!   once a few round trips have set the baseline). At most once per round
//!   trip: an answer to a request sent before the last decrease does not
//!   decrease again (a throttled batch's several 429s count once).
//! * **Increase** (additive, +1 per limit's worth of healthy answers, i.e.
//!   +1 per round trip when busy): only when the limit was reached since
//!   the calendar was last idle, so a calendar that does not use its limit
//!   does not inflate it.
//! * Waiters are served first come, first served; a release wakes only the
//!   waiters that now fit, never all of them.
//!
//! Callers take a [`Permit`] for `want` slots and get `min(want, limit)`
//! ([`Permit::slots`]), then report how the request went with
//! [`Permit::done`]; a permit dropped without a report counts as neutral.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;

/// How a limiter adapts. `Default` suits a service with a cap of 4.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdaptiveConfig {
    /// Requests in flight at the start.
    pub initial: u32,
    /// The most ever allowed in flight (the service's cap).
    pub max: u32,
    /// Factor applied to the limit on back-pressure or rising latency.
    pub decrease_ratio: f64,
    /// Weight of a new round-trip time in the long-term mean (EWMA).
    pub ewma_alpha: f64,
    /// A round trip above `mean + scale × mean deviation` signals congestion…
    pub rtt_deviation_scale: f64,
    /// …when it is also more than this share above the mean (noise floor).
    pub rtt_tolerance: f64,
}

impl Default for AdaptiveConfig {
    fn default() -> Self {
        Self {
            initial: 4,
            max: 4,
            decrease_ratio: 0.5,
            ewma_alpha: 0.2,
            rtt_deviation_scale: 2.5,
            rtt_tolerance: 0.5,
        }
    }
}

/// How one request went, as the limiter needs to know it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Feedback {
    /// Answered normally after `rtt` (per round, when one request ran
    /// several rounds on the server, e.g. a `$batch`).
    Ok(Duration),
    /// The service pushed back: 429, 503, a timeout.
    Backoff,
    /// Neither (a 4xx, a dropped connection): the limit stays.
    Neutral,
}

/// Round trips measured before latency can shrink the limit: the first
/// answers only set the baseline.
const WARM_UP: u32 = 3;

/// Slow answers in a row that count as rising latency: a single slow one
/// is as often this host stalling (CPU starved) as the service slowing.
const SLOW_IN_A_ROW: u32 = 2;

struct Waiter {
    want: u32,
    tx: oneshot::Sender<u32>,
}

struct State {
    cfg: AdaptiveConfig,
    limit: f64,
    in_flight: u32,
    queue: VecDeque<Waiter>,
    /// Long-term mean round trip and its mean absolute deviation, seconds.
    rtt_mean: Option<f64>,
    rtt_dev: f64,
    /// Round trips measured so far; latency is judged only after a few.
    samples: u32,
    /// Slow answers in a row (one alone is noise: a stall of this host).
    slow_streak: u32,
    /// Bumped at every decrease; permits remember the epoch they were taken in.
    epoch: u64,
    /// The limit was reached since the calendar was last idle.
    hit: bool,
    /// Lowest limit seen, and how many decreases (for tests and logs).
    min_seen: f64,
    decreases: u64,
}

impl State {
    fn cap(&self) -> u32 {
        (self.limit.floor() as u32).clamp(1, self.cfg.max.max(1))
    }

    /// Hands out slots to waiters in order while they fit.
    fn grant(&mut self) {
        while let Some(w) = self.queue.front() {
            let k = w.want.clamp(1, self.cap());
            if self.in_flight + k > self.cap() {
                break;
            }
            let w = self.queue.pop_front().expect("front exists");
            if w.tx.send(k).is_ok() {
                self.take(k);
            }
        }
    }

    fn take(&mut self, k: u32) {
        self.in_flight += k;
        self.hit |= self.in_flight >= self.cap();
    }

    fn decrease(&mut self) {
        self.limit = (self.limit * self.cfg.decrease_ratio).max(1.0);
        self.epoch += 1;
        self.decreases += 1;
        self.min_seen = self.min_seen.min(self.limit);
    }
}

/// An adaptive limit for one calendar. Cheap to clone; clones share it.
#[derive(Clone)]
pub struct AdaptiveLimit {
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for AdaptiveLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.lock();
        f.debug_struct("AdaptiveLimit")
            .field("limit", &s.limit)
            .field("in_flight", &s.in_flight)
            .finish()
    }
}

/// A snapshot of a limiter, for tests, logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LimitStats {
    pub limit: f64,
    pub in_flight: u32,
    pub min_limit: f64,
    pub decreases: u64,
    pub rtt_mean: Option<Duration>,
}

impl AdaptiveLimit {
    pub fn new(cfg: AdaptiveConfig) -> Self {
        let max = cfg.max.max(1);
        let limit = f64::from(cfg.initial.clamp(1, max));
        Self {
            state: Arc::new(Mutex::new(State {
                cfg: AdaptiveConfig { max, ..cfg },
                limit,
                in_flight: 0,
                queue: VecDeque::new(),
                rtt_mean: None,
                rtt_dev: 0.0,
                samples: 0,
                slow_streak: 0,
                epoch: 0,
                hit: false,
                min_seen: limit,
                decreases: 0,
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        crate::lock(&self.state)
    }

    /// The current limit (requests in flight allowed now).
    pub fn limit(&self) -> u32 {
        self.lock().cap()
    }

    pub fn stats(&self) -> LimitStats {
        let s = self.lock();
        LimitStats {
            limit: s.limit,
            in_flight: s.in_flight,
            min_limit: s.min_seen,
            decreases: s.decreases,
            rtt_mean: s.rtt_mean.map(Duration::from_secs_f64),
        }
    }

    /// Waits for `min(want, limit)` free slots (at least 1), first come,
    /// first served.
    pub async fn acquire(&self, want: u32) -> Permit {
        let rx = {
            let mut s = self.lock();
            let k = want.clamp(1, s.cap());
            if s.queue.is_empty() && s.in_flight + k <= s.cap() {
                s.take(k);
                return self.permit(&s, k);
            }
            let (tx, rx) = oneshot::channel();
            s.queue.push_back(Waiter { want, tx });
            rx
        };
        let mut wait = Waiting {
            limit: self,
            rx: Some(rx),
        };
        let k = wait
            .rx
            .as_mut()
            .expect("set above")
            .await
            .expect("the limiter outlives its waiters");
        wait.rx = None;
        let s = self.lock();
        self.permit(&s, k)
    }

    fn permit(&self, s: &State, slots: u32) -> Permit {
        Permit {
            limit: self.clone(),
            slots,
            epoch: s.epoch,
            reported: false,
        }
    }

    fn release(&self, slots: u32, epoch: u64, feedback: Feedback) {
        let mut s = self.lock();
        s.in_flight = s.in_flight.saturating_sub(slots);
        match feedback {
            Feedback::Backoff => {
                if epoch == s.epoch {
                    s.decrease();
                }
            }
            Feedback::Ok(rtt) => {
                let rtt = rtt.as_secs_f64();
                let slow = match s.rtt_mean {
                    Some(mean) if s.samples >= WARM_UP => {
                        rtt > mean + s.cfg.rtt_deviation_scale * s.rtt_dev
                            && rtt > mean * (1.0 + s.cfg.rtt_tolerance)
                    }
                    _ => false,
                };
                s.slow_streak = if slow { s.slow_streak + 1 } else { 0 };
                let congested = s.slow_streak >= SLOW_IN_A_ROW;
                s.samples = s.samples.saturating_add(1);
                let a = s.cfg.ewma_alpha;
                match s.rtt_mean {
                    Some(mean) => {
                        s.rtt_dev = (1.0 - a) * s.rtt_dev + a * (rtt - mean).abs();
                        s.rtt_mean = Some((1.0 - a) * mean + a * rtt);
                    }
                    None => s.rtt_mean = Some(rtt),
                }
                if congested {
                    if epoch == s.epoch {
                        s.decrease();
                    }
                } else if !slow && s.hit {
                    let max = f64::from(s.cfg.max);
                    s.limit = (s.limit + f64::from(slots) / s.limit.max(1.0)).min(max);
                }
            }
            Feedback::Neutral => {}
        }
        if s.in_flight == 0 {
            s.hit = false;
        }
        s.grant();
    }
}

/// Slots taken from an [`AdaptiveLimit`]; given back on [`Permit::done`] or drop.
pub struct Permit {
    limit: AdaptiveLimit,
    slots: u32,
    epoch: u64,
    reported: bool,
}

impl Permit {
    /// How many requests may be in flight under this permit.
    pub fn slots(&self) -> u32 {
        self.slots
    }

    /// Gives the slots back and tells the limiter how the request went.
    pub fn done(mut self, feedback: Feedback) {
        self.reported = true;
        self.limit.release(self.slots, self.epoch, feedback);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.reported {
            self.limit
                .release(self.slots, self.epoch, Feedback::Neutral);
        }
    }
}

/// A waiter's receiving end; if the waiting future is dropped after its
/// slots were granted, gives them back.
struct Waiting<'a> {
    limit: &'a AdaptiveLimit,
    rx: Option<oneshot::Receiver<u32>>,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if let Some(mut rx) = self.rx.take() {
            rx.close();
            if let Ok(k) = rx.try_recv() {
                let mut s = self.limit.lock();
                s.in_flight = s.in_flight.saturating_sub(k);
                s.grant();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RTT: Duration = Duration::from_millis(100);

    fn lim(initial: u32) -> AdaptiveLimit {
        AdaptiveLimit::new(AdaptiveConfig {
            initial,
            ..AdaptiveConfig::default()
        })
    }

    /// Runs `n` sequential full-limit rounds, every request answered with `fb`.
    async fn rounds(l: &AdaptiveLimit, n: usize, fb: Feedback) {
        for _ in 0..n {
            let k = l.limit();
            let mut ps = Vec::new();
            for _ in 0..k {
                ps.push(l.acquire(1).await);
            }
            for p in ps {
                p.done(fb);
            }
        }
    }

    #[tokio::test]
    async fn never_more_in_flight_than_the_limit() {
        let l = lim(4);
        let a = l.acquire(4).await;
        assert_eq!(a.slots(), 4);
        // A fifth slot waits until the first four come back.
        let l2 = l.clone();
        let waiting = tokio::spawn(async move { l2.acquire(1).await.slots() });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished());
        assert_eq!(l.stats().in_flight, 4);
        a.done(Feedback::Ok(RTT));
        assert_eq!(waiting.await.unwrap(), 1);
        assert_eq!(l.stats().in_flight, 0);
    }

    #[tokio::test]
    async fn a_request_for_more_than_the_limit_gets_the_limit() {
        let l = lim(2);
        let p = l.acquire(4).await;
        assert_eq!(p.slots(), 2);
    }

    #[tokio::test]
    async fn halves_on_backoff_once_per_round_trip() {
        let l = lim(4);
        let ps: Vec<Permit> = futures_util::future::join_all((0..4).map(|_| l.acquire(1))).await;
        // Four 429s for requests sent together: one decrease, not four.
        for p in ps {
            p.done(Feedback::Backoff);
        }
        assert_eq!(l.limit(), 2);
        assert_eq!(l.stats().decreases, 1);
        // A request sent after the decrease that is throttled again decreases again.
        l.acquire(1).await.done(Feedback::Backoff);
        assert_eq!(l.limit(), 1);
        // Never below one.
        l.acquire(1).await.done(Feedback::Backoff);
        assert_eq!(l.limit(), 1);
    }

    #[tokio::test]
    async fn grows_back_while_healthy_up_to_the_cap() {
        let l = lim(1);
        rounds(&l, 3, Feedback::Ok(RTT)).await;
        assert!(l.limit() >= 3, "{:?}", l.stats());
        rounds(&l, 10, Feedback::Ok(RTT)).await;
        assert_eq!(l.limit(), 4, "capped at max");
        assert!(l.stats().limit <= 4.0);
    }

    #[tokio::test]
    async fn does_not_grow_when_the_limit_is_not_used() {
        let l = lim(1);
        // Let a second slot appear, then use only one at a time.
        rounds(&l, 2, Feedback::Ok(RTT)).await;
        let before = l.stats().limit;
        assert!(before >= 2.0);
        for _ in 0..20 {
            l.acquire(1).await.done(Feedback::Ok(RTT));
        }
        assert_eq!(l.stats().limit, before);
    }

    #[tokio::test]
    async fn shrinks_when_latency_rises_and_not_on_noise() {
        let l = lim(4);
        rounds(&l, 10, Feedback::Ok(RTT)).await;
        // 20% slower: noise, no decrease.
        rounds(&l, 2, Feedback::Ok(RTT.mul_f64(1.2))).await;
        assert_eq!(l.limit(), 4);
        // One stall alone (this host busy for a moment): no decrease either.
        l.acquire(1).await.done(Feedback::Ok(RTT * 5));
        rounds(&l, 5, Feedback::Ok(RTT)).await;
        assert_eq!(l.stats().decreases, 0);
        // Three times slower: congestion.
        rounds(&l, 1, Feedback::Ok(RTT * 3)).await;
        assert!(l.limit() < 4, "{:?}", l.stats());
    }

    #[tokio::test]
    async fn neutral_answers_leave_the_limit_alone() {
        let l = lim(3);
        rounds(&l, 5, Feedback::Neutral).await;
        assert_eq!(l.stats().limit, 3.0);
        drop(l.acquire(1).await);
        assert_eq!(l.stats().in_flight, 0);
    }

    #[tokio::test]
    async fn waiters_are_served_in_order_and_a_dropped_waiter_gives_back() {
        let l = lim(1);
        let first = l.acquire(1).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..3 {
            let (l, order) = (l.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let p = l.acquire(1).await;
                order.lock().unwrap().push(i);
                tokio::time::sleep(Duration::from_millis(5)).await;
                p.done(Feedback::Neutral);
            }));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // A waiter that gives up does not keep a slot.
        let gave_up = tokio::time::timeout(Duration::from_millis(10), l.acquire(1)).await;
        assert!(gave_up.is_err());
        first.done(Feedback::Neutral);
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec![0, 1, 2]);
        assert_eq!(l.stats().in_flight, 0);
        assert_eq!(l.acquire(1).await.slots(), 1);
    }
}
