//! Every verifier workaround of the XDP programs, named (katran's `balancer.bpf.c`
//! comments are the model). Each says what happened without it, measured on Linux
//! 6.18 with the `debian` build route (rustc-web 1.96 = LLVM 22.1.8, bpf-linker 0.13,
//! `--cpu generic`); counts are the verifier's "processed insns" as
//! `tests/verifier_budget.rs` prints them, each against the build that had every
//! workaround (`proxy_xdp` 156205, `proxy_xdp_services` 10265, `proxy_xdp_cookies`
//! 53400 before connection steering; with it 187112, 10265, 53747 and
//! `proxy_xdp_steer` 25335; since the cookie stage reads the packet in place, 176965,
//! 12016, 24319 and 28785). Another compiler or kernel may need more or fewer of
//! them: try removing one and run that test.
//!
//! Workarounds that are not helpers, documented where they are:
//! - Four programs chained by tail calls (`main.rs`): one program with everything
//!   exceeded the verifier's instruction budget and the 512-byte stack (when the SYN
//!   cookies came; not measured again); steering got a program of its own for the
//!   same reason (`proxy_xdp` alone is at 456+24 of 512 bytes).
//! - The SYN cookie stage copies no headers (there were 200 bytes of copies in
//!   `COOKIE_SCRATCH` and two out-of-line functions with frames of their own, for
//!   a stack of 336+24+128+24): the helpers get pointers into the packet
//!   (`frame::at`), the SYN-ACK is written in place, and the stage's frame is 240.
//! - One helper call per TCP header length (`cookies::generate`): the verifier
//!   checks a packet pointer passed to a helper against the largest value the length
//!   may have, so one call with a length of 20..=60 needs 60 bytes in every SYN.
//! - The cookie handoff (`handoff::save`) is written while the offsets are exact,
//!   before `IpPacket::offsets_opaque`, whatever the caller then decides: written
//!   after the decision (with a flag saying whether the offsets fit) it cost
//!   `proxy_xdp` 248791 insns; without `offsets_opaque` in `proxy_xdp` 241034 and
//!   24 more bytes of stack; with the "did not fit" case as an offset of 0 chosen
//!   before `offsets_opaque`, over the 1,000,000 limit.
//! - Two-byte reads in `cookies::syn_options`: LLVM turns the bound check of a
//!   one-byte read (`p + 1 > end`) into `p >= end`, from which the verifier derives
//!   no range: "invalid access to packet, off=0 size=1, R2(id=79,off=0,r=0)".
//! - No `[0; 16]` for an address key in the cookie stage ([`zero_addr`]): LLVM
//!   makes such zeroing a call to `memset`, a byte loop in a subprogram (3 calls per
//!   SYN before).
//! - Plain fields instead of an `Option` (`IpPacket`'s destination port is `port`
//!   plus `has_ports`; `main::decide` returns an `AddrKey` whose family 0 means none):
//!   an `Option` can leave its payload uninitialised for the compiler to copy through
//!   a register, which the verifier rejects. That rejection no longer reproduces here,
//!   but the plain fields stay cheaper: the port as an `Option<u16>` cost
//!   `proxy_xdp_cookies` 57063 insns and `proxy_xdp_services` 10517 (stack 456 instead
//!   of 440); `decide` returning `Option<AddrKey>` cost `proxy_xdp` 158701. (A wrapper
//!   type for the pair moved `IpPacket`'s field layout and cost `proxy_xdp_cookies`
//!   62924, so they stay two fields.)
//! - `STEER_SCRATCH` (`maps.rs`): the steering program keeps the headers it read,
//!   the flow, the encapsulation's parameters and header bytes, and every read of
//!   header bytes in a per-CPU map, and writes member addresses straight into it.
//!   Built like `parse.rs` (packets and addresses by value, reads into stack arrays)
//!   its functions had frames of 672 and 736 bytes (LLVM: "Looks like the BPF stack
//!   limit is exceeded"); with the struct in the map but reads on the stack the frames
//!   summed to 520 (`proxy_xdp_steer` 296 of them); now 456 (232+56+40+104+24).
//! - Out of line in the steering program: `gue::encapsulate` and `steer::here` get
//!   frames of their own (`cookies::ack_has_valid_cookie`, inline now that it copies
//!   nothing, costs 28785 insns instead of 25335); the decision itself
//!   (`steer::decide`) stays inline in `proxy_xdp_steer`: out of line it added a
//!   frame of 136 to 376 bytes to the sum.
//! - Helper reads (`flow::read`, through `bpf_xdp_load_bytes` into the scratch): with
//!   `parse::read`'s direct loads the steering program was rejected, "invalid access
//!   to packet, off=0 size=1, R7(id=0,off=0,r=0)": LLVM tested the bound on one
//!   register and loaded through another, which the verifier had given no range.
//! - Offsets read back from the scratch map are bounded again with
//!   [`bounded_index`] where they address the packet (`flow::quoted`, `gue::read`,
//!   `steer::here`): the verifier knows nothing of a value loaded from a map; without
//!   it, "R2 offset is outside of the packet".
//! - Socket lookups (`socket.rs`) never build a `Socket` from a null pointer: with
//!   `(!sk.is_null()).then_some(Socket(sk))` the null one is dropped, and releasing
//!   it was rejected ("R1 type=scalar expected=sock_common, sock, ...").
//! - Not the verifier but LLVM: `proxy_common::rate::load`/`store` are volatile on
//!   BPF because LLVM 22 cannot select atomic loads and stores below `-mcpu=v4`.

/// Hides `x` from the optimiser (`core::hint::black_box`): it must treat the value
/// as unknown, so it can neither re-derive it from what it knew before nor test a
/// bound on another register holding a copy. Used for [`opaque_offset`] and
/// [`below`]. (It also kept the length the cookie stage passed to
/// `bpf_tcp_gen_syncookie` bounded when the stage copied headers: without it LLVM
/// tested `<= 40` on a copy, rejected, "R4 invalid zero-sized read: u64=[0,60]".)
#[inline(always)]
pub fn opaque<T>(x: T) -> T {
    core::hint::black_box(x)
}

/// `x & mask` (`mask` = 2^k - 1): an index or length the verifier sees bounded on
/// the register that is used, without a branch per possible value. Used for:
/// - offsets into the SYN's options in `cookies::syn_options` (when it read a
///   64-byte copy of the header: without the masks Rust's bounds checks stayed in,
///   55935 insns instead of 53400);
/// - the template length `xdp-bench`'s `replay` passes to `bpf_xdp_store_bytes`:
///   without the mask rejected, "R4 unbounded memory access, use 'var &= const' or
///   'if (var < const)'" (the `black_box` it also had was not needed: 69 insns
///   without, 73 with).
#[inline(always)]
pub fn bounded_index(x: usize, mask: usize) -> usize {
    x & mask
}

/// `x` when it is below `len`, tested on the register the access then uses. For
/// `steer`'s table row (`hash % STEER_ROWS`): LLVM knows a remainder is below its
/// divisor and drops the slice's bounds check, but the verifier does not follow `%`:
/// without it `proxy_xdp_steer` was rejected, "R2 unbounded memory access, make
/// sure to bounds check any such access" (6.18, LLVM 22.1.8).
#[inline(always)]
pub fn below(x: usize, len: usize) -> Option<usize> {
    let x = opaque(x);
    if x < len { Some(x) } else { None }
}

/// A header offset made opaque, then bounded by `mask`: the verifier checks the code
/// after parsing once for every header layout (VLAN tags, IPv4 options, IPv6
/// extension headers) instead of once per layout, each with its exact offset
/// (`IpPacket::offsets_opaque`). Without it `proxy_xdp_cookies` (when it parsed
/// again) took 87698 insns instead of 53400 and `proxy_xdp_services` 10310 instead
/// of 10265 (stack 456 instead of 440); the mask alone gave 52528 and 10310 (456),
/// [`opaque`] alone 86620 and 10265. `proxy_xdp` uses it since it decides about the
/// cookie stage (see "The cookie handoff" above).
#[inline(always)]
pub fn opaque_offset(offset: usize, mask: usize) -> usize {
    bounded_index(opaque(offset), mask)
}

/// Reads a value kept in memory (a per-CPU map slot) rather than in a register.
/// Together with [`store_cell`]: loop state that lives in memory makes the verifier
/// see one state per loop iteration instead of one per combination of values
/// found (`cookies::syn_options` and `reply_options`). With plain accesses in
/// `syn_options` `proxy_xdp_cookies` took 201236 insns instead of 53400; with plain
/// reads in `reply_options` (then `write_options`) it was rejected: "BPF program is
/// too large. Processed 1000001 insn".
#[inline(always)]
pub fn load_cell<T: Copy>(cell: &T) -> T {
    // SAFETY: a reference is valid and aligned for reads (volatile only keeps the
    // access in memory).
    unsafe { core::ptr::read_volatile(cell) }
}

/// Writes a value kept in memory; see [`load_cell`].
#[inline(always)]
pub fn store_cell<T: Copy>(cell: &mut T, value: T) {
    // SAFETY: an exclusive reference is valid and aligned for writes.
    unsafe { core::ptr::write_volatile(cell, value) }
}

/// Zeroes an address key's address in place: LLVM merges the stores of `[0; 16]`
/// (even a volatile one, or a copy of a key known to be zero) into a call to
/// `memset`, which on BPF is a byte loop in a subprogram of its own; four volatile
/// 32-bit stores stay as they are. The cookie stage's address keys (the listener's
/// before WILDCARD_LISTENERS, the sampled source) called it on every packet.
#[inline(always)]
pub fn zero_addr(key: &mut proxy_common::AddrKey) {
    let words = (&raw mut key.addr) as *mut u32;
    for i in 0..4 {
        // SAFETY: `addr` is the first field of a 4-aligned repr(C) struct, so the 16
        // bytes are four aligned u32s, exclusively borrowed.
        unsafe { core::ptr::write_volatile(words.add(i), 0) };
    }
}

/// A key of `family` with a zero address, by [`zero_addr`] (see there).
#[inline(always)]
pub fn zero_key(family: u32) -> proxy_common::AddrKey {
    let mut key = core::mem::MaybeUninit::<proxy_common::AddrKey>::uninit();
    let p = key.as_mut_ptr();
    // SAFETY: every field of the repr(C) struct (no padding) is written through a
    // valid pointer before `assume_init`.
    unsafe {
        zero_addr(&mut *p);
        (*p).family = family;
        key.assume_init()
    }
}
