//! Per-source events from the accept and handshake paths, for automatic blocking.
//!
//! The data path calls [`SourceObserver::observe`] inline, so an observer must return
//! at once: [`ChannelObserver`] hands events to a bounded channel and drops them (and
//! counts the drop) when the consumer lags. The default is [`NoopObserver`].

use std::net::IpAddr;

use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc;

use crate::api::HandshakeFailure;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceEvent {
    pub addr: IpAddr,
    pub kind: SourceEventKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceEventKind {
    /// A connection was accepted (and passed the limits).
    Accepted,
    /// The TLS handshake failed (for a reason other than the timeout).
    HandshakeFailed { reason: HandshakeFailure },
    /// The client did not finish the handshake within `handshake_timeout`.
    HandshakeTimeout,
    /// Closed at accept: the source already had `max_per_source` connections open.
    RejectedPerSourceLimit,
}

/// Receives source events. Must not block or do slow work.
pub trait SourceObserver: Send + Sync {
    fn observe(&self, event: SourceEvent);
}

/// Ignores every event.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoopObserver;

impl SourceObserver for NoopObserver {
    fn observe(&self, _: SourceEvent) {}
}

/// Forwards events to a bounded channel; never waits.
#[derive(Debug)]
pub struct ChannelObserver {
    tx: mpsc::Sender<SourceEvent>,
    /// Events dropped because the channel was full or closed.
    dropped: Counter,
}

impl ChannelObserver {
    /// An observer and the receiving end of a channel holding up to `capacity` events;
    /// events that do not fit are counted in `dropped`.
    pub fn new(
        capacity: usize,
        dropped: Counter,
    ) -> (ChannelObserver, mpsc::Receiver<SourceEvent>) {
        let (tx, rx) = mpsc::channel(capacity);
        (ChannelObserver { tx, dropped }, rx)
    }
}

impl SourceObserver for ChannelObserver {
    fn observe(&self, event: SourceEvent) {
        if self.tx.try_send(event).is_err() {
            self.dropped.inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_drops_instead_of_blocking() {
        let dropped = Counter::default();
        let (obs, mut rx) = ChannelObserver::new(2, dropped.clone());
        let addr: IpAddr = "192.0.2.7".parse().unwrap();
        for _ in 0..5 {
            obs.observe(SourceEvent {
                addr,
                kind: SourceEventKind::HandshakeTimeout,
            });
        }
        assert_eq!(dropped.get(), 3);
        assert_eq!(
            rx.try_recv().unwrap().kind,
            SourceEventKind::HandshakeTimeout
        );
        assert_eq!(rx.try_recv().unwrap().addr, addr);
        assert!(rx.try_recv().is_err());
    }
}
