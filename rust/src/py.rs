//! The PyO3 surface of the reader and decoder: input from a path or a Python
//! binary file object, errors as `tcplens.errors` exceptions, and
//! `read_and_decode`, which the differential tests call to hold the reader and
//! decoder equal to `tcplens.packets.pcap` and `tcplens.packets.decode`.
//!
//! No `#![forbid(unsafe_code)]` here: PyO3's macros expand to `unsafe` blocks.
//! This file writes none itself.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::panic::{catch_unwind, AssertUnwindSafe};

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};
use pyo3::IntoPyObjectExt;

use crate::decode::DecodeStats;
use crate::engine::Packets;
use crate::reader::ReadError;
use crate::segment::{Addr, Segment};

/// Reads a Python binary file object (stdin, a pipe, a wrapper counting bytes
/// for a progress bar) through its `read` method. A Python exception raised
/// there is kept and re-raised as itself (Ctrl+C stays KeyboardInterrupt).
pub struct PyReader {
    obj: Py<PyAny>,
    pub failure: Option<PyErr>,
}

impl Read for PyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Python::attach(|py| {
            let got = self
                .obj
                .bind(py)
                .call_method1("read", (buf.len(),))
                .and_then(|data| {
                    let bytes = data.cast::<PyBytes>().map_err(|_| {
                        PyTypeError::new_err("the capture must be opened in binary mode")
                    })?;
                    let b = bytes.as_bytes();
                    let n = b.len().min(buf.len());
                    buf[..n].copy_from_slice(&b[..n]);
                    Ok(n)
                });
            got.map_err(|err| {
                let text = err.to_string();
                self.failure = Some(err);
                io::Error::other(text)
            })
        })
    }
}

/// Where the bytes come from: a file Rust opens itself, or a Python file object.
pub enum Source {
    File(File),
    Py(PyReader),
}

impl Read for Source {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Source::File(f) => f.read(buf),
            Source::Py(r) => r.read(buf),
        }
    }
}

impl Source {
    /// A `str` or `os.PathLike` is opened here; anything else must have `read`.
    pub fn from_python(obj: &Bound<'_, PyAny>, path: Option<&str>) -> PyResult<Source> {
        let py = obj.py();
        if obj.is_instance_of::<pyo3::types::PyString>() || obj.hasattr("__fspath__")? {
            let fspath = py.import("os")?.getattr("fspath")?;
            let name: String = fspath.call1((obj,))?.extract()?;
            return File::open(&name).map(Source::File).map_err(|err| {
                let reason = match err.raw_os_error() {
                    Some(code) => os_strerror(py, code),
                    None => err.to_string(),
                };
                input_error(
                    py,
                    &format!("cannot open: {reason}"),
                    path.or(Some(&name)),
                    None,
                    None,
                )
            });
        }
        if !obj.hasattr("read")? {
            return Err(PyTypeError::new_err(
                "expected a path or a binary file object",
            ));
        }
        if let Some(file) = reopen_regular(obj) {
            return Ok(Source::File(file));
        }
        Ok(Source::Py(PyReader {
            obj: obj.clone().unbind(),
            failure: None,
        }))
    }

    /// The Python exception a `read` raised, if that is what ended the input.
    pub fn take_failure(&mut self) -> Option<PyErr> {
        match self {
            Source::Py(r) => r.failure.take(),
            Source::File(_) => None,
        }
    }
}

/// A Python file object over a regular file (`open(path, "rb")`, stdin
/// redirected from a file) is read by Rust itself, from where the object
/// stands: the same bytes, without copying every read through a Python `bytes`
/// object, and without the interpreter, so the engine's own threads can read
/// it (`py_capture`). Opened anew through `/proc/self/fd` (safe Rust cannot
/// adopt a descriptor). Only the exact types `open()` makes, `io.BufferedReader`
/// over `io.FileIO` or a bare `io.FileIO`, whose bytes are the descriptor's and
/// whose `tell` is an offset in it: a decompressing file (`gzip.open`: its
/// `fileno` is the compressed file's), a progress wrapper or a subclass keeps its
/// `read`, as do pipes and terminals (bytes a Python buffer already took from a
/// pipe would be lost, and Ctrl+C must reach a blocked read).
fn reopen_regular(obj: &Bound<'_, PyAny>) -> Option<File> {
    let io = obj.py().import("io").ok()?;
    let file_io = io.getattr("FileIO").ok()?;
    let is_exactly = |o: &Bound<'_, PyAny>, t: &Bound<'_, PyAny>| o.get_type().is(t);
    let plain = if is_exactly(obj, &file_io) {
        true
    } else {
        let buffered = io.getattr("BufferedReader").ok()?;
        is_exactly(obj, &buffered) && is_exactly(&obj.getattr("raw").ok()?, &file_io)
    };
    if !plain {
        return None;
    }
    let fd: i32 = obj.call_method0("fileno").ok()?.extract().ok()?;
    let at: u64 = obj.call_method0("tell").ok()?.extract().ok()?;
    let link = format!("/proc/self/fd/{fd}");
    if !std::fs::metadata(&link).ok()?.is_file() {
        return None;
    }
    let mut file = File::open(&link).ok()?;
    file.seek(SeekFrom::Start(at)).ok()?;
    Some(file)
}

/// The same words Python's `OSError.strerror` uses.
fn os_strerror(py: Python<'_>, code: i32) -> String {
    py.import("os")
        .and_then(|os| os.getattr("strerror")?.call1((code,))?.extract())
        .unwrap_or_else(|_| format!("error {code}"))
}

/// `tcplens.errors.InputError` with its located fields.
pub fn input_error(
    py: Python<'_>,
    message: &str,
    path: Option<&str>,
    record: Option<u64>,
    offset: Option<u64>,
) -> PyErr {
    located(py, "InputError", message, path, record, offset)
}

fn located(
    py: Python<'_>,
    class: &str,
    message: &str,
    path: Option<&str>,
    record: Option<u64>,
    offset: Option<u64>,
) -> PyErr {
    let made = (|| -> PyResult<PyErr> {
        let cls = py.import("tcplens.errors")?.getattr(class)?;
        let kwargs = PyDict::new(py);
        kwargs.set_item("path", path)?;
        kwargs.set_item("record", record)?;
        kwargs.set_item("offset", offset)?;
        Ok(PyErr::from_value(cls.call((message,), Some(&kwargs))?))
    })();
    made.unwrap_or_else(|err| err)
}

/// A reader or decoder error as the exception the Python reference raises.
/// (When a Python `read` failed, `Source::take_failure` has the real exception.)
pub fn read_error(py: Python<'_>, err: &ReadError, path: Option<&str>) -> PyErr {
    located(
        py,
        err.kind.class_name(),
        &err.message,
        path,
        err.record,
        err.offset,
    )
}

/// A panic must never cross into Python: it becomes a located `InputError`.
pub fn guard<T>(
    py: Python<'_>,
    path: Option<&str>,
    at: impl Fn() -> (u64, u64),
    f: impl FnOnce() -> PyResult<T>,
) -> PyResult<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(_) => {
            let (record, offset) = at();
            Err(input_error(
                py,
                "internal error in the capture engine while reading this record",
                path,
                Some(record),
                Some(offset),
            ))
        }
    }
}

pub fn addr_bytes<'py>(py: Python<'py>, addr: &Addr) -> Bound<'py, PyBytes> {
    match addr {
        Addr::V4(a) => PyBytes::new(py, a),
        Addr::V6(a) => PyBytes::new(py, a),
    }
}

fn segment_tuple<'py>(py: Python<'py>, s: &Segment) -> PyResult<Bound<'py, PyTuple>> {
    // (more fields than pyo3 converts as one tuple type: built item by item)
    let items: [Bound<'py, PyAny>; 13] = [
        addr_bytes(py, &s.src).into_any(),
        addr_bytes(py, &s.dst).into_any(),
        s.sport.into_bound_py_any(py)?,
        s.dport.into_bound_py_any(py)?,
        s.seq.into_bound_py_any(py)?,
        s.ack.into_bound_py_any(py)?,
        s.flags.into_bound_py_any(py)?,
        s.window.into_bound_py_any(py)?,
        s.payload.into_bound_py_any(py)?,
        s.ip_len.into_bound_py_any(py)?,
        PyTuple::new(py, crate::encap::chain_texts(s.tunnel).iter())?.into_any(),
        s.bad_checksum.into_bound_py_any(py)?,
        s.payload_cut.into_bound_py_any(py)?,
    ];
    PyTuple::new(py, items)
}

pub fn stats_dict<'py>(py: Python<'py>, s: &DecodeStats) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("frames", s.frames)?;
    d.set_item("tcp", s.tcp)?;
    d.set_item("fragments", s.fragments)?;
    d.set_item("non_ip", s.non_ip)?;
    d.set_item("non_tcp", s.non_tcp)?;
    d.set_item("malformed", s.malformed)?;
    d.set_item("check_checksums", s.check_checksums)?;
    d.set_item("bad_checksums", s.bad_checksums)?;
    let unsupported = PyDict::new(py);
    for (what, n) in &s.unsupported {
        unsupported.set_item(what.to_string(), n)?;
    }
    d.set_item("unsupported", unsupported)?;
    Ok(d)
}

/// Every frame of a capture through the engine's reader and decoder, for the
/// differential tests: `(frames, frame_count, stats, error)` where each frame is
/// `(record, offset, ts_ns, linktype, wire_len, interface, captured, segment)`,
/// `segment` is `None` or the fields of `Segment4` in order, and `error` is the
/// exception that ended the input (not raised) or `None`. `check_checksums`
/// is `DecodeStats.check_checksums`.
#[pyfunction]
#[pyo3(signature = (source, path = None, check_checksums = false))]
pub fn read_and_decode<'py>(
    py: Python<'py>,
    source: &Bound<'py, PyAny>,
    path: Option<&str>,
    check_checksums: bool,
) -> PyResult<Bound<'py, PyTuple>> {
    let mut src = match Source::from_python(source, path) {
        Ok(src) => src,
        Err(err) => {
            return (
                PyList::empty(py),
                0,
                stats_dict(py, &DecodeStats::default())?,
                err.value(py),
            )
                .into_pyobject(py)
        }
    };
    let frames = PyList::empty(py);
    let mut count = 0u64;
    let mut stats = DecodeStats::default();
    let outcome: PyResult<()> = guard(
        py,
        path,
        || (0, 0),
        || {
            let mut packets = Packets::new(&mut src);
            packets.decoder.stats.check_checksums = check_checksums;
            let result = loop {
                match packets.next_decoded() {
                    Ok(Some((f, seg))) => {
                        let seg = match seg {
                            Some(s) => segment_tuple(py, &s)?.into_any(),
                            None => py.None().into_bound(py),
                        };
                        let row = (
                            f.record,
                            f.offset,
                            f.ts_ns,
                            f.linktype,
                            f.wire_len,
                            f.interface,
                            f.captured,
                            seg,
                        );
                        frames.append(row)?;
                    }
                    Ok(None) => break Ok(()),
                    Err(err) => break Err(err),
                }
            };
            count = packets.decoder.frames;
            stats = packets.decoder.stats;
            result.map_err(|err| read_error(py, &err, path))
        },
    );
    let error = match outcome {
        Ok(()) => py.None().into_bound(py),
        Err(err) => src
            .take_failure()
            .unwrap_or(err)
            .value(py)
            .clone()
            .into_any(),
    };
    (frames, count, stats_dict(py, &stats)?, error).into_pyobject(py)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(read_and_decode, m)?)?;
    Ok(())
}
