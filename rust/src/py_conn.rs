//! Finished connections into Python: the same `tcplens.packets.tracker.Connection`
//! objects the views render today, so every output mode is byte-identical
//! whichever route produced them. Also the engine's transition table from the
//! model (`table_from_model`), a tracker configured like a Python `Tracker`
//! (`config_from_tracker`), and two functions for the differential tests.
//!
//! No `#![forbid(unsafe_code)]` here: PyO3's macros expand to `unsafe` blocks.
//! This file writes none itself.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};
use pyo3::IntoPyObjectExt;

use crate::endpoint::{RowSpec, Table};
use crate::flow::{Change, Connection, DirStats, HistCause};
use crate::segment::{Addr, Packet, Segment};
use crate::tracker::{cause_text, Timeouts, Tracker, TrackerConfig};

/// The engine's table, built from `tcplens.model`: `TRANSITIONS`, the `State`
/// and `Event` enums and `STATE_GROUPS["synchronized"]`. This is the only way
/// the Python side builds one, so there is no second table to drift.
pub fn table_from_model(py: Python<'_>) -> PyResult<Table> {
    let machine = py.import("tcplens.model.machine")?;
    let states_mod = py.import("tcplens.model.states")?;
    let mut states = Vec::new();
    for s in states_mod.getattr("State")?.try_iter()? {
        let s = s?;
        states.push((
            s.getattr("name")?.extract::<String>()?,
            s.str()?.extract::<String>()?,
        ));
    }
    let mut events = Vec::new();
    for e in machine.getattr("Event")?.try_iter()? {
        let e = e?;
        events.push((
            e.getattr("name")?.extract::<String>()?,
            e.getattr("value")?.extract::<String>()?,
        ));
    }
    let mut sync = Vec::new();
    for s in states_mod
        .getattr("STATE_GROUPS")?
        .get_item("synchronized")?
        .try_iter()?
    {
        sync.push(s?.getattr("name")?.extract::<String>()?);
    }
    let mut rows = Vec::new();
    let transitions = machine.getattr("TRANSITIONS")?;
    for item in transitions.call_method0("items")?.try_iter()? {
        let (state, table): (Bound<'_, PyAny>, Bound<'_, PyAny>) = item?.extract()?;
        let state: String = state.getattr("name")?.extract()?;
        for row in table.call_method0("items")?.try_iter()? {
            let (key, tr): (Bound<'_, PyAny>, Bound<'_, PyAny>) = row?.extract()?;
            let (event, context) = if key.is_instance_of::<PyTuple>() {
                let (ev, ctx): (Bound<'_, PyAny>, Bound<'_, PyAny>) = key.extract()?;
                let class: String = ctx.get_type().getattr("__name__")?.extract()?;
                let name: String = ctx.getattr("name")?.extract()?;
                (ev, Some(format!("{class}.{name}")))
            } else {
                (key, None)
            };
            let mut send = Vec::new();
            for f in tr.getattr("send")?.try_iter()? {
                send.push(f?.extract::<u8>()?);
            }
            rows.push(RowSpec {
                state: state.clone(),
                event: event.getattr("name")?.extract()?,
                context,
                next: tr.getattr("next")?.getattr("name")?.extract()?,
                send,
            });
        }
    }
    Table::new(&states, &events, &sync, rows).map_err(PyValueError::new_err)
}

/// A tracker configuration mirroring a Python `tcplens.packets.tracker.Tracker`
/// (msl, timeouts, connection cap, kept segments, whether changes are watched).
pub fn config_from_tracker(
    tracker: &Bound<'_, PyAny>,
    table: Arc<Table>,
) -> PyResult<TrackerConfig> {
    let to = tracker.getattr("timeouts")?;
    Ok(TrackerConfig {
        table,
        msl: tracker.getattr("msl")?.extract()?,
        timeouts: Timeouts {
            attempt: to.getattr("attempt")?.extract()?,
            closed: to.getattr("closed")?.extract()?,
            reset: to.getattr("reset")?.extract()?,
            inactivity: to.getattr("inactivity")?.extract()?,
        },
        max_connections: tracker.getattr("max_connections")?.extract()?,
        keep_segments: tracker.getattr("keep_segments")?.extract()?,
        record_changes: !tracker.getattr("on_change")?.is_none(),
        check_checksums: tracker.getattr("check_checksums")?.extract()?,
    })
}

/// Write the engine tracker's counters back to the Python tracker, where
/// `CaptureSummary` and the CLI footer read them.
pub fn store_counters(tracker: &Bound<'_, PyAny>, engine: &Tracker) -> PyResult<()> {
    tracker.setattr("now", engine.now)?;
    tracker.setattr("count", engine.count)?;
    tracker.setattr("peak", engine.peak)?;
    tracker.setattr("evicted", engine.evicted)?;
    Ok(())
}

/// The fields `Converter` sets, in each dataclass's order (checked at construction).
const CONNECTION_FIELDS: [&str; 19] = [
    "index",
    "orig",
    "resp",
    "start",
    "end",
    "orig_stats",
    "resp_stats",
    "orig_history",
    "resp_history",
    "conn_state",
    "history",
    "completeness",
    "zeek",
    "cannot_tell",
    "notes",
    "segments",
    "first_record",
    "history_frames",
    "tunnel",
];
const STATS_FIELDS: [&str; 11] = [
    "packets",
    "payload_bytes",
    "ip_bytes",
    "frame_bytes",
    "syn",
    "fin",
    "rst",
    "ack",
    "psh",
    "retransmissions",
    "zero_windows",
];
const WIRE_FIELDS: [&str; 7] = [
    "time",
    "from_orig",
    "flags",
    "seq",
    "ack",
    "length",
    "record",
];
const ZEEK_ROW_FIELDS: [&str; 16] = [
    "ts",
    "orig_h",
    "orig_p",
    "resp_h",
    "resp_p",
    "duration",
    "orig_bytes",
    "resp_bytes",
    "conn_state",
    "missed_bytes",
    "history",
    "orig_pkts",
    "orig_ip_bytes",
    "resp_pkts",
    "resp_ip_bytes",
    "tunnel_parents",
];

/// A dataclass built without running its generated `__init__`.
///
/// Converting a million connections (a SYN flood) is most of the engine's time
/// if every object goes through Python-level `__init__`s (a frozen dataclass's
/// costs about 4 µs). These classes have no `__post_init__` and their `__init__`
/// only stores each field, so `object.__new__` plus one C-level store per field
/// gives an equal object; `Class::new` refuses a class whose fields are not the
/// ones this file sets, or that has a `__post_init__`, so a change there fails
/// loudly (and the differential tests compare every field anyway).
struct Class {
    cls: Py<PyAny>,
    names: Vec<Py<PyString>>,
    frozen: bool,
}

impl Class {
    fn new(py: Python<'_>, cls: Bound<'_, PyAny>, expected: &[&str]) -> PyResult<Class> {
        let qualname: String = cls.getattr("__qualname__")?.extract()?;
        let names: Vec<String> = py
            .import("dataclasses")?
            .getattr("fields")?
            .call1((&cls,))?
            .try_iter()?
            .map(|f| f?.getattr("name")?.extract::<String>())
            .collect::<PyResult<_>>()?;
        if names != expected || cls.hasattr("__post_init__")? {
            return Err(PyValueError::new_err(format!(
                "{qualname} changed: update rust/src/py_conn.rs to build it"
            )));
        }
        let frozen: bool = cls
            .getattr("__dataclass_params__")?
            .getattr("frozen")?
            .extract()?;
        Ok(Class {
            names: names
                .iter()
                .map(|n| PyString::intern(py, n).unbind())
                .collect(),
            cls: cls.unbind(),
            frozen,
        })
    }

    fn make<'py>(
        &self,
        conv: &Converter,
        py: Python<'py>,
        values: &[Bound<'py, PyAny>],
    ) -> PyResult<Bound<'py, PyAny>> {
        let obj = conv.object_new.bind(py).call1((self.cls.bind(py),))?;
        for (name, value) in self.names.iter().zip(values) {
            if self.frozen {
                conv.object_setattr
                    .bind(py)
                    .call1((&obj, name.bind(py), value))?;
            } else {
                obj.setattr(name.bind(py), value)?;
            }
        }
        Ok(obj)
    }
}

/// The Python classes and values a connection is built from, looked up once.
pub struct Converter {
    table: Arc<Table>,
    connection: Class,
    direction_stats: Class,
    zeek_row: Class,
    wire_segment: Class,
    change: Py<PyAny>,
    addr_cls: Py<PyAny>,
    tuple_new: Py<PyAny>,
    ip_text: Py<PyAny>,
    object_new: Py<PyAny>,
    object_setattr: Py<PyAny>,
    states: Vec<Py<PyAny>>,
}

fn any<'py, T: IntoPyObject<'py>>(py: Python<'py>, value: T) -> PyResult<Bound<'py, PyAny>> {
    value.into_bound_py_any(py)
}

impl Converter {
    pub fn new(py: Python<'_>, table: Arc<Table>) -> PyResult<Converter> {
        let tracker = py.import("tcplens.packets.tracker")?;
        let zeek = py.import("tcplens.packets.zeek")?;
        let builtins = py.import("builtins")?;
        let state_cls = py.import("tcplens.model.states")?.getattr("State")?;
        let mut states = Vec::with_capacity(table.state_names.len());
        for name in &table.state_names {
            states.push(state_cls.get_item(name)?.unbind());
        }
        let addr = py.import("tcplens.sources.records")?.getattr("Addr")?;
        let addr_fields: Vec<String> = addr.getattr("_fields")?.extract()?;
        if addr_fields != ["ip", "port", "service"] {
            return Err(PyValueError::new_err(
                "records.Addr changed: update rust/src/py_conn.rs to build it",
            ));
        }
        let object = builtins.getattr("object")?;
        Ok(Converter {
            table,
            connection: Class::new(py, tracker.getattr("Connection")?, &CONNECTION_FIELDS)?,
            direction_stats: Class::new(py, tracker.getattr("DirectionStats")?, &STATS_FIELDS)?,
            zeek_row: Class::new(py, zeek.getattr("ZeekRow")?, &ZEEK_ROW_FIELDS)?,
            wire_segment: Class::new(py, tracker.getattr("WireSegment")?, &WIRE_FIELDS)?,
            change: tracker.getattr("Change")?.unbind(),
            addr_cls: addr.unbind(),
            tuple_new: builtins.getattr("tuple")?.getattr("__new__")?.unbind(),
            // the reference's own spelling of IPv6 (ipaddress), cached there
            ip_text: tracker.getattr("_ip")?.unbind(),
            object_new: object.getattr("__new__")?.unbind(),
            object_setattr: object.getattr("__setattr__")?.unbind(),
            states,
        })
    }

    fn state<'py>(&self, py: Python<'py>, id: u8) -> PyResult<Bound<'py, PyAny>> {
        self.states
            .get(usize::from(id))
            .map(|s| s.bind(py).clone())
            .ok_or_else(|| PyValueError::new_err(format!("no state {id}")))
    }

    /// `tracker._ip`: IPv4 as inet_ntop writes it, IPv6 through Python's `ipaddress`.
    fn ip<'py>(&self, py: Python<'py>, addr: &Addr) -> PyResult<Bound<'py, PyString>> {
        match addr {
            Addr::V4([a, b, c, d]) => Ok(PyString::new(py, &format!("{a}.{b}.{c}.{d}"))),
            Addr::V6(raw) => Ok(self
                .ip_text
                .bind(py)
                .call1((PyBytes::new(py, raw),))?
                .cast_into::<PyString>()?),
        }
    }

    /// `records.Addr(ip, port)`, built as its NamedTuple `__new__` builds it.
    fn addr<'py>(
        &self,
        py: Python<'py>,
        ip: &Bound<'py, PyString>,
        port: u16,
    ) -> PyResult<Bound<'py, PyAny>> {
        let values = PyTuple::new(py, [any(py, ip)?, any(py, port)?, py.None().into_bound(py)])?;
        self.tuple_new
            .bind(py)
            .call1((self.addr_cls.bind(py), values))
    }

    fn stats<'py>(&self, py: Python<'py>, s: &DirStats) -> PyResult<Bound<'py, PyAny>> {
        let values = [
            any(py, s.packets)?,
            any(py, s.payload_bytes)?,
            any(py, s.ip_bytes)?,
            any(py, s.frame_bytes)?,
            any(py, s.syn)?,
            any(py, s.fin)?,
            any(py, s.rst)?,
            any(py, s.ack)?,
            any(py, s.psh)?,
            any(py, s.retransmissions)?,
            any(py, s.zero_windows)?,
        ];
        self.direction_stats.make(self, py, &values)
    }

    /// `tracker.Connection` for a finished engine connection.
    pub fn connection(&self, py: Python<'_>, c: &Connection) -> PyResult<Py<PyAny>> {
        let orig_h = self.ip(py, &c.orig_ip)?;
        let resp_h = self.ip(py, &c.resp_ip)?;
        let orig = self.addr(py, &orig_h, c.orig_port)?;
        let resp = self.addr(py, &resp_h, c.resp_port)?;
        let mut histories = Vec::with_capacity(2);
        let mut frames = Vec::with_capacity(2);
        for hist in &c.histories {
            let list = PyList::empty(py);
            let fr = PyList::empty(py);
            for h in hist {
                let cause = match &h.cause {
                    HistCause::Endpoint(cause) => cause_text(&self.table, cause),
                    HistCause::Text(t) => t,
                };
                let cause = if h.frame != 0 {
                    PyString::new(py, &format!("{cause} (frame {})", h.frame))
                } else {
                    PyString::new(py, cause)
                };
                list.append(PyTuple::new(
                    py,
                    [any(py, h.time)?, self.state(py, h.state)?, any(py, cause)?],
                )?)?;
                fr.append(h.frame)?;
            }
            histories.push(list);
            frames.push(fr);
        }
        let z = &c.zeek;
        let conn_state = PyString::new(py, z.conn_state);
        let history = PyString::new(py, &z.history);
        let start = any(py, c.start)?;
        let row = self.zeek_row.make(
            self,
            py,
            &[
                start.clone(),
                any(py, &orig_h)?,
                any(py, c.orig_port)?,
                any(py, &resp_h)?,
                any(py, c.resp_port)?,
                any(py, z.duration)?,
                any(py, z.orig_bytes)?,
                any(py, z.resp_bytes)?,
                any(py, &conn_state)?,
                any(py, z.missed_bytes)?,
                any(py, &history)?,
                any(py, c.stats[0].packets)?,
                any(py, c.stats[0].ip_bytes)?,
                any(py, c.stats[1].packets)?,
                any(py, c.stats[1].ip_bytes)?,
                PyTuple::new(
                    py,
                    crate::encap::tunnel_parents(&crate::encap::chain_texts(c.tunnel)),
                )?
                .into_any(),
            ],
        )?;
        let cannot = PyDict::new(py);
        for (name, text) in ["orig", "resp"].iter().zip(&c.cannot_tell) {
            if let Some(text) = text {
                cannot.set_item(name, text.as_str())?;
            }
        }
        let segments = PyList::empty(py);
        for s in &c.segments {
            let values = [
                any(py, s.time)?,
                any(py, s.from_orig)?,
                any(py, s.flags)?,
                any(py, s.seq)?,
                any(py, s.ack)?,
                any(py, s.length)?,
                any(py, s.record)?,
            ];
            segments.append(self.wire_segment.make(self, py, &values)?)?;
        }
        let [h0, h1] = [histories.remove(0), histories.remove(0)];
        let values = [
            any(py, c.index)?,
            orig,
            resp,
            start,
            any(py, c.end)?,
            self.stats(py, &c.stats[0])?,
            self.stats(py, &c.stats[1])?,
            h0.into_any(),
            h1.into_any(),
            conn_state.into_any(),
            history.into_any(),
            any(py, c.completeness)?,
            row,
            cannot.into_any(),
            PyList::new(py, &c.notes)?.into_any(),
            segments.into_any(),
            any(py, c.first_record)?,
            PyTuple::new(py, &frames)?.into_any(),
            PyTuple::new(py, crate::encap::chain_texts(c.tunnel).iter())?.into_any(),
        ];
        Ok(self.connection.make(self, py, &values)?.unbind())
    }

    /// `tracker.Change` for a state change (live views).
    pub fn change(&self, py: Python<'_>, ch: &Change) -> PyResult<Py<PyAny>> {
        let orig = self.addr(py, &self.ip(py, &ch.orig_ip)?, ch.orig_port)?;
        let resp = self.addr(py, &self.ip(py, &ch.resp_ip)?, ch.resp_port)?;
        let side = if ch.side == 0 { "orig" } else { "resp" };
        let args = (
            ch.index,
            orig,
            resp,
            side,
            ch.time,
            self.state(py, ch.state)?,
            ch.cause.as_str(),
        );
        Ok(self.change.bind(py).call1(args)?.unbind())
    }
}

/// `(state, event, context, next, send)` rows of the engine's table, built from
/// the model exactly as the engine builds it; the test compares them with
/// `TRANSITIONS`.
#[pyfunction]
pub fn transition_rows(py: Python<'_>) -> PyResult<Bound<'_, PyList>> {
    let table = table_from_model(py)?;
    let out = PyList::empty(py);
    for r in table.rows() {
        out.append((
            r.state,
            r.event,
            r.context,
            r.next,
            PyTuple::new(py, r.send)?,
        ))?;
    }
    Ok(out)
}

type Op = (String, String, u32, u32, u32, u32, f64);
type HistoryRow = (f64, String, String);
type Step = (
    String,
    Option<u32>,
    Option<u32>,
    Option<u32>,
    Option<u32>,
    Option<f64>,
    u32,
    u32,
    Option<String>,
);

/// One engine `Endpoint` driven by `ops`, for the test that holds it equal to
/// the model's `Endpoint` (its logic beyond the table: classification, RST
/// acceptability, timers, held segments, close() context). Each op is
/// `("call", EVENT_NAME, size, 0, 0, 0, now)`, `("recv", "", flags, seq, ack, length, now)`
/// or `("set", "snd_una"|"snd_nxt"|"rcv_nxt", value, 0, 0, 0, 0.0)`. Returns, per op,
/// `(state, rcv_nxt, fin_seq, peer_fin_seq, data_end, timer_deadline, snd_una, snd_nxt,
/// error)` and then the history as `(time, state, cause)`.
#[pyfunction]
#[pyo3(signature = (state, isn, msl, now, ops))]
pub fn endpoint_trace(
    py: Python<'_>,
    state: &str,
    isn: u32,
    msl: f64,
    now: f64,
    ops: Vec<Op>,
) -> PyResult<(Vec<Step>, Vec<HistoryRow>)> {
    use crate::endpoint::{Endpoint, MSeg};
    let t = table_from_model(py)?;
    let sid = t
        .state_names
        .iter()
        .position(|n| n == state)
        .and_then(|i| u8::try_from(i).ok())
        .ok_or_else(|| PyValueError::new_err(format!("no state {state}")))?;
    let event_id = |name: &str| -> PyResult<u8> {
        t.event_names
            .iter()
            .position(|n| n == name)
            .and_then(|i| u8::try_from(i).ok())
            .ok_or_else(|| PyValueError::new_err(format!("no event {name}")))
    };
    let mut ep = Endpoint::new(&t, sid, msl, isn, now);
    let mut steps = Vec::new();
    for (kind, name, a, seq, ack, length, when) in ops {
        let result = match kind.as_str() {
            "call" => ep.handle(&t, event_id(&name)?, when, a),
            "recv" => {
                let seg = MSeg {
                    flags: u8::try_from(a).unwrap_or(0),
                    seq,
                    ack,
                    length,
                };
                let event = ep.classify(&t, &seg);
                ep.receive(&t, seg, when, event)
            }
            "set" => {
                match name.as_str() {
                    "snd_una" => ep.snd_una = a,
                    "snd_nxt" => ep.snd_nxt = a,
                    "rcv_nxt" => ep.rcv_nxt = Some(a),
                    other => return Err(PyValueError::new_err(format!("no field {other}"))),
                }
                Ok(())
            }
            other => return Err(PyValueError::new_err(format!("no op {other}"))),
        };
        steps.push((
            t.state_names[usize::from(ep.state)].clone(),
            ep.rcv_nxt,
            ep.fin_seq,
            ep.peer_fin_seq,
            ep.data_end,
            ep.timer_deadline,
            ep.snd_una,
            ep.snd_nxt,
            result.err().map(|e| e.message(&t)),
        ));
    }
    let history = ep
        .history
        .iter()
        .map(|(when, s, cause)| {
            let state = t.state_names[usize::from(*s)].clone();
            (*when, state, cause_text(&t, cause).to_string())
        })
        .collect();
    Ok((steps, history))
}

fn addr(raw: &[u8]) -> PyResult<Addr> {
    if let Ok(a) = <[u8; 4]>::try_from(raw) {
        return Ok(Addr::V4(a));
    }
    <[u8; 16]>::try_from(raw)
        .map(Addr::V6)
        .map_err(|_| PyValueError::new_err("an address is 4 or 16 bytes"))
}

type Row<'py> = (u64, i128, u32, Bound<'py, PyTuple>);

/// A `Segment` from the fields of `Segment4` in order (a tuple, read field by
/// field: `Segment4` has more fields than pyo3 extracts as one tuple type). The
/// fields after `ip_len` have defaults there and may be left off.
fn segment_from_fields(s: &Bound<'_, PyTuple>) -> PyResult<Segment> {
    let opt = |i: usize| -> PyResult<Option<Bound<'_, PyAny>>> {
        if i < s.len() {
            Ok(Some(s.get_item(i)?))
        } else {
            Ok(None)
        }
    };
    let tunnel: Vec<String> = match opt(10)? {
        Some(v) => v.extract()?,
        None => Vec::new(),
    };
    let flag = |i: usize| -> PyResult<bool> { opt(i)?.map_or(Ok(false), |v| v.extract()) };
    Ok(Segment {
        src: addr(&s.get_item(0)?.extract::<Vec<u8>>()?)?,
        dst: addr(&s.get_item(1)?.extract::<Vec<u8>>()?)?,
        sport: s.get_item(2)?.extract()?,
        dport: s.get_item(3)?.extract()?,
        seq: s.get_item(4)?.extract()?,
        ack: s.get_item(5)?.extract()?,
        flags: s.get_item(6)?.extract()?,
        window: s.get_item(7)?.extract()?,
        payload: s.get_item(8)?.extract()?,
        ip_len: s.get_item(9)?.extract()?,
        tunnel: crate::encap::intern_texts(tunnel),
        bad_checksum: flag(11)?,
        payload_cut: flag(12)?,
    })
}

/// The engine's tracker over already-decoded segments, for the differential
/// tests (the reader and decoder are tested on their own):
/// `rows` are `(record, ts_ns, frame_len, segment)` with `segment` the fields
/// of `Segment4` in order, `tracker` a Python `Tracker` whose settings are used
/// and whose counters are set afterwards. Returns
/// `[(connections finished by that packet) for each row] + [finish()]`, so the
/// test sees *when* each connection left, not only that it did; state changes
/// (with `on_change` set) are passed to `tracker.on_change` as they happen.
#[pyfunction]
pub fn track_segments<'py>(
    py: Python<'py>,
    rows: Vec<Row<'py>>,
    tracker: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyList>> {
    let table = Arc::new(table_from_model(py)?);
    let conv = Converter::new(py, Arc::clone(&table))?;
    let cfg = config_from_tracker(tracker, table)?;
    let on_change = tracker.getattr("on_change")?;
    let mut engine = Tracker::new(cfg);
    let out = PyList::empty(py);
    let mut done = Vec::new();
    let emit = |engine: &mut Tracker, done: &mut Vec<Connection>| -> PyResult<()> {
        for ch in engine.take_changes() {
            on_change.call1((conv.change(py, &ch)?,))?;
        }
        let batch = PyList::empty(py);
        for c in done.drain(..) {
            batch.append(conv.connection(py, &c)?)?;
        }
        out.append(batch)
    };
    for (record, ts_ns, frame_len, s) in rows {
        let pkt = Packet {
            record,
            ts_ns,
            frame_len,
            seg: segment_from_fields(&s)?,
        };
        catch_unwind(AssertUnwindSafe(|| engine.feed(&pkt, &mut done)))
            .map_err(|_| PyValueError::new_err(format!("engine panicked at record {record}")))?;
        emit(&mut engine, &mut done)?;
    }
    catch_unwind(AssertUnwindSafe(|| engine.finish(&mut done)))
        .map_err(|_| PyValueError::new_err("engine panicked at the end"))?;
    emit(&mut engine, &mut done)?;
    store_counters(tracker, &engine)?;
    Ok(out)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(transition_rows, m)?)?;
    m.add_function(wrap_pyfunction!(track_segments, m)?)?;
    m.add_function(wrap_pyfunction!(endpoint_trace, m)?)?;
    Ok(())
}
