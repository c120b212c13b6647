//! `proxy xdp detach|unpin`: cleans up what `xdp.stay_attached` and the pins leave.

use std::path::Path;

use anyhow::Context;

use super::XdpAction;

pub fn xdp_command(action: XdpAction) -> anyhow::Result<()> {
    match action {
        XdpAction::Detach(out) => {
            let links = out.pin_path.join("links");
            let mut n = 0;
            if links.is_dir() {
                for entry in std::fs::read_dir(&links)? {
                    let entry = entry?;
                    std::fs::remove_file(entry.path())
                        .with_context(|| format!("unpinning {}", entry.path().display()))?;
                    println!("detached from {}", entry.file_name().to_string_lossy());
                    n += 1;
                }
                std::fs::remove_dir(&links).ok();
            }
            if n == 0 {
                println!("no pinned XDP attachments under {}", links.display());
            }
        }
        XdpAction::Unpin(out) => unpin(&out.pin_path)?,
    }
    Ok(())
}

fn unpin(dir: &Path) -> anyhow::Result<()> {
    if !dir.exists() {
        println!("nothing pinned at {}", dir.display());
        return Ok(());
    }
    std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    println!(
        "removed {} (maps, lists and pinned attachments)",
        dir.display()
    );
    Ok(())
}
