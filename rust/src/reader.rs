//! Capture file records: pcap (µs/ns, both byte orders) and pcapng (several
//! sections, interfaces and link types; blocks we do not read are skipped).
//!
//! The port of `tcplens.packets.pcap.read_frames`, held equal to it by
//! `tests/packets/test_engine_reader.py`: the same frames, and for bad input the
//! same error with the same message, record number and byte offset.
//!
//! The reader streams: it reads forward in large chunks through a reusable
//! window (a pipe works as well as a file, nothing seeks) and hands out frames as
//! slices borrowed from that window, so no packet is copied or allocated.
//! Memory is one chunk plus the largest record.
//!
//! Layouts (cited from the pcap and pcapng drafts, as in `pcap.py`):
//! ```text
//! pcap file header  u32 magic; u16 major, minor; i32 zone; u32 sigfigs, snaplen, network
//! pcap record       u32 ts_sec, ts_frac, caplen, len; data
//! pcapng block      u32 type; u32 total_length; body; u32 total_length
//!   IDB body        u16 linktype; u16 reserved; u32 snaplen; options
//!   EPB body        u32 if_id; u32 ts_high; u32 ts_low; u32 caplen; u32 len; data
//!   OPB body        u16 if_id; u16 drops; u32 ts_high; u32 ts_low; u32 caplen; u32 len; data
//!   SPB body        u32 len; data
//!   option          u16 code; u16 length; value padded to 4
//! ```

#![forbid(unsafe_code)]

use std::io::{self, Read};

/// The window starts small (a tiny capture, or a fuzz input, costs little) and
/// doubles with each refill up to `CHUNK`, the read size for large files
/// (256 KiB: the headers read after each refill are still in the core's 1 MiB
/// L2 cache; 128 KiB and 1 MiB measured no faster).
const FIRST_CHUNK: usize = 64 << 10;
const CHUNK: usize = 256 << 10;
/// A record longer than this is garbage, not a packet: four times libpcap's
/// MAXIMUM_SNAPLEN, the largest snapshot of the link types we decode.
pub const MAX_RECORD: u32 = 262_144 * 4;
/// No file header can raise the limit past this (libpcap's largest per-link-type
/// maximum, D-Bus, is 128 MiB); a longer "record" is a damaged length field.
pub const ABSURD_RECORD: u32 = 256 << 20;

/// The largest captured length a pcap record of a file with this snaplen may have
/// (`pcap.record_limit`): the snaplen, at least `MAX_RECORD`, at most `ABSURD_RECORD`.
pub fn record_limit(snaplen: u32) -> u32 {
    snaplen.clamp(MAX_RECORD, ABSURD_RECORD)
}

const PCAP_MAGIC_US: u32 = 0xA1B2_C3D4;
const PCAP_MAGIC_NS: u32 = 0xA1B2_3C4D;
const PCAPNG_SHB: u32 = 0x0A0D_0D0A;
const PCAPNG_BOM: u32 = 0x1A2B_3C4D;
const PCAPNG_IDB: u32 = 0x0000_0001;
const PCAPNG_OPB: u32 = 0x0000_0002;
const PCAPNG_SPB: u32 = 0x0000_0003;
const PCAPNG_EPB: u32 = 0x0000_0006;
const OPT_IF_TSRESOL: u16 = 9;
const OPT_IF_TSOFFSET: u16 = 14;
const PCAP_HDR_LEN: usize = 24;
const PCAP_REC_LEN: usize = 16;
/// EPB and OPB fixed parts are both 20 bytes.
const PACKET_HDR_LEN: usize = 20;

/// Which `tcplens.errors` class a [`ReadError`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// `InputError`: not a capture, or a record that cannot be understood.
    Input,
    /// `TruncatedInput`: the input ends inside a record; what came before is valid.
    Truncated,
    /// `CorruptRecord` (a `TruncatedInput`): a record's length is impossible, so
    /// nothing after it can be framed; what came before is valid.
    Corrupt,
}

impl ErrorKind {
    /// The exception class's name in `tcplens.errors`.
    pub fn class_name(self) -> &'static str {
        match self {
            ErrorKind::Input => "InputError",
            ErrorKind::Truncated => "TruncatedInput",
            ErrorKind::Corrupt => "CorruptRecord",
        }
    }

    /// Truncated and corrupt input still yield the connections before the fault.
    pub fn keeps_what_came_before(self) -> bool {
        self != ErrorKind::Input
    }
}

/// A located problem with the input, as the Python reader raises it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadError {
    pub kind: ErrorKind,
    pub message: String,
    pub record: Option<u64>,
    pub offset: Option<u64>,
}

impl ReadError {
    pub fn input(message: impl Into<String>, record: Option<u64>, offset: Option<u64>) -> Self {
        ReadError {
            kind: ErrorKind::Input,
            message: message.into(),
            record,
            offset,
        }
    }

    fn truncated(message: impl Into<String>, record: u64, offset: u64) -> Self {
        ReadError {
            kind: ErrorKind::Truncated,
            message: message.into(),
            record: Some(record),
            offset: Some(offset),
        }
    }

    fn corrupt(message: impl Into<String>, record: u64, offset: u64) -> Self {
        ReadError {
            kind: ErrorKind::Corrupt,
            message: message.into(),
            record: Some(record),
            offset: Some(offset),
        }
    }

    fn io(err: &io::Error, offset: u64) -> Self {
        ReadError::input(format!("read failed: {err}"), None, Some(offset))
    }
}

/// One captured packet as the file stores it, borrowed from the reader's window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Nanoseconds since the epoch. i128 because a pcapng timestamp scaled by
    /// `if_tsresol` and shifted by `if_tsoffset` can leave i64, and Python's
    /// integers (the reference) do not overflow.
    pub ts_ns: i128,
    pub linktype: u16,
    pub data: &'a [u8],
    /// Length on the wire (larger than `data` when the snapshot length cut it).
    pub wire_len: u32,
    /// 1-based record number (Wireshark's frame number).
    pub record: u64,
    /// Byte offset of the record (pcap) or block (pcapng) in the file.
    pub offset: u64,
    pub interface: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Order {
    Little,
    Big,
}

impl Order {
    fn u16(self, b: &[u8], at: usize) -> u16 {
        let raw = [b[at], b[at + 1]];
        match self {
            Order::Little => u16::from_le_bytes(raw),
            Order::Big => u16::from_be_bytes(raw),
        }
    }

    fn u32(self, b: &[u8], at: usize) -> u32 {
        let raw = [b[at], b[at + 1], b[at + 2], b[at + 3]];
        match self {
            Order::Little => u32::from_le_bytes(raw),
            Order::Big => u32::from_be_bytes(raw),
        }
    }

    fn i64(self, b: &[u8], at: usize) -> i64 {
        let mut raw = [0u8; 8];
        raw.copy_from_slice(&b[at..at + 8]);
        match self {
            Order::Little => i64::from_le_bytes(raw),
            Order::Big => i64::from_be_bytes(raw),
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Interface {
    linktype: u16,
    snaplen: u32,
    /// Timestamp units per second (`if_tsresol`; default 10^6).
    units: u64,
    /// Seconds added to every timestamp (`if_tsoffset`).
    offset_s: i64,
}

enum Layout {
    /// Nothing read yet: the magic number is read by the first `next_frame`.
    Unopened,
    Pcap {
        order: Order,
        nanos: bool,
        linktype: u16,
        limit: u32,
    },
    Pcapng {
        order: Order,
        interfaces: Vec<Interface>,
    },
}

/// A forward-only byte window over a reader: `buf[pos..end]` is unread, `base`
/// is the file offset of `buf[0]`.
struct Window<R> {
    src: R,
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    base: u64,
    eof: bool,
}

impl<R: Read> Window<R> {
    fn new(src: R) -> Self {
        Window {
            src,
            buf: Vec::new(),
            pos: 0,
            end: 0,
            base: 0,
            eof: false,
        }
    }

    fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    fn remaining(&self) -> usize {
        self.end - self.pos
    }

    /// Make `n` bytes available at `pos`; `Ok(false)` if the input ends first.
    fn ensure(&mut self, n: usize) -> Result<bool, ReadError> {
        if self.end - self.pos >= n {
            return Ok(true);
        }
        if self.eof {
            return Ok(false);
        }
        // Move the unread tail to the front, then fill behind it.
        if self.pos > 0 {
            self.buf.copy_within(self.pos..self.end, 0);
            self.base += self.pos as u64;
            self.end -= self.pos;
            self.pos = 0;
        }
        let grown = (self.buf.len() * 2).clamp(FIRST_CHUNK, CHUNK);
        if self.buf.len() < grown {
            self.buf.resize(grown, 0);
        }
        while self.end < n {
            if self.end == self.buf.len() {
                // Grow with the data that arrives, not to the length a record claims:
                // a lying length field costs what the input really holds, no more.
                let more = (self.buf.len() * 2).min(n).max(self.buf.len() + 1);
                self.buf.resize(more, 0);
            }
            match self.src.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(false);
                }
                Ok(got) => self.end += got,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(ReadError::io(&err, self.base + self.end as u64)),
            }
        }
        Ok(true)
    }

    fn peek(&self, n: usize) -> &[u8] {
        &self.buf[self.pos..self.pos + n]
    }
}

/// Streams the frames of one pcap or pcapng input, in file order.
pub struct Reader<R> {
    win: Window<R>,
    layout: Layout,
    record: u64,
}

fn units_per_second(value: u8) -> u64 {
    // MSB clear: 10^-n seconds; set: 2^-n (pcapng if_tsresol), bounded as in pcap.py.
    let exponent = u32::from(value & 0x7F);
    if value & 0x80 != 0 {
        1u64 << exponent.min(63)
    } else {
        10u64.pow(exponent.min(18))
    }
}

impl<R: Read> Reader<R> {
    /// A reader that reads nothing until the first `next_frame` (as Python's
    /// generator does), so an error in the file header comes from there.
    pub fn new(src: R) -> Self {
        Reader {
            win: Window::new(src),
            layout: Layout::Unopened,
            record: 0,
        }
    }

    /// Read the magic number (and pcap's file header) now.
    pub fn open(src: R) -> Result<Self, ReadError> {
        let mut reader = Reader::new(src);
        reader.layout = Self::layout(&mut reader.win)?;
        Ok(reader)
    }

    /// The input, e.g. to ask it why a read failed.
    pub fn source_mut(&mut self) -> &mut R {
        &mut self.win.src
    }

    /// Read the magic number (and pcap's file header) and pick the layout.
    fn layout(win: &mut Window<R>) -> Result<Layout, ReadError> {
        if !win.ensure(4)? {
            if win.remaining() == 0 {
                return Err(ReadError::input("empty file, not a capture", None, None));
            }
            return Err(ReadError::input("too short to be a capture", None, Some(0)));
        }
        let head = win.peek(4);
        let le = Order::Little.u32(head, 0);
        let be = Order::Big.u32(head, 0);
        let layout = if le == PCAP_MAGIC_US || le == PCAP_MAGIC_NS {
            Self::pcap_header(win, Order::Little, le == PCAP_MAGIC_NS)?
        } else if be == PCAP_MAGIC_US || be == PCAP_MAGIC_NS {
            Self::pcap_header(win, Order::Big, be == PCAP_MAGIC_NS)?
        } else if le == PCAPNG_SHB {
            Layout::Pcapng {
                order: Order::Little,
                interfaces: Vec::new(),
            }
        } else {
            let hex: String = head.iter().map(|b| format!("{b:02x}")).collect();
            return Err(ReadError::input(
                format!("not a pcap or pcapng file (magic 0x{hex})"),
                None,
                Some(0),
            ));
        };
        Ok(layout)
    }

    fn pcap_header(win: &mut Window<R>, order: Order, nanos: bool) -> Result<Layout, ReadError> {
        if !win.ensure(PCAP_HDR_LEN)? {
            return Err(ReadError::input(
                "pcap file header is truncated",
                None,
                Some(0),
            ));
        }
        let hdr = win.peek(PCAP_HDR_LEN);
        let major = order.u16(hdr, 4);
        let snaplen = order.u32(hdr, 16);
        let network = order.u32(hdr, 20);
        if major != 2 {
            return Err(ReadError::input(
                format!("unsupported pcap version {major}"),
                None,
                Some(4),
            ));
        }
        win.pos += PCAP_HDR_LEN;
        Ok(Layout::Pcap {
            order,
            nanos,
            // The upper bits of the link-type field carry FCS information (pcap draft, section 4).
            linktype: (network & 0xFFFF) as u16,
            limit: record_limit(snaplen),
        })
    }

    /// Records read so far (the number of the last frame handed out).
    pub fn records(&self) -> u64 {
        self.record
    }

    /// Bytes consumed so far (the offset of the next record).
    pub fn position(&self) -> u64 {
        self.win.offset()
    }

    /// The next frame, `Ok(None)` at a clean end of input.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, ReadError> {
        if let Layout::Unopened = self.layout {
            self.layout = Self::layout(&mut self.win)?;
        }
        match self.layout {
            Layout::Unopened => Ok(None),
            Layout::Pcap {
                order,
                nanos,
                linktype,
                limit,
            } => self.next_pcap(order, nanos, linktype, limit),
            Layout::Pcapng { .. } => self.next_pcapng(),
        }
    }

    fn next_pcap(
        &mut self,
        order: Order,
        nanos: bool,
        linktype: u16,
        limit: u32,
    ) -> Result<Option<Frame<'_>>, ReadError> {
        let record = self.record + 1;
        let win = &mut self.win;
        if !win.ensure(PCAP_REC_LEN)? {
            if win.remaining() > 0 {
                return Err(ReadError::truncated(
                    "record header is truncated",
                    record,
                    win.offset(),
                ));
            }
            return Ok(None);
        }
        let hdr = win.peek(PCAP_REC_LEN);
        let sec = order.u32(hdr, 0);
        let frac = order.u32(hdr, 4);
        let caplen = order.u32(hdr, 8);
        let wire = order.u32(hdr, 12);
        let start = win.offset();
        if caplen > limit {
            return Err(ReadError::corrupt(
                format!(
                    "captured length {caplen} is larger than any packet (limit {limit}); \
                     the capture is damaged from this record on"
                ),
                record,
                start,
            ));
        }
        let total = PCAP_REC_LEN + caplen as usize;
        if !win.ensure(total)? {
            return Err(ReadError::truncated(
                format!(
                    "record is truncated ({} of {caplen} bytes present)",
                    win.remaining() as i64 - PCAP_REC_LEN as i64
                ),
                record,
                start,
            ));
        }
        let at = win.pos;
        win.pos += total;
        self.record = record;
        let scale: i128 = if nanos { 1 } else { 1000 };
        Ok(Some(Frame {
            ts_ns: i128::from(sec) * 1_000_000_000 + i128::from(frac) * scale,
            linktype,
            data: &win.buf[at + PCAP_REC_LEN..at + total],
            wire_len: wire,
            record,
            offset: start,
            interface: 0,
        }))
    }

    fn next_pcapng(&mut self) -> Result<Option<Frame<'_>>, ReadError> {
        let (block_type, order, at, total, record, start) = loop {
            let next = self.record + 1;
            if !self.win.ensure(8)? {
                if self.win.remaining() > 0 {
                    return Err(ReadError::truncated(
                        "block header is truncated",
                        next,
                        self.win.offset(),
                    ));
                }
                return Ok(None);
            }
            let start = self.win.offset();
            let Layout::Pcapng { order, interfaces } = &mut self.layout else {
                return Ok(None);
            };
            let raw_type = Order::Little.u32(self.win.peek(4), 0);
            if raw_type == PCAPNG_SHB {
                // The section header's own byte-order magic decides the order of everything in it.
                if !self.win.ensure(12)? {
                    return Err(ReadError::truncated(
                        "section header is truncated",
                        next,
                        start,
                    ));
                }
                let bom = &self.win.peek(12)[8..12];
                if Order::Little.u32(bom, 0) == PCAPNG_BOM {
                    *order = Order::Little;
                } else if Order::Big.u32(bom, 0) == PCAPNG_BOM {
                    *order = Order::Big;
                } else {
                    let hex: String = bom.iter().map(|b| format!("{b:02x}")).collect();
                    return Err(ReadError::input(
                        format!("pcapng section header has a bad byte-order magic 0x{hex}"),
                        None,
                        Some(start + 8),
                    ));
                }
                interfaces.clear();
            }
            let order = *order;
            let head = self.win.peek(8);
            let block_type = order.u32(head, 0);
            let total = order.u32(head, 4);
            if total < 12 || total % 4 != 0 || total > MAX_RECORD + 64 {
                return Err(ReadError::corrupt(
                    format!(
                        "block of type 0x{block_type:08x} has an impossible length {total}; \
                         the capture is damaged from this block on"
                    ),
                    next,
                    start,
                ));
            }
            let total = total as usize;
            if !self.win.ensure(total)? {
                return Err(ReadError::truncated(
                    format!(
                        "block is truncated ({} of {total} bytes present)",
                        self.win.remaining()
                    ),
                    next,
                    start,
                ));
            }
            let at = self.win.pos;
            self.win.pos += total;
            let block = &self.win.buf[at..at + total];
            let trailer = order.u32(block, total - 4);
            if trailer as usize != total {
                return Err(ReadError::corrupt(
                    format!(
                        "block lengths disagree ({total} at the start, {trailer} at the end); \
                         the capture is damaged from this block on"
                    ),
                    next,
                    start,
                ));
            }
            match block_type {
                PCAPNG_IDB => interfaces.push(parse_idb(&block[8..total - 4], order, start)?),
                PCAPNG_EPB | PCAPNG_OPB | PCAPNG_SPB => {
                    self.record = next;
                    // Built after the loop: a borrow returned from inside a loop that
                    // also refills the window is more than the borrow checker can see through.
                    break (block_type, order, at, total, next, start);
                }
                // every other block (name resolution, statistics, custom...) is skipped
                _ => {}
            }
        };
        let Layout::Pcapng { interfaces, .. } = &self.layout else {
            return Ok(None);
        };
        let body = &self.win.buf[at + 8..at + total - 4];
        packet_block(block_type, body, order, interfaces, record, start).map(Some)
    }
}

fn parse_idb(body: &[u8], order: Order, at: u64) -> Result<Interface, ReadError> {
    if body.len() < 8 {
        return Err(ReadError::input(
            "interface description block is too short",
            None,
            Some(at),
        ));
    }
    let mut iface = Interface {
        linktype: order.u16(body, 0),
        snaplen: order.u32(body, 4),
        units: 1_000_000,
        offset_s: 0,
    };
    let mut pos = 8;
    while pos + 4 <= body.len() {
        let code = order.u16(body, pos);
        let length = order.u16(body, pos + 2) as usize;
        if code == 0 {
            break; // opt_endofopt
        }
        let Some(value) = body.get(pos + 4..pos + 4 + length) else {
            return Err(ReadError::input(
                format!("option {code} runs past its block"),
                None,
                Some(at + 8 + pos as u64),
            ));
        };
        if code == OPT_IF_TSRESOL && !value.is_empty() {
            iface.units = units_per_second(value[0]);
        } else if code == OPT_IF_TSOFFSET && value.len() >= 8 {
            iface.offset_s = order.i64(value, 0);
        }
        pos += 4 + ((length + 3) & !3);
    }
    Ok(iface)
}

fn packet_block<'a>(
    block_type: u32,
    body: &'a [u8],
    order: Order,
    interfaces: &[Interface],
    record: u64,
    at: u64,
) -> Result<Frame<'a>, ReadError> {
    if block_type == PCAPNG_SPB {
        let iface = match interfaces.first() {
            Some(iface) if body.len() >= 4 => iface,
            _ => {
                return Err(ReadError::input(
                    "simple packet block without an interface",
                    Some(record),
                    Some(at),
                ))
            }
        };
        let wire = order.u32(body, 0);
        let snap = if iface.snaplen == 0 {
            wire
        } else {
            iface.snaplen
        };
        let caplen = (wire.min(snap) as usize).min(body.len() - 4);
        // A simple packet block has no timestamp at all.
        return Ok(Frame {
            ts_ns: 0,
            linktype: iface.linktype,
            data: &body[4..4 + caplen],
            wire_len: wire,
            record,
            offset: at,
            interface: 0,
        });
    }
    if body.len() < PACKET_HDR_LEN {
        return Err(ReadError::input(
            "packet block is too short",
            Some(record),
            Some(at),
        ));
    }
    let if_id = if block_type == PCAPNG_EPB {
        order.u32(body, 0)
    } else {
        u32::from(order.u16(body, 0))
    };
    let hi = order.u32(body, 4);
    let lo = order.u32(body, 8);
    let caplen = order.u32(body, 12);
    let wire = order.u32(body, 16);
    let Some(iface) = interfaces.get(if_id as usize) else {
        return Err(ReadError::input(
            format!(
                "packet refers to interface {if_id}, but only {} are described",
                interfaces.len()
            ),
            Some(record),
            Some(at),
        ));
    };
    let Some(data) = body.get(PACKET_HDR_LEN..PACKET_HDR_LEN + caplen as usize) else {
        return Err(ReadError::corrupt(
            format!(
                "captured length {caplen} runs past its block; the capture is damaged \
                 from this block on"
            ),
            record,
            at,
        ));
    };
    let units = (u128::from(hi) << 32) | u128::from(lo);
    let ts = if iface.units == 1_000_000_000 {
        units
    } else {
        units * 1_000_000_000 / u128::from(iface.units)
    };
    // < 2^94 after scaling, so it fits i128 with room for the offset.
    let ts_ns = ts as i128 + i128::from(iface.offset_s) * 1_000_000_000;
    Ok(Frame {
        ts_ns,
        linktype: iface.linktype,
        data,
        wire_len: wire,
        record,
        offset: at,
        interface: if_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pcap_header(magic: u32, major: u16, snaplen: u32, network: u32) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&magic.to_le_bytes());
        v.extend_from_slice(&major.to_le_bytes());
        v.extend_from_slice(&4u16.to_le_bytes());
        v.extend_from_slice(&0i32.to_le_bytes());
        v.extend_from_slice(&0u32.to_le_bytes());
        v.extend_from_slice(&snaplen.to_le_bytes());
        v.extend_from_slice(&network.to_le_bytes());
        v
    }

    fn pcap_record(v: &mut Vec<u8>, sec: u32, frac: u32, data: &[u8], wire: u32) {
        for x in [sec, frac, data.len() as u32, wire] {
            v.extend_from_slice(&x.to_le_bytes());
        }
        v.extend_from_slice(data);
    }

    /// (ts_ns, linktype, data, wire_len, record, offset)
    type Owned = (i128, u16, Vec<u8>, u32, u64, u64);

    /// Every frame, or the error that ended the input, as owned values.
    fn read_all(bytes: &[u8]) -> (Vec<Owned>, Option<ReadError>) {
        let mut out = Vec::new();
        let mut reader = match Reader::open(bytes) {
            Ok(r) => r,
            Err(e) => return (out, Some(e)),
        };
        loop {
            match reader.next_frame() {
                Ok(Some(f)) => out.push((
                    f.ts_ns,
                    f.linktype,
                    f.data.to_vec(),
                    f.wire_len,
                    f.record,
                    f.offset,
                )),
                Ok(None) => return (out, None),
                Err(e) => return (out, Some(e)),
            }
        }
    }

    #[test]
    fn empty_input_is_not_a_capture() {
        let (_, err) = read_all(b"");
        assert_eq!(
            err,
            Some(ReadError::input("empty file, not a capture", None, None))
        );
        let (_, err) = read_all(b"\xd4\xc3");
        assert_eq!(err.unwrap().message, "too short to be a capture");
    }

    #[test]
    fn unknown_magic_is_named_in_hex() {
        let (_, err) = read_all(b"GIF89a");
        let err = err.unwrap();
        assert_eq!(err.message, "not a pcap or pcapng file (magic 0x47494638)");
        assert_eq!(err.offset, Some(0));
    }

    #[test]
    fn pcap_microseconds_little_endian() {
        let mut v = pcap_header(PCAP_MAGIC_US, 2, 65535, 1);
        pcap_record(&mut v, 10, 5, b"abc", 60);
        pcap_record(&mut v, 11, 0, b"", 0);
        let (frames, err) = read_all(&v);
        assert_eq!(err, None);
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0], (10_000_005_000, 1, b"abc".to_vec(), 60, 1, 24));
        assert_eq!(frames[1].4, 2);
        assert_eq!(frames[1].5, 24 + 16 + 3);
    }

    #[test]
    fn pcap_nanoseconds_big_endian_and_fcs_bits_in_linktype() {
        let mut v = Vec::new();
        v.extend_from_slice(&PCAP_MAGIC_NS.to_be_bytes());
        v.extend_from_slice(&2u16.to_be_bytes());
        v.extend_from_slice(&4u16.to_be_bytes());
        v.extend_from_slice(&[0; 8]);
        v.extend_from_slice(&65535u32.to_be_bytes());
        v.extend_from_slice(&0x1000_0071u32.to_be_bytes()); // FCS bits + SLL (113)
        for x in [1u32, 7, 2, 2] {
            v.extend_from_slice(&x.to_be_bytes());
        }
        v.extend_from_slice(b"hi");
        let (frames, err) = read_all(&v);
        assert_eq!(err, None);
        assert_eq!(frames, vec![(1_000_000_007, 113, b"hi".to_vec(), 2, 1, 24)]);
    }

    #[test]
    fn pcap_version_other_than_2_is_refused() {
        let v = pcap_header(PCAP_MAGIC_US, 0xFF02, 65535, 1);
        let (_, err) = read_all(&v);
        assert_eq!(
            err,
            Some(ReadError::input(
                "unsupported pcap version 65282",
                None,
                Some(4)
            ))
        );
        let (_, err) = read_all(&v[..20]);
        assert_eq!(err.unwrap().message, "pcap file header is truncated");
    }

    #[test]
    fn truncated_pcap_record_is_located_after_the_good_ones() {
        let mut v = pcap_header(PCAP_MAGIC_US, 2, 65535, 1);
        pcap_record(&mut v, 1, 0, b"abcd", 4);
        let good = v.len() as u64;
        pcap_record(&mut v, 2, 0, b"efgh", 4);
        let (frames, err) = read_all(&v[..v.len() - 1]);
        assert_eq!(frames.len(), 1);
        assert_eq!(
            err,
            Some(ReadError::truncated(
                "record is truncated (3 of 4 bytes present)",
                2,
                good
            ))
        );
        let (frames, err) = read_all(&v[..good as usize + 5]);
        assert_eq!(frames.len(), 1);
        assert_eq!(
            err,
            Some(ReadError::truncated("record header is truncated", 2, good))
        );
    }

    #[test]
    fn a_lying_record_length_costs_only_what_the_input_holds() {
        let mut v = pcap_header(PCAP_MAGIC_US, 2, ABSURD_RECORD, 1);
        for x in [0u32, 0, ABSURD_RECORD - 1, 0] {
            v.extend_from_slice(&x.to_le_bytes());
        }
        v.extend_from_slice(&[0; 100]);
        let mut reader = Reader::open(&v[..]).unwrap();
        let err = reader.next_frame().unwrap_err();
        assert_eq!(err.kind, ErrorKind::Truncated);
        assert!(
            reader.win.buf.len() <= 2 * FIRST_CHUNK,
            "{}",
            reader.win.buf.len()
        );
    }

    #[test]
    fn oversized_pcap_record_is_garbage_not_a_packet() {
        let mut v = pcap_header(PCAP_MAGIC_US, 2, 65535, 1);
        for x in [0u32, 0, MAX_RECORD + 1, 0] {
            v.extend_from_slice(&x.to_le_bytes());
        }
        let (_, err) = read_all(&v);
        let err = err.unwrap();
        assert_eq!(err.kind, ErrorKind::Corrupt);
        assert_eq!(
            err.message,
            "captured length 1048577 is larger than any packet (limit 1048576); \
             the capture is damaged from this record on"
        );
        assert_eq!((err.record, err.offset), (Some(1), Some(24)));
    }

    fn block(order: Order, kind: u32, body: &[u8]) -> Vec<u8> {
        let total = (12 + body.len()) as u32;
        let put = |v: &mut Vec<u8>, x: u32| match order {
            Order::Little => v.extend_from_slice(&x.to_le_bytes()),
            Order::Big => v.extend_from_slice(&x.to_be_bytes()),
        };
        let mut v = Vec::new();
        put(&mut v, kind);
        put(&mut v, total);
        v.extend_from_slice(body);
        put(&mut v, total);
        v
    }

    fn shb(order: Order) -> Vec<u8> {
        let mut body = Vec::new();
        match order {
            Order::Little => body.extend_from_slice(&PCAPNG_BOM.to_le_bytes()),
            Order::Big => body.extend_from_slice(&PCAPNG_BOM.to_be_bytes()),
        }
        body.extend_from_slice(&[0, 1, 0, 0]);
        body.extend_from_slice(&[0xFF; 8]);
        block(order, PCAPNG_SHB, &body)
    }

    fn idb_le(linktype: u16, options: &[u8]) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&linktype.to_le_bytes());
        body.extend_from_slice(&[0, 0]);
        body.extend_from_slice(&0u32.to_le_bytes());
        body.extend_from_slice(options);
        block(Order::Little, PCAPNG_IDB, &body)
    }

    fn epb_le(if_id: u32, units: u64, data: &[u8]) -> Vec<u8> {
        let mut body = Vec::new();
        for x in [
            if_id,
            (units >> 32) as u32,
            units as u32,
            data.len() as u32,
            data.len() as u32,
        ] {
            body.extend_from_slice(&x.to_le_bytes());
        }
        body.extend_from_slice(data);
        while body.len() % 4 != 0 {
            body.push(0);
        }
        block(Order::Little, PCAPNG_EPB, &body)
    }

    #[test]
    fn pcapng_interfaces_resolutions_and_skipped_blocks() {
        let mut v = shb(Order::Little);
        v.extend(idb_le(1, &[]));
        // if_tsresol = 9 (ns), if_tsoffset = 2 s
        let mut opts = vec![9, 0, 1, 0, 9, 0, 0, 0, 14, 0, 8, 0];
        opts.extend_from_slice(&2i64.to_le_bytes());
        opts.extend_from_slice(&[0, 0, 0, 0]);
        v.extend(idb_le(101, &opts));
        v.extend(block(Order::Little, 0x0000_0005, &[1, 2, 3, 4])); // statistics: skipped
        let first = v.len() as u64;
        v.extend(epb_le(0, 3_000_001, b"eth"));
        v.extend(epb_le(1, 5, b"raw!"));
        let (frames, err) = read_all(&v);
        assert_eq!(err, None);
        assert_eq!(frames[0], (3_000_001_000, 1, b"eth".to_vec(), 3, 1, first));
        assert_eq!(frames[1].0, 2_000_000_005);
        assert_eq!(frames[1].1, 101);
        assert_eq!(frames[1].4, 2);
    }

    #[test]
    fn pcapng_big_endian_section() {
        let mut v = shb(Order::Big);
        let mut body = Vec::new();
        body.extend_from_slice(&1u16.to_be_bytes());
        body.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        v.extend(block(Order::Big, PCAPNG_IDB, &body));
        let mut body = Vec::new();
        for x in [0u32, 0, 1_000_000, 4, 60] {
            body.extend_from_slice(&x.to_be_bytes());
        }
        body.extend_from_slice(b"data");
        v.extend(block(Order::Big, PCAPNG_EPB, &body));
        let (frames, err) = read_all(&v);
        assert_eq!(err, None);
        assert_eq!(frames[0].0, 1_000_000_000);
        assert_eq!(frames[0].2, b"data");
        assert_eq!(frames[0].3, 60);
    }

    #[test]
    fn pcapng_errors_are_located() {
        let mut v = shb(Order::Little);
        v.extend(idb_le(1, &[]));
        let at = v.len() as u64;
        v.extend(epb_le(3, 0, b"x"));
        let (_, err) = read_all(&v);
        assert_eq!(
            err,
            Some(ReadError::input(
                "packet refers to interface 3, but only 1 are described",
                Some(1),
                Some(at)
            ))
        );
        // cut the packet block short: truncated, located at its start
        let (_, err) = read_all(&v[..v.len() - 2]);
        let err = err.unwrap();
        assert_eq!(err.kind, ErrorKind::Truncated);
        assert_eq!((err.record, err.offset), (Some(1), Some(at)));
        // trailer length disagrees
        let mut bad = v.clone();
        let n = bad.len();
        bad[n - 4] ^= 4;
        let (_, err) = read_all(&bad);
        assert!(err.unwrap().message.starts_with("block lengths disagree"));
        // impossible length
        let mut bad = v.clone();
        bad[at as usize + 4] = 13;
        let (_, err) = read_all(&bad);
        assert_eq!(
            err.unwrap().message,
            "block of type 0x00000006 has an impossible length 13; \
             the capture is damaged from this block on"
        );
    }

    #[test]
    fn option_past_its_block_names_its_offset() {
        let mut v = shb(Order::Little);
        let at = v.len() as u64;
        v.extend(idb_le(1, &[9, 0, 200, 0]));
        let (_, err) = read_all(&v);
        assert_eq!(
            err,
            Some(ReadError::input(
                "option 9 runs past its block",
                None,
                Some(at + 16)
            ))
        );
    }

    #[test]
    fn resolution_byte_powers_of_two_and_ten() {
        assert_eq!(units_per_second(6), 1_000_000);
        assert_eq!(units_per_second(9), 1_000_000_000);
        assert_eq!(units_per_second(0x80 | 10), 1024);
        assert_eq!(units_per_second(0xFF), 1 << 63);
        assert_eq!(units_per_second(0x7F), 10u64.pow(18));
    }

    /// A reader that hands out one byte at a time: the window must refill across
    /// every boundary exactly as a large read would.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() || buf.is_empty() {
                return Ok(0);
            }
            buf[0] = self.0[0];
            self.0 = &self.0[1..];
            Ok(1)
        }
    }

    #[test]
    fn short_reads_give_the_same_frames() {
        let mut v = pcap_header(PCAP_MAGIC_US, 2, 65535, 1);
        for i in 0..50u32 {
            pcap_record(&mut v, i, i, &vec![i as u8; i as usize], i);
        }
        let mut reader = Reader::open(Trickle(&v)).unwrap();
        let mut n = 0;
        while let Some(f) = reader.next_frame().unwrap() {
            assert_eq!(f.data.len() as u64, n);
            n += 1;
        }
        assert_eq!(n, 50);
    }
}
