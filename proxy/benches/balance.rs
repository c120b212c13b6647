//! The balancing algorithms' own cost per new connection: what `connect_backend` does
//! before its connect (hash the key, pick the first candidate, count the connection
//! open) and at the close (count it closed), in ns, for each algorithm with 3 and 100
//! backends, each backend holding some long connections. Rounds rotate the order;
//! printed: median (min-max) of the rounds and the median of the per-round ratios to
//! Maglev. No root needed; `cargo xtask bench balance` runs it before its end-to-end
//! figure (LB CPU per proxied connection).

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Instant;

use lab::stats::{median, min_max};
use proxy::config::{Balance, Config, Listener, Pool as PoolConfig};
use proxy::datapath::balance::{Connection, KeyInput, Pool};
use proxy::metrics::Metrics;

const PICKS: u32 = 200_000;
const ROUNDS: usize = 15;

fn pool(balance: Balance, backends: usize, metrics: &Metrics) -> Pool {
    let addrs: Vec<SocketAddr> = (0..backends)
        .map(|i| SocketAddr::from(([10, 0, (i / 250) as u8, (i % 250) as u8 + 1], 80)))
        .collect();
    let mut settings = PoolConfig::new("p", addrs);
    settings.balance = balance;
    if balance == Balance::Maglev {
        settings.hash_key = proxy::config::HashKey::ClientIpPort;
    }
    // Validated as the daemon would.
    let config = Config::new()
        .with_listener(Listener::new("l", "127.0.0.1:1".parse().unwrap(), "p"))
        .with_pool(settings);
    config.validate().expect("a valid pool");
    Pool::build(&config.pools[0], None, &[], metrics).expect("a pool")
}

/// ns per pick: key hash, the first of up to 3 candidates, counted open, then closed.
fn picks(pool: &Pool) -> f64 {
    let started = Instant::now();
    for i in 0..PICKS {
        let client =
            SocketAddr::from(([192, 0, 2, (i % 250) as u8 + 1], (i % 60_000) as u16 + 1024));
        let key = pool.key_hash(&KeyInput { client, sni: None });
        let first = pool.candidates(key, 3).next().expect("a candidate");
        let open: Connection = first.connection();
        black_box(&open);
    }
    started.elapsed().as_nanos() as f64 / f64::from(PICKS)
}

fn main() {
    let metrics = Metrics::new();
    for backends in [3, 100] {
        let pools: Vec<Pool> = Balance::ALL
            .iter()
            .map(|&b| pool(b, backends, &metrics))
            .collect();
        // Long connections held open: 0 to 99 per backend, the same in every pool.
        let mut held = Vec::new();
        for p in &pools {
            for (i, b) in p.backends().iter().enumerate() {
                for _ in 0..(i * 37) % 100 {
                    held.push(b.connection());
                }
            }
        }
        let mut ns = vec![Vec::new(); pools.len()];
        for round in 0..ROUNDS {
            let mut order: Vec<usize> = (0..pools.len()).collect();
            order.rotate_left(round % pools.len());
            for i in order {
                ns[i].push(picks(&pools[i]));
            }
        }
        println!(
            "\nns per pick ({backends} backends; key hash, first candidate, counted open and closed), \
             {ROUNDS} rounds of {PICKS} picks, order rotating\n\n\
             | algorithm | ns per pick, median (min-max) | ratio to Maglev, median of the rounds |\n|---|---|---|"
        );
        for (i, b) in Balance::ALL.iter().enumerate() {
            let (lo, hi) = min_max(&ns[i]);
            let ratios: Vec<f64> = ns[i].iter().zip(&ns[0]).map(|(a, m)| a / m).collect();
            println!(
                "| {} | {:.0} ({lo:.0}-{hi:.0}) | {:.2} |",
                b.name(),
                median(&ns[i]),
                median(&ratios)
            );
        }
        drop(held);
    }
}
