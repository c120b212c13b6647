//! The IPv4 summary: one bit per /24 that any IPv4 allow or block prefix touches, so
//! the XDP program skips both trie lookups for most addresses. Kept in step with the
//! tries by every list edit.

use std::collections::BTreeMap;

use proxy_common::map_names;

use super::{EbpfError, Maps, map_err};

impl Maps {
    /// Sets the bits of every /24 that `net` touches.
    pub(super) fn summary_set(&mut self, net: ipnet::Ipv4Net) -> Result<(), EbpfError> {
        for (word, mask) in summary_words(net) {
            let old = self.summary_word(word)?;
            if old & mask != mask {
                self.set_summary_word(word, old | mask)?;
            }
        }
        Ok(())
    }

    /// After removals: recomputes the words the removed prefixes touched from the
    /// entries that remain in both IPv4 tries.
    pub(super) fn summary_recompute(
        &mut self,
        removed: &[ipnet::Ipv4Net],
    ) -> Result<(), EbpfError> {
        if removed.is_empty() {
            return Ok(());
        }
        let mut words: BTreeMap<u32, u64> = removed
            .iter()
            .flat_map(|net| summary_words(*net))
            .map(|(word, _)| (word, 0))
            .collect();
        for tries in [&self.allow, &self.block] {
            for (net, _) in tries.v4.all()? {
                let ipnet::IpNet::V4(net) = net else { continue };
                for (word, mask) in summary_words(net) {
                    if let Some(bits) = words.get_mut(&word) {
                        *bits |= mask;
                    }
                }
            }
        }
        for (word, bits) in words {
            if self.summary_word(word)? != bits {
                self.set_summary_word(word, bits)?;
            }
        }
        Ok(())
    }

    fn summary_word(&self, word: u32) -> Result<u64, EbpfError> {
        self.v4_summary
            .get(&word, 0)
            .map_err(map_err(map_names::V4_SUMMARY))
    }

    fn set_summary_word(&mut self, word: u32, bits: u64) -> Result<(), EbpfError> {
        self.v4_summary
            .set(word, bits, 0)
            .map_err(map_err(map_names::V4_SUMMARY))
    }
}

/// The (word, bit mask) pairs covering every /24 that `net` touches.
fn summary_words(net: ipnet::Ipv4Net) -> Vec<(u32, u64)> {
    let first = u32::from(net.network()) >> 8;
    let count: u64 = if net.prefix_len() >= 24 {
        1
    } else {
        1u64 << (24 - net.prefix_len())
    };
    let last = (first as u64 + count - 1) as u32;
    let mut out = Vec::new();
    let mut word = first >> 6;
    while word <= last >> 6 {
        let lo = if word == first >> 6 { first & 63 } else { 0 };
        let hi = if word == last >> 6 { last & 63 } else { 63 };
        let width = hi - lo + 1;
        let mask = if width == 64 {
            u64::MAX
        } else {
            ((1u64 << width) - 1) << lo
        };
        out.push((word, mask));
        word += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_words_cover_exactly_the_touched_slash24s() {
        let words = |s: &str| summary_words(s.parse().unwrap());
        // A /32 and a /24 touch one /24.
        let a = words("198.51.100.9/32");
        assert_eq!(a, words("198.51.100.0/24"));
        assert_eq!(a.len(), 1);
        let (w, m) = a[0];
        assert_eq!(
            (w, m),
            proxy_common::v4_summary_bit(u32::from_be_bytes([198, 51, 100, 200]))
        );
        // A /16 is 256 /24s: four full words.
        let b = words("10.1.0.0/16");
        assert_eq!(b.len(), 4);
        assert!(b.iter().all(|(_, m)| *m == u64::MAX));
        // A /20 is 16 /24s inside one word.
        let c = words("10.1.16.0/20");
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].1.count_ones(), 16);
        // /0 covers every word.
        assert_eq!(
            words("0.0.0.0/0").len(),
            proxy_common::V4_SUMMARY_WORDS as usize
        );
    }
}
