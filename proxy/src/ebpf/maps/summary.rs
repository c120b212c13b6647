//! The IPv4 summary in two levels: one bit per /16 (V4_SUMMARY_16, 8 KiB) and one bit
//! per /24 (V4_SUMMARY, 2 MiB), set where any IPv4 allow or block prefix touches, so
//! the XDP program skips both trie lookups for most addresses (and, for most random
//! sources, reads only the small level). Kept in step with the tries by every list edit.

use std::collections::BTreeMap;

use aya::maps::{Array, MapData};
use proxy_common::map_names;

use super::{EbpfError, Maps, map_err};

/// A level of the summary: the prefix length one bit stands for.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Level {
    Slash16,
    Slash24,
}

/// Both levels, the /16 first. Their order does not matter for correctness: bits are
/// set before an entry is inserted and cleared only after its removal.
const LEVELS: [Level; 2] = [Level::Slash16, Level::Slash24];

impl Level {
    fn prefix_len(self) -> u8 {
        match self {
            Level::Slash16 => 16,
            Level::Slash24 => 24,
        }
    }

    fn map_name(self) -> &'static str {
        match self {
            Level::Slash16 => map_names::V4_SUMMARY_16,
            Level::Slash24 => map_names::V4_SUMMARY,
        }
    }
}

impl Maps {
    /// Sets the bits of every /16 and /24 that `net` touches.
    pub(super) fn summary_set(&mut self, net: ipnet::Ipv4Net) -> Result<(), EbpfError> {
        for level in LEVELS {
            for (word, mask) in level_words(net, level) {
                let Some(old) = self.summary_word(level, word)? else {
                    break;
                };
                if old & mask != mask {
                    self.set_summary_word(level, word, old | mask)?;
                }
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
        let words = LEVELS.map(|level| {
            removed
                .iter()
                .flat_map(|net| level_words(*net, level))
                .map(|(word, _)| (word, 0))
                .collect()
        });
        self.summary_write_from_tries(words)
    }

    /// Recomputes the whole /16 level from the tries, for pins that a version without
    /// the level may have edited (its /24 level and tries are kept). Takes the
    /// writers' lock.
    pub(crate) fn summary_16_rebuild(&mut self) -> Result<(), EbpfError> {
        let _lock = self.write_lock();
        let all = (0..proxy_common::V4_SUMMARY_16_WORDS)
            .map(|word| (word, 0))
            .collect();
        self.summary_write_from_tries([all, BTreeMap::new()])
    }

    /// Sets `words` (per level, word index → 0) to the bits the tries' IPv4 entries
    /// touch within them, and writes those that differ.
    fn summary_write_from_tries(
        &mut self,
        mut words: [BTreeMap<u32, u64>; 2],
    ) -> Result<(), EbpfError> {
        for tries in [&self.allow, &self.block] {
            for (net, _) in tries.v4.all()? {
                let ipnet::IpNet::V4(net) = net else { continue };
                for (level, words) in LEVELS.iter().zip(words.iter_mut()) {
                    for (word, mask) in level_words(net, *level) {
                        if let Some(bits) = words.get_mut(&word) {
                            *bits |= mask;
                        }
                    }
                }
            }
        }
        for (level, words) in LEVELS.into_iter().zip(words) {
            for (word, bits) in words {
                match self.summary_word(level, word)? {
                    Some(old) if old != bits => self.set_summary_word(level, word, bits)?,
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// The level's map: None for the /16 level of maps pinned by a daemon from before it
    /// (whose program reads only the /24 level).
    fn summary_map(&mut self, level: Level) -> Option<&mut Array<MapData, u64>> {
        match level {
            Level::Slash16 => self.v4_summary_16.as_mut(),
            Level::Slash24 => Some(&mut self.v4_summary),
        }
    }

    fn summary_word(&mut self, level: Level, word: u32) -> Result<Option<u64>, EbpfError> {
        let Some(map) = self.summary_map(level) else {
            return Ok(None);
        };
        map.get(&word, 0)
            .map(Some)
            .map_err(map_err(level.map_name()))
    }

    fn set_summary_word(&mut self, level: Level, word: u32, bits: u64) -> Result<(), EbpfError> {
        let Some(map) = self.summary_map(level) else {
            return Ok(());
        };
        map.set(word, bits, 0).map_err(map_err(level.map_name()))
    }
}

/// The (word, bit mask) pairs covering every prefix of the level that `net` touches.
fn level_words(net: ipnet::Ipv4Net, level: Level) -> Vec<(u32, u64)> {
    let len = level.prefix_len();
    let first = u32::from(net.network()) >> (32 - len);
    let count: u64 = if net.prefix_len() >= len {
        1
    } else {
        1u64 << (len - net.prefix_len())
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
    fn level_words_cover_exactly_the_touched_prefixes() {
        let words = |s: &str| level_words(s.parse().unwrap(), Level::Slash24);
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

    #[test]
    fn the_slash16_level_covers_what_the_slash24_level_does() {
        let words = |s: &str| level_words(s.parse().unwrap(), Level::Slash16);
        // A /32, a /24 and a /16 touch one /16: the program's bit for any address in it.
        let a = words("198.51.100.9/32");
        assert_eq!(a, words("198.51.0.0/16"));
        assert_eq!(a, words("198.51.7.0/24"));
        assert_eq!(
            a,
            vec![proxy_common::v4_summary_16_bit(u32::from_be_bytes([
                198, 51, 255, 1
            ]))]
        );
        // A /12 is 16 /16s inside one word; a /8 is 256: four full words.
        assert_eq!(words("10.16.0.0/12")[0].1.count_ones(), 16);
        let b = words("10.0.0.0/8");
        assert_eq!(b.len(), 4);
        assert!(b.iter().all(|(_, m)| *m == u64::MAX));
        assert_eq!(
            words("0.0.0.0/0").len(),
            proxy_common::V4_SUMMARY_16_WORDS as usize
        );
    }
}
