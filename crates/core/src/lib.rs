//! edusync's core: everything between "rows read from the source views" and
//! "operations a target must apply", with no I/O.
//!
//! - [`model`]: the rows of the eight source views as read, unvalidated.
//! - [`timetable`]: validation and quarantine of bad rows, time-zone rules,
//!   the clean in-memory [`timetable::Timetable`].
//! - [`expand`]: attendance expansion into per-person entries.
//! - [`render`]: what a calendar event looks like (built-in or minijinja templates).
//! - [`ics`]: RFC 5545 text, shared by the vdir and CalDAV targets and the feeds.
//! - [`fingerprint`]: content hashes so unchanged events cost nothing.
//! - [`plan`]: the diff between what calendars must hold and the ledger.
//! - [`guard`]: the deletion guard.
//!
//! Architecture invariant: this crate does no I/O, spawns nothing and knows
//! nothing about SQL, HTTP or async runtimes.

pub mod expand;
pub mod fingerprint;
pub mod guard;
pub mod ics;
pub mod keys;
pub mod model;
pub mod plan;
pub mod render;
pub mod timetable;
pub mod window;

pub use jiff;
