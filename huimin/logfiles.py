"""Reading and writing the run's files: the visit log, expected answers, results, latencies.

visit log (`visits.jsonl`): a header line `{"huimin_visitlog": 4, "world": {...},
"visits": {...}, "faults": "...", "bad_per_kind": n, "generator": g}`, then one `Visit` per
line (see messages/visitlog.py); the faults are already in the visits' plans, `bad_per_kind`
bad requests of each kind go with the log when it is replayed, and `generator` says which
generator wrote the visits (left out before 2026-12-07).
expected / results (`*.expected.jsonl`, `results.jsonl`): one line per visit,
`{"visit_no", "outcome", "setlinfo", "answers": {msgid: [answer, ...]}}`, keys sorted, so
the same seed gives byte-identical files; an expected line also holds `visit_digest`, the
fingerprint of the visit it settles; each line names the `world` it was settled in
(`simulators.world.world_tag`: seed, persons, policy), so that answers of another policy
are not judged or cleared against a log; a result of a visit the hospital gave up on holds
`timed_out`, the msgid of the request it waited for (`under_way`: a replay stopped then).
latency (`latency.jsonl`): `{"msgid", "infno", "route", "latency_ms", "trace"}` per request.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from collections.abc import Generator, Iterable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import IO, Any, BinaryIO

import orjson
from pydantic import ValidationError

from messages.codes import TIMED_OUT
from messages.visitlog import (
    READABLE_VERSIONS,
    VISITLOG_VERSION,
    Visit,
    VisitSession,
    make_msgid,
)
from settlement.parameters import parse_parameters
from simulators.bad_messages import MAX_BAD_PER_KIND
from simulators.regions import PROVINCES
from simulators.visits import GENERATOR_VERSION, VisitSpec
from simulators.world import WorldSpec

_OPTS = orjson.OPT_SORT_KEYS


class LogFormatError(ValueError):
    """A file that is not what it claims to be; the message says which line and why."""


def expected_path_for(visit_log: Path) -> Path:
    return visit_log.with_name(visit_log.stem + ".expected.jsonl")


@dataclass(frozen=True, slots=True)
class LogHeader:
    world: WorldSpec
    visits: VisitSpec
    faults: str = ""  # plan-level faults already applied to the visits' steps
    bad_per_kind: int = 0  # bad requests of each kind that go with the log
    #: the generator that wrote the visits (simulators.visits.GENERATOR_VERSION); None: a
    #: log from before headers said it
    generator: int | None = GENERATOR_VERSION


def _header_bytes(header: LogHeader) -> bytes:
    said = {} if header.generator is None else {"generator": header.generator}
    return orjson.dumps({"huimin_visitlog": VISITLOG_VERSION, "world": header.world.to_dict(),
                         "visits": asdict(header.visits), "faults": header.faults,
                         "bad_per_kind": header.bad_per_kind, **said}, option=_OPTS)


def write_header(f: IO[bytes], header: LogHeader) -> None:
    f.write(_header_bytes(header) + b"\n")


@contextlib.contextmanager
def whole_file(path: Path) -> Iterator[IO[bytes]]:
    """`path` opened for writing, put in place only once complete: an interrupted or failed
    write (Ctrl-C, a full disk) leaves no half-written file, and any earlier one as it was.
    Anything but a regular file (a pipe, /dev/stdout) is written as it is."""
    if path.exists() and not path.is_file():
        with open(path, "wb") as f:
            yield f
        return
    partial = path.with_name(f".{path.name}.partial")
    try:
        with open(partial, "wb") as f:
            yield f
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def reserve_header(f: IO[bytes], draft: LogHeader) -> int:
    """Write a first line of spaces wide enough for `draft`'s header with any count of bad
    requests (known only at the end); return its width for `write_header_in_place`."""
    width = max(1024, len(_header_bytes(replace(draft, bad_per_kind=10**12))))
    f.write(b" " * width + b"\n")
    return width


def write_header_in_place(f: IO[bytes], header: LogHeader, width: int) -> None:
    """Overwrite a first line of `width` spaces reserved earlier (JSON allows the padding)."""
    data = _header_bytes(header)
    if len(data) > width:
        raise ValueError(f"the header needs {len(data)} bytes, {width} were reserved")
    f.write(data + b" " * (width - len(data)))


def write_visit(f: IO[bytes], visit: Visit) -> None:
    f.write(orjson.dumps(visit.model_dump(), option=_OPTS) + b"\n")


def _not_text(path: Path, n: int, line: bytes, kind: str = "a visit log"
              ) -> LogFormatError | None:
    """A line that is not UTF-8 text, said as such (not as JSON it fails to be)."""
    if n == 1 and line.startswith(b"\x1f\x8b"):
        return LogFormatError(f"{path} is gzip-compressed: decompress it first (gunzip)")
    try:
        line.decode()
    except UnicodeDecodeError:
        return LogFormatError(f"{path}: line {n} is not UTF-8 text ({kind} is UTF-8)")
    return None


def _header_of(first: bytes) -> LogHeader:
    header = orjson.loads(first)
    if not isinstance(header, dict) or header.get("huimin_visitlog") not in READABLE_VERSIONS:
        *earlier, last = map(str, sorted(READABLE_VERSIONS))
        raise LogFormatError("no `huimin_visitlog` version "
                             f"{', '.join(earlier)}{' or ' if earlier else ''}{last} in it")
    world, visits = header.get("world"), header.get("visits")
    faults, bad = header.get("faults", ""), header.get("bad_per_kind", 0)
    if not isinstance(world, dict) or not isinstance(visits, dict):
        raise LogFormatError("its world and visits must be JSON objects")
    if not isinstance(faults, str):
        raise LogFormatError("its faults must be text")
    if type(bad) is not int or not 0 <= bad <= MAX_BAD_PER_KIND:
        raise LogFormatError(f"its bad_per_kind must be a whole number 0–{MAX_BAD_PER_KIND:,}")
    generator = header.get("generator")
    if generator is not None and (type(generator) is not int or generator < 1):
        raise LogFormatError("its generator must be a whole number from 1 (or left out)")
    head = LogHeader(WorldSpec.from_dict(world), VisitSpec(**visits), faults, bad, generator)
    parse_parameters(head.world.parameters, PROVINCES)
    return head


def _header_line(path: Path, first: bytes) -> tuple[LogHeader, int]:
    """A visit log's first line read as its header, and its version."""
    if not first.strip():
        raise LogFormatError(f"{path} is empty: not a visit log (huimin generate writes one)")
    if (problem := _not_text(path, 1, first)) is not None:
        raise problem
    try:
        # the version one of READABLE_VERSIONS, once the header is read
        return _header_of(first), orjson.loads(first)["huimin_visitlog"]
    except (LogFormatError, orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        swapped = first.startswith(b'{"answers":')  # a results file's record (write_records)
        raise LogFormatError(f"{path}: line 1 is not a visit-log header ({exc})" + (
            "; it is a visit's answers: is this the results file? The visit log comes first"
            if swapped else "")) from None


def read_visit_log(path: Path) -> tuple[LogHeader, Generator[Visit, None, None]]:
    """The header, and the visits one at a time (a large log is never held in memory, only
    two integers a visit: ~135 MB a million; their `close()` closes the file). Blank lines
    may end the log, not come between visits. A visit's number, and the msgid of its first
    request, must be its own: hospitals route answers by msgid, so a visit repeated (a line
    copied) would wait for answers its twin took."""
    f = open(path, "rb")  # noqa: SIM115 - closed here, or by the visits
    try:
        first = f.readline()
        head, version = _header_line(path, first)
    except BaseException:
        f.close()
        raise
    if path.is_file():  # opened again when the visits are read: a command that stops before
        f.close()  # them (verify, clearing) leaves no file open
    # (a pipe, `<(…)`, cannot be: the visits read on from where the header ended)

    def opened() -> BinaryIO:
        if not f.closed:
            return f
        again = open(path, "rb")  # noqa: SIM115 - the visits' `with`
        again.seek(len(first))
        return again

    def visits() -> Generator[Visit, None, None]:
        numbers: set[int] = set()
        starts: set[int] = set()  # hashes of each visit's first msgid
        blank = 0  # the line number of a blank line not yet followed by a visit
        with opened() as log:
            for n, line in enumerate(log, start=2):
                if not line.strip():
                    blank = blank or n
                    continue
                if blank:
                    raise LogFormatError(f"{path}: line {blank} is blank, between visits")
                if (problem := _not_text(path, n, line)) is not None:
                    raise problem
                try:
                    visit = Visit.model_validate_json(line.rstrip(b"\r\n"))
                    if "v" not in visit.model_fields_set and visit.v != version:
                        # a line that does not say its version is of its header's, and is
                        # checked as one (a 2302 under a version-3 header is refused)
                        visit = Visit.model_validate({**visit.model_dump(), "v": version})
                except ValidationError as exc:  # where and why; never the value
                    first = exc.errors()[0]
                    loc = list(first["loc"])
                    if first["type"] == "extra_forbidden" and loc:  # named by the writer
                        loc[-1] = "(an unknown field)"
                    where = ".".join(map(str, loc))
                    # the parser's "at line 1 column c" is of the line alone: its column
                    said = re.sub(r" at line \d+ column (\d+)", r" at column \1", first["msg"])
                    raise LogFormatError(f"{path}: line {n} is not a visit: "
                                         f"{where + ': ' if where else ''}{said}") from None
                if visit.v > version:  # a later huimin's line under an earlier's header
                    raise LogFormatError(f"{path}: line {n} is a visit of version {visit.v}, "
                                         f"under a header of version {version}")
                start = hash(make_msgid(visit.fixmedins_code, visit.begntime, visit.seq))
                if visit.visit_no in numbers or start in starts:
                    raise LogFormatError(
                        f"{path}: line {n} repeats an earlier visit's "
                        f"{'visit_no' if visit.visit_no in numbers else 'first msgid'} "
                        "(its hospital, begntime and seq): each visit must be its own")
                numbers.add(visit.visit_no)
                starts.add(start)
                yield visit
    return head, visits()


def visit_digest(visit: Visit) -> str:
    """A fingerprint of a visit as the log holds it: an expected answer keeps its visit's, so
    that answers settled from another version of a line (a price edited afterwards) are not
    taken for this one's."""
    return hashlib.blake2b(orjson.dumps(visit.model_dump(), option=_OPTS),
                           digest_size=8).hexdigest()


def expected_record(session: VisitSession, world: str) -> dict[str, Any]:
    """The oracle's answers to a visit, with the fingerprint of the visit they settle."""
    return {**outcome_record(session, world), "visit_digest": visit_digest(session.visit)}


def outcome_record(session: VisitSession, world: str) -> dict[str, Any]:
    """A visit's outcome and answers, and the world (`world_tag`) they were settled in."""
    s = session
    outcome = "settled" if s.settlement else (s.failed or {}).get("err_code", "") or \
        "not settled"
    record = {"visit_no": s.visit.visit_no, "outcome": outcome, "setlinfo": s.settlement,
              "answers": {msgid: s.answers.get(msgid, []) for msgid, _ in s.sent},
              "world": world}
    if not s.done:  # a replay stopped by Ctrl-C: `verify --replayed-only` knows it
        record["under_way"] = True
    if s.failed and s.failed.get("err_code") == TIMED_OUT:  # the request the hospital gave
        record["timed_out"] = s.failed["inf_refmsgid"]  # up on, a settled visit's later one too
    return record


def record_line(session: VisitSession, world: str, expected: bool = False) -> bytes:
    """A visit's line in a results file, or with `expected` in an expected-answers file."""
    record = expected_record if expected else outcome_record
    return orjson.dumps(record(session, world), option=_OPTS) + b"\n"


def write_records(path: Path, sessions: Iterable[VisitSession], world: str,
                  expected: bool = False) -> int:
    """Results, or with `expected` the oracle's answers (each with its visit's digest), of
    visits settled in `world` (`world_tag`)."""
    n = 0
    with whole_file(path) as f:  # a Ctrl-C while writing leaves no half a file
        for s in sessions:
            f.write(record_line(s, world, expected))
            n += 1
    return n


_WORLD_DIGEST = re.compile(r"\(world ([0-9a-f]{12})\)$")


def _digest(tag: Any) -> Any:
    """What decides whether two tags name one world: the digest they end with, not their
    words (a later huimin may say the seed or the policy otherwise)."""
    found = _WORLD_DIGEST.search(tag) if isinstance(tag, str) else None
    return found.group(1) if found else tag


def of_world(records: Iterable[dict[str, Any]], path: Path, world: str
             ) -> Iterator[dict[str, Any]]:
    """`records` (of `path`), refused (LogFormatError) at the first settled in another world
    than `world`, the visit log's: answers of another policy, seed or population would fail
    verify as wrong answers, or be cleared as if the log's. Records written before they
    named their world pass."""
    for n, record in enumerate(records, start=1):
        check_world(record, n, path, world)
        yield record


def check_world(record: dict[str, Any], n: int, path: Path, world: str) -> None:
    """Refuse record `n` of `path` if it was settled in another world than `world`."""
    if _digest(theirs := record.get("world", world)) != _digest(world):
        raise LogFormatError(
            f"{path}: record {n} was settled in another world ({theirs}) than the visit "
            f"log's ({world}): results and expected answers go with the log (its seed, "
            "persons and policy) they were made from")


def read_records(path: Path, kind: str = "result") -> Iterator[dict[str, Any]]:
    """Each result record (`kind`: "result", or "expected-answers", which have their shape);
    blank lines may end the file, as they may a visit log, not come between its records."""
    with open(path, "rb") as f:
        for _, record in placed_records(f, path, kind):
            yield record


def placed_records(f: BinaryIO, path: Path, kind: str = "result"
                   ) -> Iterator[tuple[int, dict[str, Any]]]:
    """`read_records` of the open file `f` (of `path`), each with its line's byte offset."""
    blank = 0  # the line number of a blank line not yet followed by a record
    files = "a results file" if kind == "result" else f"an {kind} file"
    offset = 0
    for n, line in enumerate(f, start=1):
        at, offset = offset, offset + len(line)
        if not line.strip():
            blank = blank or n
            continue
        if blank:
            raise LogFormatError(f"{path}: line {blank} is blank, between {kind} records")
        if problem := _not_text(path, n, line, files):
            raise problem
        try:
            record = orjson.loads(line)
            if not isinstance(record, dict) or type(record.get("visit_no")) is not int \
                    or not isinstance(record.get("answers"), dict):
                raise LogFormatError("no whole-number visit_no, or no answers")
        except (orjson.JSONDecodeError, LogFormatError) as exc:
            article = "an" if kind[0] in "aeiou" else "a"
            raise LogFormatError(f"{path}: line {n} is not {article} {kind} record "
                                 f"({exc})") from None
        yield at, record
