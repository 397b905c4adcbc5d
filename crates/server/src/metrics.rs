//! `/metrics` in the Prometheus text format (version 0.0.4), written by hand:
//! cycle durations, cycles and operations by outcome, queue depth,
//! quarantined rows and the last successful cycle, per profile.

use std::fmt::Write as _;

use crate::AppState;

fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

pub fn render(state: &AppState) -> String {
    let mut o = String::with_capacity(4096);
    let slots = &state.scheduler.slots;
    let snaps: Vec<_> = slots
        .iter()
        .map(|s| (s.profile.name.clone(), s.snapshot()))
        .collect();

    o.push_str("# HELP edusync_cycle_duration_seconds Duration of sync cycles.\n# TYPE edusync_cycle_duration_seconds histogram\n");
    for (p, s) in &snaps {
        let p = label(p);
        for (i, b) in crate::scheduler::DURATION_BUCKETS.iter().enumerate() {
            let _ = writeln!(
                o,
                "edusync_cycle_duration_seconds_bucket{{profile=\"{p}\",le=\"{b}\"}} {}",
                s.duration_buckets[i]
            );
        }
        let _ = writeln!(
            o,
            "edusync_cycle_duration_seconds_bucket{{profile=\"{p}\",le=\"+Inf\"}} {c}\n\
edusync_cycle_duration_seconds_sum{{profile=\"{p}\"}} {sum}\n\
edusync_cycle_duration_seconds_count{{profile=\"{p}\"}} {c}",
            c = s.duration_count,
            sum = s.duration_sum
        );
    }
    o.push_str("# HELP edusync_cycles_total Finished sync cycles by status.\n# TYPE edusync_cycles_total counter\n");
    for (p, s) in &snaps {
        for (status, n) in &s.cycles {
            let _ = writeln!(
                o,
                "edusync_cycles_total{{profile=\"{}\",status=\"{}\"}} {n}",
                label(p),
                label(status)
            );
        }
    }
    o.push_str("# HELP edusync_ops_total Calendar operations by kind and outcome (applied, failed, held).\n# TYPE edusync_ops_total counter\n");
    for (p, s) in &snaps {
        for ((kind, outcome), n) in &s.ops {
            let _ = writeln!(
                o,
                "edusync_ops_total{{profile=\"{}\",kind=\"{}\",outcome=\"{}\"}} {n}",
                label(p),
                label(kind),
                label(outcome)
            );
        }
    }
    o.push_str("# HELP edusync_queue_depth Operations in the outbox, by state.\n# TYPE edusync_queue_depth gauge\n");
    for (p, _) in &snaps {
        if let Ok((pending, held)) = state.store.outbox_counts(p) {
            let _ = writeln!(
                o,
                "edusync_queue_depth{{profile=\"{l}\",state=\"pending\"}} {pending}\n\
edusync_queue_depth{{profile=\"{l}\",state=\"held\"}} {held}",
                l = label(p)
            );
        }
    }
    o.push_str("# HELP edusync_quarantined_rows Source rows set aside by the last cycle.\n# TYPE edusync_quarantined_rows gauge\n");
    for (p, s) in &snaps {
        if let Some(r) = &s.last_report {
            let _ = writeln!(
                o,
                "edusync_quarantined_rows{{profile=\"{}\"}} {}",
                label(p),
                r.quarantined
            );
        }
    }
    o.push_str("# HELP edusync_last_success_timestamp_seconds When the last cycle that did not fail finished.\n# TYPE edusync_last_success_timestamp_seconds gauge\n");
    for (p, s) in &snaps {
        if let Some(ms) = s.last_success_ms {
            let _ = writeln!(
                o,
                "edusync_last_success_timestamp_seconds{{profile=\"{}\"}} {}",
                label(p),
                ms as f64 / 1000.0
            );
        }
    }
    o.push_str("# HELP edusync_profile_paused Whether the profile is paused.\n# TYPE edusync_profile_paused gauge\n");
    for (p, s) in &snaps {
        let _ = writeln!(
            o,
            "edusync_profile_paused{{profile=\"{}\"}} {}",
            label(p),
            s.paused as u8
        );
    }
    o
}
