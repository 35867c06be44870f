"""ss ``users:(…)`` with several processes: a socket shared after fork() keeps every holder."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tcplens import parse_text
from tcplens.sources.records import Holder
from tests.contract import check_snapshot

_NAMES = st.text(
    st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789-_./ :"), min_size=1, max_size=15
)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(_NAMES, st.integers(1, 4_194_304), st.integers(0, 65535)),
        min_size=1,
        max_size=8,
        unique_by=lambda user: (user[1], user[2]),
    ),
    st.booleans(),
)
def test_every_user_is_a_holder_lowest_pid_first(
    users: list[tuple[str, int, int]], old_style: bool
) -> None:
    if old_style:  # ss before iproute2 4.x: ("name",pid,fd)
        listed = ",".join(f'("{name}",{pid},{fd})' for name, pid, fd in users)
    else:
        listed = ",".join(f'("{name}",pid={pid},fd={fd})' for name, pid, fd in users)
    text = (
        "State  Recv-Q Send-Q Local Address:Port Peer Address:Port Process\n"
        f"LISTEN 0      511    0.0.0.0:80         0.0.0.0:*         users:({listed})\n"
    )
    snap = parse_text(text)
    check_snapshot(snap, text_source=True)
    (sock,) = snap.sockets
    ordered = sorted(users, key=lambda user: (user[1], user[2]))
    name, pid, fd = ordered[0]
    assert (sock.process, sock.pid, sock.fd) == (name, pid, fd)
    if len(users) == 1:
        assert sock.holders == ()
    else:
        assert sock.holders == tuple(Holder(p, f, n) for n, p, f in ordered)
