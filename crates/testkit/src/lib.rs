pub mod graph;
pub mod proxy;
pub mod dav;
