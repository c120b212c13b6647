//! Reading and writing a frame's bytes: in place (bounds-checked here, as the
//! verifier requires) or through the kernel's helpers (bounds-checked by the kernel);
//! Internet checksums. Shared by the SYN cookie answers and the steering
//! encapsulation.

use aya_ebpf::{helpers::generated, programs::XdpContext};

use crate::parse;

/// Copies `len` bytes of the frame at `offset` into `buf`.
#[inline(always)]
pub fn load<const N: usize>(
    ctx: &XdpContext,
    offset: usize,
    buf: &mut [u8; N],
    len: u32,
) -> Result<(), ()> {
    if len as usize > N {
        return Err(());
    }
    // SAFETY: `buf` has room for `len` (≤ N) bytes; the helper bounds-checks the frame.
    let r = unsafe {
        generated::bpf_xdp_load_bytes(
            ctx.ctx,
            offset as u32,
            buf.as_mut_ptr() as *mut core::ffi::c_void,
            len,
        )
    };
    if r == 0 { Ok(()) } else { Err(()) }
}

/// Resizes the frame to `len` bytes (grow or shrink at the tail).
#[inline(always)]
pub fn resize(ctx: &XdpContext, len: usize) -> Result<(), ()> {
    let delta = len as i64 - (ctx.data_end() - ctx.data()) as i64;
    if delta == 0 {
        return Ok(());
    }
    // SAFETY: the helper validates the new length against the frame's room.
    let r = unsafe { generated::bpf_xdp_adjust_tail(ctx.ctx, delta as i32) };
    if r == 0 { Ok(()) } else { Err(()) }
}

/// A pointer to the `N` bytes at `offset` in the frame, if the frame is that long.
/// The verifier accepts accesses (and helper arguments) within those `N` bytes.
#[inline(always)]
pub fn at<const N: usize>(ctx: &XdpContext, offset: usize) -> Option<*mut u8> {
    let p = ctx.data() + offset;
    if p + N > ctx.data_end() {
        return None;
    }
    Some(p as *mut u8)
}

/// Writes `bytes` at `p + offset` (`p` from [`at`] with room for them).
#[inline(always)]
pub fn put<const N: usize>(p: *mut u8, offset: usize, bytes: [u8; N]) {
    // SAFETY: the caller checked the frame has room (see `at`); any alignment.
    unsafe { core::ptr::write_unaligned(p.add(offset) as *mut [u8; N], bytes) }
}

/// Swaps the Ethernet destination and source addresses, in place.
#[inline(always)]
pub fn swap_macs(ctx: &XdpContext) -> Result<(), ()> {
    let macs = parse::read::<12>(ctx, 0).map_err(|_| ())?;
    let p = at::<12>(ctx, 0).ok_or(())?;
    put(
        p,
        0,
        [macs[6], macs[7], macs[8], macs[9], macs[10], macs[11]],
    );
    put(p, 6, [macs[0], macs[1], macs[2], macs[3], macs[4], macs[5]]);
    Ok(())
}

/// Writes `bytes` into the frame at `offset`.
#[inline(always)]
pub fn store<const N: usize>(
    ctx: &XdpContext,
    offset: usize,
    bytes: &mut [u8; N],
) -> Result<(), ()> {
    // SAFETY: `bytes` is a stack buffer of N bytes; the helper bounds-checks the frame.
    let r = unsafe {
        generated::bpf_xdp_store_bytes(
            ctx.ctx,
            offset as u32,
            bytes.as_mut_ptr() as *mut core::ffi::c_void,
            N as u32,
        )
    };
    if r == 0 { Ok(()) } else { Err(()) }
}

/// One's-complement sum of `bytes` (a multiple of 4 long) added to `seed`, by the
/// kernel's `bpf_csum_diff` (words in memory order: store the result as is).
#[inline(always)]
pub fn csum<const N: usize>(bytes: &mut [u8; N], seed: u32) -> Result<u32, ()> {
    // SAFETY: reads N bytes of `bytes`; `from` is empty.
    let sum = unsafe {
        generated::bpf_csum_diff(
            core::ptr::null_mut(),
            0,
            bytes.as_mut_ptr() as *mut u32,
            N as u32,
            seed,
        )
    };
    if sum < 0 { Err(()) } else { Ok(sum as u32) }
}

/// Folds a sum of big-endian 32-bit words (kept in 64 bits) to 16 bits and
/// complements it: the Internet checksum, as a value to write big-endian.
#[inline(always)]
pub fn fold(sum: u64) -> u16 {
    let mut s = (sum & 0xffff_ffff) + (sum >> 32);
    s = (s & 0xffff_ffff) + (s >> 32);
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    !(s as u16)
}

/// Folds a sum to 16 bits and complements it: the Internet checksum, in memory order.
#[inline(always)]
pub fn checksum(sum: u32) -> [u8; 2] {
    let mut folded = (sum & 0xffff) + (sum >> 16);
    folded = (folded & 0xffff) + (folded >> 16);
    (!(folded as u16)).to_ne_bytes()
}
