"""Zeek-compatible ``conn_state`` and ``history``, and a conn.log TSV writer.

Zeek defines both fields in ``scripts/base/protocols/conn/main.zeek``: the
``conn_state`` function there maps a pair of *Zeek endpoint states* to S0,
S1, SF, REJ, S2, S3, RSTO, RSTR, RSTOS0, RSTRH, SH, SHR or OTH, and the
``history`` letters are added by the TCP session adapter as packets go by.
To give the same answers, this module keeps Zeek's own per-endpoint states
(INACTIVE, SYN_SENT, SYN_ACK_SENT, PARTIAL, ESTABLISHED, CLOSED, RESET) next
to tcplens's RFC 9293 model; they answer different questions (Zeek: "what did
each side *send*", the model: "what state is each side *in*") and must not be
mixed.

History rules, as main.zeek states them:

* upper case for the originator, lower case for the responder;
* ``a`` (pure ACK), ``d`` (data), ``i`` (FIN+RST) and ``q`` (SYN with FIN or
  RST) appear at most once per direction;
* ``s``, ``h``, ``f``, ``r`` repeat when the sequence number differs from the
  last packet of the same kind in that direction (a FIN's number is taken
  after its payload);
* ``c``, ``g``, ``t``, ``w`` are logarithmic: added at the 1st, 10th, 100th...
  occurrence;
* ``^``: Zeek flipped the direction (the first packet looked like it came
  from the server).

Where each rule lives in Zeek (``src/packet_analysis/protocol/tcp/``
``TCP.cc`` and ``TCPSessionAdapter.cc``, ``src/analyzer/protocol/tcp/``
``TCP_Reassembler.cc``), as the methods below cite them:

* checksums (``TCPAnalyzer::ValidateChecksum``) are verified only when asked
  (``pcap --check-checksums``, Zeek's default): captures taken on the sending
  host carry offloaded, unfilled checksums, so by default, as in Wireshark,
  ``c`` never appears.  A bad one is ``c`` and nothing else;
* ``g`` and ``missed_bytes`` come from a model of Zeek's reassembler: an ACK
  of bytes the capture never showed (below data seen above the hole, or past
  all of it) is a content gap, counted while both sides are established or
  closing cleanly (:meth:`ZeekConn._ack_received`);
* a new connection on a 4-tuple (``IsReuse``, :meth:`ZeekConn.is_reuse`) and
  the direction guess for a first packet that is not a SYN
  (``WantConnection``, :func:`should_flip`).

Sequence numbers are compared in 32-bit space (no wrap tracking past 4 GiB per
direction), and a payload cut by the snapshot length is taken as captured
(Zeek reports it as a gap: ``truncated_tcp_payload``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import IntEnum
from typing import TextIO

__all__ = [
    "CONN_LOG_FIELDS",
    "LIKELY_SERVER_PORTS",
    "ZeekConn",
    "ZeekRow",
    "ZeekState",
    "conn_log_lines",
    "should_flip",
    "write_conn_log",
]

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
_MOD = 1 << 32
_HALF = 1 << 31
_TOO_LARGE_SEQ_DELTA = 1_048_576

#: TCP ports Zeek treats as likely servers when it guesses direction
#: (``IPBasedAnalyzer::IsLikelyServerPort``, ``/tcp`` entries only): Zeek 8.0's
#: ``likely_server_ports``, the union of the ``redef likely_server_ports += {...}``
#: lines in ``scripts/base/protocols/*/main.zeek`` (checked against zeek/zeek's
#: scripts, e.g. commit 015b935c for ftp, http, ldap, redis, socks): ftp 21 2811,
#: ssh 22, smtp 25 587, dns 53, finger 79, http 80 81 631 1080 3128 8000 8080 8888,
#: krb 88, dce-rpc 135, smb 139 445, imap 143, ldap 389 3268, ssl 443 563 585 614
#: 636 989 990 992 993 995 5223, modbus 502, socks 1080, mqtt 1883, rdp 3389, xmpp
#: 5222 5269, redis 6379, irc 6666-6669, dnp3 20000.  MySQL (1434, 3306),
#: PostgreSQL (5432) and syslog-over-TCP (514) register their ports for analysis
#: but never add them here in 8.0.  Zeek 8.1 (zeek/zeek PR 5093) drops the redefs
#: and makes every port an analyzer registers as a server port a likely one,
#: which adds exactly those four; Zeek 8.0 is the long-term-support release.
LIKELY_SERVER_PORTS: frozenset[int] = frozenset(
    {21, 22, 25, 53, 79, 80, 81, 88, 135, 139, 143, 389, 443, 445, 502, 563, 585, 587, 614}
    | {631, 636, 989, 990, 992, 993, 995, 1080, 1883, 2811, 3128, 3268, 3389}
    | {5222, 5223, 5269, 6379, 6666, 6667, 6668, 6669, 8000, 8080, 8888, 20000}
)


def should_flip(sport: int, dport: int, flags: int) -> bool:
    """Zeek's guess, for a connection whose first packet is not a bare SYN,
    that the sender of that packet is really the responder."""
    if (flags & SYN) and not (flags & ACK):
        return False
    if sport not in LIKELY_SERVER_PORTS:
        return False
    if dport in LIKELY_SERVER_PORTS:
        # Both plausible: flip only for a non-SYN packet towards the higher port.
        return not (flags & SYN) and sport < dport
    return True


def _ack_advances(ack: int, ack_seq: int) -> bool:
    """``update_ack_seq``: a later ack moves ``ack_seq``, but an ack of 0 that
    would jump far ahead is more likely broken than a wrap onto 0."""
    d = (ack - ack_seq) % _MOD
    return 0 < d < _HALF and not (ack == 0 and d > _TOO_LARGE_SEQ_DELTA)


def _clean(ep: _ZEndpoint) -> bool:
    """TCP_Reassembler's ``is_clean``: established, or closed straight from it."""
    return ep.state == ZeekState.ESTABLISHED or (
        ep.state == ZeekState.CLOSED and ep.prev_state == ZeekState.ESTABLISHED
    )


def _delta(a: int, b: int) -> int:
    """Signed ``a - b`` in 32-bit sequence space."""
    d = (a - b) % _MOD
    return d - _MOD if d >= _HALF else d


class ZeekState(IntEnum):
    """Zeek's TCP endpoint states (analyzer/protocol/tcp/TCP_Endpoint.h)."""

    INACTIVE = 0
    SYN_SENT = 1
    SYN_ACK_SENT = 2
    PARTIAL = 3
    ESTABLISHED = 4
    CLOSED = 5
    RESET = 6


# history bits: one per once-per-direction letter, responder's shifted by 16
_H_SYN, _H_FIN, _H_RST, _H_FINRST, _H_DATA, _H_ACK, _H_MULTI = 1, 2, 4, 8, 16, 32, 64


class _ZEndpoint:
    __slots__ = (
        "ack_seq",
        "blocks",
        "chk_cnt",
        "chk_thresh",
        "did_close",
        "fin_cnt",
        "fin_seq",
        "gap_cnt",
        "gap_thresh",
        "is_orig",
        "last_fin",
        "last_rst",
        "last_seq",
        "last_syn",
        "prev_state",
        "reassem",
        "rxmt_cnt",
        "rxmt_thresh",
        "start_seq",
        "state",
        "trim",
        "win0_cnt",
        "win0_thresh",
    )

    def __init__(self, is_orig: bool) -> None:
        self.is_orig = is_orig
        self.state = ZeekState.INACTIVE
        self.prev_state = ZeekState.INACTIVE
        self.start_seq = 0
        self.last_seq = 0
        self.ack_seq = 0
        self.fin_cnt = 0
        self.last_syn = 0
        self.last_fin = 0
        self.last_rst = 0
        self.rxmt_cnt = 0
        self.rxmt_thresh = 1
        self.win0_cnt = 0
        self.win0_thresh = 1
        self.gap_cnt = 0
        self.gap_thresh = 1
        #: the reassembler (TCP_Reassembler) in relative numbers: delivered up to
        #: ``reassem``, acknowledged up to ``trim``, ``blocks`` seen above a hole
        self.reassem = 1
        self.trim = 1
        self.blocks: list[list[int]] = []
        self.fin_seq = 0
        self.chk_cnt = 0
        self.chk_thresh = 1
        self.did_close = False

    def set_state(self, state: ZeekState) -> None:
        if state != self.state:
            self.prev_state = self.state
            self.state = state

    def init_seq(self, seq: int) -> None:
        self.start_seq = seq
        self.ack_seq = seq

    def size(self, peer: _ZEndpoint) -> int:
        """Payload bytes from sequence numbers, as Zeek's TCP_Endpoint::Size()."""
        if (
            self.prev_state == ZeekState.SYN_SENT
            and self.state == ZeekState.RESET
            and peer.state == ZeekState.INACTIVE
        ):
            return 0  # a half-open connection found and aborted: numbers mean nothing
        last = _delta(self.last_seq, self.start_seq)
        acked = _delta(self.ack_seq, self.start_seq)
        size = max(last, acked, 0)
        if size > 0:
            size -= 1  # the SYN's sequence number
        if self.fin_cnt > 0 and size > 0:
            size -= 1
        return size


class ZeekConn:
    """Zeek's view of one TCP connection, advanced one packet at a time."""

    __slots__ = (
        "_first_seen",
        "_hist",
        "_seen",
        "flips",
        "is_partial",
        "last_time",
        "missed_bytes",
        "orig",
        "resp",
    )

    def __init__(self) -> None:
        self.orig = _ZEndpoint(True)
        self.resp = _ZEndpoint(False)
        self._hist: list[str] = []
        self._seen = 0
        self.flips = 0
        self.last_time = 0.0
        #: bytes acknowledged but never captured (conn.log ``missed_bytes``)
        self.missed_bytes = 0
        #: TCPSessionAdapter's is_partial and first_packet_seen (ORIG 1, RESP 2)
        self.is_partial = False
        self._first_seen = 0

    # -- history ----------------------------------------------------------------
    @property
    def history(self) -> str:
        return "".join(self._hist)

    def _add(self, ep: _ZEndpoint, code: str) -> None:
        self._hist.append(code if ep.is_orig else code.lower())

    def _check(self, ep: _ZEndpoint, mask: int, code: str) -> bool:
        """Add ``code`` the first time; True if it had been seen before."""
        if not ep.is_orig:
            mask <<= 16
        if self._seen & mask:
            return True
        self._seen |= mask
        self._add(ep, code)
        return False

    def _scaled(self, ep: _ZEndpoint, code: str, counter: str, threshold: str) -> None:
        count = getattr(ep, counter) + 1
        setattr(ep, counter, count)
        if count == getattr(ep, threshold):
            self._add(ep, code)
            setattr(ep, threshold, getattr(ep, threshold) * 10)

    def flip(self) -> None:
        """Swap originator and responder, as Zeek does when it guesses wrong."""
        self.orig, self.resp = self.resp, self.orig
        self.orig.is_orig = True
        self.resp.is_orig = False
        self.flips += 1
        self._hist.append("^")

    # -- one packet ---------------------------------------------------------------
    def packet(
        self,
        is_orig: bool,
        flags: int,
        seq: int,
        ack: int,
        length: int,
        window: int,
        t: float,
        whole: bool = True,
    ) -> None:
        """One segment; ``whole``: its payload was captured whole (else Zeek's
        ``TCP_Endpoint::DataSent`` skips it: ``truncated_tcp_payload``)."""
        ep = self.orig if is_orig else self.resp
        peer = self.resp if is_orig else self.orig
        syn, fin, rst = flags & SYN, flags & FIN, flags & RST
        seg_len = length + (1 if syn else 0) + (1 if fin else 0)
        if rst:
            seg_len -= length
        end = (seq + seg_len) % _MOD
        self._partial_status(is_orig, flags)
        self._init_endpoint(ep, flags, seq, end)
        rel_seq = _delta(seq, ep.start_seq)
        self._update_history(ep, flags, rel_seq, length)
        if (
            window == 0
            and not rst
            and peer.state != ZeekState.CLOSED
            and ep.state != ZeekState.RESET
        ):
            self._scaled(ep, "W", "win0_cnt", "win0_thresh")
        if not (self.orig.did_close and self.resp.did_close):
            self.last_time = t
        if fin:
            ep.fin_cnt += 1
            ep.fin_seq = rel_seq + seg_len
        rel_ack = 0
        if flags & ACK:
            if peer.state == ZeekState.INACTIVE:
                rel_ack = 1
                peer.init_seq((ack - 1) % _MOD)
                peer.last_seq = (ack - 1) % _MOD
            else:
                rel_ack = _delta(ack, peer.start_seq)
                if rel_ack < 0:
                    rel_ack = 0  # TCP_ack_underflow_or_misorder: the ack is not used
                elif not rst and _ack_advances(ack, peer.ack_seq):
                    peer.ack_seq = ack
        delta_last = self._update_last_seq(ep, end, flags, length)
        self._state_machine(ep, peer, is_orig, flags, seq, ack, length, delta_last)
        if flags & ACK:
            self._ack_received(peer, rel_ack)
        if length > 0 and not rst and rel_seq >= 0 and whole:
            self._data_sent(ep, rel_seq + 1 if syn else rel_seq, length)
        self._first_seen |= 1 if is_orig else 2

    def is_reuse(self, flags: int, seq: int) -> bool:
        """Zeek's ``TCPSessionAdapter::IsReuse``: does this packet start a new connection?

        Only a SYN can (a SYN+ACK only while the originator is still INACTIVE, and
        then its number is compared with the responder's).  Once either side has
        closed (``IsClosed()``: FIN or RST from one side) every such SYN starts a
        new connection, a retransmitted one too; before that, only a SYN with
        another initial sequence number does, unless it is the SYN answering a
        SYN+ACK that came first (the reversal :meth:`packet` flips).
        """
        if not flags & SYN:
            return False
        conn_orig = self.orig
        if flags & ACK:
            if self.orig.state != ZeekState.INACTIVE:
                return False  # not a half connection
            conn_orig = self.resp
        if self.orig.did_close or self.resp.did_close:
            return True
        if seq == conn_orig.start_seq:
            return False
        return not (
            not flags & ACK
            and conn_orig.state == ZeekState.SYN_ACK_SENT
            and self.resp.state == ZeekState.INACTIVE
            and seq == self.resp.start_seq
        )

    def checksum_error(self, is_orig: bool) -> None:
        """A segment whose checksum failed (``pcap --check-checksums``).

        Zeek's ``TCPAnalyzer::DeliverPacket`` returns right after
        ``ValidateChecksum`` fails, having only called ``TCP_Endpoint::ChecksumError``:
        a scaled history ``C``/``c``; no state, sequence number, time or count moves.
        """
        self._scaled(self.orig if is_orig else self.resp, "C", "chk_cnt", "chk_thresh")

    def letter(self, is_orig: bool, code: str) -> None:
        """Record an ``A`` (pure ACK) or ``D`` (data) seen in bulk: once per direction."""
        ep = self.orig if is_orig else self.resp
        self._check(ep, _H_DATA if code == "D" else _H_ACK, code)

    def plain(
        self,
        is_orig: bool,
        flags: int,
        seq: int,
        ack: int,
        length: int,
        window: int,
        t: float,
        whole: bool = True,
    ) -> bool:
        """:meth:`packet` for the common case, or False if it is not that case.

        The common case is a segment without SYN, FIN or RST from an endpoint
        Zeek has already seen: no state can change, so only the counters,
        the once-per-direction letters and the sequence bookkeeping move.
        """
        ep = self.orig if is_orig else self.resp
        if flags & (SYN | FIN | RST) or ep.state == ZeekState.INACTIVE:
            return False
        peer = self.resp if is_orig else self.orig
        if self._first_seen != 3:
            self._partial_status(is_orig, flags)
        if length:
            self._check(ep, _H_DATA, "D")
        elif flags & ACK:
            self._check(ep, _H_ACK, "A")
        if window == 0 and peer.state != ZeekState.CLOSED and ep.state != ZeekState.RESET:
            self._scaled(ep, "W", "win0_cnt", "win0_thresh")
        if not (self.orig.did_close and self.resp.did_close):
            self.last_time = t
        rel_ack = 0
        if flags & ACK:
            if peer.state == ZeekState.INACTIVE:
                rel_ack = 1
                peer.init_seq((ack - 1) % _MOD)
                peer.last_seq = (ack - 1) % _MOD
            else:
                rel_ack = (ack - peer.start_seq) % _MOD
                if rel_ack >= _HALF:
                    rel_ack = 0  # underflow: the ack is not used
                elif _ack_advances(ack, peer.ack_seq):
                    peer.ack_seq = ack
        if ep.state != ZeekState.RESET:
            end = (seq + length) % _MOD
            if 0 < (end - ep.last_seq) % _MOD < _HALF:
                ep.last_seq = end
            elif length:
                self._scaled(ep, "T", "rxmt_cnt", "rxmt_thresh")
        if flags & ACK:
            self._ack_received(peer, rel_ack)
        if length and whole:
            rel_seq = (seq - ep.start_seq) % _MOD
            if rel_seq < _HALF:
                self._data_sent(ep, rel_seq, length)
        self._first_seen |= 1 if is_orig else 2
        return True

    # -- content gaps: TCP_Reassembler -------------------------------------------------
    def _partial_status(self, is_orig: bool, flags: int) -> None:
        """``TCPSessionAdapter::SetPartialStatus``, on each direction's first packet."""
        if is_orig:
            if not self._first_seen & 1:
                self.is_partial = not flags & SYN or bool(flags & ACK)
        elif not self._first_seen & 2 and not self.is_partial:
            self.is_partial = not flags & SYN

    def _data_sent(self, ep: _ZEndpoint, seq: int, length: int) -> None:
        """``TCP_Reassembler::DataSent`` then ``Reassembler::NewBlock``: payload at
        relative ``seq`` is delivered if it continues the stream, else kept above
        the hole; what the peer already acknowledged, or was trimmed, is dropped."""
        upper = seq + length
        acked = _delta(ep.ack_seq, ep.start_seq)
        seq = max(seq, acked, ep.trim)
        if upper <= seq:
            return
        if seq <= ep.reassem:
            if upper > ep.reassem:
                ep.reassem = upper
                blocks = ep.blocks
                while blocks and blocks[0][0] <= ep.reassem:
                    ep.reassem = max(ep.reassem, blocks.pop(0)[1])
            return
        blocks = ep.blocks
        i = 0
        while i < len(blocks) and blocks[i][1] < seq:
            i += 1
        j = i
        while j < len(blocks) and blocks[j][0] <= upper:
            seq, upper = min(seq, blocks[j][0]), max(upper, blocks[j][1])
            j += 1
        blocks[i:j] = [[seq, upper]]

    def _ack_received(self, ep: _ZEndpoint, seq: int) -> None:
        """``TCP_Reassembler::AckReceived``: an ACK of ``ep``'s data up to relative
        ``seq``.  Acknowledged bytes the capture never showed are a content gap
        (``Undelivered``): history ``G``/``g`` and ``missed_bytes`` while both sides
        are established or cleanly closing (``TCP_Reassembler::Gap``)."""
        if ep.fin_cnt > 0 and seq >= ep.fin_seq:
            seq = ep.fin_seq - 1  # the FIN's own octet is not data
        if seq <= ep.trim:
            return
        if seq > ep.reassem and not (seq <= 2 and self.is_partial):
            blocks = ep.blocks
            while blocks and blocks[0][0] < seq:
                start, upper = blocks.pop(0)
                if start > ep.reassem:
                    self._gap(ep, start - ep.reassem)
                ep.reassem = max(ep.reassem, upper)
            if seq > ep.reassem:
                self._gap(ep, seq - ep.reassem)
                ep.reassem = seq
        while ep.blocks and ep.blocks[0][1] <= seq:
            ep.blocks.pop(0)
        ep.trim = seq

    def _gap(self, ep: _ZEndpoint, length: int) -> None:
        peer = self.resp if ep is self.orig else self.orig
        if _clean(ep) and _clean(peer):
            self._scaled(ep, "G", "gap_cnt", "gap_thresh")
            self.missed_bytes += length  # main.zeek's content_gap handler

    def _init_endpoint(self, ep: _ZEndpoint, flags: int, seq: int, end: int) -> None:
        syn = flags & SYN
        if ep.state == ZeekState.INACTIVE:
            if syn:
                ep.init_seq(seq)
                ep.last_seq = end
            else:
                # partial connection: number as though a SYN had been seen
                ep.init_seq((seq - 1) % _MOD)
                ep.last_seq = seq
        elif ep.state in (ZeekState.SYN_SENT, ZeekState.SYN_ACK_SENT):
            if syn and seq != ep.start_seq:
                ep.init_seq(seq)
                ep.last_seq = end
        elif ep.state in (ZeekState.ESTABLISHED, ZeekState.PARTIAL):
            if syn:
                ep.init_seq(seq)
                ep.last_seq = end
        elif ep.state == ZeekState.RESET and syn and ep.prev_state == ZeekState.INACTIVE:
            ep.init_seq(seq)
            ep.last_seq = end

    def _update_history(self, ep: _ZEndpoint, flags: int, rel_seq: int, length: int) -> None:
        syn, fin, rst = bool(flags & SYN), bool(flags & FIN), bool(flags & RST)
        bits = syn + fin + rst
        if bits > 1:
            if fin and rst:
                self._check(ep, _H_FINRST, "I")
            else:
                self._check(ep, _H_MULTI, "Q")
        elif bits == 1:
            if syn:
                code = "H" if flags & ACK else "S"
                if self._check(ep, _H_SYN, code) and rel_seq != ep.last_syn:
                    self._add(ep, code)
                ep.last_syn = rel_seq
            if fin:
                fin_at = rel_seq + length
                if self._check(ep, _H_FIN, "F") and fin_at != ep.last_fin:
                    self._add(ep, "F")
                ep.last_fin = fin_at
            if rst:
                if self._check(ep, _H_RST, "R") and rel_seq != ep.last_rst:
                    self._add(ep, "R")
                ep.last_rst = rel_seq
        elif length:
            self._check(ep, _H_DATA, "D")
        elif flags & ACK:
            self._check(ep, _H_ACK, "A")

    def _update_last_seq(self, ep: _ZEndpoint, end: int, flags: int, length: int) -> int:
        delta_last = _delta(end, ep.last_seq)
        if (flags & (SYN | RST)) and abs(delta_last) > _TOO_LARGE_SEQ_DELTA:
            pass
        elif flags & FIN and ep.last_seq == (ep.start_seq + 1) % _MOD:
            ep.last_seq = end
        elif ep.state == ZeekState.RESET:
            pass
        elif delta_last > 0:
            ep.last_seq = end
        elif length > 0:
            self._scaled(ep, "T", "rxmt_cnt", "rxmt_thresh")
        return delta_last

    def _close(self, ep: _ZEndpoint) -> None:
        ep.did_close = True

    def _state_machine(
        self,
        ep: _ZEndpoint,
        peer: _ZEndpoint,
        is_orig: bool,
        flags: int,
        seq: int,
        ack: int,
        length: int,
        delta_last: int,
    ) -> None:
        syn, fin, rst = flags & SYN, flags & FIN, flags & RST
        state = ep.state
        if state == ZeekState.INACTIVE:
            if syn:
                if is_orig:
                    ep.set_state(ZeekState.SYN_ACK_SENT if flags & ACK else ZeekState.SYN_SENT)
                else:
                    if (
                        not flags & ACK
                        and peer.state == ZeekState.SYN_ACK_SENT
                        and seq == ep.start_seq
                    ):
                        # SYN/SYN-ACK reversal: the "originator" answered our SYN.
                        self.is_partial = False
                        self.flip()
                        peer.set_state(ZeekState.ESTABLISHED)
                    if peer.state == ZeekState.SYN_SENT:
                        peer.set_state(ZeekState.ESTABLISHED)
                    ep.set_state(ZeekState.ESTABLISHED)
            if fin:
                ep.set_state(ZeekState.CLOSED)
                self._close(ep)
            if rst:
                ep.set_state(ZeekState.RESET)
                self._close(ep)
            if ep.state == ZeekState.INACTIVE:
                if not is_orig and length == 0 and self.orig.state == ZeekState.SYN_SENT:
                    pass  # an ACK of the SYN before the SYN-ACK does not make a partial
                elif flags & ACK and peer.state == ZeekState.ESTABLISHED:
                    ep.set_state(ZeekState.ESTABLISHED)
                    self.is_partial = False
                else:
                    ep.set_state(ZeekState.PARTIAL)
        elif state in (ZeekState.SYN_SENT, ZeekState.SYN_ACK_SENT):
            if fin:
                ep.set_state(ZeekState.CLOSED)
                self._close(ep)
            if rst:
                ep.set_state(ZeekState.RESET)
                self._close(ep)
        elif state in (ZeekState.ESTABLISHED, ZeekState.PARTIAL):
            if (
                syn
                and state == ZeekState.PARTIAL
                and peer.state == ZeekState.INACTIVE
                and not flags & ACK
            ):
                ep.set_state(ZeekState.SYN_SENT)
            if fin and not rst:
                ep.set_state(ZeekState.CLOSED)
                if peer.state == ZeekState.RESET and peer.prev_state == ZeekState.CLOSED:
                    peer.set_state(ZeekState.CLOSED)  # FIN then RST was a normal close
                self._close(ep)
            if rst:
                ep.set_state(ZeekState.RESET)
                self._close(ep)
        elif state == ZeekState.CLOSED and rst and peer.state != ZeekState.CLOSED:
            ep.set_state(ZeekState.RESET)
            self._close(ep)

    # -- results ------------------------------------------------------------------
    def orig_bytes(self) -> int:
        return self.orig.size(self.resp)

    def resp_bytes(self) -> int:
        return self.resp.size(self.orig)

    @property
    def conn_state(self) -> str:
        """The ``conn_state`` function of main.zeek, branch for branch."""
        os, rs = self.orig.state, self.resp.state
        o_inactive = os in (ZeekState.INACTIVE, ZeekState.PARTIAL)
        r_inactive = rs in (ZeekState.INACTIVE, ZeekState.PARTIAL)
        if rs == ZeekState.RESET:
            if os in (ZeekState.SYN_SENT, ZeekState.SYN_ACK_SENT) or (
                os == ZeekState.RESET and self.orig_bytes() == 0 and self.resp_bytes() == 0
            ):
                return "REJ"
            return "RSTRH" if o_inactive else "RSTR"
        if os == ZeekState.RESET:
            if r_inactive:
                if _RSTOS0.fullmatch(self.history):
                    return "RSTOS0"
                return "OTH"
            return "RSTO"
        if rs == ZeekState.CLOSED and os == ZeekState.CLOSED:
            return "SF"
        if os == ZeekState.CLOSED:
            return "SH" if r_inactive else "S2"
        if rs == ZeekState.CLOSED:
            return "SHR" if o_inactive else "S3"
        if os == ZeekState.SYN_SENT and rs == ZeekState.INACTIVE:
            return "S0"
        if os == ZeekState.ESTABLISHED and rs == ZeekState.ESTABLISHED:
            return "S1"
        return "OTH"


_RSTOS0 = re.compile(r"\^?S[^HAFGIQ]*R.*")

#: conn.log columns, in Zeek's order (base/protocols/conn/main.zeek, Conn::Info).
CONN_LOG_FIELDS: tuple[tuple[str, str], ...] = (
    ("ts", "time"),
    ("uid", "string"),
    ("id.orig_h", "addr"),
    ("id.orig_p", "port"),
    ("id.resp_h", "addr"),
    ("id.resp_p", "port"),
    ("proto", "enum"),
    ("service", "string"),
    ("duration", "interval"),
    ("orig_bytes", "count"),
    ("resp_bytes", "count"),
    ("conn_state", "string"),
    ("local_orig", "bool"),
    ("local_resp", "bool"),
    ("missed_bytes", "count"),
    ("history", "string"),
    ("orig_pkts", "count"),
    ("orig_ip_bytes", "count"),
    ("resp_pkts", "count"),
    ("resp_ip_bytes", "count"),
    ("tunnel_parents", "set[string]"),
)


@dataclass(frozen=True, slots=True)
class ZeekRow:
    """The conn.log values of one connection."""

    ts: float
    orig_h: str
    orig_p: int
    resp_h: str
    resp_p: int
    duration: float
    orig_bytes: int
    resp_bytes: int
    conn_state: str
    missed_bytes: int
    history: str
    orig_pkts: int
    orig_ip_bytes: int
    resp_pkts: int
    resp_ip_bytes: int
    #: uids of the tunnels it came through (``encap.tunnel_parents``), Zeek's set
    tunnel_parents: tuple[str, ...] = ()

    @property
    def uid(self) -> str:
        """A stable Zeek-style uid ("C" + 17 base62 characters) from ts and 4-tuple."""
        key = f"{self.ts:.6f}|{self.orig_h}|{self.orig_p}|{self.resp_h}|{self.resp_p}"
        number = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=12).digest(), "big")
        alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
        out = []
        for _ in range(17):
            number, digit = divmod(number, 62)
            out.append(alphabet[digit])
        return "C" + "".join(out)

    def values(self) -> list[str]:
        # Zeek leaves duration and byte counts unset ("-") when the duration is 0.
        has_span = self.duration > 0
        return [
            f"{self.ts:.6f}",
            self.uid,
            self.orig_h,
            str(self.orig_p),
            self.resp_h,
            str(self.resp_p),
            "tcp",
            "-",
            f"{self.duration:.6f}" if has_span else "-",
            str(self.orig_bytes) if has_span else "-",
            str(self.resp_bytes) if has_span else "-",
            self.conn_state,
            "-",
            "-",
            str(self.missed_bytes),
            self.history or "-",
            str(self.orig_pkts),
            str(self.orig_ip_bytes),
            str(self.resp_pkts),
            str(self.resp_ip_bytes),
            ",".join(self.tunnel_parents) or "-",
        ]


def conn_log_header(opened: str = "") -> list[str]:
    names = "\t".join(name for name, _ in CONN_LOG_FIELDS)
    types = "\t".join(kind for _, kind in CONN_LOG_FIELDS)
    return [
        "#separator \\x09",
        "#set_separator\t,",
        "#empty_field\t(empty)",
        "#unset_field\t-",
        "#path\tconn",
        f"#open\t{opened}" if opened else "#open\t-",
        f"#fields\t{names}",
        f"#types\t{types}",
    ]


def conn_log_lines(rows: Iterable[ZeekRow]) -> Iterator[str]:
    """The lines of a conn.log: header, one TSV line per row, ``#close``."""
    yield from conn_log_header()
    for row in rows:
        yield "\t".join(row.values())
    yield "#close\t-"


def write_conn_log(rows: Iterable[ZeekRow], out: TextIO) -> int:
    count = 0
    for line in conn_log_lines(rows):
        out.write(line + "\n")
        if not line.startswith("#"):
            count += 1
    return count
