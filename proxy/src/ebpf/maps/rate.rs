//! Rate limits, drop sampling and the sketch's secret hash seeds: the `CONFIG` map
//! (one `XdpConfig`) and the `PORTS` bitmap.

use proxy_common::{PortSet, RateParams, SKETCH_ROWS, XdpConfig, map_names};

use super::{EbpfError, Maps, map_err};

/// Rate limits as the operator states them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RateLimits {
    pub packets_per_second: u32,
    pub packets_burst: u32,
    pub syn_per_second: u32,
    pub syn_burst: u32,
    pub ipv6_prefix: u8,
    /// Destination ports the limits apply to; empty = all.
    pub ports: Vec<u16>,
}

impl Maps {
    /// Writes rate limits and sampling; keeps (or first creates) the secret hash seeds.
    pub fn write_config(
        &mut self,
        limits: &RateLimits,
        sample_every: u32,
        log_drops: bool,
    ) -> Result<(), EbpfError> {
        let mut config = self.read_config()?;
        if config.hash_seeds == [0; SKETCH_ROWS] {
            let mut bytes = [0u8; 8 * SKETCH_ROWS];
            getrandom::fill(&mut bytes).map_err(|e| EbpfError::Io {
                context: "reading random hash seeds".into(),
                source: std::io::Error::other(e.to_string()),
            })?;
            for (seed, chunk) in config.hash_seeds.iter_mut().zip(bytes.chunks_exact(8)) {
                *seed = u64::from_ne_bytes(chunk.try_into().expect("8 bytes"));
            }
        }
        let burst = |b: u32, rate: u32| if b == 0 { rate } else { b };
        config.pps = RateParams::new(
            limits.packets_per_second,
            burst(limits.packets_burst, limits.packets_per_second),
        );
        config.syn = RateParams::new(
            limits.syn_per_second,
            burst(limits.syn_burst, limits.syn_per_second),
        );
        config.ipv6_prefix_len = u32::from(limits.ipv6_prefix.clamp(1, 128));
        config.ports_scoped = u32::from(!limits.ports.is_empty());
        config.sample_every = sample_every;
        config.log_drops = u32::from(log_drops);
        let mut ports = PortSet::empty();
        for port in &limits.ports {
            ports.insert(*port);
        }
        self.ports
            .set(0, ports, 0)
            .map_err(map_err(map_names::PORTS))?;
        self.config
            .set(0, config, 0)
            .map_err(map_err(map_names::CONFIG))
    }

    pub fn read_config(&self) -> Result<XdpConfig, EbpfError> {
        self.config.get(&0, 0).map_err(map_err(map_names::CONFIG))
    }
}
