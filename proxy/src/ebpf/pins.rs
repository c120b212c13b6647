//! What this build expects of pinned maps: their names and key/value sizes, checked
//! before reusing pins a previous daemon left.

use std::path::{Path, PathBuf};

use aya::maps::MapInfo;
use proxy_common::{COUNTERS_LEN, LpmKey, PolicyEntry, XdpConfig, map_names};
use tracing::warn;

use super::EbpfError;

/// Refuses list pins made by an incompatible build; replaces incompatible pins of maps
/// that hold nothing the config cannot rebuild (settings, port set, counters), with a
/// warning; warns when a list's capacity differs.
pub(super) fn check_pins_compatible(
    dir: &Path,
    paths: &[(&str, PathBuf)],
    max_block_entries: u32,
    max_allow_entries: u32,
) -> Result<(), EbpfError> {
    for (name, path) in paths {
        if !path.exists() {
            continue;
        }
        let info = MapInfo::from_pin(path).map_err(|source| EbpfError::Map {
            map: map_name_static(name),
            source,
        })?;
        let (key, value) = pinned_sizes(name);
        let wrong_len = *name == map_names::COUNTERS && info.max_entries() != COUNTERS_LEN;
        let incompatible = info.key_size() != key || info.value_size() != value || wrong_len;
        if incompatible && REBUILT_FROM_CONFIG.contains(name) {
            warn!(
                map = name,
                path = %path.display(),
                "the pinned map has another layout (made by another version of proxy); \
                 replacing it (its settings come from the config again; counters restart at 0)"
            );
            std::fs::remove_file(path).map_err(|source| EbpfError::Io {
                context: format!("removing the outdated pin {}", path.display()),
                source,
            })?;
            continue;
        }
        if incompatible {
            return Err(EbpfError::IncompatiblePin {
                path: path.clone(),
                dir: dir.to_path_buf(),
                what: format!(
                    "key/value size {}/{} bytes, expected {key}/{value}",
                    info.key_size(),
                    info.value_size(),
                ),
            });
        }
        let wanted = match *name {
            map_names::BLOCK_V4 | map_names::BLOCK_V6 => Some(max_block_entries),
            map_names::ALLOW_V4 | map_names::ALLOW_V6 => Some(max_allow_entries),
            _ => None,
        };
        if let Some(wanted) = wanted.filter(|w| *w != info.max_entries()) {
            warn!(
                map = name,
                pinned = info.max_entries(),
                configured = wanted,
                "the pinned map keeps its capacity; to resize, save the list (`proxy block list --json`), \
                 run `proxy xdp unpin`, and restart"
            );
        }
    }
    Ok(())
}

/// Pinned maps whose content the daemon rewrites from the config (or may lose: counters).
const REBUILT_FROM_CONFIG: [&str; 3] = [map_names::CONFIG, map_names::PORTS, map_names::COUNTERS];

/// (key size, value size) this build uses for a pinned map.
fn pinned_sizes(name: &str) -> (u32, u32) {
    use std::mem::size_of;
    let (key, value) = match name {
        map_names::ALLOW_V4 | map_names::BLOCK_V4 => {
            (size_of::<LpmKey<4>>(), size_of::<PolicyEntry>())
        }
        map_names::ALLOW_V6 | map_names::BLOCK_V6 => {
            (size_of::<LpmKey<16>>(), size_of::<PolicyEntry>())
        }
        map_names::CONFIG => (4, size_of::<XdpConfig>()),
        map_names::PORTS => (4, size_of::<proxy_common::PortSet>()),
        map_names::COUNTERS => (4, size_of::<proxy_common::Counter>()),
        map_names::POLICY_GEN | map_names::V4_SUMMARY | map_names::V4_SUMMARY_16 => (4, 8),
        other => unreachable!("{other} is not a pinned map"),
    };
    (key as u32, value as u32)
}

pub(super) fn map_name_static(name: &str) -> &'static str {
    map_names::PINNED
        .iter()
        .chain(map_names::UNPINNED.iter())
        .find(|n| **n == name)
        .copied()
        .unwrap_or("?")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_sizes_match_the_shared_types() {
        let entry = std::mem::size_of::<PolicyEntry>() as u32;
        assert_eq!(pinned_sizes(map_names::BLOCK_V4), (8, entry));
        assert_eq!(pinned_sizes(map_names::ALLOW_V6), (20, entry));
        assert_eq!(pinned_sizes(map_names::POLICY_GEN), (4, 8));
        assert_eq!(pinned_sizes(map_names::PORTS), (4, 65536 / 8));
        for name in map_names::PINNED {
            assert_eq!(map_name_static(name), name);
        }
        assert_eq!(map_name_static("NOT_A_MAP"), "?");
    }
}
