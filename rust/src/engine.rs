//! The per-packet loop: read a record, check its link type, decode it down to
//! TCP, feed the tracker. What `tcplens.packets.tracker.reconstruct` does,
//! with the same counts (`CaptureSummary.frames`, `DecodeStats`), the same
//! error for a link type we cannot decode, and the same ending for a capture
//! cut short: every connection so far is finished, then the error.

#![forbid(unsafe_code)]

use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
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
pub struct Capture<R> {
    pub packets: Packets<R>,
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

impl<R: Read> Capture<R> {
    pub fn new(src: R, cfg: TrackerConfig) -> Self {
        let mut packets = Packets::new(src);
        packets.decoder.stats.check_checksums = cfg.check_checksums;
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
