//! Every product running at once, each on its own address of the `lb` namespace
//! (10.77.0.11 and up, all pinned to the LB core, idle while not measured): the
//! set-up of the interleaved figures (`tails`, `costs`).

use std::collections::BTreeMap;

use lab::Proc;

use super::{Bench, Product};

pub struct Lineup<'a> {
    bench: &'a Bench<'a>,
    ifname: String,
    /// The addresses added to `ifname` (removed on drop).
    added: Vec<String>,
    /// Each product's address, and its running process.
    running: BTreeMap<Product, (String, Proc)>,
}

impl<'a> Lineup<'a> {
    /// Adds an address per product to `ifname` and starts each product on its own.
    pub fn start(bench: &'a Bench<'a>, ifname: &str, products: &[Product]) -> anyhow::Result<Self> {
        let mut lineup = Lineup {
            bench,
            ifname: ifname.to_string(),
            added: Vec::new(),
            running: BTreeMap::new(),
        };
        for (i, &p) in products.iter().enumerate() {
            let ip = format!("10.77.0.{}", 11 + i);
            bench
                .lb
                .exec(&format!("ip addr add {ip}/24 dev {ifname}"))?;
            lineup.added.push(ip.clone());
            let proc = bench.start_at(p, &ip)?;
            lineup.running.insert(p, (ip, proc));
        }
        Ok(lineup)
    }

    pub fn addr(&self, product: Product) -> &str {
        &self.running[&product].0
    }

    pub fn proc(&self, product: Product) -> &Proc {
        &self.running[&product].1
    }
}

impl Drop for Lineup<'_> {
    fn drop(&mut self) {
        self.running.clear(); // stops the products
        for ip in &self.added {
            let _ = self
                .bench
                .lb
                .exec(&format!("ip addr del {ip}/24 dev {}", self.ifname));
        }
    }
}

/// The products the proxy is compared with (none when the proxy is not measured).
pub fn peers(products: &[Product]) -> Vec<Product> {
    match products.contains(&Product::Proxy) {
        true => products
            .iter()
            .copied()
            .filter(|p| *p != Product::Proxy)
            .collect(),
        false => Vec::new(),
    }
}
