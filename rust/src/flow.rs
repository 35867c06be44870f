//! The flow table's records: the key a segment is filed under, the working
//! state of one connection while packets arrive, and the finished connection
//! handed to Python (`py_conn.rs` turns it into `tracker.Connection`).
//!
//! The key is the 4-tuple in a canonical order (the smaller `(addr, port)`
//! first, as `Tracker.feed` orders it), so both directions find one flow.
//! The encapsulation chain (VLANs, tunnels: `encap::intern`'s id) is part of
//! the key, as in the Python reference (and in Zeek >= 8.0 with its VLAN
//! connection key; Zeek's default key is the 5-tuple alone): the same 4-tuple in two
//! tunnels is two connections.

#![forbid(unsafe_code)]

use std::cmp::Ordering;

use crate::endpoint::{Cause, StateId};
use crate::segment::Addr;
use crate::tracker::Side;
use crate::zeek::ZeekConn;

/// `(addr, port, addr, port)`, smaller end first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowKey {
    pub a: Addr,
    pub a_port: u16,
    pub b: Addr,
    pub b_port: u16,
    /// The interned encapsulation chain (0: none).
    pub tunnel: u32,
}

/// Python compares raw address bytes lexicographically (a 4-byte IPv4 address
/// sorts before any 16-byte one that it prefixes); the order only has to be
/// canonical, but following it costs nothing. Compared as big-endian integers
/// when both are the same family: the same order as the bytes, without the
/// call to `memcmp` a slice comparison makes for every packet (7 % of the
/// tracking thread in `perf`).
fn addr_order(a: &Addr, b: &Addr) -> Ordering {
    match (a, b) {
        (Addr::V4(x), Addr::V4(y)) => u32::from_be_bytes(*x).cmp(&u32::from_be_bytes(*y)),
        (Addr::V6(x), Addr::V6(y)) => u128::from_be_bytes(*x).cmp(&u128::from_be_bytes(*y)),
        (Addr::V4(x), Addr::V6(y)) => x[..].cmp(&y[..]),
        (Addr::V6(x), Addr::V4(y)) => x[..].cmp(&y[..]),
    }
}

/// The key as three words: hashers with a per-call cost (SipHash) or a faster
/// path for integers than for byte strings (foldhash, `tracker::FlowTable`)
/// both gain over the derived impl's eight writes. (Edit by R3: words instead
/// of one 42-byte string, which foldhash hashed through its long-input path.)
impl std::hash::Hash for FlowKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let word = |addr: &Addr| match addr {
            Addr::V4(b) => u128::from(u32::from_be_bytes(*b)),
            Addr::V6(b) => u128::from_be_bytes(*b),
        };
        // an IPv4 address and the IPv6 one with the same low bits differ here
        let v6 = |addr: &Addr| u64::from(matches!(addr, Addr::V6(_)));
        state.write_u128(word(&self.a));
        state.write_u128(word(&self.b));
        state.write_u64(
            u64::from(self.a_port) << 48
                | u64::from(self.b_port) << 32
                | u64::from(self.tunnel) << 2
                | v6(&self.a) << 1
                | v6(&self.b),
        );
    }
}

impl FlowKey {
    pub fn new(src: Addr, sport: u16, dst: Addr, dport: u16) -> FlowKey {
        if addr_order(&src, &dst).then(sport.cmp(&dport)) != Ordering::Greater {
            FlowKey {
                a: src,
                a_port: sport,
                b: dst,
                b_port: dport,
                tunnel: 0,
            }
        } else {
            FlowKey {
                a: dst,
                a_port: dport,
                b: src,
                b_port: sport,
                tunnel: 0,
            }
        }
    }

    /// The same 4-tuple inside an encapsulation chain (`encap::intern`).
    pub fn within(self, tunnel: u32) -> FlowKey {
        FlowKey { tunnel, ..self }
    }
}

/// What one side sent (`tracker.DirectionStats`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DirStats {
    pub packets: u64,
    pub payload_bytes: u64,
    pub ip_bytes: u64,
    pub frame_bytes: u64,
    pub syn: u64,
    pub fin: u64,
    pub rst: u64,
    pub ack: u64,
    pub psh: u64,
    pub retransmissions: u64,
    pub zero_windows: u64,
}

/// One segment kept for ladder charts (`tracker.WireSegment`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WireSeg {
    pub time: f64,
    pub from_orig: bool,
    pub flags: u8,
    pub seq: u32,
    pub ack: u32,
    pub length: u32,
    pub record: u64,
}

/// The working state of one connection while packets arrive (`tracker._Flow`).
pub struct Flow {
    pub index: u64,
    pub orig_ip: Addr,
    pub orig_port: u16,
    pub resp_ip: Addr,
    pub resp_port: u16,
    pub start: f64,
    pub last: f64,
    pub first_record: u64,
    pub stats: [DirStats; 2],
    pub sides: [Option<Box<Side>>; 2],
    pub isn: [Option<u32>; 2],
    pub max_end: [Option<u32>; 2],
    pub last_window: [Option<u16>; 2],
    /// SYNs seen before the responder answered (`_Flow.pending_syns`, of which
    /// only the first one's time and the last one are ever read).
    pub pending_syns: Option<PendingSyns>,
    pub zeek: ZeekConn,
    pub completeness: u8,
    pub fin_dirs: u8,
    pub notes: Vec<String>,
    pub segments: Option<Vec<WireSeg>>,
    /// Wireshark's relative-number bases per side, set only while segments are kept.
    pub rel_base: [Option<u32>; 2],
}

impl Flow {
    pub fn new(
        index: u64,
        src: Addr,
        sport: u16,
        dst: Addr,
        dport: u16,
        t: f64,
        record: u64,
    ) -> Flow {
        Flow {
            index,
            orig_ip: src,
            orig_port: sport,
            resp_ip: dst,
            resp_port: dport,
            start: t,
            last: t,
            first_record: record,
            stats: [DirStats::default(); 2],
            sides: [None, None],
            isn: [None; 2],
            max_end: [None; 2],
            last_window: [None; 2],
            pending_syns: None,
            zeek: ZeekConn::new(),
            completeness: 0,
            fin_dirs: 0,
            notes: Vec::new(),
            segments: None,
            rel_base: [None; 2],
        }
    }

    pub fn flip(&mut self) {
        std::mem::swap(&mut self.orig_ip, &mut self.resp_ip);
        std::mem::swap(&mut self.orig_port, &mut self.resp_port);
        self.stats.swap(0, 1);
        self.sides.swap(0, 1);
        self.isn.swap(0, 1);
        self.max_end.swap(0, 1);
        self.last_window.swap(0, 1);
        self.rel_base.swap(0, 1);
    }
}

/// The SYNs a silent responder has not answered yet.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PendingSyns {
    pub first_time: f64,
    /// (time, seq, record) of the latest.
    pub last: (f64, u32, u64),
}

impl PendingSyns {
    pub fn push(pending: &mut Option<PendingSyns>, syn: (f64, u32, u64)) {
        match pending {
            Some(p) => p.last = syn,
            None => {
                *pending = Some(PendingSyns {
                    first_time: syn.0,
                    last: syn,
                })
            }
        }
    }
}

/// Notes are capped per connection, as `_Flow.note` caps them.
pub fn note(notes: &mut Vec<String>, text: impl FnOnce() -> String) {
    if notes.len() < 50 {
        notes.push(text());
    }
}

/// One history entry of a finished connection; `frame` 0 means inferred or a timer.
#[derive(Clone, Debug, PartialEq)]
pub struct HistEntry {
    pub time: f64,
    pub state: StateId,
    pub cause: HistCause,
    pub frame: u64,
}

/// A history cause: the endpoint's own, or a text the tracker made up at the end.
#[derive(Clone, Debug, PartialEq)]
pub enum HistCause {
    Endpoint(Cause),
    Text(&'static str),
}

/// The conn.log values that are not copied from elsewhere (`zeek.ZeekRow`).
#[derive(Clone, Debug, PartialEq)]
pub struct ZeekFields {
    pub duration: f64,
    pub orig_bytes: i64,
    pub resp_bytes: i64,
    pub conn_state: &'static str,
    pub history: String,
    /// Acknowledged bytes the capture never showed (`ZeekConn::missed_bytes`).
    pub missed_bytes: u64,
}

/// Everything reconstructed about one TCP connection (`tracker.Connection`).
#[derive(Clone, Debug, PartialEq)]
pub struct Connection {
    pub index: u64,
    pub orig_ip: Addr,
    pub orig_port: u16,
    pub resp_ip: Addr,
    pub resp_port: u16,
    pub start: f64,
    pub end: f64,
    pub stats: [DirStats; 2],
    pub histories: [Vec<HistEntry>; 2],
    pub completeness: u8,
    pub zeek: ZeekFields,
    /// `cannot_tell["orig"]`, `cannot_tell["resp"]` (that order, as the dict has it).
    pub cannot_tell: [Option<String>; 2],
    pub notes: Vec<String>,
    pub segments: Vec<WireSeg>,
    pub first_record: u64,
    /// The encapsulation chain (`encap::chain_texts` gives `Connection.tunnel`).
    pub tunnel: u32,
}

/// A side entering a state, as it happens (`tracker.Change`, for live views).
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    pub index: u64,
    pub orig_ip: Addr,
    pub orig_port: u16,
    pub resp_ip: Addr,
    pub resp_port: u16,
    /// 0: orig, 1: resp.
    pub side: u8,
    pub time: f64,
    pub state: StateId,
    pub cause: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(a: &Addr) -> &[u8] {
        match a {
            Addr::V4(b) => b,
            Addr::V6(b) => b,
        }
    }

    /// The integer comparison is the byte order Python's tuples compare in.
    #[test]
    fn address_order_is_the_order_of_the_bytes() {
        let mut next = crate::testing::xorshift(0x9E37_79B9_7F4A_7C15);
        let addr = |next: &mut dyn FnMut() -> u64| {
            let r = next();
            // few distinct bytes, so that long common prefixes and ties occur
            let byte = |i: u32| [0u8, 1, 0x7F, 0x80, 0xFF][((r >> (i * 3)) % 5) as usize];
            if r >> 63 == 0 {
                Addr::V4(std::array::from_fn(|i| byte(i as u32)))
            } else {
                Addr::V6(std::array::from_fn(|i| byte(i as u32)))
            }
        };
        for _ in 0..200_000 {
            let (a, b) = (addr(&mut next), addr(&mut next));
            assert_eq!(addr_order(&a, &b), bytes(&a).cmp(bytes(&b)), "{a:?} {b:?}");
        }
        let v4 = Addr::V4([10, 0, 0, 1]);
        let v6 = Addr::V6([10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(addr_order(&v4, &v6), Ordering::Less, "a prefix sorts first");
    }
}
