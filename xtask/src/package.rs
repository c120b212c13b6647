//! `cargo xtask package`: the Debian package, built with Debian's own `dpkg-deb`:
//! /usr/bin/proxy, the systemd unit, an example /etc/proxy/proxy.toml (a conffile),
//! the README and `docs/`, the example configurations of `dist/examples/`, manual
//! pages and shell completions, and maintainer scripts (`dist/deb/`) that upgrade a
//! running service through the take-over path.
//!
//! [`check`] (run by `cargo xtask test`) installs two builds of it with `dpkg --root`
//! into a scratch root while the first one's daemon serves a loop of requests in
//! namespaces: the second `dpkg -i` upgrades it through `proxy upgrade` with no
//! failed request.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, ensure};
use lab::netns::host_sh as sh;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The `proxy` binary to package (default: a fresh release build).
    #[arg(long)]
    pub binary: Option<PathBuf>,
    /// Package version (default: the workspace version).
    #[arg(long)]
    pub version: Option<String>,
    /// Where the .deb goes.
    #[arg(long, default_value = "target/debian")]
    pub out: PathBuf,
    /// Instead: install two builds into a scratch root and upgrade a running daemon
    /// with the second (what `cargo xtask test` runs). Root.
    #[arg(long)]
    pub check: bool,
}

pub fn run(args: Args, root: &Path) -> anyhow::Result<()> {
    let binary = match args.binary {
        Some(b) => b,
        None => {
            crate::cargo(root, &["build", "--release", "--quiet", "-p", "proxy"], &[])?;
            root.join("target/release/proxy")
        }
    };
    if args.check {
        return check(root, &binary);
    }
    let version = args
        .version
        .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_string());
    let deb = build_deb(
        root,
        &binary,
        &version,
        &root.join(args.out),
        Compression::Default,
    )?;
    println!("{}", deb.display());
    Ok(())
}

/// How hard `dpkg-deb` compresses.
#[derive(Clone, Copy)]
pub enum Compression {
    /// dpkg-deb's default (xz): the package people install.
    Default,
    /// gzip -1: the check's throwaway packages of a 200+ MB debug binary, built in
    /// seconds instead of minutes.
    Fast,
}

/// Stages the files and runs `dpkg-deb --build`; the .deb's path.
pub fn build_deb(
    root: &Path,
    binary: &Path,
    version: &str,
    out: &Path,
    compression: Compression,
) -> anyhow::Result<PathBuf> {
    let stage = tempfile::Builder::new().prefix("deb-").tempdir()?;
    let s = stage.path();
    let copy = |from: &Path, to: &str, mode: u32| -> anyhow::Result<()> {
        let dest = s.join(to);
        std::fs::create_dir_all(dest.parent().expect("a parent"))?;
        std::fs::copy(from, &dest).with_context(|| format!("copying {}", from.display()))?;
        std::fs::set_permissions(&dest, std::os::unix::fs::PermissionsExt::from_mode(mode))?;
        Ok(())
    };
    copy(binary, "usr/bin/proxy", 0o755)?;
    copy(
        &root.join("dist/proxy.service"),
        "lib/systemd/system/proxy.service",
        0o644,
    )?;
    copy(
        &root.join("dist/deb/proxy.toml"),
        "etc/proxy/proxy.toml",
        0o644,
    )?;
    copy(
        &root.join("README.md"),
        "usr/share/doc/proxy/README.md",
        0o644,
    )?;
    for (dir, installed) in DOC_DIRS {
        for file in files_of(&root.join(dir))? {
            copy(
                &root.join(dir).join(&file),
                &format!("{installed}/{file}"),
                0o644,
            )?;
        }
    }
    generated_docs(binary, s)?;
    for script in ["postinst", "prerm", "postrm"] {
        copy(
            &root.join("dist/deb").join(script),
            &format!("DEBIAN/{script}"),
            0o755,
        )?;
    }
    std::fs::write(s.join("DEBIAN/conffiles"), "/etc/proxy/proxy.toml\n")?;
    std::fs::write(
        s.join("DEBIAN/control"),
        format!(
            "Package: proxy\nVersion: {version}\nArchitecture: amd64\nMaintainer: proxy developers <proxy@localhost>\n\
             Section: net\nPriority: optional\nDepends: libc6\nRecommends: bpftool\nSuggests: bird2, etcd-server\n\
             Description: Layer-4 TCP/TLS edge load balancer with an XDP fast path\n \
             Terminates TLS (rustls), balances by Maglev hashing, splices plain TCP, and\n \
             drops blocklisted and over-rate sources in XDP before the kernel stack.\n \
             Upgrades of a running service keep every connection.\n"
        ),
    )?;
    std::fs::create_dir_all(out)?;
    let deb = out.join(format!("proxy_{version}_amd64.deb"));
    let level: &[&str] = match compression {
        Compression::Default => &[],
        Compression::Fast => &["-Zgzip", "-z1"],
    };
    let status = Command::new("dpkg-deb")
        .args(["--root-owner-group", "--build"])
        .args(level)
        .arg(s)
        .arg(&deb)
        .status()
        .context("running dpkg-deb (Debian's dpkg)")?;
    ensure!(status.success(), "dpkg-deb --build failed");
    Ok(deb)
}

/// The folders whose files the package ships as documentation, and where they go:
/// the documents the README links (`docs/`), and the example configurations with
/// their README.
const DOC_DIRS: [(&str, &str); 2] = [
    ("docs", "usr/share/doc/proxy/docs"),
    ("dist/examples", "usr/share/doc/proxy/examples"),
];

/// The names of the files in `dir`.
fn files_of(dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        names.push(entry?.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

/// The manual pages (gzipped, as Debian keeps them) and the bash, zsh and fish
/// completions, generated by the binary being packaged from its own CLI definition.
fn generated_docs(binary: &Path, stage: &Path) -> anyhow::Result<()> {
    let man = stage.join("usr/share/man/man1");
    let out = Command::new(binary)
        .arg("man")
        .arg(&man)
        .output()
        .with_context(|| format!("running {} man", binary.display()))?;
    ensure!(
        out.status.success(),
        "{} man failed: {}",
        binary.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let status = Command::new("gzip")
        .args(["-9n"])
        .args(String::from_utf8_lossy(&out.stdout).lines())
        .status()
        .context("running gzip")?;
    ensure!(status.success(), "gzip of the manual pages failed");
    for (shell, path) in [
        ("bash", "usr/share/bash-completion/completions/proxy"),
        ("zsh", "usr/share/zsh/vendor-completions/_proxy"),
        ("fish", "usr/share/fish/vendor_completions.d/proxy.fish"),
    ] {
        let out = Command::new(binary)
            .args(["completions", shell])
            .output()
            .with_context(|| format!("running {} completions {shell}", binary.display()))?;
        ensure!(
            out.status.success() && !out.stdout.is_empty(),
            "no {shell} completions"
        );
        let dest = stage.join(path);
        std::fs::create_dir_all(dest.parent().expect("a parent"))?;
        std::fs::write(&dest, &out.stdout)?;
    }
    Ok(())
}

/// The bounded package check of `cargo xtask test` (see the module comment).
pub fn check(root: &Path, binary: &Path) -> anyhow::Result<()> {
    lab::ensure_root()?;
    let out = tempfile::Builder::new().prefix("deb-out-").tempdir()?;
    let v1 = build_deb(root, binary, "0.1.0+check1", out.path(), Compression::Fast)?;
    let v2 = build_deb(root, binary, "0.1.0+check2", out.path(), Compression::Fast)?;
    let listing = sh(&format!("dpkg-deb -c {}", v1.display()))?;
    for path in [
        "./usr/bin/proxy",
        "./lib/systemd/system/proxy.service",
        "./etc/proxy/proxy.toml",
        "./usr/share/doc/proxy/README.md",
        "./usr/share/man/man1/proxy.1.gz",
        "./usr/share/man/man1/proxy-check-config.1.gz",
        "./usr/share/bash-completion/completions/proxy",
        "./usr/share/zsh/vendor-completions/_proxy",
        "./usr/share/fish/vendor_completions.d/proxy.fish",
    ] {
        ensure!(
            listing.contains(path),
            "{path} missing from the package:\n{listing}"
        );
    }
    for (dir, installed) in DOC_DIRS {
        for file in files_of(&root.join(dir))? {
            let path = format!("./{installed}/{file}");
            ensure!(
                listing.contains(&path),
                "{path} missing from the package:\n{listing}"
            );
        }
    }
    // A scratch root with an empty dpkg database (so its dependencies, libc6, are
    // not recorded there: --force-depends).
    let target = tempfile::Builder::new().prefix("deb-root-").tempdir()?;
    let r = target.path();
    for dir in [
        "var/lib/dpkg/info",
        "var/lib/dpkg/updates",
        "var/lib/dpkg/triggers",
    ] {
        std::fs::create_dir_all(r.join(dir))?;
    }
    std::fs::write(r.join("var/lib/dpkg/status"), "")?;
    let dpkg = |deb: &Path| {
        format!(
            "dpkg --root={} --force-script-chrootless --force-not-root --force-depends --log=/dev/null -i {}",
            r.display(),
            deb.display()
        )
    };
    let installed = sh(&dpkg(&v1))?;
    eprintln!("[package] installed {}: {}", v1.display(), installed.trim());
    let bin = r.join("usr/bin/proxy");
    sh(&format!(
        "{} check-config {}",
        bin.display(),
        r.join("etc/proxy/proxy.toml").display()
    ))?;

    // The installed daemon, on lab addresses, serving a loop of requests.
    let mut lab = lab::site::Lab::new(lab::site::LabOptions {
        backends: 1,
        ..lab::site::LabOptions::default()
    });
    let config = lab::config::Config::new()
        .with_listener(lab::config::Listener::new(
            "web",
            lab::config::addr(format!("{}:80", lab.lb_ip())),
            "p",
        ))
        .with_pool(lab::config::Pool::new(
            "p",
            lab::config::addrs(&lab.backend_addrs()),
        ))
        .to_toml();
    let etc = r.join("etc/proxy");
    let daemon = lab::proxyd::ProxyD::try_start_bin(
        &bin.display().to_string(),
        &lab.lb().ns,
        &etc,
        &config,
    )?;
    let first = daemon.proc.as_ref().map(|p| p.pid()).unwrap_or(0);
    lab.proxy = Some(daemon);
    let (ok, failed) = (AtomicU64::new(0), AtomicU64::new(0));
    let done = AtomicBool::new(false);
    let url = format!("http://{}:80/name", lab.lb_ip());
    let upgrade = std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                let out = lab.client(&format!("curl -sf --max-time 5 {url}"));
                let counter = if out.status.success() { &ok } else { &failed };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        });
        std::thread::sleep(Duration::from_millis(500));
        // dpkg inside the daemon's namespace: the new binary attaches there.
        let result = lab.lb().ns.exec(&format!("{} 2>&1", dpkg(&v2)));
        std::thread::sleep(Duration::from_millis(500));
        done.store(true, Ordering::Relaxed);
        result
    })?;
    eprintln!("[package] dpkg -i of the newer build: {}", upgrade.trim());
    ensure!(
        upgrade.contains("upgraded:"),
        "the postinst did not upgrade the daemon:\n{upgrade}"
    );
    let status = sh(&format!("dpkg --root={} -s proxy", r.display()))?;
    ensure!(status.contains("Version: 0.1.0+check2"), "{status}");
    lab::try_wait_for("the old daemon to exit", Duration::from_secs(40), || {
        lab.proxy
            .as_mut()?
            .proc
            .as_mut()
            .is_some_and(|p| !p.alive())
            .then_some(())
    })
    .with_context(|| format!("pid {first}"))?;
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!("[package] requests during the package upgrade: {ok} ok, {failed} failed");
    ensure!(
        failed == 0 && ok > 0,
        "{failed} requests failed during the upgrade"
    );
    Ok(())
}
