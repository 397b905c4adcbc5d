//! Request-rate limits kept on the client side, so edusync stays inside
//! Microsoft's published limits instead of running into them: a sliding
//! window log ("at most `requests` in any `window`"), the same rule the
//! service applies. One for the whole app (Graph's global limit) and one per
//! mailbox (Outlook's 10,000 requests per 10 minutes).
//!
//! Requests inside a `$batch` count one each, as the service counts them.
//! The service sees a request a little after the client sent it (the later
//! requests of a batch wait for earlier ones, and a busy service admits
//! late), so a budget spent in one burst at the start of a window comes
//! back as 429s at the start of the next. For the app's short window
//! (10 s, where that lag matters) the client therefore also paces:
//! requests are spread evenly at `requests / window` (with a burst of 1% of
//! the budget, at least one batch), and its window is 2% longer than the
//! service's. The mailbox window (10 minutes) is not paced: a mailbox may
//! spend its budget as fast as its 4 requests in flight allow.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::RequestRate;

pub(crate) struct SlidingWindow {
    requests: u64,
    window: Duration,
    /// (when, how many) in send order, and their sum.
    log: Mutex<(VecDeque<(Instant, u32)>, u64)>,
    /// Pacing (GCRA): time per request, burst allowance, theoretical arrival time.
    interval: Duration,
    burst: Duration,
    tat: Mutex<Option<Instant>>,
    paced: bool,
}

impl SlidingWindow {
    pub fn new(rate: RequestRate, paced: bool) -> Self {
        let requests = u64::from(rate.requests.max(1));
        let window = rate.window + rate.window / 50;
        let interval = window / requests.min(u64::from(u32::MAX)) as u32;
        let burst_requests = (requests / 100).max(20).min(requests);
        Self {
            requests,
            window,
            log: Mutex::new((VecDeque::new(), 0)),
            interval,
            burst: interval * burst_requests as u32,
            tat: Mutex::new(None),
            paced,
        }
    }

    /// Waits for the pacer to allow `n` requests now.
    async fn pace(&self, n: u64) {
        loop {
            let wait = {
                let mut tat = self.tat.lock().unwrap_or_else(|e| e.into_inner());
                let now = Instant::now();
                let t = tat.map_or(now, |t| t.max(now));
                if t <= now + self.burst {
                    *tat = Some(t + self.interval * n as u32);
                    return;
                }
                t - self.burst - now
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// Waits until `n` more requests fit in the window, then records them.
    pub async fn take(&self, n: u32) {
        let n = u64::from(n.max(1)).min(self.requests);
        if self.paced {
            self.pace(n).await;
        }
        loop {
            let wait = {
                let mut g = self.log.lock().unwrap_or_else(|e| e.into_inner());
                let (log, sum) = &mut *g;
                let now = Instant::now();
                while let Some(&(t, c)) = log.front() {
                    if now.duration_since(t) < self.window {
                        break;
                    }
                    log.pop_front();
                    *sum -= u64::from(c);
                }
                if *sum + n <= self.requests {
                    log.push_back((now, n as u32));
                    *sum += n;
                    return;
                }
                // The moment enough of the oldest entries leave the window.
                let mut need = *sum + n - self.requests;
                let mut at = now;
                for &(t, c) in log.iter() {
                    at = t;
                    if u64::from(c) >= need {
                        break;
                    }
                    need -= u64::from(c);
                }
                (at + self.window).saturating_duration_since(now) + Duration::from_millis(1)
            };
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn never_more_than_the_limit_in_a_window() {
        let w = SlidingWindow::new(
            RequestRate {
                requests: 10,
                window: Duration::from_millis(200),
            },
            true,
        );
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
}
