//! `[xdp]`: the kernel fast path's attachment and policy.

use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XdpSection {}

impl XdpSection {
    pub fn validate(&self) -> Result<(), String> {
        Ok(())
    }
}
