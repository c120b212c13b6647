//! How a change of membership reaches the forwarding table, one change at a time, so
//! that no node forwards by a table another node has not installed. Every node, from
//! what it sees in the store (level-based: the same view gives the same decision, and
//! a missed event is made up by the next one):
//!
//! 1. installs the current table record's generation in its standby slot;
//! 2. acknowledges it (`acks/<node>`) once it can reach every member of it;
//! 3. switches to it once every live member has acknowledged it;
//! 4. once switched, and while every live member has it, proposes the next record
//!    (the current one with one change toward the live members), by compare-and-swap:
//!    of several nodes proposing at once one wins, and they all proposed the same.
//!
//! This file decides what the next record is and when a generation is everywhere;
//! `session.rs` does the rest.

use std::collections::BTreeMap;

use super::store::{MAX_MEMBERS, MemberState, MemberValue, TableMember, TableRecord};

/// Has every live member installed `generation` (or a later one)?
pub fn everywhere(
    live: &BTreeMap<String, MemberValue>,
    acks: &BTreeMap<String, u64>,
    generation: u64,
) -> bool {
    live.keys()
        .all(|node| acks.get(node).is_some_and(|g| *g >= generation))
}

/// The live members that have not installed `generation` yet.
pub fn waiting_for(
    live: &BTreeMap<String, MemberValue>,
    acks: &BTreeMap<String, u64>,
    generation: u64,
) -> Vec<String> {
    live.keys()
        .filter(|node| acks.get(*node).is_none_or(|g| *g < generation))
        .cloned()
        .collect()
}

/// The record after `table` with one change toward `live`, or `None` when they
/// agree. Members that left go first (their rows need an owner), then state and
/// address changes (a drain waits for its), then newcomers, by name.
pub fn next_record(
    table: Option<&TableRecord>,
    live: &BTreeMap<String, MemberValue>,
) -> Option<TableRecord> {
    let generation = table.map_or(0, |t| t.generation) + 1;
    let mut members = table.map(|t| t.members.clone()).unwrap_or_default();
    let record = |members, change: String| {
        Some(TableRecord {
            generation,
            members,
            change,
        })
    };
    if let Some(i) = members.iter().position(|m| !live.contains_key(&m.node)) {
        let gone = members.remove(i);
        return record(members, format!("{} left", gone.node));
    }
    for m in members.iter_mut() {
        let now = &live[&m.node];
        if now.state != m.state {
            let change = match now.state {
                MemberState::Draining => {
                    m.drained = Some(generation);
                    format!("{} draining", m.node)
                }
                // Active again without having left: it holds nothing it had
                // before, so it counts as a newcomer.
                MemberState::Active => {
                    m.drained = None;
                    m.joined = generation;
                    format!("{} active again", m.node)
                }
            };
            m.state = now.state;
            return record(members, change);
        }
        if (now.address, now.port) != (m.address, m.port) {
            m.address = now.address;
            m.port = now.port;
            let change = format!("{} moved to {} port {}", m.node, m.address, m.port);
            return record(members, change);
        }
    }
    if members.len() >= MAX_MEMBERS {
        return None;
    }
    let (node, new) = live
        .iter()
        .find(|(node, _)| !members.iter().any(|m| &m.node == *node))?;
    members.push(TableMember {
        node: node.clone(),
        address: new.address,
        port: new.port,
        state: new.state,
        joined: generation,
        drained: (new.state == MemberState::Draining).then_some(generation),
    });
    record(members, format!("{node} joined"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(nodes: &[(&str, MemberState)]) -> BTreeMap<String, MemberValue> {
        nodes
            .iter()
            .map(|(node, state)| {
                let value = MemberValue {
                    node: node.to_string(),
                    address: format!("10.77.0.1{}", &node[1..]).parse().unwrap(),
                    port: 19523,
                    state: *state,
                    since_unix_ms: 0,
                };
                (node.to_string(), value)
            })
            .collect()
    }

    const A: MemberState = MemberState::Active;
    const D: MemberState = MemberState::Draining;

    /// Applies `next_record` until the table agrees with `live`; the changes made.
    fn converge(
        table: &mut Option<TableRecord>,
        live: &BTreeMap<String, MemberValue>,
    ) -> Vec<String> {
        let mut changes = Vec::new();
        while let Some(next) = next_record(table.as_ref(), live) {
            assert_eq!(
                next.generation,
                table.as_ref().map_or(0, |t| t.generation) + 1
            );
            changes.push(next.change.clone());
            *table = Some(next);
            assert!(changes.len() < 20, "{changes:?}");
        }
        changes
    }

    #[test]
    fn one_change_per_generation_in_order() {
        let mut table = None;
        let changes = converge(&mut table, &live(&[("n0", A), ("n1", A), ("n2", A)]));
        assert_eq!(changes, ["n0 joined", "n1 joined", "n2 joined"]);
        let t = table.as_ref().unwrap();
        assert_eq!(
            t.members.iter().map(|m| m.joined).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        // n0 drains while n3 arrives and n1 is gone: n1 first, then the drain.
        let changes = converge(&mut table, &live(&[("n0", D), ("n2", A), ("n3", A)]));
        assert_eq!(changes, ["n1 left", "n0 draining", "n3 joined"]);
        let t = table.as_ref().unwrap();
        let n0 = t.members.iter().find(|m| m.node == "n0").unwrap();
        assert_eq!((n0.state, n0.drained), (D, Some(5)));
        assert_eq!(
            converge(&mut table, &live(&[("n0", D), ("n2", A), ("n3", A)])).len(),
            0
        );
    }

    #[test]
    fn a_generation_is_everywhere_when_every_live_member_has_it() {
        let members = live(&[("n0", A), ("n1", A)]);
        let mut acks = BTreeMap::from([("n0".to_string(), 3)]);
        assert!(!everywhere(&members, &acks, 3));
        assert_eq!(waiting_for(&members, &acks, 3), ["n1"]);
        acks.insert("n1".into(), 4);
        assert!(everywhere(&members, &acks, 3));
        // A dead node's ack went with its lease; an ack of a node not live is ignored.
        acks.insert("gone".into(), 1);
        assert!(everywhere(&members, &acks, 3));
    }
}
