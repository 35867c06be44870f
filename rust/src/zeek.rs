//! Zeek's `conn_state` and `history`: a port of `tcplens.packets.zeek.ZeekConn`.
//!
//! Zeek keeps its own per-endpoint states (INACTIVE, SYN_SENT, SYN_ACK_SENT,
//! PARTIAL, ESTABLISHED, CLOSED, RESET: `analyzer/protocol/tcp/TCP_Endpoint.h`)
//! next to the RFC 9293 model; they answer "what did each side send", so they
//! are not the model's states and have no table there. The rules and their
//! sources are documented once, in `zeek.py`; this file follows it branch for
//! branch and is held equal to it by `tests/packets/test_engine_diff.py`.

#![forbid(unsafe_code)]

use crate::endpoint::{ACK, FIN, RST, SYN};

const TOO_LARGE_SEQ_DELTA: i64 = 1_048_576;

/// TCP ports Zeek treats as likely servers: Zeek 8.0's `likely_server_ports`
/// (the `redef likely_server_ports += {...}` lines of
/// `scripts/base/protocols/*/main.zeek`). `zeek.LIKELY_SERVER_PORTS` lists
/// them by protocol, with the four (514, 1434, 3306, 5432) Zeek 8.1 adds.
const LIKELY_SERVER_PORTS: [u16; 44] = [
    21, 22, 25, 53, 79, 80, 81, 88, 135, 139, 143, 389, 443, 445, 502, 563, 585, 587, 614, 631,
    636, 989, 990, 992, 993, 995, 1080, 1883, 2811, 3128, 3268, 3389, 5222, 5223, 5269, 6379, 6666,
    6667, 6668, 6669, 8000, 8080, 8888, 20000,
];

fn likely_server(port: u16) -> bool {
    LIKELY_SERVER_PORTS.contains(&port)
}

/// Zeek's guess, for a connection whose first packet is not a bare SYN, that
/// the sender of that packet is really the responder.
pub fn should_flip(sport: u16, dport: u16, flags: u8) -> bool {
    if flags & SYN != 0 && flags & ACK == 0 {
        return false;
    }
    if !likely_server(sport) {
        return false;
    }
    if likely_server(dport) {
        return flags & SYN == 0 && sport < dport;
    }
    true
}

/// Signed `a - b` in 32-bit sequence space.
fn delta(a: u32, b: u32) -> i64 {
    i64::from(a.wrapping_sub(b) as i32)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ZState {
    Inactive,
    SynSent,
    SynAckSent,
    Partial,
    Established,
    Closed,
    Reset,
}

const H_SYN: u32 = 1;
const H_FIN: u32 = 2;
const H_RST: u32 = 4;
const H_FINRST: u32 = 8;
const H_DATA: u32 = 16;
const H_ACK: u32 = 32;
const H_MULTI: u32 = 64;

#[derive(Clone, Copy)]
enum Scale {
    Win0,
    Rxmt,
    Gap,
    Chk,
}

#[derive(Clone, Debug)]
pub struct ZEndpoint {
    is_orig: bool,
    pub state: ZState,
    prev_state: ZState,
    start_seq: u32,
    last_seq: u32,
    ack_seq: u32,
    fin_cnt: u64,
    last_syn: i64,
    last_fin: i64,
    last_rst: i64,
    counts: [u64; 4],
    thresholds: [u64; 4],
    /// The reassembler (`TCP_Reassembler`) in relative numbers: delivered up to
    /// `reassem`, acknowledged up to `trim`, `blocks` seen above a hole.
    reassem: i64,
    trim: i64,
    blocks: Vec<(i64, i64)>,
    fin_seq: i64,
    pub did_close: bool,
}

impl ZEndpoint {
    fn new(is_orig: bool) -> ZEndpoint {
        ZEndpoint {
            is_orig,
            state: ZState::Inactive,
            prev_state: ZState::Inactive,
            start_seq: 0,
            last_seq: 0,
            ack_seq: 0,
            fin_cnt: 0,
            last_syn: 0,
            last_fin: 0,
            last_rst: 0,
            counts: [0; 4],
            thresholds: [1; 4],
            reassem: 1,
            trim: 1,
            blocks: Vec::new(),
            fin_seq: 0,
            did_close: false,
        }
    }

    fn set_state(&mut self, state: ZState) {
        if state != self.state {
            self.prev_state = self.state;
            self.state = state;
        }
    }

    fn init_seq(&mut self, seq: u32) {
        self.start_seq = seq;
        self.ack_seq = seq;
    }

    /// Payload bytes from sequence numbers, as Zeek's `TCP_Endpoint::Size()`.
    fn size(&self, peer: &ZEndpoint) -> i64 {
        if self.prev_state == ZState::SynSent
            && self.state == ZState::Reset
            && peer.state == ZState::Inactive
        {
            return 0;
        }
        let last = delta(self.last_seq, self.start_seq);
        let acked = delta(self.ack_seq, self.start_seq);
        let mut size = last.max(acked).max(0);
        if size > 0 {
            size -= 1;
        }
        if self.fin_cnt > 0 && size > 0 {
            size -= 1;
        }
        size
    }
}

/// Zeek's view of one TCP connection, advanced one packet at a time.
#[derive(Clone, Debug)]
pub struct ZeekConn {
    /// Both endpoints; `orig` says which slot is the originator now (a flip swaps roles,
    /// not slots, so a caller's slot stays valid across it).
    eps: [ZEndpoint; 2],
    orig: usize,
    hist: String,
    seen: u32,
    pub flips: u32,
    pub last_time: f64,
    /// Bytes acknowledged but never captured (conn.log `missed_bytes`).
    pub missed_bytes: u64,
    /// `TCPSessionAdapter`'s `is_partial` and `first_packet_seen` (ORIG 1, RESP 2).
    is_partial: bool,
    first_seen: u8,
}

impl Default for ZeekConn {
    fn default() -> Self {
        ZeekConn::new()
    }
}

impl ZeekConn {
    pub fn new() -> ZeekConn {
        ZeekConn {
            eps: [ZEndpoint::new(true), ZEndpoint::new(false)],
            orig: 0,
            hist: String::new(),
            seen: 0,
            flips: 0,
            last_time: 0.0,
            missed_bytes: 0,
            is_partial: false,
            first_seen: 0,
        }
    }

    pub fn orig(&self) -> &ZEndpoint {
        &self.eps[self.orig]
    }

    pub fn resp(&self) -> &ZEndpoint {
        &self.eps[1 - self.orig]
    }

    pub fn history(&self) -> &str {
        &self.hist
    }

    fn add(&mut self, ep: usize, code: char) {
        let c = if self.eps[ep].is_orig {
            code
        } else {
            code.to_ascii_lowercase()
        };
        self.hist.push(c);
    }

    /// Add `code` the first time; true if it had been seen before.
    fn check(&mut self, ep: usize, mask: u32, code: char) -> bool {
        let mask = if self.eps[ep].is_orig {
            mask
        } else {
            mask << 16
        };
        if self.seen & mask != 0 {
            return true;
        }
        self.seen |= mask;
        self.add(ep, code);
        false
    }

    fn scaled(&mut self, ep: usize, code: char, which: Scale) {
        let k = which as usize;
        let e = &mut self.eps[ep];
        e.counts[k] += 1;
        if e.counts[k] == e.thresholds[k] {
            e.thresholds[k] = e.thresholds[k].saturating_mul(10);
            self.add(ep, code);
        }
    }

    /// Swap originator and responder, as Zeek does when it guesses wrong.
    pub fn flip(&mut self) {
        self.orig = 1 - self.orig;
        self.eps[self.orig].is_orig = true;
        self.eps[1 - self.orig].is_orig = false;
        self.flips += 1;
        self.hist.push('^');
    }

    /// A segment whose checksum failed: Zeek's `TCP_Endpoint::ChecksumError`, a
    /// scaled history `C`/`c` and nothing else (`zeek.ZeekConn.checksum_error`).
    pub fn checksum_error(&mut self, is_orig: bool) {
        let ep = if is_orig { self.orig } else { 1 - self.orig };
        self.scaled(ep, 'C', Scale::Chk);
    }

    /// Both sides closed (or reset): Zeek's `did_close` on each.
    pub fn both_closed(&self) -> bool {
        self.eps[0].did_close && self.eps[1].did_close
    }

    /// Zeek's `TCPSessionAdapter::IsReuse` (`zeek.ZeekConn.is_reuse`): does this
    /// packet start a new connection on the 4-tuple? Only a SYN can (a SYN+ACK only
    /// while the originator is INACTIVE, compared with the responder's number);
    /// after either side closed (`IsClosed()`) every such SYN does, before that
    /// only one with another initial sequence number, unless it answers a SYN+ACK
    /// that came first (the reversal `packet` flips).
    pub fn is_reuse(&self, flags: u8, seq: u32) -> bool {
        if flags & SYN == 0 {
            return false;
        }
        let mut conn_orig = self.orig();
        if flags & ACK != 0 {
            if self.orig().state != ZState::Inactive {
                return false; // not a half connection
            }
            conn_orig = self.resp();
        }
        if self.eps[0].did_close || self.eps[1].did_close {
            return true;
        }
        if seq == conn_orig.start_seq {
            return false;
        }
        !(flags & ACK == 0
            && conn_orig.state == ZState::SynAckSent
            && self.resp().state == ZState::Inactive
            && seq == self.resp().start_seq)
    }

    /// One segment whose payload was captured whole.
    #[allow(clippy::too_many_arguments)]
    pub fn packet(
        &mut self,
        is_orig: bool,
        flags: u8,
        seq: u32,
        ack: u32,
        length: u32,
        window: u16,
        t: f64,
    ) {
        self.packet_of(is_orig, flags, seq, ack, length, window, t, true);
    }

    /// One segment; `whole`: its payload was captured whole (else Zeek's
    /// `TCP_Endpoint::DataSent` skips it: `truncated_tcp_payload`).
    #[allow(clippy::too_many_arguments)]
    pub fn packet_of(
        &mut self,
        is_orig: bool,
        flags: u8,
        seq: u32,
        ack: u32,
        length: u32,
        window: u16,
        t: f64,
        whole: bool,
    ) {
        let ep = if is_orig { self.orig } else { 1 - self.orig };
        let peer = 1 - ep;
        let (syn, fin, rst) = (flags & SYN != 0, flags & FIN != 0, flags & RST != 0);
        let mut seg_len = length.wrapping_add(u32::from(syn) + u32::from(fin));
        if rst {
            seg_len = seg_len.wrapping_sub(length);
        }
        let end = seq.wrapping_add(seg_len);
        self.partial_status(is_orig, flags);
        self.init_endpoint(ep, flags, seq, end);
        let rel_seq = delta(seq, self.eps[ep].start_seq);
        self.update_history(ep, flags, rel_seq, length);
        if window == 0
            && !rst
            && self.eps[peer].state != ZState::Closed
            && self.eps[ep].state != ZState::Reset
        {
            self.scaled(ep, 'W', Scale::Win0);
        }
        if !self.both_closed() {
            self.last_time = t;
        }
        if fin {
            self.eps[ep].fin_cnt += 1;
            self.eps[ep].fin_seq = rel_seq + i64::from(seg_len);
        }
        let mut rel_ack = 0;
        if flags & ACK != 0 {
            let p = &mut self.eps[peer];
            if p.state == ZState::Inactive {
                rel_ack = 1;
                p.init_seq(ack.wrapping_sub(1));
                p.last_seq = ack.wrapping_sub(1);
            } else {
                rel_ack = delta(ack, p.start_seq);
                if rel_ack < 0 {
                    rel_ack = 0; // TCP_ack_underflow_or_misorder: the ack is not used
                } else if !rst && ack_advances(ack, p.ack_seq) {
                    p.ack_seq = ack;
                }
            }
        }
        self.update_last_seq(ep, end, flags, length);
        self.state_machine(ep, peer, is_orig, flags, seq, length);
        if flags & ACK != 0 {
            self.ack_received(peer, rel_ack);
        }
        if length > 0 && !rst && rel_seq >= 0 && whole {
            self.data_sent(ep, rel_seq + i64::from(syn), length);
        }
        self.first_seen |= if is_orig { 1 } else { 2 };
    }

    /// `TCPSessionAdapter::SetPartialStatus`, on each direction's first packet.
    fn partial_status(&mut self, is_orig: bool, flags: u8) {
        if is_orig {
            if self.first_seen & 1 == 0 {
                self.is_partial = flags & SYN == 0 || flags & ACK != 0;
            }
        } else if self.first_seen & 2 == 0 && !self.is_partial {
            self.is_partial = flags & SYN == 0;
        }
    }

    /// `TCP_Reassembler::DataSent` then `Reassembler::NewBlock` (`zeek.py` `_data_sent`).
    fn data_sent(&mut self, ep: usize, seq: i64, length: u32) {
        let e = &mut self.eps[ep];
        let upper = seq + i64::from(length);
        let acked = delta(e.ack_seq, e.start_seq);
        let seq = seq.max(acked).max(e.trim);
        if upper <= seq {
            return;
        }
        if seq <= e.reassem {
            if upper > e.reassem {
                e.reassem = upper;
                while let Some(&(start, end)) = e.blocks.first() {
                    if start > e.reassem {
                        break;
                    }
                    e.reassem = e.reassem.max(end);
                    e.blocks.remove(0);
                }
            }
            return;
        }
        let (mut lo, mut hi) = (seq, upper);
        let i = e.blocks.iter().take_while(|b| b.1 < lo).count();
        let mut j = i;
        while j < e.blocks.len() && e.blocks[j].0 <= hi {
            lo = lo.min(e.blocks[j].0);
            hi = hi.max(e.blocks[j].1);
            j += 1;
        }
        e.blocks.splice(i..j, [(lo, hi)]);
    }

    /// `TCP_Reassembler::AckReceived` (`zeek.py` `_ack_received`): acknowledged bytes
    /// the capture never showed are a content gap, history `G`/`g` and `missed_bytes`
    /// while both sides are established or cleanly closing.
    fn ack_received(&mut self, ep: usize, mut seq: i64) {
        {
            let e = &self.eps[ep];
            if e.fin_cnt > 0 && seq >= e.fin_seq {
                seq = e.fin_seq - 1; // the FIN's own octet is not data
            }
            if seq <= e.trim {
                return;
            }
        }
        if seq > self.eps[ep].reassem && !(seq <= 2 && self.is_partial) {
            while let Some(&(start, end)) = self.eps[ep].blocks.first() {
                if start >= seq {
                    break;
                }
                self.eps[ep].blocks.remove(0);
                let reassem = self.eps[ep].reassem;
                if start > reassem {
                    self.gap(ep, start - reassem);
                }
                self.eps[ep].reassem = reassem.max(end);
            }
            let reassem = self.eps[ep].reassem;
            if seq > reassem {
                self.gap(ep, seq - reassem);
                self.eps[ep].reassem = seq;
            }
        }
        let e = &mut self.eps[ep];
        let done = e.blocks.iter().take_while(|b| b.1 <= seq).count();
        e.blocks.drain(..done);
        e.trim = seq;
    }

    fn gap(&mut self, ep: usize, length: i64) {
        if clean(&self.eps[ep]) && clean(&self.eps[1 - ep]) {
            self.scaled(ep, 'G', Scale::Gap);
            self.missed_bytes += length.unsigned_abs(); // main.zeek's content_gap handler
        }
    }

    fn init_endpoint(&mut self, ep: usize, flags: u8, seq: u32, end: u32) {
        let syn = flags & SYN != 0;
        let e = &mut self.eps[ep];
        match e.state {
            ZState::Inactive => {
                if syn {
                    e.init_seq(seq);
                    e.last_seq = end;
                } else {
                    e.init_seq(seq.wrapping_sub(1));
                    e.last_seq = seq;
                }
            }
            ZState::SynSent | ZState::SynAckSent => {
                if syn && seq != e.start_seq {
                    e.init_seq(seq);
                    e.last_seq = end;
                }
            }
            ZState::Established | ZState::Partial => {
                if syn {
                    e.init_seq(seq);
                    e.last_seq = end;
                }
            }
            ZState::Reset => {
                if syn && e.prev_state == ZState::Inactive {
                    e.init_seq(seq);
                    e.last_seq = end;
                }
            }
            ZState::Closed => {}
        }
    }

    fn update_history(&mut self, ep: usize, flags: u8, rel_seq: i64, length: u32) {
        let (syn, fin, rst) = (flags & SYN != 0, flags & FIN != 0, flags & RST != 0);
        let bits = u8::from(syn) + u8::from(fin) + u8::from(rst);
        if bits > 1 {
            if fin && rst {
                self.check(ep, H_FINRST, 'I');
            } else {
                self.check(ep, H_MULTI, 'Q');
            }
        } else if bits == 1 {
            if syn {
                let code = if flags & ACK != 0 { 'H' } else { 'S' };
                if self.check(ep, H_SYN, code) && rel_seq != self.eps[ep].last_syn {
                    self.add(ep, code);
                }
                self.eps[ep].last_syn = rel_seq;
            }
            if fin {
                let fin_at = rel_seq + i64::from(length);
                if self.check(ep, H_FIN, 'F') && fin_at != self.eps[ep].last_fin {
                    self.add(ep, 'F');
                }
                self.eps[ep].last_fin = fin_at;
            }
            if rst {
                if self.check(ep, H_RST, 'R') && rel_seq != self.eps[ep].last_rst {
                    self.add(ep, 'R');
                }
                self.eps[ep].last_rst = rel_seq;
            }
        } else if length > 0 {
            self.check(ep, H_DATA, 'D');
        } else if flags & ACK != 0 {
            self.check(ep, H_ACK, 'A');
        }
    }

    fn update_last_seq(&mut self, ep: usize, end: u32, flags: u8, length: u32) {
        let e = &mut self.eps[ep];
        let delta_last = delta(end, e.last_seq);
        if flags & (SYN | RST) != 0 && delta_last.abs() > TOO_LARGE_SEQ_DELTA {
        } else if flags & FIN != 0 && e.last_seq == e.start_seq.wrapping_add(1) {
            e.last_seq = end;
        } else if e.state == ZState::Reset {
        } else if delta_last > 0 {
            e.last_seq = end;
        } else if length > 0 {
            self.scaled(ep, 'T', Scale::Rxmt);
        }
    }

    fn close(&mut self, ep: usize) {
        self.eps[ep].did_close = true;
    }

    fn state_machine(
        &mut self,
        ep: usize,
        peer: usize,
        is_orig: bool,
        flags: u8,
        seq: u32,
        length: u32,
    ) {
        let (syn, fin, rst) = (flags & SYN != 0, flags & FIN != 0, flags & RST != 0);
        let has_ack = flags & ACK != 0;
        let state = self.eps[ep].state;
        match state {
            ZState::Inactive => {
                if syn {
                    if is_orig {
                        let next = if has_ack {
                            ZState::SynAckSent
                        } else {
                            ZState::SynSent
                        };
                        self.eps[ep].set_state(next);
                    } else {
                        if !has_ack
                            && self.eps[peer].state == ZState::SynAckSent
                            && seq == self.eps[ep].start_seq
                        {
                            // SYN/SYN-ACK reversal: the "originator" answered our SYN.
                            self.is_partial = false;
                            self.flip();
                            self.eps[peer].set_state(ZState::Established);
                        }
                        if self.eps[peer].state == ZState::SynSent {
                            self.eps[peer].set_state(ZState::Established);
                        }
                        self.eps[ep].set_state(ZState::Established);
                    }
                }
                if fin {
                    self.eps[ep].set_state(ZState::Closed);
                    self.close(ep);
                }
                if rst {
                    self.eps[ep].set_state(ZState::Reset);
                    self.close(ep);
                }
                if self.eps[ep].state == ZState::Inactive {
                    if !is_orig && length == 0 && self.orig().state == ZState::SynSent {
                        // an ACK of the SYN before the SYN-ACK does not make a partial
                    } else if has_ack && self.eps[peer].state == ZState::Established {
                        self.eps[ep].set_state(ZState::Established);
                        self.is_partial = false;
                    } else {
                        self.eps[ep].set_state(ZState::Partial);
                    }
                }
            }
            ZState::SynSent | ZState::SynAckSent => {
                if fin {
                    self.eps[ep].set_state(ZState::Closed);
                    self.close(ep);
                }
                if rst {
                    self.eps[ep].set_state(ZState::Reset);
                    self.close(ep);
                }
            }
            ZState::Established | ZState::Partial => {
                if syn
                    && state == ZState::Partial
                    && self.eps[peer].state == ZState::Inactive
                    && !has_ack
                {
                    self.eps[ep].set_state(ZState::SynSent);
                }
                if fin && !rst {
                    self.eps[ep].set_state(ZState::Closed);
                    let p = &mut self.eps[peer];
                    if p.state == ZState::Reset && p.prev_state == ZState::Closed {
                        p.set_state(ZState::Closed); // FIN then RST was a normal close
                    }
                    self.close(ep);
                }
                if rst {
                    self.eps[ep].set_state(ZState::Reset);
                    self.close(ep);
                }
            }
            ZState::Closed => {
                if rst && self.eps[peer].state != ZState::Closed {
                    self.eps[ep].set_state(ZState::Reset);
                    self.close(ep);
                }
            }
            ZState::Reset => {}
        }
    }

    pub fn orig_bytes(&self) -> i64 {
        self.orig().size(self.resp())
    }

    pub fn resp_bytes(&self) -> i64 {
        self.resp().size(self.orig())
    }

    /// The `conn_state` function of main.zeek, branch for branch.
    pub fn conn_state(&self) -> &'static str {
        let (os, rs) = (self.orig().state, self.resp().state);
        let o_inactive = matches!(os, ZState::Inactive | ZState::Partial);
        let r_inactive = matches!(rs, ZState::Inactive | ZState::Partial);
        if rs == ZState::Reset {
            if matches!(os, ZState::SynSent | ZState::SynAckSent)
                || (os == ZState::Reset && self.orig_bytes() == 0 && self.resp_bytes() == 0)
            {
                return "REJ";
            }
            return if o_inactive { "RSTRH" } else { "RSTR" };
        }
        if os == ZState::Reset {
            if r_inactive {
                return if rstos0(&self.hist) { "RSTOS0" } else { "OTH" };
            }
            return "RSTO";
        }
        if rs == ZState::Closed && os == ZState::Closed {
            return "SF";
        }
        if os == ZState::Closed {
            return if r_inactive { "SH" } else { "S2" };
        }
        if rs == ZState::Closed {
            return if o_inactive { "SHR" } else { "S3" };
        }
        if os == ZState::SynSent && rs == ZState::Inactive {
            return "S0";
        }
        if os == ZState::Established && rs == ZState::Established {
            return "S1";
        }
        "OTH"
    }
}

/// `re.fullmatch(r"\^?S[^HAFGIQ]*R.*", history)` without a regex engine.
fn rstos0(history: &str) -> bool {
    let rest = history.strip_prefix('^').unwrap_or(history);
    let Some(rest) = rest.strip_prefix('S') else {
        return false;
    };
    for c in rest.chars() {
        if c == 'R' {
            return true;
        }
        if "HAFGIQ".contains(c) {
            return false;
        }
    }
    false
}

/// `update_ack_seq`: a later ack moves `ack_seq`, but an ack of 0 that would
/// jump far ahead is more likely broken than a wrap onto 0.
fn ack_advances(ack: u32, ack_seq: u32) -> bool {
    let d = delta(ack, ack_seq);
    d > 0 && !(ack == 0 && d > TOO_LARGE_SEQ_DELTA)
}

/// `TCP_Reassembler`'s `is_clean`: established, or closed straight from it.
fn clean(e: &ZEndpoint) -> bool {
    e.state == ZState::Established
        || (e.state == ZState::Closed && e.prev_state == ZState::Established)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::PSH;

    #[test]
    fn normal_connection_is_sf_with_full_history() {
        let mut z = ZeekConn::new();
        z.packet(true, SYN, 100, 0, 0, 500, 0.0);
        z.packet(false, SYN | ACK, 900, 101, 0, 500, 0.1);
        z.packet(true, ACK, 101, 901, 0, 500, 0.2);
        z.packet(true, PSH | ACK, 101, 901, 10, 500, 0.3);
        z.packet(false, FIN | ACK, 901, 111, 0, 500, 0.4);
        z.packet(true, FIN | ACK, 111, 902, 0, 500, 0.5);
        z.packet(false, ACK, 902, 112, 0, 500, 0.6);
        assert_eq!(z.history(), "ShADfFa");
        assert_eq!(z.conn_state(), "SF");
        assert_eq!(z.orig_bytes(), 10);
        assert_eq!(z.resp_bytes(), 0);
    }

    #[test]
    fn refused_connection_is_rej_and_unanswered_is_s0() {
        let mut z = ZeekConn::new();
        z.packet(true, SYN, 100, 0, 0, 500, 0.0);
        assert_eq!(z.conn_state(), "S0");
        z.packet(false, RST | ACK, 0, 101, 0, 0, 0.1);
        assert_eq!(z.conn_state(), "REJ");
        assert_eq!(z.history(), "Sr");
    }

    #[test]
    fn syn_ack_reversal_flips_roles() {
        let mut z = ZeekConn::new();
        z.packet(true, SYN | ACK, 900, 101, 0, 500, 0.0);
        z.packet(false, SYN, 100, 0, 0, 500, 0.1);
        assert_eq!(z.flips, 1);
        assert!(z.history().contains('^'));
    }

    #[test]
    fn reuse_follows_zeeks_is_reuse() {
        let mut z = ZeekConn::new();
        z.packet(true, SYN, 100, 0, 0, 500, 0.0);
        assert!(!z.is_reuse(SYN, 100)); // a retransmission
        assert!(z.is_reuse(SYN, 9000)); // a new ISN, even while open
        assert!(!z.is_reuse(ACK, 9000)); // only a SYN
        z.packet(false, RST | ACK, 0, 101, 0, 0, 0.1);
        assert!(z.is_reuse(SYN, 100)); // after a close, even the same ISN
        let mut half = ZeekConn::new();
        half.packet(true, SYN | ACK, 500, 101, 0, 500, 0.0);
        assert!(!half.is_reuse(SYN, 100)); // the SYN the SYN+ACK answered
        assert!(!half.is_reuse(SYN | ACK, 500));
    }

    #[test]
    fn a_hole_acknowledged_is_a_content_gap_of_its_size() {
        let mut z = ZeekConn::new();
        z.packet(true, SYN, 100, 0, 0, 500, 0.0);
        z.packet(false, SYN | ACK, 900, 101, 0, 500, 0.1);
        z.packet(true, ACK, 101, 901, 0, 500, 0.2);
        z.packet(true, PSH | ACK, 101, 901, 10, 500, 0.3);
        z.packet(true, PSH | ACK, 121, 901, 10, 500, 0.4); // 111..121 never captured
        z.packet(false, ACK, 901, 131, 0, 500, 0.5);
        assert_eq!((z.history(), z.missed_bytes), ("ShADaG", 10));
        // the hole filled late is no gap
        let mut z = ZeekConn::new();
        z.packet(true, SYN, 100, 0, 0, 500, 0.0);
        z.packet(false, SYN | ACK, 900, 101, 0, 500, 0.1);
        z.packet(true, PSH | ACK, 111, 901, 10, 500, 0.3);
        z.packet(true, PSH | ACK, 101, 901, 10, 500, 0.4);
        z.packet(false, ACK, 901, 121, 0, 500, 0.5);
        assert_eq!((z.history(), z.missed_bytes), ("ShDTa", 0));
    }

    #[test]
    fn a_payload_cut_by_the_snapshot_length_is_a_gap_once_acknowledged() {
        let mut z = ZeekConn::new();
        z.packet(true, SYN, 100, 0, 0, 500, 0.0);
        z.packet(false, SYN | ACK, 900, 101, 0, 500, 0.1);
        z.packet(true, ACK, 101, 901, 0, 500, 0.2);
        z.packet_of(true, PSH | ACK, 101, 901, 1000, 500, 0.3, false);
        z.packet(false, ACK, 901, 1101, 0, 500, 0.4);
        assert_eq!((z.history(), z.missed_bytes), ("ShADaG", 1000));
    }

    #[test]
    fn checksum_errors_scale_and_move_nothing() {
        let mut z = ZeekConn::new();
        for _ in 0..10 {
            z.checksum_error(true);
        }
        z.checksum_error(false);
        assert_eq!(z.history(), "CCc");
        assert_eq!(z.conn_state(), "OTH");
        assert_eq!(z.orig().state, ZState::Inactive);
    }

    #[test]
    fn rstos0_matches_the_regex() {
        assert!(rstos0("SR"));
        assert!(rstos0("^SdR"));
        assert!(rstos0("ShR")); // the class is case-sensitive, as in zeek.py
        assert!(!rstos0("SAR"));
        assert!(!rstos0("R"));
        assert!(!rstos0("S"));
    }

    #[test]
    fn likely_server_ports_are_zeeks_list() {
        assert_eq!(LIKELY_SERVER_PORTS.len(), 44);
        // registered for analysis, but not likely servers in Zeek 8.0
        for port in [514, 1434, 3306, 5432] {
            assert!(!should_flip(port, 40000, ACK), "{port}");
        }
        assert!(should_flip(80, 40000, ACK));
        assert!(!should_flip(80, 40000, SYN));
        assert!(should_flip(80, 443, ACK));
        assert!(!should_flip(443, 80, ACK));
    }
}
