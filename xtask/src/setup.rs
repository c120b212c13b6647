//! `cargo xtask setup`: installs what building and testing need, idempotently.
//! Every step says what it checks, what it does, and skips what is already done.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};

use ebpf_build::{self, Route};

/// The bpf-linker release this project is proven with (see ../shared/TOOLCHAIN.md).
const BPF_LINKER_VERSION: &str = "0.13.0";

/// Tools the build, tests, demo and benchmarks run (Debian package names).
/// protobuf-compiler and libprotobuf-dev (the well-known types, only a recommends of
/// the compiler, which `--no-install-recommends` skips): etcd-client's build compiles
/// etcd's .proto files.
const RUNTIME_PACKAGES: &[&str] = &[
    "protobuf-compiler",
    "libprotobuf-dev",
    "etcd-server",
    "etcd-client",
    "bpftool",
    "iproute2",
    "ethtool",
    "iputils-ping",
    "util-linux",
    "procps",
    "openssl",
    "curl",
    "nginx",
    "haproxy",
    "libnginx-mod-stream",
    "netsniff-ng",
    "bird2",
    "iperf3",
    "prometheus",
    "chromium",
    "ca-certificates",
    "dnsmasq-base",
];

/// PyPI packages the tests use (for `python3` as found on PATH): an independent
/// PROXY protocol v2 decoder (the SSL TLVs included).
const PYTHON_PACKAGES: &[(&str, &str)] = &[("proxy-protocol", "proxyprotocol")];

/// Debian's Rust with a prebuilt `core` for the BPF targets.
const DEBIAN_RUST_PACKAGES: &[&str] = &["rustc-web", "cargo-web", "libstd-rust-web-dev-bpf"];

fn step(msg: &str) {
    eprintln!("[setup] {msg}");
}

pub fn run() -> anyhow::Result<()> {
    if unsafe { libc::geteuid() } != 0 {
        bail!("setup installs packages and the tests load XDP programs: run it as root");
    }
    let etcd_was_installed = installed("etcd-server");
    install_packages(RUNTIME_PACKAGES)?;
    if !etcd_was_installed {
        stop_packaged_etcd();
    }
    install_python_packages(PYTHON_PACKAGES)?;
    let route = ensure_ebpf_route()?;
    ensure_bpf_linker(route)?;
    step(&format!("ready: eBPF route = {}", route.name()));
    Ok(())
}

/// Debian starts an etcd service when etcd-server is installed under systemd; the
/// tests run their own members in namespaces, so the one we just installed goes.
fn stop_packaged_etcd() {
    let active = Command::new("systemctl")
        .args(["is-active", "--quiet", "etcd"])
        .status()
        .is_ok_and(|s| s.success());
    if active {
        step(
            "stopping and disabling the etcd service Debian started on install (tests run their own)",
        );
        let _ = Command::new("systemctl")
            .args(["disable", "--now", "etcd"])
            .status();
    }
}

/// Installs (package, module) pairs whose module `python3` cannot import yet.
fn install_python_packages(packages: &[(&str, &str)]) -> anyhow::Result<()> {
    let importable = |module: &str| {
        Command::new("python3")
            .args(["-c", &format!("import {module}")])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let missing: Vec<&str> = packages
        .iter()
        .filter(|(_, module)| !importable(module))
        .map(|(package, _)| *package)
        .collect();
    if missing.is_empty() {
        let names: Vec<&str> = packages.iter().map(|(p, _)| *p).collect();
        step(&format!("Python packages present: {}", names.join(" ")));
        return Ok(());
    }
    step(&format!(
        "installing Python packages from PyPI: {}",
        missing.join(" ")
    ));
    let status = Command::new("python3")
        .args(["-m", "pip", "install", "-q"])
        .args(&missing)
        .status()
        .context("running python3 -m pip")?;
    if !status.success() {
        bail!(
            "pip install {} failed (python3 -m pip must work: install python3-pip)",
            missing.join(" ")
        );
    }
    Ok(())
}

fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

/// How long apt waits for another apt or dpkg run to release its lock (apt prints
/// "Waiting for cache lock ... held by process N" meanwhile).
const LOCK_WAIT_SECONDS: u32 = 600;

const DPKG_LOCK: &str = "/var/lib/dpkg/lock-frontend";

/// Whether another process holds a write lock on `path` right now (`fcntl(F_GETLK)`:
/// apt and dpkg take their locks that way).
fn lock_held(path: &std::path::Path) -> bool {
    use std::os::fd::AsRawFd;
    let Ok(file) = std::fs::File::open(path) else {
        return false;
    };
    // SAFETY: a zeroed flock is a valid argument; fcntl only writes into it.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = libc::F_WRLCK as i16;
    lock.l_whence = libc::SEEK_SET as i16;
    // SAFETY: F_GETLK on an open descriptor with a valid flock pointer.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETLK, &mut lock) };
    rc == 0 && lock.l_type != libc::F_UNLCK as i16
}

fn install_packages(packages: &[&str]) -> anyhow::Result<()> {
    let missing: Vec<&str> = packages.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        step(&format!("apt packages present: {}", packages.join(" ")));
        return Ok(());
    }
    step(&format!("installing apt packages: {}", missing.join(" ")));
    if lock_held(std::path::Path::new(DPKG_LOCK)) {
        step(&format!(
            "another apt or dpkg run holds the package lock: waiting for it (at most {} min)",
            LOCK_WAIT_SECONDS / 60
        ));
    }
    let wait = format!("DPkg::Lock::Timeout={LOCK_WAIT_SECONDS}");
    let status = Command::new("apt-get")
        .args(["-o", &wait, "update", "-q"])
        .status()
        .context("running apt-get update")?;
    if !status.success() {
        bail!("apt-get update failed; check the Debian mirrors in /etc/apt/sources.list*");
    }
    let status = Command::new("apt-get")
        .args([
            "-o",
            &wait,
            "install",
            "-y",
            "-q",
            "--no-install-recommends",
        ])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("running apt-get install")?;
    if !status.success() {
        bail!("apt-get install {} failed", missing.join(" "));
    }
    Ok(())
}

/// LLVM major version Debian's rustc was built with (`LLVM version: 22.1.8`).
fn debian_llvm_major() -> anyhow::Result<u32> {
    let out = Command::new(ebpf_build::DEBIAN_RUSTC)
        .arg("-vV")
        .output()
        .context("running /usr/bin/rustc -vV")?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .and_then(|v| v.split('.').next())
        .and_then(|m| m.trim().parse().ok())
        .context("cannot read the LLVM version from /usr/bin/rustc -vV")
}

/// Picks the route: Debian's packages (works offline from the Debian mirror), else
/// rustup nightly + rust-src (the usual aya route, needs the rustup servers).
fn ensure_ebpf_route() -> anyhow::Result<Route> {
    if std::env::var("PROXY_EBPF_ROUTE").as_deref() == Ok("nightly") {
        return ensure_nightly();
    }
    if ebpf_build::debian_route_ready() {
        step("Debian rustc-web with the prebuilt bpfel core is installed");
    } else {
        step("installing Debian's rustc-web with the prebuilt bpfel core (bookworm-security)");
        if let Err(e) = install_packages(DEBIAN_RUST_PACKAGES) {
            step(&format!(
                "Debian route unavailable ({e:#}); trying rustup nightly + rust-src"
            ));
            return ensure_nightly();
        }
    }
    let llvm = debian_llvm_major()?;
    install_packages(&[&format!("llvm-{llvm}-dev")])?;
    Ok(Route::Debian)
}

fn ensure_nightly() -> anyhow::Result<Route> {
    if ebpf_build::nightly_route_ready() {
        step("rustup nightly with rust-src is installed");
        return Ok(Route::Nightly);
    }
    step("installing rustup nightly with rust-src");
    let status = Command::new("rustup")
        .args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
            "--component",
            "rust-src",
        ])
        .status()
        .context("running rustup")?;
    if !status.success() || !ebpf_build::nightly_route_ready() {
        bail!(
            "no route to build the eBPF program: Debian's rustc-web/libstd-rust-web-dev-bpf \
             (bookworm-security) could not be installed and rustup could not fetch nightly + rust-src"
        );
    }
    Ok(Route::Nightly)
}

fn bpf_linker_version() -> Option<String> {
    let out = Command::new("bpf-linker").arg("--version").output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn ensure_bpf_linker(route: Route) -> anyhow::Result<()> {
    if let Some(v) = bpf_linker_version().filter(|v| v.contains(BPF_LINKER_VERSION)) {
        step(&format!("{v} is installed"));
        return Ok(());
    }
    let mut cmd = Command::new("cargo");
    cmd.args([
        "install",
        &format!("bpf-linker@{BPF_LINKER_VERSION}"),
        "--locked",
    ]);
    match route {
        Route::Debian => {
            let llvm = debian_llvm_major()?;
            let prefix = format!("/usr/lib/llvm-{llvm}");
            if !Path::new(&prefix).join("bin/llvm-config").exists() {
                bail!("{prefix}/bin/llvm-config missing: install llvm-{llvm}-dev");
            }
            step(&format!(
                "building bpf-linker {BPF_LINKER_VERSION} against Debian's LLVM {llvm} (about a minute)"
            ));
            cmd.args([
                "--no-default-features",
                "--features",
                &format!("llvm-{llvm}"),
            ])
            .env("LLVM_PREFIX", &prefix)
            .env(format!("LLVM_SYS_{llvm}1_PREFIX"), &prefix);
        }
        Route::Nightly => step(&format!(
            "building bpf-linker {BPF_LINKER_VERSION} (about a minute)"
        )),
    }
    let status = cmd.status().context("running cargo install bpf-linker")?;
    if !status.success() {
        bail!("cargo install bpf-linker failed (see above)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Another process (python, as apt would) holds the lock, then lets it go.
    #[test]
    fn a_held_lock_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        std::fs::write(&path, "").unwrap();
        assert!(!lock_held(&path));
        let mut holder = Command::new("python3")
            .args([
                "-c",
                "import fcntl,sys,time; f=open(sys.argv[1],'w'); fcntl.lockf(f, fcntl.LOCK_EX); print('held', flush=True); time.sleep(30)",
            ])
            .arg(&path)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(holder.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        assert_eq!(line.trim(), "held");
        assert!(lock_held(&path));
        holder.kill().unwrap();
        holder.wait().unwrap();
        assert!(!lock_held(&path));
    }
}
