//! How fleet membership and the forwarding table look in etcd, under the fleet's
//! prefix (the one `[fleet.policy]` uses):
//!
//! - `<prefix>steering/members/<node>`: a [`MemberValue`] each node writes about itself,
//!   attached to its lease (it goes when the node stops renewing it);
//! - `<prefix>steering/table`: the [`TableRecord`] every node computes the table from
//!   (no lease: it outlives any node), replaced only by a compare-and-swap;
//! - `<prefix>steering/acks/<node>`: an [`AckValue`], the generation the node has
//!   installed, on its lease.
//!
//! Values are JSON. A value another writer put there that does not parse or check
//! out is skipped with its key named (the caller counts it).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::config::fleet_policy::valid_node_name;

/// A member's part in the fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberState {
    /// Takes rows (new connections).
    Active,
    /// Gives up its rows; keeps its connections until they end.
    Draining,
}

impl MemberState {
    pub fn name(self) -> &'static str {
        match self {
            MemberState::Active => "active",
            MemberState::Draining => "draining",
        }
    }
}

/// `steering/members/<node>`: a node about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberValue {
    pub node: String,
    /// Where the other nodes send it GUE.
    pub address: IpAddr,
    pub port: u16,
    pub state: MemberState,
    /// When it registered (Unix ms), for operators.
    pub since_unix_ms: u64,
}

/// A member of a table generation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableMember {
    pub node: String,
    pub address: IpAddr,
    pub port: u16,
    pub state: MemberState,
    /// The generation it joined in.
    pub joined: u64,
    /// The generation it began draining in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drained: Option<u64>,
}

/// `steering/table`: the input of the forwarding table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableRecord {
    pub generation: u64,
    pub members: Vec<TableMember>,
    /// What changed from the previous generation, for operators.
    #[serde(default)]
    pub change: String,
}

/// `steering/acks/<node>`: the generation this node has installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckValue {
    pub generation: u64,
}

/// The most members a table takes (the kernel's table has room for this many).
pub const MAX_MEMBERS: usize = proxy_common::steering::STEER_MAX_MEMBERS;

pub fn steering_prefix(prefix: &str) -> String {
    format!("{prefix}steering/")
}

pub fn member_key(prefix: &str, node: &str) -> String {
    format!("{prefix}steering/members/{node}")
}

pub fn table_key(prefix: &str) -> String {
    format!("{prefix}steering/table")
}

pub fn ack_key(prefix: &str, node: &str) -> String {
    format!("{prefix}steering/acks/{node}")
}

/// What a key under `<prefix>steering/` holds, parsed and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Member(MemberValue),
    Table(TableRecord),
    Ack(String, AckValue),
}

/// Which key `key` is: `Ok(None)` for a key of something else under the prefix.
pub fn parse(prefix: &str, key: &[u8], value: &[u8]) -> Result<Option<Entry>, String> {
    let key = std::str::from_utf8(key).map_err(|_| "key is not UTF-8".to_string())?;
    let Some(rest) = key.strip_prefix(&steering_prefix(prefix)) else {
        return Ok(None);
    };
    let json = |what: &str| format!("value is not {what} JSON");
    if rest == "table" {
        let record: TableRecord =
            serde_json::from_slice(value).map_err(|e| format!("{}: {e}", json("a table")))?;
        check_table(&record)?;
        return Ok(Some(Entry::Table(record)));
    }
    if let Some(node) = rest.strip_prefix("members/") {
        let member: MemberValue =
            serde_json::from_slice(value).map_err(|e| format!("{}: {e}", json("a member")))?;
        if member.node != node {
            return Err(format!(
                "value is for {:?} but the key says {node:?}",
                member.node
            ));
        }
        check_node(node)?;
        check_address(member.address, member.port)?;
        return Ok(Some(Entry::Member(member)));
    }
    if let Some(node) = rest.strip_prefix("acks/") {
        check_node(node)?;
        let ack: AckValue =
            serde_json::from_slice(value).map_err(|e| format!("{}: {e}", json("an ack")))?;
        return Ok(Some(Entry::Ack(node.to_string(), ack)));
    }
    Ok(None)
}

/// What is left of a key when it is deleted: whose member or ack it was.
pub fn deleted(prefix: &str, key: &[u8]) -> Option<(bool, String)> {
    let key = std::str::from_utf8(key).ok()?;
    let rest = key.strip_prefix(&steering_prefix(prefix))?;
    if let Some(node) = rest.strip_prefix("members/") {
        return Some((true, node.to_string()));
    }
    rest.strip_prefix("acks/").map(|n| (false, n.to_string()))
}

fn check_node(node: &str) -> Result<(), String> {
    if valid_node_name(node) {
        Ok(())
    } else {
        Err(format!("{node:?} is not a node name"))
    }
}

fn check_address(address: IpAddr, port: u16) -> Result<(), String> {
    if address.is_unspecified() || address.is_loopback() || port == 0 {
        return Err(format!("{address} port {port} is not a member's address"));
    }
    Ok(())
}

fn check_table(record: &TableRecord) -> Result<(), String> {
    if record.members.len() > MAX_MEMBERS {
        return Err(format!(
            "{} members: a table holds at most {MAX_MEMBERS}",
            record.members.len()
        ));
    }
    for (i, m) in record.members.iter().enumerate() {
        check_node(&m.node)?;
        check_address(m.address, m.port)?;
        if record.members[..i].iter().any(|o| o.node == m.node) {
            return Err(format!("member {:?} is listed twice", m.node));
        }
        if m.joined > record.generation || m.drained.is_some_and(|d| d > record.generation) {
            return Err(format!(
                "member {:?} joined or began draining after generation {}",
                m.node, record.generation
            ));
        }
        if (m.state == MemberState::Draining) != m.drained.is_some() {
            return Err(format!(
                "member {:?}: a draining member needs `drained`, an active one none",
                m.node
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(node: &str) -> MemberValue {
        MemberValue {
            node: node.into(),
            address: "10.77.0.1".parse().unwrap(),
            port: 19523,
            state: MemberState::Active,
            since_unix_ms: 1,
        }
    }

    #[test]
    fn keys_parse_back() {
        let p = "/proxy/";
        let m = member("node1");
        let v = serde_json::to_vec(&m).unwrap();
        assert_eq!(
            parse(p, member_key(p, "node1").as_bytes(), &v).unwrap(),
            Some(Entry::Member(m))
        );
        let ack = serde_json::to_vec(&AckValue { generation: 7 }).unwrap();
        assert_eq!(
            parse(p, ack_key(p, "node1").as_bytes(), &ack).unwrap(),
            Some(Entry::Ack("node1".into(), AckValue { generation: 7 }))
        );
        assert_eq!(
            deleted(p, ack_key(p, "n").as_bytes()),
            Some((false, "n".into()))
        );
        assert_eq!(
            deleted(p, member_key(p, "n").as_bytes()),
            Some((true, "n".into()))
        );
        assert_eq!(parse(p, b"/proxy/entries/block/x", b"{}").unwrap(), None);
    }

    #[test]
    fn bad_values_say_what_is_wrong() {
        let p = "/proxy/";
        let good = serde_json::to_vec(&member("node1")).unwrap();
        let table = |members: Vec<TableMember>| {
            serde_json::to_vec(&TableRecord {
                generation: 2,
                members,
                change: String::new(),
            })
            .unwrap()
        };
        let tm = |node: &str, joined: u64, drained: Option<u64>| TableMember {
            node: node.into(),
            address: "10.77.0.2".parse().unwrap(),
            port: 19523,
            state: if drained.is_some() {
                MemberState::Draining
            } else {
                MemberState::Active
            },
            joined,
            drained,
        };
        let mut loopback = member("node1");
        loopback.address = "127.0.0.1".parse().unwrap();
        for (key, value, needle) in [
            (member_key(p, "node2"), good.clone(), "key says"),
            (member_key(p, "no de"), good.clone(), "key says"),
            (member_key(p, "node1"), b"{".to_vec(), "not a member"),
            (
                member_key(p, "node1"),
                serde_json::to_vec(&loopback).unwrap(),
                "not a member's address",
            ),
            (ack_key(p, "a b"), b"{}".to_vec(), "not a node name"),
            (table_key(p), b"[]".to_vec(), "not a table"),
            (
                table_key(p),
                table(vec![tm("a", 3, None)]),
                "after generation",
            ),
            (
                table_key(p),
                table(vec![tm("a", 1, None), tm("a", 1, None)]),
                "twice",
            ),
            (
                table_key(p),
                table(vec![TableMember {
                    drained: None,
                    ..tm("a", 1, Some(2))
                }]),
                "needs `drained`",
            ),
        ] {
            let e = parse(p, key.as_bytes(), &value).unwrap_err();
            assert!(e.contains(needle), "{key}: {e}");
        }
    }
}
