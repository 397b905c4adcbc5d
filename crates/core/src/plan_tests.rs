use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::model::*;
use crate::timetable::{Rules, Timetable};

fn build(people: usize, events: &[(i64, Vec<usize>)]) -> Timetable {
    let mut raw = RawSnapshot {
        prefix: "tt_".into(),
        ..Default::default()
    };
    for p in 0..people {
        raw.people.push(RawPerson {
            person_id: Some(format!("P{p}")),
            email: Some(format!("p{p}@example.ac.uk")),
            ..Default::default()
        });
    }
    for (i, (start, who)) in events.iter().enumerate() {
        let start = jiff::Timestamp::from_second(*start).unwrap();
        raw.events.push(RawEvent {
            event_id: Some(format!("E{i}")),
            title: Some(format!("Event {i}")),
            starts_at: Some(start.to_string()),
            ends_at: Some(start.to_string()),
            ..Default::default()
        });
        for &p in who {
            raw.event_people.push(RawEventPerson {
                event_id: Some(format!("E{i}")),
                person_id: Some(format!("P{}", p % people.max(1))),
                ..Default::default()
            });
        }
    }
    Timetable::build(
        raw,
        &Rules {
            timezone: jiff::tz::TimeZone::UTC,
            max_event_hours: 24,
        },
    )
}

type Ledger = BTreeMap<(String, String), (u64, i64)>;

fn run(tt: &Timetable, ledger: &Ledger, window: Window) -> Plan {
    let att = Attendance::expand(tt, |_| true);
    let fps = Fingerprints::compute(tt, 7);
    let d = Desired {
        tt,
        attendance: &att,
        fingerprints: &fps,
        window,
        pilot: None,
    };
    plan_from_rows(
        &d,
        ledger.iter().map(|((p, e), (fp, s))| LedgerRow {
            person_id: p,
            event_id: e,
            fingerprint: *fp,
            starts_at: *s,
            gone: false,
        }),
    )
    .unwrap()
}

fn desired(tt: &Timetable) -> Ledger {
    let att = Attendance::expand(tt, |_| true);
    let fps = Fingerprints::compute(tt, 7);
    att.iter()
        .map(|(p, e)| {
            (
                (
                    tt.people[p as usize].id.clone(),
                    tt.events[e as usize].id.clone(),
                ),
                (fps.entry(tt, p, e), tt.events[e as usize].start.as_second()),
            )
        })
        .collect()
}

fn apply(tt: &Timetable, plan: &Plan, ledger: &Ledger) -> Ledger {
    let want = desired(tt);
    let mut out = ledger.clone();
    for d in &plan.deletes {
        assert!(out
            .remove(&(d.person_id.clone(), d.event_id.clone()))
            .is_some());
    }
    for e in plan.creates.iter().chain(&plan.updates) {
        let k = (
            tt.people[e.person as usize].id.clone(),
            tt.events[e.event as usize].id.clone(),
        );
        out.insert(k.clone(), want[&k]);
    }
    out
}

const DAY: i64 = 86_400;

/// People count, events (start, attendees), ledger rows (person, event, keep fingerprint).
type World = (usize, Vec<(i64, Vec<usize>)>, Vec<(usize, usize, bool)>);

fn arb_world() -> impl Strategy<Value = World> {
    (1usize..8).prop_flat_map(|people| {
        (
            Just(people),
            proptest::collection::vec(
                (0i64..20, proptest::collection::vec(0usize..8, 0..5)),
                0..12,
            )
            .prop_map(|v| v.into_iter().map(|(d, w)| (d * DAY, w)).collect()),
            proptest::collection::vec((0usize..8, 0usize..14, any::<bool>()), 0..30),
        )
    })
}

proptest! {
    /// apply(plan(desired, ledger), ledger) == desired, for any ledger.
    #[test]
    fn applying_the_plan_converges((people, events, ledger_spec) in arb_world()) {
        let tt = build(people, &events);
        let want = desired(&tt);
        let mut ledger = Ledger::new();
        for (p, e, keep_fp) in ledger_spec {
            let k = (format!("P{p}"), format!("E{e}"));
            let row = match want.get(&k) { Some(w) if keep_fp => *w, _ => (42, 5 * DAY) };
            ledger.insert(k, row);
        }
        let plan = run(&tt, &ledger, Window::all());
        let after = apply(&tt, &plan, &ledger);
        prop_assert_eq!(&after, &want);
        // And a second plan has nothing left to do.
        let again = run(&tt, &after, Window::all());
        prop_assert_eq!(again.counts(), Counts { unchanged: want.len() as u64, ..Counts::default() });
    }

    /// Ledger rows outside the window are never deleted; entries outside it never created.
    #[test]
    fn the_window_is_left_alone((people, events, ledger_spec) in arb_world()) {
        let tt = build(people, &events);
        let mut ledger = Ledger::new();
        for (p, e, _) in ledger_spec {
            ledger.insert((format!("P{p}"), format!("E{e}")), (1, (e as i64) * DAY));
        }
        let window = Window {
            start: jiff::Timestamp::from_second(5 * DAY).unwrap(),
            end: jiff::Timestamp::from_second(10 * DAY).unwrap(),
        };
        let plan = run(&tt, &ledger, window);
        for d in &plan.deletes {
            let s = ledger[&(d.person_id.clone(), d.event_id.clone())].1;
            prop_assert!(window.contains_secs(s));
        }
        for c in &plan.creates {
            prop_assert!(window.contains(tt.events[c.event as usize].start));
        }
    }
}

#[test]
fn quarantined_rows_and_pilot_are_left_alone() {
    let tt = build(2, &[(0, vec![0, 1])]);
    let mut tt2 = tt.clone();
    tt2.quarantined_events.insert("GONE1".into());
    let mut ledger = Ledger::new();
    ledger.insert(("P0".into(), "GONE1".into()), (1, 0));
    ledger.insert(("P1".into(), "GONE2".into()), (1, 0));
    let plan = run(&tt2, &ledger, Window::all());
    assert_eq!(
        plan.deletes,
        vec![Delete {
            person_id: "P1".into(),
            event_id: "GONE2".into()
        }]
    );
    assert_eq!(plan.left_alone, 1);

    let att = Attendance::expand(&tt, |_| true);
    let fps = Fingerprints::compute(&tt, 7);
    let pilot: HashSet<String> = ["P1".to_string()].into();
    let d = Desired {
        tt: &tt,
        attendance: &att,
        fingerprints: &fps,
        window: Window::all(),
        pilot: Some(&pilot),
    };
    let plan = plan_from_rows(
        &d,
        [LedgerRow {
            person_id: "P0",
            event_id: "OLD",
            fingerprint: 1,
            starts_at: 0,
            gone: false,
        }],
    )
    .unwrap();
    assert_eq!(plan.creates.len(), 1, "only the pilot person gets events");
    assert!(
        plan.deletes.is_empty(),
        "people outside the pilot are left alone"
    );
}

#[test]
fn out_of_order_ledger_is_refused() {
    let tt = build(1, &[]);
    let att = Attendance::expand(&tt, |_| true);
    let fps = Fingerprints::compute(&tt, 7);
    let d = Desired {
        tt: &tt,
        attendance: &att,
        fingerprints: &fps,
        window: Window::all(),
        pilot: None,
    };
    let rows = [
        LedgerRow {
            person_id: "P2",
            event_id: "E1",
            fingerprint: 1,
            starts_at: 0,
            gone: false,
        },
        LedgerRow {
            person_id: "P1",
            event_id: "E1",
            fingerprint: 1,
            starts_at: 0,
            gone: false,
        },
    ];
    assert!(plan_from_rows(&d, rows).is_err());
}
