//! The verdict counters: packets and bytes per (interface, reason), per CPU.

use proxy_common::{MAX_IFINDEX, Reason, counter_index, map_names};

use super::{EbpfError, Maps, map_err};
use crate::api::{PacketCount, Verdicts};

impl Maps {
    /// One interface's verdicts, summed over CPUs. Interfaces with ifindex ≥
    /// `MAX_IFINDEX` share slot 0.
    pub fn verdicts(&self, ifindex: u32) -> Result<Verdicts, EbpfError> {
        let mut out = Verdicts::default();
        for reason in Reason::ALL {
            let per_cpu = self
                .counters
                .get(&counter_index(ifindex, reason), 0)
                .map_err(map_err(map_names::COUNTERS))?;
            for c in per_cpu.iter() {
                out.add(
                    reason,
                    PacketCount {
                        packets: c.packets,
                        bytes: c.bytes,
                    },
                );
            }
        }
        Ok(out)
    }

    /// (ifindex, verdicts) of every interface slot that has seen packets.
    pub fn all_verdicts(&self) -> Result<Vec<(u32, Verdicts)>, EbpfError> {
        let mut out = Vec::new();
        for ifindex in 0..MAX_IFINDEX {
            let v = self.verdicts(ifindex)?;
            if !v.is_empty() {
                out.push((ifindex, v));
            }
        }
        Ok(out)
    }
}
