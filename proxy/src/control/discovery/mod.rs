//! Backends found through DNS (`[[pool.backends]] name`, `[pool.discovery] srv`).
pub mod state;
