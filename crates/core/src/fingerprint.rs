//! Content fingerprints: one 64-bit hash per event, one per person, combined
//! per entry, so a cycle can tell "unchanged" without rendering anything.
//!
//! The event fingerprint covers every field the renderer can show (see
//! [`crate::render::EventContext`]); the renderer's own settings enter as a
//! salt, so changing a template or the categories updates every event.

use xxhash_rust::xxh3::{xxh3_64, Xxh3};

use crate::timetable::{Event, Timetable};

struct Fields(Xxh3);

impl Fields {
    fn new(salt: u64) -> Fields {
        let mut h = Xxh3::new();
        h.update(&salt.to_le_bytes());
        Fields(h)
    }
    fn str(&mut self, s: &str) {
        self.0.update(&(s.len() as u64).to_le_bytes());
        self.0.update(s.as_bytes());
    }
    fn opt(&mut self, s: &Option<String>) {
        match s {
            None => self.0.update(&[0]),
            Some(s) => {
                self.0.update(&[1]);
                self.str(s);
            }
        }
    }
    fn num(&mut self, n: i64) {
        self.0.update(&n.to_le_bytes());
    }
    fn float(&mut self, f: Option<f64>) {
        self.num(f.map(|f| f.to_bits() as i64).unwrap_or(i64::MIN));
    }
}

/// Fingerprint of everything about `ev` a rendering can depend on.
pub fn event(tt: &Timetable, ev: &Event, salt: u64) -> u64 {
    let mut f = Fields::new(salt);
    f.str(&ev.id);
    f.str(&ev.title);
    f.opt(&ev.event_type);
    f.opt(&ev.module_code);
    f.opt(&ev.module_name);
    f.opt(&ev.description);
    f.num(ev.start.as_second());
    f.num(ev.end.as_second());
    f.str(&ev.timezone);
    f.str(ev.status.as_str());
    f.num(ev.locations.len() as i64);
    for &l in &ev.locations {
        let l = &tt.locations[l as usize];
        f.str(&l.id);
        f.str(&l.name);
        f.opt(&l.building);
        f.opt(&l.campus);
        f.float(l.latitude);
        f.float(l.longitude);
    }
    f.num(ev.groups.len() as i64);
    for &g in &ev.groups {
        let g = &tt.groups[g as usize];
        f.str(&g.id);
        f.str(&g.name);
        f.opt(&g.kind);
    }
    for h in ev.hosts() {
        let p = &tt.people[h as usize];
        f.str(&p.id);
        f.opt(&p.display_name);
        f.str(&p.email);
    }
    f.0.digest()
}

/// Fingerprint of the person-specific part of an entry.
pub fn person(tt: &Timetable, p: u32) -> u64 {
    let p = &tt.people[p as usize];
    let mut f = Fields::new(0);
    f.str(&p.id);
    f.str(&p.email);
    f.opt(&p.display_name);
    f.str(&p.kind);
    f.0.digest()
}

/// The entry fingerprint stored in the ledger.
pub fn entry(
    event_fp: u64,
    person_fp: u64,
    direct: Option<(&Option<String>, &Option<String>)>,
) -> u64 {
    let mut buf = [0u8; 24];
    buf[..8].copy_from_slice(&event_fp.to_le_bytes());
    buf[8..16].copy_from_slice(&person_fp.to_le_bytes());
    let extra = match direct {
        None => 0,
        Some((role, note)) => {
            let mut f = Fields::new(1);
            f.opt(role);
            f.opt(note);
            f.0.digest()
        }
    };
    buf[16..].copy_from_slice(&extra.to_le_bytes());
    xxh3_64(&buf)
}

/// Fingerprints of all events and people of `tt`, and the per-entry combiner.
#[derive(Debug, Clone)]
pub struct Fingerprints {
    pub events: Vec<u64>,
    pub people: Vec<u64>,
}

impl Fingerprints {
    pub fn compute(tt: &Timetable, salt: u64) -> Fingerprints {
        Fingerprints {
            events: tt.events.iter().map(|e| event(tt, e, salt)).collect(),
            people: (0..tt.people.len() as u32).map(|p| person(tt, p)).collect(),
        }
    }

    /// The ledger fingerprint of person `p`'s copy of event `e`.
    pub fn entry(&self, tt: &Timetable, p: u32, e: u32) -> u64 {
        let ev = &tt.events[e as usize];
        let direct = ev
            .people
            .binary_search_by_key(&p, |a| a.person)
            .ok()
            .map(|i| (&ev.people[i].role, &ev.people[i].note));
        entry(self.events[e as usize], self.people[p as usize], direct)
    }
}
