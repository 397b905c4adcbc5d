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
    /// (when, how many) reservations in time order (some may be in the future), and their sum.
    log: Mutex<(VecDeque<(Instant, u32)>, u64)>,
    /// Pacing (GCRA): time per request, burst allowance, theoretical arrival time.
    /// Waiters reserve in order, so each wakes once, when its turn comes.
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

    /// Waits until the pacer allows `n` requests. Each caller reserves its
    /// own slot (GCRA's theoretical arrival time moves on at once) and
    /// sleeps exactly until it, so waiters never wake each other in vain.
    async fn pace(&self, n: u64) {
        let wait = {
            let mut tat = self.tat.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            let t = tat.map_or(now, |t| t.max(now));
            *tat = Some(t + self.interval * n as u32);
            (t > now + self.burst).then(|| t - self.burst - now)
        };
        if let Some(wait) = wait {
            tokio::time::sleep(wait).await;
        }
    }

    /// Waits until `n` more requests fit in the window. The log holds
    /// reservations, possibly in the future, in time order: a caller finds
    /// the first moment its `n` fit after every earlier reservation,
    /// records itself there and sleeps once until then.
    pub async fn take(&self, n: u32) {
        let n = u64::from(n.max(1)).min(self.requests);
        if self.paced {
            self.pace(n).await;
        }
        let at = {
            let mut g = self.log.lock().unwrap_or_else(|e| e.into_inner());
            let (log, sum) = &mut *g;
            let now = Instant::now();
            while let Some(&(t, c)) = log.front() {
                if t + self.window > now {
                    break;
                }
                log.pop_front();
                *sum -= u64::from(c);
            }
            let mut at = log.back().map_or(now, |&(t, _)| t.max(now));
            let mut counted = *sum;
            for &(t, c) in log.iter() {
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
            log.push_back((at, n as u32));
            *sum += n;
            at
        };
        let now = Instant::now();
        if at > now {
            tokio::time::sleep(at - now).await;
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

    #[tokio::test]
    async fn concurrent_waiters_each_get_their_own_slot() {
        let w = std::sync::Arc::new(SlidingWindow::new(
            RequestRate {
                requests: 10,
                window: Duration::from_millis(100),
            },
            false,
        ));
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
        // Never more than 10 in any window (102 ms, the client's margin included).
        for (i, t) in done.iter().enumerate() {
            let in_window = done[i..]
                .iter()
                .take_while(|u| u.duration_since(*t) < Duration::from_millis(102))
                .count();
            assert!(in_window <= 10, "{in_window} requests within one window");
        }
        // 40 requests at 10 per window: three windows of waiting, not much more.
        let took = done.last().unwrap().duration_since(start);
        assert!(took >= Duration::from_millis(300), "{took:?}");
        assert!(took < Duration::from_millis(1500), "{took:?}");
    }
}
