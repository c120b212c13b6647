//! The load generator's `idle` mode as a handle: TLS connections opened and held
//! until the handle closes (benchmarks measure the LB while they are held).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};

use anyhow::Context;
use lab::Netns;

pub struct IdleClients {
    child: Child,
    /// Connections the generator opened (of those asked for).
    pub opened: usize,
}

impl IdleClients {
    /// Opens `count` TLS connections to `addr` (server name `name`, trusting `ca`)
    /// from `ns` pinned to `cpu`; returns once they are all open.
    pub fn open(
        ns: &Netns,
        cpu: &str,
        generator: &Path,
        tls: &str,
        count: usize,
    ) -> anyhow::Result<IdleClients> {
        let mut child = ns
            .command_on_cpu(
                cpu,
                &format!("{} client idle {tls} --count {count}", generator.display()),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().context("stdout")?).read_line(&mut line)?;
        let opened = line
            .strip_prefix("ready ")
            .and_then(|n| n.trim().parse().ok())
            .with_context(|| format!("idle client: {line:?}"))?;
        Ok(IdleClients { child, opened })
    }

    /// Closes every connection and waits for the generator to exit.
    pub fn close(mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}
