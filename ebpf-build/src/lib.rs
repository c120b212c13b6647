//! Builds the XDP program (`proxy-ebpf`) for `bpfel-unknown-none`.
//!
//! A crate of its own, used by `proxy/build.rs` (which embeds the object into the daemon) and
//! `cargo xtask build-ebpf`, so both build it the same way. Standard library only.

use std::path::{Path, PathBuf};
use std::process::Command;

pub const TARGET: &str = "bpfel-unknown-none";

/// How the eBPF crate gets a `core` for the BPF target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// Debian's rustc-web with the prebuilt bpfel `core` (libstd-rust-web-dev-bpf).
    Debian,
    /// rustup nightly + rust-src, `-Z build-std=core` (the usual aya route, needs internet once).
    Nightly,
}

impl Route {
    pub fn name(self) -> &'static str {
        match self {
            Route::Debian => "debian (rustc-web + prebuilt bpfel core)",
            Route::Nightly => "nightly (rustup nightly + rust-src, -Z build-std=core)",
        }
    }

    /// The short name (`debian`, `nightly`), as `PROXY_EBPF_ROUTE` spells it.
    pub fn key(self) -> &'static str {
        match self {
            Route::Debian => "debian",
            Route::Nightly => "nightly",
        }
    }
}

pub const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
pub const DEBIAN_CARGO: &str = "/usr/bin/cargo";

/// Is Debian's compiler with a prebuilt BPF `core` installed?
pub fn debian_route_ready() -> bool {
    Path::new(DEBIAN_RUSTC).exists()
        && Path::new(DEBIAN_CARGO).exists()
        && Path::new("/usr/lib/rustlib")
            .join(TARGET)
            .join("lib")
            .is_dir()
}

/// Does rustup have a nightly with rust-src?
pub fn nightly_route_ready() -> bool {
    let Ok(out) = Command::new("rustup")
        .args(["run", "nightly", "rustc", "--print", "sysroot"])
        .output()
    else {
        return false;
    };
    let sysroot = String::from_utf8_lossy(&out.stdout).trim().to_string();
    out.status.success()
        && Path::new(&sysroot)
            .join("lib/rustlib/src/rust/library/core")
            .is_dir()
}

/// The route to use: `PROXY_EBPF_ROUTE=debian|nightly` forces one, else the first ready.
pub fn choose_route() -> Result<Route, String> {
    match std::env::var("PROXY_EBPF_ROUTE").as_deref() {
        Ok("debian") => return Ok(Route::Debian),
        Ok("nightly") => return Ok(Route::Nightly),
        Ok(other) if !other.is_empty() => {
            return Err(format!(
                "PROXY_EBPF_ROUTE={other}: expected `debian` or `nightly`"
            ));
        }
        _ => {}
    }
    if debian_route_ready() {
        Ok(Route::Debian)
    } else if nightly_route_ready() {
        Ok(Route::Nightly)
    } else {
        Err("no toolchain can build the eBPF program: run `cargo xtask setup` \
             (installs Debian's rustc-web with a prebuilt bpfel core, or uses rustup nightly + rust-src)"
            .into())
    }
}

/// The compiler a route builds with, in one line: rustc's release and its LLVM, and
/// the bpf-linker on PATH ("rustc 1.96.0, LLVM 22.1.8, bpf-linker 0.13.0"); "unknown"
/// for what cannot be asked.
pub fn compiler_version(route: Route) -> String {
    let rustc = match route {
        Route::Debian => Command::new(DEBIAN_RUSTC).arg("-vV").output(),
        Route::Nightly => Command::new("rustup")
            .args(["run", "nightly", "rustc", "-vV"])
            .output(),
    };
    let rustc = rustc
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let field = |name: &str| {
        rustc
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or("unknown")
            .to_string()
    };
    let linker = Command::new("bpf-linker")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "bpf-linker unknown".into());
    format!(
        "rustc {}, LLVM {}, {linker}",
        field("release: "),
        field("LLVM version: ")
    )
}

/// Where the object lands for a given workspace root.
pub fn object_path(workspace: &Path) -> PathBuf {
    workspace
        .join("target/ebpf")
        .join(TARGET)
        .join("release/proxy-ebpf")
}

/// The benchmark-only object (bare XDP_DROP baseline, spoofed-source driver).
pub fn bench_object_path(workspace: &Path) -> PathBuf {
    workspace
        .join("target/ebpf")
        .join(TARGET)
        .join("release/xdp-bench")
}

/// The cargo command that builds `proxy-ebpf`; run it from anywhere.
pub fn build_command(workspace: &Path, route: Route) -> Command {
    let mut cmd = match route {
        Route::Debian => {
            let mut c = Command::new(DEBIAN_CARGO);
            c.env("RUSTC", DEBIAN_RUSTC);
            // aya-ebpf uses `asm_experimental_arch`; unlock nightly features for that crate only.
            c.env("RUSTC_BOOTSTRAP", "aya_ebpf");
            c
        }
        Route::Nightly => {
            let mut c = Command::new("rustup");
            c.args(["run", "nightly", "cargo"]);
            c.env_remove("RUSTC");
            c.env_remove("RUSTC_BOOTSTRAP");
            c
        }
    };
    cmd.arg("build");
    if route == Route::Nightly {
        cmd.args(["-Z", "build-std=core"]);
    }
    cmd.args(["--release", "--target", TARGET, "--target-dir"])
        .arg(workspace.join("target/ebpf"))
        .current_dir(workspace.join("proxy-ebpf"));
    // BTF for maps and code (bpftool shows typed values), via bpf-linker's --btf.
    cmd.env(
        "CARGO_ENCODED_RUSTFLAGS",
        "--cfg=bpf_target_arch=\"x86_64\"\x1f-Cdebuginfo=2\x1f-Clink-arg=--btf",
    );
    // Do not inherit the outer (host) build's settings.
    for key in [
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_WRAPPER",
        "RUSTUP_TOOLCHAIN",
        "RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_BUILD_RUSTFLAGS",
    ] {
        cmd.env_remove(key);
    }
    cmd
}

/// Files whose change must rebuild the object.
pub fn inputs(workspace: &Path) -> Vec<PathBuf> {
    vec![
        workspace.join("proxy-ebpf/src"),
        workspace.join("proxy-ebpf/Cargo.toml"),
        workspace.join("proxy-ebpf/Cargo.lock"),
        workspace.join("proxy-common/src"),
    ]
}
