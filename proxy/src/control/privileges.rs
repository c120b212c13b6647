//! Least privilege: once the first configuration is applied (XDP loaded and
//! attached, listeners bound), the daemon keeps only CAP_NET_BIND_SERVICE (to bind
//! new ports below 1024 on reload). Map updates, detaching and pin removal work
//! through the descriptors and files it already holds.

use std::sync::atomic::{AtomicBool, Ordering};

use caps::{CapSet, Capability, CapsHashSet};
use tracing::{info, warn};

/// Capabilities kept after start.
const KEPT: [Capability; 1] = [Capability::CAP_NET_BIND_SERVICE];

/// The daemon subsystem that drops capabilities after the first apply.
#[derive(Default)]
pub struct DropCapabilities {
    done: AtomicBool,
}

impl crate::control::subsystem::Subsystem for DropCapabilities {
    fn name(&self) -> &str {
        "privileges"
    }

    /// Nothing to check; the commit drops the capabilities the first time.
    fn prepare<'a>(
        &'a self,
        _config: &std::sync::Arc<crate::config::Config>,
    ) -> anyhow::Result<crate::control::subsystem::Commit<'a>> {
        Ok(Box::new(|| {
            if self.done.swap(true, Ordering::SeqCst) {
                return Ok(());
            }
            match drop_all_but_kept() {
                Ok(()) => info!(
                    "dropped capabilities: kept only CAP_NET_BIND_SERVICE (adding [xdp] or interfaces later needs a restart)"
                ),
                Err(e) => {
                    warn!(error = %e, "could not drop capabilities; continuing with the ones the daemon was given")
                }
            }
            Ok(())
        }))
    }
}

fn drop_all_but_kept() -> Result<(), caps::errors::CapsError> {
    let permitted = caps::read(None, CapSet::Permitted)?;
    let keep: CapsHashSet = KEPT
        .iter()
        .copied()
        .filter(|c| permitted.contains(c))
        .collect();
    for cap in caps::all() {
        if !keep.contains(&cap) && caps::has_cap(None, CapSet::Bounding, cap).unwrap_or(false) {
            // Needs CAP_SETPCAP; without it the bounding set stays, the rest still drops.
            let _ = caps::drop(None, CapSet::Bounding, cap);
        }
    }
    caps::set(None, CapSet::Inheritable, &CapsHashSet::new())?;
    caps::set(None, CapSet::Effective, &keep)?;
    caps::set(None, CapSet::Permitted, &keep)?;
    Ok(())
}
