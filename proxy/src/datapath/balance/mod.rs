//! Backend selection: the Maglev table ([`maglev`]), backends and their health
//! ([`backend`]), and pools that pick candidates in Maglev order ([`pool`]).

pub mod backend;
pub mod maglev;
pub mod pool;

pub use backend::{Backend, Source};
pub use pool::{KeyInput, Pool};
