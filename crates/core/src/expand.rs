//! Attendance expansion: who holds which event.
//!
//! A person holds an event when attached directly (`event_people`) or
//! through a group (`event_groups` × `group_members`); reaching it twice
//! gives one entry. The result is in compressed-row form ordered by person
//! then event — the ledger's order — at 4 bytes an entry, so a 5-million
//! entry timetable costs about 20 MB here.

use crate::timetable::Timetable;

/// Per-person lists of event indices, both ascending.
#[derive(Debug, Clone, Default)]
pub struct Attendance {
    /// `events[offsets[p]..offsets[p + 1]]` are person `p`'s events.
    offsets: Vec<u32>,
    events: Vec<u32>,
}

impl Attendance {
    /// Expands `tt`, keeping only events for which `include(event)` holds.
    pub fn expand(tt: &Timetable, include: impl Fn(u32) -> bool) -> Attendance {
        let n_people = tt.people.len();
        let mut counts = vec![0u32; n_people + 1];
        visit(tt, &include, |p, _| counts[p as usize + 1] += 1);
        for i in 1..counts.len() {
            counts[i] += counts[i - 1];
        }
        let offsets = counts.clone();
        let total = *offsets.last().unwrap_or(&0) as usize;
        let mut events = vec![0u32; total];
        let mut cursor = counts;
        visit(tt, &include, |p, e| {
            let slot = &mut cursor[p as usize];
            events[*slot as usize] = e;
            *slot += 1;
        });
        Attendance { offsets, events }
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    pub fn people(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// Person `p`'s events, ascending.
    pub fn of(&self, p: u32) -> &[u32] {
        let p = p as usize;
        if p + 1 >= self.offsets.len() {
            return &[];
        }
        &self.events[self.offsets[p] as usize..self.offsets[p + 1] as usize]
    }

    /// Every `(person, event)` pair in ledger order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        (0..self.people() as u32).flat_map(move |p| self.of(p).iter().map(move |&e| (p, e)))
    }
}

/// Calls `f(person, event)` once per distinct pair, events in ascending order.
fn visit(tt: &Timetable, include: &impl Fn(u32) -> bool, mut f: impl FnMut(u32, u32)) {
    let mut stamp = vec![u32::MAX; tt.people.len()];
    for (ei, ev) in tt.events.iter().enumerate() {
        let ei = ei as u32;
        if !include(ei) {
            continue;
        }
        for a in &ev.people {
            if stamp[a.person as usize] != ei {
                stamp[a.person as usize] = ei;
                f(a.person, ei);
            }
        }
        for &g in &ev.groups {
            for &p in &tt.groups[g as usize].members {
                if stamp[p as usize] != ei {
                    stamp[p as usize] = ei;
                    f(p, ei);
                }
            }
        }
    }
}
