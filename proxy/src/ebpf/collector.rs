//! The kernel's verdict counters as Prometheus series, read at scrape time from the
//! running XDP program's maps (`proxy_xdp_packets_total`, `proxy_xdp_bytes_total`,
//! by interface and reason), `proxy_xdp_attached{interface,mode}` (1 per
//! attachment the daemon holds), and per listener the SYN cookie state and counters
//! (`proxy_xdp_syn_cookies_active`, `proxy_xdp_listener_syns_total`,
//! `proxy_xdp_syn_cookies_sent_total`, `proxy_xdp_syn_cookie_acks_total{result}`).

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;
use proxy_common::Reason;

use super::runtime::XdpSubsystem;
use crate::api::PacketCount;
use crate::metrics::LabelText;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttachmentLabels {
    interface: LabelText,
    mode: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabels {
    listener: LabelText,
    mode: LabelText,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CookieAckLabels {
    listener: LabelText,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerdictLabels {
    interface: LabelText,
    reason: &'static str,
}

/// Reads the XDP counters at every scrape; empty while no XDP program runs.
pub struct XdpCollector {
    xdp: Arc<XdpSubsystem>,
}

impl XdpCollector {
    pub fn new(xdp: Arc<XdpSubsystem>) -> XdpCollector {
        XdpCollector { xdp }
    }
}

impl std::fmt::Debug for XdpCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("XdpCollector")
    }
}

type Series = (
    &'static str,
    &'static str,
    Option<Unit>,
    fn(PacketCount) -> u64,
);

const SERIES: [Series; 2] = [
    (
        "xdp_packets",
        "Packets the XDP program handled, by interface and verdict reason",
        None,
        |c| c.packets,
    ),
    (
        "xdp",
        "Bytes the XDP program handled, by interface and verdict reason",
        Some(Unit::Bytes),
        |c| c.bytes,
    ),
];

impl Collector for XdpCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(interfaces) = self.xdp.interface_stats() else {
            return Ok(());
        };
        let gauge = ConstGauge::new(1i64);
        let mut attached = encoder.encode_descriptor(
            "xdp_attached",
            "XDP attachments the daemon holds (1 per interface, with the mode in use)",
            None,
            gauge.metric_type(),
        )?;
        for (interface, _, mode) in self.xdp.attachments() {
            let labels = AttachmentLabels {
                interface: LabelText(interface),
                mode,
            };
            gauge.encode(attached.encode_family(&labels)?)?;
        }
        let kind = ConstCounter::new(0u64).metric_type();
        for (name, help, unit, value) in SERIES {
            let mut family = encoder.encode_descriptor(name, help, unit.as_ref(), kind)?;
            for i in &interfaces {
                let interface = i.interface.clone().unwrap_or_else(|| i.ifindex.to_string());
                for r in Reason::ALL {
                    let labels = VerdictLabels {
                        interface: LabelText(interface.clone()),
                        reason: r.name(),
                    };
                    ConstCounter::new(value(i.verdicts.get(r)))
                        .encode(family.encode_family(&labels)?)?;
                }
            }
        }
        encode_listeners(&self.xdp, &mut encoder)
    }
}

/// SYN cookie state and counters per listener.
fn encode_listeners(
    xdp: &XdpSubsystem,
    encoder: &mut DescriptorEncoder,
) -> Result<(), std::fmt::Error> {
    let (listeners, _) = xdp.listener_stats();
    let labels = |l: &crate::api::ListenerXdpStats| ListenerLabels {
        listener: LabelText(l.listener.clone()),
        mode: LabelText(l.syn_cookies.clone()),
    };
    let gauge_kind = ConstGauge::new(0i64).metric_type();
    let mut active = encoder.encode_descriptor(
        "xdp_syn_cookies_active",
        "1 while the XDP program answers this listener's SYNs with SYN cookies",
        None,
        gauge_kind,
    )?;
    for l in &listeners {
        ConstGauge::new(i64::from(l.cookies_active)).encode(active.encode_family(&labels(l))?)?;
    }
    let counter_kind = ConstCounter::new(0u64).metric_type();
    type Value = fn(&crate::api::ListenerXdpStats) -> u64;
    let series: [(&str, &str, Value); 2] = [
        (
            "xdp_listener_syns",
            "SYNs to this listener past the lists and per-source limits",
            |l| l.syns,
        ),
        (
            "xdp_syn_cookies_sent",
            "SYN-ACKs with a SYN cookie sent by the XDP program for this listener",
            |l| l.cookies_sent,
        ),
    ];
    for (name, help, value) in series {
        let mut family = encoder.encode_descriptor(name, help, None, counter_kind)?;
        for l in &listeners {
            ConstCounter::new(value(l)).encode(family.encode_family(&labels(l))?)?;
        }
    }
    let mut acks = encoder.encode_descriptor(
        "xdp_syn_cookie_acks",
        "ACKs completing a SYN cookie handshake, by cookie check result (bad ones are dropped)",
        None,
        counter_kind,
    )?;
    for l in &listeners {
        for (result, n) in [("ok", l.cookie_acks_ok), ("bad", l.cookie_acks_bad)] {
            let labels = CookieAckLabels {
                listener: LabelText(l.listener.clone()),
                result,
            };
            ConstCounter::new(n).encode(acks.encode_family(&labels)?)?;
        }
    }
    Ok(())
}
