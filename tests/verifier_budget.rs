//! The verifier budget (cilium's `test/verifier/verifier_test.go` is the model): each
//! product XDP program is loaded as the daemon loads it, the verifier's statistics
//! ("processed N insns", "stack depth A+B+...") are read back, and compared with
//! `proxy-ebpf/verifier-budget.toml`, recorded per build route of the object. Every
//! number is printed, pass or fail. Needs root (CAP_BPF, and CAP_SYS_ADMIN for the
//! seccomp listener that reads the log; see `lab::verifier_log`).
//!
//! Rules, against the entry of the route the object was built by:
//! - processed instructions at most the recorded number + 10 %;
//! - stack (all frames together) at most the recorded total + 32 bytes, and 512.
//!
//! With no entry for this route (the other route's numbers are printed beside), only
//! the kernel's limits with headroom apply: processed instructions at most half the
//! verifier's 1,000,000 and the stack at most 512 bytes. A new compiler or kernel with
//! the same route is compared as is (the margins absorb small drifts; a note says the
//! budget was recorded elsewhere).
//!
//! After a deliberate change, rewrite this route's entry:
//! `PROXY_VERIFIER_BUDGET=update cargo test -p proxy --test verifier_budget`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context;
use aya::{EbpfLoader, VerifierLogLevel, programs::Xdp};
use lab::verifier_log::{self, Stats};
use proxy::ebpf::{OBJECT, OBJECT_COMPILER, OBJECT_ROUTE};
use proxy_common::{PROGRAM_NAME, TAIL_PROGRAMS};
use serde::Deserialize;

const INSN_MARGIN_PERCENT: u64 = 10;
const STACK_MARGIN_BYTES: u32 = 32;
/// The BPF stack of one call chain (MAX_BPF_STACK).
const STACK_LIMIT: u32 = 512;
/// Without a recorded entry: half the verifier's BPF_COMPLEXITY_LIMIT_INSNS.
const FALLBACK_MAX_INSNS: u32 = 500_000;
const UPDATE_VAR: &str = "PROXY_VERIFIER_BUDGET";

#[derive(Debug, Clone, Deserialize)]
struct RouteBudget {
    compiler: String,
    kernel: String,
    programs: BTreeMap<String, ProgramBudget>,
}

#[derive(Debug, Clone, Deserialize)]
struct ProgramBudget {
    processed_insns: u32,
    /// As the verifier prints it: "A+B+..." (program, then subprograms).
    stack_depth: String,
}

impl ProgramBudget {
    fn stack_total(&self) -> u32 {
        self.stack_depth
            .split('+')
            .map(|d| d.trim().parse::<u32>().unwrap_or(0))
            .sum()
    }
}

fn budget_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../proxy-ebpf/verifier-budget.toml")
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

fn product_programs() -> Vec<&'static str> {
    std::iter::once(PROGRAM_NAME).chain(TAIL_PROGRAMS).collect()
}

/// Loads every product program from the embedded object, as the loader does, with the
/// verifier's statistics; cross-checks them with the kernel's own count.
fn measure() -> anyhow::Result<Vec<(String, Stats)>> {
    let names = product_programs();
    let (verified, logs) = verifier_log::capture(&names, || -> anyhow::Result<Vec<u32>> {
        let mut ebpf = EbpfLoader::new()
            // aya hands this level to the kernel only when a load fails (its retry);
            // `capture` asks for the same statistics on the first attempt.
            .verifier_log_level(VerifierLogLevel::STATS)
            .load(OBJECT)?;
        let mut verified = Vec::new();
        for name in product_programs() {
            let program: &mut Xdp = ebpf
                .program_mut(name)
                .with_context(|| format!("no program {name} in the object"))?
                .try_into()?;
            program.load().with_context(|| format!("loading {name}"))?;
            let info = program.info()?;
            verified.push(info.verified_instruction_count().unwrap_or(0));
        }
        Ok(verified)
    })?;
    let verified = verified?;
    let mut measured = Vec::new();
    for (name, kernel_count) in names.iter().zip(verified) {
        let log = logs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, log)| log.as_str())
            .with_context(|| format!("no verifier log captured for {name}"))?;
        let stats = Stats::parse(log).with_context(|| format!("the log of {name}"))?;
        // The captured log belongs to this load: the kernel's bpf_prog_info agrees.
        anyhow::ensure!(
            kernel_count == 0 || kernel_count == stats.processed_insns,
            "{name}: the log says {} processed insns, bpf_prog_info says {kernel_count}",
            stats.processed_insns
        );
        measured.push((name.to_string(), stats));
    }
    Ok(measured)
}

fn read_budget() -> anyhow::Result<BTreeMap<String, RouteBudget>> {
    let path = budget_path();
    match std::fs::read_to_string(&path) {
        Ok(text) => toml::from_str(&text).with_context(|| format!("parsing {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// The file with this route's entry replaced by `measured`, other routes kept.
fn render(budget: &BTreeMap<String, RouteBudget>, measured: &[(String, Stats)]) -> String {
    let mut out = String::from(
        "# The verifier's budget for the product XDP programs: what the kernel's verifier\n\
         # reported when loading each, per build route of the eBPF object (see\n\
         # ebpf-build/src/lib.rs). Checked by tests/verifier_budget.rs (as root), which\n\
         # fails past +10 % processed instructions or +32 bytes of stack (all frames\n\
         # together; never over 512). After a deliberate change, rewrite this route's\n\
         # entry (other routes are kept):\n\
         #   PROXY_VERIFIER_BUDGET=update cargo test -p proxy --test verifier_budget\n",
    );
    let mut routes = budget.clone();
    let programs = measured
        .iter()
        .map(|(name, stats)| {
            let budget = ProgramBudget {
                processed_insns: stats.processed_insns,
                stack_depth: stats.stack_text(),
            };
            (name.clone(), budget)
        })
        .collect();
    let entry = RouteBudget {
        compiler: OBJECT_COMPILER.to_string(),
        kernel: kernel_release(),
        programs,
    };
    routes.insert(OBJECT_ROUTE.to_string(), entry);
    for (route, b) in routes {
        let (compiler, kernel) = (&b.compiler, &b.kernel);
        let _ = write!(
            out,
            "\n[{route}]\ncompiler = {compiler:?}\nkernel = {kernel:?}\n"
        );
        for (name, p) in b.programs {
            let (insns, stack) = (p.processed_insns, &p.stack_depth);
            let _ = write!(
                out,
                "\n[{route}.programs.{name}]\nprocessed_insns = {insns}\nstack_depth = {stack:?}\n"
            );
        }
    }
    out
}

/// Compares; one line per program (every number), and the failures.
fn check(
    budget: &BTreeMap<String, RouteBudget>,
    measured: &[(String, Stats)],
) -> (Vec<String>, Vec<String>) {
    let mut lines = Vec::new();
    let mut failures = Vec::new();
    let kernel = kernel_release();
    lines.push(format!(
        "object built by route `{OBJECT_ROUTE}` ({OBJECT_COMPILER}); kernel {kernel}"
    ));
    let entry = budget.get(OBJECT_ROUTE);
    match entry {
        Some(b) if b.compiler != OBJECT_COMPILER || b.kernel != kernel => lines.push(format!(
            "note: the budget for `{OBJECT_ROUTE}` was recorded with {} on kernel {}; \
             compared as is",
            b.compiler, b.kernel
        )),
        Some(_) => {}
        None => lines.push(format!(
            "NO BUDGET recorded for route `{OBJECT_ROUTE}` (recorded: {:?}): checking only \
             the kernel's limits with headroom (processed insns <= {FALLBACK_MAX_INSNS}, \
             stack <= {STACK_LIMIT}); other routes' numbers are shown for comparison. \
             Record one with {UPDATE_VAR}=update.",
            budget.keys().collect::<Vec<_>>()
        )),
    }
    for (name, stats) in measured {
        let insns = stats.processed_insns;
        let stack = stats.stack_total();
        let mut line = format!(
            "{name:<20} processed {insns:>7} insns, stack {:>3} bytes ({})",
            stack,
            stats.stack_text()
        );
        if stack > STACK_LIMIT {
            failures.push(format!("{name}: stack {stack} > {STACK_LIMIT}"));
        }
        match entry.map(|b| b.programs.get(name)) {
            Some(Some(p)) => {
                let max_insns = u64::from(p.processed_insns) * (100 + INSN_MARGIN_PERCENT) / 100;
                let max_stack = (p.stack_total() + STACK_MARGIN_BYTES).min(STACK_LIMIT);
                let _ = write!(
                    line,
                    " | budget {} insns (fail above {max_insns}, {:+.1} %), stack {} ({}, fail above {max_stack})",
                    p.processed_insns,
                    (f64::from(insns) / f64::from(p.processed_insns.max(1)) - 1.0) * 100.0,
                    p.stack_total(),
                    p.stack_depth
                );
                if u64::from(insns) > max_insns {
                    failures.push(format!(
                        "{name}: {insns} processed insns > {max_insns} (budget {} + {INSN_MARGIN_PERCENT} %)",
                        p.processed_insns
                    ));
                }
                if stack > max_stack {
                    failures.push(format!(
                        "{name}: stack {stack} bytes > {max_stack} (budget {} + {STACK_MARGIN_BYTES}, at most {STACK_LIMIT})",
                        p.stack_total()
                    ));
                }
            }
            Some(None) => failures.push(format!(
                "{name}: no budget for this program in route `{OBJECT_ROUTE}`"
            )),
            None => {
                for (route, b) in budget {
                    if let Some(p) = b.programs.get(name) {
                        let _ = write!(
                            line,
                            " | {route}: {} insns, stack {}",
                            p.processed_insns, p.stack_depth
                        );
                    }
                }
                if insns > FALLBACK_MAX_INSNS {
                    failures.push(format!(
                        "{name}: {insns} processed insns > {FALLBACK_MAX_INSNS} (no budget for route `{OBJECT_ROUTE}`)"
                    ));
                }
            }
        }
        lines.push(line);
    }
    (lines, failures)
}

#[test]
fn programs_stay_within_the_verifier_budget() {
    lab::require_root();
    let measured = measure().unwrap_or_else(|e| panic!("{e:#}"));
    let budget = read_budget().unwrap_or_else(|e| panic!("{e:#}"));
    let (lines, failures) = check(&budget, &measured);
    for line in &lines {
        println!("[verifier] {line}");
    }
    if std::env::var(UPDATE_VAR).as_deref() == Ok("update") {
        let path = budget_path();
        std::fs::write(&path, render(&budget, &measured))
            .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        println!(
            "[verifier] rewrote the `{OBJECT_ROUTE}` entry of {}",
            path.display()
        );
        return;
    }
    assert!(
        failures.is_empty(),
        "over the verifier budget:\n  {}\n(numbers above; after a deliberate change: \
         {UPDATE_VAR}=update cargo test -p proxy --test verifier_budget)",
        failures.join("\n  ")
    );
}
