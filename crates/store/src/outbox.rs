//! The outbox: operations a cycle planned, kept until a target acknowledges them.
//!
//! # Design constraints
//!
//! 1. **Written before sent.** A cycle records its whole plan for a target
//!    ([`crate::Store::replace_outbox`], one transaction) before the first
//!    request leaves. A crash before that commit leaves the previous outbox
//!    and ledger untouched; the next cycle plans again from the same ledger.
//! 2. **Acknowledged and recorded together.** When a target confirms an
//!    operation, the ledger row changes and the outbox row is removed in one
//!    transaction ([`crate::Store::ack`]). There is no state in which the
//!    ledger says "done" while the outbox still says "to do", or the reverse.
//! 3. **A crash between sending and recording is harmless.** The operation
//!    stays in the outbox and the ledger is unchanged, so the next cycle
//!    plans it again. Every target makes the replay a no-op: deterministic
//!    resource names and UIDs (vdir, CalDAV `If-None-Match`), Graph
//!    `transactionId`, Google client-chosen event ids; deleting something
//!    already gone counts as done.
//! 4. **Nothing is dropped silently.** An outbox row leaves only by an
//!    acknowledgement, by a newer plan for the same key (which is the truth
//!    and is itself written before it is sent), or by an operator rejecting
//!    a held run.
//! 5. **Held deletes stay held.** Deletes held by the guard carry their run
//!    id and state `held`; they are sent only after `approve` releases them.
//! 6. **One op per key.** The outbox key is (profile, target, person, event):
//!    a newer plan replaces, never stacks, so a replay cannot apply two
//!    versions out of order.
//!
//! # Several workers (a shared store: PostgreSQL)
//!
//! 7. **One planner per profile.** A cycle runs under the profile's cycle
//!    lock (a session advisory lock: it dies with the connection, so a
//!    killed worker never blocks the next). A worker that finds it taken
//!    helps deliver instead, and runs its own cycle once the lock is free.
//! 8. **No claims while planning.** Drift repair, planning and
//!    `replace_outbox` run under the profile's planning lock, taken
//!    exclusively by the planner and shared by every claim transaction; the
//!    planner first waits until no other live worker holds a claim. So an
//!    outbox is never replaced under a delivery in flight.
//! 9. **Delivered only when claimed.** Pending rows are leased in (person,
//!    event) order with `FOR UPDATE SKIP LOCKED`; the lease names the
//!    claiming connection's backend pid. Two live workers never hold the
//!    same row, so neither sends what the other is sending. Claims take
//!    whole people (one claim at a time per target; a person another live
//!    worker holds ops of is skipped, the batch's last person is taken
//!    whole), so each calendar is written by one worker at a time and a
//!    target's per-calendar limits (Graph: 4 requests in flight per mailbox,
//!    `Retry-After`) hold across workers.
//! 10. **A dead worker's claims come back.** A lease is void as soon as its
//!     pid is gone from `pg_stat_activity` (PostgreSQL notices a killed
//!     client's closed socket), and in any case when it expires. Whatever
//!     the dead worker sent but did not acknowledge is sent again: a replay,
//!     harmless by constraint 3.
//! 11. **A helper renders from its own read of the source.** Outbox rows
//!     carry keys and fingerprints, not content; a helper reads the source
//!     itself and records in the ledger the fingerprint of what it actually
//!     wrote. If the source changed between the two reads, the next plan
//!     sees the difference and updates. An op whose person or event the
//!     helper's snapshot lacks is released untouched.
//! 12. **Failures are let go.** A worker may deliver several claims at
//!     once (each of whole people, so none shares a calendar with another);
//!     when one is done it releases what it still holds of that claim's
//!     people (failed ops) with a delay, and the same delivery pass never
//!     sends an op it has let go again, so this cycle does not retry them
//!     in a loop; the next plan resets every lease. While claims are being
//!     delivered their leases are renewed, so a slow delivery keeps them.

use serde::Serialize;

use crate::RunId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OpKind {
    Create,
    Update,
    Delete,
}

impl OpKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OpKind::Create => "create",
            OpKind::Update => "update",
            OpKind::Delete => "delete",
        }
    }

    pub fn parse(s: &str) -> Option<OpKind> {
        match s {
            "create" => Some(OpKind::Create),
            "update" => Some(OpKind::Update),
            "delete" => Some(OpKind::Delete),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OpState {
    /// To be sent by the next delivery.
    Pending,
    /// A delete held by the deletion guard until approved.
    Held,
}

impl OpState {
    pub fn as_str(self) -> &'static str {
        match self {
            OpState::Pending => "pending",
            OpState::Held => "held",
        }
    }
}

/// An operation to record in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxOp {
    pub person_id: String,
    pub event_id: String,
    pub kind: OpKind,
    pub state: OpState,
    /// Fingerprint the op will write (0 for deletes).
    pub fingerprint: u64,
}

/// An operation as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutboxRow {
    pub run_id: RunId,
    pub person_id: String,
    pub event_id: String,
    pub kind: OpKind,
    pub state: OpState,
    pub fingerprint: u64,
    pub attempts: u32,
    pub last_error: Option<String>,
}

/// A target's acknowledgement of one operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ack {
    /// Created or updated: the ledger row becomes this.
    Written(crate::LedgerEntry),
    /// Deleted (or already gone): the ledger row goes.
    Deleted { person_id: String, event_id: String },
}
