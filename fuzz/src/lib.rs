//! Shared pieces of the fuzz targets.

pub mod xdp_model;
