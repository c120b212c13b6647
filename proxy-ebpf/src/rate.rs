//! Per-source rate limiting: GCRA (a token bucket expressed as one timestamp) kept in
//! a count-min sketch. Fixed memory, no allocation, no eviction: a spoofed-source flood
//! costs a few cache lines per packet and cannot push real clients' state out.

use proxy_common::{RateParams, RateSketch, SKETCH_LINE_BITS, SKETCH_LINES, SKETCH_ROWS};

const _: () = assert!(SKETCH_LINE_BITS + SKETCH_ROWS as u32 <= 32, "line and cell choices come from one hash");

/// Where one source's cells are: its line, and in row `r` cell `2r + pick[r]`.
pub struct Cells {
    line: usize,
    pick: [usize; SKETCH_ROWS],
}

const MIX1: u64 = 0x9E37_79B9_7F4A_7C15;
const MIX2: u64 = 0xC2B2_AE3D_27D4_EB4F;

impl Cells {
    /// `hi`/`lo` are the (prefix-masked) source address; `seeds` are secret per host,
    /// so an attacker cannot pick sources that collide with a victim in every row.
    /// One keyed 64-bit mix: the top bits choose the line, the next ones the cells.
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

/// GCRA admission: true if the packet is within `params`; then records it.
/// Over-limit packets do not consume budget, so a flooding source is cut to exactly
/// its rate. Concurrent CPUs may race on a cell; a lost update only lets a packet
/// more through, never drops a conforming one.
#[inline(always)]
pub fn admit(sketch: *mut RateSketch, cells: &Cells, params: &RateParams, now: u64) -> bool {
    let line = unsafe { &mut (*sketch).lines[cells.line] };
    let mut estimate = u64::MAX;
    let mut row = 0;
    while row < SKETCH_ROWS {
        let tat = line[2 * row + cells.pick[row]];
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
        let cell = &mut line[2 * row + cells.pick[row]];
        if *cell < next {
            *cell = next;
        }
        row += 1;
    }
    true
}
