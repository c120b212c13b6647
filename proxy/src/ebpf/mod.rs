//! The kernel half's loader and map handles.
