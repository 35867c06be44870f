//! Encapsulations: every layer Zeek decodes between a frame's link header and
//! the innermost IP header that carries TCP, one small function each.
//! The readable twin is `tcplens.packets.encap`; the differential tests hold
//! the two equal.
//!
//! A decoder returns where the next header starts and what it is
//! (`Ok((offset, ethertype))`, IP being `ETH_P_IP`/`ETH_P_IPV6`), or why it
//! stops (`Err(Stop)`). The layers a frame went through are pushed on a
//! `Vec<Layer>`: only what is the same in both directions of a flow goes into
//! a layer (VLAN ids, VNIs, PPPoE sessions, a tunnel's two endpoints in
//! canonical order), because the chain is part of the flow key — MPLS labels
//! and GTP TEIDs differ per direction, so they are left out.
//!
//! Wire layouts (network byte order unless said):
//! ```text
//! 802.1Q/ad tag  u16 TCI (low 12 bits: VLAN id); u16 ethertype         IEEE 802.1Q
//! VN-Tag         u32 tag; u16 ethertype                                 IEEE 802.1Qbh
//! 802.1ah I-TAG  u32 flags|I-SID(24); u8 cdst[6], csrc[6]; u16 ethertype IEEE 802.1ah
//! FabricPath     u16 ftag|ttl; then a whole Ethernet header             Cisco
//! MPLS label     u32 label(20)|tc(3)|S(1)|ttl(8), until S              RFC 3032
//! PW control wd  u32, first nibble 0                                    RFC 4385
//! PPPoE session  u8 ver|type, code; u16 session, length; u16 PPP proto  RFC 2516
//! PPP            [u8 0xFF, 0x03]; u16 protocol (u8 if odd: compressed)  RFC 1661/1662
//! Cisco HDLC     u8 address, control; u16 ethertype
//! LLC/SNAP       u8 dsap 0xAA, ssap 0xAA, ctrl 0x03; u8 oui[3]; u16 ethertype   IEEE 802.2
//! FDDI           u8 fc; u8 dst[6], src[6]; then LLC                     LINKTYPE_FDDI
//! radiotap       u8 version, pad; u16 length (little endian); ...       radiotap.org
//! 802.11         u16 frame control (LE bits); u16 duration; u8 a1[6],a2[6],a3[6];
//!                u16 seq; [u8 a4[6] if ToDS&FromDS]; [u16 QoS]; [u32 HT control]
//! GRE            u16 flags|version; u16 protocol; [csum+res][key][seq][ack]  RFC 2784/2890/2637
//! ERSPAN II / III 8 / 12 bytes (+8 platform header if III's O bit) then Ethernet
//! VXLAN          u8 flags; u8 res[3]; u24 VNI; u8 res; then Ethernet    RFC 7348, UDP 4789
//! Geneve         u8 ver|optlen; u8 flags; u16 protocol; u24 VNI; u8 res; options  RFC 8926, UDP 6081
//! Teredo         [origin indication u16 0; 6 bytes] [auth u16 1; u8 idlen, aulen; ...] IPv6  RFC 4380, UDP 3544
//! AYIYA          u8 idlen|idtype; u8 siglen|hash; u8 auth|opcode; u8 next; u32 epoch; id; sig  UDP 5072
//! GTP-U          u8 flags; u8 type (0xFF G-PDU); u16 len; u32 TEID; [u16 seq; u8 npdu; u8 next ext]  UDP 2152
//! ```

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};

use crate::segment::Addr;

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86DD;
/// More layers than this is a crafted frame, not a network.
pub const MAX_LAYERS: usize = 32;

/// The tunnels that have two IP endpoints, named as Zeek's `Tunnel::Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Tunnel {
    Ip,
    Gre,
    Vxlan,
    Geneve,
    Teredo,
    Ayiya,
    Gtpv1,
}

impl Tunnel {
    pub fn name(self) -> &'static str {
        match self {
            Tunnel::Ip => "ip",
            Tunnel::Gre => "gre",
            Tunnel::Vxlan => "vxlan",
            Tunnel::Geneve => "geneve",
            Tunnel::Teredo => "teredo",
            Tunnel::Ayiya => "ayiya",
            Tunnel::Gtpv1 => "gtpv1",
        }
    }
}

/// One encapsulation layer of a frame, outermost first in a chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Layer {
    Vlan(u16),
    VnTag,
    Pbb(u32),
    FabricPath,
    Mpls,
    Pppoe(u16),
    /// A tunnel between two IP endpoints (smaller address first) with its
    /// network id where it has one (VXLAN/Geneve VNI), else 0.
    Ip {
        kind: Tunnel,
        a: Addr,
        b: Addr,
        vni: u32,
    },
}

/// As Python's `ipaddress` writes it (`render::ip_text`).
fn addr_text(a: &Addr) -> String {
    let mut s = String::new();
    crate::render::ip_text(a, &mut s);
    s
}

/// The text `tunnel` shows, e.g. `vlan 100`, `gre 10.0.0.1-10.0.0.2`,
/// `vxlan 10.0.0.1-10.0.0.2 vni 42` (the Python twin writes the same).
impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Layer::Vlan(id) => write!(f, "vlan {id}"),
            Layer::VnTag => f.write_str("vntag"),
            Layer::Pbb(isid) => write!(f, "pbb {isid}"),
            Layer::FabricPath => f.write_str("fabricpath"),
            Layer::Mpls => f.write_str("mpls"),
            Layer::Pppoe(s) => write!(f, "pppoe {s}"),
            Layer::Ip { kind, a, b, vni } => {
                write!(f, "{} {}-{}", kind.name(), addr_text(a), addr_text(b))?;
                if matches!(kind, Tunnel::Vxlan | Tunnel::Geneve) {
                    write!(f, " vni {vni}")?;
                }
                Ok(())
            }
        }
    }
}

/// Zeek's `tunnel_parents`: a uid for each tunnel with IP endpoints in a
/// chain (VLAN, MPLS, PPPoE... are not tunnels to Zeek), "C" and 17 base-62
/// digits of BLAKE2b-96 over the layer's text, as `encap.tunnel_parents`.
pub fn tunnel_parents(texts: &[String]) -> Vec<String> {
    texts
        .iter()
        .filter(|t| {
            t.split(' ').next().is_some_and(|kind| {
                ["ip", "gre", "vxlan", "geneve", "teredo", "ayiya", "gtpv1"].contains(&kind)
            })
        })
        .map(|t| crate::render::uid_of(t))
        .collect()
}

/// Why decoding stopped before an IP header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// Too short or inconsistent: a `malformed` count.
    Malformed,
    /// A protocol we do not look inside: a `non_ip` count, reported per type.
    Unsupported(Unsupported),
    /// A tunnel's UDP checksum is wrong (`udp_checksum_bad`): a `bad_checksums`
    /// count, and the tunnel is not decapsulated.
    BadChecksum,
}

/// What an unsupported frame carried, for "N frames in an unsupported encapsulation: ...".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Unsupported {
    Ethertype(u16),
    Llc(u8),
    Ppp(u16),
    Gre(u16),
    GreVersion(u16),
    Family(u32),
    IpVersion(u8),
    Wifi(&'static str),
    Gtp,
    Ayiya(u8),
    MaxDepth,
}

/// The text of a type in the per-type counts (the Python twin writes the same).
impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unsupported::Ethertype(t) => write!(f, "ethertype 0x{t:04x}"),
            Unsupported::Llc(sap) => write!(f, "LLC SAP 0x{sap:02x}"),
            Unsupported::Ppp(p) => write!(f, "PPP protocol 0x{p:04x}"),
            Unsupported::Gre(p) => write!(f, "GRE protocol 0x{p:04x}"),
            Unsupported::GreVersion(v) => write!(f, "GRE version {v}"),
            Unsupported::Family(a) => write!(f, "address family {a}"),
            Unsupported::IpVersion(v) => write!(f, "IP version {v}"),
            Unsupported::Wifi(what) => write!(f, "802.11 {what}"),
            Unsupported::Gtp => f.write_str("GTP-U non-IP payload"),
            Unsupported::Ayiya(p) => write!(f, "AYIYA next header {p}"),
            Unsupported::MaxDepth => write!(f, "more than {MAX_LAYERS} layers"),
        }
    }
}

pub type Next = Result<(usize, u16), Stop>;

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn byte(b: &[u8], at: usize) -> Result<u8, Stop> {
    b.get(at).copied().ok_or(Stop::Malformed)
}

fn u16_at(b: &[u8], at: usize) -> Result<u16, Stop> {
    be16(b, at).ok_or(Stop::Malformed)
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, Stop> {
    be32(b, at).ok_or(Stop::Malformed)
}

fn push(layers: &mut Vec<Layer>, layer: Layer) -> Result<(), Stop> {
    if layers.len() >= MAX_LAYERS {
        return Err(Stop::Unsupported(Unsupported::MaxDepth));
    }
    layers.push(layer);
    Ok(())
}

fn unsupported(u: Unsupported) -> Next {
    Err(Stop::Unsupported(u))
}

// --- link types -------------------------------------------------------------------

/// BSD address families: AF_INET is 2 everywhere; AF_INET6 differs per OS
/// (10 Linux, 24 NetBSD/OpenBSD, 28 FreeBSD, 30 macOS).
pub fn family(family: u32) -> Next {
    match family {
        2 => Ok((4, ETH_P_IP)),
        10 | 24 | 28 | 30 => Ok((4, ETH_P_IPV6)),
        _ => unsupported(Unsupported::Family(family)),
    }
}

/// Raw IP: the version is the first nibble.
pub fn raw(data: &[u8], at: usize) -> Next {
    match byte(data, at)? >> 4 {
        4 => Ok((at, ETH_P_IP)),
        6 => Ok((at, ETH_P_IPV6)),
        v => unsupported(Unsupported::IpVersion(v)),
    }
}

/// An Ethernet header at `at`.
pub fn ethernet(data: &[u8], at: usize, layers: &mut Vec<Layer>) -> Next {
    ethertype(data, at + 14, u16_at(data, at + 12)?, layers)
}

/// The layer named by an ethertype (or an 802.3 length, then LLC) at `at`.
pub fn ethertype(data: &[u8], mut at: usize, mut etype: u16, layers: &mut Vec<Layer>) -> Next {
    loop {
        match etype {
            ETH_P_IP | ETH_P_IPV6 => return Ok((at, etype)),
            0x8100 | 0x88A8 | 0x9100 | 0x9200 => {
                push(layers, Layer::Vlan(u16_at(data, at)? & 0x0FFF))?;
                etype = u16_at(data, at + 2)?;
                at += 4;
            }
            0x8926 => {
                push(layers, Layer::VnTag)?;
                etype = u16_at(data, at + 4)?;
                at += 6;
            }
            0x88E7 => {
                push(layers, Layer::Pbb(u32_at(data, at)? & 0x00FF_FFFF))?;
                etype = u16_at(data, at + 16)?;
                at += 18;
            }
            0x8903 => {
                push(layers, Layer::FabricPath)?;
                etype = u16_at(data, at + 14)?;
                at += 16;
            }
            0x6558 => {
                etype = u16_at(data, at + 12)?;
                at += 14;
            }
            0x8847 | 0x8848 => return mpls(data, at, layers),
            0x8864 => return pppoe(data, at, layers),
            0..=1500 => return llc(data, at, layers),
            other => return unsupported(Unsupported::Ethertype(other)),
        }
        if layers.len() >= MAX_LAYERS {
            return unsupported(Unsupported::MaxDepth);
        }
    }
}

/// 802.2 LLC: only SNAP (AA AA 03) names what it carries.
pub fn llc(data: &[u8], at: usize, layers: &mut Vec<Layer>) -> Next {
    let dsap = byte(data, at)?;
    if dsap != 0xAA || byte(data, at + 1)? != 0xAA || byte(data, at + 2)? != 0x03 {
        return unsupported(Unsupported::Llc(dsap));
    }
    match u16_at(data, at + 6)? {
        // a SNAP frame naming an 802.3 length would loop back here
        t @ 0..=1500 => unsupported(Unsupported::Ethertype(t)),
        t => ethertype(data, at + 8, t, layers),
    }
}

/// MPLS: pop labels to the bottom of the stack; then, as Zeek, IP by its
/// version nibble; a first nibble 0 is a pseudowire control word followed by
/// Ethernet (RFC 4385), anything else Ethernet without one.
pub fn mpls(data: &[u8], mut at: usize, layers: &mut Vec<Layer>) -> Next {
    push(layers, Layer::Mpls)?;
    for _ in 0..MAX_LAYERS {
        let label = u32_at(data, at)?;
        at += 4;
        if label & 0x100 != 0 {
            return match byte(data, at)? >> 4 {
                4 => Ok((at, ETH_P_IP)),
                6 => Ok((at, ETH_P_IPV6)),
                0 => ethernet(data, at + 4, layers),
                _ => ethernet(data, at, layers),
            };
        }
    }
    unsupported(Unsupported::MaxDepth)
}

/// A PPP protocol number to the next layer.
fn ppp_protocol(data: &[u8], at: usize, proto: u16, layers: &mut Vec<Layer>) -> Next {
    match proto {
        0x0021 => Ok((at, ETH_P_IP)),
        0x0057 => Ok((at, ETH_P_IPV6)),
        0x0281 | 0x0283 => mpls(data, at, layers),
        other => unsupported(Unsupported::Ppp(other)),
    }
}

/// PPP, with or without the HDLC address/control bytes, protocol field
/// compressed (one odd byte) or not.
pub fn ppp(data: &[u8], mut at: usize, layers: &mut Vec<Layer>) -> Next {
    if byte(data, at)? == 0xFF && byte(data, at + 1)? == 0x03 {
        at += 2;
    }
    let first = byte(data, at)?;
    if first & 1 == 1 {
        return ppp_protocol(data, at + 1, u16::from(first), layers);
    }
    ppp_protocol(data, at + 2, u16_at(data, at)?, layers)
}

/// PPPoE session stage (discovery frames are a different ethertype).
pub fn pppoe(data: &[u8], at: usize, layers: &mut Vec<Layer>) -> Next {
    push(layers, Layer::Pppoe(u16_at(data, at + 2)?))?;
    ppp_protocol(data, at + 8, u16_at(data, at + 6)?, layers)
}

/// Cisco HDLC: address and control bytes, then an ethertype.
pub fn chdlc(data: &[u8], at: usize, layers: &mut Vec<Layer>) -> Next {
    ethertype(data, at + 4, u16_at(data, at + 2)?, layers)
}

/// LINKTYPE_PPP_HDLC carries both PPP and Cisco HDLC frames (address 0x0F/0x8F).
pub fn ppp_or_chdlc(data: &[u8], layers: &mut Vec<Layer>) -> Next {
    match byte(data, 0)? {
        0x0F | 0x8F => chdlc(data, 0, layers),
        _ => ppp(data, 0, layers),
    }
}

/// FDDI: frame control and two addresses, then LLC.
pub fn fddi(data: &[u8], layers: &mut Vec<Layer>) -> Next {
    llc(data, 13, layers)
}

/// An 802.11 frame at `at`: only unprotected data frames with a payload
/// carry IP (behind LLC/SNAP).
pub fn wifi(data: &[u8], at: usize, layers: &mut Vec<Layer>) -> Next {
    let fc0 = byte(data, at)?;
    let fc1 = byte(data, at + 1)?;
    if (fc0 >> 2) & 0x03 != 2 {
        return unsupported(Unsupported::Wifi("management or control frame"));
    }
    let subtype = (fc0 >> 4) & 0x0F;
    if subtype & 0x04 != 0 {
        return unsupported(Unsupported::Wifi("data frame without payload"));
    }
    if fc1 & 0x40 != 0 {
        return unsupported(Unsupported::Wifi("protected (encrypted) frame"));
    }
    let mut hdr = 24;
    if fc1 & 0x03 == 0x03 {
        hdr += 6; // fourth address (WDS)
    }
    if subtype & 0x08 != 0 {
        hdr += 2; // QoS control
        if fc1 & 0x80 != 0 {
            hdr += 4; // HT control
        }
    }
    llc(data, at + hdr, layers)
}

/// Radiotap: its own length (little endian) then an 802.11 frame.
pub fn radiotap(data: &[u8], layers: &mut Vec<Layer>) -> Next {
    let len = u16::from_le_bytes([byte(data, 2)?, byte(data, 3)?]);
    wifi(data, usize::from(len), layers)
}

// --- tunnels inside IP ------------------------------------------------------------

fn raw_bytes(a: &Addr) -> &[u8] {
    match a {
        Addr::V4(b) => b,
        Addr::V6(b) => b,
    }
}

fn tunnel(
    layers: &mut Vec<Layer>,
    kind: Tunnel,
    src: Addr,
    dst: Addr,
    vni: u32,
) -> Result<(), Stop> {
    let (a, b) = if raw_bytes(&src) <= raw_bytes(&dst) {
        (src, dst)
    } else {
        (dst, src)
    };
    push(layers, Layer::Ip { kind, a, b, vni })
}

/// An IP payload that is not TCP, as the IP header describes it.
#[derive(Clone, Copy, Debug)]
pub struct IpPayload {
    pub proto: u8,
    /// Where the payload starts in the frame.
    pub at: usize,
    /// Where the IP length fields say it ends (past the captured bytes when
    /// the snapshot length cut it; before `at` when the header lies).
    pub end: usize,
    pub src: Addr,
    pub dst: Addr,
}

/// The IP payload `p` when it is a tunnel; `None` when it is not one (plain
/// non-TCP traffic). `check`: validate a UDP tunnel's checksum
/// (`DecodeStats::check_checksums`).
pub fn ip_payload(
    data: &[u8],
    p: &IpPayload,
    check: bool,
    layers: &mut Vec<Layer>,
) -> Option<Next> {
    let (at, src, dst) = (p.at, p.src, p.dst);
    Some(match p.proto {
        4 => tunnel(layers, Tunnel::Ip, src, dst, 0).map(|()| (at, ETH_P_IP)),
        41 => tunnel(layers, Tunnel::Ip, src, dst, 0).map(|()| (at, ETH_P_IPV6)),
        47 => tunnel(layers, Tunnel::Gre, src, dst, 0).and_then(|()| gre(data, at, layers)),
        17 => return udp(data, p, check, layers),
        _ => return None,
    })
}

/// GRE (RFC 2784/2890), PPTP's enhanced GRE (version 1, RFC 2637), with
/// Zeek's payloads: IP, transparent Ethernet bridging, ERSPAN I/II/III,
/// Aruba (802.11), WCCP (a 4-byte redirect header before IPv4).
pub fn gre(data: &[u8], at: usize, layers: &mut Vec<Layer>) -> Next {
    let flags = u16_at(data, at)?;
    let proto = u16_at(data, at + 2)?;
    let version = flags & 0x0007;
    if version > 1 {
        return unsupported(Unsupported::GreVersion(version));
    }
    if flags & 0x4000 != 0 || flags & 0x0078 != 0 {
        // RFC 1701 routing (deprecated) or reserved flags: Zeek gives up too
        return unsupported(Unsupported::Gre(proto));
    }
    let mut len = 4;
    for bit in [0x8000u16, 0x2000, 0x1000, 0x0080] {
        if flags & bit != 0 {
            len += 4;
        }
    }
    let body = at + len;
    if version == 1 {
        if proto != 0x880B {
            return unsupported(Unsupported::Gre(proto));
        }
        return ppp(data, body, layers);
    }
    match proto {
        0x88BE => {
            // ERSPAN type II has a sequence number in GRE and an 8-byte header; type I neither
            let erspan = if flags & 0x1000 != 0 { 8 } else { 0 };
            ethernet(data, body + erspan, layers)
        }
        0x22EB => {
            let opt = byte(data, body + 11)? & 0x01;
            ethernet(data, body + 12 + 8 * usize::from(opt), layers)
        }
        0x883E => match byte(data, body)? >> 4 {
            4 => Ok((body, ETH_P_IP)),
            _ => Ok((body + 4, ETH_P_IP)),
        },
        p if (p & 0x8200 == 0x8200 && p & 0x0F == 0)
            || (p & 0x8300 == 0x8300 && p & 0x0F == 0 && p <= 0x8370)
            || p == 0x9000 =>
        {
            wifi(data, body, layers)
        }
        ETH_P_IP | ETH_P_IPV6 => Ok((body, proto)),
        0x6558 | 0x8847 | 0x8848 | 0x8100 | 0x88A8 => ethertype(data, body, proto, layers),
        other => unsupported(Unsupported::Gre(other)),
    }
}

const VXLAN: u16 = 4789;
const GENEVE: u16 = 6081;
const TEREDO: u16 = 3544;
const AYIYA: u16 = 5072;
const GTPU: u16 = 2152;

/// A UDP tunnel by port (destination first, then source, as Zeek dispatches);
/// with `check`, one whose checksum is wrong stops here (`udp_checksum_bad`).
fn udp(data: &[u8], p: &IpPayload, check: bool, layers: &mut Vec<Layer>) -> Option<Next> {
    let (at, src, dst) = (p.at, p.src, p.dst);
    let sport = be16(data, at)?;
    let dport = be16(data, at + 2)?;
    let ulen = usize::from(be16(data, at + 4)?);
    let body = at + 8;
    let end = if ulen >= 8 { at + ulen } else { data.len() };
    let known = |p: u16| matches!(p, VXLAN | GENEVE | TEREDO | AYIYA | GTPU);
    let port = if known(dport) { dport } else { sport };
    if check && known(port) && udp_checksum_bad(data, p, dport) {
        return Some(Err(Stop::BadChecksum));
    }
    Some(match port {
        VXLAN => {
            let vni = be32(data, body + 4).map_or(0, |v| v >> 8);
            tunnel(layers, Tunnel::Vxlan, src, dst, vni)
                .and_then(|()| ethernet(data, body + 8, layers))
        }
        GENEVE => tunnel(
            layers,
            Tunnel::Geneve,
            src,
            dst,
            be32(data, body + 4).map_or(0, |v| v >> 8),
        )
        .and_then(|()| geneve(data, body, layers)),
        TEREDO => {
            let inner = teredo(data, body, end)?;
            tunnel(layers, Tunnel::Teredo, src, dst, 0).map(|()| (inner, ETH_P_IPV6))
        }
        AYIYA => {
            let (inner, next) = ayiya(data, body)?;
            tunnel(layers, Tunnel::Ayiya, src, dst, 0).and(match next {
                4 => Ok((inner, ETH_P_IP)),
                41 => Ok((inner, ETH_P_IPV6)),
                other => unsupported(Unsupported::Ayiya(other)),
            })
        }
        GTPU => {
            let inner = gtpu(data, body)?;
            tunnel(layers, Tunnel::Gtpv1, src, dst, 0).and(inner)
        }
        _ => return None,
    })
}

/// Zeek's UDP checksum rule (`UDPAnalyzer::DeliverPacket` in
/// `src/packet_analysis/protocol/udp/UDP.cc`, Zeek 8.0), which runs before the
/// datagram is handed to VXLAN, Geneve, Teredo, AYIYA or GTP-U:
/// - checked only when the datagram was captured whole (`remaining >= len`;
///   Zeek also skips a frame cut only in its trailer, `pkt->len <= cap_len`,
///   which the decoder cannot see: the snapshot length would have to end
///   inside the padding or FCS after a whole datagram);
/// - over IPv4 a zero checksum means "none sent" (RFC 768) and is not checked;
///   over IPv6 it is ("checksum is not optional for IPv6", RFC 8200 8.1), so a
///   zero one fails like any wrong one;
/// - except VXLAN: a datagram to a `vxlan_ports` port (4789) longer than UDP +
///   VXLAN + Ethernet headers with the VNI flag set may carry zero (RFC 7348
///   says it SHOULD); a non-zero one is checked (`Tunnel::validate_vxlan_checksums`
///   is T by default);
/// - a bad one is weird `bad_UDP_checksum` and `C`/`c` in the *outer* UDP
///   connection's history, then `return` before `ForwardPacket`: the tunnel is
///   not decapsulated and its inner packet is never seen, so the inner TCP
///   connection gets nothing from that frame, no letter and no count.
///
/// Zeek checks every UDP datagram; only tunnels can carry TCP, so only those
/// are checked here (others stay `non_tcp`).
fn udp_checksum_bad(data: &[u8], p: &IpPayload, dport: u16) -> bool {
    let Some(datagram) = data.get(p.at..p.end) else {
        return false; // cut by the snapshot length (or a lying length): not checked
    };
    if datagram.len() < 8 {
        return false;
    }
    if datagram[6] == 0 && datagram[7] == 0 {
        let vxlan = dport == VXLAN && datagram.len() > 8 + 8 + 14 && datagram[8] & 0x08 != 0;
        if matches!(p.src, Addr::V4(_)) || vxlan {
            return false;
        }
    }
    let sum = crate::decode::pseudo_sum(p.src, p.dst, 17, datagram.len());
    !crate::decode::checksum_ok(crate::decode::ones_sum(datagram, sum))
}

/// Geneve: base header plus options; protocol an ethertype (Ethernet or IP).
pub fn geneve(data: &[u8], at: usize, layers: &mut Vec<Layer>) -> Next {
    let optlen = usize::from(byte(data, at)? & 0x3F) * 4;
    let proto = u16_at(data, at + 2)?;
    let body = at + 8 + optlen;
    match proto {
        0x6558 => ethernet(data, body, layers),
        ETH_P_IP | ETH_P_IPV6 => Ok((body, proto)),
        other => unsupported(Unsupported::Ethertype(other)),
    }
}

/// Teredo: optional authentication and origin indication, then a whole IPv6
/// header that fits the datagram; anything else is plain UDP on port 3544.
fn teredo(data: &[u8], mut at: usize, end: usize) -> Option<usize> {
    if be16(data, at)? == 0x0001 {
        let id = usize::from(*data.get(at + 2)?);
        let au = usize::from(*data.get(at + 3)?);
        at += 4 + id + au + 8 + 1;
    }
    if be16(data, at)? == 0x0000 {
        at += 8;
    }
    let plen = usize::from(be16(data, at + 4)?);
    (data.get(at)? >> 4 == 6 && at + 40 + plen <= end).then_some(at)
}

/// AYIYA: a forward (opcode 1) packet's payload and its IP protocol.
fn ayiya(data: &[u8], at: usize) -> Option<(usize, u8)> {
    let id = 1usize << (data.get(at)? >> 4);
    let sig = usize::from(data.get(at + 1)? >> 4) * 4;
    let opcode = data.get(at + 2)? & 0x0F;
    let next = *data.get(at + 3)?;
    let body = at + 8 + id + sig;
    (opcode == 1 && data.len() > body).then_some((body, next))
}

/// GTP-U (version 1, G-PDU): optional fields and extension headers, then IP.
/// Signalling messages (echo, error indication) are plain UDP.
fn gtpu(data: &[u8], at: usize) -> Option<Next> {
    let flags = *data.get(at)?;
    if flags >> 5 != 1 || flags & 0x10 == 0 || *data.get(at + 1)? != 0xFF {
        return None;
    }
    let mut pos = at + 8;
    if flags & 0x07 != 0 {
        let Some(&first) = data.get(at + 11) else {
            return Some(Err(Stop::Malformed));
        };
        let mut next = first;
        pos += 4;
        if flags & 0x04 != 0 {
            for _ in 0..MAX_LAYERS {
                if next == 0 {
                    break;
                }
                let Some(&units) = data.get(pos) else {
                    return Some(Err(Stop::Malformed));
                };
                if units == 0 {
                    return Some(Err(Stop::Malformed));
                }
                let len = usize::from(units) * 4;
                let Some(&n) = data.get(pos + len - 1) else {
                    return Some(Err(Stop::Malformed));
                };
                next = n;
                pos += len;
            }
        }
    }
    Some(match data.get(pos).map(|b| b >> 4) {
        Some(4) => Ok((pos, ETH_P_IP)),
        Some(6) => Ok((pos, ETH_P_IPV6)),
        Some(_) => unsupported(Unsupported::Gtp),
        None => Err(Stop::Malformed),
    })
}

// --- chains: interned so a segment carries one u32 --------------------------------

/// Chains by their layers and by their texts (the differential tests hand
/// the tracker texts), one id space; each chain is formatted once.
#[derive(Default)]
struct Chains {
    ids: HashMap<Vec<Layer>, u32>,
    by_text: HashMap<Vec<String>, u32>,
    texts: Vec<Arc<[String]>>,
}

/// Distinct chains kept per process: the table outlives the flows, so a
/// crafted capture with a new tunnel endpoint in every frame must not grow it
/// without bound (~20 MB at most). Later new chains share one id, whose text
/// says so (`encap.py` has the same cap).
pub const MAX_CHAINS: usize = 65_536;
pub const OVERFLOW: &str = "more than 65536 encapsulation chains: not told apart";

impl Chains {
    /// The id of a chain's texts, and whether it is the shared overflow id.
    fn text_id(&mut self, texts: Vec<String>) -> (u32, bool) {
        if let Some(&id) = self.by_text.get(&texts) {
            return (id, false);
        }
        if self.texts.len() >= MAX_CHAINS {
            return (self.insert(vec![OVERFLOW.to_string()]), true);
        }
        (self.insert(texts), false)
    }

    fn insert(&mut self, texts: Vec<String>) -> u32 {
        if let Some(&id) = self.by_text.get(&texts) {
            return id;
        }
        self.texts.push(Arc::from(texts.clone()));
        let id = self.texts.len() as u32;
        self.by_text.insert(texts, id);
        id
    }
}

fn chains() -> &'static Mutex<Chains> {
    static CHAINS: OnceLock<Mutex<Chains>> = OnceLock::new();
    CHAINS.get_or_init(Mutex::default)
}

/// The id of a chain of layers (0: none), the same for equal chains for the
/// life of the process, so a flow key holds a `u32`, not a list.
pub fn intern(layers: &[Layer]) -> u32 {
    if layers.is_empty() {
        return 0;
    }
    // Consecutive frames nearly always share a chain: the last one per thread
    // answers without the lock and the map (a VXLAN capture: 0.8 -> 0.4 s per 1.8M frames).
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        if last.0 == layers {
            return last.1;
        }
        let mut c = chains().lock().unwrap_or_else(|p| p.into_inner());
        let id = match c.ids.get(layers) {
            Some(&id) => id,
            None => {
                let (id, overflow) = c.text_id(layers.iter().map(ToString::to_string).collect());
                if !overflow {
                    c.ids.insert(layers.to_vec(), id);
                }
                id
            }
        };
        last.0.clear();
        last.0.extend_from_slice(layers);
        last.1 = id;
        id
    })
}

thread_local! {
    static LAST: std::cell::RefCell<(Vec<Layer>, u32)> = const { std::cell::RefCell::new((Vec::new(), 0)) };
}

/// The id of a chain given as its layers' texts (as `Segment4.tunnel` has it).
pub fn intern_texts(texts: Vec<String>) -> u32 {
    if texts.is_empty() {
        return 0;
    }
    chains()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .text_id(texts)
        .0
}

/// The texts of an interned chain's layers, outermost first (`Connection.tunnel`).
pub fn chain_texts(id: u32) -> Arc<[String]> {
    if id == 0 {
        // no chain, the common case: neither the lock nor an allocation per row
        static NONE: OnceLock<Arc<[String]>> = OnceLock::new();
        return Arc::clone(NONE.get_or_init(|| Arc::from(Vec::new())));
    }
    let c = chains().lock().unwrap_or_else(|p| p.into_inner());
    match id.checked_sub(1).and_then(|i| c.texts.get(i as usize)) {
        Some(t) => Arc::clone(t),
        None => Arc::from(Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{decode, DecodeStats, Link};

    const MAC: [u8; 12] = [2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];

    /// IPv4 + TCP (SYN, 3 bytes of payload) from 10.0.0.1:1234 to 10.0.0.2:80.
    fn v4_tcp() -> Vec<u8> {
        let mut p = vec![
            0x45, 0, 0, 43, 0, 0, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        p.extend_from_slice(&[
            0x04, 0xD2, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xFF, 0xFF,
        ]);
        p.extend_from_slice(&[0, 0, 0, 0, b'a', b'b', b'c']);
        p
    }

    /// An outer IPv4 header (192.0.2.2 -> 192.0.2.1: reversed, to check the order) around `body`.
    fn outer(proto: u8, body: &[u8]) -> Vec<u8> {
        let total = (20 + body.len()) as u16;
        let mut p = vec![0x45, 0];
        p.extend_from_slice(&total.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 0, 64, proto, 0, 0, 192, 0, 2, 2, 192, 0, 2, 1]);
        p.extend_from_slice(body);
        p
    }

    fn udp(dport: u16, body: &[u8]) -> Vec<u8> {
        let mut u = vec![0xC0, 0x01];
        u.extend_from_slice(&dport.to_be_bytes());
        u.extend_from_slice(&((8 + body.len()) as u16).to_be_bytes());
        u.extend_from_slice(&[0, 0]);
        u.extend_from_slice(body);
        u
    }

    fn eth(etype: u16, body: &[u8]) -> Vec<u8> {
        let mut f = MAC.to_vec();
        f.extend_from_slice(&etype.to_be_bytes());
        f.extend_from_slice(body);
        f
    }

    /// Decodes `frame` to the inner TCP segment and returns its chain's texts.
    fn chain_of(link: Link, frame: &[u8]) -> Vec<String> {
        let mut st = DecodeStats::default();
        let seg = decode(link, frame, &mut st).unwrap_or_else(|| panic!("no TCP: {st:?}"));
        assert_eq!((seg.sport, seg.dport, seg.payload), (1234, 80, 3));
        chain_texts(seg.tunnel).to_vec()
    }

    fn unsupported_of(link: Link, frame: &[u8]) -> String {
        let mut st = DecodeStats::default();
        assert!(decode(link, frame, &mut st).is_none());
        assert_eq!(st.non_ip, 1, "{st:?}");
        st.unsupported.keys().next().unwrap().to_string()
    }

    const GRE_ENDS: &str = "192.0.2.1-192.0.2.2";

    #[test]
    fn vlan_qinq_vntag_pbb_fabricpath() {
        let ip = v4_tcp();
        let mut q = vec![0x20, 0x64, 0x81, 0x00, 0x00, 0xC8, 0x08, 0x00];
        q.extend_from_slice(&ip);
        assert_eq!(
            chain_of(Link::Ethernet, &eth(0x88A8, &q)),
            ["vlan 100", "vlan 200"]
        );
        let mut vn = vec![0x80, 1, 0, 2, 0x08, 0x00];
        vn.extend_from_slice(&ip);
        assert_eq!(chain_of(Link::Ethernet, &eth(0x8926, &vn)), ["vntag"]);
        let mut pbb = vec![0, 0, 0x30, 0x39];
        pbb.extend(eth(0x0800, &ip));
        assert_eq!(chain_of(Link::Ethernet, &eth(0x88E7, &pbb)), ["pbb 12345"]);
        let mut fp = vec![0x01, 0x3F];
        fp.extend(eth(0x8100, &[0, 7, 0x08, 0x00]));
        fp.extend_from_slice(&ip);
        assert_eq!(
            chain_of(Link::Ethernet, &eth(0x8903, &fp)),
            ["fabricpath", "vlan 7"]
        );
    }

    #[test]
    fn mpls_ip_control_word_and_ethernet() {
        let ip = v4_tcp();
        let labels = [0x00, 0x01, 0x00, 0x40, 0x00, 0x02, 0x01, 0x40]; // two labels, S on the second
        let mut m = labels.to_vec();
        m.extend_from_slice(&ip);
        assert_eq!(chain_of(Link::Ethernet, &eth(0x8847, &m)), ["mpls"]);
        let mut cw = labels.to_vec();
        cw.extend_from_slice(&[0, 0, 0, 1]);
        cw.extend(eth(0x0800, &ip));
        assert_eq!(chain_of(Link::Ethernet, &eth(0x8847, &cw)), ["mpls"]);
        let mut eompls = labels.to_vec();
        eompls.extend(eth(0x0800, &ip));
        eompls[8] = 0x12; // a MAC starting with nibble 0 would read as a control word
        assert_eq!(chain_of(Link::Ethernet, &eth(0x8847, &eompls)), ["mpls"]);
        // a stack that never ends is malformed, not a loop
        let mut st = DecodeStats::default();
        assert!(decode(Link::Ethernet, &eth(0x8847, &[0; 8]), &mut st).is_none());
        assert_eq!(st.malformed, 1);
    }

    #[test]
    fn pppoe_ppp_hdlc_fddi_llc() {
        let ip = v4_tcp();
        let mut s = vec![0x11, 0, 0x12, 0x34, 0, 0, 0x00, 0x21];
        s.extend_from_slice(&ip);
        assert_eq!(chain_of(Link::Ethernet, &eth(0x8864, &s)), ["pppoe 4660"]);
        assert_eq!(chain_of(Link::PppEther, &s), ["pppoe 4660"]);
        let mut ppp = vec![0xFF, 0x03, 0x00, 0x21];
        ppp.extend_from_slice(&ip);
        assert!(chain_of(Link::Ppp, &ppp).is_empty());
        assert!(chain_of(Link::PppHdlc, &ppp).is_empty());
        assert!(chain_of(Link::Ppp, &ppp[2..]).is_empty());
        let mut compressed = vec![0x21];
        compressed.extend_from_slice(&ip);
        assert!(chain_of(Link::Ppp, &compressed).is_empty());
        let mut hdlc = vec![0x0F, 0x00, 0x08, 0x00];
        hdlc.extend_from_slice(&ip);
        assert!(chain_of(Link::CHdlc, &hdlc).is_empty());
        assert!(chain_of(Link::PppHdlc, &hdlc).is_empty());
        let snap = [0xAA, 0xAA, 0x03, 0, 0, 0, 0x08, 0x00];
        let mut fddi = vec![0x50];
        fddi.extend_from_slice(&MAC);
        fddi.extend_from_slice(&snap);
        fddi.extend_from_slice(&ip);
        assert!(chain_of(Link::Fddi, &fddi).is_empty());
        let mut dot3 = snap.to_vec();
        dot3.extend_from_slice(&ip);
        let len = dot3.len() as u16;
        assert!(chain_of(Link::Ethernet, &eth(len, &dot3)).is_empty());
        assert_eq!(
            unsupported_of(Link::Ethernet, &eth(0x0026, &[0x42, 0x42, 0x03])),
            "LLC SAP 0x42"
        );
        let mut lcp = vec![0xFF, 0x03, 0xC0, 0x21];
        lcp.extend_from_slice(&[0; 8]);
        assert_eq!(unsupported_of(Link::Ppp, &lcp), "PPP protocol 0xc021");
    }

    fn wifi_frame(fc: [u8; 2], qos: bool) -> Vec<u8> {
        let mut f = fc.to_vec();
        f.extend_from_slice(&[0; 22]);
        if fc[1] & 0x03 == 0x03 {
            f.extend_from_slice(&[0; 6]);
        }
        if qos {
            f.extend_from_slice(&[0, 0]);
        }
        f.extend_from_slice(&[0xAA, 0xAA, 0x03, 0, 0, 0, 0x08, 0x00]);
        f.extend(v4_tcp());
        f
    }

    #[test]
    fn wifi_data_qos_wds_radiotap_and_what_is_not_data() {
        assert!(chain_of(Link::Wifi, &wifi_frame([0x08, 0x01], false)).is_empty());
        assert!(chain_of(Link::Wifi, &wifi_frame([0x88, 0x02], true)).is_empty());
        assert!(chain_of(Link::Wifi, &wifi_frame([0x88, 0x03], true)).is_empty());
        let mut rt = vec![0, 0, 8, 0, 0, 0, 0, 0];
        rt.extend(wifi_frame([0x08, 0x02], false));
        assert!(chain_of(Link::Radiotap, &rt).is_empty());
        assert_eq!(
            unsupported_of(Link::Wifi, &wifi_frame([0x80, 0x00], false)),
            "802.11 management or control frame"
        );
        assert_eq!(
            unsupported_of(Link::Wifi, &wifi_frame([0x08, 0x41], false)),
            "802.11 protected (encrypted) frame"
        );
        assert_eq!(
            unsupported_of(Link::Wifi, &wifi_frame([0x48, 0x01], false)),
            "802.11 data frame without payload"
        );
    }

    #[test]
    fn ip_in_ip_both_ways_and_six_in_four() {
        let ip = v4_tcp();
        let f = eth(0x0800, &outer(4, &ip));
        assert_eq!(chain_of(Link::Ethernet, &f), [format!("ip {GRE_ENDS}")]);
        // the same tunnel seen from the other end is the same chain
        let mut back = outer(4, &ip);
        back[12..20].copy_from_slice(&[192, 0, 2, 1, 192, 0, 2, 2]);
        assert_eq!(chain_of(Link::Raw, &back), [format!("ip {GRE_ENDS}")]);
        let mut v6 = vec![0x60, 0, 0, 0, 0, 23, 6, 64];
        v6.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        v6.extend_from_slice(&[0; 11]);
        v6.push(1);
        v6.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        v6.extend_from_slice(&[0; 11]);
        v6.push(2);
        v6.extend_from_slice(&ip[20..]);
        assert_eq!(
            chain_of(Link::Raw, &outer(41, &v6)),
            [format!("ip {GRE_ENDS}")]
        );
    }

    #[test]
    fn gre_flavours() {
        let ip = v4_tcp();
        let inner_eth = eth(0x0800, &ip);
        let gre = |flags: u16, proto: u16, extra: &[u8], body: &[u8]| {
            let mut g = flags.to_be_bytes().to_vec();
            g.extend_from_slice(&proto.to_be_bytes());
            g.extend_from_slice(extra);
            g.extend_from_slice(body);
            eth(0x0800, &outer(47, &g))
        };
        let want = vec![format!("gre {GRE_ENDS}")];
        assert_eq!(chain_of(Link::Ethernet, &gre(0, 0x0800, &[], &ip)), want);
        // checksum, key and sequence number present
        assert_eq!(
            chain_of(Link::Ethernet, &gre(0xB000, 0x0800, &[0; 12], &ip)),
            want
        );
        assert_eq!(
            chain_of(Link::Ethernet, &gre(0x2000, 0x6558, &[0; 4], &inner_eth)),
            want
        );
        assert_eq!(
            chain_of(Link::Ethernet, &gre(0, 0x88BE, &[], &inner_eth)),
            want
        );
        let mut e2 = vec![0x10, 0, 0, 0, 0, 0, 0, 0];
        e2.extend_from_slice(&inner_eth);
        assert_eq!(
            chain_of(Link::Ethernet, &gre(0x1000, 0x88BE, &[0; 4], &e2)),
            want
        );
        let mut e3 = vec![0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        e3.extend_from_slice(&[0; 8]); // platform-specific subheader (O bit)
        e3.extend_from_slice(&inner_eth);
        assert_eq!(
            chain_of(Link::Ethernet, &gre(0x1000, 0x22EB, &[0; 4], &e3)),
            want
        );
        let mut pptp = vec![0xFF, 0x03, 0x00, 0x21];
        pptp.extend_from_slice(&ip);
        assert_eq!(
            chain_of(Link::Ethernet, &gre(0x3081, 0x880B, &[0; 12], &pptp)),
            want
        );
        let mut wccp = vec![0, 0, 0, 0];
        wccp.extend_from_slice(&ip);
        assert_eq!(chain_of(Link::Ethernet, &gre(0, 0x883E, &[], &wccp)), want);
        assert_eq!(
            chain_of(
                Link::Ethernet,
                &gre(0, 0x8200, &[], &wifi_frame([0x08, 0x01], false))
            ),
            want
        );
        assert_eq!(
            unsupported_of(Link::Ethernet, &gre(0, 0x1234, &[], &ip)),
            "GRE protocol 0x1234"
        );
        assert_eq!(
            unsupported_of(Link::Ethernet, &gre(2, 0x0800, &[], &ip)),
            "GRE version 2"
        );
    }

    #[test]
    fn udp_tunnels() {
        let ip = v4_tcp();
        let inner_eth = eth(0x0800, &ip);
        let mut vx = vec![0x08, 0, 0, 0, 0, 0, 42, 0];
        vx.extend_from_slice(&inner_eth);
        assert_eq!(
            chain_of(Link::Raw, &outer(17, &udp(4789, &vx))),
            [format!("vxlan {GRE_ENDS} vni 42")]
        );
        let mut gn = vec![0x01, 0, 0x65, 0x58, 0, 0, 7, 0, 1, 2, 3, 4];
        gn.extend_from_slice(&inner_eth);
        assert_eq!(
            chain_of(Link::Raw, &outer(17, &udp(6081, &gn))),
            [format!("geneve {GRE_ENDS} vni 7")]
        );
        let mut gtp = vec![0x34, 0xFF, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0x85, 1, 0, 0, 0];
        gtp.extend_from_slice(&ip);
        assert_eq!(
            chain_of(Link::Raw, &outer(17, &udp(2152, &gtp))),
            [format!("gtpv1 {GRE_ENDS}")]
        );
        let mut ay = vec![0x41, 0x52, 0x11, 4, 0, 0, 0, 0];
        ay.extend_from_slice(&[0; 16]); // identity: 1 << 4 bytes
        ay.extend_from_slice(&[0; 20]); // signature: 5 * 4 bytes
        ay.extend_from_slice(&ip);
        assert_eq!(
            chain_of(Link::Raw, &outer(17, &udp(5072, &ay))),
            [format!("ayiya {GRE_ENDS}")]
        );
        // GTP echo and a plain datagram on 3544 are UDP, not tunnels
        let mut st = DecodeStats::default();
        let echo = [0x32, 0x01, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0];
        assert!(decode(Link::Raw, &outer(17, &udp(2152, &echo)), &mut st).is_none());
        assert!(decode(Link::Raw, &outer(17, &udp(3544, b"not ipv6")), &mut st).is_none());
        assert_eq!(st.non_tcp, 2);
    }

    /// The checksum a header or segment must carry so that it sums right.
    fn fill(sum: u64) -> [u8; 2] {
        let mut s = sum;
        while s >> 16 != 0 {
            s = (s & 0xFFFF) + (s >> 16);
        }
        (!(s as u16)).to_be_bytes()
    }

    /// An IPv4 + TCP packet with both checksums right (10.0.0.1:1234 -> 10.0.0.2:80).
    fn v4_tcp_summed() -> Vec<u8> {
        let mut p = v4_tcp();
        let sum = crate::decode::ones_sum(&p[..20], 0);
        p[10..12].copy_from_slice(&fill(sum));
        let (src, dst) = (Addr::V4([10, 0, 0, 1]), Addr::V4([10, 0, 0, 2]));
        let sum = crate::decode::ones_sum(&p[20..], crate::decode::pseudo_sum(src, dst, 6, 23));
        p[36..38].copy_from_slice(&fill(sum));
        p
    }

    /// `body` in UDP to `dport`, in an outer IPv4 (192.0.2.2 -> 192.0.2.1) or
    /// IPv6 (2001:db8::2 -> 2001:db8::1) header, with UDP checksum `csum`
    /// (`None`: the right one), both headers' other checksums right.
    fn udp_frame(v6: bool, dport: u16, body: &[u8], csum: Option<u16>) -> Vec<u8> {
        let mut u = udp(dport, body);
        let (src, dst) = if v6 {
            let mut a = [0u8; 16];
            a[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
            let mut b = a;
            a[15] = 2;
            b[15] = 1;
            (Addr::V6(a), Addr::V6(b))
        } else {
            (Addr::V4([192, 0, 2, 2]), Addr::V4([192, 0, 2, 1]))
        };
        let right = fill(crate::decode::ones_sum(
            &u,
            crate::decode::pseudo_sum(src, dst, 17, u.len()),
        ));
        u[6..8].copy_from_slice(&csum.map_or(right, u16::to_be_bytes));
        if !v6 {
            let mut p = outer(17, &u);
            let sum = crate::decode::ones_sum(&p[..20], 0);
            p[10..12].copy_from_slice(&fill(sum));
            return eth(ETH_P_IP, &p);
        }
        let mut p = vec![0x60, 0, 0, 0];
        p.extend_from_slice(&(u.len() as u16).to_be_bytes());
        p.extend_from_slice(&[17, 64]);
        for a in [src, dst] {
            p.extend_from_slice(raw_bytes(&a));
        }
        p.extend_from_slice(&u);
        eth(ETH_P_IPV6, &p)
    }

    /// (TCP found, bad_checksums, non_tcp) for `frame` decoded with checksums checked.
    fn checked(frame: &[u8]) -> (bool, u64, u64) {
        let mut st = DecodeStats {
            check_checksums: true,
            ..Default::default()
        };
        let seg = decode(Link::Ethernet, frame, &mut st);
        if let Some(seg) = &seg {
            assert!(!seg.bad_checksum, "the inner TCP checksum is right");
        }
        (seg.is_some(), st.bad_checksums, st.non_tcp)
    }

    #[test]
    fn udp_tunnel_checksums_as_zeek_checks_them() {
        let mut vx = vec![0x08, 0, 0, 0, 0, 0, 42, 0];
        vx.extend(eth(ETH_P_IP, &v4_tcp_summed()));
        let mut gn = vec![0x00, 0, 0x65, 0x58, 0, 0, 7, 0];
        gn.extend(eth(ETH_P_IP, &v4_tcp_summed()));
        let mut gtp = vec![0x30, 0xFF, 0, 43, 0, 0, 0, 9];
        gtp.extend(v4_tcp_summed());
        let decapsulated = (true, 0, 0);
        let dropped = (false, 1, 0);
        for v6 in [false, true] {
            for (port, body) in [(4789, &vx), (6081, &gn), (2152, &gtp)] {
                let good = udp_frame(v6, port, body, None);
                assert_eq!(checked(&good), decapsulated, "v6 {v6} port {port}");
                let bad = udp_frame(v6, port, body, Some(0xBEEF));
                assert_eq!(checked(&bad), dropped, "v6 {v6} port {port}");
                // off (the default): not looked at
                let mut st = DecodeStats::default();
                assert!(decode(Link::Ethernet, &bad, &mut st).is_some());
                assert_eq!(st.bad_checksums, 0);
                // cut by the snapshot length: not checked, the headers still decode
                assert_eq!(checked(&bad[..bad.len() - 1]), decapsulated);
            }
            // zero: "no checksum" over IPv4; over IPv6 checked and wrong...
            let zero = |port, body| checked(&udp_frame(v6, port, body, Some(0)));
            let zero_v6 = if v6 { dropped } else { decapsulated };
            assert_eq!(zero(6081, &gn), zero_v6);
            assert_eq!(zero(2152, &gtp), zero_v6);
            // ...but VXLAN may send zero over IPv6 too (RFC 7348; Zeek's vxlan_ports rule)
            assert_eq!(zero(4789, &vx), decapsulated);
            // only with the VNI flag set
            let mut no_flag = vx.clone();
            no_flag[0] = 0;
            assert_eq!(zero(4789, &no_flag), zero_v6);
        }
        // a UDP datagram that is no tunnel is plain UDP, whatever its checksum
        let dns = udp_frame(true, 53, b"not a tunnel", Some(0xBEEF));
        assert_eq!(checked(&dns), (false, 0, 1));
    }

    #[test]
    fn teredo_with_origin_indication() {
        let mut v6 = vec![0x60, 0, 0, 0, 0, 23, 6, 64];
        v6.extend_from_slice(&[0x20, 0x01, 0, 0]);
        v6.extend_from_slice(&[0; 12]);
        v6.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        v6.extend_from_slice(&[0; 12]);
        v6.extend_from_slice(&v4_tcp()[20..]);
        let mut t = vec![0, 0, 0x0D, 0x80, 0, 0, 0, 0];
        t.extend_from_slice(&v6);
        assert_eq!(
            chain_of(Link::Raw, &outer(17, &udp(3544, &t))),
            [format!("teredo {GRE_ENDS}")]
        );
    }

    #[test]
    fn the_chain_table_is_bounded() {
        // a table of its own: the process-wide one is shared by the other tests
        let mut c = Chains::default();
        for i in 0..MAX_CHAINS {
            assert_eq!(c.text_id(vec![format!("vlan {i}")]), (i as u32 + 1, false));
        }
        let (id, overflow) = c.text_id(vec!["gre 10.0.0.1-10.0.0.2".into()]);
        assert!(overflow);
        assert_eq!(c.texts[id as usize - 1][..], [OVERFLOW.to_string()]);
        assert_eq!(c.text_id(vec!["mpls".into()]), (id, true));
        assert_eq!(c.text_id(vec!["vlan 7".into()]), (8, false)); // known ones keep theirs
        assert_eq!(c.texts.len(), MAX_CHAINS + 1);
    }

    #[test]
    fn chains_are_interned_and_deep_nesting_is_bounded() {
        let a = [Layer::Vlan(1), Layer::Mpls];
        assert_eq!(intern(&a), intern(&[Layer::Vlan(1), Layer::Mpls]));
        assert_ne!(intern(&a), intern(&a[..1]));
        assert_eq!(intern(&[]), 0);
        assert_eq!(
            intern_texts(vec!["vlan 1".into(), "mpls".into()]),
            intern(&a)
        );
        // 40 VLAN tags: refused as too deep, not decoded
        let mut tags = Vec::new();
        for _ in 0..40 {
            tags.extend_from_slice(&[0, 1, 0x81, 0x00]);
        }
        tags.extend_from_slice(&[0, 1, 0x08, 0x00]);
        tags.extend(v4_tcp());
        assert_eq!(
            unsupported_of(Link::Ethernet, &eth(0x8100, &tags)),
            "more than 32 layers"
        );
    }
}
