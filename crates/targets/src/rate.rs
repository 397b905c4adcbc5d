//! Request-rate limits kept on the client side, so API targets stay inside
//! a service's published quotas instead of running into them: a sliding
//! window log ("at most `requests` in any `window`"), the rule Microsoft
//! Graph and Google both apply. The targets keep one per calendar (Outlook's
//! 10,000 requests per 10 minutes per mailbox, Google's 600 a minute per
//! person) and one for the whole app or project (Graph's 130,000 per 10 s,
//! Google's 10,000 a minute).
//!
//! The service sees a request a little after the client counted it, so
//! every window here is 2% longer than the service's. Two ways to take a
//! slot:
//!
//! * [`SlidingWindow::take`] (Graph): the caller reserves the first moment
//!   its `n` requests fit after every earlier reservation and sleeps once
//!   until then, so waiters never wake each other in vain. Graph takes its
//!   mailbox window, then its app window.
//! * [`take_all`] (Google): one slot in several windows at the same
//!   instant, or none: while any of them is full the caller waits without
//!   holding a slot in the others, so a person waiting for their own quota
//!   never holds back someone else's share of the project's.
//!
//! A window may also **pace** ([`SlidingWindow::paced`]): requests spread
//! evenly at `requests / window` (GCRA, with a burst of 1% of the budget,
//! at least 20), so a budget spent in one burst at the start of a short
//! window does not come back as 429s at the start of the next (Graph's
//! 10-second app window, where the service's admission lag matters). An
//! unpaced window may be spent as fast as the requests in flight allow, as
//! Outlook's mailbox window and Google's quotas permit.
//!
//! [`Hold`] is the other half of staying polite: a calendar held back
//! until an instant (Graph's `Retry-After`, Google's backoff after a
//! rate-limit answer), which only ever lengthens.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::lock;

/// At most `requests` in any sliding `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestRate {
    pub requests: u32,
    pub window: Duration,
}

/// Slots taken: (when, how many) in time order (reservations may lie in
/// the future), and their sum.
#[derive(Default)]
struct Log {
    entries: VecDeque<(Instant, u32)>,
    sum: u64,
}

/// GCRA: time per request, burst allowance, theoretical arrival time.
struct Pacer {
    interval: Duration,
    burst: Duration,
    tat: Mutex<Option<Instant>>,
}

pub struct SlidingWindow {
    requests: u64,
    window: Duration,
    log: Mutex<Log>,
    pacer: Option<Pacer>,
}

impl SlidingWindow {
    /// A window that may be spent in bursts.
    pub fn new(rate: RequestRate) -> Self {
        Self {
            requests: u64::from(rate.requests.max(1)),
            window: rate.window + rate.window / 50,
            log: Mutex::new(Log::default()),
            pacer: None,
        }
    }

    /// A window whose requests are also spread evenly over it.
    pub fn paced(rate: RequestRate) -> Self {
        let mut w = Self::new(rate);
        let interval = w.window / w.requests.min(u64::from(u32::MAX)) as u32;
        let burst = (w.requests / 100).max(20).min(w.requests);
        w.pacer = Some(Pacer {
            interval,
            burst: interval * burst as u32,
            tat: Mutex::new(None),
        });
        w
    }

    /// Waits until the pacer (if any) allows `n` requests. Each caller
    /// reserves its own slot (the theoretical arrival time moves on at
    /// once) and sleeps exactly until it.
    async fn pace(&self, n: u64) {
        let Some(p) = &self.pacer else { return };
        let wait = {
            let mut tat = lock(&p.tat);
            let now = Instant::now();
            let t = tat.map_or(now, |t| t.max(now));
            *tat = Some(t + p.interval * n as u32);
            (t > now + p.burst).then(|| t - p.burst - now)
        };
        if let Some(wait) = wait {
            tokio::time::sleep(wait).await;
        }
    }

    fn expire(&self, log: &mut Log, now: Instant) {
        while let Some(&(t, c)) = log.entries.front() {
            if t + self.window > now {
                break;
            }
            log.entries.pop_front();
            log.sum -= u64::from(c);
        }
    }

    /// Waits until `n` more requests fit (paced first, when the window
    /// paces), reserving the first moment they fit after every earlier
    /// reservation and sleeping once until then.
    pub async fn take(&self, n: u32) {
        let n = u64::from(n.max(1)).min(self.requests);
        self.pace(n).await;
        let at = {
            let mut log = lock(&self.log);
            let now = Instant::now();
            self.expire(&mut log, now);
            let mut at = log.entries.back().map_or(now, |&(t, _)| t.max(now));
            let mut counted = log.sum;
            for &(t, c) in &log.entries {
                if t + self.window <= at {
                    counted -= u64::from(c);
                    continue;
                }
                if counted + n <= self.requests {
                    break;
                }
                at = t + self.window;
                counted -= u64::from(c);
            }
            log.entries.push_back((at, n as u32));
            log.sum += n;
            at
        };
        let now = Instant::now();
        if at > now {
            tokio::time::sleep(at - now).await;
        }
    }

    /// How long from `now` until `n` more fit, counting every slot taken
    /// in the last window and every reservation ahead (zero: they fit now).
    fn wait_for(&self, log: &Log, n: u64, now: Instant) -> Duration {
        let mut counted = log.sum;
        if counted + n <= self.requests {
            return Duration::ZERO;
        }
        for &(t, c) in &log.entries {
            counted -= u64::from(c);
            if counted + n <= self.requests {
                return (t + self.window).saturating_duration_since(now);
            }
        }
        Duration::ZERO
    }
}

/// Waits until `n` more requests fit in every one of `windows` at the same
/// instant, then records them in all at once; while any window is full no
/// slot is held in the others. Paced windows pace first. Callers must name
/// shared windows in the same order (e.g. a person's, then the project's).
pub async fn take_all(windows: &[&SlidingWindow], n: u32) {
    for w in windows {
        w.pace(u64::from(n.max(1)).min(w.requests)).await;
    }
    loop {
        let wait = {
            let mut logs: Vec<MutexGuard<'_, Log>> = windows.iter().map(|w| lock(&w.log)).collect();
            let now = Instant::now();
            let wait = windows
                .iter()
                .zip(logs.iter_mut())
                .map(|(w, log)| {
                    w.expire(log, now);
                    w.wait_for(log, u64::from(n.max(1)).min(w.requests), now)
                })
                .max()
                .unwrap_or_default();
            if wait.is_zero() {
                for (w, log) in windows.iter().zip(logs.iter_mut()) {
                    let n = u64::from(n.max(1)).min(w.requests);
                    // Before any reservation ahead, keeping the log in time order.
                    let at = log.entries.partition_point(|&(t, _)| t <= now);
                    log.entries.insert(at, (now, n as u32));
                    log.sum += n;
                }
                return;
            }
            wait
        };
        tokio::time::sleep(wait).await;
    }
}

/// One calendar's requests held back until an instant; a shorter hold
/// never cuts a longer one short.
#[derive(Default)]
pub struct Hold {
    until: Mutex<Option<Instant>>,
}

impl Hold {
    /// How long the hold still lasts, if it does.
    pub fn held_for(&self) -> Option<Duration> {
        let now = Instant::now();
        lock(&self.until).and_then(|t| (t > now).then(|| t - now))
    }

    /// Holds for `d` from now (or longer, if already held longer).
    pub fn hold(&self, d: Duration) {
        let until = Instant::now() + d;
        let mut h = lock(&self.until);
        *h = Some(h.map_or(until, |t| t.max(until)));
    }

    /// Waits until no hold is left (one made while waiting included).
    pub async fn wait(&self) {
        while let Some(left) = self.held_for() {
            tokio::time::sleep(left).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn rate(requests: u32, ms: u64) -> RequestRate {
        RequestRate {
            requests,
            window: Duration::from_millis(ms),
        }
    }

    /// The instants `w` counted requests at (reservations included), one per request.
    fn counted(w: &SlidingWindow) -> Vec<Instant> {
        let log = lock(&w.log);
        log.entries
            .iter()
            .flat_map(|&(t, n)| std::iter::repeat_n(t, n as usize))
            .collect()
    }

    /// The most of `done` (sorted) that fall in any span of `window`.
    fn most_in_any(done: &[Instant], window: Duration) -> usize {
        (0..done.len())
            .map(|i| {
                done[i..]
                    .iter()
                    .take_while(|u| u.duration_since(done[i]) < window)
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    #[tokio::test]
    async fn a_hold_only_lengthens_and_is_waited_out() {
        let h = Hold::default();
        assert!(h.held_for().is_none());
        h.hold(Duration::from_millis(150));
        h.hold(Duration::from_millis(20));
        assert!(h.held_for().unwrap() > Duration::from_millis(100));
        let t = Instant::now();
        h.wait().await;
        assert!(
            t.elapsed() >= Duration::from_millis(120),
            "{:?}",
            t.elapsed()
        );
        assert!(h.held_for().is_none());
    }

    #[tokio::test]
    async fn paced_never_more_than_the_limit_in_a_window() {
        let w = SlidingWindow::paced(rate(10, 200));
        let start = Instant::now();
        for _ in 0..5 {
            w.take(4).await;
        }
        // 20 requests at 10 per ~204 ms: the last batch waits for two windows.
        assert!(
            start.elapsed() >= Duration::from_millis(400),
            "{:?}",
            start.elapsed()
        );
        assert!(start.elapsed() < Duration::from_millis(1500));
    }

    #[tokio::test]
    async fn concurrent_waiters_each_get_their_own_slot() {
        let w = Arc::new(SlidingWindow::new(rate(10, 100)));
        let start = Instant::now();
        let tasks: Vec<_> = (0..40)
            .map(|_| {
                let w = w.clone();
                tokio::spawn(async move {
                    w.take(1).await;
                    Instant::now()
                })
            })
            .collect();
        let mut done = Vec::new();
        for t in tasks {
            done.push(t.await.unwrap());
        }
        done.sort();
        // Never more than 10 counted in any window (102 ms, the client's
        // margin included; counted, not woken: a busy host wakes late).
        let slots = counted(&w);
        assert_eq!(slots.len(), 40);
        let most = most_in_any(&slots, Duration::from_millis(102));
        assert!(most <= 10, "{most} requests within one window");
        // Nobody goes before their slot: three windows of waiting.
        for (slot, went) in slots.iter().zip(&done) {
            assert!(went >= slot);
        }
        let took = done.last().unwrap().duration_since(start);
        assert!(took >= Duration::from_millis(300), "{took:?}");
    }

    #[tokio::test]
    async fn one_slot_in_both_windows_bursting_within_the_quota() {
        let (user, project) = (
            SlidingWindow::new(rate(5, 300)),
            SlidingWindow::new(rate(8, 300)),
        );
        let start = Instant::now();
        for _ in 0..5 {
            take_all(&[&user, &project], 1).await;
        }
        assert!(
            start.elapsed() < Duration::from_millis(50),
            "a burst within the quota"
        );
        take_all(&[&user, &project], 1).await;
        assert!(
            start.elapsed() >= Duration::from_millis(306),
            "{:?}",
            start.elapsed()
        );
        // The project window holds 6 of 8; another person gets 2 more at once.
        let other = SlidingWindow::new(rate(5, 300));
        let t = Instant::now();
        take_all(&[&other, &project], 1).await;
        take_all(&[&other, &project], 1).await;
        assert!(t.elapsed() < Duration::from_millis(50));
    }

    #[tokio::test]
    async fn a_person_waiting_for_their_quota_holds_no_project_slot() {
        let project = Arc::new(SlidingWindow::new(rate(6, 300)));
        let full = Arc::new(SlidingWindow::new(rate(1, 300)));
        take_all(&[&full, &project], 1).await;
        let first = Instant::now();
        // Waits ~306 ms for its own window, holding nothing meanwhile.
        let waiting = {
            let (full, project) = (full.clone(), project.clone());
            tokio::spawn(async move {
                take_all(&[&full, &project], 1).await;
                Instant::now()
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        let others = SlidingWindow::new(rate(10, 300));
        let t = Instant::now();
        for _ in 0..5 {
            take_all(&[&others, &project], 1).await;
        }
        assert!(
            t.elapsed() < Duration::from_millis(50),
            "the project's 5 free slots went to whoever could use them: {:?}",
            t.elapsed()
        );
        // The waiting person's request now finds the project window full
        // too, and waits for its first slot to come free.
        let went = waiting.await.unwrap();
        assert!(went.duration_since(first) >= Duration::from_millis(300));
        // The first slot has left the window: the other five and this one.
        let slots = counted(&project);
        assert_eq!(slots.len(), 6);
        let most = most_in_any(&slots, Duration::from_millis(306));
        assert!(most <= 6, "{most} in one project window of 6");
    }
}
