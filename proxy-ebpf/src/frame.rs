//! Reading and writing a frame's bytes through the kernel's helpers (bounds-checked by
//! the kernel), and Internet checksums: shared by the SYN cookie answers and the
//! steering encapsulation.

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

/// Swaps the Ethernet destination and source addresses.
#[inline(always)]
pub fn swap_macs(ctx: &XdpContext) -> Result<(), ()> {
    let macs = parse::read::<12>(ctx, 0).map_err(|_| ())?;
    let mut swapped = [0u8; 12];
    swapped[..6].copy_from_slice(&macs[6..]);
    swapped[6..].copy_from_slice(&macs[..6]);
    store(ctx, 0, &mut swapped)
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

/// Folds a sum to 16 bits and complements it: the Internet checksum, in memory order.
#[inline(always)]
pub fn checksum(sum: u32) -> [u8; 2] {
    let mut folded = (sum & 0xffff) + (sum >> 16);
    folded = (folded & 0xffff) + (folded >> 16);
    (!(folded as u16)).to_ne_bytes()
}
