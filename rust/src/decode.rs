//! Decode a captured frame down to the TCP header fields the tracker needs.
//!
//! The port of `tcplens.packets.decode`, held equal to it (same segments, same
//! `DecodeStats`) by `tests/packets/test_engine_reader.py`. Link layers:
//! Ethernet, Linux cooked v1 and v2 (SLL, SLL2), BSD loopback (NULL in the
//! capturing host's byte order, LOOP in network order), raw IPv4/IPv6, PPP,
//! PPPoE, Cisco HDLC, FDDI, 802.11 with or without radiotap; every layer
//! between them and the innermost IP header (VLAN tags, MPLS, tunnels...) is
//! decoded by `encap.rs`, and an IP payload that is a tunnel loops back there.
//! IPv4 with options, IPv6 with its extension header chain. Fragments are
//! counted, not reassembled.
//!
//! Every function reads a borrowed `&[u8]` through bounds-checked `get`s: a
//! short frame is a `malformed` count, never a panic. Byte counts come from the
//! IP length fields, not from how much was captured, as tshark and Zeek do.
//!
//! Wire layouts (network byte order), with the header each comes from:
//! ```text
//! Ethernet II    u8 dst[6]; u8 src[6]; u16 ethertype                 linux/if_ether.h
//! 802.1Q/ad tag  u16 TCI; u16 inner ethertype (after the TPID)        linux/if_vlan.h
//! SLL            u16 pkttype, hatype, halen; u8 addr[8]; u16 protocol LINKTYPE_LINUX_SLL
//! SLL2           u16 protocol, reserved; u32 ifindex; u16 hatype; u8 pkttype, halen; u8 addr[8]
//! NULL / LOOP    u32 address family (host order / network order)
//! IPv4           u8 ver_ihl, tos; u16 total_len, id, flags_frag; u8 ttl, proto; u16 csum;
//!                u8 src[4], dst[4]                                    RFC 791
//! IPv6           u32 ver_tc_flow; u16 payload_len; u8 next, hops; u8 src[16], dst[16]  RFC 8200
//! IPv6 ext       u8 next; u8 hdr_ext_len (8-octet units; AH: 4-octet units minus 2)
//! IPv6 fragment  u8 next, reserved; u16 offset_flags; u32 id
//! TCP            u16 sport, dport; u32 seq, ack; u8 data_offset, flags; u16 window, csum, urg
//! ```

#![forbid(unsafe_code)]

use std::collections::BTreeMap;

use crate::encap::{self, IpPayload, Layer, Stop, Unsupported};
use crate::segment::{Addr, Segment};

/// What the decoder saw besides TCP, so nothing is silently dropped
/// (`tcplens.packets.decode.DecodeStats`, field for field).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DecodeStats {
    pub frames: u64,
    pub tcp: u64,
    pub fragments: u64,
    pub non_ip: u64,
    pub non_tcp: u64,
    pub malformed: u64,
    /// The `non_ip` frames by what they carried (`DecodeStats.unsupported`).
    pub unsupported: BTreeMap<Unsupported, u64>,
    /// A setting, not a count: validate IPv4 header and TCP checksums as Zeek
    /// does by default (`pcap --check-checksums`); see [`checksum_ok`].
    pub check_checksums: bool,
    /// IPv4 headers with a wrong checksum (the frame is dropped, as Zeek's IP
    /// analyzer drops it), UDP tunnel datagrams with one (dropped, not
    /// decapsulated: `encap::udp_checksum_bad`) plus TCP segments with one
    /// (kept, flagged).
    pub bad_checksums: u64,
}

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86DD;
const SLL_LEN: usize = 16;
const SLL2_LEN: usize = 20;
const IPV4_LEN: usize = 20;
const IPV6_LEN: usize = 40;
const IPV6_FRAG_LEN: usize = 8;
const TCP_LEN: usize = 20;
const IPPROTO_TCP: u8 = 6;
const V6_FRAGMENT: u8 = 44;
const V6_AH: u8 = 51;
/// An extension header chain longer than this is garbage.
const V6_MAX_CHAIN: usize = 16;

/// The link types we decode, by number (https://www.tcpdump.org/linktypes.html).
/// `pcap.py`'s `LINKTYPE_NAMES` gives the names used in messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    /// 0: BSD loopback, address family in the capturing host's byte order.
    Null,
    /// 1: Ethernet II, with VLAN tags.
    Ethernet,
    /// 12, 14, 101, 228, 229: raw IP, version from the first nibble.
    Raw,
    /// 108: OpenBSD loopback, address family in network order.
    Loop,
    /// 113: Linux cooked capture v1.
    Sll,
    /// 276: Linux cooked capture v2.
    Sll2,
    /// 9: PPP (address/control bytes optional).
    Ppp,
    /// 50: PPP in HDLC-like framing, or Cisco HDLC.
    PppHdlc,
    /// 51: PPPoE without its Ethernet header.
    PppEther,
    /// 10: FDDI, then 802.2 LLC.
    Fddi,
    /// 104: Cisco HDLC.
    CHdlc,
    /// 105: IEEE 802.11.
    Wifi,
    /// 127: IEEE 802.11 behind a radiotap header.
    Radiotap,
}

impl Link {
    pub fn from_linktype(linktype: u16) -> Option<Link> {
        Some(match linktype {
            0 => Link::Null,
            1 => Link::Ethernet,
            12 | 14 | 101 | 228 | 229 => Link::Raw,
            108 => Link::Loop,
            113 => Link::Sll,
            276 => Link::Sll2,
            9 => Link::Ppp,
            50 => Link::PppHdlc,
            51 => Link::PppEther,
            10 => Link::Fddi,
            104 => Link::CHdlc,
            105 => Link::Wifi,
            127 => Link::Radiotap,
            _ => return None,
        })
    }
}

/// The name of a link type in messages (`pcap.py` `LINKTYPE_NAMES`, "unknown" otherwise).
pub fn linktype_name(linktype: u16) -> &'static str {
    match linktype {
        0 => "NULL",
        1 => "ETHERNET",
        12 | 14 | 101 => "RAW",
        108 => "LOOP",
        113 => "LINUX_SLL",
        228 => "IPV4",
        229 => "IPV6",
        276 => "LINUX_SLL2",
        9 => "PPP",
        10 => "FDDI",
        50 => "PPP_HDLC",
        51 => "PPP_ETHER",
        104 => "C_HDLC",
        105 => "IEEE802_11",
        127 => "IEEE802_11_RADIOTAP",
        _ => "unknown",
    }
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// IPv4 header length in bytes: the low nibble counts 32-bit words.
pub fn ihl_bytes(ver_ihl: u8) -> usize {
    usize::from(ver_ihl & 0x0F) * 4
}

/// True for any fragment: More Fragments set, or a non-zero fragment offset.
pub fn ipv4_fragment(flags_frag: u16) -> bool {
    (flags_frag & 0x2000) != 0 || (flags_frag & 0x1FFF) != 0
}

/// TCP header length in bytes: the high nibble of byte 12 counts 32-bit words.
pub fn tcp_data_offset(byte12: u8) -> usize {
    usize::from((byte12 >> 4) & 0x0F) * 4
}

/// Offset of the network header and its ethertype, after every layer of
/// encapsulation (pushed on `layers`) down to the first IP header.
fn link(link: Link, data: &[u8], layers: &mut Vec<Layer>) -> encap::Next {
    let short = Err(Stop::Malformed);
    match link {
        Link::Ethernet => encap::ethernet(data, 0, layers),
        Link::Sll2 => {
            let Some(proto) = data.get(..SLL2_LEN).and_then(|_| be16(data, 0)) else {
                return short;
            };
            encap::ethertype(data, SLL2_LEN, proto, layers)
        }
        Link::Sll => match be16(data, 14) {
            Some(proto) => encap::ethertype(data, SLL_LEN, proto, layers),
            None => short,
        },
        Link::Loop => match be32(data, 0) {
            Some(family) => encap::family(family),
            None => short,
        },
        Link::Null => {
            // The capturing host's byte order is not recorded: the family is a
            // small number, so whichever reading is small is the right one.
            let (Some(mut family), Some(be)) = (le32(data, 0), be32(data, 0)) else {
                return short;
            };
            if family > 0xFFFF {
                family = be;
            }
            encap::family(family)
        }
        Link::Raw => encap::raw(data, 0),
        Link::Ppp => encap::ppp(data, 0, layers),
        Link::PppHdlc => encap::ppp_or_chdlc(data, layers),
        Link::PppEther => encap::pppoe(data, 0, layers),
        Link::Fddi => encap::fddi(data, layers),
        Link::CHdlc => encap::chdlc(data, 0, layers),
        Link::Wifi => encap::wifi(data, 0, layers),
        Link::Radiotap => encap::radiotap(data, layers),
    }
}

/// What an IP header led to.
enum Ip {
    Tcp(Segment),
    /// Not TCP: the payload's protocol, where it starts and ends, and the endpoints (a tunnel, maybe).
    Other(IpPayload),
    /// Counted already (fragment, malformed).
    Counted,
}

/// Decode one frame of a supported link type to its innermost TCP segment;
/// `None` (and a count in `stats`) for anything else.
pub fn decode(lt: Link, data: &[u8], stats: &mut DecodeStats) -> Option<Segment> {
    stats.frames += 1;
    // no allocation for a frame without encapsulation
    let mut layers = Vec::new();
    let mut next = link(lt, data, &mut layers);
    loop {
        let (offset, proto) = match next {
            Ok(n) => n,
            Err(Stop::Malformed) => {
                stats.malformed += 1;
                return None;
            }
            Err(Stop::Unsupported(what)) => {
                stats.non_ip += 1;
                *stats.unsupported.entry(what).or_insert(0) += 1;
                return None;
            }
            Err(Stop::BadChecksum) => {
                stats.bad_checksums += 1;
                return None;
            }
        };
        let ip = if proto == ETH_P_IP {
            ipv4(data, offset, stats)
        } else {
            ipv6(data, offset, stats)
        };
        match ip {
            Ip::Tcp(mut seg) => {
                stats.tcp += 1;
                seg.tunnel = encap::intern(&layers);
                return Some(seg);
            }
            Ip::Other(payload) => {
                match encap::ip_payload(data, &payload, stats.check_checksums, &mut layers) {
                    Some(n) => next = n,
                    None => {
                        stats.non_tcp += 1;
                        return None;
                    }
                }
            }
            Ip::Counted => return None,
        }
    }
}

fn ipv4(data: &[u8], offset: usize, st: &mut DecodeStats) -> Ip {
    let Some(h) = data.get(offset..offset + IPV4_LEN) else {
        st.malformed += 1;
        return Ip::Counted;
    };
    let ver_ihl = h[0];
    let ihl = ihl_bytes(ver_ihl);
    if (ver_ihl >> 4) != 4 || ihl < IPV4_LEN {
        st.malformed += 1;
        return Ip::Counted;
    }
    if st.check_checksums && ipv4_header_bad(data, offset, ihl) {
        st.bad_checksums += 1;
        return Ip::Counted;
    }
    if ipv4_fragment(u16::from_be_bytes([h[6], h[7]])) {
        st.fragments += 1;
        return Ip::Counted;
    }
    let src = Addr::V4([h[12], h[13], h[14], h[15]]);
    let dst = Addr::V4([h[16], h[17], h[18], h[19]]);
    let mut total = usize::from(u16::from_be_bytes([h[2], h[3]]));
    if total == 0 {
        // TSO/GRO: the NIC fills the length in later; use what was captured
        total = data.len() - offset;
    }
    if h[9] != IPPROTO_TCP {
        return Ip::Other(IpPayload {
            proto: h[9],
            at: offset + ihl,
            end: offset + total,
            src,
            dst,
        });
    }
    if total < ihl {
        st.malformed += 1;
        return Ip::Counted;
    }
    tcp(
        data,
        offset + ihl,
        src,
        dst,
        (total - ihl) as i64,
        total,
        st,
    )
    .map_or(Ip::Counted, Ip::Tcp)
}

fn ipv6(data: &[u8], offset: usize, st: &mut DecodeStats) -> Ip {
    let Some(h) = data.get(offset..offset + IPV6_LEN) else {
        st.malformed += 1;
        return Ip::Counted;
    };
    if (h[0] >> 4) != 6 {
        st.malformed += 1;
        return Ip::Counted;
    }
    let mut plen = usize::from(u16::from_be_bytes([h[4], h[5]]));
    if plen == 0 {
        // jumbogram or TSO: fall back to the captured length
        plen = data.len() - offset - IPV6_LEN;
    }
    let mut nxt = h[6];
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    src.copy_from_slice(&h[8..24]);
    dst.copy_from_slice(&h[24..40]);
    let (src, dst) = (Addr::V6(src), Addr::V6(dst));
    let mut pos = offset + IPV6_LEN;
    // May go negative on a lying chain: then the TCP header check calls it malformed.
    let mut remaining = plen as i64;
    for _ in 0..V6_MAX_CHAIN {
        match nxt {
            IPPROTO_TCP => {
                return tcp(data, pos, src, dst, remaining, plen + IPV6_LEN, st)
                    .map_or(Ip::Counted, Ip::Tcp)
            }
            V6_FRAGMENT => {
                let Some(f) = data.get(pos..pos + IPV6_FRAG_LEN) else {
                    st.malformed += 1;
                    return Ip::Counted;
                };
                // offset (high 13 bits) or the M flag (bit 0)
                if u16::from_be_bytes([f[2], f[3]]) & 0xFFF9 != 0 {
                    st.fragments += 1;
                    return Ip::Counted;
                }
                nxt = f[0];
                pos += IPV6_FRAG_LEN;
                remaining -= IPV6_FRAG_LEN as i64;
            }
            // hop-by-hop, routing, destination options, mobility, HIP, shim6; AH
            0 | 43 | 60 | 135 | 139 | 140 | V6_AH => {
                let Some(e) = data.get(pos..pos + 2) else {
                    st.malformed += 1;
                    return Ip::Counted;
                };
                let hlen = usize::from(e[1]);
                let size = if nxt == V6_AH {
                    (hlen + 2) * 4
                } else {
                    (hlen + 1) * 8
                };
                nxt = e[0];
                pos += size;
                remaining -= size as i64;
            }
            _ => {
                return Ip::Other(IpPayload {
                    proto: nxt,
                    at: pos,
                    end: offset + IPV6_LEN + plen,
                    src,
                    dst,
                })
            }
        }
    }
    st.malformed += 1;
    Ip::Counted
}

fn tcp(
    data: &[u8],
    pos: usize,
    src: Addr,
    dst: Addr,
    length: i64,
    ip_len: usize,
    st: &mut DecodeStats,
) -> Option<Segment> {
    let Some(t) = data.get(pos..pos + TCP_LEN) else {
        st.malformed += 1;
        return None;
    };
    let hdr = tcp_data_offset(t[12]) as i64;
    if hdr < TCP_LEN as i64 || hdr > length {
        st.malformed += 1;
        return None;
    }
    Some(Segment {
        src,
        dst,
        sport: u16::from_be_bytes([t[0], t[1]]),
        dport: u16::from_be_bytes([t[2], t[3]]),
        seq: u32::from_be_bytes([t[4], t[5], t[6], t[7]]),
        ack: u32::from_be_bytes([t[8], t[9], t[10], t[11]]),
        flags: t[13],
        window: u16::from_be_bytes([t[14], t[15]]),
        // length fits: at most 65535 (IPv4) or the captured length (IPv6 fallback)
        payload: (length - hdr) as u32,
        ip_len: ip_len as u32,
        tunnel: 0,
        bad_checksum: st.check_checksums && tcp_checksum_bad(data, pos, src, dst, length, st),
        payload_cut: usize::try_from(length).map_or(true, |len| data.len() < pos + len),
    })
}

#[cfg(test)]
mod checksum_tests {
    use super::*;

    #[test]
    fn internet_checksum_of_a_known_ipv4_header() {
        // RFC 1071-style example header: checksum 0xb861 is the right one
        let mut h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert!(checksum_ok(ones_sum(&h, 0)));
        assert!(!ipv4_header_bad(&h, 0, 20));
        h[11] ^= 1;
        assert!(ipv4_header_bad(&h, 0, 20));
        assert!(!ipv4_header_bad(&h[..10], 0, 20)); // not captured whole: not checked
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(ones_sum(&[0x12, 0x34, 0x56], 0), 0x1234 + 0x5600);
    }

    /// The 16-bit sum of RFC 1071, folded, as the reference to hold the wide one to.
    fn folded16(bytes: &[u8]) -> u64 {
        let mut sum: u64 = bytes
            .chunks(2)
            .map(|w| u64::from(w[0]) << 8 | w.get(1).map_or(0, |&b| u64::from(b)))
            .sum();
        while sum >> 16 != 0 {
            sum = (sum & 0xFFFF) + (sum >> 16);
        }
        sum
    }

    #[test]
    fn eight_bytes_at_a_time_fold_to_the_sixteen_bit_sum() {
        let mut bytes: Vec<u8> = (0..200u32).map(|i| (i * 37 + 11) as u8).collect();
        for len in 0..bytes.len() {
            let mut wide = ones_sum(&bytes[..len], 0);
            while wide >> 16 != 0 {
                wide = (wide & 0xFFFF) + (wide >> 16);
            }
            assert_eq!(wide, folded16(&bytes[..len]), "{len} bytes");
        }
        bytes.iter_mut().for_each(|b| *b = 0xFF);
        assert!(checksum_ok(ones_sum(&bytes[..64], 0)));
    }
}

/// One's-complement sum of `bytes` as big-endian 16-bit words (RFC 1071),
/// added to `sum` and not yet folded; an odd last byte is padded with zero.
/// Eight bytes are added at a time as two 32-bit halves: 2^16 is 1 modulo
/// 0xFFFF, so folding gives the 16-bit sum (RFC 1071 2(C)), at about a
/// quarter of the additions (checksums of whole tunnel frames, issue 15).
pub(crate) fn ones_sum(bytes: &[u8], mut sum: u64) -> u64 {
    let mut quads = bytes.chunks_exact(8);
    for q in &mut quads {
        let w = u64::from_be_bytes([q[0], q[1], q[2], q[3], q[4], q[5], q[6], q[7]]);
        sum += (w >> 32) + (w & 0xFFFF_FFFF);
    }
    let mut words = quads.remainder().chunks_exact(2);
    for w in &mut words {
        sum += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = words.remainder() {
        sum += u64::from(*last) << 8;
    }
    sum
}

/// Fold a sum to 16 bits and say whether it checks: a correct header or
/// segment, checksum included, sums to 0xFFFF (Zeek: `in_cksum(...) == 0xffff`).
pub fn checksum_ok(mut sum: u64) -> bool {
    while sum >> 16 != 0 {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    sum == 0xFFFF
}

/// Zeek's IP analyzer drops an IPv4 datagram whose header checksum is wrong
/// (weird `bad_IP_checksum`) unless `ignore_checksums`; a header not captured
/// whole cannot be checked and is let through.
fn ipv4_header_bad(data: &[u8], offset: usize, ihl: usize) -> bool {
    match data.get(offset..offset + ihl) {
        Some(h) => !checksum_ok(ones_sum(h, 0)),
        None => false,
    }
}

/// Zeek's `TCPAnalyzer::ValidateChecksum`: the pseudo-header (RFC 9293 3.1,
/// RFC 8200 8.1) and the whole segment, checked only when the segment was
/// captured whole (`caplen >= len`). A bad one is counted here and flagged.
fn tcp_checksum_bad(
    data: &[u8],
    pos: usize,
    src: Addr,
    dst: Addr,
    length: i64,
    st: &mut DecodeStats,
) -> bool {
    let Ok(len) = usize::try_from(length) else {
        return false;
    };
    let Some(segment) = data.get(pos..pos + len) else {
        return false; // cut by the snapshot length: Zeek does not check it either
    };
    let bad = !checksum_ok(ones_sum(segment, pseudo_sum(src, dst, IPPROTO_TCP, len)));
    if bad {
        st.bad_checksums += 1;
    }
    bad
}

/// The sum of the pseudo-header that TCP and UDP checksums cover (RFC 9293
/// 3.1 for IPv4, RFC 8200 8.1 for IPv6: addresses, protocol, length). A
/// length past 16 bits, IPv6's 32-bit field, folds into the same sum.
pub(crate) fn pseudo_sum(src: Addr, dst: Addr, proto: u8, len: usize) -> u64 {
    let mut sum = u64::from(proto) + len as u64;
    for a in [src, dst] {
        sum = match a {
            Addr::V4(b) => ones_sum(&b, sum),
            Addr::V6(b) => ones_sum(&b, sum),
        };
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    const ETH_HDR: [u8; 14] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0x08, 0x00];

    fn tcp_hdr(sport: u16, dport: u16, flags: u8, words: u8) -> Vec<u8> {
        let mut t = Vec::new();
        t.extend_from_slice(&sport.to_be_bytes());
        t.extend_from_slice(&dport.to_be_bytes());
        t.extend_from_slice(&100u32.to_be_bytes());
        t.extend_from_slice(&200u32.to_be_bytes());
        t.push(words << 4);
        t.push(flags);
        t.extend_from_slice(&[0xFF, 0xFF, 0, 0, 0, 0]);
        t.resize(usize::from(words) * 4, 1); // options
        t
    }

    fn ipv4_hdr(total: u16, proto: u8, flags_frag: u16, ihl_words: u8) -> Vec<u8> {
        let mut h = vec![0x40 | ihl_words, 0];
        h.extend_from_slice(&total.to_be_bytes());
        h.extend_from_slice(&[0, 0]);
        h.extend_from_slice(&flags_frag.to_be_bytes());
        h.extend_from_slice(&[64, proto, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
        h.resize(usize::from(ihl_words) * 4, 1); // options
        h
    }

    fn v4_frame(payload: usize) -> Vec<u8> {
        let mut f = ETH_HDR.to_vec();
        f.extend(ipv4_hdr((20 + 20 + payload) as u16, 6, 0x4000, 5));
        f.extend(tcp_hdr(1234, 80, 0x18, 5));
        f.extend(vec![0xAB; payload]);
        f
    }

    #[test]
    fn ethernet_ipv4_tcp_with_payload() {
        let mut st = DecodeStats::default();
        let seg = decode(Link::Ethernet, &v4_frame(10), &mut st).unwrap();
        assert_eq!(seg.src, Addr::V4([10, 0, 0, 1]));
        assert_eq!(seg.dst, Addr::V4([10, 0, 0, 2]));
        assert_eq!(
            (seg.sport, seg.dport, seg.seq, seg.ack),
            (1234, 80, 100, 200)
        );
        assert_eq!(
            (seg.flags, seg.window, seg.payload, seg.ip_len),
            (0x18, 0xFFFF, 10, 50)
        );
        assert_eq!(
            st,
            DecodeStats {
                frames: 1,
                tcp: 1,
                ..Default::default()
            }
        );
    }

    #[test]
    fn snapshot_cut_frame_counts_payload_from_ip_length() {
        let mut f = v4_frame(1000);
        f.truncate(14 + 40);
        let seg = decode(Link::Ethernet, &f, &mut DecodeStats::default()).unwrap();
        assert_eq!(seg.payload, 1000);
    }

    #[test]
    fn qinq_tags_are_skipped() {
        let mut f = ETH_HDR[..12].to_vec();
        f.extend_from_slice(&[0x88, 0xA8, 0, 1, 0x81, 0x00, 0, 2, 0x08, 0x00]);
        f.extend_from_slice(&v4_frame(0)[14..]);
        let mut st = DecodeStats::default();
        assert!(decode(Link::Ethernet, &f, &mut st).is_some());
        // a tag cut short is malformed, not a panic
        assert!(decode(Link::Ethernet, &f[..17], &mut st).is_none());
        assert_eq!(st.malformed, 1);
    }

    #[test]
    fn ipv4_options_move_the_tcp_header() {
        let mut f = ETH_HDR.to_vec();
        f.extend(ipv4_hdr(24 + 24, 6, 0, 6));
        f.extend(tcp_hdr(1, 2, 0x02, 6));
        let seg = decode(Link::Ethernet, &f, &mut DecodeStats::default()).unwrap();
        assert_eq!((seg.sport, seg.dport, seg.payload), (1, 2, 0));
    }

    #[test]
    fn fragments_non_tcp_non_ip_and_malformed_are_counted() {
        let mut st = DecodeStats::default();
        let mut frag = ETH_HDR.to_vec();
        frag.extend(ipv4_hdr(40, 6, 0x2000, 5)); // MF
        frag.extend(tcp_hdr(1, 2, 2, 5));
        assert!(decode(Link::Ethernet, &frag, &mut st).is_none());
        let mut udp = ETH_HDR.to_vec();
        udp.extend(ipv4_hdr(28, 17, 0, 5));
        udp.extend([0; 8]);
        assert!(decode(Link::Ethernet, &udp, &mut st).is_none());
        let mut arp = ETH_HDR.to_vec();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert!(decode(Link::Ethernet, &arp, &mut st).is_none());
        assert!(decode(Link::Ethernet, &[0; 5], &mut st).is_none());
        let mut bad_off = v4_frame(0);
        bad_off[14 + 20 + 12] = 0x40; // data offset 16 < 20
        assert!(decode(Link::Ethernet, &bad_off, &mut st).is_none());
        assert_eq!(
            st,
            DecodeStats {
                frames: 5,
                tcp: 0,
                fragments: 1,
                non_ip: 1,
                non_tcp: 1,
                malformed: 2,
                unsupported: [(Unsupported::Ethertype(0x0806), 1)].into(),
                ..Default::default()
            }
        );
    }

    #[test]
    fn ipv4_total_length_zero_means_what_was_captured() {
        let mut f = v4_frame(7);
        f[16] = 0;
        f[17] = 0;
        let seg = decode(Link::Ethernet, &f, &mut DecodeStats::default()).unwrap();
        assert_eq!((seg.payload, seg.ip_len), (7, 47));
    }

    fn v6_packet(chain: &[(u8, Vec<u8>)], last: u8, tail: &[u8]) -> Vec<u8> {
        let mut body = Vec::new();
        for (_, ext) in chain {
            body.extend_from_slice(ext);
        }
        body.extend_from_slice(tail);
        let first = chain.first().map_or(last, |c| c.0);
        let mut p = vec![0x60, 0, 0, 0];
        p.extend_from_slice(&(body.len() as u16).to_be_bytes());
        p.push(first);
        p.push(64);
        p.extend_from_slice(&[0xFE; 16]);
        p.extend_from_slice(&[0xFD; 16]);
        p.extend(body);
        p
    }

    #[test]
    fn ipv6_extension_chain_then_tcp() {
        let hop = vec![43, 0, 0, 0, 0, 0, 0, 0]; // next: routing
        let routing = vec![44, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]; // next: fragment
        let frag = vec![51, 0, 0, 0, 0, 0, 0, 1]; // atomic fragment, next: AH
        let ah = vec![6, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]; // (1+2)*4 bytes, next: TCP
        let chain = [(0, hop), (43, routing), (44, frag), (51, ah)];
        let mut tail = tcp_hdr(443, 5555, 0x11, 5);
        tail.extend_from_slice(b"xyz");
        let p = v6_packet(&chain, 6, &tail);
        let mut st = DecodeStats::default();
        let seg = decode(Link::Raw, &p, &mut st).unwrap();
        assert_eq!(seg.src, Addr::V6([0xFE; 16]));
        assert_eq!((seg.sport, seg.payload), (443, 3));
        assert_eq!(seg.ip_len as usize, p.len());
        // a real fragment (offset set) is counted
        let frag = vec![6, 0, 0, 8, 0, 0, 0, 1];
        let p = v6_packet(&[(44, frag)], 6, &tail);
        assert!(decode(Link::Raw, &p, &mut st).is_none());
        assert_eq!(st.fragments, 1);
    }

    #[test]
    fn ipv6_chain_longer_than_sixteen_is_malformed() {
        let chain: Vec<(u8, Vec<u8>)> = (0..17)
            .map(|_| (60, vec![60, 0, 0, 0, 0, 0, 0, 0]))
            .collect();
        let p = v6_packet(&chain, 60, &[]);
        let mut st = DecodeStats::default();
        assert!(decode(Link::Raw, &p, &mut st).is_none());
        assert_eq!(st.malformed, 1);
    }

    #[test]
    fn cooked_and_loopback_headers() {
        let ip = &v4_frame(0)[14..];
        let mut sll = vec![0; 14];
        sll.extend_from_slice(&[0x08, 0x00]);
        sll.extend_from_slice(ip);
        let mut sll2 = vec![0x08, 0x00];
        sll2.extend_from_slice(&[0; 18]);
        sll2.extend_from_slice(ip);
        let mut null_le = 2u32.to_le_bytes().to_vec();
        null_le.extend_from_slice(ip);
        let mut null_be = 2u32.to_be_bytes().to_vec();
        null_be.extend_from_slice(ip);
        let mut st = DecodeStats::default();
        assert!(decode(Link::Sll, &sll, &mut st).is_some());
        assert!(decode(Link::Sll2, &sll2, &mut st).is_some());
        assert!(decode(Link::Null, &null_le, &mut st).is_some());
        assert!(decode(Link::Null, &null_be, &mut st).is_some());
        assert!(decode(Link::Loop, &null_be, &mut st).is_some());
        // LOOP is always network order: a little-endian 2 is family 0x02000000
        assert!(decode(Link::Loop, &null_le, &mut st).is_none());
        assert_eq!(st.non_ip, 1);
        assert!(decode(Link::Raw, &[], &mut st).is_none());
        assert_eq!(st.malformed, 1);
    }

    #[test]
    fn bitfields_keep_their_parentheses() {
        assert_eq!(ihl_bytes(0x45), 20);
        assert_eq!(ihl_bytes(0x4F), 60);
        assert_eq!(tcp_data_offset(0x50), 20);
        assert_eq!(tcp_data_offset(0xF3), 60);
        assert!(ipv4_fragment(0x2000));
        assert!(ipv4_fragment(0x0001));
        assert!(!ipv4_fragment(0x4000)); // DF alone is not a fragment
    }

    #[test]
    fn link_types_by_number() {
        for lt in [
            0u16, 1, 9, 10, 12, 14, 50, 51, 101, 104, 105, 108, 113, 127, 228, 229, 276,
        ] {
            assert!(Link::from_linktype(lt).is_some(), "{lt}");
        }
        // 147: LINKTYPE_USER0, private use: nothing to decode
        assert_eq!(Link::from_linktype(147), None);
        assert_eq!(linktype_name(113), "LINUX_SLL");
        assert_eq!(linktype_name(147), "unknown");
    }
}
