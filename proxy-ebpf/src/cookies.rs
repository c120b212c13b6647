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
//!
//! Kept cheap: the kernel's helpers read the headers where they lie in the packet,
//! and the SYN-ACK is written in place with its checksums summed in registers. An
//! answer calls one helper (the cookie), plus the clock when the client sent
//! timestamps and `bpf_xdp_adjust_tail` when the answer's length differs.

use aya_ebpf::{
    bindings::tcphdr,
    helpers::{bpf_ktime_get_ns, generated},
    programs::XdpContext,
};
use proxy_common::{SynOptions, XdpConfig};

use crate::frame::{at, fold, put, resize, swap_macs};
use crate::handoff::Segment;
use crate::parse::{self, IPPROTO_TCP, TCP_ACK, TCP_SYN};
use crate::socket::Socket;
use crate::verifier::{bounded_index, load_cell, store_cell};

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

/// `SynOptions::wscale` when the client sent no window scale.
const NO_WSCALE: u32 = 0xff;

/// The IP header length the helpers may read (IPv6's; IPv4 + TCP is as long): the
/// pointer they get is checked for this many bytes whatever the family.
const IP_MAX: usize = 40;

/// Answers a SYN with a cookie SYN-ACK, rewriting the frame in place for XDP_TX.
/// `Err` leaves the frame as it was (the caller passes it to the kernel).
#[inline(always)]
pub fn answer_syn(
    ctx: &XdpContext,
    seg: &mut Segment,
    listener: &Socket,
    config: &XdpConfig,
) -> Result<(), ()> {
    let (l3, l4, v6) = (seg.l3(), seg.l4(), seg.v6());
    let th = parse::read::<20>(ctx, l4).map_err(|_| ())?;
    let tcp_len = (th[12] >> 4) as usize * 4;
    let (cookie, mss) = generate(ctx, listener, l3, v6, l4, tcp_len)?;
    // The answer is never longer than it must be: a SYN without options (what most
    // floods send) gets a SYN-ACK of the same size, so the frame need not grow.
    let options = if tcp_len > 20 {
        syn_options(ctx, l4, tcp_len, &mut seg.s.options);
        reply_options(mss, &seg.s.options, config)
    } else {
        Options::NONE
    };
    let client_seq = u32::from_be_bytes([th[4], th[5], th[6], th[7]]);
    let reply = Reply {
        // Ports swapped.
        ports: u32::from_be_bytes([th[2], th[3], th[0], th[1]]),
        seq: cookie,
        ack: client_seq.wrapping_add(1),
        window: window(mss),
        options,
    };
    match reply.options.len {
        0 => emit::<20>(ctx, seg, &reply),
        1 => emit::<24>(ctx, seg, &reply),
        4 => emit::<36>(ctx, seg, &reply),
        _ => emit::<40>(ctx, seg, &reply),
    }
}

/// The kernel's cookie for the SYN whose IP header is at `l3` and TCP header
/// (`tcp_len` bytes with options) at `l4`, and the MSS it encodes. The helper reads
/// the headers in the packet; the verifier checks a packet range against the largest
/// value of the length, so each length gets a call with a constant one.
#[inline(always)]
fn generate(
    ctx: &XdpContext,
    listener: &Socket,
    l3: usize,
    v6: bool,
    l4: usize,
    tcp_len: usize,
) -> Result<(u32, u16), ()> {
    let generated = match tcp_len {
        20 => gen_at::<20>(ctx, listener, l3, v6, l4),
        24 => gen_at::<24>(ctx, listener, l3, v6, l4),
        28 => gen_at::<28>(ctx, listener, l3, v6, l4),
        32 => gen_at::<32>(ctx, listener, l3, v6, l4),
        36 => gen_at::<36>(ctx, listener, l3, v6, l4),
        40 => gen_at::<40>(ctx, listener, l3, v6, l4),
        44 => gen_at::<44>(ctx, listener, l3, v6, l4),
        48 => gen_at::<48>(ctx, listener, l3, v6, l4),
        52 => gen_at::<52>(ctx, listener, l3, v6, l4),
        56 => gen_at::<56>(ctx, listener, l3, v6, l4),
        60 => gen_at::<60>(ctx, listener, l3, v6, l4),
        _ => -1,
    };
    if generated < 0 {
        return Err(());
    }
    Ok((generated as u32, (generated >> 32) as u16))
}

#[inline(always)]
fn gen_at<const TCP: usize>(
    ctx: &XdpContext,
    listener: &Socket,
    l3: usize,
    v6: bool,
    l4: usize,
) -> i64 {
    let (Some(ip), Some(th)) = (at::<IP_MAX>(ctx, l3), at::<TCP>(ctx, l4)) else {
        return -1;
    };
    let ip_len = if v6 { 40 } else { 20 };
    // SAFETY: `listener` is a referenced listening socket; `ip` points at ≥ 40 bytes
    // of the packet and `th` at TCP (its data offset, as the helper requires); the
    // helper only reads them.
    unsafe {
        generated::bpf_tcp_gen_syncookie(
            listener.as_ptr(),
            ip as *mut core::ffi::c_void,
            ip_len,
            th as *mut tcphdr,
            TCP as u32,
        )
    }
}

/// Is this ACK (to a listener, with no connection) the answer to a valid cookie? The
/// kernel's verdict on the headers in the packet: the IP header at `l3` (IPv6 with
/// `v6`), the TCP header at `l4`. Used by the cookie stage and by steering.
#[inline(always)]
pub fn ack_has_valid_cookie(
    ctx: &XdpContext,
    l3: usize,
    l4: usize,
    v6: bool,
    listener: &Socket,
) -> bool {
    let (Some(ip), Some(th)) = (at::<IP_MAX>(ctx, l3), at::<20>(ctx, l4)) else {
        return false;
    };
    let ip_len = if v6 { 40 } else { 20 };
    // SAFETY: `listener` is a referenced listening socket; `ip` points at ≥ 40 bytes
    // of the packet and `th` at 20 (the helper reads only the fixed header).
    let verdict = unsafe {
        generated::bpf_tcp_check_syncookie(
            listener.as_ptr(),
            ip as *mut core::ffi::c_void,
            ip_len,
            th as *mut tcphdr,
            20,
        )
    };
    verdict == 0
}

/// What our SYN-ACK says besides the addresses.
struct Reply {
    /// Source and destination port (the SYN's destination and source).
    ports: u32,
    seq: u32,
    ack: u32,
    window: u16,
    options: Options,
}

/// Our SYN-ACK's options as 32-bit words (values in network order).
struct Options {
    words: [u32; 5],
    /// Words used: 0, 1, 4 or 5.
    len: usize,
}

impl Options {
    const NONE: Options = Options {
        words: [0; 5],
        len: 0,
    };
}

/// Writes the SYN-ACK (`TCP` bytes of TCP header) over the SYN: the frame ends
/// after it, MACs swapped, a fresh IP header (IPv4 options and IPv6 extension
/// headers are not repeated), checksums summed from the words written.
#[inline(always)]
fn emit<const TCP: usize>(ctx: &XdpContext, seg: &Segment, reply: &Reply) -> Result<(), ()> {
    let (l3, v6) = (seg.l3(), seg.v6());
    let ip_len = if v6 { 40 } else { 20 };
    resize(ctx, l3 + ip_len + TCP)?;
    swap_macs(ctx)?;
    let t = &seg.s.tuple;
    let word = |i: usize| u32::from_be(t[i]);
    // The tuple holds the SYN's source (the client) first, then its destination (us).
    // `pseudo`: the sum of the TCP pseudo-header.
    let pseudo = if v6 {
        let ip = at::<40>(ctx, l3).ok_or(())?;
        // Version; payload length, next header, hop limit.
        let fixed = [
            0x6000_0000,
            (TCP as u32) << 16 | (IPPROTO_TCP as u32) << 8 | TTL as u32,
        ];
        put(ip, 0, fixed[0].to_be_bytes());
        put(ip, 4, fixed[1].to_be_bytes());
        let mut sum = TCP as u64 + IPPROTO_TCP as u64;
        for w in 0..4 {
            let (client, server) = (word(w), word(4 + w));
            put(ip, 8 + 4 * w, server.to_be_bytes());
            put(ip, 24 + 4 * w, client.to_be_bytes());
            sum += client as u64 + server as u64;
        }
        sum
    } else {
        let ip = at::<20>(ctx, l3).ok_or(())?;
        let (client, server) = (word(0), word(1));
        // Version/IHL and length; id 0, don't fragment; TTL, protocol (+ checksum).
        let fixed = [
            0x4500_0000 | (20 + TCP) as u32,
            0x0000_4000,
            (TTL as u32) << 24 | (IPPROTO_TCP as u32) << 16,
        ];
        let addrs = client as u64 + server as u64;
        let sum = fixed.iter().fold(addrs, |s, w| s + *w as u64);
        let header = [
            fixed[0],
            fixed[1],
            fixed[2] | fold(sum) as u32,
            server,
            client,
        ];
        for (k, w) in header.iter().enumerate() {
            put(ip, 4 * k, w.to_be_bytes());
        }
        addrs + ((IPPROTO_TCP as u32) << 16 | TCP as u32) as u64
    };
    let tcp = at::<TCP>(ctx, l3 + ip_len).ok_or(())?;
    let o = &reply.options;
    let flags_window = ((TCP / 4) as u32) << 28 | ((TCP_SYN | TCP_ACK) as u32) << 16;
    let fixed = [
        reply.ports,
        reply.seq,
        reply.ack,
        flags_window | reply.window as u32,
    ];
    let mut sum = fixed.iter().fold(pseudo, |s, w| s + *w as u64);
    for k in 0..(TCP - 20) / 4 {
        sum += o.words[k] as u64;
        put(tcp, 20 + 4 * k, o.words[k].to_be_bytes());
    }
    for (k, w) in fixed.iter().enumerate() {
        put(tcp, 4 * k, w.to_be_bytes());
    }
    // Checksum, urgent pointer 0.
    put(tcp, 16, ((fold(sum) as u32) << 16).to_be_bytes());
    Ok(())
}

/// Option items parsed at most (NOPs count): real SYNs carry 5 to 8 (Linux: MSS,
/// SACK-permitted, timestamps, NOP, window scale). Past this the rest is ignored and
/// the SYN-ACK offers less (never anything the client did not send).
const MAX_OPTION_ITEMS: usize = 16;

/// Window scale, SACK-permitted and timestamp of the options of the SYN whose TCP
/// header (`tcp_len` bytes) is at `l4`; a malformed option ends the parse. Cursor and
/// findings live in the per-CPU scratch, read and written as
/// `verifier::load_cell`/`store_cell` (one verifier state per loop iteration).
#[inline(always)]
fn syn_options(ctx: &XdpContext, l4: usize, tcp_len: usize, found: &mut SynOptions) {
    store_cell(&mut found.cursor, 20);
    store_cell(&mut found.wscale, NO_WSCALE);
    store_cell(&mut found.sack, 0);
    store_cell(&mut found.has_tsval, 0);
    // Two bytes at a time: LLVM turns a one-byte bound check (`p + 1 > end`) into
    // `p >= end`, which gives the verifier no range. Only a one-byte option can end
    // the frame, and those (NOP, EOL) carry nothing.
    let pair = |i: usize| parse::read::<2>(ctx, l4 + bounded_index(i, 63));
    for _ in 0..MAX_OPTION_ITEMS {
        let i = load_cell(&found.cursor) as usize;
        if i >= tcp_len || i >= 60 {
            break;
        }
        let Ok([kind, next]) = pair(i) else { break };
        if kind == OPT_EOL {
            break;
        }
        let len = if kind == OPT_NOP { 1 } else { next as usize };
        if len == 0 || (kind != OPT_NOP && len < 2) || i + len > tcp_len {
            break;
        }
        match (kind, len) {
            (OPT_WSCALE, 3) => {
                let Ok([_, shift]) = pair(i + 1) else { break };
                store_cell(&mut found.wscale, u32::from(shift.min(MAX_WSCALE)));
            }
            (OPT_SACK_PERM, 2) => store_cell(&mut found.sack, 1),
            (OPT_TIMESTAMP, 10) => {
                let Ok(ts) = parse::read::<4>(ctx, l4 + bounded_index(i + 2, 63)) else {
                    break;
                };
                store_cell(&mut found.tsval, u32::from_be_bytes(ts));
                store_cell(&mut found.has_tsval, 1);
            }
            _ => {}
        }
        store_cell(&mut found.cursor, (i + len) as u32);
    }
}

/// Our options, in the kernel's order, for a SYN that carried options. Without a
/// client timestamp the cookie cannot carry window scale or SACK, so only MSS is
/// offered (as the kernel does).
#[inline(always)]
fn reply_options(mss: u16, client: &SynOptions, config: &XdpConfig) -> Options {
    let mss = u32::from_be_bytes([OPT_MSS, 4, 0, 0]) | mss as u32;
    // The parser's results, read from the scratch map (see `syn_options`).
    let has_tsval = load_cell(&client.has_tsval);
    let client_tsval = load_cell(&client.tsval);
    let wscale = load_cell(&client.wscale);
    let sack = load_cell(&client.sack) != 0;
    if has_tsval == 0 {
        return Options {
            words: [mss, 0, 0, 0, 0],
            len: 1,
        };
    }
    let has_wscale = wscale <= MAX_WSCALE as u32;
    let sack_or_nops = if sack {
        [OPT_SACK_PERM, 2]
    } else {
        [OPT_NOP, OPT_NOP]
    };
    let mut encoded = if has_wscale { wscale } else { TS_NO_WSCALE };
    if sack {
        encoded |= TS_SACK;
    }
    let ours = if config.synack_wscale > MAX_WSCALE as u32 {
        MAX_WSCALE
    } else {
        config.synack_wscale as u8
    };
    Options {
        words: [
            mss,
            u32::from_be_bytes([sack_or_nops[0], sack_or_nops[1], OPT_TIMESTAMP, 10]),
            timestamp(encoded),
            client_tsval,
            u32::from_be_bytes([OPT_NOP, OPT_WSCALE, 3, ours]),
        ],
        len: if has_wscale { 5 } else { 4 },
    }
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
