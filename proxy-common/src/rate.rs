//! Per-source rate limiting as the XDP program does it, in plain `no_std` Rust so the
//! host can test it: GCRA (a token bucket expressed as one timestamp) kept in a
//! count-min sketch. Fixed memory, no allocation, no eviction: a spoofed-source flood
//! costs one cache line per packet and cannot push real clients' state out.

use core::sync::atomic::AtomicU64;
#[cfg(not(target_arch = "bpf"))]
use core::sync::atomic::Ordering::Relaxed;

use crate::{RateParams, SKETCH_LINE_BITS, SKETCH_LINES, SKETCH_ROWS};

const _: () = assert!(
    SKETCH_LINE_BITS + SKETCH_ROWS as u32 <= 32,
    "line and cell choices come from one hash"
);

/// One cache line of the sketch: `SKETCH_ROWS` rows of two cells each.
pub type SketchLine = [u64; 2 * SKETCH_ROWS];

/// A sketch line as all CPUs share it: every cell is read and written only by
/// [`load`] and [`store`] (relaxed), never through `&mut`, so concurrent updates are
/// races the algorithm tolerates, not undefined behaviour.
pub type SharedLine = [AtomicU64; 2 * SKETCH_ROWS];

/// The line at `line` as shared cells (`AtomicU64::from_ptr` for a whole line).
///
/// # Safety
/// `line` is valid and 8-aligned for `'a`, and for that long every access to it
/// (from any CPU) goes through [`load`] and [`store`].
#[inline(always)]
pub unsafe fn shared_line<'a>(line: *mut SketchLine) -> &'a SharedLine {
    // SAFETY: `AtomicU64` has the size and bit validity of `u64`, so the arrays have
    // one layout; the caller vouches for validity, alignment and how it is accessed.
    unsafe { &*line.cast::<SharedLine>() }
}

/// Where one source's cells are: its line, and in row `r` cell `2r + pick[r]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cells {
    pub line: usize,
    pub pick: [usize; SKETCH_ROWS],
}

const MIX1: u64 = 0x9E37_79B9_7F4A_7C15;
const MIX2: u64 = 0xC2B2_AE3D_27D4_EB4F;

impl Cells {
    /// `hi`/`lo` are the (prefix-masked) source address ([`sketch_key_v4`],
    /// [`sketch_key_v6`]); `seeds` are secret per host, so an attacker cannot pick
    /// sources that collide with a victim in every row. One keyed 64-bit mix: the top
    /// bits choose the line, the next ones the cells.
    #[inline(always)]
    pub fn of(hi: u64, lo: u64, seeds: &[u64; SKETCH_ROWS]) -> Cells {
        let mut h = (hi ^ seeds[0]).wrapping_mul(MIX1);
        h = (h ^ (h >> 29) ^ lo ^ seeds[1]).wrapping_mul(MIX2);
        h ^= h >> 31;
        let line = (h >> (64 - SKETCH_LINE_BITS)) as usize & (SKETCH_LINES - 1);
        let mut pick = [0usize; SKETCH_ROWS];
        let mut row = 0;
        while row < SKETCH_ROWS {
            pick[row] = (h >> (64 - SKETCH_LINE_BITS - 1 - row as u32)) as usize & 1;
            row += 1;
        }
        Cells { line, pick }
    }
}

/// A relaxed load of a shared cell. For BPF, LLVM 22's backend cannot select atomic
/// loads or stores below `-mcpu=v4` ("Cannot select: AtomicLoad<(load monotonic
/// (s64)>" from bpf-linker 0.13, which builds for `generic`), so there the same access
/// is a volatile load: the kernel's `READ_ONCE`, one aligned 8-byte load that is
/// neither torn, merged nor elided, which is what the kernel's memory model makes of
/// a relaxed atomic. Either way it compiles to one plain `ldxdw`/`mov`.
#[inline(always)]
pub fn load(cell: &AtomicU64) -> u64 {
    #[cfg(target_arch = "bpf")]
    // SAFETY: `cell` is valid and aligned; on BPF every access to it is volatile.
    return unsafe { cell.as_ptr().read_volatile() };
    #[cfg(not(target_arch = "bpf"))]
    cell.load(Relaxed)
}

/// A relaxed store to a shared cell (on BPF the kernel's `WRITE_ONCE`; see [`load`]).
#[inline(always)]
pub fn store(cell: &AtomicU64, value: u64) {
    #[cfg(target_arch = "bpf")]
    // SAFETY: as in `load`.
    return unsafe { cell.as_ptr().write_volatile(value) };
    #[cfg(not(target_arch = "bpf"))]
    cell.store(value, Relaxed)
}

/// GCRA admission: true if the packet is within `params`; then records it.
/// Over-limit packets do not consume budget, so a flooding source is cut to exactly
/// its rate. Concurrent CPUs may race on a cell (each cell is read once, then maybe
/// stored: no read-modify-write); a lost update only lets a packet more through,
/// never drops a conforming one.
#[inline(always)]
pub fn admit(line: &SharedLine, cells: &Cells, params: &RateParams, now: u64) -> bool {
    let mut tats = [0u64; SKETCH_ROWS];
    let mut estimate = u64::MAX;
    let mut row = 0;
    while row < SKETCH_ROWS {
        let tat = load(&line[2 * row + cells.pick[row]]);
        tats[row] = tat;
        if tat < estimate {
            estimate = tat;
        }
        row += 1;
    }
    let start = if estimate > now { estimate } else { now };
    let next = start + params.interval_ns;
    if next - now > params.tolerance_ns {
        return false;
    }
    // Conservative update: only raise cells that are behind, so collisions inflate less.
    let mut row = 0;
    while row < SKETCH_ROWS {
        if tats[row] < next {
            store(&line[2 * row + cells.pick[row]], next);
        }
        row += 1;
    }
    true
}

/// The sketch key of an IPv4 source: `::ffff:a.b.c.d` as (high, low) 64-bit halves.
#[inline(always)]
pub fn sketch_key_v4(addr: [u8; 4]) -> (u64, u64) {
    (0, 0xffff_0000_0000 | u32::from_be_bytes(addr) as u64)
}

/// The sketch key of an IPv6 source: the address cut to its first `prefix_len` bits
/// (sources in one prefix share a limit), as (high, low) 64-bit halves.
#[inline(always)]
pub fn sketch_key_v6(addr: [u8; 16], prefix_len: u32) -> (u64, u64) {
    let mut hi_bytes = [0u8; 8];
    let mut lo_bytes = [0u8; 8];
    hi_bytes.copy_from_slice(&addr[..8]);
    lo_bytes.copy_from_slice(&addr[8..]);
    let (hi, lo) = (u64::from_be_bytes(hi_bytes), u64::from_be_bytes(lo_bytes));
    match prefix_len {
        0 => (0, 0),
        1..=63 => (hi & !(u64::MAX >> prefix_len), 0),
        64 => (hi, 0),
        65..=127 => (hi, lo & !(u64::MAX >> (prefix_len - 64))),
        _ => (hi, lo),
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::collections::HashMap;
    use std::vec::Vec;

    const SEEDS: [u64; SKETCH_ROWS] = [11, 22, 33, 44];

    /// Exact per-source GCRA: the model the sketch must match for a lone source and
    /// never be more lenient than under collisions.
    #[derive(Default)]
    struct Reference {
        tat: HashMap<(u64, u64), u64>,
    }

    impl Reference {
        fn admit(&mut self, key: (u64, u64), p: &RateParams, now: u64) -> bool {
            let tat = self.tat.entry(key).or_insert(0);
            let next = (*tat).max(now) + p.interval_ns;
            if next - now > p.tolerance_ns {
                return false;
            }
            *tat = next;
            true
        }
    }

    fn sketch() -> Vec<SharedLine> {
        (0..SKETCH_LINES)
            .map(|_| core::array::from_fn(|_| AtomicU64::new(0)))
            .collect()
    }

    fn packet_times(count: u64, spacing_ns: u64) -> impl Iterator<Item = u64> {
        (0..count).map(move |i| 1_000_000_000 + i * spacing_ns)
    }

    #[test]
    fn a_lone_source_is_limited_exactly_like_the_reference() {
        let p = RateParams::new(1000, 50);
        let key = sketch_key_v4([192, 0, 2, 7]);
        let cells = Cells::of(key.0, key.1, &SEEDS);
        let lines = sketch();
        let mut reference = Reference::default();
        // 20 kpps for 0.1 s, then a pause, then 500 pps: every verdict agrees.
        let flood = packet_times(2000, 50_000);
        let calm = packet_times(200, 2_000_000).map(|t| t + 400_000_000);
        let (mut admitted, mut total) = (0, 0);
        for now in flood.chain(calm) {
            let got = admit(&lines[cells.line], &cells, &p, now);
            assert_eq!(got, reference.admit(key, &p, now), "at {now} ns");
            admitted += got as u32;
            total += 1;
        }
        // Burst (50) + 100 ms at 1000/s (100) during the flood, and every calm packet.
        assert!(
            (149..=151 + 200).contains(&admitted),
            "{admitted} of {total}"
        );
        assert!(admitted < total);
    }

    #[test]
    fn collisions_never_make_the_sketch_more_lenient_than_exact() {
        let p = RateParams::new(100, 10);
        let lines = sketch();
        let mut reference = Reference::default();
        // 5,000 sources each sending a few packets close together: many share lines.
        let mut x: u32 = 0x2545_f491;
        for i in 0..50_000u64 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let key = sketch_key_v4([10, 0, (x % 20) as u8, (x >> 8) as u8]);
            let cells = Cells::of(key.0, key.1, &SEEDS);
            let now = 1_000_000_000 + i * 1000;
            let got = admit(&lines[cells.line], &cells, &p, now);
            let exact = reference.admit(key, &p, now);
            assert!(
                !got || exact,
                "sketch admitted what the exact model refused"
            );
            if got != exact {
                // A refusal the exact model admitted: roll it back in the model so the
                // two keep the same history for this source.
                let tat = reference.tat.get_mut(&key).unwrap();
                *tat -= p.interval_ns;
            }
        }
    }

    #[test]
    fn over_limit_packets_do_not_consume_budget() {
        let p = RateParams::new(10, 1);
        let key = sketch_key_v4([198, 51, 100, 1]);
        let cells = Cells::of(key.0, key.1, &SEEDS);
        let lines = sketch();
        let t0 = 5_000_000_000;
        assert!(admit(&lines[cells.line], &cells, &p, t0));
        for i in 1..1000 {
            assert!(!admit(&lines[cells.line], &cells, &p, t0 + i));
        }
        // One interval after the first packet the source may send again.
        assert!(admit(&lines[cells.line], &cells, &p, t0 + p.interval_ns));
    }

    #[test]
    fn ipv6_keys_share_a_prefix_and_ipv4_keys_are_mapped() {
        let a = [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 2, 9, 9, 9, 9, 9, 9, 9, 9];
        let mut b = a;
        b[15] = 1;
        b[8] = 1;
        assert_eq!(sketch_key_v6(a, 64), sketch_key_v6(b, 64));
        assert_ne!(sketch_key_v6(a, 128), sketch_key_v6(b, 128));
        let mut c = a;
        c[7] = 3;
        assert_ne!(sketch_key_v6(a, 64), sketch_key_v6(c, 64));
        assert_eq!(sketch_key_v6(a, 63), sketch_key_v6(c, 63));
        assert_eq!(sketch_key_v6(a, 0), (0, 0));
        // Against a simple model: the key is the address with the host bits cleared.
        for len in 0..=128u32 {
            let (hi, lo) = sketch_key_v6(a, len);
            let full = u128::from_be_bytes(a);
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            assert_eq!(((hi as u128) << 64) | lo as u128, full & mask, "/{len}");
        }
        assert_eq!(sketch_key_v4([1, 2, 3, 4]), (0, 0xffff_0102_0304));
    }

    #[test]
    fn cells_stay_inside_the_sketch() {
        for i in 0..10_000u64 {
            let c = Cells::of(i.wrapping_mul(0x1234_5678_9abc), i, &SEEDS);
            assert!(c.line < SKETCH_LINES);
            assert!(c.pick.iter().all(|p| *p < 2));
        }
    }
}
