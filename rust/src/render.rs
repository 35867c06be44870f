//! The two streamed outputs of `tcplens pcap`, written here so that no Python
//! object is built per connection: a JSON connection exactly as
//! `json.dumps(Connection.as_dict())` writes it, and a Zeek conn.log row
//! exactly as `"\t".join(ZeekRow.values())` does. The differential tests hold
//! both byte-identical to the Python forms of the same connections.
//!
//! What "exactly" takes: Python's `round(x, 9)` (correctly rounded, ties to
//! even, which is also what Rust's `{:.9}` does) and `repr(float)` (shortest
//! round-trip digits, exponent form below 1e-4 and from 1e16), `json.dumps`'s
//! ASCII-only string escapes, `ipaddress`'s IPv6 spelling (RFC 5952
//! compression, IPv4-mapped addresses in hex as Python 3.11 writes them), and
//! the uid `zeek.py` derives with BLAKE2b.

#![forbid(unsafe_code)]

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use blake2::digest::{Update, VariableOutput};
use blake2::Blake2bVar;

use crate::endpoint::Table;
use crate::flow::{Connection, DirStats, HistCause, HistEntry};
use crate::segment::Addr;
use crate::tracker::cause_text;

/// `repr(x)` for a Python float.
pub fn py_float_repr(x: f64, out: &mut String) {
    if x.is_nan() {
        out.push_str("NaN"); // json.dumps spelling (repr would say nan)
        return;
    }
    if x.is_infinite() {
        out.push_str(if x > 0.0 { "Infinity" } else { "-Infinity" });
        return;
    }
    // Shortest round-trip digits and a decimal exponent, e.g. "-7.8125e-3".
    let sci = format!("{x:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (negative, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if negative {
        out.push('-');
    }
    if !(-4..16).contains(&exp) {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(out, "e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
        return;
    }
    let point = exp + 1; // digits before the decimal point
    let n = digits.len() as i32;
    if point <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-point) as usize));
        out.push_str(&digits);
    } else if point >= n {
        out.push_str(&digits);
        out.extend(std::iter::repeat_n('0', (point - n) as usize));
        out.push_str(".0");
    } else {
        out.push_str(&digits[..point as usize]);
        out.push('.');
        out.push_str(&digits[point as usize..]);
    }
}

/// `round(x, 9)` for a Python float.
pub fn py_round9(x: f64) -> f64 {
    if !x.is_finite() {
        return x;
    }
    format!("{x:.9}").parse().unwrap_or(x)
}

/// A JSON string as `json.dumps` writes it (`ensure_ascii=True`).
pub fn json_str(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push('"');
}

/// An address as `tracker._ip` spells it: dotted IPv4, IPv6 as `ipaddress` does.
pub fn ip_text(addr: &Addr, out: &mut String) {
    match addr {
        Addr::V4(a) => {
            let _ = write!(out, "{}", Ipv4Addr::from(*a));
        }
        Addr::V6(a) => {
            let groups: Vec<u16> = a
                .chunks_exact(2)
                .map(|p| u16::from_be_bytes([p[0], p[1]]))
                .collect();
            // the longest run of two or more zero groups, the first of equal runs
            let (mut best, mut best_len, mut run) = (0usize, 0usize, 0usize);
            for (i, g) in groups.iter().enumerate() {
                run = if *g == 0 { run + 1 } else { 0 };
                if run > best_len {
                    best_len = run;
                    best = i + 1 - run;
                }
            }
            if best_len < 2 {
                best_len = 0;
                best = groups.len();
            }
            let hex = |gs: &[u16], out: &mut String| {
                for (i, g) in gs.iter().enumerate() {
                    if i > 0 {
                        out.push(':');
                    }
                    let _ = write!(out, "{g:x}");
                }
            };
            hex(&groups[..best], out);
            if best_len > 0 {
                out.push_str("::");
                hex(&groups[best + best_len..], out);
            }
        }
    }
}

/// Writes connections as `tcplens pcap --json` and `--zeek` rows.
pub struct Renderer<'t> {
    pub table: &'t Table,
}

impl Renderer<'_> {
    fn cause<'a>(&'a self, h: &'a HistEntry, out: &mut String) {
        let text = match &h.cause {
            HistCause::Endpoint(cause) => cause_text(self.table, cause),
            HistCause::Text(t) => t,
        };
        if h.frame != 0 {
            json_str(&format!("{text} (frame {})", h.frame), out);
        } else {
            json_str(text, out);
        }
    }

    fn state(&self, id: u8) -> &str {
        self.table
            .state_texts
            .get(usize::from(id))
            .map_or("UNKNOWN", String::as_str)
    }

    fn side(&self, addr: &Addr, port: u16, s: &DirStats, hist: &[HistEntry], out: &mut String) {
        out.push_str("{\"ip\": ");
        let mut ip = String::new();
        ip_text(addr, &mut ip);
        json_str(&ip, out);
        let _ = write!(
            out,
            ", \"port\": {port}, \"packets\": {}, \"payload_bytes\": {}, \"ip_bytes\": {}, \
             \"frame_bytes\": {}, \"flags\": {{\"syn\": {}, \"fin\": {}, \"rst\": {}, \
             \"ack\": {}, \"psh\": {}}}, \"retransmissions\": {}, \"zero_windows\": {}, \
             \"final_state\": ",
            s.packets,
            s.payload_bytes,
            s.ip_bytes,
            s.frame_bytes,
            s.syn,
            s.fin,
            s.rst,
            s.ack,
            s.psh,
            s.retransmissions,
            s.zero_windows,
        );
        json_str(hist.last().map_or("UNKNOWN", |h| self.state(h.state)), out);
        out.push_str(", \"history\": [");
        for (i, h) in hist.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            out.push_str("{\"time\": ");
            py_float_repr(py_round9(h.time), out);
            out.push_str(", \"state\": ");
            json_str(self.state(h.state), out);
            out.push_str(", \"cause\": ");
            self.cause(h, out);
            out.push('}');
        }
        out.push_str("]}");
    }

    /// `json.dumps(conn.as_dict())`.
    pub fn json(&self, c: &Connection, out: &mut String) {
        let _ = write!(out, "{{\"index\": {}, \"start\": ", c.index);
        py_float_repr(py_round9(c.start), out);
        out.push_str(", \"duration\": ");
        py_float_repr(py_round9(c.end - c.start), out);
        out.push_str(", \"orig\": ");
        self.side(&c.orig_ip, c.orig_port, &c.stats[0], &c.histories[0], out);
        out.push_str(", \"resp\": ");
        self.side(&c.resp_ip, c.resp_port, &c.stats[1], &c.histories[1], out);
        out.push_str(", \"conn_state\": ");
        json_str(c.zeek.conn_state, out);
        out.push_str(", \"history\": ");
        json_str(&c.zeek.history, out);
        out.push_str(", \"zeek\": {\"duration\": ");
        py_float_repr(py_round9(c.zeek.duration), out);
        let _ = write!(
            out,
            ", \"orig_bytes\": {}, \"resp_bytes\": {}, \"missed_bytes\": {}, \
             \"tunnel_parents\": [",
            c.zeek.orig_bytes, c.zeek.resp_bytes, c.zeek.missed_bytes
        );
        let parents = crate::encap::tunnel_parents(&crate::encap::chain_texts(c.tunnel));
        for (i, uid) in parents.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            json_str(uid, out);
        }
        out.push_str("]}");
        let _ = write!(
            out,
            ", \"completeness\": {}, \"cannot_tell\": {{",
            c.completeness
        );
        let mut first = true;
        for (name, text) in ["orig", "resp"].iter().zip(&c.cannot_tell) {
            if let Some(text) = text {
                if !first {
                    out.push_str(", ");
                }
                first = false;
                json_str(name, out);
                out.push_str(": ");
                json_str(text, out);
            }
        }
        out.push_str("}, \"notes\": [");
        for (i, note) in c.notes.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            json_str(note, out);
        }
        let _ = write!(
            out,
            "], \"first_record\": {}, \"tunnel\": [",
            c.first_record
        );
        for (i, layer) in crate::encap::chain_texts(c.tunnel).iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            json_str(layer, out);
        }
        out.push_str("]}");
    }

    /// `"\t".join(conn.zeek.values())`.
    pub fn zeek(&self, c: &Connection, out: &mut String) {
        let (mut orig_h, mut resp_h) = (String::new(), String::new());
        ip_text(&c.orig_ip, &mut orig_h);
        ip_text(&c.resp_ip, &mut resp_h);
        let ts = format!("{:.6}", c.start);
        let z = &c.zeek;
        let _ = write!(
            out,
            "{ts}\t{}\t{orig_h}\t{}\t{resp_h}\t{}\ttcp\t-\t",
            uid(&ts, &orig_h, c.orig_port, &resp_h, c.resp_port),
            c.orig_port,
            c.resp_port,
        );
        if z.duration > 0.0 {
            let _ = write!(out, "{:.6}\t{}\t{}", z.duration, z.orig_bytes, z.resp_bytes);
        } else {
            out.push_str("-\t-\t-");
        }
        let history = if z.history.is_empty() {
            "-"
        } else {
            &z.history
        };
        let _ = write!(
            out,
            "\t{}\t-\t-\t{}\t{history}\t{}\t{}\t{}\t{}\t",
            z.conn_state,
            z.missed_bytes,
            c.stats[0].packets,
            c.stats[0].ip_bytes,
            c.stats[1].packets,
            c.stats[1].ip_bytes,
        );
        let parents = crate::encap::tunnel_parents(&crate::encap::chain_texts(c.tunnel));
        if parents.is_empty() {
            out.push('-');
        } else {
            out.push_str(&parents.join(","));
        }
    }
}

/// `ZeekRow.uid`: "C" and 17 base-62 digits of BLAKE2b-96 over ts and 4-tuple.
pub fn uid(ts: &str, orig_h: &str, orig_p: u16, resp_h: &str, resp_p: u16) -> String {
    uid_of(&format!("{ts}|{orig_h}|{orig_p}|{resp_h}|{resp_p}"))
}

/// "C" and 17 base-62 digits of BLAKE2b-96 over `key` (also the tunnel uids).
pub fn uid_of(key: &str) -> String {
    let mut digest = [0u8; 12];
    if let Ok(mut hasher) = Blake2bVar::new(12) {
        hasher.update(key.as_bytes());
        let _ = hasher.finalize_variable(&mut digest);
    }
    let mut number = digest.iter().fold(0u128, |n, b| (n << 8) | u128::from(*b));
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut out = String::with_capacity(18);
    out.push('C');
    for _ in 0..17 {
        out.push(char::from(ALPHABET[(number % 62) as usize]));
        number /= 62;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repr(x: f64) -> String {
        let mut s = String::new();
        py_float_repr(x, &mut s);
        s
    }

    #[test]
    fn float_repr_is_pythons() {
        // every expected value is what CPython 3.11 prints for repr(x)
        let cases = [
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.0, "1.0"),
            (0.5, "0.5"),
            (100.0, "100.0"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (0.000012345, "1.2345e-05"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (9999999999999998.0, "9999999999999998.0"),
            (1e22, "1e+22"),
            (1600000000.0078125, "1600000000.0078125"),
            (0.1 + 0.2, "0.30000000000000004"),
            (-2.5e-7, "-2.5e-07"),
            (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
        ];
        for (x, want) in cases {
            assert_eq!(repr(x), want, "{x:e}");
        }
    }

    #[test]
    fn round9_rounds_ties_to_even_as_python() {
        // round(0.0009765625, 9) == 0.000976562 (the exact binary value is a tie)
        assert_eq!(repr(py_round9(0.0009765625)), "0.000976562");
        assert_eq!(repr(py_round9(0.1234567891234)), "0.123456789");
        assert_eq!(repr(py_round9(1234.5678901234)), "1234.567890123");
        assert_eq!(repr(py_round9(2.0)), "2.0");
    }

    #[test]
    fn json_strings_are_ascii_only() {
        let mut s = String::new();
        json_str("a\"b\\c\n\u{7f}é→😀\u{1}", &mut s);
        assert_eq!(s, r#""a\"b\\c\n\u007f\u00e9\u2192\ud83d\ude00\u0001""#);
    }

    fn v6(text: &str) -> String {
        let a: std::net::Ipv6Addr = text.parse().unwrap();
        let mut s = String::new();
        ip_text(&Addr::V6(a.octets()), &mut s);
        s
    }

    #[test]
    fn ipv6_is_spelled_as_ipaddress_does() {
        assert_eq!(v6("::ffff:1.2.3.4"), "::ffff:102:304");
        assert_eq!(v6("::1.2.3.4"), "::102:304");
        assert_eq!(v6("2001:db8:0:0:1:0:0:1"), "2001:db8::1:0:0:1");
        assert_eq!(v6("2001:0:0:1:0:0:0:1"), "2001:0:0:1::1");
        assert_eq!(v6("::"), "::");
        assert_eq!(v6("::1"), "::1");
        assert_eq!(v6("fe80::"), "fe80::");
        assert_eq!(v6("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2:3:4:5:6");
        assert_eq!(v6("2001:db8:0:1:2:3:4:5"), "2001:db8:0:1:2:3:4:5");
    }

    #[test]
    fn uid_is_zeek_pys() {
        // ZeekRow(ts=1.5, orig_h="10.0.0.1", orig_p=1, resp_h="10.0.0.2", resp_p=2, ...).uid
        assert_eq!(
            uid("1.500000", "10.0.0.1", 1, "10.0.0.2", 2),
            "CUHsNRQjuv3sZ3Zd91"
        );
    }
}
