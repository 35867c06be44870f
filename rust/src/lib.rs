//! tcplens capture engine: the per-packet path of `tcplens pcap` and
//! `tcplens capture` (reader -> decoder -> tracker), as the private extension
//! module `tcplens._engine`. Python stays the front (CLI, views, model); the
//! readable Python modules in `src/tcplens/packets/` are the reference this
//! crate is held equal to by differential tests.
//!
//! # Building and testing
//!
//! maturin is the Python package's build backend (`pyproject.toml`,
//! `[tool.maturin]`), so the usual install builds this crate too:
//!
//! ```text
//! python3 -m pip install -e '.[test]'   # builds tcplens/_engine.abi3.so (release profile)
//! bash scripts/test                     # the above, cargo test, clippy, fuzz corpus, pytest
//! cd rust && cargo test                 # pure-Rust tests; no Python needed to link
//! cd rust && cargo clippy --all-targets --features python -- -D warnings
//! ```
//!
//! After editing Rust, run the `pip install -e .` line again (an editable
//! install does not rebuild on import). `maturin develop --release` from the
//! repository root does the same, faster when the build cache is warm.
//!
//! # Layout (one job per module)
//!
//! - `segment`: the decoded TCP segment and packet, the interface between the halves.
//! - `reader`: pcap / pcapng records, zero-copy, errors as values with record and offset.
//! - `decode`: link -> IP -> TCP, every encapsulation `packets/decode.py` knows.
//! - `engine`: the loop: read, check the link type, decode, feed the tracker.
//! - `render`: `--json` objects, `--zeek` rows and the piped table's rows written as
//!   Python writes them.
//! - `endpoint`, `flow`, `tracker`, `zeek`: both endpoints' states from the model's
//!   table, the flow table, Zeek conn_state and history (ports of `packets/*.py`).
//! - `diag`: the sock_diag dump's socket messages cut to their heads (`tcplens status`),
//!   with `py_diag` its PyO3 function.
//! - `ftrace`: tracefs ring-buffer pages -> TCP tracepoint records (`trace` exact mode),
//!   with `py_ftrace` its PyO3 class.
//! - `py`, `py_capture`, `py_conn` (feature `python`): the PyO3 surface, the only
//!   modules that touch Python: input and errors, the `Capture` class, connections.
//!
//! The pure modules forbid `unsafe`; the PyO3 modules cannot (its macros
//! expand to `unsafe` blocks) and live behind the `python` feature, so that
//! `cargo test` builds without linking libpython. A module that needs PyO3
//! goes under `#[cfg(feature = "python")]` below, and registers itself from
//! the `#[pymodule]` with one `register(m)` call.

pub mod decode;
pub mod diag;
pub mod encap;
pub mod endpoint;
pub mod engine;
pub mod flow;
pub mod ftrace;
pub mod reader;
pub mod render;
pub mod segment;
pub mod tracker;
pub mod zeek;

/// What several modules' tests share.
#[cfg(test)]
pub(crate) mod testing {
    /// Marsaglia's xorshift64: reproducible draws without a crate for them.
    pub fn xorshift(mut x: u64) -> impl FnMut() -> u64 {
        move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        }
    }
}

#[cfg(feature = "python")]
pub mod py;
#[cfg(feature = "python")]
pub mod py_capture;
#[cfg(feature = "python")]
pub mod py_conn;
#[cfg(feature = "python")]
pub mod py_diag;
#[cfg(feature = "python")]
pub mod py_ftrace;

#[cfg(feature = "python")]
#[pyo3::pymodule]
fn _engine(m: &pyo3::Bound<'_, pyo3::types::PyModule>) -> pyo3::PyResult<()> {
    py::register(m)?;
    py_diag::register(m)?;
    py_capture::register(m)?;
    py_conn::register(m)?;
    py_ftrace::register(m)?;
    Ok(())
}
