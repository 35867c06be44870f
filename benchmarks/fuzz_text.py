"""Token-level fuzzing of every saved-text format, for a bounded time or number of inputs.

Each input is cut from a real dump (``tests/fixtures/text`` plus a small
seed per format that has no fixture file) and given one to four mutations
of its tokens: digit runs lengthened past Python's 4,300-digit ``int()``
limit or to integer boundaries, tokens repeated in place or as extra
fields, tokens spliced in from elsewhere in the corpus, deleted, swapped,
cut, or given stray bytes (no-break spaces, ANSI colour codes, Unicode
digits, NULs); whole lines repeated, dropped or cut.  Every input is parsed
with its format named or with auto-detection, leniently or ``strict``.

The cut: parsing is linear, 5-20 µs a line here and up to twice that with
auto-detection, so an input costs what its seed weighs, and the seeds range
from 4 to 689 lines (a whole 71 KB BSD dump made that format over ten times
slower to fuzz than ``proc``, for the same one to four mutated lines).  An
input is therefore a window of at most :data:`WINDOW` lines of its seed,
with the seed's first lines and the banner and header lines above the
window (the context every parser reads state from: sections, column
headers); one input in :data:`WHOLE` is the whole seed, for what spans a
dump (sections far apart, counts, notes).

A *finding* is anything but a Snapshot or an :class:`InputError` (a
traceback in the CLI), a warning or error message longer than 400
characters (one readable line is the contract), one parse taking over 1 s
of CPU, or a hang: the inputs are parsed in a child process, killed when it shows no
progress while using ``--hang`` seconds of CPU (a regex backtracking in C
cannot be interrupted otherwise; CPU, since a loaded machine stretches wall
time).  Findings are grouped by exception type and the line
that raised it (or the kind of message); the first input of each group is
minimised, and with ``--save`` written to ``tests/fixtures/fuzz/`` (replayed
by ``tests/sources/text/test_fuzz_corpus.py``).  Every input is drawn from
its own seeded generator (``seed-format-index``), so a finding's number is
enough to make it again, and a run can be resumed where another stopped
(``--start``).

    python3 benchmarks/fuzz_text.py [--seconds 30] [--inputs N] [--start K] \\
        [--formats ss,proc] [--seed 1] [--hang 10] [--save] [--markdown]

Bounded: ``--seconds`` per format (at most 3600), or ``--inputs`` per
format, whichever ends first; inputs at most 1 MiB.  Exit status 1 when
there are findings.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import multiprocessing
import os
import random
import re
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from tcplens.errors import InputError  # noqa: E402
from tcplens.model.states import SPELLINGS  # noqa: E402
from tcplens.sources.text import FORMATS, REGISTRY, parse_text  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures" / "text"
CORPUS = ROOT / "tests" / "fixtures" / "fuzz"
MAX_INPUT = 1 << 20
#: longest warning or error line that still reads as one line
MAX_MESSAGE = 400

#: seeds for formats without a fixture file, and ss with every optional column
EXTRA_SEEDS: dict[str, str] = {
    "powershell": (
        "PS C:\\> Get-NetTCPConnection\n\n"
        "LocalAddress      LocalPort RemoteAddress    RemotePort State       AppliedSetting"
        " OwningProcess\n"
        "------------      --------- -------------    ---------- -----       --------------"
        " -------------\n"
        "::                49669     ::               0          Listen                    "
        "  3136\n"
        "192.168.1.5       50435     20.42.65.90      443        Established Internet      "
        "  4712\n"
        "127.0.0.1         5354      127.0.0.1        49672      TimeWait    Datacenter    "
        "  0\n"
    ),
    "ss": (
        "State  Recv-Q Send-Q Local Address:Port  Peer Address:Port Process\n"
        'LISTEN 0      128    0.0.0.0:22          0.0.0.0:*         users:(("sshd",pid=880,fd=3))'
        " ino:1234 sk:1 <->\n"
        'ESTAB  0      36     10.0.0.5:22         10.0.0.9:51234    users:(("sshd",pid=2322,fd=4))'
        " timer:(on,1min30sec,0) uid:1000 ino:2345 sk:2 <->\n"
        "\t cubic wscale:7,7 rto:204 rtt:0.5/0.25 mss:1448 cwnd:10 bytes_acked:1234"
        " retrans:0/2 lastsnd:100\n"
    ),
}

STATE_WORDS = sorted({w for tools in SPELLINGS.values() for ws in tools.values() for w in ws})
NUMBERS = ["0", "-1", "65535", "65536", str(2**31), str(2**32), str(2**64), "1" * 4301, "9" * 6000]
JUNK = ["\xa0", "\x1b[31m", "\x00", "\t", "\r", "١٢٣", "¹", "𝟗", "\u3000", "\ufeff", '"', "(", ")"]
_TOKEN = re.compile(r"\S+")
_DIGITS = re.compile(r"[0-9]+")


def seeds() -> dict[str, list[str]]:
    """Every fixture, grouped by the format it is detected as, plus :data:`EXTRA_SEEDS`."""
    out: dict[str, list[str]] = {fmt: [] for fmt in FORMATS}
    for path in sorted(FIXTURES.glob("*.txt")):
        text = path.read_bytes().decode("utf-8", errors="replace")
        try:
            fmt = parse_text(text, path=path.name).source.removeprefix("text:")
        except InputError:
            continue
        out[fmt].append(text)
    for fmt, text in EXTRA_SEEDS.items():
        out[fmt].append(text)
    return out


#: data lines an input keeps from its seed (besides the seed's head and its headers)
WINDOW = 16
#: one input in this many is its whole seed
WHOLE = 32
#: first lines of a seed every excerpt keeps (a prompt, a banner)
HEAD = 3
#: lines a window may move up to start on a row (Windows ``-b`` prints a row's
#: program on the lines below it)
BACK = 8


@dataclass(frozen=True)
class Seed:
    """A seed dump split into lines, with what a window into it needs."""

    lines: tuple[str, ...]
    #: banner, section and header lines (the format scores them 3 or more, or they
    #: start with netstat's ``Active``) and the line after each (an underline, a
    #: blank), in order: the state every parser carries down a dump
    landmarks: tuple[int, ...]
    #: lines the format scores at all (rows, headers, banners): where a window starts
    scored: frozenset[int]


def prepare(fmt: str, texts: list[str]) -> list[Seed]:
    """Split each seed once, and find its landmarks with the format's own scorer."""
    score = REGISTRY[fmt].score
    out = []
    for text in texts:
        lines = tuple(text.split("\n"))
        marks: set[int] = set()
        scored: set[int] = set()
        for i, line in enumerate(lines):
            stripped = line.strip()
            points = score(stripped, stripped.split()) if stripped else 0
            if points:
                scored.add(i)
            if points >= 3 or stripped.startswith("Active "):
                marks.update((i, i + 1))
        landmarks = tuple(sorted(m for m in marks if m < len(lines)))
        out.append(Seed(lines, landmarks, frozenset(scored)))
    return out


def excerpt(rng: random.Random, seed: Seed) -> list[str]:
    """A window of ``seed`` with the context above it, or (one in :data:`WHOLE`) all of it."""
    lines = seed.lines
    if len(lines) <= HEAD + WINDOW or rng.randrange(WHOLE) == 0:
        return list(lines)
    start = rng.randrange(HEAD, len(lines))
    row = next((i for i in range(start, max(HEAD, start - BACK) - 1, -1) if i in seed.scored), None)
    start = start if row is None else row
    above = [i for i in seed.landmarks if HEAD <= i < start][-4:]
    stop = min(len(lines), start + rng.randint(1, WINDOW))
    return [*lines[:HEAD], *(lines[i] for i in above), *lines[start:stop]]


def mutate_token(rng: random.Random, token: str, pool: list[str]) -> str:
    """One token, changed the way damaged and hostile dumps change them."""
    how = rng.randrange(9)
    runs = list(_DIGITS.finditer(token))
    if how == 0 and runs:  # lengthen a number
        run = rng.choice(runs)
        width = rng.choice([5, 11, 20, 21, 40, 4300, 4301, 6000])
        return token[: run.start()] + rng.choice("0159") * width + token[run.end() :]
    if how == 1 and runs:  # a boundary number
        run = rng.choice(runs)
        return token[: run.start()] + rng.choice(NUMBERS) + token[run.end() :]
    if how == 2:  # repeated in place
        return token * rng.choice([2, 3, 50, 2000])
    if how == 3:  # repeated as extra fields
        return " ".join([token] * rng.choice([2, 3, 20]))
    if how == 4:  # spliced from elsewhere
        return rng.choice(pool)
    if how == 5:  # a state word
        return rng.choice(STATE_WORDS)
    if how == 6 and len(token) > 1:  # cut
        return token[: rng.randrange(1, len(token))]
    if how == 7:  # stray characters
        at = rng.randrange(len(token) + 1)
        return token[:at] + rng.choice(JUNK) + token[at:]
    return ""  # deleted


def mutate(rng: random.Random, lines: list[str], pool: list[str]) -> str:
    """One to four token or line mutations of ``lines`` (changed in place), joined."""
    for _ in range(rng.randint(1, 4)):
        index = rng.randrange(len(lines))
        line = lines[index]
        kind = rng.randrange(10)
        if kind == 0:
            lines.insert(index, line)  # a line repeated
        elif kind == 1 and len(lines) > 1:
            del lines[index]
        elif kind == 2:
            lines[index] = line[: rng.randrange(len(line) + 1)]
        else:
            tokens = list(_TOKEN.finditer(line))
            if not tokens:
                continue
            if kind == 3 and len(tokens) > 1:  # two fields swapped
                a, b = rng.sample(tokens, 2)
                first, second = sorted((a, b), key=lambda m: m.start())
                lines[index] = (
                    line[: first.start()]
                    + second.group()
                    + line[first.end() : second.start()]
                    + first.group()
                    + line[second.end() :]
                )
                continue
            match = rng.choice(tokens)
            new = mutate_token(rng, match.group(), pool)
            lines[index] = line[: match.start()] + new + line[match.end() :]
    return "\n".join(lines)[:MAX_INPUT]


@dataclass
class Finding:
    key: str
    text: str
    fmt: str | None
    strict: bool
    #: the input's number in its run (``seed-format-index`` makes it again)
    index: int = -1
    count: int = 1


@dataclass
class Tally:
    tried: int = 0
    seconds: float = 0.0
    findings: dict[str, Finding] = field(default_factory=dict)

    @property
    def failed(self) -> int:
        return sum(f.count for f in self.findings.values())

    def merge(self, other: Tally) -> None:
        self.tried += other.tried
        for key, finding in other.findings.items():
            if key in self.findings:
                self.findings[key].count += finding.count
            else:
                self.findings[key] = finding


#: one input parsed for longer than this (CPU time) is a finding (a regex backtracking, say)
SLOW_SECONDS = 1.0


def check(text: str, fmt: str | None, strict: bool) -> str | None:
    """None when the parse ends as the contract says, else what went wrong (a group key)."""
    if _beat is not None:
        _beat.value += 1
    # wall time first (a vDSO read; the CPU clock is a system call, 40 times dearer),
    # and a slow parse timed again in CPU time, since other jobs share the machine
    started = time.perf_counter()
    try:
        snap = parse_text(text, fmt, path="fuzz.txt", strict=strict)
    except InputError as exc:
        message = str(exc)
        if "\n" in message or len(message) > MAX_MESSAGE:
            return f"error over {MAX_MESSAGE} characters: {_gist(exc.reason)}"
        snap = None
    except Exception as exc:  # the point: anything else is a finding
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        return f"{type(exc).__name__} at {Path(frame.filename).name}:{frame.lineno}"
    if time.perf_counter() - started > SLOW_SECONDS and _cpu_seconds(text, fmt, strict) > (
        SLOW_SECONDS
    ):
        return f"slow: over {SLOW_SECONDS:g} s for one input"
    for warning in snap.warnings if snap else ():
        if warning.line < 1:
            return "warning without a line number"
        if len(str(warning)) > MAX_MESSAGE:
            return f"warning over {MAX_MESSAGE} characters: {_gist(warning.message)}"
    return None


def _cpu_seconds(text: str, fmt: str | None, strict: bool) -> float:
    """The CPU time of one more parse: a slow wall clock may be other jobs on the machine."""
    started = time.process_time()
    with contextlib.suppress(InputError):
        parse_text(text, fmt, path="fuzz.txt", strict=strict)
    return time.process_time() - started


def _gist(message: str) -> str:
    """A message without what it quotes or counts, so one kind of finding is one group."""
    return re.sub(r"[0-9]+", "N", re.sub(r"'.*", "'…'", message))[:60]


def minimise(text: str, fmt: str | None, strict: bool, key: str) -> str:
    """Drop lines while the same finding remains (keeps the corpus small and readable)."""
    lines = text.split("\n")
    chunk = max(1, len(lines) // 2)
    while True:
        i = 0
        while i < len(lines) and len(lines) > 1:
            trial = lines[:i] + lines[i + chunk :]
            if check("\n".join(trial), fmt, strict) == key:
                lines = trial
            else:
                i += chunk
        if chunk == 1:
            return "\n".join(lines)
        chunk //= 2


class Inputs:
    """The reproducible inputs of one format and seed: number ``index`` is made alone."""

    def __init__(self, fmt: str, texts: list[str], seed: str) -> None:
        self.fmt, self.seed = fmt, seed
        self.seeds = prepare(fmt, texts)
        self.pool = sorted({t for text in texts for t in text.split()})

    def make(self, index: int) -> tuple[str, str | None, bool]:
        """(input, the format named or None for auto-detection, strict?)."""
        rng = random.Random(f"{self.seed}-{index}")
        text = mutate(rng, excerpt(rng, rng.choice(self.seeds)), self.pool)
        return text, self.fmt if rng.random() < 0.5 else None, rng.random() < 0.3


#: what a watched worker shares with its parent (no lock: one writer each): the input
#: being checked, and a heartbeat that moves with every parse (minimising included)
_index: Any = None
_beat: Any = None


def worker(made: Inputs, start: int, stop: int, deadline: float, out: Any) -> None:
    """Check inputs ``start``, ``start + 1``, ... until ``stop`` or ``deadline``.

    Each failing input is sent at once (the first of its kind minimised,
    the others as a count), so what a child found survives its being
    killed on a later hang; the number of inputs tried is sent last.
    """
    seen: set[str] = set()
    index = start
    while index < stop and time.monotonic() < deadline:
        # the clock is read once a batch: an input takes tens of microseconds
        batch = min(stop, index + 256)
        while index < batch:
            _index.value = index
            text, fmt, strict = made.make(index)
            key = check(text, fmt, strict)
            if key is not None:
                first = key not in seen
                if first:
                    seen.add(key)
                    text = minimise(text, fmt, strict, key)
                out.send(Finding(key, text if first else "", fmt, strict, index))
            index += 1
    out.send(index - start)


#: a child showing no progress for this many times ``--hang`` of wall time is hung even
#: if it uses no CPU (blocked); otherwise it must have used ``--hang`` seconds of CPU
WALL_HANG = 30


def child_cpu(pid: int | None) -> float:
    """User and system CPU seconds of a live process (``/proc/PID/stat``), 0.0 when gone.

    The watchdog counts CPU, not wall time: at ``nice -n 15`` on a loaded
    machine one second of parsing took over ten of wall time, and was
    reported as a hang.
    """
    if pid is None:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _receive(reader: Any, total: Tally, wait: float) -> int | None:
    """Merge the findings a child sent into ``total``; its count of inputs when it is done."""
    while reader.poll(wait):
        try:
            message: Finding | int = reader.recv()
        except EOFError:
            return None
        if isinstance(message, int):
            return message
        total.merge(Tally(0, findings={message.key: message}))
        wait = 0
    return None


def fuzz(made: Inputs, seconds: float, hang: float, start: int = 0, count: int = 1 << 62) -> Tally:
    """Check inputs ``start`` to ``start + count`` in a child process killed if it hangs.

    A parse stuck in C (a regex backtracking) cannot be interrupted from
    Python; the parent watches the heartbeat instead, and when the child has
    spent ``hang`` seconds of CPU without one (or :data:`WALL_HANG` times that
    of wall time) kills it, records the input it was on (made
    again from its number) and carries on with the next one in a new child.
    Progress goes to stderr once a minute.
    """
    global _index, _beat
    context = multiprocessing.get_context("fork")
    total = Tally()
    started = time.monotonic()
    deadline = started + seconds
    stop = start + count
    told = started
    while start < stop and time.monotonic() < deadline:
        _index = context.Value("q", start, lock=False)
        _beat = context.Value("q", 0, lock=False)
        # a pipe, not a queue: what the child sent is in the pipe even if it is killed
        reader, writer = context.Pipe(duplex=False)
        child = context.Process(target=worker, args=(made, start, stop, deadline, writer))
        child.start()
        writer.close()
        last, moved, spent = -1, time.monotonic(), 0.0
        while True:
            tried = _receive(reader, total, 0.2)
            if tried is not None:
                child.join(10)
                total.tried += tried
                total.seconds = time.monotonic() - started
                return total
            now = time.monotonic()
            if now - told >= 60:
                told = now
                print(f"  {made.fmt}: at input {_index.value:,}", file=sys.stderr, flush=True)
            if _beat.value != last:
                last, moved, spent = _beat.value, now, child_cpu(child.pid)
            elif (
                child_cpu(child.pid) - spent > hang
                or now - moved > WALL_HANG * hang
                or not child.is_alive()
            ):
                alive = child.is_alive()
                child.kill()
                child.join(10)
                _receive(reader, total, 0)  # what it found before
                index = _index.value
                text, fmt, strict = made.make(index)
                key = f"hang: no answer within {hang:g} s of CPU" if alive else "worker died"
                part = Tally(index - start + 1)
                part.findings[key] = Finding(key, text, fmt, strict, index)
                total.merge(part)
                start = index + 1
                break
        reader.close()
    total.seconds = time.monotonic() - started
    return total


def save(fmt: str, finding: Finding) -> Path:
    """Write a failing input into the corpus, named by format and content."""
    digest = hashlib.sha1(finding.text.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    CORPUS.mkdir(parents=True, exist_ok=True)
    path = CORPUS / f"{fmt}-{digest}.txt"
    path.write_text(finding.text, encoding="utf-8", newline="")
    return path


def table(rows: list[tuple[str, Tally]], heading: Callable[[], str]) -> str:
    out = [
        heading(),
        "",
        "| format | inputs tried | inputs/s | failing inputs | distinct findings |",
        "|---|---:|---:|---:|---:|",
    ]
    for fmt, tally in rows:
        rate = tally.tried / tally.seconds if tally.seconds else 0.0
        out.append(
            f"| {fmt} | {tally.tried:,} | {rate:,.0f} | {tally.failed:,} | {len(tally.findings)} |"
        )
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="per format")
    parser.add_argument("--inputs", type=int, default=1 << 62, help="per format, at most")
    parser.add_argument("--start", type=int, default=0, help="first input's number (resume)")
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--hang", type=float, default=10.0, help="CPU seconds without progress that make a hang"
    )
    parser.add_argument("--save", action="store_true", help="write findings to the corpus")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    opts = parser.parse_args()
    if not 0 < opts.seconds <= 3600:
        raise SystemExit("refusing: --seconds must be in (0, 3600]")
    if opts.inputs < 1 or opts.start < 0:
        raise SystemExit("refusing: --inputs must be positive and --start not negative")
    corpus = seeds()
    rows: list[tuple[str, Tally]] = []
    for fmt in opts.formats.split(","):
        if fmt not in corpus:
            raise SystemExit(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
        if not corpus[fmt]:
            raise SystemExit(f"no seed for {fmt}")
        made = Inputs(fmt, corpus[fmt], f"{opts.seed}-{fmt}")
        tally = fuzz(made, opts.seconds, opts.hang, opts.start, opts.inputs)
        rows.append((fmt, tally))
        print(
            f"{fmt}: inputs {opts.start:,} to {opts.start + tally.tried - 1:,}, "
            f"{tally.failed} failing",
            file=sys.stderr,
        )
        for finding in tally.findings.values():
            where = save(fmt, finding) if opts.save else None
            saved = f" -> {where.relative_to(ROOT)}" if where else ""
            print(
                f"  {finding.count} x {finding.key} (input {finding.index}){saved}", file=sys.stderr
            )
    import platform

    def heading() -> str:
        bound = (
            f"{opts.seconds:g} s"
            if opts.inputs == 1 << 62
            else f"at most {opts.inputs:,} inputs or {opts.seconds:g} s"
        )
        first = f", from input {opts.start:,}" if opts.start else ""
        return (
            f"Token-level fuzzing, {bound} per format{first}, seed {opts.seed}, "
            f"Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}:"
        )

    print(table(rows, heading) if opts.markdown else "\n".join(
        f"{fmt}: {t.tried} inputs ({t.tried / t.seconds if t.seconds else 0:.0f}/s), "
        f"{t.failed} failing, {len(t.findings)} distinct"
        for fmt, t in rows
    ))  # fmt: skip
    if any(t.findings for _, t in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
