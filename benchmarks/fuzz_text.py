"""Token-level fuzzing of every saved-text format, for a bounded time per format.

Each input is a real dump (``tests/fixtures/text`` plus a small seed per
format that has no fixture file) with one to four mutations applied to its
tokens: digit runs lengthened past Python's 4,300-digit ``int()`` limit or to
integer boundaries, tokens repeated in place or as extra fields, tokens
spliced in from elsewhere in the corpus, deleted, swapped, cut, or given
stray bytes (no-break spaces, ANSI colour codes, Unicode digits, NULs);
whole lines repeated, dropped or cut.  Every input is parsed with its format
named and with auto-detection, leniently and ``strict``.

A *finding* is anything but a Snapshot or an :class:`InputError` (a
traceback in the CLI), a warning or error message longer than 400
characters (one readable line is the contract), one parse taking over 1 s,
or a hang: the inputs are parsed in a child process, killed when it shows no
progress for ``--hang`` seconds (a regex backtracking in C cannot be
interrupted otherwise).  Findings are grouped by exception type and the line
that raised it (or the kind of message); the first input of each group is
minimised, and with ``--save`` written to ``tests/fixtures/fuzz/`` (replayed
by ``tests/sources/text/test_fuzz_corpus.py``).

    python3 benchmarks/fuzz_text.py [--seconds 30] [--formats ss,proc] [--seed 1] \\
        [--hang 10] [--save] [--markdown]

Bounded: ``--seconds`` per format (at most 3600), inputs at most 1 MiB.
Exit status 1 when there are findings.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import multiprocessing
import queue
import random
import re
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from tcplens.errors import InputError  # noqa: E402
from tcplens.model.states import SPELLINGS  # noqa: E402
from tcplens.sources.text import FORMATS, parse_text  # noqa: E402

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


def mutate(rng: random.Random, text: str, pool: list[str]) -> str:
    """One to four token or line mutations of ``text``."""
    lines = text.split("\n")
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
    count: int = 1


@dataclass
class Tally:
    tried: int = 0
    seconds: float = 0.0
    findings: dict[str, Finding] = field(default_factory=dict)

    @property
    def failed(self) -> int:
        return sum(f.count for f in self.findings.values())


#: one input parsed for longer than this is a finding (a regex backtracking, say)
SLOW_SECONDS = 1.0


def check(text: str, fmt: str | None, strict: bool) -> str | None:
    """None when the parse ends as the contract says, else what went wrong (a group key)."""
    if _beat is not None:
        _beat.value += 1
    started = time.perf_counter()
    try:
        snap = parse_text(text, fmt, path="fuzz.txt", strict=strict)
    except InputError as exc:
        message = str(exc)
        if "\n" in message or len(message) > MAX_MESSAGE:
            return f"error over {MAX_MESSAGE} characters: {_gist(exc.reason)}"
        return None
    except Exception as exc:  # the point: anything else is a finding
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        return f"{type(exc).__name__} at {Path(frame.filename).name}:{frame.lineno}"
    if time.perf_counter() - started > SLOW_SECONDS:
        return f"slow: over {SLOW_SECONDS:g} s for one input"
    for warning in snap.warnings:
        if warning.line < 1:
            return "warning without a line number"
        if len(str(warning)) > MAX_MESSAGE:
            return f"warning over {MAX_MESSAGE} characters: {_gist(warning.message)}"
    return None


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


def inputs(texts: list[str], seed: str) -> Iterator[tuple[str, bool, bool]]:
    """The endless, reproducible stream of (input, format named?, strict?) for one seed."""
    rng = random.Random(seed)
    pool = sorted({t for text in texts for t in text.split()})
    while True:
        text = mutate(rng, rng.choice(texts), pool)
        yield text, rng.random() < 0.5, rng.random() < 0.3


#: what a watched worker shares with its parent: inputs checked so far, and a
#: heartbeat that moves with every parse (minimising included)
_index: Any = None
_beat: Any = None


def worker(fmt: str, texts: list[str], seed: str, skip: int, deadline: float, out: Any) -> None:
    """Check inputs ``skip``, ``skip + 1``, ... until ``deadline``; put the Tally on ``out``."""
    stream = inputs(texts, seed)
    for _ in range(skip):
        next(stream)
    tally = Tally()
    index = skip
    while time.monotonic() < deadline:
        text, named, strict = next(stream)
        _index.value = index
        key = check(text, fmt if named else None, strict)
        index += 1
        if key is None:
            continue
        if key in tally.findings:
            tally.findings[key].count += 1
        else:
            text = minimise(text, fmt if named else None, strict, key)
            tally.findings[key] = Finding(key, text, fmt if named else None, strict)
    tally.tried = index - skip
    out.put(tally)


def fuzz(fmt: str, texts: list[str], seconds: float, seed: str, hang: float) -> Tally:
    """Fuzz one format for ``seconds`` in a child process that is killed if it hangs.

    A parse stuck in C (a regex backtracking) cannot be interrupted from
    Python; the parent watches the heartbeat instead, and after ``hang``
    seconds without one kills the child, records the input it was on (the
    stream is reproducible, so the parent regenerates it) and carries on
    with the next one in a new child.
    """
    global _index, _beat
    context = multiprocessing.get_context("fork")
    total = Tally()
    started = time.monotonic()
    deadline = started + seconds
    skip = 0
    while time.monotonic() < deadline:
        _index, _beat = context.Value("q", skip), context.Value("q", 0)
        out = context.Queue()
        child = context.Process(target=worker, args=(fmt, texts, seed, skip, deadline, out))
        child.start()
        last, moved = -1, time.monotonic()
        while True:
            try:
                part: Tally = out.get(timeout=0.2)
            except queue.Empty:
                pass
            else:
                child.join(10)
                total.tried += part.tried
                for key, finding in part.findings.items():
                    if key in total.findings:
                        total.findings[key].count += finding.count
                    else:
                        total.findings[key] = finding
                skip = -1
                break
            if _beat.value != last:
                last, moved = _beat.value, time.monotonic()
            elif time.monotonic() - moved > hang or not child.is_alive():
                child.kill()
                child.join(10)
                index = _index.value
                text, named, strict = next(itertools.islice(inputs(texts, seed), index, None))
                key = f"hang: no answer within {hang:g} s" if child.exitcode else "worker died"
                if key in total.findings:
                    total.findings[key].count += 1
                else:
                    total.findings[key] = Finding(key, text, fmt if named else None, strict)
                total.tried += index - skip + 1
                skip = index + 1
                break
        if skip < 0:
            break
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
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--hang", type=float, default=10.0, help="seconds without progress that make a hang"
    )
    parser.add_argument("--save", action="store_true", help="write findings to the corpus")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    opts = parser.parse_args()
    if not 0 < opts.seconds <= 3600:
        raise SystemExit("refusing: --seconds must be in (0, 3600]")
    corpus = seeds()
    rows: list[tuple[str, Tally]] = []
    for fmt in opts.formats.split(","):
        if fmt not in corpus:
            raise SystemExit(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
        if not corpus[fmt]:
            raise SystemExit(f"no seed for {fmt}")
        tally = fuzz(fmt, corpus[fmt], opts.seconds, f"{opts.seed}-{fmt}", opts.hang)
        rows.append((fmt, tally))
        print(f"{fmt}: {tally.tried} inputs, {tally.failed} failing", file=sys.stderr)
        for finding in tally.findings.values():
            where = save(fmt, finding) if opts.save else None
            saved = f" -> {where.relative_to(ROOT)}" if where else ""
            print(f"  {finding.count} x {finding.key}{saved}", file=sys.stderr)
    import platform

    def heading() -> str:
        return (
            f"Token-level fuzzing, {opts.seconds:g} s per format, seed {opts.seed}, "
            f"Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}:"
        )

    print(table(rows, heading) if opts.markdown else "\n".join(
        f"{fmt}: {t.tried} inputs, {t.failed} failing, {len(t.findings)} distinct"
        for fmt, t in rows
    ))  # fmt: skip
    if any(t.findings for _, t in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
