//! SYN cookies answered from XDP with the kernel's own cookie helpers, so the kernel
//! accepts the client's ACK and creates the connection as if it had sent the SYN-ACK.
//!
//! The SYN-ACK carries what the kernel's cookie code decodes: the cookie (MSS index) in
//! the sequence number, and, when the client sent timestamps, window scale / SACK / ECN
//! in the low 6 bits of our timestamp value (`cookie_timestamp_decode`). The kernel
//! subtracts a per-address-pair random offset from the echoed timestamp unless
//! `net.ipv4.tcp_timestamps = 2`, and the helper issues cookies for a listener whose
//! queue is not full only with `net.ipv4.tcp_syncookies = 2`: the daemon sets both
//! while a listener has cookies configured. ECN is not offered in cookie SYN-ACKs.

use aya_ebpf::{
    bindings::tcphdr,
    helpers::{bpf_ktime_get_ns, generated},
    programs::XdpContext,
};
use proxy_common::{CookieScratch, SYNACK_TCP_LEN, SynOptions, XdpConfig};

use crate::frame::{checksum, csum, load, resize, store, swap_macs};
use crate::maps::COOKIE_SCRATCH;
use crate::parse::{self, Addr, IpPacket, TCP_ACK, TCP_SYN};
use crate::socket::Socket;
use crate::verifier::{self, bounded_index, load_cell, store_cell};

const TTL: u8 = 64;

/// Bits of the timestamp value the kernel reads back as options (`TSBITS`).
const TS_OPTION_BITS: u32 = 6;
const TS_NO_WSCALE: u32 = 0xf;
const TS_SACK: u32 = 1 << 4;
/// Largest window shift TCP allows (RFC 7323); the kernel clamps larger ones.
const MAX_WSCALE: u8 = 14;

const OPT_EOL: u8 = 0;
const OPT_NOP: u8 = 1;
const OPT_MSS: u8 = 2;
const OPT_WSCALE: u8 = 3;
const OPT_SACK_PERM: u8 = 4;
const OPT_TIMESTAMP: u8 = 8;

#[inline(always)]
fn scratch() -> Result<&'static mut CookieScratch, ()> {
    let ptr = COOKIE_SCRATCH.get_ptr_mut(0).ok_or(())?;
    // SAFETY: a per-CPU map slot: valid for the program's run and only this CPU
    // touches it (the program runs to completion without preemption).
    Ok(unsafe { &mut *ptr })
}

/// `SynOptions::wscale` when the client sent no window scale.
const NO_WSCALE: u32 = 0xff;

/// Answers a SYN with a cookie SYN-ACK, rewriting the frame in place for XDP_TX.
/// `Err` leaves the frame as it was (the caller passes it to the kernel).
/// Out of line: see "Out of line" in `verifier.rs`.
#[inline(never)]
pub fn answer_syn(
    ctx: &XdpContext,
    packet: &IpPacket,
    listener: &Socket,
    config: &XdpConfig,
) -> Result<(), ()> {
    let doff = parse::read::<1>(ctx, packet.l4 + 12).map_err(|_| ())?[0];
    // The verifier must see the helper's length is 20..=60 on the register passed:
    // `verifier::opaque` keeps the check below on that register.
    let options_len = verifier::opaque(((doff >> 4) as u32 * 4).wrapping_sub(20));
    if options_len > 40 {
        return Err(());
    }
    let tcp_len = 20 + options_len;
    let CookieScratch {
        th,
        ip,
        tcp,
        options,
        pseudo,
    } = scratch()?;
    // The client's TCP header with options, copied out for the helper.
    load(ctx, packet.l4, th, tcp_len)?;
    let ip_len = copy_ip_header(ctx, packet, ip)?;
    // SAFETY: `listener` is a referenced listening socket; `ip` holds `ip_len` bytes
    // and `th` `tcp_len` bytes (equal to the data offset, as the helper requires).
    let generated = unsafe {
        generated::bpf_tcp_gen_syncookie(
            listener.as_ptr(),
            ip.as_mut_ptr() as *mut core::ffi::c_void,
            ip_len,
            th.as_mut_ptr() as *mut tcphdr,
            tcp_len,
        )
    };
    if generated < 0 {
        return Err(());
    }
    let cookie = generated as u32;
    let mss = (generated >> 32) as u16;
    syn_options(th, tcp_len, options);
    let client_seq = u32::from_be_bytes([th[4], th[5], th[6], th[7]]);

    *tcp = [0u8; SYNACK_TCP_LEN];
    tcp[0..2].copy_from_slice(&th[2..4]);
    tcp[2..4].copy_from_slice(&th[0..2]);
    tcp[4..8].copy_from_slice(&cookie.to_be_bytes());
    tcp[8..12].copy_from_slice(&client_seq.wrapping_add(1).to_be_bytes());
    // No ECE: ECN is not negotiated through the cookie (the client falls back to none).
    tcp[13] = TCP_SYN | TCP_ACK;
    tcp[14..16].copy_from_slice(&window(mss).to_be_bytes());
    // The answer is never longer than it must be: a SYN without options (what most
    // floods send) gets a SYN-ACK of the same size, so the frame need not grow.
    let answer = Answer {
        ip_len,
        ip,
        tcp,
        pseudo,
    };
    match write_options(answer.tcp, mss, options, config, tcp_len > 20) {
        0 => emit::<20>(ctx, packet, answer),
        4 => emit::<24>(ctx, packet, answer),
        16 => emit::<36>(ctx, packet, answer),
        _ => emit::<40>(ctx, packet, answer),
    }
}

/// The SYN-ACK being built, in the scratch map.
struct Answer<'a> {
    ip_len: u32,
    ip: &'a mut [u8; 40],
    tcp: &'a mut [u8; SYNACK_TCP_LEN],
    pseudo: &'a mut [u8; 40],
}

/// Resizes the frame, swaps the MACs, writes IP and TCP headers (`TCP` bytes of TCP
/// header) with their checksums.
#[inline(always)]
fn emit<const TCP: usize>(ctx: &XdpContext, packet: &IpPacket, a: Answer) -> Result<(), ()> {
    let Answer {
        ip_len,
        ip,
        tcp,
        pseudo,
    } = a;
    tcp[12] = ((TCP / 4) as u8) << 4;
    let tcp: &mut [u8; TCP] = (&mut tcp[..TCP]).try_into().map_err(|_| ())?;
    resize(ctx, packet.l3 + ip_len as usize + TCP)?;
    swap_macs(ctx)?;
    *ip = [0u8; 40];
    match (&packet.src, &packet.dst) {
        (Addr::V4(client), Addr::V4(server)) => {
            let h: &mut [u8; 20] = (&mut ip[..20]).try_into().map_err(|_| ())?;
            h[0] = 0x45;
            h[2..4].copy_from_slice(&((20 + TCP) as u16).to_be_bytes());
            h[6] = 0x40; // don't fragment
            h[8] = TTL;
            h[9] = parse::IPPROTO_TCP;
            h[12..16].copy_from_slice(server);
            h[16..20].copy_from_slice(client);
            let ip_sum = checksum(csum(h, 0)?);
            h[10..12].copy_from_slice(&ip_sum);
            let p: &mut [u8; 12] = (&mut pseudo[..12]).try_into().map_err(|_| ())?;
            p[..4].copy_from_slice(server);
            p[4..8].copy_from_slice(client);
            p[8..].copy_from_slice(&[0, parse::IPPROTO_TCP, 0, TCP as u8]);
            let tcp_sum = checksum(csum(tcp, csum(p, 0)?)?);
            tcp[16..18].copy_from_slice(&tcp_sum);
            store(ctx, packet.l3, h)?;
            store(ctx, packet.l3 + 20, tcp)
        }
        (Addr::V6(client), Addr::V6(server)) => {
            ip[0] = 0x60;
            ip[4..6].copy_from_slice(&(TCP as u16).to_be_bytes());
            ip[6] = parse::IPPROTO_TCP;
            ip[7] = TTL;
            ip[8..24].copy_from_slice(server);
            ip[24..40].copy_from_slice(client);
            pseudo[..16].copy_from_slice(server);
            pseudo[16..32].copy_from_slice(client);
            pseudo[32..].copy_from_slice(&[0, 0, 0, TCP as u8, 0, 0, 0, parse::IPPROTO_TCP]);
            let tcp_sum = checksum(csum(tcp, csum(pseudo, 0)?)?);
            tcp[16..18].copy_from_slice(&tcp_sum);
            store(ctx, packet.l3, ip)?;
            store(ctx, packet.l3 + 40, tcp)
        }
        _ => Err(()),
    }
}

/// Is this ACK (to a listener, with no connection) the answer to a valid cookie?
/// Out of line: see "Out of line" in `verifier.rs`.
#[inline(never)]
pub fn ack_has_valid_cookie(ctx: &XdpContext, packet: &IpPacket, listener: &Socket) -> bool {
    let Ok(CookieScratch { th, ip, .. }) = scratch() else {
        return false;
    };
    let Ok(header) = parse::read::<20>(ctx, packet.l4) else {
        return false;
    };
    th[..20].copy_from_slice(&header);
    let Ok(ip_len) = copy_ip_header(ctx, packet, ip) else {
        return false;
    };
    check_cookie(listener, ip, ip_len, th)
}

/// [`ack_has_valid_cookie`] for the steering program, which keeps no `IpPacket`: the
/// ACK's IP header is at `l3` (IPv6 with `v6`), its TCP header at `l4`.
/// Out of line: see "Out of line" in `verifier.rs`.
#[inline(never)]
pub fn ack_at_has_valid_cookie(
    ctx: &XdpContext,
    l3: usize,
    l4: usize,
    v6: bool,
    listener: &Socket,
) -> bool {
    let Ok(CookieScratch { th, ip, .. }) = scratch() else {
        return false;
    };
    let ip_len = if v6 { 40 } else { 20 };
    if load(ctx, l4, th, 20).is_err() || load(ctx, l3, ip, ip_len).is_err() {
        return false;
    }
    check_cookie(listener, ip, ip_len, th)
}

/// The kernel's verdict on the cookie in the ACK whose IP header (`ip_len` bytes) and
/// TCP header (20 bytes) are in `ip` and `th`.
#[inline(always)]
fn check_cookie(listener: &Socket, ip: &mut [u8; 40], ip_len: u32, th: &mut [u8; 64]) -> bool {
    // SAFETY: `listener` is a referenced listening socket; `ip` holds `ip_len` bytes,
    // `th` 20 (the helper reads only the fixed header).
    let verdict = unsafe {
        generated::bpf_tcp_check_syncookie(
            listener.as_ptr(),
            ip.as_mut_ptr() as *mut core::ffi::c_void,
            ip_len,
            th.as_mut_ptr() as *mut tcphdr,
            20,
        )
    };
    verdict == 0
}

/// Copies the IP header's fixed part (20 bytes IPv4, 40 IPv6) into `ip`; its length.
#[inline(always)]
fn copy_ip_header(ctx: &XdpContext, packet: &IpPacket, ip: &mut [u8; 40]) -> Result<u32, ()> {
    let len = match packet.src {
        Addr::V4(_) => 20,
        Addr::V6(_) => 40,
    };
    load(ctx, packet.l3, ip, len).map(|()| len)
}

/// Option items parsed at most (NOPs count): real SYNs carry 5 to 8 (Linux: MSS,
/// SACK-permitted, timestamps, NOP, window scale). Past this the rest is ignored and
/// the SYN-ACK offers less (never anything the client did not send).
const MAX_OPTION_ITEMS: usize = 16;

/// Window scale, SACK-permitted and timestamp of a SYN's options; a malformed option
/// ends the parse. Cursor and findings live in the per-CPU scratch, read and written
/// as `verifier::load_cell`/`store_cell` (one verifier state per loop iteration).
#[inline(always)]
fn syn_options(th: &[u8; 64], tcp_len: u32, found: &mut SynOptions) {
    store_cell(&mut found.cursor, 20);
    store_cell(&mut found.wscale, NO_WSCALE);
    store_cell(&mut found.sack, 0);
    store_cell(&mut found.has_tsval, 0);
    for _ in 0..MAX_OPTION_ITEMS {
        // Bounded by the test below (a `bounded_index` here only added instructions).
        let i = load_cell(&found.cursor) as usize;
        if i >= tcp_len as usize || i >= 60 {
            break;
        }
        let kind = th[i];
        if kind == OPT_EOL {
            break;
        }
        let len = if kind == OPT_NOP {
            1
        } else {
            th[bounded_index(i + 1, 63)] as usize
        };
        if len == 0 || (kind != OPT_NOP && len < 2) || i + len > tcp_len as usize {
            break;
        }
        match (kind, len) {
            (OPT_WSCALE, 3) => {
                let shift = th[bounded_index(i + 2, 63)];
                store_cell(&mut found.wscale, u32::from(shift.min(MAX_WSCALE)));
            }
            (OPT_SACK_PERM, 2) => store_cell(&mut found.sack, 1),
            (OPT_TIMESTAMP, 10) => {
                let at = |k: usize| th[bounded_index(i + k, 63)];
                let tsval = u32::from_be_bytes([at(2), at(3), at(4), at(5)]);
                store_cell(&mut found.tsval, tsval);
                store_cell(&mut found.has_tsval, 1);
            }
            _ => {}
        }
        store_cell(&mut found.cursor, (i + len) as u32);
    }
}

/// Writes the options of our SYN-ACK, in the kernel's order; their length (0, 4, 16
/// or 20). Without a client timestamp the cookie cannot carry window scale or SACK,
/// so only MSS is offered (as the kernel does); to a SYN without any option, none
/// (the client then assumes the default MSS, which is what the cookie encodes).
#[inline(always)]
fn write_options(
    tcp: &mut [u8; SYNACK_TCP_LEN],
    mss: u16,
    client: &SynOptions,
    config: &XdpConfig,
    client_sent_options: bool,
) -> usize {
    if !client_sent_options {
        return 0;
    }
    let mss = mss.to_be_bytes();
    tcp[20..24].copy_from_slice(&[OPT_MSS, 4, mss[0], mss[1]]);
    // The parser's results, read from the scratch map (see `syn_options`).
    let has_tsval = load_cell(&client.has_tsval);
    let client_tsval = load_cell(&client.tsval);
    let wscale = load_cell(&client.wscale);
    let sack = load_cell(&client.sack) != 0;
    if has_tsval == 0 {
        return 4;
    }
    let has_wscale = wscale <= MAX_WSCALE as u32;
    if sack {
        tcp[24..26].copy_from_slice(&[OPT_SACK_PERM, 2]);
    } else {
        tcp[24..26].copy_from_slice(&[OPT_NOP, OPT_NOP]);
    }
    let mut encoded = if has_wscale { wscale } else { TS_NO_WSCALE };
    if sack {
        encoded |= TS_SACK;
    }
    tcp[26..28].copy_from_slice(&[OPT_TIMESTAMP, 10]);
    tcp[28..32].copy_from_slice(&timestamp(encoded).to_be_bytes());
    tcp[32..36].copy_from_slice(&client_tsval.to_be_bytes());
    if has_wscale {
        let ours = if config.synack_wscale > MAX_WSCALE as u32 {
            MAX_WSCALE
        } else {
            config.synack_wscale as u8
        };
        tcp[36..40].copy_from_slice(&[OPT_NOP, OPT_WSCALE, 3, ours]);
        return 20;
    }
    16
}

/// Our timestamp value: the kernel's TCP clock (ms of CLOCK_MONOTONIC) with its low
/// bits replaced by the encoded options, never ahead of the clock (as
/// `cookie_init_timestamp` does), so the connection's later timestamps only grow.
#[inline(always)]
fn timestamp(encoded: u32) -> u32 {
    // SAFETY: a BPF helper without arguments.
    let now_ms = unsafe { bpf_ktime_get_ns() } / 1_000_000;
    let mut ts = (now_ms >> TS_OPTION_BITS << TS_OPTION_BITS) | encoded as u64;
    if ts > now_ms {
        ts -= 1 << TS_OPTION_BITS;
    }
    ts as u32
}

/// The receive window in the SYN-ACK (never scaled): 64 KiB rounded down to whole
/// segments, as the kernel's initial window for a default receive buffer.
#[inline(always)]
fn window(mss: u16) -> u16 {
    if mss == 0 {
        return 65535;
    }
    65535 - 65535 % mss
}
