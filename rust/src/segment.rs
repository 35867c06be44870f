//! One decoded TCP segment: the interface between `decode` (which produces it
//! from a captured frame) and `tracker` (which consumes it). Mirrors
//! `tcplens.packets.decode.Segment4` field for field.

#![forbid(unsafe_code)]

/// An IP address as captured: 4 bytes (IPv4) or 16 bytes (IPv6), kept raw so
/// keying a flow costs no formatting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Addr {
    V4([u8; 4]),
    V6([u8; 16]),
}

/// One TCP segment as seen on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub src: Addr,
    pub dst: Addr,
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    /// TCP flag byte (FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10, URG 0x20, ECE 0x40, CWR 0x80).
    pub flags: u8,
    pub window: u16,
    /// TCP payload bytes, from the IP length fields (not the captured length).
    pub payload: u32,
    /// IP bytes (header + payload), Zeek's `*_ip_bytes`.
    pub ip_len: u32,
    /// The encapsulation chain it came through, interned (`encap::intern`,
    /// 0: none). Added for issue 15: part of the flow key, so the same
    /// 4-tuple in two tunnels or VLANs is two connections (as Zeek >= 8.0 does with
    /// `policy/frameworks/conn_key/vlan_fivetuple.zeek`; its default key is the 5-tuple).
    pub tunnel: u32,
    /// The TCP checksum was checked and is wrong (only with
    /// `DecodeStats::check_checksums`, `pcap --check-checksums`). Added for
    /// issue 15: Zeek records such a segment as history `C`/`c` and nothing else.
    pub bad_checksum: bool,
    /// The payload was not captured whole (snapshot length): Zeek's reassembler
    /// skips it (`truncated_tcp_payload`), so its ACK reveals a content gap.
    pub payload_cut: bool,
}

/// A segment with where and when it was captured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Packet {
    /// 1-based record (frame) number in the capture, as Wireshark numbers frames.
    pub record: u64,
    /// Capture time in nanoseconds since the epoch (integer, as `Frame.ts_ns`).
    /// i128, not i64 (changed by R1): a pcapng timestamp scaled by `if_tsresol`
    /// and shifted by `if_tsoffset` can leave i64, and Python's integers don't overflow.
    pub ts_ns: i128,
    /// Length on the wire (`Frame.wire_len`), what the tracker is fed as `frame_len`.
    pub frame_len: u32,
    pub seg: Segment,
}

impl Packet {
    /// Seconds since the epoch exactly as Python's `Frame.ts` computes it (`ts_ns / 1e9`).
    pub fn ts(&self) -> f64 {
        // Any timestamp until 2262 fits in i64 nanoseconds, whose conversion is one
        // instruction (i128's is a library call, 2 % of the tracking thread); both
        // round the same integer to the nearest double, so the result is the same.
        let ns = match i64::try_from(self.ts_ns) {
            Ok(ns) => ns as f64,
            Err(_) => wide(self.ts_ns),
        };
        ns / 1e9
    }
}

/// Out of line: inlined, the compiler turns the two conversions into a select
/// and calls the library routine for every packet anyway.
#[cold]
#[inline(never)]
fn wide(ns: i128) -> f64 {
    ns as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ts_ns: i128) -> Packet {
        let a = Addr::V4([0; 4]);
        Packet {
            record: 1,
            ts_ns,
            frame_len: 0,
            seg: Segment {
                src: a,
                dst: a,
                sport: 0,
                dport: 0,
                seq: 0,
                ack: 0,
                flags: 0,
                window: 0,
                payload: 0,
                ip_len: 0,
                tunnel: 0,
                bad_checksum: false,
                payload_cut: false,
            },
        }
    }

    /// The i64 shortcut gives the double the i128 conversion gives, at the
    /// edges where a double can no longer hold every integer, and past i64.
    #[test]
    fn seconds_are_those_of_the_exact_conversion() {
        let mut cases: Vec<i128> = vec![0, 1, -1, 1_700_000_000_123_456_789];
        for shift in 52..64 {
            for d in -3..=3 {
                cases.push((1i128 << shift) + d);
                cases.push(-(1i128 << shift) + d);
            }
        }
        cases.extend([
            i64::MAX as i128,
            i64::MIN as i128,
            i64::MAX as i128 + 1,
            -(1i128 << 100),
        ]);
        for ns in cases {
            assert_eq!(at(ns).ts().to_bits(), (ns as f64 / 1e9).to_bits(), "{ns}");
        }
    }
}
