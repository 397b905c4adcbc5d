//! The plan: what each target must create, update and delete so that it holds
//! exactly what the timetable says — and nothing else changes.
//!
//! [`Planner`] merges the desired entries (from [`Attendance`], ordered by
//! person id then event id) with the ledger rows of one target, fed in the
//! same order, in a single pass. Nothing is buffered per ledger row, so a
//! 5-million row ledger costs time proportional to reading it and no memory.
//!
//! Rules, in order, for a ledger row:
//! - its person or event was set aside as a bad row → left alone;
//! - its person is outside the pilot → left alone;
//! - it is still desired → unchanged, or update when the fingerprint differs
//!   (if either the old or the new start is in the window);
//! - otherwise → delete, if its recorded start is in the window.
//!
//! A desired entry without a ledger row is created when its start is in the
//! window and its person is in scope.

use std::cmp::Ordering;
use std::collections::HashSet;

use serde::Serialize;

use crate::expand::Attendance;
use crate::fingerprint::Fingerprints;
use crate::timetable::Timetable;
use crate::window::Window;

/// One ledger row as the store reads it.
#[derive(Debug, Clone, Copy)]
pub struct LedgerRow<'a> {
    pub person_id: &'a str,
    pub event_id: &'a str,
    pub fingerprint: u64,
    /// Start of the event as last written, Unix seconds.
    pub starts_at: i64,
    /// The calendar copy was deleted by hand and the profile respects that.
    pub gone: bool,
}

/// Person `person`'s copy of event `event` (indices into the timetable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntryRef {
    pub person: u32,
    pub event: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delete {
    pub person_id: String,
    pub event_id: String,
}

/// Counts of a plan, as printed by `plan --format json`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub create: u64,
    pub update: u64,
    pub delete: u64,
    pub unchanged: u64,
    /// Ledger rows deliberately not touched (outside the window or pilot, bad source row).
    pub left_alone: u64,
}

impl Counts {
    pub fn add(&mut self, o: &Counts) {
        self.create += o.create;
        self.update += o.update;
        self.delete += o.delete;
        self.unchanged += o.unchanged;
        self.left_alone += o.left_alone;
    }
}

/// The plan for one target.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub creates: Vec<EntryRef>,
    pub updates: Vec<EntryRef>,
    pub deletes: Vec<Delete>,
    pub unchanged: u64,
    pub left_alone: u64,
    /// Ledger rows read (the target's synced events).
    pub ledger_rows: u64,
}

impl Plan {
    pub fn counts(&self) -> Counts {
        Counts {
            create: self.creates.len() as u64,
            update: self.updates.len() as u64,
            delete: self.deletes.len() as u64,
            unchanged: self.unchanged,
            left_alone: self.left_alone,
        }
    }
}

/// Everything the planner needs to know about what calendars must hold.
pub struct Desired<'a> {
    pub tt: &'a Timetable,
    pub attendance: &'a Attendance,
    pub fingerprints: &'a Fingerprints,
    pub window: Window,
    /// When set, only these person ids are synced; all others are left alone.
    pub pilot: Option<&'a HashSet<String>>,
}

impl Desired<'_> {
    fn in_scope(&self, person_id: &str) -> bool {
        self.pilot.is_none_or(|p| p.contains(person_id))
    }
}

/// Merges one target's ledger with the desired entries.
pub struct Planner<'a> {
    d: &'a Desired<'a>,
    /// Cursor over desired entries: person, position within their list.
    person: u32,
    pos: usize,
    plan: Plan,
    last_key: Option<(String, String)>,
    out_of_order: bool,
}

impl<'a> Planner<'a> {
    pub fn new(d: &'a Desired<'a>) -> Planner<'a> {
        let mut p = Planner {
            d,
            person: 0,
            pos: 0,
            plan: Plan::default(),
            last_key: None,
            out_of_order: false,
        };
        p.settle();
        p
    }

    /// Moves the cursor past people with no (more) entries.
    fn settle(&mut self) {
        let n = self.d.attendance.people() as u32;
        while self.person < n && self.pos >= self.d.attendance.of(self.person).len() {
            self.person += 1;
            self.pos = 0;
        }
    }

    fn peek(&self) -> Option<EntryRef> {
        let list = self.d.attendance.of(self.person);
        list.get(self.pos).map(|&event| EntryRef {
            person: self.person,
            event,
        })
    }

    fn advance(&mut self) {
        self.pos += 1;
        self.settle();
    }

    fn cmp(&self, e: EntryRef, row: &LedgerRow<'_>) -> Ordering {
        let tt = self.d.tt;
        tt.people[e.person as usize]
            .id
            .as_str()
            .cmp(row.person_id)
            .then_with(|| tt.events[e.event as usize].id.as_str().cmp(row.event_id))
    }

    /// A desired entry with no ledger row.
    fn unmatched_desired(&mut self, e: EntryRef) {
        let tt = self.d.tt;
        let ev = &tt.events[e.event as usize];
        if self.d.window.contains(ev.start) && self.d.in_scope(&tt.people[e.person as usize].id) {
            self.plan.creates.push(e);
        }
    }

    /// Feeds the next ledger row; rows must come ordered by (person_id, event_id) as bytes.
    pub fn feed(&mut self, row: LedgerRow<'_>) {
        self.plan.ledger_rows += 1;
        if let Some((lp, le)) = &self.last_key {
            if (lp.as_str(), le.as_str()) >= (row.person_id, row.event_id) {
                self.out_of_order = true;
            }
        }
        if self.plan.ledger_rows % 1024 == 1 || self.out_of_order {
            self.last_key = Some((row.person_id.to_string(), row.event_id.to_string()));
        }
        while let Some(e) = self.peek() {
            match self.cmp(e, &row) {
                Ordering::Less => {
                    self.unmatched_desired(e);
                    self.advance();
                }
                Ordering::Equal => {
                    self.advance();
                    self.matched(e, &row);
                    return;
                }
                Ordering::Greater => break,
            }
        }
        self.unmatched_ledger(&row);
    }

    fn matched(&mut self, e: EntryRef, row: &LedgerRow<'_>) {
        let d = self.d;
        let ev = &d.tt.events[e.event as usize];
        if !d.in_scope(row.person_id)
            || !(d.window.contains(ev.start) || d.window.contains_secs(row.starts_at))
        {
            self.plan.left_alone += 1;
            return;
        }
        let fp = d.fingerprints.entry(d.tt, e.person, e.event);
        if fp == row.fingerprint {
            self.plan.unchanged += 1;
        } else if row.gone {
            self.plan.creates.push(e);
        } else {
            self.plan.updates.push(e);
        }
    }

    fn unmatched_ledger(&mut self, row: &LedgerRow<'_>) {
        let d = self.d;
        let tt = d.tt;
        if tt.quarantined_people.contains(row.person_id)
            || tt.quarantined_events.contains(row.event_id)
            || !d.in_scope(row.person_id)
            || !d.window.contains_secs(row.starts_at)
        {
            self.plan.left_alone += 1;
            return;
        }
        self.plan.deletes.push(Delete {
            person_id: row.person_id.to_string(),
            event_id: row.event_id.to_string(),
        });
    }

    /// Ends the merge. Fails if the ledger rows did not come in order, which
    /// would make the plan wrong (a store bug, never a data problem).
    pub fn finish(mut self) -> Result<Plan, PlanError> {
        if self.out_of_order {
            return Err(PlanError::LedgerOrder);
        }
        while let Some(e) = self.peek() {
            self.unmatched_desired(e);
            self.advance();
        }
        Ok(self.plan)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("the state store returned ledger rows out of (person_id, event_id) byte order; the plan was not used (check the database collation)")]
    LedgerOrder,
}

/// Plans against a ledger given as a slice (tests, small targets).
pub fn plan_from_rows<'r>(
    d: &Desired<'_>,
    rows: impl IntoIterator<Item = LedgerRow<'r>>,
) -> Result<Plan, PlanError> {
    let mut p = Planner::new(d);
    for r in rows {
        p.feed(r);
    }
    p.finish()
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
