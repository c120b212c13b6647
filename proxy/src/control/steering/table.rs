//! The fleet's forwarding table, computed the same on every node from one table
//! record (`store::TableRecord`: the members with their state and the generations
//! they joined and began draining in). Pure: no I/O.
//!
//! Rendezvous hashing: every member has a score per row (a hash of its name and the
//! row); the row's primary is the active member with the highest score, so a member
//! joining or leaving moves only the rows it wins or held, about 1/N of them. The
//! secondary is the second chance for connections the primary does not know:
//!
//! 1. a draining member that was the row's primary when it began draining (it gives
//!    up its primaries but keeps its connections until they end);
//! 2. else the best active member that joined no later than the primary: for a row a
//!    new member took, that is its previous owner;
//! 3. else the runner-up.
//!
//! Two changes in a row's ownership within one connection's lifetime can still cost
//! the older owner's connections (the row keeps one second chance): that is why the
//! rollout makes one change at a time.

use std::net::IpAddr;

use proxy_common::steering::{STEER_NO_MEMBER, STEER_ROWS};

use super::store::{MemberState, TableMember, TableRecord};

/// One row: indexes into [`Table::members`] ([`STEER_NO_MEMBER`]: none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    pub primary: u16,
    pub secondary: u16,
}

/// A computed table, ready for the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub generation: u64,
    /// Members in index order (by name).
    pub members: Vec<TableMember>,
    pub rows: Vec<Row>,
}

impl Table {
    /// The index of `node`, if it is a member.
    pub fn index_of(&self, node: &str) -> Option<u16> {
        self.members
            .iter()
            .position(|m| m.node == node)
            .map(|i| i as u16)
    }

    /// Rows where each member is primary and secondary, in index order.
    pub fn rows_per_member(&self) -> Vec<(u32, u32)> {
        let mut counts = vec![(0u32, 0u32); self.members.len()];
        for r in &self.rows {
            if let Some(c) = counts.get_mut(r.primary as usize) {
                c.0 += 1;
            }
            if let Some(c) = counts.get_mut(r.secondary as usize) {
                c.1 += 1;
            }
        }
        counts
    }

    /// The members' (address, port), in index order.
    pub fn addresses(&self) -> Vec<(IpAddr, u16)> {
        self.members.iter().map(|m| (m.address, m.port)).collect()
    }
}

/// A member's score for a row: a 64-bit mix of its name's hash and the row.
fn score(name_hash: u64, row: u64) -> u64 {
    let mut z = name_hash ^ row.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    // splitmix64's finaliser
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// FNV-1a of a member's name: fixed, so every node and version agrees.
fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Computes the table of `record` (members are put in name order first).
pub fn compute(record: &TableRecord) -> Table {
    let mut members = record.members.clone();
    members.sort_by(|a, b| a.node.cmp(&b.node));
    let hashes: Vec<u64> = members.iter().map(|m| name_hash(&m.node)).collect();
    let active = |i: usize| members[i].state == MemberState::Active;
    // For each draining member, who it competed with when it began draining: the
    // members that had joined before and were still active then.
    let rivals: Vec<(usize, Vec<usize>)> = (0..members.len())
        .filter(|&d| !active(d))
        .map(|d| {
            let since = members[d].drained.unwrap_or(0);
            let before: Vec<usize> = (0..members.len())
                .filter(|&m| {
                    members[m].joined < since
                        && (active(m) || members[m].drained.is_some_and(|x| x >= since))
                })
                .collect();
            (d, before)
        })
        .collect();
    let mut scores = vec![0u64; members.len()];
    let rows = (0..STEER_ROWS as u64)
        .map(|row| {
            for (i, s) in scores.iter_mut().enumerate() {
                *s = score(hashes[i], row);
            }
            let best = |candidates: &mut dyn Iterator<Item = usize>| {
                candidates.max_by_key(|&i| (scores[i], std::cmp::Reverse(i)))
            };
            let primary = best(&mut (0..members.len()).filter(|&i| active(i)))
                // Everybody drains: the best of them still takes the row.
                .or_else(|| best(&mut (0..members.len())));
            let Some(primary) = primary else {
                return Row {
                    primary: STEER_NO_MEMBER,
                    secondary: STEER_NO_MEMBER,
                };
            };
            let drained_owner = rivals
                .iter()
                .filter(|(d, before)| {
                    *d != primary && best(&mut before.iter().copied()) == Some(*d)
                })
                .map(|(d, _)| *d)
                .max_by_key(|&d| scores[d]);
            let joined = members[primary].joined;
            let previous_owner = best(
                &mut (0..members.len())
                    .filter(|&i| i != primary && active(i) && members[i].joined <= joined),
            );
            let runner_up = best(&mut (0..members.len()).filter(|&i| i != primary && active(i)));
            let secondary = drained_owner.or(previous_owner).or(runner_up);
            Row {
                primary: primary as u16,
                secondary: secondary.map_or(STEER_NO_MEMBER, |s| s as u16),
            }
        })
        .collect();
    Table {
        generation: record.generation,
        members,
        rows,
    }
}

/// Rows whose primary is a different member (by name) in `after` than in `before`.
pub fn rows_moved(before: &Table, after: &Table) -> usize {
    fn name(t: &Table, i: u16) -> Option<&str> {
        t.members.get(i as usize).map(|m| m.node.as_str())
    }
    before
        .rows
        .iter()
        .zip(&after.rows)
        .filter(|(a, b)| name(before, a.primary) != name(after, b.primary))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(node: &str, joined: u64) -> TableMember {
        TableMember {
            node: node.into(),
            address: "10.77.0.1".parse().unwrap(),
            port: 19523,
            state: MemberState::Active,
            joined,
            drained: None,
        }
    }

    fn record(generation: u64, members: Vec<TableMember>) -> TableRecord {
        TableRecord {
            generation,
            members,
            change: String::new(),
        }
    }

    fn owner(t: &Table, row: usize) -> (&str, Option<&str>) {
        let r = t.rows[row];
        let name = |i: u16| t.members.get(i as usize).map(|m| m.node.as_str());
        (name(r.primary).unwrap(), name(r.secondary))
    }

    #[test]
    fn scores_are_pinned() {
        // Every node and version must agree: a change here moves every connection.
        let t = compute(&record(1, vec![member("node0", 1), member("node1", 1)]));
        let first: Vec<u16> = t.rows[..8].iter().map(|r| r.primary).collect();
        assert_eq!(first, [1, 1, 0, 0, 0, 1, 1, 1], "{first:?}");
    }

    #[test]
    fn shares_are_even_and_member_order_does_not_matter() {
        let names = ["a", "b", "c", "d", "e"];
        let t = compute(&record(5, names.iter().map(|n| member(n, 1)).collect()));
        let shuffled = compute(&record(
            5,
            names.iter().rev().map(|n| member(n, 1)).collect(),
        ));
        assert_eq!(t, shuffled);
        for (primary, secondary) in t.rows_per_member() {
            let due = STEER_ROWS as f64 / 5.0;
            assert!((primary as f64 - due).abs() < due * 0.03, "{primary}");
            assert!(secondary > 0);
        }
        assert!(t.rows.iter().all(|r| r.primary != r.secondary));
    }

    #[test]
    fn an_added_member_takes_about_one_nth_and_the_old_owner_is_second() {
        let three: Vec<_> = ["a", "b", "c"].iter().map(|n| member(n, 1)).collect();
        let before = compute(&record(3, three.clone()));
        let mut four = three;
        four.push(member("d", 4));
        let after = compute(&record(4, four));
        let moved = rows_moved(&before, &after);
        let share = moved as f64 / STEER_ROWS as f64;
        assert!((share - 0.25).abs() < 0.01, "{share}");
        for row in 0..STEER_ROWS {
            let (old, _) = owner(&before, row);
            let (new, second) = owner(&after, row);
            if new != old {
                assert_eq!(new, "d", "only the new member takes rows");
                assert_eq!(second, Some(old), "row {row}: the previous owner is second");
            }
        }
    }

    #[test]
    fn a_draining_member_gives_up_its_rows_and_stays_their_secondary() {
        let all: Vec<_> = ["a", "b", "c"].iter().map(|n| member(n, 1)).collect();
        let before = compute(&record(3, all.clone()));
        let mut draining = all;
        draining[1].state = MemberState::Draining;
        draining[1].drained = Some(4);
        let after = compute(&record(4, draining.clone()));
        assert_eq!(after.rows_per_member()[1].0, 0, "b is primary nowhere");
        for row in 0..STEER_ROWS {
            let (old, _) = owner(&before, row);
            let (new, second) = owner(&after, row);
            if old == "b" {
                assert_ne!(new, "b");
                assert_eq!(second, Some("b"), "row {row}");
            } else {
                assert_eq!(new, old, "row {row}: other rows stay");
            }
        }
        // A member added while b drains: b keeps the second chance of its own rows.
        draining.push(member("d", 5));
        let later = compute(&record(5, draining));
        for row in 0..STEER_ROWS {
            if owner(&before, row).0 == "b" {
                assert_eq!(owner(&later, row).1, Some("b"), "row {row}");
            }
        }
    }

    #[test]
    fn a_removed_member_moves_only_its_own_rows() {
        let three: Vec<_> = ["a", "b", "c"].iter().map(|n| member(n, 1)).collect();
        let before = compute(&record(3, three.clone()));
        let after = compute(&record(4, vec![three[0].clone(), three[2].clone()]));
        for row in 0..STEER_ROWS {
            let (old, _) = owner(&before, row);
            let (new, _) = owner(&after, row);
            assert!(old == "b" || new == old, "row {row}");
        }
        let share = rows_moved(&before, &after) as f64 / STEER_ROWS as f64;
        assert!((share - 1.0 / 3.0).abs() < 0.01, "{share}");
    }

    #[test]
    fn one_member_has_no_secondary_and_none_has_no_rows() {
        let t = compute(&record(1, vec![member("a", 1)]));
        assert!(
            t.rows
                .iter()
                .all(|r| r.primary == 0 && r.secondary == STEER_NO_MEMBER)
        );
        let t = compute(&record(2, vec![]));
        assert!(t.rows.iter().all(|r| r.primary == STEER_NO_MEMBER));
    }
}
