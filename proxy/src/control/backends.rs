//! Runtime control of backends (`proxy backend set`): the operator's change checked,
//! applied to the running pool (its algorithm rebuilt) and logged with who made it;
//! and what reloads and upgrades do with such changes. They live on the backends
//! themselves, so a reload that keeps a backend keeps them; a reload that removes it
//! drops them (logged), and an upgrade hands them to the new process.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::api::{BackendChange, BackendRuntime, BackendState, RuntimeChange};
use crate::config::MAX_WEIGHT;
use crate::datapath::balance::{Backend, Control, Moved, Pool};

/// Who asks, from the admin socket's peer credentials (SO_PEERCRED).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    pub uid: u32,
    pub pid: Option<i32>,
}

impl Caller {
    /// `uid 0 pid 4242`.
    pub fn describe(&self) -> String {
        match self.pid {
            Some(pid) => format!("uid {} pid {pid}", self.uid),
            None => format!("uid {}", self.uid),
        }
    }
}

/// Applies `change` to backend `address` of pool `pool` (one of `pools`); the answer
/// for the operator, or why the change is refused (nothing changed then).
pub fn set(
    pools: &HashMap<String, Arc<Pool>>,
    pool: &str,
    address: SocketAddr,
    change: BackendChange,
    caller: &Caller,
) -> Result<String, String> {
    let Some(p) = pools.get(pool) else {
        let mut names: Vec<&str> = pools.keys().map(String::as_str).collect();
        names.sort_unstable();
        return Err(format!(
            "no pool named {pool:?}; the pools are: {}",
            names.join(", ")
        ));
    };
    let Some(backend) = p.backend(address) else {
        let addresses: Vec<String> = p.backends().iter().map(|b| b.address.to_string()).collect();
        return Err(format!(
            "pool {pool} has no backend {address}; its backends are: {}",
            addresses.join(", ")
        ));
    };
    let config_weight = p.config_weight(&backend);
    let before = backend.control();
    let mut after = before.clone();
    let mut close = false;
    match change {
        BackendChange::State { state, close: c } => {
            if c && state == BackendState::Ready {
                return Err(
                    "--close closes the backend's open connections and goes with \
                            `drain` or `maint`; `ready` keeps them open"
                        .into(),
                );
            }
            after.state = state;
            close = c;
        }
        BackendChange::Weight { weight } => {
            if weight > MAX_WEIGHT {
                return Err(format!(
                    "weight {weight} is above the maximum, {MAX_WEIGHT} (as in the file)"
                ));
            }
            // The file's own weight returns the backend to the file.
            after.weight = (weight != config_weight).then_some(weight);
        }
    }
    after.changed = after.is_runtime().then(|| RuntimeChange {
        by: caller.describe(),
        at_unix: unix_now(),
    });
    backend.set_control(after.clone());
    let moved = match p.rebuild() {
        Ok(moved) => moved,
        Err(e) => {
            backend.set_control(before);
            let _ = p.rebuild();
            return Err(format!("pool {pool}: the change cannot be applied: {e}"));
        }
    };
    let open = backend.active_connections();
    if close {
        backend.cut_connections();
    }
    let (state_origin, weight_origin) = after.origins();
    let weight = after.weight(config_weight);
    tracing::info!(
        pool,
        backend = %address,
        state = after.state.label(),
        previous_state = before.state.label(),
        state_origin = state_origin.label(),
        weight,
        previous_weight = before.weight(config_weight),
        weight_origin = weight_origin.label(),
        closed_connections = if close { open } else { 0 },
        uid = caller.uid,
        pid = caller.pid,
        moved_slots = moved.map(|m| m.slots),
        table_slots = moved.map(|m| m.of),
        moved_percent = moved.map(|m| format!("{:.2}", m.percent())),
        "backend changed at runtime"
    );
    let mut answer = format!(
        "pool {pool} backend {address}: state {} ({}), weight {weight} ({})",
        after.state.label(),
        state_origin.label(),
        weight_origin.label()
    );
    if before.state != after.state {
        answer += &format!("; was {}", before.state.label());
    }
    match (close, after.state) {
        (true, _) => answer += &format!("; {open} open connections closed"),
        (false, BackendState::Drain | BackendState::Maint) if open > 0 => {
            answer += &format!("; its {open} open connections continue")
        }
        _ => {}
    }
    if let Some(m) = moved {
        answer += &format!(
            "; Maglev table rebuilt: {} of {} slots moved ({:.2} %)",
            m.slots,
            m.of,
            m.percent()
        );
    }
    if !p.backends().iter().any(|b| takes_new_connections(p, b)) {
        tracing::warn!(
            pool,
            "no backend of the pool takes new connections now: its clients are refused"
        );
        answer += "; WARNING: no backend of this pool takes new connections now";
    }
    Ok(answer)
}

/// Ready with a weight above 0 (health aside).
fn takes_new_connections(pool: &Pool, backend: &Backend) -> bool {
    backend
        .control()
        .serving_weight(pool.config_weight(backend))
        > 0
}

/// Every backend with runtime settings, for the process taking over.
pub fn runtime_state(pools: &HashMap<String, Arc<Pool>>) -> Vec<BackendRuntime> {
    let mut all = Vec::new();
    for (name, pool) in pools {
        for b in pool.backends() {
            let control = b.control();
            if control.is_runtime() {
                all.push(BackendRuntime {
                    pool: name.clone(),
                    address: b.address,
                    state: control.state,
                    weight: control.weight,
                    changed: control.changed,
                });
            }
        }
    }
    all.sort_by(|a, b| (&a.pool, a.address).cmp(&(&b.pool, b.address)));
    all
}

/// After a reload switched from `old` to `new` pools: logs the runtime settings it
/// dropped (their backend left the file) and those the file's new weight does not
/// override, returns to the file a runtime weight the file now has itself, and logs
/// how much of each Maglev table moved.
pub fn after_reload(old: &HashMap<String, Arc<Pool>>, new: &HashMap<String, Arc<Pool>>) {
    for (name, before) in old {
        let after = new.get(name);
        for b in before.backends() {
            let control = b.control();
            let kept = after.and_then(|p| p.backend(b.address).filter(|k| Arc::ptr_eq(k, &b)));
            match (kept, after) {
                (None, _) if control.is_runtime() => tracing::info!(
                    pool = %name,
                    backend = %b.address,
                    state = control.state.label(),
                    weight = control.weight,
                    "backend removed from the configuration: its runtime state is dropped"
                ),
                (Some(_), Some(p)) => follow_file_weight(p, &b, &control, before.config_weight(&b)),
                _ => {}
            }
        }
        if let Some(m) = after
            .and_then(|p| p.moved_from(before))
            .filter(|m| m.slots > 0)
        {
            log_moved(name, m);
        }
    }
}

/// A kept backend with a runtime weight, in `pool` after a reload.
fn follow_file_weight(pool: &Pool, b: &Backend, control: &Control, old_file_weight: u32) {
    let Some(runtime) = control.weight else {
        return;
    };
    let file = pool.config_weight(b);
    if file == runtime {
        b.set_control(Control {
            weight: None,
            ..control.clone()
        });
        pool.show_state();
    } else if file != old_file_weight {
        tracing::warn!(
            pool = %pool.name(),
            backend = %b.address,
            file_weight = file,
            runtime_weight = runtime,
            "the file changed this backend's weight, but its weight was set at runtime: the \
             runtime weight stays in force (`proxy backend set POOL ADDRESS weight {file}` \
             returns it to the file)"
        );
    }
}

fn log_moved(pool: &str, m: Moved) {
    tracing::info!(
        pool,
        moved_slots = m.slots,
        table_slots = m.of,
        moved_percent = format!("{:.2}", m.percent()),
        "Maglev table rebuilt by the reload"
    );
}

/// After the first configuration of a process that took over: logs which handed-over
/// runtime settings apply and which were dropped (their backend is not in the file).
pub fn after_takeover(handed_over: &[BackendRuntime], pools: &HashMap<String, Arc<Pool>>) {
    for r in handed_over {
        let applied = pools.get(&r.pool).and_then(|p| p.backend(r.address));
        let by = r.changed.as_ref().map(|c| c.by.as_str());
        match applied {
            Some(_) => tracing::info!(
                pool = r.pool, backend = %r.address, state = r.state.label(), weight = r.weight,
                by, "runtime backend state taken over from the previous process"
            ),
            None => tracing::info!(
                pool = r.pool, backend = %r.address, state = r.state.label(), weight = r.weight,
                by, "handed-over runtime state of a backend the configuration does not have: dropped"
            ),
        }
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::SettingOrigin;
    use crate::config;
    use crate::metrics::Metrics;

    const ROOT: Caller = Caller {
        uid: 0,
        pid: Some(4242),
    };

    fn settings(balance: &str, backends: &[(&str, u32)]) -> config::Pool {
        let list = backends
            .iter()
            .map(|(a, w)| format!("{{ address = \"{a}\", weight = {w} }}"))
            .collect::<Vec<_>>()
            .join(", ");
        let text = format!(
            "[[listener]]\nname = \"l\"\nbind = \"127.0.0.1:1\"\npool = \"web\"\n\
             [[pool]]\nname = \"web\"\nbalance = \"{balance}\"\nbackends = [{list}]\n"
        );
        config::parse(&text).unwrap().pools.remove(0)
    }

    fn pools(pool: Pool) -> HashMap<String, Arc<Pool>> {
        HashMap::from([(pool.name().to_owned(), Arc::new(pool))])
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn state(state: BackendState, close: bool) -> BackendChange {
        BackendChange::State { state, close }
    }

    /// Addresses of the first candidate of many picks.
    fn firsts(pool: &Pool, picks: u64) -> Vec<SocketAddr> {
        (0..picks)
            .map(|k| pool.candidates(k * 7919, 3).next().unwrap().address)
            .collect()
    }

    #[test]
    fn unknown_names_are_refused_with_the_known_ones() {
        let m = Metrics::new();
        let s = settings(
            "least_connections",
            &[("10.0.0.1:80", 1), ("10.0.0.2:80", 1)],
        );
        let p = pools(Pool::build(&s, None, &[], &m).unwrap());
        let drain = state(BackendState::Drain, false);
        let e = set(&p, "webb", addr("10.0.0.1:80"), drain, &ROOT).unwrap_err();
        assert!(
            e.contains("no pool named \"webb\"; the pools are: web"),
            "{e}"
        );
        let e = set(&p, "web", addr("10.0.0.3:80"), drain, &ROOT).unwrap_err();
        assert!(e.contains("10.0.0.1:80, 10.0.0.2:80"), "{e}");
        let heavy = BackendChange::Weight { weight: 1001 };
        let e = set(&p, "web", addr("10.0.0.1:80"), heavy, &ROOT).unwrap_err();
        assert!(e.contains("above the maximum, 1000"), "{e}");
        let e = set(
            &p,
            "web",
            addr("10.0.0.1:80"),
            state(BackendState::Ready, true),
            &ROOT,
        )
        .unwrap_err();
        assert!(e.contains("--close"), "{e}");
        // Nothing changed.
        assert!(
            p["web"]
                .backends()
                .iter()
                .all(|b| !b.control().is_runtime())
        );
    }

    #[test]
    fn drain_ready_and_weight_with_their_origins() {
        let m = Metrics::new();
        let s = settings("round_robin", &[("10.0.0.1:80", 1), ("10.0.0.2:80", 1)]);
        let p = pools(Pool::build(&s, None, &[], &m).unwrap());
        let (a, b) = (addr("10.0.0.1:80"), addr("10.0.0.2:80"));
        let _open = p["web"].backend(a).unwrap().connection();
        let done = set(&p, "web", a, state(BackendState::Drain, false), &ROOT).unwrap();
        assert!(done.contains("state drain (runtime)"), "{done}");
        assert!(done.contains("its 1 open connections continue"), "{done}");
        assert!(firsts(&p["web"], 20).iter().all(|&f| f == b));
        let stats = p["web"].stats();
        assert_eq!(stats.backends[0].state, BackendState::Drain);
        assert_eq!(stats.backends[0].state_origin, SettingOrigin::Runtime);
        assert_eq!(
            stats.backends[0].changed.as_ref().unwrap().by,
            "uid 0 pid 4242"
        );
        // All drained: a warning, and no candidate.
        let done = set(&p, "web", b, state(BackendState::Maint, false), &ROOT).unwrap();
        assert!(done.contains("WARNING: no backend"), "{done}");
        assert_eq!(p["web"].candidates(1, 3).count(), 0);
        for x in [a, b] {
            set(&p, "web", x, state(BackendState::Ready, false), &ROOT).unwrap();
        }
        let stats = p["web"].stats();
        assert!(
            stats
                .backends
                .iter()
                .all(|b| b.state_origin == SettingOrigin::Config)
        );
        assert!(stats.backends.iter().all(|b| b.changed.is_none()));
        // Weight 0 → 2 → the file's 1 again.
        set(&p, "web", a, BackendChange::Weight { weight: 0 }, &ROOT).unwrap();
        assert!(firsts(&p["web"], 20).iter().all(|&f| f == b));
        set(&p, "web", a, BackendChange::Weight { weight: 2 }, &ROOT).unwrap();
        let got = firsts(&p["web"], 30);
        assert_eq!(got.iter().filter(|&&f| f == a).count(), 20, "{got:?}");
        assert_eq!(
            p["web"].stats().backends[0].weight_origin,
            SettingOrigin::Runtime
        );
        set(&p, "web", a, BackendChange::Weight { weight: 1 }, &ROOT).unwrap();
        assert_eq!(
            p["web"].stats().backends[0].weight_origin,
            SettingOrigin::Config
        );
    }

    #[test]
    fn close_cuts_only_that_backends_connections() {
        let m = Metrics::new();
        let s = settings(
            "least_connections",
            &[("10.0.0.1:80", 1), ("10.0.0.2:80", 1)],
        );
        let p = pools(Pool::build(&s, None, &[], &m).unwrap());
        let (a, b) = (addr("10.0.0.1:80"), addr("10.0.0.2:80"));
        let on_a = p["web"].backend(a).unwrap().connection();
        let on_b = p["web"].backend(b).unwrap().connection();
        let done = set(&p, "web", a, state(BackendState::Maint, true), &ROOT).unwrap();
        assert!(done.contains("1 open connections closed"), "{done}");
        let poll = |c: &crate::datapath::balance::Connection| {
            let fut = std::pin::pin!(c.cut());
            let waker = std::task::Waker::noop();
            fut.poll(&mut std::task::Context::from_waker(waker))
                .is_ready()
        };
        use std::future::Future;
        assert!(poll(&on_a), "a's connection is cut");
        assert!(!poll(&on_b), "b's is not");
        // A later connection to a is not cut by the earlier close.
        assert!(!poll(&p["web"].backend(a).unwrap().connection()));
    }

    #[test]
    fn maglev_rebuilds_say_what_moved() {
        let m = Metrics::new();
        let list: Vec<(String, u32)> = (1..=10).map(|i| (format!("10.0.0.{i}:80"), 1)).collect();
        let refs: Vec<(&str, u32)> = list.iter().map(|(a, w)| (a.as_str(), *w)).collect();
        let p = pools(Pool::build(&settings("maglev", &refs), None, &[], &m).unwrap());
        let done = set(
            &p,
            "web",
            addr("10.0.0.4:80"),
            state(BackendState::Drain, false),
            &ROOT,
        )
        .unwrap();
        // About a tenth of the slots (that backend's, plus Maglev's small collateral).
        let moved: u32 = done
            .split("rebuilt: ")
            .nth(1)
            .and_then(|t| t.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{done}"));
        let share = f64::from(moved) / 65_537.0;
        assert!((0.08..=0.12).contains(&share), "{done}");
    }

    #[test]
    fn reloads_keep_runtime_state_and_upgrades_carry_it() {
        let m = Metrics::new();
        let s = settings("random_two", &[("10.0.0.1:80", 1), ("10.0.0.2:80", 1)]);
        let p = pools(Pool::build(&s, None, &[], &m).unwrap());
        let (a, b) = (addr("10.0.0.1:80"), addr("10.0.0.2:80"));
        set(&p, "web", a, state(BackendState::Drain, false), &ROOT).unwrap();
        set(&p, "web", b, BackendChange::Weight { weight: 7 }, &ROOT).unwrap();
        // A reload that keeps both (and changes b's weight in the file): both stay.
        let s2 = settings("random_two", &[("10.0.0.1:80", 1), ("10.0.0.2:80", 3)]);
        let p2 = pools(Pool::build(&s2, Some(&p["web"]), &[], &m).unwrap());
        after_reload(&p, &p2);
        let stats = p2["web"].stats();
        assert_eq!(stats.backends[0].state, BackendState::Drain);
        assert_eq!(
            (stats.backends[1].weight, stats.backends[1].config_weight),
            (7, 3)
        );
        assert!(firsts(&p2["web"], 10).iter().all(|&f| f == b));
        // The upgrade's snapshot, applied by a new process's first build.
        let handed = runtime_state(&p2);
        assert_eq!(handed.len(), 2);
        let fresh = pools(Pool::build(&s2, None, &handed, &Metrics::new()).unwrap());
        assert_eq!(fresh["web"].stats().backends, stats.backends);
        assert!(firsts(&fresh["web"], 10).iter().all(|&f| f == b));
        // A reload without a: its runtime state is gone; a file weight equal to the
        // runtime one returns b to the file.
        let s3 = settings("random_two", &[("10.0.0.2:80", 7), ("10.0.0.1:81", 1)]);
        let p3 = pools(Pool::build(&s3, Some(&p2["web"]), &[], &m).unwrap());
        after_reload(&p2, &p3);
        assert!(runtime_state(&p3).is_empty(), "{:?}", runtime_state(&p3));
        assert_eq!(
            p3["web"].stats().backends[0].weight_origin,
            SettingOrigin::Config
        );
    }
}
