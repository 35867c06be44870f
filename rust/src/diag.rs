//! The sock_diag dump's socket messages cut to their fixed heads, for
//! `tcplens.sources.columns` (issue 19: `tcplens status` at 100k sockets).
//!
//! Why here: a receive buffer where TIME_WAIT minisockets are interleaved
//! with full sockets has messages of two lengths, so Python cannot take a
//! field with one strided slice; it first walks the messages (one Python
//! step each) and joins their heads. This walk and copy is the part that is
//! per socket; everything else stays in Python (the netlink socket, `recv`,
//! control messages and errors, the columns), and `tests/sources/test_diag_engine.py`
//! holds this walk equal to the Python one.
//!
//! The netlink header is in the host's byte order (`nlmsg_len` u32 at 0,
//! `nlmsg_type` u16 at 4), messages are 4-byte aligned (`NLMSG_ALIGN`).

#![forbid(unsafe_code)]

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
}
