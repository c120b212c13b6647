//! Per-source events from the accept and handshake paths, for automatic blocking.
//!
//! The data path calls [`SourceObserver::observe`] inline, so an observer must return
//! at once: [`ChannelObserver`] hands events to a bounded channel and drops them (and
//! counts the drop) when the consumer lags. The default is [`NoopObserver`].

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

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

/// Forwards events to a bounded channel while its consumer wants them; never waits.
#[derive(Debug)]
pub struct ChannelObserver {
    tx: mpsc::Sender<SourceEvent>,
    /// Events dropped because the channel was full or closed.
    dropped: Counter,
    wanted: Arc<AtomicBool>,
}

/// Turns a [`ChannelObserver`]'s events on or off. Off (the start) costs the data path
/// one atomic load per event; on, each accepted connection sends an event and wakes
/// the consumer, which is only worth it when someone acts on them.
#[derive(Debug, Clone)]
pub struct EventSwitch(Arc<AtomicBool>);

impl EventSwitch {
    pub fn set(&self, on: bool) {
        self.0.store(on, Ordering::Relaxed);
    }
}

impl ChannelObserver {
    /// An observer (off until its switch is set), the receiving end of a channel
    /// holding up to `capacity` events, and the switch. Events that do not fit are
    /// counted in `dropped`.
    pub fn new(
        capacity: usize,
        dropped: Counter,
    ) -> (ChannelObserver, mpsc::Receiver<SourceEvent>, EventSwitch) {
        let (tx, rx) = mpsc::channel(capacity);
        let wanted = Arc::new(AtomicBool::new(false));
        let switch = EventSwitch(wanted.clone());
        (
            ChannelObserver {
                tx,
                dropped,
                wanted,
            },
            rx,
            switch,
        )
    }
}

impl SourceObserver for ChannelObserver {
    fn observe(&self, event: SourceEvent) {
        if !self.wanted.load(Ordering::Relaxed) {
            return;
        }
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
        let (obs, mut rx, switch) = ChannelObserver::new(2, dropped.clone());
        switch.set(true);
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

    #[test]
    fn a_switched_off_observer_sends_nothing() {
        let (obs, mut rx, switch) = ChannelObserver::new(8, Counter::default());
        let event = SourceEvent {
            addr: "192.0.2.7".parse().unwrap(),
            kind: SourceEventKind::Accepted,
        };
        obs.observe(event.clone());
        assert!(rx.try_recv().is_err(), "off at the start");
        switch.set(true);
        obs.observe(event.clone());
        assert_eq!(rx.try_recv().unwrap(), event);
        switch.set(false);
        obs.observe(event);
        assert!(rx.try_recv().is_err(), "off again");
    }
}
