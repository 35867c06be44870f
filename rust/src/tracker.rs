//! Per-connection state reconstruction: a port of `tcplens.packets.tracker.Tracker`.
//!
//! The theory of operation (what each segment means for each side, how a
//! retransmission proves a segment was lost and the endpoint is replayed
//! without it, timeouts, eviction, port reuse) is written once, in
//! `tracker.py`, the readable reference. This file follows it function for
//! function, with the same names, so a change there is easy to port here;
//! `tests/packets/test_engine_diff.py` holds the two equal on every fixture and
//! on random segment soups with eviction and timeouts.
//!
//! Memory is bounded as in the reference: idle connections are finished after
//! Zeek-like timeouts and a cap on live connections evicts the longest idle
//! first; finished connections leave through `out` as they finish, and at the
//! end `finish_some` hands the rest out a batch at a time.
//!
//! Where the engine differs in *how*, never in what: the reference's shortcut
//! for plain segments (`_plain`) is not ported (it has the same effects as the
//! full path, and the full path is cheap here); and a flow opened by a bare SYN
//! is kept as that one packet ([`Slot::Syn`], about 190 bytes with its table
//! entry instead of about 1.2 KB) until a second packet arrives or it is
//! finished, when the packet is tracked as it would have been on arrival (its
//! effects depend on nothing but the flow). A million-SYN flood then fits in a
//! few hundred MiB. Not done with kept segments or watched changes, whose
//! output is made as packets arrive.

#![forbid(unsafe_code)]

use std::collections::HashMap;

/// The flow table's hasher (edit by R3, for issue 14's speed goals): foldhash,
/// which hashes a flow key in a few multiplications where SipHash spent 5 % of a
/// run. Flows are keyed by untrusted input (addresses and ports anyone can put
/// in a capture or on the wire), so hash flooding is a concern: with an unkeyed
/// hash such as FxHash one capture of colliding keys would make every lookup
/// walk them all, on every machine. foldhash mixes secret random seeds into
/// every step, drawn at run time and different for each table, so no list of
/// keys collides for every instance. Its authors claim no resistance against an
/// attacker who observes hash outputs, timings or iteration order and adapts;
/// the engine shows none of them (finished connections leave sorted by number,
/// whatever the table's order), and a capture is written before the seed exists.
type FlowTable = HashMap<FlowKey, Slot, foldhash::fast::RandomState>;
use std::sync::Arc;

use crate::endpoint::{
    seq_after, Cause, Endpoint, EventId, MSeg, StateId, Table, ACK, FIN, PSH, RST, SYN,
};
use crate::flow::{
    note, Change, Connection, Flow, FlowKey, HistCause, HistEntry, PendingSyns, WireSeg, ZeekFields,
};
use crate::segment::{Packet, Segment};
use crate::zeek::should_flip;

// Wireshark's tcp.completeness bits (epan/dissectors/packet-tcp.c)
const COMPLETE_SYN: u8 = 1;
const COMPLETE_SYNACK: u8 = 2;
const COMPLETE_ACK: u8 = 4;
const COMPLETE_DATA: u8 = 8;
const COMPLETE_FIN: u8 = 16;
const COMPLETE_RST: u8 = 32;

/// Seconds of capture time after which an idle connection is finished (`tracker.Timeouts`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Timeouts {
    pub attempt: f64,
    pub closed: f64,
    pub reset: f64,
    pub inactivity: f64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            attempt: 5.0,
            closed: 5.0,
            reset: 5.0,
            inactivity: 300.0,
        }
    }
}

/// What `Tracker(...)` is built with on the Python side.
#[derive(Clone, Debug)]
pub struct TrackerConfig {
    pub table: Arc<Table>,
    pub msl: f64,
    pub timeouts: Timeouts,
    pub max_connections: usize,
    /// Keep every segment for ladder charts (`--flow`).
    pub keep_segments: bool,
    /// Record every state change in `Tracker::changes` (live views' `on_change`).
    pub record_changes: bool,
    /// Validate checksums as Zeek does (`Tracker.check_checksums`, `pcap
    /// --check-checksums`): read by whoever decodes (`DecodeStats::check_checksums`).
    pub check_checksums: bool,
}

impl TrackerConfig {
    pub fn new(table: Arc<Table>) -> TrackerConfig {
        TrackerConfig {
            table,
            msl: 30.0,
            timeouts: Timeouts::default(),
            max_connections: 1_000_000,
            keep_segments: false,
            record_changes: false,
            check_checksums: false,
        }
    }
}

// --- per-endpoint input log, so an endpoint can be replayed without a lost segment ---

#[derive(Clone, Copy, Debug)]
enum Attr {
    SndUna,
    SndNxt,
    RcvNxt,
    /// `closing = None` (the value is ignored): close() and shutdown() look alike on the wire.
    ClosingUnknown,
}

const ATTRS: [Attr; 4] = [
    Attr::SndUna,
    Attr::SndNxt,
    Attr::RcvNxt,
    Attr::ClosingUnknown,
];

#[derive(Clone, Copy, Debug)]
enum Input {
    Recv(MSeg),
    Call(EventId),
    Set(Attr, u32),
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    input: Input,
    t: f64,
    record: u64,
}

/// How an endpoint was created, so it can be created again for a replay.
#[derive(Clone, Copy, Debug)]
struct Init {
    state: StateId,
    isn: u32,
    now: f64,
}

/// One endpoint of a flow: the endpoint plus what it took to get there (`tracker._Side`).
#[derive(Debug)]
pub struct Side {
    pub ep: Endpoint,
    init: Init,
    pub frames: Vec<u64>,
    /// Every input, with (event of a "recv", state before, state after).
    log: Vec<Logged>,
    /// `drop_last_ack` calls so far (see [`REPLAY_LIMIT`]).
    replays: u32,
}

/// Retransmissions one endpoint's history is rechecked for (`drop_last_ack`
/// calls, whether or not they find an ACK to drop; `tracker.REPLAY_LIMIT`).
/// Each costs a pass over the endpoint's inputs, so without a limit a crafted
/// capture (an ACK and a retransmitted SYN+ACK, again and again) costs time
/// quadratic in its length. An endpoint retransmits its SYN or SYN+ACK and its
/// FIN; Linux gives up after 6, 5 and at most 15 retransmissions
/// (tcp_syn_retries, tcp_synack_retries, tcp_retries2): 32 covers any real one.
pub const REPLAY_LIMIT: u32 = 32;

/// (event of a "recv", state before, state after) of one input.
type Outcome = (Option<EventId>, StateId, StateId);

/// An `(Entry, Outcome)` in 32 bytes instead of 48 (edit by R3, issue 14's memory
/// goal: the log holds every input of both sides of every live connection, the
/// largest part of a connection's record). A "recv" is the only input with an
/// event in its outcome; a call keeps its event in `flags`, a set its attribute
/// in `flags` and its value in `seq`; `ack` tells a call (0) from a set (1).
#[derive(Clone, Copy, Debug)]
struct Logged {
    t: f64,
    record: u64,
    seq: u32,
    ack: u32,
    length: u32,
    flags: u8,
    /// the outcome's event, `NO_EVENT` for none
    event: u8,
    before: StateId,
    after: StateId,
}

const NO_EVENT: u8 = u8::MAX;

impl Logged {
    fn new(entry: Entry, (event, before, after): Outcome) -> Logged {
        let (seq, ack, length, flags) = match entry.input {
            Input::Recv(seg) => (seg.seq, seg.ack, seg.length, seg.flags),
            Input::Call(ev) => (0, 0, 0, ev),
            Input::Set(attr, value) => (value, 1, 0, attr as u8),
        };
        Logged {
            t: entry.t,
            record: entry.record,
            seq,
            ack,
            length,
            flags,
            event: event.unwrap_or(NO_EVENT),
            before,
            after,
        }
    }

    fn outcome(&self) -> Outcome {
        let event = (self.event != NO_EVENT).then_some(self.event);
        (event, self.before, self.after)
    }

    fn entry(&self) -> Entry {
        let input = if self.event != NO_EVENT {
            Input::Recv(MSeg {
                flags: self.flags,
                seq: self.seq,
                ack: self.ack,
                length: self.length,
            })
        } else if self.ack == 0 {
            Input::Call(self.flags)
        } else {
            Input::Set(ATTRS[usize::from(self.flags) % ATTRS.len()], self.seq)
        };
        Entry {
            input,
            t: self.t,
            record: self.record,
        }
    }
}

impl Side {
    fn new(t: &Table, msl: f64, init: Init, cause: &'static str, record: u64) -> Side {
        let mut ep = Endpoint::new(t, init.state, msl, init.isn, init.now);
        ep.history[0].2 = Cause::Text(cause);
        Side {
            ep,
            init,
            frames: {
                let mut frames = Vec::with_capacity(4); // one per history entry
                frames.push(record);
                frames
            },
            log: Vec::new(),
            replays: 0,
        }
    }

    /// Apply one input; returns where the history grew from.
    fn run(&mut self, t: &Table, entry: Entry, notes: Option<&mut Vec<String>>) -> usize {
        let ep = &mut self.ep;
        let before = ep.state;
        let grown = ep.history.len();
        let mut event = None;
        let result = match entry.input {
            Input::Recv(seg) => {
                let ev = ep.classify(t, &seg);
                event = Some(ev);
                ep.receive(t, seg, entry.t, ev)
            }
            Input::Call(ev) => ep.handle(t, ev, entry.t, 0),
            Input::Set(attr, value) => {
                set_attr(ep, attr, value);
                Ok(())
            }
        };
        if let (Err(illegal), Some(notes)) = (result, notes) {
            note(notes, || {
                format!("frame {}: {}", entry.record, illegal.message(t))
            });
        }
        let now = ep.history.len();
        for _ in grown..now {
            self.frames.push(entry.record);
        }
        let after = self.ep.state;
        debug_assert!(event != Some(NO_EVENT), "event ids stay below {NO_EVENT}");
        self.log.push(Logged::new(entry, (event, before, after)));
        grown
    }

    fn set(&mut self, attr: Attr, value: u32, t: f64, record: u64) {
        // A sequence-number sync changes no state: record it for replays, nothing more.
        set_attr(&mut self.ep, attr, value);
        let state = self.ep.state;
        let input = Input::Set(attr, value);
        self.log.push(Logged::new(
            Entry { input, t, record },
            (None, state, state),
        ));
    }

    /// Rebuild the endpoint from its inputs, leaving out input `index`.
    fn replay_without(&mut self, t: &Table, index: usize) -> Entry {
        let removed = self.log.remove(index).entry();
        let log = std::mem::take(&mut self.log);
        let (when, _, cause) = self.ep.history[0].clone();
        self.ep = Endpoint::new(
            t,
            self.init.state,
            self.ep.msl,
            self.init.isn,
            self.init.now,
        );
        self.ep.history[0] = (when, self.ep.state, cause);
        self.frames.truncate(1);
        for logged in log {
            self.run(t, logged.entry(), None);
        }
        removed
    }

    /// Replay without the last segment that acknowledged this endpoint; the lost frame.
    fn drop_last_ack(&mut self, t: &Table) -> Option<u64> {
        let acking = [t.e.rcv_ack, t.e.rcv_syn_ack, t.e.rcv_fin_ack];
        let s = &t.s;
        let acked_from = [s.syn_sent, s.syn_recv, s.fin_wait1, s.closing, s.last_ack];
        let index = self.log.iter().rposition(|logged| {
            let (event, before, after) = logged.outcome();
            event.is_some_and(|e| acking.contains(&e))
                && acked_from.contains(&before)
                && after != before
        })?;
        Some(self.replay_without(t, index).record)
    }

    /// Undo the last delivery classified as `event` (it had not arrived yet).
    fn take_back(&mut self, t: &Table, event: EventId) -> Option<Entry> {
        let index = self
            .log
            .iter()
            .rposition(|logged| logged.outcome().0 == Some(event))?;
        Some(self.replay_without(t, index))
    }
}

fn set_attr(ep: &mut Endpoint, attr: Attr, value: u32) {
    match attr {
        Attr::SndUna => ep.snd_una = value,
        Attr::SndNxt => ep.snd_nxt = value,
        Attr::RcvNxt => ep.rcv_nxt = Some(value),
        Attr::ClosingUnknown => ep.closing = None,
    }
}

/// Everything but the flow table, so a flow borrowed from the table can be worked on.
struct Core {
    cfg: TrackerConfig,
    changes: Vec<Change>,
}

/// Feed it decoded segments in capture order; it hands back finished connections.
pub struct Tracker {
    core: Core,
    flows: FlowTable,
    /// Flows being finished at the end of the capture (`finish_some`), last index first.
    ending: Vec<(FlowKey, Slot)>,
    /// Flows a sweep of timeouts took out and `finish_swept` has not finished
    /// yet, last index first (a sweep can take 100k at once: finished a batch at
    /// a time, they never all exist as `Connection`s together).
    swept: Vec<(FlowKey, Slot)>,
    /// Latest capture time seen (seconds).
    pub now: f64,
    /// Connections started (the last index handed out).
    pub count: u64,
    /// Most connections live at once.
    pub peak: usize,
    /// Connections finished early by a timeout or the cap.
    pub evicted: u64,
    next_sweep: f64,
    since_sweep: u64,
}

impl Tracker {
    pub fn new(cfg: TrackerConfig) -> Tracker {
        Tracker {
            core: Core {
                cfg,
                changes: Vec::new(),
            },
            flows: FlowTable::default(),
            ending: Vec::new(),
            swept: Vec::new(),
            now: 0.0,
            count: 0,
            peak: 0,
            evicted: 0,
            next_sweep: 0.0,
            since_sweep: 0,
        }
    }

    pub fn config(&self) -> &TrackerConfig {
        &self.core.cfg
    }

    /// Connections live now (not yet finished).
    pub fn live(&self) -> usize {
        self.flows.len() + self.ending.len()
    }

    /// State changes since the last call (only with `record_changes`).
    pub fn take_changes(&mut self) -> Vec<Change> {
        std::mem::take(&mut self.core.changes)
    }

    /// Process one segment; connections that finished because of it go to `out`.
    pub fn feed(&mut self, pkt: &Packet, out: &mut Vec<Connection>) {
        self.feed_lazily(pkt, out);
        self.finish_swept(out, usize::MAX);
    }

    /// As `feed`, but connections a sweep of timeouts took out wait for
    /// `finish_swept`, which must finish them all before the next packet is fed
    /// (so the connections come out in the same order as from `feed`).
    pub fn feed_lazily(&mut self, pkt: &Packet, out: &mut Vec<Connection>) {
        debug_assert!(
            self.swept.is_empty(),
            "a packet fed before the sweep was finished"
        );
        let t = pkt.ts();
        if t > self.now {
            self.now = t;
        }
        let seg = &pkt.seg;
        let key = FlowKey::new(seg.src, seg.sport, seg.dst, seg.dport).within(seg.tunnel);
        match self.flows.entry(key) {
            std::collections::hash_map::Entry::Occupied(mut e) => {
                let flow = self.core.full(&key, e.get_mut());
                let side = usize::from(!(seg.src == flow.orig_ip && seg.sport == flow.orig_port));
                if seg.flags & SYN != 0 && flow.zeek.is_reuse(seg.flags, seg.seq) {
                    // Port reuse, by Zeek's rule (`ZeekConn::is_reuse`): a SYN after either
                    // side closed, or with a new initial sequence number, is a new connection. (The
                    // new one's first packet is tracked before the old one is finished: the
                    // two share nothing, and finishing hands out no state changes.)
                    self.count += 1;
                    let fresh = self.core.open(self.count, &key, t, pkt);
                    let old = std::mem::replace(e.get_mut(), fresh);
                    out.push(self.core.finish(self.now, key, old));
                } else {
                    self.core
                        .packet(flow, side == 0, t, pkt.record, pkt.frame_len, seg);
                }
            }
            std::collections::hash_map::Entry::Vacant(v) => {
                self.count += 1;
                v.insert(self.core.open(self.count, &key, t, pkt));
            }
        }
        if self.flows.len() > self.peak {
            self.peak = self.flows.len();
        }
        self.since_sweep += 1;
        let live = self.flows.len();
        if live > self.core.cfg.max_connections
            || (t >= self.next_sweep && self.since_sweep * 4 >= live as u64)
        {
            self.sweep();
        }
    }

    /// End of capture: every connection still open is finished as it stands.
    pub fn finish(&mut self, out: &mut Vec<Connection>) {
        while !self.finish_some(out, usize::MAX) {}
    }

    /// End of capture in steps: finish at most `limit` of the connections still
    /// open (in index order, as `finish` does) and say whether none is left, so
    /// a caller can hand a flood's half-million open connections to Python a
    /// batch at a time instead of all at once. No packet may be fed after it.
    pub fn finish_some(&mut self, out: &mut Vec<Connection>, limit: usize) -> bool {
        self.finish_swept(out, usize::MAX);
        if !self.flows.is_empty() {
            // last index first, so that popping hands them out in order
            self.ending.extend(self.flows.drain());
            self.ending
                .sort_unstable_by_key(|(_, slot)| std::cmp::Reverse(slot.index()));
        }
        for _ in 0..limit {
            let Some((key, slot)) = self.ending.pop() else {
                break;
            };
            out.push(self.core.finish(self.now, key, slot));
        }
        self.ending.is_empty()
    }

    /// Finish at most `limit` of the connections the last sweep took out, in
    /// index order; whether none is left.
    pub fn finish_swept(&mut self, out: &mut Vec<Connection>, limit: usize) -> bool {
        for _ in 0..limit {
            let Some((key, slot)) = self.swept.pop() else {
                break;
            };
            out.push(self.core.finish(self.now, key, slot));
        }
        self.swept.is_empty()
    }

    /// Connections the last sweep took out wait for `finish_swept`.
    pub fn swept_pending(&self) -> bool {
        !self.swept.is_empty()
    }

    fn sweep(&mut self) {
        self.since_sweep = 0;
        self.next_sweep = self.now + 1.0;
        let now = self.now;
        let to = self.core.cfg.timeouts;
        // every limit is at least the shortest timeout: most live flows fail that first test
        let floor = to.attempt.min(to.closed).min(to.reset).min(to.inactivity);
        let mut stale: Vec<FlowKey> = self
            .flows
            .iter()
            .filter(|(_, f)| {
                let idle = now - f.last();
                idle > floor && idle > self.core.idle_limit(f)
            })
            .map(|(k, _)| *k)
            .collect();
        let max = self.core.cfg.max_connections;
        if self.flows.len() - stale.len() > max {
            // Over the cap even after timeouts: the longest idle go first (ties: oldest).
            let keep = max * 9 / 10;
            let mut ranked: Vec<(f64, u64, FlowKey)> = self
                .flows
                .iter()
                .map(|(k, f)| (f.last(), f.index(), *k))
                .collect();
            ranked.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            let cut = ranked.len().saturating_sub(keep);
            stale = ranked[..cut].iter().map(|x| x.2).collect();
        }
        self.swept.extend(
            stale
                .iter()
                .filter_map(|k| self.flows.remove(k).map(|slot| (*k, slot))),
        );
        self.evicted += self.swept.len() as u64;
        // last index first, so that popping finishes them in index order
        self.swept
            .sort_unstable_by_key(|(_, slot)| std::cmp::Reverse(slot.index()));
    }
}

/// A flow in the table: tracked, or (a half-open attempt) only its first packet.
pub enum Slot {
    Full(Box<Flow>),
    Syn(SynOnly),
}

impl Slot {
    fn index(&self) -> u64 {
        match self {
            Slot::Full(f) => f.index,
            Slot::Syn(s) => s.index,
        }
    }

    fn last(&self) -> f64 {
        match self {
            Slot::Full(f) => f.last,
            Slot::Syn(s) => s.t,
        }
    }
}

/// The one packet of a flow opened by a bare SYN; the addresses are the key's.
#[derive(Clone, Copy, Debug)]
pub struct SynOnly {
    index: u64,
    t: f64,
    record: u64,
    seq: u32,
    ack: u32,
    payload: u32,
    ip_len: u32,
    frame_len: u32,
    window: u16,
    flags: u8,
    /// The sender is the key's `a` end.
    from_a: bool,
}

impl SynOnly {
    fn new(index: u64, key: &FlowKey, t: f64, pkt: &Packet) -> SynOnly {
        let s = &pkt.seg;
        SynOnly {
            index,
            t,
            record: pkt.record,
            seq: s.seq,
            ack: s.ack,
            payload: s.payload,
            ip_len: s.ip_len,
            frame_len: pkt.frame_len,
            window: s.window,
            flags: s.flags,
            from_a: s.src == key.a && s.sport == key.a_port,
        }
    }

    fn segment(&self, key: &FlowKey) -> Segment {
        let (src, sport, dst, dport) = if self.from_a {
            (key.a, key.a_port, key.b, key.b_port)
        } else {
            (key.b, key.b_port, key.a, key.a_port)
        };
        Segment {
            src,
            dst,
            sport,
            dport,
            seq: self.seq,
            ack: self.ack,
            flags: self.flags,
            window: self.window,
            payload: self.payload,
            ip_len: self.ip_len,
            tunnel: key.tunnel,
            // (a SYN with a bad checksum or a cut payload is never kept alone: see open)
            bad_checksum: false,
            payload_cut: false,
        }
    }
}

/// The tracker's segment as the model sees it.
fn mseg(seg: &Segment) -> MSeg {
    MSeg {
        flags: seg.flags & 0x3F,
        seq: seg.seq,
        ack: seg.ack,
        length: seg.payload,
    }
}

impl Core {
    fn table(&self) -> &Table {
        &self.cfg.table
    }

    /// A new flow for the first packet seen on a 4-tuple, with that packet tracked.
    fn open(&mut self, index: u64, key: &FlowKey, t: f64, pkt: &Packet) -> Slot {
        let seg = &pkt.seg;
        let cfg = &self.cfg;
        if seg.flags & (SYN | ACK | FIN | RST) == SYN
            && !seg.bad_checksum
            && !seg.payload_cut
            && !cfg.keep_segments
            && !cfg.record_changes
        {
            // A bare SYN: kept as the packet alone until a second one arrives, so a
            // flood of half-open attempts costs ~190 bytes each (see the module doc).
            return Slot::Syn(SynOnly::new(index, key, t, pkt));
        }
        let mut flow = Box::new(Flow::new(
            index, seg.src, seg.sport, seg.dst, seg.dport, t, pkt.record,
        ));
        if cfg.keep_segments {
            flow.segments = Some(Vec::new());
        }
        if should_flip(seg.sport, seg.dport, seg.flags) {
            flow.flip();
            flow.zeek.flip();
        }
        let from_orig = seg.src == flow.orig_ip && seg.sport == flow.orig_port;
        self.packet(&mut flow, from_orig, t, pkt.record, pkt.frame_len, seg);
        Slot::Full(flow)
    }

    /// The tracked flow of a slot, tracking a kept SYN first if that is all there is.
    fn full<'s>(&mut self, key: &FlowKey, slot: &'s mut Slot) -> &'s mut Flow {
        if let Slot::Syn(syn) = *slot {
            let seg = syn.segment(key);
            let mut flow = Box::new(Flow::new(
                syn.index, seg.src, seg.sport, seg.dst, seg.dport, syn.t, syn.record,
            ));
            // (a bare SYN never flips, and no segments or changes are kept: see feed)
            self.packet(&mut flow, true, syn.t, syn.record, syn.frame_len, &seg);
            *slot = Slot::Full(flow);
        }
        match slot {
            Slot::Full(flow) => flow,
            Slot::Syn(_) => unreachable!("replaced just above"),
        }
    }

    fn idle_limit(&self, slot: &Slot) -> f64 {
        match slot {
            Slot::Full(flow) => self.flow_idle_limit(flow),
            // one SYN, nothing back: an attempt (what flow_idle_limit says of it)
            Slot::Syn(_) => self.cfg.timeouts.attempt,
        }
    }

    fn flow_idle_limit(&self, flow: &Flow) -> f64 {
        let to = &self.cfg.timeouts;
        if flow.stats[0].rst > 0 || flow.stats[1].rst > 0 {
            to.reset
        } else if flow.zeek.both_closed() {
            to.closed
        } else if flow.stats[1].packets == 0 {
            to.attempt
        } else {
            to.inactivity
        }
    }

    // -- driving one side (the reference's _Side.call/recv/set/run with a flow) ----------
    fn run(&mut self, flow: &mut Flow, s: usize, entry: Entry) {
        let table = Arc::clone(&self.cfg.table);
        let Some(side) = flow.sides[s].as_mut() else {
            return;
        };
        let grown = side.run(&table, entry, Some(&mut flow.notes));
        if self.cfg.record_changes {
            for (when, state, cause) in &side.ep.history[grown..] {
                let text = cause_text(&table, cause);
                self.changes.push(Change {
                    index: flow.index,
                    orig_ip: flow.orig_ip,
                    orig_port: flow.orig_port,
                    resp_ip: flow.resp_ip,
                    resp_port: flow.resp_port,
                    side: s as u8,
                    time: *when,
                    state: *state,
                    cause: format!("{text} (frame {})", entry.record),
                });
            }
        }
    }

    fn call(&mut self, flow: &mut Flow, s: usize, event: EventId, t: f64, record: u64) {
        let input = Input::Call(event);
        self.run(flow, s, Entry { input, t, record });
    }

    fn recv(&mut self, flow: &mut Flow, s: usize, seg: MSeg, t: f64, record: u64) {
        let input = Input::Recv(seg);
        self.run(flow, s, Entry { input, t, record });
    }

    fn set(flow: &mut Flow, s: usize, attr: Attr, value: u32, t: f64, record: u64) {
        if let Some(side) = flow.sides[s].as_mut() {
            side.set(attr, value, t, record);
        }
    }

    fn drop_last_ack(&self, flow: &mut Flow, s: usize, why: impl FnOnce() -> String) {
        let Some(side) = flow.sides[s].as_mut() else {
            return;
        };
        side.replays += 1;
        if side.replays > REPLAY_LIMIT {
            if side.replays == REPLAY_LIMIT + 1 {
                note(&mut flow.notes, || {
                    format!(
                        "{}: not checked (tcplens rechecks an endpoint's history for at \
                         most {REPLAY_LIMIT} retransmissions); from here it may show a \
                         segment as delivered that never arrived",
                        why()
                    )
                });
            }
            return;
        }
        if let Some(lost) = side.drop_last_ack(self.table()) {
            note(&mut flow.notes, || {
                format!("frame {lost} did not arrive: {}", why())
            });
        }
    }

    fn state(flow: &Flow, s: usize) -> Option<StateId> {
        flow.sides[s].as_ref().map(|side| side.ep.state)
    }

    fn can(&self, flow: &Flow, s: usize, event: EventId) -> bool {
        flow.sides[s]
            .as_ref()
            .is_some_and(|side| side.ep.can(self.table(), event, 0.0))
    }

    fn waiting(&self, state: StateId) -> bool {
        let s = &self.table().s;
        state == s.syn_recv || state == s.fin_wait1 || state == s.closing || state == s.last_ack
    }

    // -- one packet ---------------------------------------------------------------------
    fn packet(
        &mut self,
        flow: &mut Flow,
        from_orig: bool,
        t: f64,
        record: u64,
        frame_len: u32,
        seg: &Segment,
    ) {
        if seg.bad_checksum {
            // Zeek's TCPAnalyzer::DeliverPacket: a segment failing ValidateChecksum
            // is history C/c (ChecksumError) and returns before anything else, so it
            // moves no state, counts no packet or byte (ConnSize sees it later).
            flow.zeek.checksum_error(from_orig);
            return;
        }
        let (mut s, mut r) = if from_orig { (0, 1) } else { (1, 0) };
        let (flags, seq, ack, length) = (seg.flags, seg.seq, seg.ack, seg.payload);
        let st = &mut flow.stats[s];
        st.packets += 1;
        st.payload_bytes += u64::from(length);
        st.ip_bytes += u64::from(seg.ip_len);
        st.frame_bytes += u64::from(frame_len);
        flow.last = t;
        if flags & ACK != 0 {
            st.ack += 1;
        }
        if flags & PSH != 0 {
            st.psh += 1;
        }
        if seg.window == 0 && flags & RST == 0 {
            st.zero_windows += 1;
        }
        flow.last_window[s] = Some(seg.window);
        let end = seq
            .wrapping_add(length)
            .wrapping_add(u32::from(flags & SYN != 0))
            .wrapping_add(u32::from(flags & FIN != 0));
        let prev_end = flow.max_end[s];
        if (length > 0 || flags & (SYN | FIN) != 0)
            && prev_end.is_some_and(|p| !seq_after(end, p))
            && flags & RST == 0
        {
            // Wireshark's rule: a segment that occupies sequence space (data, SYN or
            // FIN) without advancing it is a retransmission.
            st.retransmissions += 1;
        }

        // Wireshark's completeness bits, as tshark reports them.
        if flags & SYN != 0 {
            flow.completeness |= if flags & ACK != 0 {
                COMPLETE_SYNACK
            } else {
                COMPLETE_SYN
            };
        } else if flags & ACK != 0 && flags & FIN == 0 && length == 0 {
            flow.completeness |= COMPLETE_ACK;
        }
        if length > 0 {
            flow.completeness |= COMPLETE_DATA;
        }
        if flags & FIN != 0 {
            flow.fin_dirs |= 1 << s;
            if flow.fin_dirs == 3 {
                flow.completeness |= COMPLETE_FIN;
            }
        }
        if flags & RST != 0 {
            flow.completeness |= COMPLETE_RST;
        }

        let flips = flow.zeek.flips;
        flow.zeek.packet_of(
            from_orig,
            flags,
            seq,
            ack,
            length,
            seg.window,
            t,
            !seg.payload_cut,
        );
        if flow.zeek.flips != flips {
            // Zeek saw a SYN/SYN+ACK reversal and swapped roles: follow it.
            flow.flip();
            std::mem::swap(&mut s, &mut r);
        }

        if let Some(segments) = flow.segments.as_mut() {
            if segments.len() < 100_000 {
                let (rel_seq, rel_ack) = relative(&mut flow.rel_base, s, flags, seq, ack);
                segments.push(WireSeg {
                    time: t,
                    from_orig: s == 0,
                    flags,
                    seq: rel_seq,
                    ack: rel_ack,
                    length,
                    record,
                });
            }
        }

        if flags & (SYN | FIN | RST) != 0 {
            self.control(flow, s, r, t, seg, record);
        } else if flow.sides[s].is_none() {
            self.pickup(flow, s, r, t, seg, record);
        } else if flags & ACK != 0 {
            if let Some(state) = Self::state(flow, r) {
                if self.waiting(state) {
                    self.deliver(flow, s, r, t, seg, record);
                }
            }
        }
        if prev_end.is_none_or_after(end) {
            flow.max_end[s] = Some(end);
        }
        if flags & SYN != 0 && flow.isn[s].is_none() {
            flow.isn[s] = Some(seq);
        }
    }

    fn deliver(&mut self, flow: &mut Flow, s: usize, r: usize, t: f64, seg: &Segment, record: u64) {
        let Some(receiver) = flow.sides[r].as_ref() else {
            return;
        };
        if let (Some(rcv_nxt), Some(sent)) = (receiver.ep.rcv_nxt, flow.max_end[s]) {
            if seq_after(sent, rcv_nxt) {
                Self::set(flow, r, Attr::RcvNxt, sent, t, record);
            }
        }
        self.recv(flow, r, mseg(seg), t, record);
    }

    #[allow(clippy::too_many_arguments)]
    fn new_side(
        &mut self,
        flow: &mut Flow,
        s: usize,
        state: StateId,
        isn: u32,
        t: f64,
        cause: &'static str,
        record: u64,
    ) {
        let init = Init { state, isn, now: t };
        let side = Side::new(self.table(), self.cfg.msl, init, cause, record);
        flow.sides[s] = Some(Box::new(side));
        if self.cfg.record_changes {
            self.changes.push(Change {
                index: flow.index,
                orig_ip: flow.orig_ip,
                orig_port: flow.orig_port,
                resp_ip: flow.resp_ip,
                resp_port: flow.resp_port,
                side: s as u8,
                time: t,
                state,
                cause: cause.to_string(),
            });
        }
    }

    /// First segment of a connection already under way: assume both ESTABLISHED.
    fn pickup(&mut self, flow: &mut Flow, s: usize, r: usize, t: f64, seg: &Segment, record: u64) {
        let cause = "assumed: picked up mid-stream";
        let est = self.table().s.established;
        self.new_side(flow, s, est, seg.seq.wrapping_sub(1), t, cause, record);
        Self::set(flow, s, Attr::SndUna, seg.seq, t, record);
        Self::set(flow, s, Attr::SndNxt, seg.seq, t, record);
        if seg.flags & ACK != 0 {
            Self::set(flow, s, Attr::RcvNxt, seg.ack, t, record);
        }
        if flow.sides[r].is_none() {
            self.new_side(flow, r, est, seg.ack.wrapping_sub(1), t, cause, record);
            if seg.flags & ACK != 0 {
                Self::set(flow, r, Attr::SndUna, seg.ack, t, record);
                Self::set(flow, r, Attr::SndNxt, seg.ack, t, record);
            }
            Self::set(flow, r, Attr::RcvNxt, seg.seq, t, record);
        }
        note(&mut flow.notes, || {
            format!("frame {record}: connection picked up mid-stream; earlier states assumed")
        });
    }

    fn control(&mut self, flow: &mut Flow, s: usize, r: usize, t: f64, seg: &Segment, record: u64) {
        let flags = seg.flags;
        if flags & SYN != 0 {
            flow.stats[s].syn += 1;
            if flags & ACK != 0 {
                self.syn_ack(flow, s, r, t, seg, record);
            } else {
                self.syn(flow, s, r, t, seg, record);
            }
            if flags & (FIN | RST) != 0 {
                note(&mut flow.notes, || {
                    format!("frame {record}: SYN combined with FIN or RST")
                });
            }
            return;
        }
        if flags & FIN != 0 {
            flow.stats[s].fin += 1;
        }
        if flags & RST != 0 {
            flow.stats[s].rst += 1;
        }
        if flow.sides[s].is_none() {
            if flags & RST != 0 && flags & FIN == 0 && flow.pending_syns.is_some() && s == 1 {
                self.refused(flow, s, r, t, seg, record);
                return;
            }
            self.pickup(flow, s, r, t, seg, record);
        }
        let Some((state, fin_seq, peer_fin_seq)) = flow.sides[s]
            .as_ref()
            .map(|side| (side.ep.state, side.ep.fin_seq, side.ep.peer_fin_seq))
        else {
            return;
        };
        let tb = Arc::clone(&self.cfg.table);
        let st = &tb.s;
        if flags & RST != 0 {
            if state != st.closed && state != st.listen {
                self.call(flow, s, tb.e.abort, t, record);
            }
            self.deliver(flow, s, r, t, seg, record);
            return;
        }
        // FIN
        let fin_at = seg.seq.wrapping_add(seg.payload);
        if fin_seq == Some(fin_at) {
            if state == st.fin_wait2 || state == st.time_wait || state == st.closed {
                self.drop_last_ack(flow, s, || format!("FIN retransmitted in frame {record}"));
            }
            if self.can(flow, s, tb.e.timeout_rto) {
                self.call(flow, s, tb.e.timeout_rto, t, record);
            }
        } else {
            let mut late: Option<Entry> = None;
            if state == st.close_wait
                && flags & ACK != 0
                && peer_fin_seq.is_some_and(|p| !seq_after(seg.ack, p))
            {
                // This FIN does not acknowledge the peer's FIN: it was sent before that
                // FIN arrived (simultaneous close), so deliver the peer's FIN after it.
                late = flow.sides[s]
                    .as_mut()
                    .and_then(|side| side.take_back(&tb, tb.e.rcv_fin));
            }
            Self::set(flow, s, Attr::SndNxt, fin_at, t, record);
            self.call(flow, s, tb.e.close, t, record);
            // close() or shutdown(): the wire cannot tell (see tracker.py's docstring)
            Self::set(flow, s, Attr::ClosingUnknown, 0, t, record);
            if let Some(late) = late {
                self.run(
                    flow,
                    s,
                    Entry {
                        input: late.input,
                        t,
                        record: late.record,
                    },
                );
            }
        }
        self.deliver(flow, s, r, t, seg, record);
    }

    fn syn(&mut self, flow: &mut Flow, s: usize, r: usize, t: f64, seg: &Segment, record: u64) {
        let tb = Arc::clone(&self.cfg.table);
        match flow.sides[s]
            .as_ref()
            .map(|side| (side.ep.isn, side.ep.state))
        {
            None => {
                self.new_side(flow, s, tb.s.closed, seg.seq, t, "initial", record);
                self.call(flow, s, tb.e.connect, t, record);
            }
            Some((isn, state)) if isn == seg.seq => {
                if state == tb.s.established {
                    self.drop_last_ack(flow, s, || format!("SYN retransmitted in frame {record}"));
                }
                if self.can(flow, s, tb.e.timeout_rto) {
                    self.call(flow, s, tb.e.timeout_rto, t, record);
                }
            }
            Some(_) => note(&mut flow.notes, || {
                format!("frame {record}: SYN with a new sequence number inside a connection")
            }),
        }
        if flow.sides[r].is_none() {
            PendingSyns::push(&mut flow.pending_syns, (t, seg.seq, record));
        } else {
            self.deliver(flow, s, r, t, seg, record);
        }
    }

    fn syn_ack(&mut self, flow: &mut Flow, s: usize, r: usize, t: f64, seg: &Segment, record: u64) {
        let tb = Arc::clone(&self.cfg.table);
        match flow.sides[s]
            .as_ref()
            .map(|side| (side.ep.isn, side.ep.state))
        {
            None => {
                if flow.sides[r].is_none() {
                    // The SYN was not captured: the other side must have sent one.
                    let isn = seg.ack.wrapping_sub(1);
                    self.new_side(flow, r, tb.s.closed, isn, t, "initial", record);
                    self.call(flow, r, tb.e.connect, t, record);
                    note(&mut flow.notes, || {
                        format!("frame {record}: SYN+ACK without a captured SYN; SYN assumed")
                    });
                    PendingSyns::push(&mut flow.pending_syns, (t, isn, record));
                }
                let (syn_t, syn_seq, syn_record) = flow.pending_syns.map_or((t, 0, 0), |p| p.last);
                let start = flow.pending_syns.map_or(t, |p| p.first_time);
                let cause = "inferred: it answered a SYN, so a listener existed";
                self.new_side(flow, s, tb.s.listen, seg.seq, start, cause, record);
                let syn = MSeg {
                    flags: SYN,
                    seq: syn_seq,
                    ack: 0,
                    length: 0,
                };
                self.recv(flow, s, syn, syn_t, syn_record);
                flow.pending_syns = None;
            }
            Some((isn, state))
                if state == tb.s.syn_recv || (isn == seg.seq && state != tb.s.closed) =>
            {
                if state == tb.s.established {
                    self.drop_last_ack(flow, s, || {
                        format!("SYN+ACK retransmitted in frame {record}")
                    });
                }
                if self.can(flow, s, tb.e.timeout_rto) {
                    self.call(flow, s, tb.e.timeout_rto, t, record);
                }
            }
            Some(_) => {}
        }
        if Self::state(flow, r) == Some(tb.s.syn_sent) {
            self.deliver(flow, s, r, t, seg, record);
        }
    }

    fn refused(&mut self, flow: &mut Flow, s: usize, r: usize, t: f64, seg: &Segment, record: u64) {
        let Some(pending) = flow.pending_syns else {
            return;
        };
        let (syn_t, syn_seq, syn_record) = pending.last;
        let first_t = pending.first_time;
        let closed = self.table().s.closed;
        let cause = "inferred: it answered the SYN with RST, so nothing was listening";
        self.new_side(flow, s, closed, 0, first_t, cause, record);
        let syn = MSeg {
            flags: SYN,
            seq: syn_seq,
            ack: 0,
            length: 0,
        };
        self.recv(flow, s, syn, syn_t, syn_record);
        flow.pending_syns = None;
        self.deliver(flow, s, r, t, seg, record);
    }

    // -- output -----------------------------------------------------------------------
    fn finish(&mut self, now: f64, key: FlowKey, mut slot: Slot) -> Connection {
        let flow = self.full(&key, &mut slot);
        let mut conn = self.finish_flow(now, flow);
        conn.tunnel = key.tunnel; // (issue 15: the chain is the key's)
        conn
    }

    fn finish_flow(&self, now: f64, flow: &mut Flow) -> Connection {
        // Timers run until the capture ends or the connection's idle timeout, whichever
        // is first: the same answer however late the connection is evicted.
        let until = now.min(flow.last + self.flow_idle_limit(flow));
        let tb = self.table();
        let mut cannot: [Option<String>; 2] = [None, None];
        let mut histories: [Vec<HistEntry>; 2] = [Vec::new(), Vec::new()];
        for s in 0..2 {
            let Some(side) = flow.sides[s].as_mut() else {
                let (when, reason) = match flow.pending_syns {
                    Some(p) => (
                        p.first_time,
                        "never seen on the wire: the SYN may not have arrived or was dropped",
                    ),
                    None => (flow.start, "never seen on the wire"),
                };
                histories[s].push(HistEntry {
                    time: when,
                    state: tb.s.unknown,
                    cause: HistCause::Text(reason),
                    frame: 0,
                });
                cannot[s] = Some(reason.to_string());
                continue;
            };
            if let Some(deadline) = side.ep.timer_deadline {
                if deadline <= until {
                    let input = Input::Call(tb.e.timeout_2msl);
                    side.run(
                        tb,
                        Entry {
                            input,
                            t: deadline,
                            record: 0,
                        },
                        None,
                    );
                }
            }
            let known = side.frames.len();
            histories[s] = side
                .ep
                .history
                .iter()
                .enumerate()
                .map(|(i, (when, state, cause))| HistEntry {
                    time: *when,
                    state: *state,
                    cause: HistCause::Endpoint(cause.clone()),
                    frame: if 0 < i && i < known {
                        side.frames[i]
                    } else {
                        0
                    },
                })
                .collect();
            let other = 1 - s;
            if flow.stats[s].packets == 0 {
                cannot[s] = Some(
                    "sent nothing the capture saw: its state is assumed from the peer's segments"
                        .to_string(),
                );
            }
            let state = side.ep.state;
            if (state == tb.s.established || state == tb.s.close_wait)
                && flow.last_window[other] == Some(0)
                && flow.stats[s].fin == 0
            {
                cannot[s] = Some(format!(
                    "the peer advertised a zero window at the end: a close() may be \
                     queued behind unsent data (its FIN cannot be sent yet), so \
                     {} or FIN_WAIT1 cannot be told",
                    tb.state_text(state)
                ));
            }
        }
        let z = &flow.zeek;
        let span = z.last_time - flow.start;
        Connection {
            index: flow.index,
            orig_ip: flow.orig_ip,
            orig_port: flow.orig_port,
            resp_ip: flow.resp_ip,
            resp_port: flow.resp_port,
            start: flow.start,
            end: flow.last,
            stats: flow.stats,
            histories,
            completeness: flow.completeness,
            zeek: ZeekFields {
                duration: if span > 0.0 { span } else { 0.0 },
                orig_bytes: z.orig_bytes(),
                resp_bytes: z.resp_bytes(),
                conn_state: z.conn_state(),
                history: z.history().to_string(),
                missed_bytes: z.missed_bytes,
            },
            cannot_tell: cannot,
            notes: std::mem::take(&mut flow.notes),
            segments: flow.segments.take().unwrap_or_default(),
            first_record: flow.first_record,
            tunnel: 0,
        }
    }
}

/// Wireshark's relative seq and ack of one segment (`tracker._relative`, which
/// says how each side's base is fixed and where that was checked against tshark).
fn relative(base: &mut [Option<u32>; 2], s: usize, flags: u8, seq: u32, ack: u32) -> (u32, u32) {
    let mine = *base[s].get_or_insert(if flags & SYN != 0 {
        seq
    } else {
        seq.wrapping_sub(1)
    });
    if flags & ACK == 0 {
        return (seq.wrapping_sub(mine), 0);
    }
    let peer = *base[1 - s].get_or_insert(ack.wrapping_sub(1));
    (seq.wrapping_sub(mine), ack.wrapping_sub(peer))
}

/// The text of a history cause (an event's value or a fixed text).
pub fn cause_text<'a>(table: &'a Table, cause: &'a Cause) -> &'a str {
    match cause {
        Cause::Event(e) => table.event_value(*e),
        Cause::Text(t) => t,
    }
}

/// `prev_end is None or _after(end, prev_end)`.
trait EndExt {
    fn is_none_or_after(&self, end: u32) -> bool;
}

impl EndExt for Option<u32> {
    fn is_none_or_after(&self, end: u32) -> bool {
        match self {
            None => true,
            Some(p) => seq_after(end, *p),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::tests::table;
    use crate::segment::Addr;

    const C: ([u8; 4], u16) = ([10, 0, 0, 1], 40000);
    const S: ([u8; 4], u16) = ([10, 0, 0, 2], 80);

    #[allow(clippy::too_many_arguments)]
    fn pkt(
        n: u64,
        t: f64,
        from: ([u8; 4], u16),
        to: ([u8; 4], u16),
        flags: u8,
        seq: u32,
        ack: u32,
        len: u32,
    ) -> Packet {
        Packet {
            record: n,
            ts_ns: (t * 1e9) as i128,
            frame_len: 54 + len,
            seg: Segment {
                src: Addr::V4(from.0),
                dst: Addr::V4(to.0),
                sport: from.1,
                dport: to.1,
                seq,
                ack,
                flags,
                window: 500,
                payload: len,
                ip_len: 40 + len,
                tunnel: 0,
                bad_checksum: false,
                payload_cut: false,
            },
        }
    }

    fn run(pkts: &[Packet], cfg: TrackerConfig) -> (Vec<Connection>, Tracker) {
        let mut tr = Tracker::new(cfg);
        let mut out = Vec::new();
        for p in pkts {
            tr.feed(p, &mut out);
        }
        tr.finish(&mut out);
        (out, tr)
    }

    fn states(t: &Table, c: &Connection, side: usize) -> Vec<String> {
        c.histories[side]
            .iter()
            .map(|h| t.state_names[usize::from(h.state)].clone())
            .collect()
    }

    #[test]
    fn full_connection_reaches_time_wait_and_closed_with_frames() {
        let t = Arc::new(table());
        let pkts = [
            pkt(1, 0.0, C, S, SYN, 100, 0, 0),
            pkt(2, 0.1, S, C, SYN | ACK, 900, 101, 0),
            pkt(3, 0.2, C, S, ACK, 101, 901, 0),
            pkt(4, 0.3, C, S, FIN | ACK, 101, 901, 0),
            pkt(5, 0.4, S, C, FIN | ACK, 901, 102, 0),
            pkt(6, 0.5, C, S, ACK, 102, 902, 0),
        ];
        let (out, tr) = run(&pkts, TrackerConfig::new(Arc::clone(&t)));
        assert_eq!(out.len(), 1);
        let c = &out[0];
        assert_eq!(
            states(&t, c, 0),
            [
                "CLOSED",
                "SYN_SENT",
                "ESTABLISHED",
                "FIN_WAIT1",
                "TIME_WAIT"
            ]
        );
        assert_eq!(
            states(&t, c, 1),
            [
                "LISTEN",
                "SYN_RECV",
                "ESTABLISHED",
                "CLOSE_WAIT",
                "LAST_ACK",
                "CLOSED"
            ]
        );
        let frames: Vec<u64> = c.histories[1].iter().map(|h| h.frame).collect();
        assert_eq!(frames, [0, 1, 3, 4, 5, 6]);
        assert_eq!(c.zeek.conn_state, "SF");
        assert_eq!(c.zeek.history, "ShAFf");
        assert_eq!(tr.count, 1);
        assert_eq!(tr.peak, 1);
    }

    #[test]
    fn a_logged_input_takes_32_bytes_and_reads_back_the_same() {
        assert_eq!(std::mem::size_of::<Logged>(), 32);
        let seg = MSeg {
            flags: 0xff,
            seq: u32::MAX,
            ack: 0,
            length: 7,
        };
        let inputs = [
            (Input::Recv(seg), (Some(3), 1, 2)),
            (Input::Recv(MSeg { ack: 1, ..seg }), (Some(0), 4, 4)),
            (Input::Call(5), (None, 2, 3)),
            (Input::Call(0), (None, 0, 0)),
            (Input::Set(Attr::RcvNxt, 9), (None, 6, 6)),
            (Input::Set(Attr::ClosingUnknown, 0), (None, 7, 7)),
        ];
        for (input, outcome) in inputs {
            let entry = Entry {
                input,
                t: 1.5,
                record: u64::MAX,
            };
            let logged = Logged::new(entry, outcome);
            assert_eq!(logged.outcome(), outcome);
            // Debug text: the derived impls compare every field of every variant
            assert_eq!(format!("{:?}", logged.entry()), format!("{entry:?}"));
        }
    }

    #[test]
    fn refused_connection_and_lost_ack_replay() {
        let t = Arc::new(table());
        let pkts = [
            pkt(1, 0.0, C, S, SYN, 100, 0, 0),
            pkt(2, 0.1, S, C, RST | ACK, 0, 101, 0),
        ];
        let (out, _) = run(&pkts, TrackerConfig::new(Arc::clone(&t)));
        assert_eq!(states(&t, &out[0], 1), ["CLOSED"]);
        assert_eq!(out[0].zeek.conn_state, "REJ");

        let pkts = [
            pkt(1, 0.0, C, S, SYN, 100, 0, 0),
            pkt(2, 0.1, S, C, SYN | ACK, 900, 101, 0),
            pkt(3, 0.2, C, S, ACK, 101, 901, 0),
            pkt(4, 1.2, S, C, SYN | ACK, 900, 101, 0),
        ];
        let (out, _) = run(&pkts, TrackerConfig::new(Arc::clone(&t)));
        assert_eq!(states(&t, &out[0], 1), ["LISTEN", "SYN_RECV"]);
        assert_eq!(
            out[0].notes,
            ["frame 3 did not arrive: SYN+ACK retransmitted in frame 4"]
        );
    }

    #[test]
    fn finish_some_hands_out_the_rest_in_order_a_batch_at_a_time() {
        let t = Arc::new(table());
        let pkts: Vec<Packet> = (0..25u16)
            .map(|i| {
                pkt(
                    u64::from(i) + 1,
                    f64::from(i) * 0.001,
                    ([10, 0, 0, 1], 1000 + i),
                    S,
                    SYN,
                    7,
                    0,
                    0,
                )
            })
            .collect();
        let mut one = Tracker::new(TrackerConfig::new(Arc::clone(&t)));
        let mut steps = Tracker::new(TrackerConfig::new(Arc::clone(&t)));
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for p in &pkts {
            one.feed(p, &mut a);
            steps.feed(p, &mut b);
        }
        let before = (a.len(), b.len());
        one.finish(&mut a);
        let mut calls = 0;
        while !steps.finish_some(&mut b, 10) {
            calls += 1;
            assert!(b.len() - before.1 <= 10 * calls);
        }
        assert_eq!(calls, 2);
        assert_eq!(a, b);
        assert_eq!(steps.live(), 0);
    }

    #[test]
    fn a_sweep_finished_a_batch_at_a_time_gives_what_feed_gives() {
        // 1,000 unanswered SYNs, 100 per second of capture time: each sweep (once a
        // second) times out a hundred attempts at once (5 s attempt timeout)
        let t = Arc::new(table());
        let pkts: Vec<Packet> = (0..1000u16)
            .map(|i| {
                let at = f64::from(i) * 0.01;
                pkt(
                    u64::from(i) + 1,
                    at,
                    ([10, 0, 1, 1], 1000 + i),
                    S,
                    SYN,
                    7,
                    0,
                    0,
                )
            })
            .collect();
        let mut whole = Tracker::new(TrackerConfig::new(Arc::clone(&t)));
        let mut lazy = Tracker::new(TrackerConfig::new(Arc::clone(&t)));
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let mut most = 0;
        for p in &pkts {
            whole.feed(p, &mut a);
            lazy.feed_lazily(p, &mut b);
            while lazy.swept_pending() {
                let before = b.len();
                lazy.finish_swept(&mut b, 7);
                most = most.max(b.len() - before);
            }
        }
        assert!(a.len() > 50, "the sweeps timed attempts out");
        assert_eq!(most, 7, "never more than the limit at a time");
        whole.finish(&mut a);
        lazy.finish(&mut b);
        assert_eq!(a, b);
        assert_eq!((whole.evicted, whole.peak), (lazy.evicted, lazy.peak));
    }

    #[test]
    fn cap_evicts_longest_idle_first_and_counts_it() {
        let t = Arc::new(table());
        let mut cfg = TrackerConfig::new(Arc::clone(&t));
        cfg.max_connections = 10;
        let pkts: Vec<Packet> = (0..100u16)
            .map(|i| {
                pkt(
                    u64::from(i) + 1,
                    f64::from(i) * 0.001,
                    ([10, 0, 0, 1], 1000 + i),
                    S,
                    SYN,
                    7,
                    0,
                    0,
                )
            })
            .collect();
        let mut tr = Tracker::new(cfg);
        let mut out = Vec::new();
        let mut most = 0;
        for p in &pkts {
            tr.feed(p, &mut out);
            most = most.max(tr.live());
        }
        assert!(most <= 11);
        assert!(tr.evicted >= 80);
        tr.finish(&mut out);
        let idx: Vec<u64> = out.iter().map(|c| c.index).collect();
        assert_eq!(idx.len(), 100);
        let mut sorted = idx.clone();
        sorted.sort_unstable();
        assert_eq!(idx, sorted);
    }
}
