//! Google's request quotas, kept by the client: sliding windows ("at most
//! n requests in any minute"), the rule Google applies, one per person and
//! one for the project. A request takes a slot in both at the same instant
//! or waits, so no slot is held while waiting for the other (a slot taken
//! long before the request is sent would let the service count it in a
//! later window than the client did). Within the quota a person may burst
//! as fast as their requests in flight allow, as Google permits; the window
//! is 2% longer than Google's so a request that reaches Google a little
//! after it was counted here still falls inside the client's window.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::graph::RequestRate;

pub(crate) struct Window {
    requests: usize,
    window: Duration,
    log: Mutex<VecDeque<Instant>>,
}

impl Window {
    pub fn new(rate: RequestRate) -> Self {
        Self {
            requests: rate.requests.max(1) as usize,
            window: rate.window + rate.window / 50,
            log: Mutex::new(VecDeque::new()),
        }
    }

    /// How long until one more request fits (zero: now), dropping expired entries.
    fn wait(&self, log: &mut VecDeque<Instant>, now: Instant) -> Duration {
        while log
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            log.pop_front();
        }
        if log.len() < self.requests {
            return Duration::ZERO;
        }
        let oldest = log[log.len() - self.requests];
        (oldest + self.window).saturating_duration_since(now) + Duration::from_millis(1)
    }
}

/// Waits until one more request fits in every window of `windows`, then
/// records it in all of them at once.
pub(crate) async fn take(windows: &[&Window]) {
    loop {
        let wait = {
            let mut logs: Vec<_> = windows
                .iter()
                .map(|w| w.log.lock().unwrap_or_else(|e| e.into_inner()))
                .collect();
            let now = Instant::now();
            let wait = windows
                .iter()
                .zip(logs.iter_mut())
                .map(|(w, log)| w.wait(log, now))
                .max()
                .unwrap_or_default();
            if wait.is_zero() {
                for log in &mut logs {
                    log.push_back(now);
                }
                return;
            }
            wait
        };
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn never_more_than_the_quota_in_a_window_and_bursts_within_it() {
        let rate = |n| RequestRate {
            requests: n,
            window: Duration::from_millis(300),
        };
        let (user, project) = (Window::new(rate(5)), Window::new(rate(8)));
        let start = Instant::now();
        for _ in 0..5 {
            take(&[&user, &project]).await;
        }
        assert!(
            start.elapsed() < Duration::from_millis(50),
            "a burst within the quota"
        );
        take(&[&user, &project]).await;
        assert!(
            start.elapsed() >= Duration::from_millis(306),
            "{:?}",
            start.elapsed()
        );
        // The project window holds 6 of 8; another person gets 2 more at once, then waits.
        let other = Window::new(rate(5));
        let t = Instant::now();
        take(&[&other, &project]).await;
        take(&[&other, &project]).await;
        assert!(t.elapsed() < Duration::from_millis(50));
    }
}
