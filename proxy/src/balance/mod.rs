//! Backend selection: the Maglev table and the backend set.
pub mod maglev;
