//! Per-source rate limiting: GCRA (a token bucket expressed as one timestamp) kept in
//! a count-min sketch. Fixed memory, no allocation, no eviction: a spoofed-source flood
//! costs a few cache lines per packet and cannot push real clients' state out.

use proxy_common::{RateParams, RateSketch, SKETCH_COL_BITS, SKETCH_COLS, SKETCH_ROWS};

/// Sketch columns of one source, one per row.
pub struct Cells([usize; SKETCH_ROWS]);

const MIX1: u64 = 0x9E37_79B9_7F4A_7C15;
const MIX2: u64 = 0xC2B2_AE3D_27D4_EB4F;
/// Odd multipliers for the per-row multiply-shift hashes.
const ROW_MULT: [u64; SKETCH_ROWS] = [
    0xFF51_AFD7_ED55_8CCD,
    0xC4CE_B9FE_1A85_EC53,
    0x8CB9_2BA7_2F3D_8DD7,
    0xD6E8_FEB8_6659_FD93,
];

impl Cells {
    /// `hi`/`lo` are the (prefix-masked) source address; `seeds` are secret per host,
    /// so an attacker cannot pick sources that collide with a victim in every row.
    #[inline(always)]
    pub fn of(hi: u64, lo: u64, seeds: &[u64; SKETCH_ROWS]) -> Cells {
        let mut h = (hi ^ seeds[0]).wrapping_mul(MIX1);
        h = (h ^ h.rotate_right(29) ^ lo ^ seeds[1]).wrapping_mul(MIX2);
        h ^= h >> 32;
        let mut cols = [0usize; SKETCH_ROWS];
        let mut row = 0;
        while row < SKETCH_ROWS {
            let x = (h ^ seeds[row]).wrapping_mul(ROW_MULT[row]);
            cols[row] = (x >> (64 - SKETCH_COL_BITS)) as usize & (SKETCH_COLS - 1);
            row += 1;
        }
        Cells(cols)
    }
}

/// GCRA admission: true if the packet is within `params`; then records it.
/// Over-limit packets do not consume budget, so a flooding source is cut to exactly
/// its rate. Concurrent CPUs may race on a cell; a lost update only lets a packet
/// more through, never drops a conforming one.
#[inline(always)]
pub fn admit(sketch: *mut RateSketch, cells: &Cells, params: &RateParams, now: u64) -> bool {
    let sketch = unsafe { &mut *sketch };
    let mut estimate = u64::MAX;
    let mut row = 0;
    while row < SKETCH_ROWS {
        let tat = sketch.cells[row][cells.0[row]];
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
        let cell = &mut sketch.cells[row][cells.0[row]];
        if *cell < next {
            *cell = next;
        }
        row += 1;
    }
    true
}
