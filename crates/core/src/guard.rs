//! The deletion guard: tells "the timetable really changed" from "the source
//! is broken".
//!
//! A cycle whose plan deletes more than `max_delete_percent` of the profile's
//! synced events, or that finds an empty source where there was data before,
//! applies its creates and updates but holds every delete for an operator.

#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Apply,
    Hold { reason: String },
}

/// What the guard looks at, summed over a profile's targets.
#[derive(Debug, Clone, Copy)]
pub struct GuardInput {
    pub deletes: u64,
    /// Events the profile's targets hold according to the ledger.
    pub synced: u64,
    /// Usable events and people in the source after validation.
    pub source_events: usize,
    pub source_people: usize,
    pub max_delete_percent: f64,
}

pub fn assess(i: GuardInput) -> Verdict {
    if i.synced > 0 && (i.source_events == 0 || i.source_people == 0) {
        let what = if i.source_events == 0 {
            "events"
        } else {
            "people"
        };
        return Verdict::Hold {
            reason: format!(
                "the source has no usable {what} but {} events were synced before; this looks like a failed refresh of the source views",
                i.synced
            ),
        };
    }
    if i.deletes == 0 {
        return Verdict::Apply;
    }
    let share = if i.synced == 0 {
        100.0
    } else {
        i.deletes as f64 * 100.0 / i.synced as f64
    };
    if share > i.max_delete_percent {
        Verdict::Hold {
            reason: format!(
                "the plan deletes {} of {} synced events ({share:.1}%), more than max_delete_percent = {}",
                i.deletes, i.synced, i.max_delete_percent
            ),
        }
    } else {
        Verdict::Apply
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(deletes: u64, synced: u64, events: usize) -> GuardInput {
        GuardInput {
            deletes,
            synced,
            source_events: events,
            source_people: 10,
            max_delete_percent: 10.0,
        }
    }

    #[test]
    fn table() {
        assert_eq!(
            assess(input(0, 0, 0)),
            Verdict::Apply,
            "first run, empty source"
        );
        assert_eq!(
            assess(input(10, 100, 90)),
            Verdict::Apply,
            "exactly at the limit"
        );
        assert!(matches!(assess(input(11, 100, 89)), Verdict::Hold { .. }));
        assert!(
            matches!(assess(input(0, 100, 0)), Verdict::Hold { .. }),
            "empty source"
        );
        assert!(matches!(assess(input(100, 100, 0)), Verdict::Hold { .. }));
        let zero = GuardInput {
            max_delete_percent: 0.0,
            ..input(1, 1000, 999)
        };
        assert!(matches!(assess(zero), Verdict::Hold { .. }));
    }
}
