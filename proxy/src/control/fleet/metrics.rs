//! Fleet routing's series, present only for what `[bgp]` configures (so alerts on
//! them fire only on nodes that announce VIPs): `proxy_vip_announced{vip}` (0 from
//! start until the first announcement), `proxy_vip_transitions_total{vip,to}` and
//! `proxy_bgp_peer_established{peer}` (BIRD's sessions, read every second).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use crate::config::bgp::{BgpPeer, BgpSection, Vip};
use crate::metrics::LabelText;

#[derive(Clone, Default)]
pub struct FleetMetrics {
    pub announced: Family<VipLabels, Gauge>,
    pub transitions: Family<TransitionLabels, Counter>,
    pub peers: Family<PeerLabels, Gauge>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct VipLabels {
    pub vip: LabelText,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct TransitionLabels {
    pub vip: LabelText,
    pub to: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct PeerLabels {
    pub peer: LabelText,
}

fn vip_label(vip: &Vip) -> VipLabels {
    VipLabels {
        vip: LabelText(vip.address.to_string()),
    }
}

fn peer_label(peer: &BgpPeer) -> PeerLabels {
    PeerLabels {
        peer: LabelText(peer.address.to_string()),
    }
}

impl FleetMetrics {
    /// A new `[bgp]` (start or reload): every VIP withdrawn and every session down
    /// until seen otherwise; the series of VIPs and peers no longer configured go.
    pub fn configured(&self, section: &BgpSection) {
        self.announced.clear();
        for vip in &section.vips {
            self.announced.get_or_create(&vip_label(vip)).set(0);
        }
        self.peers.clear();
        for peer in &section.peers {
            self.peers.get_or_create(&peer_label(peer)).set(0);
        }
    }

    /// `vip` was announced (`on`) or withdrawn.
    pub fn transition(&self, vip: &Vip, on: bool) {
        let labels = vip_label(vip);
        self.announced.get_or_create(&labels).set(i64::from(on));
        self.transitions
            .get_or_create(&TransitionLabels {
                vip: labels.vip,
                to: if on { "announced" } else { "withdrawn" },
            })
            .inc();
    }

    /// BIRD's sessions (`protocol, state, info` of `bird::sessions`; the protocol
    /// of `peers[i]` is `peer_<i>`); a peer BIRD does not list is down.
    pub fn sessions(&self, peers: &[BgpPeer], sessions: &[(String, String, String)]) {
        for (i, peer) in peers.iter().enumerate() {
            let protocol = format!("peer_{i}");
            let established = sessions.iter().any(|(p, state, info)| {
                *p == protocol && state == "up" && info.starts_with("Established")
            });
            self.peers
                .get_or_create(&peer_label(peer))
                .set(i64::from(established));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section() -> BgpSection {
        let peer = |a: &str| BgpPeer {
            address: a.parse().unwrap(),
            asn: 65000,
        };
        BgpSection::new(
            65001,
            "10.0.0.1".parse().unwrap(),
            vec![peer("10.0.0.254"), peer("10.0.0.253")],
            vec![Vip::new("192.0.2.10".parse().unwrap(), &["https"])],
        )
    }

    fn encoded(m: &FleetMetrics) -> String {
        let mut registry = prometheus_client::registry::Registry::with_prefix("proxy");
        registry.register("vip_announced", "", m.announced.clone());
        registry.register("bgp_peer_established", "", m.peers.clone());
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        out
    }

    #[test]
    fn configured_vips_and_peers_have_series_from_the_start() {
        let m = FleetMetrics::default();
        let s = section();
        m.configured(&s);
        let text = encoded(&m);
        assert!(
            text.contains("proxy_vip_announced{vip=\"192.0.2.10\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("proxy_bgp_peer_established{peer=\"10.0.0.253\"} 0"),
            "{text}"
        );
        m.transition(&s.vips[0], true);
        let sessions = [
            (
                "peer_0".to_string(),
                "up".to_string(),
                "Established".to_string(),
            ),
            (
                "peer_1".to_string(),
                "start".to_string(),
                "Active Socket: Connection refused".to_string(),
            ),
        ];
        m.sessions(&s.peers, &sessions);
        let text = encoded(&m);
        assert!(
            text.contains("proxy_vip_announced{vip=\"192.0.2.10\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("proxy_bgp_peer_established{peer=\"10.0.0.254\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("proxy_bgp_peer_established{peer=\"10.0.0.253\"} 0"),
            "{text}"
        );
        // A reload without the second peer and the VIP: their series go.
        m.configured(&BgpSection {
            peers: s.peers[..1].to_vec(),
            vips: Vec::new(),
            ..s
        });
        let text = encoded(&m);
        assert!(!text.contains("10.0.0.253"), "{text}");
        assert!(!text.contains("192.0.2.10"), "{text}");
    }
}
