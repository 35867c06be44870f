//! The PyO3 surface of [`crate::diag`]:
//! `tcplens._engine.socket_heads(buf, start, head, msg_type) -> (bytes, count, stop)`,
//! which `tcplens.sources.columns` calls on each receive buffer of a columnar dump.
//!
//! No `#![forbid(unsafe_code)]` here: PyO3's macros expand to `unsafe` blocks.

use std::panic::{catch_unwind, AssertUnwindSafe};

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::diag::socket_heads;

/// The heads of the socket messages from `start` on; see [`crate::diag::socket_heads`].
#[pyfunction]
#[pyo3(name = "socket_heads")]
fn py_socket_heads<'py>(
    py: Python<'py>,
    buf: &[u8],
    start: usize,
    head: usize,
    msg_type: u16,
) -> PyResult<(Bound<'py, PyBytes>, usize, usize)> {
    let heads = catch_unwind(AssertUnwindSafe(|| {
        socket_heads(buf, start, head, msg_type)
    }))
    .map_err(|_| PyRuntimeError::new_err("internal error in the engine's sock_diag walk"))?;
    Ok((PyBytes::new(py, &heads.data), heads.count, heads.stop))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(py_socket_heads, m)?)?;
    Ok(())
}
