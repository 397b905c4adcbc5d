pub mod dav;
pub mod graph;
pub mod proxy;
