//! The PyO3 surface of [`crate::diag`]:
//! `tcplens._engine.socket_heads(buf, start, head, msg_type) -> (bytes, count, stop)`,
//! which `tcplens.sources.columns` calls on each receive buffer of a columnar dump;
//! `socket_state_counts` and `socket_details`, the two counting passes of
//! `tcplens.analysis.summary` over the same dump's blocks of socket messages.
//!
//! No `#![forbid(unsafe_code)]` here: PyO3's macros expand to `unsafe` blocks.

use std::panic::{catch_unwind, AssertUnwindSafe};

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::PyBytes;

use crate::diag::{details, socket_heads, state_counts, Block, Layout, Plan};

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

/// A block as Python hands it: (data, stride, count, is TCP, family 4|6).
type PyBlock = (PyBackedBytes, usize, usize, bool, u8);
/// Offsets of state, timer, sport, dport, dst, expires and inode in a message.
type PyLayout = (usize, usize, usize, usize, usize, usize, usize);

fn layout(l: PyLayout) -> Layout {
    Layout {
        state: l.0,
        timer: l.1,
        sport: l.2,
        dport: l.3,
        dst: l.4,
        expires: l.5,
        inode: l.6,
    }
}

fn blocks(raw: &[PyBlock]) -> Vec<Block<'_>> {
    raw.iter()
        .map(|(data, stride, count, tcp, family)| Block {
            data: data.as_ref(),
            stride: *stride,
            count: *count,
            tcp: *tcp,
            family: *family,
        })
        .collect()
}

fn internal(what: &str) -> PyErr {
    PyRuntimeError::new_err(format!("internal error in the engine's {what}"))
}

/// Sockets per state code (TCP, UDP: 256 counts each) and per family (IPv4, IPv6).
#[pyfunction]
#[pyo3(name = "socket_state_counts")]
fn py_socket_state_counts(
    raw: Vec<PyBlock>,
    fields: PyLayout,
) -> PyResult<(Vec<u64>, Vec<u64>, u64, u64)> {
    let counts = catch_unwind(AssertUnwindSafe(|| {
        state_counts(&blocks(&raw), &layout(fields))
    }))
    .map_err(|_| internal("socket state counts"))?;
    Ok((counts.tcp, counts.udp, counts.v4, counts.v6))
}

/// One busy state: (top ports, peer candidates, sockets without inode, of them timed).
type PyDetail<'py> = (Vec<(u16, u64)>, Vec<(Bound<'py, PyBytes>, u64)>, u64, u64);
/// One oldest slot: (sockets, timed, (ms left, head) of the first with the fewest).
type PyOldest<'py> = (u64, u64, Option<(u32, Bound<'py, PyBytes>)>);
/// The busy states, (inode, rank) of the tallied inodes, the oldest slots.
type PyDetails<'py> = (Vec<PyDetail<'py>>, Vec<(u32, u8)>, Vec<PyOldest<'py>>);

/// The busy states' ports, peers and owners and the oldest timers; see [`crate::diag::details`].
#[pyfunction]
#[pyo3(name = "socket_details")]
#[allow(clippy::too_many_arguments)]
fn py_socket_details<'py>(
    py: Python<'py>,
    raw: Vec<PyBlock>,
    fields: PyLayout,
    rank_of_code: &[u8],
    active: Vec<bool>,
    listen_code: &[u8],
    oldest_of_code: &[u8],
    timewait_timer: u8,
    top: usize,
    found: Vec<u32>,
    head: usize,
) -> PyResult<PyDetails<'py>> {
    let found: std::collections::HashSet<u32> = found.into_iter().collect();
    let plan = Plan {
        rank_of_code,
        active: &active,
        listen_code,
        oldest_of_code,
        timewait_timer,
        top,
        found: &found,
    };
    let out = catch_unwind(AssertUnwindSafe(|| {
        details(&blocks(&raw), &layout(fields), &plan, head)
    }))
    .map_err(|_| internal("socket details"))?;
    let busy = out
        .busy
        .into_iter()
        .map(|d| {
            let peers = d
                .peers
                .iter()
                .map(|(key, n)| (PyBytes::new(py, key), *n))
                .collect();
            (d.ports, peers, d.ownerless, d.ownerless_timed)
        })
        .collect();
    let oldest = out
        .oldest
        .into_iter()
        .map(|o| {
            let first = o.first.map(|(ms, head)| (ms, PyBytes::new(py, &head)));
            (o.total, o.timed, first)
        })
        .collect();
    Ok((busy, out.rank, oldest))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(py_socket_heads, m)?)?;
    m.add_function(wrap_pyfunction!(py_socket_state_counts, m)?)?;
    m.add_function(wrap_pyfunction!(py_socket_details, m)?)?;
    Ok(())
}
