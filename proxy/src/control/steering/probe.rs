//! Probes: every second (and at once when the members change) a GUE control message
//! to every member, from this node's steering address and port. The members' XDP
//! programs learn from it how to reach this node (its MAC, and the interface it
//! arrives on: no neighbour lookups in the data path); this node's program learns the
//! same from theirs, and a table is acknowledged only once every member of it has
//! been heard from. The socket also takes the probes that arrive (the XDP program
//! passes them on), so none is answered with an ICMP port unreachable.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use proxy_common::steering::gue;
use tokio::net::UdpSocket;

use super::Shared;

/// Between rounds of probes.
const INTERVAL: Duration = Duration::from_secs(1);

/// The socket probes go out from (and arrive on).
pub fn bind(address: IpAddr, port: u16) -> anyhow::Result<UdpSocket> {
    let at = SocketAddr::new(address, port);
    let socket = std::net::UdpSocket::bind(at).with_context(|| {
        format!(
            "steering: cannot bind UDP {at} (is {address} this node's address? is the port free?)"
        )
    })?;
    socket.set_nonblocking(true)?;
    Ok(UdpSocket::from_std(socket)?)
}

/// A GUE control message: version 0, C set, no extension fields; then our text.
fn message(node: &str) -> Vec<u8> {
    let mut m = vec![gue::CONTROL, 0, 0, 0];
    m.extend_from_slice(b"proxy steering probe from ");
    m.extend_from_slice(node.as_bytes());
    m
}

pub async fn run(shared: Arc<Shared>, socket: UdpSocket) {
    let mut tick = tokio::time::interval(INTERVAL);
    let mut buf = [0u8; 512];
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shared.probe_now.notified() => {}
            // Probes from the members: the XDP program learned from them already.
            _ = socket.recv_from(&mut buf) => continue,
        }
        let (node, peers) = {
            let state = shared.state.lock().expect("steering lock");
            (state.node.clone(), state.peers())
        };
        let probe = message(&node);
        for (address, port) in peers {
            if let Err(e) = socket.send_to(&probe, SocketAddr::new(address, port)).await {
                tracing::debug!(%address, error = %e, "steering probe not sent");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_probe_is_a_gue_control_message() {
        let m = super::message("node1");
        assert_eq!(m[0] >> 6, 0, "version 0");
        assert_ne!(m[0] & super::gue::CONTROL, 0);
        assert!(m.ends_with(b"node1"));
    }
}
