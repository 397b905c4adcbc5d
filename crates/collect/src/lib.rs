//! Site data collection: the site agent, the wire protocol, and the hub.
//!
//! - [`agent`]: `edusync agent`, running at a site: scans dataset folders,
//!   sends new and changed files in resumable, compressed, hashed chunks,
//!   keeps a ledger of what the hub acknowledged, sends heartbeats.
//! - [`protocol`]: the HTTP messages between the two.
//! - [`hub`]: the receiving side inside `edusync serve`: authentication,
//!   verified atomic storage under `[hub] root`, the manifest
//!   ([`hub::store::HubStore`]), and the ingest routes that `edusync-server`
//!   mounts.
//!
//! Architecture invariant: this crate never binds a socket; `edusync-server`
//! serves the routes from [`hub::http::routes`].

pub mod agent;
pub mod glob;
pub mod hub;
pub mod protocol;
