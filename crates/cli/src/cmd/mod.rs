//! One module per subcommand; each exposes `Args` (or a subcommand enum) and `run`.

pub mod agent;
pub mod approve;
pub mod bench;
pub mod bench_pg;
pub mod check;
pub mod cleardown;
pub mod common;
pub mod demo;
pub mod generate;
pub mod plan;
pub mod serve;
pub mod site;
pub mod sync;
pub mod user;
