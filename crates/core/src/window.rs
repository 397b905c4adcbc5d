//! The sync window: only events starting in `[now - past_days, now + future_days)`
//! are synced; calendar events outside it are left alone, never deleted.

use jiff::{SignedDuration, Timestamp};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: Timestamp,
    pub end: Timestamp,
}

impl Window {
    pub fn around(now: Timestamp, past_days: u32, future_days: u32) -> Window {
        let day = SignedDuration::from_hours(24);
        Window {
            start: now.saturating_sub(day * past_days as i32).unwrap_or(now),
            end: now.saturating_add(day * future_days as i32).unwrap_or(now),
        }
    }

    /// A window that holds every instant (for `cleardown` and tests).
    pub fn all() -> Window {
        Window {
            start: Timestamp::MIN,
            end: Timestamp::MAX,
        }
    }

    pub fn contains(&self, t: Timestamp) -> bool {
        self.start <= t && t < self.end
    }

    /// Same as [`Window::contains`] for a time stored as Unix seconds.
    pub fn contains_secs(&self, secs: i64) -> bool {
        self.start.as_second() <= secs && secs < self.end.as_second()
    }
}
