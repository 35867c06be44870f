//! The PyO3 surface of [`crate::ftrace`]: `tcplens._engine.TraceDecoder`, the
//! ring-buffer page decoder `tcplens.sources.tracepoints` uses when the
//! engine is built (issue 16). Layouts come from the parsed format files;
//! each event leaves as one tuple of plain numbers and address bytes, which
//! Python turns into a `KernelEvent` with the reference's own tables.
//!
//! No `#![forbid(unsafe_code)]` here: PyO3's macros expand to `unsafe` blocks.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyList, PyTuple};

use crate::ftrace::{decode_pages, EventLayout, Field, Kind, Layouts, PageLayout, Row};

/// `(offset, size, signed, array)` of one field, as `FieldSpec` has it.
type FieldTuple = (usize, usize, bool, bool);

/// Decodes `trace_pipe_raw` pages with the layouts of the format files.
#[pyclass(module = "tcplens._engine")]
pub struct TraceDecoder {
    layouts: Layouts,
    /// (address length, address, port) -> the `Addr` made for it: one per end
    /// of a connection, not one per event
    addrs: HashMap<(usize, [u8; 16], i128), Py<PyAny>>,
}

/// Addresses kept at most (a busy host's ends are many; the map starts again).
const ADDR_CACHE: usize = 65536;
/// Timestamps below this convert to f64 exactly, so `ts / 1e9` rounds as Python's does.
const EXACT_F64: u128 = 1 << 53;

/// The Python objects `events` builds with: `(KernelEvent, Addr, ip_text(family, raw),
/// states (257 entries: code 0-255, then the one for any other code), slow(row, wall),
/// the kind names in `Kind` order)`.
type Objects<'py> = (
    Bound<'py, PyAny>,
    Bound<'py, PyAny>,
    Bound<'py, PyAny>,
    Bound<'py, PyTuple>,
    Bound<'py, PyAny>,
    Bound<'py, PyTuple>,
);

impl TraceDecoder {
    fn addr<'py>(
        &mut self,
        py: Python<'py>,
        objects: &Objects<'py>,
        family: i128,
        raw: &[u8],
        port: Option<i128>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let mut bytes = [0u8; 16];
        let n = raw.len().min(16);
        bytes[..n].copy_from_slice(&raw[..n]);
        let key = (raw.len(), bytes, port.unwrap_or(-1));
        if let Some(known) = self.addrs.get(&key) {
            return Ok(known.bind(py).clone());
        }
        let ip = objects.2.call1((num(py, family)?, PyBytes::new(py, raw)))?;
        let made = objects.1.call1((ip, opt(py, port)?))?;
        if self.addrs.len() >= ADDR_CACHE {
            self.addrs.clear();
        }
        self.addrs.insert(key, made.clone().unbind());
        Ok(made)
    }
}

fn state<'py>(states: &Bound<'py, PyTuple>, code: Option<i128>) -> PyResult<Bound<'py, PyAny>> {
    let index = match code {
        Some(c) if (0..256).contains(&c) => c as usize,
        _ => 256,
    };
    states.get_item(index)
}

/// A number read from a field of at most 8 bytes: fits i64 or u64.
fn num<'py>(py: Python<'py>, v: i128) -> PyResult<Bound<'py, PyAny>> {
    match i64::try_from(v) {
        Ok(small) => Ok(small.into_pyobject(py)?.into_any()),
        Err(_) => Ok((v as u64).into_pyobject(py)?.into_any()),
    }
}

fn wide<'py>(py: Python<'py>, v: u128) -> PyResult<Bound<'py, PyAny>> {
    match u64::try_from(v) {
        Ok(small) => Ok(small.into_pyobject(py)?.into_any()),
        Err(_) => Ok(v.into_pyobject(py)?.into_any()),
    }
}

fn opt<'py>(py: Python<'py>, v: Option<i128>) -> PyResult<Bound<'py, PyAny>> {
    match v {
        Some(v) => num(py, v),
        None => Ok(py.None().into_bound(py)),
    }
}

fn row_tuple<'py>(py: Python<'py>, r: &Row<'_>) -> PyResult<Bound<'py, PyTuple>> {
    let items = [
        (r.kind as u8).into_pyobject(py)?.into_any(),
        wide(py, r.ts)?,
        r.cpu.into_pyobject(py)?.into_any(),
        num(py, r.pid)?,
        PyBool::new(py, r.irq).to_owned().into_any(),
        num(py, r.sk)?,
        num(py, r.family)?,
        PyBytes::new(py, r.local).into_any(),
        opt(py, r.lport)?,
        PyBytes::new(py, r.remote).into_any(),
        opt(py, r.rport)?,
        opt(py, r.a)?,
        opt(py, r.b)?,
    ];
    PyTuple::new(py, items)
}

#[pymethods]
impl TraceDecoder {
    /// `page`: (timestamp offset, commit offset, commit size, data offset) from
    /// `header_page`; `type_offset`: `common_type`'s; `events`: (id, kind index
    /// in `_KINDS` order, the `_WANTED` fields as (offset, size, signed, array)).
    /// ValueError when a layout is not the numbers and addresses expected.
    #[new]
    fn new(
        page: (usize, usize, usize, usize),
        type_offset: usize,
        events: Vec<(u16, u8, Vec<FieldTuple>)>,
    ) -> PyResult<Self> {
        let mut by_id = HashMap::new();
        for (id, kind, fields) in events {
            let kind = Kind::from_index(kind)
                .ok_or_else(|| PyValueError::new_err(format!("unknown event kind {kind}")))?;
            let fields = fields
                .into_iter()
                .map(|(offset, size, signed, array)| Field {
                    offset,
                    size,
                    signed,
                    array,
                })
                .collect();
            let layout = EventLayout::new(kind, fields).map_err(PyValueError::new_err)?;
            by_id.insert(id, layout);
        }
        let (timestamp, commit, commit_size, data) = page;
        Ok(TraceDecoder {
            addrs: HashMap::new(),
            layouts: Layouts {
                page: PageLayout {
                    timestamp,
                    commit,
                    commit_size,
                    data,
                },
                type_offset,
                events: by_id,
            },
        })
    }

    /// `(rows, missed)` for a list of `(cpu, page bytes)`: one tuple per event in
    /// time order, `(kind, ts, cpu, pid, in_irq, skaddr, family, local, lport,
    /// remote, rport, a, b)` (see `ftrace::Row`), and the events the pages say
    /// were lost.
    fn decode<'py>(
        &self,
        py: Python<'py>,
        pages: Vec<(i64, Bound<'py, PyBytes>)>,
    ) -> PyResult<(Bound<'py, PyList>, Bound<'py, PyAny>)> {
        let borrowed: Vec<(i64, &[u8])> = pages.iter().map(|(c, p)| (*c, p.as_bytes())).collect();
        let decoded = catch_unwind(AssertUnwindSafe(|| decode_pages(&self.layouts, &borrowed)));
        let (rows, missed) = decoded.map_err(|_| {
            PyRuntimeError::new_err("internal error in the engine's ring-buffer decoder")
        })?;
        let list = PyList::empty(py);
        for row in &rows {
            list.append(row_tuple(py, row)?)?;
        }
        Ok((list, wide(py, missed)?))
    }

    /// `(events, missed)`: like `decode`, but each event leaves as the
    /// `KernelEvent` itself, made here with the objects Python passes (see
    /// `Objects`); a reset sent (its ends are sockaddrs) and any event stamped
    /// past 2^53 ns are handed to `slow(row, wall_offset)` as their row tuple.
    fn events<'py>(
        &mut self,
        py: Python<'py>,
        pages: Vec<(i64, Bound<'py, PyBytes>)>,
        wall_offset: f64,
        objects: Objects<'py>,
    ) -> PyResult<(Bound<'py, PyList>, Bound<'py, PyAny>)> {
        let borrowed: Vec<(i64, &[u8])> = pages.iter().map(|(c, p)| (*c, p.as_bytes())).collect();
        let layouts = &self.layouts;
        let decoded = catch_unwind(AssertUnwindSafe(|| decode_pages(layouts, &borrowed)));
        let (rows, missed) = decoded.map_err(|_| {
            PyRuntimeError::new_err("internal error in the engine's ring-buffer decoder")
        })?;
        if objects.3.len() != 257 {
            return Err(PyValueError::new_err("states: 257 entries expected"));
        }
        if objects.5.len() != 6 {
            return Err(PyValueError::new_err("kinds: 6 names expected"));
        }
        let none = py.None().into_bound(py);
        let list = PyList::empty(py);
        for row in &rows {
            // a reset sent carries sockaddrs (Python reads them); a stamp past 2^53 ns
            // would not divide as Python divides an int
            if row.kind == Kind::SendReset || row.ts >= EXACT_F64 {
                list.append(objects.4.call1((row_tuple(py, row)?, wall_offset))?)?;
                continue;
            }
            let local = self.addr(py, &objects, row.family, row.local, row.lport)?;
            let remote = self.addr(py, &objects, row.family, row.remote, row.rport)?;
            let at = row.ts as f64 / 1e9 + wall_offset;
            let fam: u8 = if row.family == 2 { 4 } else { 6 };
            // KernelEvent(kind, mono_ns, at, cpu, pid, in_irq, sk, family, local,
            // remote, old, new, state): old/new for state changes, state for a
            // retransmission (the only other kind with one)
            let (old, new, in_state) = match row.kind {
                Kind::State => (
                    state(&objects.3, row.a)?,
                    state(&objects.3, row.b)?,
                    none.clone(),
                ),
                Kind::Retransmit => (none.clone(), none.clone(), state(&objects.3, row.a)?),
                _ => (none.clone(), none.clone(), none.clone()),
            };
            let args = [
                objects.5.get_item(row.kind as usize)?,
                wide(py, row.ts)?,
                at.into_pyobject(py)?.into_any(),
                row.cpu.into_pyobject(py)?.into_any(),
                num(py, row.pid)?,
                PyBool::new(py, row.irq).to_owned().into_any(),
                num(py, row.sk)?,
                fam.into_pyobject(py)?.into_any(),
                local,
                remote,
                old,
                new,
                in_state,
            ];
            list.append(objects.0.call1(PyTuple::new(py, args)?)?)?;
        }
        Ok((list, wide(py, missed)?))
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<TraceDecoder>()?;
    Ok(())
}
