//! The running daemon: start-up, SIGHUP reload, SIGTERM/SIGINT shutdown.

use std::path::Path;

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};
use tracing::{error, info};

use crate::config;
use crate::ebpf::runtime::XdpRuntime;

pub fn run(config_path: &Path) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    runtime.block_on(run_async(config_path))
}

async fn run_async(config_path: &Path) -> anyhow::Result<()> {
    let config = config::load(config_path)?;
    let mut xdp = match &config.xdp {
        Some(section) => Some(XdpRuntime::start(section)?),
        None => {
            info!("no [xdp] section: running userspace only");
            None
        }
    };
    let mut hangup = signal(SignalKind::hangup())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    info!(config = %config_path.display(), "proxy running");
    loop {
        tokio::select! {
            _ = hangup.recv() => {
                match config::load(config_path) {
                    Ok(new) => {
                        if let (Some(rt), Some(section)) = (xdp.as_mut(), new.xdp.as_ref()) {
                            if let Err(e) = rt.reload(section) {
                                error!(error = %e, "reload: applying the [xdp] section failed; old policy partly in place");
                            }
                        }
                        info!("configuration reloaded");
                    }
                    Err(e) => error!(error = %e, "reload rejected, still serving the previous configuration"),
                }
            }
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
    }
    info!("shutting down");
    if let Some(rt) = xdp.take() {
        rt.shutdown();
    }
    Ok(())
}
