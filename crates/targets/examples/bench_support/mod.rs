//! What the API targets' load benchmarks (`graph_bench`, `google_bench`)
//! share: the events they write, CPU clocks and medians.

#![allow(dead_code)] // each benchmark uses its own subset

use std::time::Duration;

use edusync_core::render::RenderedEvent;
use edusync_core::timetable::EventStatus;
use edusync_targets::delivery::{deliver, CalendarWork, DeliveryOptions};
use edusync_targets::{CalendarOp, OpKind, Outcome, Target};

/// The `n`th create for `calendar`: an hour apart from 2030-01-07 09:00 UTC,
/// with a lecture's subject, location and body.
pub fn create(calendar: &str, n: usize) -> CalendarOp {
    let start: jiff::Timestamp = "2030-01-07T09:00:00Z".parse().unwrap();
    let start = start + jiff::SignedDuration::from_hours(n as i64);
    let event_id = format!("E{n:06}");
    CalendarOp {
        kind: OpKind::Create,
        profile: "bench".into(),
        person_id: calendar.into(),
        event_id: event_id.clone(),
        calendar: calendar.into(),
        event: Some(RenderedEvent {
            uid: format!("{calendar}-{event_id}"),
            marker: format!("bench/{event_id}"),
            profile: "bench".into(),
            event_id,
            person_id: calendar.into(),
            subject: format!("CHEM1014 Organic Chemistry {n}"),
            location: "Room 1.14, Chemistry Building".into(),
            body: "Module: CHEM1014 Organic Chemistry\nType: Lecture\nStaff: Prof. Xavier\nGroups: CHEM1 Group A".into(),
            categories: vec!["Timetable".into()],
            start,
            end: start + jiff::SignedDuration::from_mins(50),
            timezone: "Europe/London".into(),
            status: EventStatus::Confirmed,
            busy: true,
            geo: None,
        }),
        prior: None,
    }
}

/// User and system CPU time of the calling thread.
pub fn thread_cpu() -> Duration {
    cpu_of("/proc/thread-self/stat")
}

/// User and system CPU time of the whole process.
pub fn process_cpu() -> Duration {
    cpu_of("/proc/self/stat")
}

fn cpu_of(path: &str) -> Duration {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    // Fields after the command name (which is in parentheses): utime is 14th, stime 15th.
    let rest = s.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10) // USER_HZ = 100 on Linux
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Delivers `work` through `target` with the default options; answers
/// (written, failed) op counts.
pub async fn deliver_counting(target: &Target, work: Vec<CalendarWork>) -> (u64, u64) {
    let (mut written, mut failed) = (0u64, 0u64);
    deliver(target, work, &DeliveryOptions::default(), |_, outcomes| {
        for o in outcomes {
            match o {
                Outcome::Written { .. } => written += 1,
                _ => failed += 1,
            }
        }
    })
    .await;
    (written, failed)
}
