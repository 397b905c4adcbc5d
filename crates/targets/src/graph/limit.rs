//! Request-rate limits kept on the client side, so edusync stays inside
//! Microsoft's published limits instead of running into them: a sliding
//! window log ("at most `requests` in any `window`"), the same rule the
//! service applies. One for the whole app (Graph's global limit) and one per
//! mailbox (Outlook's 10,000 requests per 10 minutes).
//!
//! Requests inside a `$batch` count one each, as the service counts them.
//! The service sees a request a little after the client sent it (the later
//! requests of a batch wait for earlier ones), so the client's window is
//! 2% longer than the service's: the margin that keeps the two views apart
//! from turning into 429s.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::RequestRate;

pub(crate) struct SlidingWindow {
    requests: u64,
    window: Duration,
    /// (when, how many) in send order, and their sum.
    log: Mutex<(VecDeque<(Instant, u32)>, u64)>,
}

impl SlidingWindow {
    pub fn new(rate: RequestRate) -> Self {
        Self {
            requests: u64::from(rate.requests.max(1)),
            window: rate.window + rate.window / 50,
            log: Mutex::new((VecDeque::new(), 0)),
        }
    }

    /// Waits until `n` more requests fit in the window, then records them.
    pub async fn take(&self, n: u32) {
        let n = u64::from(n.max(1)).min(self.requests);
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
        let w = SlidingWindow::new(RequestRate {
            requests: 10,
            window: Duration::from_millis(200),
        });
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
