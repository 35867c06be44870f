//! The per-packet loop: read a record, check its link type, decode it down to
//! TCP, feed the tracker. What `tcplens.packets.tracker.reconstruct` does,
//! with the same counts (`CaptureSummary.frames`, `DecodeStats`), the same
//! error for a link type we cannot decode, and the same ending for a capture
//! cut short: every connection so far is finished, then the error.
//!
//! The packets come from a [`PacketSource`]: [`Packets`] decodes each frame
//! when it is asked for, [`Prefetched`] has a thread of its own decode chunks
//! ahead (a file on two cores: reading and decoding overlap tracking). Both
//! hand out the same packets, counts and errors (`cargo test` holds them equal).

#![forbid(unsafe_code)]

use std::any::Any;
use std::io::{self, Read};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;

use crate::decode::{decode, linktype_name, DecodeStats, Link};
use crate::flow::Connection;
use crate::reader::{Frame, ReadError, Reader};
use crate::segment::{Packet, Segment};
use crate::tracker::{Tracker, TrackerConfig};

/// A frame's place and size in the capture (owned: outlives the reader's window).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameInfo {
    pub record: u64,
    pub offset: u64,
    pub ts_ns: i128,
    pub linktype: u16,
    pub wire_len: u32,
    pub interface: u32,
    pub captured: u32,
}

/// Link-type check and decoding of frames from any source (a capture file, or
/// live frames handed over one by one), with the counts `reconstruct` keeps.
#[derive(Debug, Default)]
pub struct Decoder {
    /// Frames seen (`CaptureSummary.frames`), including those that carry no TCP.
    pub frames: u64,
    pub stats: DecodeStats,
    /// The last link type seen and its decoder: captures rarely mix link types.
    link: Option<(u16, Link)>,
}

impl Decoder {
    /// The TCP segment a frame carries, if any; a link type we cannot decode is
    /// an error located at the frame, as `reconstruct` raises it.
    pub fn frame(&mut self, frame: &Frame<'_>) -> Result<Option<Segment>, ReadError> {
        self.frames += 1;
        let link = match self.link {
            Some((lt, link)) if lt == frame.linktype => link,
            _ => {
                let Some(link) = Link::from_linktype(frame.linktype) else {
                    return Err(ReadError::input(
                        format!(
                            "link type {} ({}) is not supported; tcplens reads Ethernet, \
                             Linux SLL/SLL2, BSD NULL/LOOP, raw IP, PPP, Cisco HDLC, FDDI \
                             and IEEE 802.11",
                            frame.linktype,
                            linktype_name(frame.linktype)
                        ),
                        Some(frame.record),
                        Some(frame.offset),
                    ));
                };
                self.link = Some((frame.linktype, link));
                link
            }
        };
        Ok(decode(link, frame.data, &mut self.stats))
    }
}

/// Decoded packets of one capture, in file order.
pub struct Packets<R> {
    reader: Reader<R>,
    pub decoder: Decoder,
    /// Record number and byte offset of the frame handed out last (where a
    /// fault while decoding or tracking it is located).
    pub last: (u64, u64),
}

impl<R: Read> Packets<R> {
    /// Reads nothing yet: a file that is not a capture fails at the first packet.
    pub fn new(src: R) -> Self {
        Packets {
            reader: Reader::new(src),
            decoder: Decoder::default(),
            last: (0, 0),
        }
    }

    /// The input, e.g. to ask it why a read failed.
    pub fn source_mut(&mut self) -> &mut R {
        self.reader.source_mut()
    }

    /// Bytes of input consumed so far.
    pub fn position(&self) -> u64 {
        self.reader.position()
    }

    /// The next frame and its TCP segment, if it carries one.
    pub fn next_decoded(&mut self) -> Result<Option<(FrameInfo, Option<Segment>)>, ReadError> {
        let Some(frame) = self.reader.next_frame()? else {
            return Ok(None);
        };
        self.last = (frame.record, frame.offset);
        let info = FrameInfo {
            record: frame.record,
            offset: frame.offset,
            ts_ns: frame.ts_ns,
            linktype: frame.linktype,
            wire_len: frame.wire_len,
            interface: frame.interface,
            captured: frame.data.len() as u32,
        };
        let seg = self.decoder.frame(&frame)?;
        Ok(Some((info, seg)))
    }

    /// The next TCP packet; frames without one are only counted.
    pub fn next_packet(&mut self) -> Result<Option<Packet>, ReadError> {
        while let Some((info, seg)) = self.next_decoded()? {
            if let Some(seg) = seg {
                return Ok(Some(Packet {
                    record: info.record,
                    ts_ns: info.ts_ns,
                    frame_len: info.wire_len,
                    seg,
                }));
            }
        }
        Ok(None)
    }
}

/// Where [`Capture`] takes its packets from: decoded here, frame by frame
/// ([`Packets`]), or decoded ahead on a thread of their own ([`Prefetched`]).
pub trait PacketSource {
    /// The next TCP packet; frames without one are only counted.
    fn next_packet(&mut self) -> Result<Option<Packet>, ReadError>;
    /// Record number and byte offset of the frame handed out last.
    fn last(&self) -> (u64, u64);
    /// Frames seen (`CaptureSummary.frames`) and the decoder's counts.
    fn counts(&self) -> (u64, &DecodeStats);
}

impl<R: Read> PacketSource for Packets<R> {
    fn next_packet(&mut self) -> Result<Option<Packet>, ReadError> {
        Packets::next_packet(self)
    }

    fn last(&self) -> (u64, u64) {
        self.last
    }

    fn counts(&self) -> (u64, &DecodeStats) {
        (self.decoder.frames, &self.decoder.stats)
    }
}

/// Packets per chunk handed from the decoding thread to the tracking one:
/// large enough that handing over costs nothing per packet (a chunk is 224 KiB).
const CHUNK_PACKETS: usize = 2048;
/// Chunks the decoding thread may finish ahead of the tracking one (with the
/// batches `py_capture` lets wait, what keeps three threads on two cores from
/// waiting for each other; see `py_capture::AHEAD`).
const CHUNKS_AHEAD: usize = 8;

/// A packet with the byte offset of its frame (where a fault is located).
#[derive(Clone, Copy)]
struct Decoded {
    pkt: Packet,
    offset: u64,
}

/// How the decoding thread's input stood after a chunk.
enum Ending {
    More,
    End,
    Failed(ReadError),
    /// Decoding panicked at this (record, offset): re-raised on the tracking
    /// thread, where `Capture::run`'s caller catches it, as if it had happened there.
    Panicked(Box<dyn Any + Send>, (u64, u64)),
}

/// One chunk of decoded packets, with the decoder's counts and its last frame
/// (TCP or not) as they stood after it.
struct Chunk {
    packets: Vec<Decoded>,
    frames: u64,
    stats: DecodeStats,
    last: (u64, u64),
    ending: Ending,
}

/// Packets read and decoded by a thread of their own, so that reading and
/// decoding the next chunk overlaps tracking this one. (`perf` of
/// `pcap --json` on two cores: the kernel's copy of the file, reading
/// records and decoding took about a third of the thread that did all three
/// with tracking, while the second core idled half of the time.)
/// The packets, their order, the errors and the counts at the end are those
/// of [`Packets`]; before the end the counts are those after the chunk being
/// taken (up to `CHUNK_PACKETS` TCP packets ahead), and `last` is the packet
/// handed out last, until the end or an error moves it where `Packets` has it.
pub struct Prefetched {
    chunks: Receiver<Chunk>,
    /// Used vectors going back to the decoding thread to be filled again.
    spare: SyncSender<Vec<Decoded>>,
    current: Vec<Decoded>,
    at: usize,
    ending: Option<Ending>,
    last: (u64, u64),
    /// The decoder's last frame after the chunk being taken.
    chunk_last: (u64, u64),
    frames: u64,
    stats: DecodeStats,
    /// The input has ended cleanly: `next_packet` keeps answering `Ok(None)`.
    over: bool,
}

impl Prefetched {
    /// Start decoding `packets` on a new thread named `name`. The thread ends
    /// at the end of the input, at its first error, or once this is dropped.
    pub fn spawn<R: Read + Send + 'static>(packets: Packets<R>, name: &str) -> io::Result<Self> {
        let (tx, rx) = sync_channel(CHUNKS_AHEAD);
        let (spare_tx, spare_rx) = sync_channel(CHUNKS_AHEAD + 2);
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || decode_ahead(packets, tx, spare_rx))?;
        Ok(Prefetched {
            chunks: rx,
            spare: spare_tx,
            current: Vec::new(),
            at: 0,
            ending: None,
            last: (0, 0),
            chunk_last: (0, 0),
            frames: 0,
            stats: DecodeStats::default(),
            over: false,
        })
    }
}

/// A vector sent back by the thread that used it, emptied, or a new one: each
/// thread frees what it allocated (a thread freeing another's memory makes
/// glibc give pages back and fault them in again).
pub fn reused<T>(spare: &Receiver<Vec<T>>, capacity: usize) -> Vec<T> {
    match spare.try_recv() {
        Ok(mut used) => {
            used.clear();
            used
        }
        Err(_) => Vec::with_capacity(capacity),
    }
}

/// The decoding thread: chunks until the input ends or fails, or nobody listens.
fn decode_ahead<R: Read>(
    mut packets: Packets<R>,
    tx: SyncSender<Chunk>,
    spare: Receiver<Vec<Decoded>>,
) {
    loop {
        let mut chunk = reused(&spare, CHUNK_PACKETS);
        let filled = catch_unwind(AssertUnwindSafe(|| {
            while chunk.len() < CHUNK_PACKETS {
                match packets.next_packet() {
                    Ok(Some(pkt)) => chunk.push(Decoded {
                        pkt,
                        offset: packets.last.1,
                    }),
                    Ok(None) => return Ending::End,
                    Err(err) => return Ending::Failed(err),
                }
            }
            Ending::More
        }));
        let ending = filled.unwrap_or_else(|payload| Ending::Panicked(payload, packets.last));
        let more = matches!(ending, Ending::More);
        let sent = tx.send(Chunk {
            packets: chunk,
            frames: packets.decoder.frames,
            stats: packets.decoder.stats.clone(),
            last: packets.last,
            ending,
        });
        if sent.is_err() || !more {
            return;
        }
    }
}

impl PacketSource for Prefetched {
    fn next_packet(&mut self) -> Result<Option<Packet>, ReadError> {
        loop {
            if let Some(d) = self.current.get(self.at) {
                self.at += 1;
                self.last = (d.pkt.record, d.offset);
                return Ok(Some(d.pkt));
            }
            if self.over {
                return Ok(None);
            }
            match self.ending.take() {
                // a chunk used up, or none yet: the next one
                Some(Ending::More) | None => {}
                Some(Ending::End) => {
                    self.over = true;
                    self.last = self.chunk_last;
                    return Ok(None);
                }
                Some(Ending::Failed(err)) => {
                    self.over = true;
                    self.last = self.chunk_last;
                    return Err(err);
                }
                Some(Ending::Panicked(payload, at)) => {
                    self.over = true;
                    self.last = at;
                    resume_unwind(payload);
                }
            }
            let used = std::mem::take(&mut self.current);
            if used.capacity() > 0 {
                let _ = self.spare.try_send(used);
            }
            let Ok(chunk) = self.chunks.recv() else {
                self.over = true;
                panic!("the decoding thread ended early");
            };
            self.current = chunk.packets;
            self.at = 0;
            self.frames = chunk.frames;
            self.stats = chunk.stats;
            self.chunk_last = chunk.last;
            self.ending = Some(chunk.ending);
        }
    }

    fn last(&self) -> (u64, u64) {
        self.last
    }

    fn counts(&self) -> (u64, &DecodeStats) {
        (self.frames, &self.stats)
    }
}

/// How far [`Capture::run`] got.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Enough connections finished for a batch; more input remains.
    More,
    /// The input ended cleanly and every connection has been finished.
    End,
    /// The input stopped being readable. For a truncated or corrupt capture
    /// every connection so far has been finished first (as `reconstruct` does);
    /// for any other input error nothing more is handed out.
    Failed(ReadError),
}

/// A whole capture on its way to connections: packets in, finished connections out.
pub struct Capture<S> {
    pub packets: S,
    pub tracker: Tracker,
    /// Connections handed out so far (`CaptureSummary.connections`).
    pub connections: u64,
    /// Set by whoever waits for this capture on another thread and gives up:
    /// `run` then stops within a few thousand packets, as if the input ended.
    pub cancel: Arc<AtomicBool>,
    ended: bool,
}

/// Packets between two looks at `Capture::cancel`.
const CANCEL_CHECK: u32 = 4096;

impl<R: Read> Capture<Packets<R>> {
    pub fn new(src: R, cfg: TrackerConfig) -> Self {
        let mut packets = Packets::new(src);
        packets.decoder.stats.check_checksums = cfg.check_checksums;
        Capture::with_source(packets, cfg)
    }
}

impl<S: PacketSource> Capture<S> {
    /// Track the packets of `packets`. (Whether its decoder checks checksums is
    /// set on it before, as [`Capture::new`] sets it from `cfg`.)
    pub fn with_source(packets: S, cfg: TrackerConfig) -> Self {
        Capture {
            packets,
            tracker: Tracker::new(cfg),
            connections: 0,
            cancel: Arc::new(AtomicBool::new(false)),
            ended: false,
        }
    }

    /// Feed packets until at least `batch` connections have finished into `out`
    /// or the input stops. After `End` or `Failed`, returns `End` with nothing.
    pub fn run(&mut self, batch: usize, out: &mut Vec<Connection>) -> Step {
        if self.ended {
            return Step::End;
        }
        let before = out.len();
        let mut until_check = CANCEL_CHECK;
        let step = loop {
            until_check -= 1;
            if until_check == 0 {
                until_check = CANCEL_CHECK;
                if self.cancel.load(Ordering::Relaxed) {
                    self.ended = true;
                    break Step::End;
                }
            }
            if self.tracker.swept_pending() {
                // a sweep's connections, a batch at a time, before the next packet
                let room = batch.saturating_sub(out.len() - before).max(1);
                self.tracker.finish_swept(out, room);
                if out.len() - before >= batch {
                    break Step::More;
                }
                continue;
            }
            match self.packets.next_packet() {
                Ok(Some(pkt)) => {
                    self.tracker.feed_lazily(&pkt, out);
                    if out.len() - before >= batch {
                        break Step::More;
                    }
                }
                Ok(None) => {
                    // the connections still open, a batch at a time (a SYN flood leaves
                    // half a million); the reader keeps answering Ok(None) (edit by R2)
                    if self.tracker.finish_some(out, batch.max(1)) {
                        self.ended = true;
                        break Step::End;
                    }
                    break Step::More;
                }
                Err(err) => {
                    if err.kind.keeps_what_came_before() {
                        self.tracker.finish(out);
                    }
                    self.ended = true;
                    break Step::Failed(err);
                }
            }
        };
        self.connections += (out.len() - before) as u64;
        step
    }
}

/// Run any bytes through the reader and decoder and check what must hold
/// whatever the input: no panic, a bounded number of frames, every frame inside
/// the input, records numbered 1, 2, 3..., and every decoded frame counted once.
/// The fuzz target (`rust/fuzz`) and the corpus replay (`rust/tests/corpus.rs`)
/// both call this, so a finding and its regression test check the same things.
pub fn check_input(data: &[u8]) {
    let mut packets = Packets::new(data);
    let mut last = 0u64;
    let outcome = loop {
        match packets.next_decoded() {
            Ok(Some((info, _seg))) => {
                assert_eq!(info.record, last + 1, "records are numbered without gaps");
                last = info.record;
                assert!(
                    info.offset < data.len() as u64,
                    "a frame starts inside the input"
                );
                assert!(
                    info.captured as usize <= data.len(),
                    "a frame lies inside the input"
                );
                // every record takes at least 12 bytes of input: the loop ends
                assert!(last * 12 <= data.len() as u64);
            }
            Ok(None) => break None,
            Err(err) => break Some(err),
        }
    };
    let s = packets.decoder.stats;
    assert_eq!(
        s.tcp + s.fragments + s.non_ip + s.non_tcp + s.malformed,
        s.frames
    );
    let refused = outcome
        .as_ref()
        .is_some_and(|e| e.message.starts_with("link type "));
    assert_eq!(s.frames + u64::from(refused), packets.decoder.frames);
    assert_eq!(packets.decoder.frames, last + u64::from(refused));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capture(linktype: u32, frames: &[&[u8]]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&0xA1B2_C3D4u32.to_le_bytes());
        v.extend_from_slice(&2u16.to_le_bytes());
        v.extend_from_slice(&4u16.to_le_bytes());
        for x in [0u32, 0, 65535, linktype] {
            v.extend_from_slice(&x.to_le_bytes());
        }
        for (i, f) in frames.iter().enumerate() {
            for x in [i as u32, 0, f.len() as u32, f.len() as u32] {
                v.extend_from_slice(&x.to_le_bytes());
            }
            v.extend_from_slice(f);
        }
        v
    }

    /// IPv4 + TCP, 40 bytes, a different 4-tuple for each `i`.
    fn ipv4_tcp(i: u32) -> Vec<u8> {
        let mut f = vec![0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0];
        f.extend_from_slice(&[10, 0, (i >> 8) as u8, i as u8, 10, 1, 0, 1]);
        f.extend_from_slice(&(1024 + (i % 60_000) as u16).to_be_bytes());
        f.extend_from_slice(&80u16.to_be_bytes());
        f.extend_from_slice(&i.to_be_bytes()); // seq
        f.extend_from_slice(&[0, 0, 0, 0, 0x50, 0x02, 0xFA, 0xF0, 0, 0, 0, 0]);
        f
    }

    /// Everything a packet source hands out, in order, how it ended, the counts
    /// and the frame `last` names then.
    type Drained = (
        Vec<(Packet, (u64, u64))>,
        Result<(), ReadError>,
        u64,
        DecodeStats,
        (u64, u64),
    );

    fn drain(src: &mut impl PacketSource) -> Drained {
        let mut got = Vec::new();
        let end = loop {
            match src.next_packet() {
                Ok(Some(p)) => got.push((p, src.last())),
                Ok(None) => break Ok(()),
                Err(err) => break Err(err),
            }
        };
        let (frames, stats) = src.counts();
        (got, end, frames, stats.clone(), src.last())
    }

    /// Decoded here and decoded ahead on a thread of its own, with the same result.
    fn same_both_ways(bytes: &[u8]) -> Drained {
        let here = drain(&mut Packets::new(bytes));
        let packets = Packets::new(std::io::Cursor::new(bytes.to_vec()));
        let mut ahead = Prefetched::spawn(packets, "test-decode").unwrap();
        let there = drain(&mut ahead);
        assert_eq!(here.0.len(), there.0.len());
        assert!(here.0 == there.0, "the same packets at the same places");
        assert_eq!(here.1, there.1);
        assert_eq!((here.2, &here.3), (there.2, &there.3));
        assert_eq!(here.4, there.4, "the same last frame");
        if here.1.is_ok() {
            // asked again after the end, both keep answering "no more"
            assert_eq!(ahead.next_packet(), Ok(None));
        }
        here
    }

    /// Several chunks of packets, frames without TCP among them (the last frame
    /// too): the thread that decodes ahead hands out what decoding here gives,
    /// located alike, with the same counts and the same error for a capture cut
    /// inside a record; also when the last chunk is full and the end comes alone.
    #[test]
    fn packets_decoded_ahead_are_those_decoded_here() {
        let n = 3 * CHUNK_PACKETS as u32 + 77;
        let frames: Vec<Vec<u8>> = (0..n)
            .map(|i| {
                if i % 7 == 3 || i == n - 1 {
                    vec![0x45]
                } else {
                    ipv4_tcp(i)
                }
            })
            .collect();
        let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
        let whole = capture(101, &refs);
        let here = same_both_ways(&whole);
        assert!(here.1.is_ok() && here.0.len() > 2 * CHUNK_PACKETS);
        assert_eq!(
            here.4 .0,
            u64::from(n),
            "the last frame, which carries no TCP"
        );
        let mut cut = whole.clone();
        cut.truncate(whole.len() - 30); // the last record loses its tail
        assert!(same_both_ways(&cut).1.is_err());
        let exact: Vec<Vec<u8>> = (0..2 * CHUNK_PACKETS as u32).map(ipv4_tcp).collect();
        let refs: Vec<&[u8]> = exact.iter().map(Vec::as_slice).collect();
        assert_eq!(
            same_both_ways(&capture(101, &refs)).0.len(),
            2 * CHUNK_PACKETS
        );
        // a link type nobody decodes: the error at the first frame, both ways
        let refused = same_both_ways(&capture(147, &refs));
        assert!(refused.0.is_empty() && refused.1.is_err());
        assert_eq!(refused.4, (1, 24));
    }

    /// A panic while decoding ahead reaches the tracking thread (whose caller
    /// catches it, as it catches one there), located at the last frame handed out.
    #[test]
    fn a_panic_while_decoding_ahead_is_raised_where_the_packets_are_taken() {
        struct Fails(std::io::Cursor<Vec<u8>>);
        impl Read for Fails {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                match self.0.read(buf)? {
                    0 => panic!("deliberate, at the end of the input"),
                    n => Ok(n),
                }
            }
        }
        let frames: Vec<Vec<u8>> = (0..100).map(ipv4_tcp).collect();
        let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
        let bytes = capture(101, &refs);
        let packets = Packets::new(Fails(std::io::Cursor::new(bytes.clone())));
        let mut ahead = Prefetched::spawn(packets, "test-panic").unwrap();
        let mut got = 0;
        let caught = catch_unwind(AssertUnwindSafe(|| {
            while ahead.next_packet().unwrap().is_some() {
                got += 1;
            }
        }));
        assert!(caught.is_err(), "the panic came through");
        assert_eq!(got, 100, "every packet before it was handed out");
        let last_offset = (bytes.len() - (16 + 40)) as u64;
        assert_eq!(ahead.last(), (100, last_offset));
    }

    /// Endless input: dropping the source stops the thread that decodes it.
    #[test]
    fn a_dropped_source_stops_its_thread() {
        struct Endless {
            header: Vec<u8>,
            record: Vec<u8>,
            at: usize,
            reads: Arc<std::sync::atomic::AtomicU64>,
        }
        impl Read for Endless {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                self.reads.fetch_add(1, Ordering::Relaxed);
                let mut n = 0;
                while n < buf.len() {
                    let src = if self.at < self.header.len() {
                        &self.header[self.at..]
                    } else {
                        let at = (self.at - self.header.len()) % self.record.len();
                        &self.record[at..]
                    };
                    let k = src.len().min(buf.len() - n);
                    buf[n..n + k].copy_from_slice(&src[..k]);
                    n += k;
                    self.at += k;
                }
                Ok(n)
            }
        }
        let one = capture(101, &[&ipv4_tcp(1)]);
        let reads = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let src = Endless {
            header: one[..24].to_vec(),
            record: one[24..].to_vec(),
            at: 0,
            reads: Arc::clone(&reads),
        };
        let mut ahead = Prefetched::spawn(Packets::new(src), "test-endless").unwrap();
        for _ in 0..10_000 {
            assert!(ahead.next_packet().unwrap().is_some());
        }
        drop(ahead);
        // the thread ends, dropping its input (and its clone of `reads`)
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while Arc::strong_count(&reads) > 1 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(
            Arc::strong_count(&reads),
            1,
            "the decoding thread still runs"
        );
    }

    #[test]
    fn unsupported_link_type_is_one_located_error() {
        let bytes = capture(147, &[b"user"]);
        let mut p = Packets::new(&bytes[..]);
        let err = p.next_packet().unwrap_err();
        assert_eq!(
            err.message,
            "link type 147 (unknown) is not supported; tcplens reads Ethernet, \
             Linux SLL/SLL2, BSD NULL/LOOP, raw IP, PPP, Cisco HDLC, FDDI and IEEE 802.11"
        );
        assert_eq!((err.record, err.offset), (Some(1), Some(24)));
        assert_eq!(p.decoder.frames, 1);
        assert_eq!(p.decoder.stats.frames, 0);
    }

    #[test]
    fn frames_without_tcp_are_counted_and_skipped() {
        let bytes = capture(101, &[b"", b"\x45"]);
        let mut p = Packets::new(&bytes[..]);
        assert_eq!(p.next_packet().unwrap(), None);
        assert_eq!(p.decoder.frames, 2);
        assert_eq!(p.decoder.stats.malformed, 2);
    }
}
