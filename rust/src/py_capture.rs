//! `tcplens._engine.Capture`: a whole capture on its way to connections, and
//! `FrameTracker`: frames handed over one at a time (live capture), both for
//! `tcplens.packets.engine` (the Python glue that chooses the route).
//!
//! Python hands over the input (a path Rust opens, or a binary file object
//! such as stdin) and its `Tracker` (whose settings and model table the
//! engine's tracker is built from, see `py_conn`); it then asks for finished
//! connections in batches, never an object per packet. A truncated or corrupt
//! capture yields every connection so far and then raises the located error,
//! exactly as `tracker.reconstruct` does.

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use std::sync::Arc;

use crate::engine::{Capture as Run, Decoder, Step};
use crate::flow::Connection;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::py::{guard, input_error, read_error, stats_dict, Source};
use crate::py_conn::{config_from_tracker, store_counters, table_from_model, Converter};
use crate::reader::{Frame, ReadError};
use crate::render::{Renderer, TableWriter};
use crate::segment::Packet;
use crate::tracker::Tracker;

/// Connections per batch: enough to make the Python loop's overhead vanish,
/// few enough that memory stays small while a batch waits to be written.
const BATCH: usize = 512;

#[pyclass(module = "tcplens._engine")]
pub struct Capture {
    run: Run<Source>,
    conv: Converter,
    /// The Python `Tracker`, whose counters (now, count, peak, evicted) follow the engine's.
    tracker: Py<PyAny>,
    path: Option<String>,
    /// Finished connections; those from `handed` on are not handed out yet.
    pending: Vec<Connection>,
    handed: usize,
    /// The error that ended the input, raised once `pending` is empty.
    failure: Option<ReadError>,
    /// Hand out rendered rows instead of `Connection` objects (`--json`, `--zeek`, table).
    render: Option<Render>,
    /// The table's rows in capture order (`render="table"`).
    table: Option<TableWriter>,
    /// The input has ended (cleanly): rows still waiting for a lower number can go.
    over: bool,
}

#[derive(Clone, Copy)]
enum Render {
    Json,
    Zeek,
    Table,
}

impl Capture {
    /// One step of `next_batch`: run the engine when every finished connection
    /// has been handed out, then hand out (at most) one batch.
    fn batch<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        if self.handed == self.pending.len() && self.failure.is_none() {
            self.pending.clear();
            self.handed = 0;
            let path = self.path.clone();
            let run = &mut self.run;
            let pending = &mut self.pending;
            let step = match catch_unwind(AssertUnwindSafe(|| run.run(BATCH, pending))) {
                Ok(step) => step,
                Err(_) => {
                    // never across into Python: a located error at the frame being worked on
                    let (record, offset) = run.packets.last;
                    return Err(input_error(
                        py,
                        "internal error in the capture engine while reading this record",
                        path.as_deref(),
                        Some(record),
                        Some(offset),
                    ));
                }
            };
            match step {
                Step::Failed(err) => self.failure = Some(err),
                Step::End => self.over = true,
                Step::More => {}
            }
        }
        store_counters(self.tracker.bind(py), &self.run.tracker)?;
        // At most one batch of Python objects at a time, also when the end of the
        // input finished every live connection at once (a flood leaves a million).
        let out = PyList::empty(py);
        let end = self.pending.len().min(self.handed + BATCH);
        let batch = &self.pending[self.handed..end];
        if let Some(render) = self.render {
            let renderer = Renderer {
                table: &self.run.tracker.config().table,
            };
            let (mut row, mut lines) = (String::new(), Vec::new());
            for conn in batch {
                row.clear();
                match (render, &mut self.table) {
                    (Render::Table, Some(table)) => {
                        table.push(&renderer, conn, &mut lines);
                        continue;
                    }
                    (Render::Json, _) => renderer.json(conn, &mut row),
                    _ => renderer.zeek(conn, &mut row),
                }
                out.append(row.as_str())?;
            }
            if let Some(table) = &mut self.table {
                if end == self.pending.len() && (self.over || self.failure.is_some()) {
                    table.flush(&mut lines);
                }
                for line in lines.drain(..) {
                    out.append(line)?;
                }
            }
        } else {
            for conn in batch {
                out.append(self.conv.connection(py, conn)?)?;
            }
        }
        self.handed = end;
        if out.is_empty() {
            if let Some(err) = self.failure.take() {
                let path = self.path.as_deref();
                let src = self.run.packets.source_mut();
                return Err(src
                    .take_failure()
                    .unwrap_or_else(|| read_error(py, &err, path)));
            }
        }
        Ok(out)
    }
}

#[pymethods]
impl Capture {
    /// `Capture(source, tracker, path=None, render=None)`: `source` is a path or
    /// a binary file object; `tracker` a `tcplens.packets.tracker.Tracker` giving
    /// the settings; `path` names the input in error messages; `render` "json" or
    /// "zeek" makes `next_batch` return each connection's `--json` object or
    /// conn.log row as a string instead of a `Connection`; "table" the rows of
    /// the streamed `tcplens pcap` table, laid out by `columns` (right-aligned,
    /// starting width of each column, from the view), in capture order.
    #[new]
    #[pyo3(signature = (source, tracker, path = None, render = None, columns = None))]
    fn new(
        py: Python<'_>,
        source: &Bound<'_, PyAny>,
        tracker: &Bound<'_, PyAny>,
        path: Option<String>,
        render: Option<&str>,
        columns: Option<Vec<(bool, usize)>>,
    ) -> PyResult<Self> {
        let bad = |text: String| Err(pyo3::exceptions::PyValueError::new_err(text));
        let render = match render {
            None => None,
            Some("json") => Some(Render::Json),
            Some("zeek") => Some(Render::Zeek),
            Some("table") => Some(Render::Table),
            Some(other) => {
                return bad(format!(
                    "render must be 'json', 'zeek' or 'table', not {other:?}"
                ))
            }
        };
        let writer = match (render, columns) {
            (Some(Render::Table), Some(columns)) => match TableWriter::new(&columns) {
                Some(table) => Some(table),
                None => {
                    return bad(format!(
                        "the table has {} columns, not {}",
                        crate::render::TABLE_CELLS,
                        columns.len()
                    ))
                }
            },
            (Some(Render::Table), None) => return bad("render='table' needs columns".into()),
            _ => None,
        };
        let table = Arc::new(table_from_model(py)?);
        let cfg = config_from_tracker(tracker, Arc::clone(&table))?;
        let src = Source::from_python(source, path.as_deref())?;
        Ok(Capture {
            run: Run::new(src, cfg),
            conv: Converter::new(py, table)?,
            tracker: tracker.clone().unbind(),
            path,
            pending: Vec::new(),
            handed: 0,
            failure: None,
            render,
            table: writer,
            over: false,
        })
    }

    /// The next batch of finished connections (`tracker.Connection` objects);
    /// an empty list once the input has ended. Raises the located error after
    /// the connections a damaged capture still gives.
    fn next_batch<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        loop {
            let out = self.batch(py)?;
            // table rows may all wait for a lower number: an empty list only at the end
            let ended = self.over && self.handed == self.pending.len();
            if !out.is_empty() || self.table.is_none() || ended {
                return Ok(out);
            }
        }
    }

    /// Counters for `CaptureSummary`, as a dict: frames, decode (a dict of
    /// `DecodeStats` fields), connections, peak. (The Python `Tracker`'s own
    /// counters are kept current by `next_batch`.)
    fn counters<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        let p = &self.run.packets.decoder;
        d.set_item("frames", p.frames)?;
        d.set_item("decode", stats_dict(py, &p.stats)?)?;
        d.set_item("connections", self.run.connections)?;
        d.set_item("peak", self.run.tracker.peak)?;
        Ok(d)
    }
}

/// Frames handed over one at a time, e.g. from a live AF_PACKET socket read in
/// Python: decoded and tracked here, with every state change reported (for a
/// `Tracker` with `on_change`) before the connections that frame finished.
#[pyclass(module = "tcplens._engine")]
pub struct FrameTracker {
    decoder: Decoder,
    tracker: Tracker,
    conv: Converter,
    /// The Python `Tracker`, whose counters follow the engine's.
    py_tracker: Py<PyAny>,
    path: Option<String>,
    done: Vec<Connection>,
    /// Connections handed out so far (`CaptureSummary.connections`).
    connections: u64,
}

impl FrameTracker {
    /// The state changes and finished connections waiting, as Python objects.
    fn hand_out<'py>(
        &mut self,
        py: Python<'py>,
    ) -> PyResult<(Bound<'py, PyList>, Bound<'py, PyList>)> {
        let changes = PyList::empty(py);
        for ch in self.tracker.take_changes() {
            changes.append(self.conv.change(py, &ch)?)?;
        }
        let conns = PyList::empty(py);
        for conn in self.done.drain(..) {
            conns.append(self.conv.connection(py, &conn)?)?;
        }
        self.connections += conns.len() as u64;
        store_counters(self.py_tracker.bind(py), &self.tracker)?;
        Ok((changes, conns))
    }
}

#[pymethods]
impl FrameTracker {
    /// `FrameTracker(tracker, path=None)`: settings from a Python `Tracker`;
    /// `path` names the source (an interface) in error messages.
    #[new]
    #[pyo3(signature = (tracker, path = None))]
    fn new(py: Python<'_>, tracker: &Bound<'_, PyAny>, path: Option<String>) -> PyResult<Self> {
        let table = Arc::new(table_from_model(py)?);
        let cfg = config_from_tracker(tracker, Arc::clone(&table))?;
        let mut decoder = Decoder::default();
        decoder.stats.check_checksums = cfg.check_checksums;
        Ok(FrameTracker {
            decoder,
            tracker: Tracker::new(cfg),
            conv: Converter::new(py, table)?,
            py_tracker: tracker.clone().unbind(),
            path,
            done: Vec::new(),
            connections: 0,
        })
    }

    /// One frame (the fields of `tcplens.packets.pcap.Frame`); returns the state
    /// changes it caused and the connections it finished, in that order.
    #[allow(clippy::too_many_arguments)]
    fn feed<'py>(
        &mut self,
        py: Python<'py>,
        ts_ns: i128,
        linktype: u16,
        data: &[u8],
        wire_len: u32,
        record: u64,
        offset: u64,
    ) -> PyResult<(Bound<'py, PyList>, Bound<'py, PyList>)> {
        let frame = Frame {
            ts_ns,
            linktype,
            data,
            wire_len,
            record,
            offset,
            interface: 0,
        };
        let path = self.path.clone();
        let (decoder, tracker, done) = (&mut self.decoder, &mut self.tracker, &mut self.done);
        let fed = guard(
            py,
            path.as_deref(),
            || (record, offset),
            || {
                Ok(decoder.frame(&frame).map(|seg| {
                    if let Some(seg) = seg {
                        let pkt = Packet {
                            record,
                            ts_ns,
                            frame_len: wire_len,
                            seg,
                        };
                        tracker.feed(&pkt, done);
                    }
                }))
            },
        )?;
        if let Err(err) = fed {
            return Err(read_error(py, &err, path.as_deref()));
        }
        self.hand_out(py)
    }

    /// End of input: every connection still open, finished as it stands
    /// (returned as `feed` returns them: state changes, then connections).
    fn finish<'py>(
        &mut self,
        py: Python<'py>,
    ) -> PyResult<(Bound<'py, PyList>, Bound<'py, PyList>)> {
        let path = self.path.clone();
        let (tracker, done) = (&mut self.tracker, &mut self.done);
        guard(
            py,
            path.as_deref(),
            || (0, 0),
            || {
                tracker.finish(done);
                Ok(())
            },
        )?;
        self.hand_out(py)
    }

    /// Counters for `CaptureSummary`: frames, decode, connections, peak.
    fn counters<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("frames", self.decoder.frames)?;
        d.set_item("decode", stats_dict(py, &self.decoder.stats)?)?;
        d.set_item("connections", self.connections)?;
        d.set_item("peak", self.tracker.peak)?;
        Ok(d)
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Capture>()?;
    m.add_class::<FrameTracker>()?;
    Ok(())
}
