"""Type stub of the compiled capture engine (Rust, ``rust/src/py*.rs``)."""

from typing import Any, BinaryIO

from tcplens.packets.tracker import Change, Connection, Tracker

def read_and_decode(
    source: str | BinaryIO, path: str | None = None, check_checksums: bool = False
) -> tuple[
    list[tuple[int, int, int, int, int, int, int, tuple[Any, ...] | None]],
    int,
    dict[str, int],
    BaseException | None,
]: ...

class Capture:
    def __init__(
        self,
        source: str | BinaryIO,
        tracker: Tracker,
        path: str | None = None,
        render: str | None = None,
        columns: tuple[tuple[bool, int], ...] | None = None,
    ) -> None: ...
    def next_batch(self) -> list[Any]: ...  # Connections, or blocks of rendered rows
    def counters(self) -> dict[str, Any]: ...

# rust/src/py_conn.rs: the engine's table and its tracker alone, for the differential tests
def transition_rows() -> list[tuple[str, str, str | None, str, tuple[int, ...]]]: ...
def track_segments(
    rows: list[tuple[int, int, int, tuple[Any, ...]]], tracker: Tracker
) -> list[list[Connection]]: ...
def endpoint_trace(
    state: str,
    isn: int,
    msl: float,
    now: float,
    ops: list[tuple[str, str, int, int, int, int, float]],
) -> tuple[list[tuple[Any, ...]], list[tuple[float, str, str]]]: ...

class FrameTracker:
    def __init__(self, tracker: Tracker, path: str | None = None) -> None: ...
    def feed(
        self, ts_ns: int, linktype: int, data: bytes, wire_len: int, record: int, offset: int
    ) -> tuple[list[Change], list[Connection]]: ...
    def finish(self) -> tuple[list[Change], list[Connection]]: ...
    def counters(self) -> dict[str, Any]: ...

# rust/src/py_ftrace.rs: tracefs ring-buffer pages (trace exact mode, issue 16)
class TraceDecoder:
    def __init__(
        self,
        page: tuple[int, int, int, int],
        type_offset: int,
        events: list[tuple[int, int, list[tuple[int, int, bool, bool]]]],
    ) -> None: ...
    def decode(self, pages: list[tuple[int, bytes]]) -> tuple[list[tuple[Any, ...]], int]: ...
    def events(
        self, pages: list[tuple[int, bytes]], wall_offset: float, objects: tuple[Any, ...]
    ) -> tuple[list[Any], int]: ...

# rust/src/diag.rs (sources/columns.py): the heads of a run of sock_diag socket messages
def socket_heads(buf: bytes, start: int, head: int, msg_type: int) -> tuple[bytes, int, int]: ...

# rust/src/diag.rs (analysis/summary.py): the summary's two counting passes over a
# columnar dump's blocks (data, stride, count, is TCP, family) at the given field offsets
def socket_state_counts(
    blocks: list[tuple[bytes, int, int, bool, int]], layout: tuple[int, ...]
) -> tuple[list[int], list[int], int, int]: ...
def socket_details(
    blocks: list[tuple[bytes, int, int, bool, int]],
    layout: tuple[int, ...],
    rank_of_code: bytes,
    active: list[bool],
    listen_code: bytes,
    oldest_of_code: bytes,
    timewait_timer: int,
    top: int,
    found: list[int],
    head: int,
) -> tuple[
    list[tuple[list[tuple[int, int]], list[tuple[bytes, int]], int, int]],
    list[tuple[int, int]],
    list[tuple[int, int, tuple[int, bytes] | None]],
]: ...
