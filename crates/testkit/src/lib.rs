pub mod graph;
pub mod proxy;
