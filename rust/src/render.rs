//! The streamed outputs of `tcplens pcap`, written here so that no Python
//! object is built per connection: a JSON connection exactly as
//! `json.dumps(Connection.as_dict())` writes it, a Zeek conn.log row exactly as
//! `"\t".join(ZeekRow.values())` does, and the piped table's rows as
//! `views.commands.pcap` lays them out (`TableWriter`). The differential tests
//! hold each byte-identical to the Python forms of the same connections.
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
    // Shortest round-trip digits and a decimal exponent (ryu, serde_json's: about
    // three times as fast as `{:e}`, and this runs for every time in every history)
    let negative = x.is_sign_negative();
    let mut ryu_buf = ryu::Buffer::new();
    let text = ryu_buf.format_finite(x.abs());
    // one pass over ryu's text: its digits, where the point was, the exponent
    let mut digits = StackText::default();
    let (mut int_len, mut exp) = (None, 0);
    for (i, b) in text.bytes().enumerate() {
        match b {
            b'.' => int_len = Some(digits.len),
            b'e' => {
                exp = text[i + 1..].parse::<i32>().unwrap_or(0);
                break;
            }
            _ => digits.push(b),
        }
    }
    let int_len = int_len.unwrap_or(digits.len) as i32;
    let all = digits.as_str();
    let lead = all.len() - all.trim_start_matches('0').len();
    let digits = all[lead..].trim_end_matches('0');
    let (digits, exp) = if digits.is_empty() {
        ("0", 0) // zero
    } else {
        (digits, exp + int_len - 1 - lead as i32)
    };
    let mut exp = exp;
    let mut even = StackText::default();
    let digits = match tie_to_even(x.abs(), digits, exp) {
        Some((value, new_exp)) => {
            let _ = write!(even, "{value}");
            exp = new_exp;
            even.as_str().trim_end_matches('0')
        }
        None => digits,
    };
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
        out.push_str(digits);
    } else if point >= n {
        out.push_str(digits);
        out.extend(std::iter::repeat_n('0', (point - n) as usize));
        out.push_str(".0");
    } else {
        out.push_str(&digits[..point as usize]);
        out.push('.');
        out.push_str(&digits[point as usize..]);
    }
}

/// Python's `repr` and Rust's `{:e}` both give the shortest digits that read back
/// as `x`; when two such digit strings are equally close to `x` (it lies exactly
/// half-way, e.g. 18213620322693.8125 between ...693.812 and ...693.813), Python
/// takes the even last digit and Rust the upper one. Returns the even neighbour
/// (its digits as an integer and its decimal exponent) in that case, None otherwise.
///
/// Exact in integers: `x = m * 2^k`, and the half-way point between the candidate
/// `c` and its neighbour is `(2c +/- 1) * 10^p / 2` with `p` the last digit's power
/// of ten; a product too large for u128 cannot be such a tie at the sizes floats
/// take here, and leaves Rust's answer.
///
/// Most floats are rejected before any of that: with `m` odd, `x = m * 2^k` and
/// `(2c +/- 1) * 10^p / 2` (an odd number times `5^p * 2^(p-1)`) are equal only if
/// `k = p - 1`, and a timestamp's `k` is far below its shortest digits' `p - 1`.
/// (ryu itself already breaks exact ties toward the even digit: none reached
/// this check in millions of drawn doubles; it stays as Python's rule, stated.)
fn tie_to_even(x: f64, digits: &str, exp: i32) -> Option<(u128, i32)> {
    tie_check(x, digits, exp, true)
}

/// [`tie_to_even`], with the early rejection or without it (the tests hold the
/// two equal).
fn tie_check(x: f64, digits: &str, exp: i32, early: bool) -> Option<(u128, i32)> {
    let last = digits.bytes().last()?;
    if (last - b'0') % 2 == 0 || !x.is_finite() || x == 0.0 {
        return None;
    }
    let bits = x.to_bits();
    let raw_exp = ((bits >> 52) & 0x7ff) as i32;
    let frac = bits & ((1u64 << 52) - 1);
    let (m, k) = if raw_exp == 0 {
        (u128::from(frac), -1074)
    } else {
        (u128::from(frac | (1u64 << 52)), raw_exp - 1075)
    };
    let p = exp - (digits.len() as i32 - 1);
    if early && k + m.trailing_zeros() as i32 != p - 1 {
        return None;
    }
    let c: u128 = digits.parse().ok()?;
    // is 2x == (2c + side) * 10^p, exactly?
    let equal = |twice_c_plus: u128| -> Option<bool> {
        let (mut lhs, mut rhs) = (m, twice_c_plus);
        let two_exp = k + 1;
        if two_exp >= 0 {
            lhs = lhs.checked_mul(1u128.checked_shl(two_exp as u32)?)?;
        } else {
            rhs = rhs.checked_mul(1u128.checked_shl((-two_exp) as u32)?)?;
        }
        if p >= 0 {
            rhs = rhs.checked_mul(10u128.checked_pow(p as u32)?)?;
        } else {
            lhs = lhs.checked_mul(10u128.checked_pow((-p) as u32)?)?;
        }
        Some(lhs == rhs)
    };
    let (other, down) = if equal(2 * c - 1) == Some(true) {
        (c - 1, true)
    } else if equal(2 * c + 1) == Some(true) {
        (c + 1, false)
    } else {
        return None;
    };
    if other == 0 {
        return None;
    }
    let grew = !down && other.to_string().len() > digits.len();
    let new_exp = if grew { exp + 1 } else { exp };
    // the even neighbour must read back as x too (it does when both are shortest)
    let text = format!("{other}e{p}");
    if text.parse::<f64>().ok()? != x {
        return None;
    }
    Some((other, new_exp))
}

/// Up to 32 bytes of text on the stack (a float's digits); more is refused.
#[derive(Default)]
struct StackText {
    buf: [u8; 32],
    len: usize,
}

impl StackText {
    /// One ASCII byte; past 32 bytes the text is cut (a float has at most 17 digits).
    fn push(&mut self, b: u8) {
        if let Some(slot) = self.buf.get_mut(self.len) {
            *slot = b;
            self.len += 1;
        }
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl std::fmt::Write for StackText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        let room = self.buf.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        room.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// `round(x, 9)` for a Python float: the double nearest to the decimal with nine
/// places nearest to `x` (ties to even), as CPython's `round` does through its
/// correctly rounded dtoa/strtod.
///
/// Without formatting (19 significant digits of a capture timestamp sent Rust's
/// exact formatter to its slow bignum path): from 2^23 up a double's spacing is
/// above 1e-9, so `x` is already the nearest double to its rounding; below it,
/// `x` = m * 2^-k exactly, `x * 10^9` = m * 10^9 / 2^k is rounded in integers
/// (m * 10^9 < 2^83), and the rounded integer q < 2^53 divided by 10^9 is one
/// correctly rounded operation on two exact doubles.
pub fn py_round9(x: f64) -> f64 {
    if !x.is_finite() || x.abs() >= 8_388_608.0 {
        return x;
    }
    let bits = x.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i32;
    let fraction = bits & ((1 << 52) - 1);
    // x = m * 2^(exp - 1075), with the hidden bit for normal numbers
    let (m, e) = if exp == 0 {
        (fraction, -1074)
    } else {
        (fraction | (1 << 52), exp - 1075)
    };
    if e >= 0 {
        return x; // an integer
    }
    let k = (-e) as u32;
    let n = u128::from(m) * 1_000_000_000;
    let q = if k >= 127 {
        0 // n < 2^83: below half of 2^k
    } else {
        let q = n >> k;
        let rest = n - (q << k);
        let half = 1u128 << (k - 1);
        if rest > half || (rest == half && q & 1 == 1) {
            q + 1
        } else {
            q
        }
    };
    ((q as f64) / 1e9).copysign(x)
}

/// A JSON string as `json.dumps` writes it (`ensure_ascii=True`).
pub fn json_str(s: &str, out: &mut String) {
    out.push('"');
    json_chars(s, out);
    out.push('"');
}

/// The inside of [`json_str`]'s string.
fn json_chars(s: &str, out: &mut String) {
    // state names, causes, Zeek histories: printable ASCII with nothing to escape
    if s.bytes()
        .all(|b| (b' '..=b'~').contains(&b) && b != b'"' && b != b'\\')
    {
        out.push_str(s);
        return;
    }
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
        out.push('"');
        json_chars(text, out);
        if h.frame != 0 {
            out.push_str(" (frame ");
            out.push_str(itoa::Buffer::new().format(h.frame));
            out.push(')');
        }
        out.push('"');
    }

    fn state(&self, id: u8) -> &str {
        self.table
            .state_texts
            .get(usize::from(id))
            .map_or("UNKNOWN", String::as_str)
    }

    fn side(&self, addr: &Addr, port: u16, s: &DirStats, hist: &[HistEntry], out: &mut String) {
        out.push_str("{\"ip\": \"");
        ip_text(addr, out); // digits, letters, dots and colons: nothing to escape
        out.push('"');
        let mut num = itoa::Buffer::new();
        for (key, value) in [
            (", \"port\": ", u64::from(port)),
            (", \"packets\": ", s.packets),
            (", \"payload_bytes\": ", s.payload_bytes),
            (", \"ip_bytes\": ", s.ip_bytes),
            (", \"frame_bytes\": ", s.frame_bytes),
            (", \"flags\": {\"syn\": ", s.syn),
            (", \"fin\": ", s.fin),
            (", \"rst\": ", s.rst),
            (", \"ack\": ", s.ack),
            (", \"psh\": ", s.psh),
            ("}, \"retransmissions\": ", s.retransmissions),
            (", \"zero_windows\": ", s.zero_windows),
        ] {
            out.push_str(key);
            out.push_str(num.format(value));
        }
        out.push_str(", \"final_state\": ");
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

/// Cells in a row of the `tcplens pcap` table (`views.commands.pcap._cells`).
pub const TABLE_CELLS: usize = 13;

/// One table row waiting for its turn: every cell but the start, which is
/// relative to connection 1's (known only once connection 1 goes out).
struct TableRow {
    start: f64,
    /// the cells one after another; `ends[i]` is where cell `i` ends (cell 1 empty)
    text: String,
    ends: [usize; TABLE_CELLS],
    /// the encapsulation chain (`encap::intern`), shown after the cells (issue 15)
    tunnel: u32,
}

/// The streamed (piped) `tcplens pcap` table, row by row as
/// `views.commands.pcap._table_rows` writes it: in capture order (connection
/// numbers, as soon as every lower number has gone out), each column as wide
/// as the widest cell so far. The layout, each column's alignment and starting
/// width, is the view's, handed over from Python; the cells are
/// `_cells`'s, held equal by the differential tests.
pub struct TableWriter {
    right: Vec<bool>,
    widths: Vec<usize>,
    base: Option<f64>,
    following: u64,
    waiting: std::collections::BTreeMap<u64, TableRow>,
    start: String,
}

impl TableWriter {
    /// `columns`: (right-aligned, starting width) of each of the [`TABLE_CELLS`] columns.
    pub fn new(columns: &[(bool, usize)]) -> Option<Self> {
        (columns.len() == TABLE_CELLS).then(|| TableWriter {
            right: columns.iter().map(|c| c.0).collect(),
            widths: columns.iter().map(|c| c.1).collect(),
            base: None,
            following: 1,
            waiting: std::collections::BTreeMap::new(),
            start: String::new(),
        })
    }

    /// A finished connection; the rows now due are appended to `out`, one line each.
    pub fn push(&mut self, r: &Renderer<'_>, c: &Connection, out: &mut Vec<String>) {
        let row = Self::cells(r, c);
        if c.index != self.following {
            self.waiting.insert(c.index, row);
            return;
        }
        out.push(self.line(&row));
        self.following += 1;
        while let Some(row) = self.waiting.remove(&self.following) {
            out.push(self.line(&row));
            self.following += 1;
        }
    }

    /// The end of the input (or an error): every row still waiting, in order.
    pub fn flush(&mut self, out: &mut Vec<String>) {
        while let Some((_, row)) = self.waiting.pop_first() {
            out.push(self.line(&row));
        }
    }

    fn cells(r: &Renderer<'_>, c: &Connection) -> TableRow {
        let mut text = String::with_capacity(96);
        let mut ends = [0; TABLE_CELLS];
        let (o, p) = (&c.stats[0], &c.stats[1]);
        let _ = write!(text, "{}", c.index);
        ends[0] = text.len();
        ends[1] = text.len(); // the start: written by `line`
        let _ = write!(text, "{:.3}", c.end - c.start);
        ends[2] = text.len();
        for (i, (addr, port)) in [(&c.orig_ip, c.orig_port), (&c.resp_ip, c.resp_port)]
            .into_iter()
            .enumerate()
        {
            // `str(Addr)`: IPv6 in brackets
            let v6 = matches!(addr, Addr::V6(_));
            text.push_str(if v6 { "[" } else { "" });
            ip_text(addr, &mut text);
            let _ = write!(text, "{}:{port}", if v6 { "]" } else { "" });
            ends[3 + i] = text.len();
        }
        let _ = write!(text, "{}/{}", o.packets, p.packets);
        ends[5] = text.len();
        let _ = write!(text, "{}/{}", o.payload_bytes, p.payload_bytes);
        ends[6] = text.len();
        for side in 0..2 {
            let state = c.histories[side]
                .last()
                .map_or("UNKNOWN", |h| r.state(h.state));
            text.push_str(state);
            if c.cannot_tell[side].is_some() {
                text.push('?');
            }
            ends[7 + side] = text.len();
        }
        text.push_str(c.zeek.conn_state);
        ends[9] = text.len();
        text.push_str(if c.zeek.history.is_empty() {
            "-"
        } else {
            &c.zeek.history
        });
        ends[10] = text.len();
        let _ = write!(text, "{}", o.retransmissions + p.retransmissions);
        ends[11] = text.len();
        let _ = write!(text, "{}", o.zero_windows + p.zero_windows);
        ends[12] = text.len();
        TableRow {
            start: c.start,
            text,
            ends,
            tunnel: c.tunnel,
        }
    }

    /// `_line(cells, widths)`, then the columns widened to this row's cells.
    fn line(&mut self, row: &TableRow) -> String {
        let base = *self.base.get_or_insert(row.start);
        self.start.clear();
        let _ = write!(self.start, "{:.3}", row.start - base);
        let mut line = String::with_capacity(row.text.len() + 64);
        let mut from = 0;
        for i in 0..TABLE_CELLS {
            let cell = if i == 1 {
                self.start.as_str()
            } else {
                &row.text[from..row.ends[i]]
            };
            from = row.ends[i];
            if i > 0 {
                line.push_str("  ");
            }
            let len = cell.chars().count();
            let pad = self.widths[i].saturating_sub(len);
            if self.right[i] {
                line.extend(std::iter::repeat_n(' ', pad));
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', pad));
            }
            self.widths[i] = self.widths[i].max(len);
        }
        line.truncate(line.trim_end().len());
        via(row.tunnel, &mut line);
        line
    }
}

/// `views.commands.pcap._via`: "  via " and the chain's layers joined by
/// " > " (`encap.chain_text`) after a tunnelled connection's row; nothing for
/// one without, so such a row is what it was before issue 15.
fn via(tunnel: u32, line: &mut String) {
    if tunnel == 0 {
        return;
    }
    line.push_str("  via ");
    for (i, layer) in crate::encap::chain_texts(tunnel).iter().enumerate() {
        if i > 0 {
            line.push_str(" > ");
        }
        line.push_str(layer);
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

    /// The digits and exponent as core's `{:e}` gives them (the implementation
    /// before ryu, checked against CPython then), through the same tie rule.
    fn repr_by_core_fmt(x: f64) -> String {
        let sci = format!("{:e}", x.abs());
        let (mantissa, exp) = sci.split_once('e').unwrap();
        let digits: String = mantissa.split('.').collect();
        let mut exp: i32 = exp.parse().unwrap();
        let mut digits = digits.trim_end_matches('0').to_string();
        if digits.is_empty() {
            digits.push('0');
        }
        if let Some((value, new_exp)) = tie_to_even(x.abs(), &digits, exp) {
            digits = value.to_string().trim_end_matches('0').to_string();
            exp = new_exp;
        }
        let sign = if x.is_sign_negative() { "-" } else { "" };
        if !(-4..16).contains(&exp) {
            let rest = if digits.len() > 1 {
                format!(".{}", &digits[1..])
            } else {
                String::new()
            };
            let e = if exp < 0 { '-' } else { '+' };
            return format!("{sign}{}{rest}e{e}{:02}", &digits[..1], exp.abs());
        }
        let (point, n) = (exp + 1, digits.len() as i32);
        if point <= 0 {
            format!("{sign}0.{}{digits}", "0".repeat((-point) as usize))
        } else if point >= n {
            format!("{sign}{digits}{}.0", "0".repeat((point - n) as usize))
        } else {
            let (a, b) = digits.split_at(point as usize);
            format!("{sign}{a}.{b}")
        }
    }

    #[test]
    fn ryu_digits_give_what_cores_formatter_gave() {
        let mut next = crate::testing::xorshift(0x2545_f491_4f6c_dd1d);
        let mut xs = vec![
            0.0,
            -0.0,
            5e-324,
            -5e-324,
            f64::MAX,
            f64::MIN_POSITIVE,
            1e-5,
            1e16,
        ];
        for _ in 0..400_000 {
            let r = next();
            xs.push(match r % 4 {
                0 => f64::from_bits(r), // any bit pattern
                1 => (r >> 20) as f64 / f64::from(1u32 << (r % 31)),
                2 => py_round9(1.6e9 + (r >> 34) as f64 * 1e-6),
                _ => py_round9((r >> 30) as f64 * 1e-9),
            });
        }
        for x in xs.into_iter().filter(|x| x.is_finite()) {
            assert_eq!(repr(x), repr_by_core_fmt(x), "{x:e}");
        }
    }

    #[test]
    fn round9_without_formatting_is_the_correctly_rounded_formatting() {
        // the exact decimal (`{:.9}`, ties to even) read back: Python's round(x, 9)
        let slow = |x: f64| -> f64 { format!("{x:.9}").parse().unwrap() };
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..200_000 {
            let r = next();
            let x = match r % 4 {
                // any double of moderate size, either sign
                0 => {
                    f64::from_bits(r >> 2 & 0x41ff_ffff_ffff_ffff)
                        * if r & 1 == 1 { -1.0 } else { 1.0 }
                }
                // ticks of 1/2^n seconds: exact ties at the ninth place
                1 => (r >> 20) as f64 / f64::from(1u32 << (r % 31)),
                // capture timestamps and durations with microsecond and nanosecond parts
                2 => 1.6e9 + (r >> 34) as f64 * 1e-6,
                _ => (r >> 30) as f64 * 1e-9,
            };
            assert_eq!(py_round9(x).to_bits(), slow(x).to_bits(), "{x:e}");
        }
        for x in [
            0.0,
            -0.0,
            5e-324,
            -1e-10,
            8_388_607.999_999_999,
            8_388_608.0,
            1e300,
        ] {
            assert_eq!(py_round9(x).to_bits(), slow(x).to_bits(), "{x:e}");
        }
    }

    #[test]
    fn shortest_digits_break_a_tie_toward_the_even_digit_as_python() {
        // Python: repr(18213620322693.8125) == '18213620322693.812' (Rust's {:e}: ...813)
        for (x, python) in [
            (18_213_620_322_693.0 + 0.8125, "18213620322693.812"),
            (-(18_213_620_322_693.0 + 0.8125), "-18213620322693.812"),
            (18_213_620_322_693.0 + 209.0 / 256.0, "18213620322693.816"),
            (1_733_410_000.0 + 1.0 / 128.0, "1733410000.0078125"),
            (0.1, "0.1"),
            (2.5e-05, "2.5e-05"),
            (1e16, "1e+16"),
        ] {
            let mut out = String::new();
            py_float_repr(x, &mut out);
            assert_eq!(out, python, "{x:e}");
        }
    }

    /// The early rejection (`k = p - 1`) never rejects a tie. ryu breaks exact
    /// ties toward the even digit already, so the candidates come from core's
    /// `{:e}`, which breaks them upward (`repr_by_core_fmt`): dyadic numbers with
    /// few bits (where ties live) and arbitrary doubles.
    #[test]
    fn tie_shortcut_rejects_no_tie() {
        let mut next = crate::testing::xorshift(0x9E37_79B9_7F4A_7C15);
        let mut ties = 0;
        for i in 0..400_000u32 {
            let r = next();
            let v = if i % 2 == 0 {
                // odd n / 2^j has j decimals, the last a 5; with about
                // 54 + j - (j - 1) log2(10) bits its shortest digits have j - 1: a tie's place
                let j = 1 + (r % 12) as u32;
                let bits = 54.0 + f64::from(j) - std::f64::consts::LOG2_10 * f64::from(j - 1);
                let bits = (bits.round() as u32 + ((r >> 8) % 3) as u32 - 1).clamp(2, 53);
                let n = (((r >> 11) | 1 << 52) >> (53 - bits)) | 1;
                n as f64 / (1u64 << j) as f64
            } else {
                f64::from_bits(r & !(1 << 63))
            };
            if !v.is_finite() || v == 0.0 {
                continue;
            }
            let sci = format!("{v:e}");
            let (mantissa, exp) = sci.split_once('e').unwrap();
            let digits: String = mantissa.split('.').collect();
            let exp: i32 = exp.parse().unwrap();
            let slow = tie_check(v, &digits, exp, false);
            ties += usize::from(slow.is_some());
            assert_eq!(tie_to_even(v, &digits, exp), slow, "{v:e}");
        }
        assert!(ties > 100, "the sample holds ties ({ties})");
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
