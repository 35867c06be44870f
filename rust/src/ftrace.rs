//! tracefs ring-buffer pages -> TCP tracepoint records, for `tcplens trace`'s
//! exact mode (issue 16).
//!
//! The port of `parse_page` and `Decoder.decode` in
//! `src/tcplens/sources/tracepoints.py`, held equal to them by
//! `tests/sources/test_tracepoints_engine.py` (hypothesis pages and a live
//! session). Python still owns everything that is a policy or a name: it
//! parses `events/header_page` and each event's `format` file and hands the
//! offsets, sizes and signedness over ([`PageLayout`], [`Field`]); nothing
//! here knows an offset. What Python gets back per event is the raw numbers
//! and address bytes ([`Row`]); it turns them into `KernelEvent`s (states,
//! address text, reset reason names) with the same tables the reference uses.
//!
//! Only the ring buffer's compressed event header is fixed here, as in the
//! reference (`kernel/trace/ring_buffer.c`: 5-bit type_len, 27-bit time
//! delta; 29 padding, 30 time extend, 31 absolute time stamp), which Python
//! checks `events/header_event` still declares.
//!
//! Timestamps are `u128`: the reference computes with Python integers, and a
//! damaged page may carry a header stamp near 2^64 plus deltas.

#![forbid(unsafe_code)]

use std::collections::HashMap;

/// ring_buffer.c: RB_MISSED_EVENTS / RB_MISSED_STORED in the page's commit word.
const MISSED_EVENTS: u64 = 1 << 31;
const MISSED_STORED: u64 = 1 << 30;
const TS_MSB: u128 = 0xF << 59;
const PADDING: u32 = 29;
const TIME_EXTEND: u32 = 30;
/// `enum trace_flag_type` (kernel/trace/trace.h): hard irq, soft irq, NMI.
const IRQ_FLAGS: i128 = 0x08 | 0x10 | 0x40;
const AF_INET: i128 = 2;
const IPPROTO_TCP: i128 = 6;

/// Where the page header keeps its timestamp, commit word and data (`header_page`).
#[derive(Clone, Copy, Debug)]
pub struct PageLayout {
    pub timestamp: usize,
    pub commit: usize,
    pub commit_size: usize,
    pub data: usize,
}

/// One field as the event's `format` file declares it.
#[derive(Clone, Copy, Debug)]
pub struct Field {
    pub offset: usize,
    pub size: usize,
    pub signed: bool,
    /// `type name[N]`: read as bytes
    pub array: bool,
}

/// The events `tracepoints.EVENTS` enables, in `_KINDS` order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    State = 0,
    SendReset = 1,
    ReceiveReset = 2,
    Retransmit = 3,
    RetransmitSynack = 4,
    Destroy = 5,
}

impl Kind {
    pub fn from_index(index: u8) -> Option<Kind> {
        Some(match index {
            0 => Kind::State,
            1 => Kind::SendReset,
            2 => Kind::ReceiveReset,
            3 => Kind::Retransmit,
            4 => Kind::RetransmitSynack,
            5 => Kind::Destroy,
            _ => return None,
        })
    }

    /// The fields read, in `_WANTED` order; `true` marks an address (bytes).
    fn shape(self) -> &'static [bool] {
        const F: bool = false;
        const A: bool = true;
        match self {
            // flags pid skaddr old new sport dport family protocol saddr daddr saddr_v6 daddr_v6
            Kind::State => &[F, F, F, F, F, F, F, F, F, A, A, A, A],
            // flags pid skaddr state reason saddr daddr (sockaddr arrays)
            Kind::SendReset => &[F, F, F, F, F, A, A],
            // flags pid skaddr state sport dport family saddr daddr saddr_v6 daddr_v6
            Kind::Retransmit => &[F, F, F, F, F, F, F, A, A, A, A],
            // flags pid skaddr sport dport family saddr daddr saddr_v6 daddr_v6
            Kind::ReceiveReset | Kind::RetransmitSynack | Kind::Destroy => {
                &[F, F, F, F, F, F, A, A, A, A]
            }
        }
    }
}

/// One event type's fields, checked against what the decoder reads.
#[derive(Clone, Debug)]
pub struct EventLayout {
    kind: Kind,
    fields: Vec<Field>,
    /// bytes an event must have: the end of its last field
    size: usize,
}

impl EventLayout {
    /// Refuses a layout the reference would not read as numbers and addresses
    /// (Python then keeps its own decoder, so both never disagree).
    pub fn new(kind: Kind, fields: Vec<Field>) -> Result<EventLayout, String> {
        let shape = kind.shape();
        if fields.len() != shape.len() {
            return Err(format!(
                "{kind:?}: {} fields given, {} read",
                fields.len(),
                shape.len()
            ));
        }
        let mut end = 0;
        for (i, (f, &address)) in fields.iter().zip(shape).enumerate() {
            if f.offset < end {
                return Err(format!("{kind:?}: field {i} overlaps or is out of order"));
            }
            let integer = !f.array && matches!(f.size, 1 | 2 | 4 | 8);
            let fits = if !address {
                integer
            } else if kind == Kind::SendReset {
                !integer && f.size >= 24
            } else {
                // saddr/daddr are 4 bytes, saddr_v6/daddr_v6 16
                let want = if i + 2 < fields.len() { 4 } else { 16 };
                !integer && f.size == want
            };
            if !fits {
                return Err(format!("{kind:?}: field {i} has an unexpected type"));
            }
            end = f.offset + f.size;
        }
        Ok(EventLayout {
            kind,
            fields,
            size: end,
        })
    }
}

/// Everything the decoder needs from the format files.
#[derive(Clone, Debug)]
pub struct Layouts {
    pub page: PageLayout,
    /// offset of `common_type` (read as a u16, as the reference does)
    pub type_offset: usize,
    pub events: HashMap<u16, EventLayout>,
}

/// The events of one page: (timestamp ns, start, end) of each event's data.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Page {
    pub spans: Vec<(u128, usize, usize)>,
    /// events lost before this page: -1 when the kernel did not store the count
    pub missed: i128,
    pub damaged_at: Option<usize>,
}

fn le(bytes: &[u8]) -> u128 {
    bytes
        .iter()
        .rev()
        .fold(0u128, |acc, &b| (acc << 8) | u128::from(b))
}

fn word(page: &[u8], pos: usize) -> Option<u32> {
    let b = page.get(pos..pos + 4)?;
    Some(u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}

fn clamp(page: &[u8], start: usize, len: usize) -> &[u8] {
    let a = start.min(page.len());
    &page[a..(start.saturating_add(len)).min(page.len())]
}

/// rb_fix_abs_ts(): absolute stamps keep only 59 bits; restore the top from the last.
fn fix_abs_ts(mut abs_ts: u128, saved: u128) -> u128 {
    if saved & TS_MSB != 0 {
        abs_ts |= saved & TS_MSB;
        if abs_ts < saved {
            abs_ts += 1 << 59;
        }
    }
    abs_ts
}

/// `parse_page` of the reference: split one `trace_pipe_raw` page into events.
pub fn parse_page(page: &[u8], layout: &PageLayout) -> Page {
    let mut out = Page::default();
    if page.len() < layout.data {
        out.damaged_at = Some(0);
        return out;
    }
    let mut ts = le(clamp(page, layout.timestamp, 8));
    let commit = le(clamp(page, layout.commit, layout.commit_size));
    // the flags are bits 30 and 31; a wider commit word's upper bits are not size
    let size = (commit & u128::from(MISSED_STORED - 1)) as usize;
    let start = layout.data;
    let mut end = start.saturating_add(size);
    if end > page.len() {
        out.damaged_at = Some(layout.commit);
        end = page.len();
    }
    if commit & u128::from(MISSED_EVENTS) != 0 {
        out.missed = -1;
        if commit & u128::from(MISSED_STORED) != 0 && end + 8 <= page.len() {
            out.missed = le(&page[end..end + 8]) as i128;
        }
    }
    let mut pos = start;
    while pos + 4 <= end {
        let Some(w) = word(page, pos) else { break };
        let type_len = w & 0x1F;
        let delta = u128::from(w >> 5);
        if type_len == 0 {
            if pos + 8 > end {
                out.damaged_at = Some(pos);
                break;
            }
            let length = word(page, pos + 4).map_or(0, |l| l as usize);
            if length < 4 || pos + 4 + length > end {
                out.damaged_at = Some(pos);
                break;
            }
            ts += delta;
            out.spans.push((ts, pos + 8, pos + 4 + length));
            pos += 4 + ((length + 3) & !3);
        } else if type_len <= 28 {
            let length = type_len as usize * 4;
            if pos + 4 + length > end {
                out.damaged_at = Some(pos);
                break;
            }
            ts += delta;
            out.spans.push((ts, pos + 4, pos + 4 + length));
            pos += 4 + length;
        } else if type_len == PADDING {
            if delta == 0 || pos + 8 > end {
                break;
            }
            let length = word(page, pos + 4).map_or(0, |l| l as usize);
            pos += if length != 0 { 4 + length } else { 8 };
        } else {
            if pos + 8 > end {
                out.damaged_at = Some(pos);
                break;
            }
            let array = u128::from(word(page, pos + 4).unwrap_or(0));
            let value = (array << 27) | delta;
            ts = if type_len == TIME_EXTEND {
                ts + value
            } else {
                fix_abs_ts(value, ts)
            };
            pos += 8;
        }
    }
    out
}

/// One decoded event: numbers as the format file types them, addresses raw.
///
/// `local`/`remote` are the 4- or 16-byte address (`family` AF_INET picks
/// `saddr`/`daddr`, anything else the v6 fields, as the reference does), or
/// for `SendReset` the whole `sockaddr` arrays, with the ports `None`.
/// `a`/`b`: old and new state for `State`; state and reason for
/// `SendReset`; the state for `Retransmit`.
#[derive(Debug, PartialEq, Eq)]
pub struct Row<'p> {
    pub kind: Kind,
    pub ts: u128,
    pub cpu: i64,
    pub pid: i128,
    pub irq: bool,
    pub sk: i128,
    pub family: i128,
    pub local: &'p [u8],
    pub lport: Option<i128>,
    pub remote: &'p [u8],
    pub rport: Option<i128>,
    pub a: Option<i128>,
    pub b: Option<i128>,
}

fn int(data: &[u8], f: &Field) -> i128 {
    let b = &data[f.offset..f.offset + f.size];
    match (f.size, f.signed) {
        (1, false) => i128::from(b[0]),
        (1, true) => i128::from(b[0] as i8),
        (2, false) => i128::from(u16::from_ne_bytes([b[0], b[1]])),
        (2, true) => i128::from(i16::from_ne_bytes([b[0], b[1]])),
        (4, false) => i128::from(u32::from_ne_bytes([b[0], b[1], b[2], b[3]])),
        (4, true) => i128::from(i32::from_ne_bytes([b[0], b[1], b[2], b[3]])),
        (_, signed) => {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[..8]);
            if signed {
                i128::from(i64::from_ne_bytes(w))
            } else {
                i128::from(u64::from_ne_bytes(w))
            }
        }
    }
}

fn bytes<'p>(data: &'p [u8], f: &Field) -> &'p [u8] {
    &data[f.offset..f.offset + f.size]
}

/// `Decoder.decode` of the reference, minus the Python objects: the event
/// in `data`, or `None` for an unknown id, a short record or another protocol.
pub fn decode<'p>(layouts: &Layouts, ts: u128, cpu: i64, data: &'p [u8]) -> Option<Row<'p>> {
    let t = layouts.type_offset;
    let id = data
        .get(t..t + 2)
        .map(|b| u16::from_ne_bytes([b[0], b[1]]))?;
    let ev = layouts.events.get(&id)?;
    if data.len() < ev.size {
        return None;
    }
    let f = &ev.fields;
    let mut row = Row {
        kind: ev.kind,
        ts,
        cpu,
        pid: int(data, &f[1]),
        irq: int(data, &f[0]) & IRQ_FLAGS != 0,
        sk: int(data, &f[2]),
        family: 0,
        local: &[],
        lport: None,
        remote: &[],
        rport: None,
        a: None,
        b: None,
    };
    // index of sport: the fields after it are dport, family, [protocol,] saddr, daddr, v6s
    let ports_at = match ev.kind {
        Kind::State => {
            if int(data, &f[8]) != IPPROTO_TCP {
                return None;
            }
            row.a = Some(int(data, &f[3]));
            row.b = Some(int(data, &f[4]));
            5
        }
        Kind::SendReset => {
            row.a = Some(int(data, &f[3]));
            row.b = Some(int(data, &f[4]));
            row.local = bytes(data, &f[5]);
            row.remote = bytes(data, &f[6]);
            return Some(row);
        }
        Kind::Retransmit => {
            row.a = Some(int(data, &f[3]));
            4
        }
        Kind::ReceiveReset | Kind::RetransmitSynack | Kind::Destroy => 3,
    };
    let family = int(data, &f[ports_at + 2]);
    let addrs = f.len() - 4;
    let (src, dst) = if family == AF_INET {
        (&f[addrs], &f[addrs + 1])
    } else {
        (&f[addrs + 2], &f[addrs + 3])
    };
    row.family = family;
    row.lport = Some(int(data, &f[ports_at]));
    row.rport = Some(int(data, &f[ports_at + 1]));
    row.local = bytes(data, src);
    row.remote = bytes(data, dst);
    Some(row)
}

/// `decode_events` of the reference: the events of (cpu, page) pairs in time
/// order (stable: equal stamps keep page order) and the events the pages say
/// were missed.
pub fn decode_pages<'p>(layouts: &Layouts, pages: &[(i64, &'p [u8])]) -> (Vec<Row<'p>>, u128) {
    let mut rows = Vec::new();
    let mut missed = 0u128;
    for &(cpu, page) in pages {
        let parsed = parse_page(page, &layouts.page);
        missed += parsed.missed.max(0) as u128;
        for (ts, start, end) in parsed.spans {
            if let Some(row) = decode(layouts, ts, cpu, &page[start..end]) {
                rows.push(row);
            }
        }
    }
    rows.sort_by_key(|r| r.ts);
    (rows, missed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAYOUT: PageLayout = PageLayout {
        timestamp: 0,
        commit: 8,
        commit_size: 8,
        data: 16,
    };

    fn page(body: &[u8], commit: u64) -> Vec<u8> {
        let mut p = 1_000u64.to_ne_bytes().to_vec();
        p.extend_from_slice(&commit.to_ne_bytes());
        p.extend_from_slice(body);
        p.resize(4096, 0);
        p
    }

    #[test]
    fn events_keep_their_deltas_and_extends() {
        let mut body = Vec::new();
        body.extend_from_slice(&((5u32 << 5) | 1).to_ne_bytes());
        body.extend_from_slice(b"abcd");
        body.extend_from_slice(&((1u32 << 5) | TIME_EXTEND).to_ne_bytes());
        body.extend_from_slice(&2u32.to_ne_bytes());
        body.extend_from_slice(&(7u32 << 5).to_ne_bytes());
        body.extend_from_slice(&8u32.to_ne_bytes());
        body.extend_from_slice(b"efgh");
        let p = page(&body, body.len() as u64);
        let got = parse_page(&p, &LAYOUT);
        assert_eq!(got.damaged_at, None);
        let ext = (2u128 << 27) | 1;
        assert_eq!(got.spans, vec![(1_005, 20, 24), (1_005 + ext + 7, 40, 44)]);
    }

    #[test]
    fn a_commit_past_the_page_is_damage_not_a_panic() {
        let body = ((1u32 << 5) | 1).to_ne_bytes();
        let mut p = page(&body, 9000);
        p.truncate(64);
        let got = parse_page(&p, &LAYOUT);
        assert!(got.damaged_at.is_some());
        assert_eq!(got.spans, vec![(1_001, 20, 24)]);
        assert_eq!(parse_page(&p[..5], &LAYOUT).damaged_at, Some(0));
    }

    #[test]
    fn missed_events_stored_after_the_data_are_read() {
        let mut body = ((1u32 << 5) | 1).to_ne_bytes().to_vec();
        body.extend_from_slice(b"wxyz");
        let commit = body.len() as u64 | MISSED_EVENTS | MISSED_STORED;
        body.extend_from_slice(&42u64.to_ne_bytes());
        assert_eq!(parse_page(&page(&body, commit), &LAYOUT).missed, 42);
    }

    #[test]
    fn layouts_that_are_not_numbers_and_addresses_are_refused() {
        let f = |offset, size| Field {
            offset,
            size,
            signed: false,
            array: false,
        };
        let a = |offset, size| Field {
            offset,
            size,
            signed: false,
            array: true,
        };
        let ok = vec![
            f(2, 1),
            f(4, 4),
            f(8, 8),
            f(16, 2),
            f(18, 2),
            f(20, 2),
            a(22, 4),
            a(26, 4),
            a(30, 16),
            a(46, 16),
        ];
        assert!(EventLayout::new(Kind::Destroy, ok.clone()).is_ok());
        let mut bad = ok.clone();
        bad[6] = f(22, 4);
        assert!(EventLayout::new(Kind::Destroy, bad).is_err());
        assert!(EventLayout::new(Kind::State, ok).is_err());
    }
}
