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

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::decode::DecodeStats;
use crate::endpoint::Table;
use crate::engine::{reused, Capture as Run, Decoder, PacketSource, Packets, Prefetched, Step};
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
/// Batches the worker may finish ahead of the writer (bounded memory: a few
/// MiB). With one batch waiting, and two chunks decoded ahead
/// (`engine::CHUNKS_AHEAD`), the three threads on two cores kept waiting for
/// each other: `pcap --json` of the 2M-packet capture took 0.66 s (median of
/// 7); with 4 batches and 8 chunks 0.56 s, with 16 and 32 0.55 s.
const AHEAD: usize = 4;
/// Rendered rows per Python string, about (see `Capture::batch`): well below
/// glibc's 128 KiB threshold for serving an allocation by its own mmap.
const BLOCK_BYTES: usize = 32 << 10;
/// How often a writer waiting for the worker looks for Ctrl+C.
const SIGNAL_CHECK: Duration = Duration::from_millis(100);

/// Who runs the engine. A file Rust opened itself is read and decoded by one
/// thread of its own (`engine::Prefetched`, "tcplens-decode") and tracked by
/// another ("tcplens-capture"), so that the next chunk is decoded while this
/// one is tracked, and the next batch worked on while this one is rendered and
/// written. On two cores (`pcap --json` of the 2M-packet capture) the decoding
/// thread takes 0.26 s of CPU (half of it the kernel's copy of the file), the
/// tracking one 0.28 s and Python's 0.22 s, in 0.55 s of wall time; one worker
/// doing both took 0.58 s of CPU alone, and 0.66 s of wall time. (An earlier
/// third thread that only read ahead, copying each chunk once more, made it slower.)
/// A FIFO or device named by a path is read by the worker without decoding
/// ahead (a live pipe's packets are tracked as they come).
/// A Python file object (stdin, a pipe, a progress wrapper) is read on the
/// calling thread between batches: its `read` needs the interpreter, and Ctrl+C
/// must reach a blocked read. Both run the same `engine::Capture::run` in the
/// same batches, so they give the same answer.
enum Driver {
    Here(Box<Run<Packets<Source>>>),
    /// Batches from the worker (in a mutex only because a Python object must be
    /// shareable between threads), and written batches going back to it, to be
    /// freed and their vectors reused there.
    Worker(Mutex<Receiver<Message>>, SyncSender<Vec<Connection>>),
}

/// One batch from the worker, with the counters as they stood after it.
struct Message {
    conns: Vec<Connection>,
    outcome: Outcome,
    counters: Counters,
}

enum Outcome {
    Step(Step),
    /// The engine panicked at this (record, offset): never across into Python.
    Panicked((u64, u64)),
}

/// What `counters()` and the Python `Tracker`'s counters report.
#[derive(Clone, Default)]
struct Counters {
    frames: u64,
    stats: DecodeStats,
    connections: u64,
    now: f64,
    count: u64,
    peak: usize,
    evicted: u64,
}

impl Counters {
    fn of<S: PacketSource>(run: &Run<S>) -> Counters {
        let (frames, stats) = run.packets.counts();
        Counters {
            frames,
            stats: stats.clone(),
            connections: run.connections,
            now: run.tracker.now,
            count: run.tracker.count,
            peak: run.tracker.peak,
            evicted: run.tracker.evicted,
        }
    }

    fn store(&self, tracker: &Bound<'_, PyAny>) -> PyResult<()> {
        tracker.setattr("now", self.now)?;
        tracker.setattr("count", self.count)?;
        tracker.setattr("peak", self.peak)?;
        tracker.setattr("evicted", self.evicted)?;
        Ok(())
    }
}

/// One step of the engine, a panic caught where it happened.
fn step<S: PacketSource>(run: &mut Run<S>, out: &mut Vec<Connection>) -> Outcome {
    match catch_unwind(AssertUnwindSafe(|| run.run(BATCH, out))) {
        Ok(step) => Outcome::Step(step),
        Err(_) => Outcome::Panicked(run.packets.last()),
    }
}

fn thread_error(err: std::io::Error) -> PyErr {
    pyo3::exceptions::PyOSError::new_err(format!("cannot start the capture engine's thread: {err}"))
}

/// The worker thread for `run`, and the flag that stops it.
fn start_worker<S: PacketSource + Send + 'static>(
    run: Box<Run<S>>,
) -> PyResult<(Driver, Arc<AtomicBool>)> {
    let cancel = Arc::clone(&run.cancel);
    let (tx, rx) = sync_channel(AHEAD);
    let (spare_tx, spare_rx) = sync_channel(AHEAD + 1);
    std::thread::Builder::new()
        .name("tcplens-capture".into())
        .spawn(move || work(run, tx, spare_rx))
        .map_err(thread_error)?;
    Ok((Driver::Worker(Mutex::new(rx), spare_tx), cancel))
}

/// The worker's loop: batches until the input ends, fails, or nobody listens.
fn work<S: PacketSource>(
    mut run: Box<Run<S>>,
    tx: SyncSender<Message>,
    spare: Receiver<Vec<Connection>>,
) {
    loop {
        let mut conns = reused(&spare, BATCH);
        let outcome = step(&mut run, &mut conns);
        let last = !matches!(outcome, Outcome::Step(Step::More));
        let counters = Counters::of(&run);
        // A damaged capture's end finishes every live connection at once (a flood
        // leaves 600k): hand them over a batch at a time, so that no more than one
        // such lot waits (as it would in `pending` without the worker), not one per
        // queued message. (Sweeps of timeouts come a batch at a time already.)
        if conns.len() > BATCH {
            conns.reverse();
            while conns.len() > BATCH {
                let first: Vec<Connection> = conns.drain(conns.len() - BATCH..).rev().collect();
                let more = Message {
                    conns: first,
                    outcome: Outcome::Step(Step::More),
                    counters: counters.clone(),
                };
                if tx.send(more).is_err() {
                    return;
                }
            }
            conns.reverse();
        }
        let sent = tx.send(Message {
            conns,
            outcome,
            counters,
        });
        if sent.is_err() || last {
            return;
        }
    }
}

#[pyclass(module = "tcplens._engine")]
pub struct Capture {
    driver: Driver,
    conv: Converter,
    /// The model's table, for rendering causes.
    model: Arc<Table>,
    /// The Python `Tracker`, whose counters (now, count, peak, evicted) follow the engine's.
    tracker: Py<PyAny>,
    path: Option<String>,
    /// Counters as they stood after the last batch.
    counters: Counters,
    /// Finished connections; those from `handed` on are not handed out yet.
    pending: Vec<Connection>,
    handed: usize,
    /// The error that ended the input, raised once `pending` is empty.
    failure: Option<ReadError>,
    /// Hand out rendered rows instead of `Connection` objects (`--json`, `--zeek`, table).
    render: Option<Render>,
    /// The table's rows in capture order (`render="table"`).
    table: Option<TableWriter>,
    /// The rendered rows of the batch being handed out (reused).
    text: String,
    /// The input has ended (cleanly): rows still waiting for a lower number can go.
    over: bool,
    /// The engine has said its last (the end, the error, or an internal error).
    done: bool,
    /// Tells the worker to stop when this is dropped (an early `break`, Ctrl+C, a
    /// closed pipe in a longer-lived process): it would otherwise read to the end.
    cancel: Arc<AtomicBool>,
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::Relaxed);
    }
}

#[derive(Clone, Copy)]
enum Render {
    Json,
    Zeek,
    Table,
}

impl Capture {
    /// The next batch of finished connections from whoever runs the engine.
    fn next_from_engine(&mut self, py: Python<'_>) -> PyResult<Outcome> {
        let mut conns = std::mem::take(&mut self.pending);
        let outcome = match &mut self.driver {
            Driver::Here(run) => {
                conns.clear();
                let outcome = step(run, &mut conns);
                self.counters = Counters::of(run);
                outcome
            }
            Driver::Worker(rx, spare) => {
                // The worker frees what it allocated: a thread freeing another's memory
                // makes glibc give pages back and fault them in again (a million-SYN
                // flood took 3.3 s of system time that way, 0.5 s without).
                // (Full or gone: then the connections are simply freed here.)
                let _ = spare.try_send(conns);
                conns = Vec::new();
                let Ok(rx) = rx.get_mut() else {
                    return Ok(Outcome::Panicked((0, 0)));
                };
                let got = loop {
                    // the worker needs no interpreter; waiting must not hold it
                    let rx = &mut *rx;
                    let got = py.detach(move || rx.recv_timeout(SIGNAL_CHECK));
                    match got {
                        Err(RecvTimeoutError::Timeout) => py.check_signals()?,
                        other => break other,
                    }
                };
                match got {
                    Ok(msg) => {
                        conns = msg.conns;
                        self.counters = msg.counters;
                        msg.outcome
                    }
                    // the worker cannot end without a last message but by a
                    // panic outside `step`: as internal an error as one inside
                    Err(_) => Outcome::Panicked((0, 0)),
                }
            }
        };
        self.pending = conns;
        self.handed = 0;
        Ok(outcome)
    }

    /// One step of `next_batch`: run the engine when every finished connection
    /// has been handed out, then hand out (at most) one batch.
    fn batch<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        if self.handed == self.pending.len() && self.failure.is_none() && !self.done {
            let outcome = self.next_from_engine(py)?;
            // the engine's last word: asked again, both routes hand out nothing
            self.done = !matches!(outcome, Outcome::Step(Step::More));
            match outcome {
                Outcome::Panicked((record, offset)) => {
                    return Err(input_error(
                        py,
                        "internal error in the capture engine while reading this record",
                        self.path.as_deref(),
                        Some(record),
                        Some(offset),
                    ));
                }
                Outcome::Step(Step::Failed(err)) => self.failure = Some(err),
                Outcome::Step(Step::End) => self.over = true,
                Outcome::Step(Step::More) => {}
            }
        }
        self.counters.store(self.tracker.bind(py))?;
        // At most one batch of Python objects at a time, also when the end of the
        // input finished every live connection at once (a flood leaves a million).
        let out = PyList::empty(py);
        let end = self.pending.len().min(self.handed + BATCH);
        let batch = &self.pending[self.handed..end];
        if let Some(render) = self.render {
            // Rows joined into blocks as the view joins them (",\n" between `--json`
            // objects, a newline otherwise): one Python string, one step of the
            // view's loop and one write per block, not per row. A block ends past
            // `BLOCK_BYTES`: a whole batch (~0.9 MiB of JSON) made every string and
            // its encoded copy a fresh mmap, whose page faults cost more than the rows saved.
            let renderer = Renderer { table: &self.model };
            let sep = if matches!(render, Render::Json) {
                ",\n"
            } else {
                "\n"
            };
            let text = &mut self.text;
            text.clear();
            let mut lines = Vec::new();
            for conn in batch {
                if let (Render::Table, Some(table)) = (render, &mut self.table) {
                    table.push(&renderer, conn, &mut lines);
                    continue;
                }
                if !text.is_empty() {
                    text.push_str(sep);
                }
                match render {
                    Render::Json => renderer.json(conn, text),
                    _ => renderer.zeek(conn, text),
                }
                if text.len() >= BLOCK_BYTES {
                    out.append(text.as_str())?;
                    text.clear();
                }
            }
            if let Some(table) = &mut self.table {
                if end == self.pending.len() && (self.over || self.failure.is_some()) {
                    table.flush(&mut lines);
                }
                for line in lines.drain(..) {
                    if !text.is_empty() {
                        text.push('\n');
                    }
                    text.push_str(&line);
                    if text.len() >= BLOCK_BYTES {
                        out.append(text.as_str())?;
                        text.clear();
                    }
                }
            }
            if !text.is_empty() {
                out.append(text.as_str())?;
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
                let failure = match &mut self.driver {
                    Driver::Here(run) => run.packets.source_mut().take_failure(),
                    Driver::Worker(..) => None,
                };
                return Err(failure.unwrap_or_else(|| read_error(py, &err, path)));
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
    /// "zeek" makes `next_batch` return the batch's connections written as
    /// `--json` objects (joined by ",\n") or conn.log rows (joined by newlines), in
    /// strings of about 32 KiB, instead of `Connection`s; "table" the rows of the streamed
    /// `tcplens pcap` table (joined by newlines), laid out by `columns`
    /// (right-aligned, starting width of each column, from the view), in capture order.
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
        let threaded = matches!(src, Source::File(_));
        // A FIFO or a device given by name is read on the worker too, but decoded
        // there as it comes: a chunk decoded ahead would hold back a live pipe's
        // first connections until 2048 TCP packets had arrived.
        let regular = matches!(&src, Source::File(f) if f.metadata().is_ok_and(|m| m.is_file()));
        let mut packets = Packets::new(src);
        packets.decoder.stats.check_checksums = cfg.check_checksums;
        let (driver, cancel) = if regular {
            let packets = Prefetched::spawn(packets, "tcplens-decode").map_err(thread_error)?;
            start_worker(Box::new(Run::with_source(packets, cfg)))?
        } else if threaded {
            start_worker(Box::new(Run::with_source(packets, cfg)))?
        } else {
            let run = Box::new(Run::with_source(packets, cfg));
            let cancel = Arc::clone(&run.cancel);
            (Driver::Here(run), cancel)
        };
        Ok(Capture {
            driver,
            conv: Converter::new(py, Arc::clone(&table))?,
            model: table,
            tracker: tracker.clone().unbind(),
            path,
            counters: Counters::default(),
            pending: Vec::new(),
            handed: 0,
            failure: None,
            render,
            table: writer,
            text: String::new(),
            over: false,
            done: false,
            cancel,
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
    /// counters are kept current by `next_batch`.) Exact once the input has
    /// ended or failed; before that, a regular file's frame and decode counts
    /// may be up to one chunk of 2048 packets ahead of the connections handed out.
    fn counters<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        let c = &self.counters;
        d.set_item("frames", c.frames)?;
        d.set_item("decode", stats_dict(py, &c.stats)?)?;
        d.set_item("connections", c.connections)?;
        d.set_item("peak", c.peak)?;
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
