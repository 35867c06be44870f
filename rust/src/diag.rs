//! The sock_diag dump's socket messages cut to their fixed heads, for
//! `tcplens.sources.columns` (issue 19: `tcplens status` at 100k sockets).
//!
//! Why here: a receive buffer where TIME_WAIT minisockets are interleaved
//! with full sockets has messages of two lengths, so Python cannot take a
//! field with one strided slice; it first walks the messages (one Python
//! step each) and joins their heads. This walk and copy is the part that is
//! per socket; the netlink socket, `recv`, control messages and errors and the
//! columns stay in Python, and `tests/sources/test_diag_engine.py` holds this
//! walk equal to the Python one.
//!
//! The two counting passes of `tcplens status`'s summary (`state_counts`, then
//! `details`) read the stored messages' fields where the Python columns are
//! cut from (offsets handed over from the one struct declaration): ~50 ms of
//! C-level Python at 100k sockets, ~2 ms here. What to count (which states are
//! busy, which are closing ones, ranking ties, texts) is decided in
//! `tcplens.analysis.summary`, whose Python passes are the reference that
//! `tests/analysis/test_summary_engine.py` holds these equal to.
//!
//! The netlink header is in the host's byte order (`nlmsg_len` u32 at 0,
//! `nlmsg_type` u16 at 4), messages are 4-byte aligned (`NLMSG_ALIGN`).

#![forbid(unsafe_code)]

use std::collections::{HashMap, HashSet};

/// `nlmsghdr`: what every netlink message starts with.
const NLMSG_HDRLEN: usize = 16;

/// The heads of a run of socket messages, and where the run stopped.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Heads {
    /// The first `head` bytes of each socket message, back to back.
    pub data: Vec<u8>,
    /// How many messages were taken.
    pub count: usize,
    /// Offset of the first message not taken: another type (DONE, ERROR),
    /// a malformed length, or (when less than a header is left) the end.
    pub stop: usize,
}

/// Takes socket messages (`nlmsg_type == msg_type`, at least `head` bytes,
/// whole inside `buf`) from offset `start` on, until the first that is not one.
///
/// The same rule as `columns._messages` in Python: a message is a socket's
/// when its type matches, its length is at least `head` and it ends inside
/// the buffer; anything else ends the run, and the caller decides what it is.
pub fn socket_heads(buf: &[u8], start: usize, head: usize, msg_type: u16) -> Heads {
    let mut out = Heads {
        data: Vec::with_capacity(buf.len().saturating_sub(start) / 2),
        count: 0,
        stop: start,
    };
    let mut offset = start;
    while let Some(header) = buf.get(offset..offset.saturating_add(NLMSG_HDRLEN)) {
        let (Some(len), Some(kind)) = (header.get(0..4), header.get(4..6)) else {
            break;
        };
        let mut len_bytes = [0u8; 4];
        len_bytes.copy_from_slice(len);
        let mut kind_bytes = [0u8; 2];
        kind_bytes.copy_from_slice(kind);
        let length = u32::from_ne_bytes(len_bytes) as usize;
        if u16::from_ne_bytes(kind_bytes) != msg_type || length < head {
            break;
        }
        let end = match offset.checked_add(length) {
            Some(end) if end <= buf.len() => end,
            _ => break,
        };
        match buf.get(offset..offset + head) {
            Some(bytes) => out.data.extend_from_slice(bytes),
            None => break,
        }
        out.count += 1;
        // NLMSG_ALIGN; the last message's padding may reach past the end, which ends the walk
        offset = end.saturating_add(3) & !3;
    }
    out.stop = offset.min(buf.len());
    out
}

/// Where the fields a summary counts sit in a socket message, as offsets from
/// the message start; handed over from the one `inet_diag_msg` declaration in
/// `tcplens.sources.netlink` (via `columns.FIELDS`), never restated here.
/// `sport`/`dport` are in network order, `expires`/`inode` in the host's.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    pub state: usize,
    pub timer: usize,
    pub sport: usize,
    pub dport: usize,
    pub dst: usize,
    pub expires: usize,
    pub inode: usize,
}

/// Sockets stored back to back at a fixed stride (`columns._Block`): a
/// uniform receive buffer or the heads `socket_heads` compacted.
#[derive(Debug, Clone, Copy)]
pub struct Block<'a> {
    pub data: &'a [u8],
    pub stride: usize,
    pub count: usize,
    pub tcp: bool,
    /// 4 or 6: the peer key's first byte (`summary._peer_keys`)
    pub family: u8,
}

impl<'a> Block<'a> {
    fn messages(&self) -> impl Iterator<Item = Message<'a>> + 'a {
        let stride = self.stride.max(1);
        self.data.chunks(stride).take(self.count).map(Message)
    }
}

/// One socket message; a field missing from a short message reads as 0.
#[derive(Clone, Copy)]
struct Message<'a>(&'a [u8]);

impl Message<'_> {
    fn byte(self, at: usize) -> u8 {
        self.0.get(at).copied().unwrap_or(0)
    }
    fn bytes<const N: usize>(self, at: usize) -> [u8; N] {
        let mut out = [0u8; N];
        if let Some(src) = self.0.get(at..at.saturating_add(N)) {
            out.copy_from_slice(src);
        }
        out
    }
    fn port(self, at: usize) -> u16 {
        u16::from_be_bytes(self.bytes(at))
    }
    fn word(self, at: usize) -> u32 {
        u32::from_ne_bytes(self.bytes(at))
    }
}

/// Sockets per kernel state code, TCP and UDP apart, and per address family.
#[derive(Debug, PartialEq, Eq)]
pub struct StateCounts {
    pub tcp: Vec<u64>,
    pub udp: Vec<u64>,
    pub v4: u64,
    pub v6: u64,
}

/// The first counting pass of `summary._from_columns`: state codes and families.
pub fn state_counts(blocks: &[Block<'_>], layout: &Layout) -> StateCounts {
    let mut out = StateCounts {
        tcp: vec![0; 256],
        udp: vec![0; 256],
        v4: 0,
        v6: 0,
    };
    for block in blocks {
        let counts = if block.tcp {
            &mut out.tcp
        } else {
            &mut out.udp
        };
        let mut n = 0u64;
        for message in block.messages() {
            counts[usize::from(message.byte(layout.state))] += 1;
            n += 1;
        }
        if block.family == 6 {
            out.v6 += n;
        } else {
            out.v4 += n;
        }
    }
    out
}

/// What the second pass counts, decided in Python from the first pass's counts.
#[derive(Debug)]
pub struct Plan<'a> {
    /// per state code: the rank of its busy state, or `NONE`
    pub rank_of_code: &'a [u8],
    /// per rank: an active-close state (peers, and ports only on listeners)
    pub active: &'a [bool],
    /// per state code: 1 for LISTEN
    pub listen_code: &'a [u8],
    /// per state code: the slot (0, 1) of a state whose oldest timer is wanted, or `NONE`
    pub oldest_of_code: &'a [u8],
    /// the `timer` code of TIME_WAIT and orphaned FIN_WAIT2 sockets
    pub timewait_timer: u8,
    pub top: usize,
    /// the socket inodes some process was seen to hold (the descriptor tally)
    pub found: &'a HashSet<u32>,
}

/// "No rank" / "no slot" in a [`Plan`] table.
pub const NONE: u8 = u8::MAX;
/// A peer: family (1 byte), address (16, an IPv4 one in the first 4), port (2, network order).
pub type PeerKey = [u8; 19];

/// One busy state's counts.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Detail {
    /// the top ports, most sockets first, ties by port
    pub ports: Vec<(u16, u64)>,
    /// every peer with at least as many sockets as the `top`-th (ties are settled on their text)
    pub peers: Vec<(PeerKey, u64)>,
    /// sockets without an inode
    pub ownerless: u64,
    /// of those, the ones on a timewait timer
    pub ownerless_timed: u64,
}

/// The oldest timed socket of one state.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Oldest {
    pub total: u64,
    pub timed: u64,
    /// (milliseconds left, the socket's first `head` bytes): the first with the fewest
    pub first: Option<(u32, Vec<u8>)>,
}

/// The second pass's results.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Details {
    pub busy: Vec<Detail>,
    /// (inode, rank) of each tallied inode in a busy state; the higher rank wins a repeat
    pub rank: Vec<(u32, u8)>,
    pub oldest: Vec<Oldest>,
}

/// The second counting pass of `summary._from_columns` over the TCP sockets:
/// ports, peers and owners of the busy states, and the oldest timers.
pub fn details(blocks: &[Block<'_>], layout: &Layout, plan: &Plan<'_>, head: usize) -> Details {
    let ranks = plan.active.len();
    let code = |message: Message<'_>| usize::from(message.byte(layout.state));
    let table = |t: &[u8], c: usize| t.get(c).copied().unwrap_or(NONE);
    let tcp: Vec<&Block<'_>> = blocks.iter().filter(|b| b.tcp).collect();
    let mut listening = vec![false; 1 << 16];
    if plan.active.iter().any(|&a| a) {
        for message in tcp.iter().flat_map(|b| b.messages()) {
            if table(plan.listen_code, code(message)) == 1 {
                listening[usize::from(message.port(layout.sport))] = true;
            }
        }
    }
    let mut ports = vec![vec![0u64; 1 << 16]; ranks];
    let mut peers: Vec<HashMap<PeerKey, u64>> = vec![HashMap::new(); ranks];
    let mut busy: Vec<Detail> = (0..ranks).map(|_| Detail::default()).collect();
    let mut rank: HashMap<u32, u8> = HashMap::new();
    let mut oldest: Vec<Oldest> = Vec::new();
    for block in &tcp {
        for message in block.messages() {
            let c = code(message);
            let timed = message.byte(layout.timer) == plan.timewait_timer;
            let inode = message.word(layout.inode);
            let k = table(plan.rank_of_code, c);
            if let (Some(detail), Some(counts), Some(&active)) = (
                busy.get_mut(usize::from(k)),
                ports.get_mut(usize::from(k)),
                plan.active.get(usize::from(k)),
            ) {
                let port = message.port(layout.sport);
                let on_listener = listening[usize::from(port)];
                if !active || on_listener {
                    counts[usize::from(port)] += 1;
                }
                if active && !on_listener {
                    let mut key = [0u8; 19];
                    key[0] = block.family;
                    let address: [u8; 16] = message.bytes(layout.dst);
                    let width = if block.family == 4 { 4 } else { 16 };
                    key[1..1 + width].copy_from_slice(&address[..width]);
                    key[17..19].copy_from_slice(&message.bytes::<2>(layout.dport));
                    if let Some(map) = peers.get_mut(usize::from(k)) {
                        *map.entry(key).or_insert(0) += 1;
                    }
                }
                if inode == 0 {
                    detail.ownerless += 1;
                    if timed {
                        detail.ownerless_timed += 1;
                    }
                }
                if plan.found.contains(&inode) {
                    let held = rank.entry(inode).or_insert(k);
                    *held = (*held).max(k);
                }
            }
            let slot = table(plan.oldest_of_code, c);
            if slot != NONE {
                let slot = usize::from(slot);
                if oldest.len() <= slot {
                    oldest.resize_with(slot + 1, Oldest::default);
                }
                let entry = &mut oldest[slot];
                entry.total += 1;
                if timed {
                    entry.timed += 1;
                    let expires = message.word(layout.expires);
                    if entry.first.as_ref().is_none_or(|(best, _)| expires < *best) {
                        let bytes = message.0.get(..head).unwrap_or(message.0);
                        entry.first = Some((expires, bytes.to_vec()));
                    }
                }
            }
        }
    }
    for ((detail, counts), map) in busy.iter_mut().zip(&ports).zip(&peers) {
        let mut named: Vec<(u16, u64)> = (0..=u16::MAX)
            .zip(counts.iter().copied())
            .filter(|&(_, n)| n > 0)
            .collect();
        named.sort_by_key(|&(port, n)| (std::cmp::Reverse(n), port));
        named.truncate(plan.top);
        detail.ports = named;
        if plan.top > 0 && !map.is_empty() {
            let mut values: Vec<u64> = map.values().copied().collect();
            values.sort_unstable_by(|a, b| b.cmp(a));
            let kth = values[values.len().min(plan.top) - 1];
            let mut chosen: Vec<(PeerKey, u64)> = map
                .iter()
                .filter(|&(_, &n)| n >= kth)
                .map(|(key, &n)| (*key, n))
                .collect();
            chosen.sort_unstable();
            detail.peers = chosen;
        }
    }
    let mut rank: Vec<(u32, u8)> = rank.into_iter().collect();
    rank.sort_unstable();
    Details { busy, rank, oldest }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: usize = 88;
    const SOCK: u16 = 20;

    fn message(kind: u16, length: u32, fill: u8) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&length.to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.resize(((length as usize) + 3) & !3, fill);
        m
    }

    #[test]
    fn takes_mixed_lengths_and_stops_at_another_type() {
        let mut buf = message(SOCK, 88, 1);
        buf.extend(message(SOCK, 130, 2)); // padded to 132
        buf.extend(message(3, 20, 0)); // NLMSG_DONE
        let heads = socket_heads(&buf, 0, HEAD, SOCK);
        assert_eq!(heads.count, 2);
        assert_eq!(heads.stop, 88 + 132);
        assert_eq!(heads.data.len(), 2 * HEAD);
        assert_eq!(&heads.data[..HEAD], &buf[..HEAD]);
        assert_eq!(&heads.data[HEAD..], &buf[88..88 + HEAD]);
    }

    #[test]
    fn short_or_overlong_messages_end_the_run_without_panicking() {
        let mut buf = message(SOCK, 88, 1);
        buf.extend(message(SOCK, 40, 0)); // shorter than a head
        assert_eq!(socket_heads(&buf, 0, HEAD, SOCK).stop, 88);
        let mut cut = message(SOCK, 88, 1);
        cut.extend_from_slice(&500u32.to_ne_bytes());
        cut.extend_from_slice(&SOCK.to_ne_bytes());
        cut.extend_from_slice(&[0; 10]); // claims 500 bytes, has 16
        assert_eq!(socket_heads(&cut, 0, HEAD, SOCK).stop, 88);
        let huge = message(SOCK, u32::MAX, 0);
        assert_eq!(socket_heads(&huge[..16], 0, HEAD, SOCK).count, 0);
        assert_eq!(socket_heads(&[], 0, HEAD, SOCK), Heads::default());
        assert_eq!(socket_heads(&buf, 10_000, HEAD, SOCK).count, 0);
        let mut unpadded = message(SOCK, 130, 2);
        unpadded.truncate(130); // the last message's padding is not in the buffer
        assert_eq!(
            socket_heads(&unpadded, 0, HEAD, SOCK),
            Heads {
                data: unpadded[..HEAD].to_vec(),
                count: 1,
                stop: 130
            }
        );
    }

    #[test]
    fn a_tail_shorter_than_a_header_is_left_at_stop() {
        let mut buf = message(SOCK, 88, 1);
        buf.extend_from_slice(&[7; 10]);
        let heads = socket_heads(&buf, 0, HEAD, SOCK);
        assert_eq!((heads.count, heads.stop), (1, 88));
    }

    /// A 96-byte socket message for the counting passes (offsets of [`LAYOUT`]).
    fn sock(state: u8, timer: u8, sport: u16, dst: u8, inode: u32, expires: u32) -> Vec<u8> {
        let mut m = message(SOCK, 96, 0);
        m[LAYOUT.state] = state;
        m[LAYOUT.timer] = timer;
        m[LAYOUT.sport..LAYOUT.sport + 2].copy_from_slice(&sport.to_be_bytes());
        m[LAYOUT.dport..LAYOUT.dport + 2].copy_from_slice(&443u16.to_be_bytes());
        m[LAYOUT.dst] = dst;
        m[LAYOUT.expires..LAYOUT.expires + 4].copy_from_slice(&expires.to_ne_bytes());
        m[LAYOUT.inode..LAYOUT.inode + 4].copy_from_slice(&inode.to_ne_bytes());
        m
    }

    const LAYOUT: Layout = Layout {
        state: 17,
        timer: 18,
        sport: 20,
        dport: 22,
        dst: 40,
        expires: 76,
        inode: 84,
    };

    fn block(messages: &[Vec<u8>]) -> (Vec<u8>, usize) {
        (messages.concat(), messages.len())
    }

    #[test]
    fn counts_state_codes_per_protocol_and_family() {
        let (tcp, n) = block(&[sock(1, 0, 80, 1, 5, 0), sock(6, 3, 81, 1, 0, 9)]);
        let (udp, m) = block(&[sock(7, 0, 53, 0, 6, 0)]);
        let blocks = [
            Block {
                data: &tcp,
                stride: 96,
                count: n,
                tcp: true,
                family: 4,
            },
            Block {
                data: &udp,
                stride: 96,
                count: m,
                tcp: false,
                family: 6,
            },
        ];
        let counts = state_counts(&blocks, &LAYOUT);
        assert_eq!((counts.tcp[1], counts.tcp[6], counts.udp[7]), (1, 1, 1));
        assert_eq!((counts.v4, counts.v6), (2, 1));
        // a block claiming more messages than it holds counts what is there
        let short = [Block {
            data: &tcp[..100],
            stride: 96,
            count: 9,
            tcp: true,
            family: 4,
        }];
        assert_eq!(state_counts(&short, &LAYOUT).tcp[1], 1);
    }

    #[test]
    fn details_name_listener_ports_peers_owners_and_the_first_oldest() {
        let messages = [
            sock(10, 0, 8080, 0, 1, 0),   // LISTEN on 8080
            sock(6, 3, 8080, 7, 0, 500),  // TIME_WAIT on the listener's port
            sock(6, 3, 40000, 8, 0, 300), // towards peer 8
            sock(6, 3, 40001, 8, 0, 300), // towards peer 8, same expiry: the first stays
            sock(6, 3, 40002, 9, 0, 900), // towards peer 9
            sock(1, 0, 8080, 8, 77, 0),   // ESTABLISHED, held by a tallied inode
        ];
        let (data, n) = block(&messages);
        let blocks = [Block {
            data: &data,
            stride: 96,
            count: n,
            tcp: true,
            family: 4,
        }];
        let mut rank_of_code = [NONE; 256];
        rank_of_code[6] = 0;
        rank_of_code[1] = 1;
        let mut listen_code = [0u8; 256];
        listen_code[10] = 1;
        let mut oldest_of_code = [NONE; 256];
        oldest_of_code[6] = 0;
        let found: HashSet<u32> = [77, 99].into_iter().collect();
        let plan = Plan {
            rank_of_code: &rank_of_code,
            active: &[true, false],
            listen_code: &listen_code,
            oldest_of_code: &oldest_of_code,
            timewait_timer: 3,
            top: 1,
            found: &found,
        };
        let out = details(&blocks, &LAYOUT, &plan, 88);
        assert_eq!(out.busy[0].ports, vec![(8080, 1)]);
        let mut peer = [0u8; 19];
        peer[0] = 4;
        peer[1] = 8;
        peer[17..19].copy_from_slice(&443u16.to_be_bytes());
        assert_eq!(out.busy[0].peers, vec![(peer, 2)]);
        assert_eq!((out.busy[0].ownerless, out.busy[0].ownerless_timed), (4, 4));
        assert_eq!(out.busy[1].ports, vec![(8080, 1)]);
        assert_eq!(out.rank, vec![(77, 1)]);
        let oldest = &out.oldest[0];
        assert_eq!((oldest.total, oldest.timed), (4, 4));
        assert_eq!(oldest.first, Some((300, messages[2][..88].to_vec())));
    }
}
