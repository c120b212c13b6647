//! The lab's own topologies, with real packets: every host reaches the hosts it
//! should, and nothing is left behind after drop. Needs root.

use lab::{Fleet, Topology};

fn namespaces() -> Vec<String> {
    lab::netns::sh("ip netns list")
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

fn ping(from: &lab::Host, to: &str) -> bool {
    let family = if to.contains(':') { "-6" } else { "-4" };
    from.ns
        .try_sh(&format!("ping {family} -c 3 -i 0.2 -W 2 {to}"))
        .status
        .success()
}

#[test]
fn fleet_nodes_are_reached_through_the_router_and_cleaned_up() {
    lab::require_root();
    let made: Vec<String>;
    {
        let fleet = Fleet::build(3, 2).unwrap();
        assert_eq!(fleet.nodes.hosts.len(), 3);
        for client in &fleet.clients.hosts {
            assert!(client.ipv4.starts_with("10.78.0."), "{}", client.ipv4);
            for node in &fleet.nodes.hosts {
                assert!(ping(client, &node.ipv4), "{} -> {}", client.ipv4, node.ipv4);
                assert!(ping(client, &node.ipv6), "{} -> {}", client.ipv6, node.ipv6);
            }
        }
        // The path goes through the router: one hop less TTL.
        let out = fleet.clients.hosts[0]
            .ns
            .sh(&format!("ping -4 -c 1 -W 2 {}", fleet.nodes.hosts[0].ipv4));
        assert!(out.contains("ttl=63"), "{out}");
        let mut names = vec![fleet.router.name.clone()];
        for topo in [&fleet.nodes, &fleet.clients] {
            names.extend(topo.hosts.iter().map(|h| h.ns.name.clone()));
            names.push(topo.switch_name().unwrap().to_owned());
        }
        let listed = namespaces();
        assert!(
            names.iter().all(|n| listed.contains(n)),
            "{names:?} in {listed:?}"
        );
        made = names;
    }
    let listed = namespaces();
    let left: Vec<&String> = made.iter().filter(|n| listed.contains(n)).collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    assert_eq!(made.len(), 3 + 2 + 2 + 1);
}

#[test]
fn star_and_pair_hosts_reach_each_other() {
    lab::require_root();
    let star = Topology::new(&["a", "b", "c"]);
    assert!(ping(star.host(0), &star.host(2).ipv4));
    assert!(ping(star.host(2), &star.host(1).ipv6));
    let pair = Topology::pair("x", "y").unwrap();
    assert!(ping(pair.host(0), &pair.host(1).ipv4));
    assert_eq!(pair.switch_name(), None);
}
