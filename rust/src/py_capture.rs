//! `tcplens._engine.Capture`: a whole capture on its way to connections, for
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

use crate::engine::{Capture as Run, Step};
use crate::flow::Connection;
use crate::py::{guard, read_error, stats_dict, Source};
use crate::py_conn::{config_from_tracker, store_counters, table_from_model, Converter};
use crate::reader::ReadError;

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
    /// Finished connections not yet handed out.
    pending: Vec<Connection>,
    /// The error that ended the input, raised once `pending` is empty.
    failure: Option<ReadError>,
}

#[pymethods]
impl Capture {
    /// `Capture(source, tracker, path=None)`: `source` is a path or a binary
    /// file object; `tracker` a `tcplens.packets.tracker.Tracker` giving the
    /// settings; `path` names the input in error messages.
    #[new]
    #[pyo3(signature = (source, tracker, path = None))]
    fn new(
        py: Python<'_>,
        source: &Bound<'_, PyAny>,
        tracker: &Bound<'_, PyAny>,
        path: Option<String>,
    ) -> PyResult<Self> {
        let table = Arc::new(table_from_model(py)?);
        let cfg = config_from_tracker(tracker, Arc::clone(&table))?;
        let src = Source::from_python(source, path.as_deref())?;
        Ok(Capture {
            run: Run::new(src, cfg),
            conv: Converter::new(py, table)?,
            tracker: tracker.clone().unbind(),
            path,
            pending: Vec::new(),
            failure: None,
        })
    }

    /// The next batch of finished connections (`tracker.Connection` objects);
    /// an empty list once the input has ended. Raises the located error after
    /// the connections a damaged capture still gives.
    fn next_batch<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        if self.pending.is_empty() && self.failure.is_none() {
            let path = self.path.clone();
            let run = &mut self.run;
            let pending = &mut self.pending;
            let at = (run.packets.frames, run.packets.position());
            let step = guard(py, path.as_deref(), || at, || Ok(run.run(BATCH, pending)))?;
            if let Step::Failed(err) = step {
                self.failure = Some(err);
            }
        }
        store_counters(self.tracker.bind(py), &self.run.tracker)?;
        let out = PyList::empty(py);
        for conn in self.pending.drain(..) {
            out.append(self.conv.connection(py, &conn)?)?;
        }
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

    /// Counters for `CaptureSummary`, as a dict: frames, decode (a dict of
    /// `DecodeStats` fields), connections, peak. (The Python `Tracker`'s own
    /// counters are kept current by `next_batch`.)
    fn counters<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        let p = &self.run.packets;
        d.set_item("frames", p.frames)?;
        d.set_item("decode", stats_dict(py, &p.stats)?)?;
        d.set_item("connections", self.run.connections)?;
        d.set_item("peak", self.run.tracker.peak)?;
        Ok(d)
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Capture>()?;
    Ok(())
}
