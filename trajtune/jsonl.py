"""Streaming JSONL: read with line numbers (files, .gz, '-'), write atomically or append+fsync.

THE reader of the project: ``open_input`` opens an input and ``iter_lines`` yields its lines,
one at a time, never loading a whole file; ``read_jsonl`` (parsed rows), validate (byte ranges
across worker processes) and convert's ``Source`` all read through them, so every command numbers
lines alike: physical 1-based line numbers, blank lines skipped (but counted), CRLF tolerated, a
UTF-8 BOM on the first line stripped (``read_jsonl`` warns, validate reports it).
"""
from __future__ import annotations

import gzip
import itertools
import os
import sys
import warnings
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Iterator

import orjson

from trajtune.errors import DataError, TrajtuneError, UsageError

BOM = b"\xef\xbb\xbf"
_WS = b" \t\n\r\x0b\x0c"  # what bytes.strip() strips: a line of only these is blank
_GZIP_ERRORS = (EOFError, zlib.error, gzip.BadGzipFile)
# what reading an open input may raise (BadGzipFile is an OSError): see read_error
READ_ERRORS = (OSError, EOFError, zlib.error)


class BOMWarning(UserWarning):
    pass


@dataclass
class Row:
    """One parsed JSONL object with where it came from."""

    path: str
    lineno: int
    obj: Any


def display_name(path: str | os.PathLike) -> str:
    return "<stdin>" if str(path) == "-" else str(path)


def open_input(path: str | os.PathLike) -> BinaryIO:
    """Open an input for reading bytes: '-' is stdin (never close it), a ``.gz`` file is
    decompressed. A directory, a missing file, a device, FIFO or socket (they never end) or a file
    that cannot be opened is a UsageError naming the path, raised before anything is read."""
    p = str(path)
    if p == "-":
        return sys.stdin.buffer
    pp = Path(p)
    if pp.is_dir():
        raise UsageError(f"{p} is a directory, not a JSONL file", hint="pass the files inside it, e.g. DIR/*.jsonl")
    from trajtune.paths import check_input

    check_input(pp)  # missing, or /dev/zero, a FIFO or a socket: refused
    try:
        if p.endswith(".gz"):
            return gzip.GzipFile(pp, "rb")  # owns (and closes) its file
        return open(pp, "rb", buffering=1 << 18)
    except OSError as exc:
        raise UsageError(f"{p}: cannot open ({exc.strerror})") from None


def read_error(name: str, exc: BaseException) -> TrajtuneError:
    """The error to raise for ``exc`` (one of READ_ERRORS) met while reading input ``name``."""
    if isinstance(exc, _GZIP_ERRORS):
        return DataError(f"not a readable gzip file ({exc})", path=name)
    return UsageError(f"{name}: read error ({exc})")


def iter_lines(path: str | os.PathLike, *, limit: int | None = None, start: int = 0, end: int | None = None,
               on_bom: Callable[[], None] | None = None) -> Iterator[tuple[int, int, bytes | None, int]]:
    """Yield ``(lineno, offset, raw, length)`` for each non-blank line of ``path`` (see open_input).

    ``lineno`` is the 1-based physical line number (blank lines are skipped but counted);
    ``offset`` the byte offset of the line and ``length`` its byte length, line ending included
    (of the decompressed stream for ``.gz``); ``raw`` its bytes without the line ending (LF or
    CRLF), or None when the line is longer than ``limit`` bytes (line ending included): such a
    line is skipped in bounded pieces, never held in memory. A torn last line (no line ending) is
    yielded as it is.

    ``start``/``end``: only the lines that start in that byte range of a plain file (a line is
    taken to start at ``start``; line numbers count from it). A UTF-8 BOM at byte 0 is stripped
    and ``on_bom()`` called, when given. Read errors are raised as :func:`read_error` says.
    """
    name = display_name(path)
    fh = open_input(path)
    stdin = str(path) == "-"
    limit = limit or sys.maxsize
    stop = sys.maxsize if end is None else end
    first = start == 0
    try:
        if start:
            fh.seek(start)
        readline = fh.readline
        pos = start
        lineno = 0
        while pos < stop:
            raw = readline(limit)
            if not raw:
                return
            n = len(raw)
            pos += n
            lineno += 1
            if raw[-1] != 10 and n >= limit:  # no line ending within the limit: too long
                first = False
                total = n
                while True:
                    more = readline(1 << 20)
                    if not more:
                        break
                    pos += len(more)
                    total += len(more)
                    if more[-1] == 10:
                        break
                yield lineno, pos - total, None, total
                continue
            if first:
                first = False
                if raw.startswith(BOM):
                    raw = raw[3:]
                    if on_bom is not None:
                        on_bom()
            raw = raw.rstrip(b"\r\n")
            if not raw or (raw[0] in _WS and not raw.strip()):
                continue  # a blank line
            yield lineno, pos - n, raw, n
    except READ_ERRORS as exc:
        raise read_error(name, exc) from None
    finally:
        if not stdin:
            fh.close()


def _warn_bom(name: str) -> Callable[[], None]:
    def warn() -> None:
        warnings.warn(f"{name}:1: UTF-8 byte order mark stripped", BOMWarning, stacklevel=3)
    return warn


# Records nested deeper than this are refused where they are read: orjson writes at most 255
# levels, and recursive code over a record must never meet a RecursionError.
MAX_DEPTH = 128


def too_deep(raw: bytes, obj: Any, limit: int = MAX_DEPTH) -> bool:
    """Is ``obj`` (parsed from ``raw``) nested deeper than ``limit``? Costs two C-speed byte counts
    for any line with fewer brackets than that, so it can run on every line."""
    if raw.count(b"{") + raw.count(b"[") <= limit:
        return False
    stack = [(obj, 1)]
    while stack:
        node, d = stack.pop()
        if d > limit:
            return True
        if isinstance(node, dict):
            stack.extend((v, d + 1) for v in node.values() if isinstance(v, (dict, list)))
        elif isinstance(node, list):
            stack.extend((v, d + 1) for v in node if isinstance(v, (dict, list)))
    return False


def loads(raw: bytes | str) -> Any:
    """Parse one JSON value strictly (NaN/Infinity are rejected by orjson)."""
    return orjson.loads(raw)


def read_jsonl(path: str | os.PathLike) -> Iterator[Row]:
    """Yield parsed objects; raise DataError with file:line on the first bad line."""
    name = display_name(path)
    yield from _rows(name, iter_lines(path, on_bom=_warn_bom(name)))


def _rows(name: str, lines: Iterable[tuple[int, int, bytes | None, int]]) -> Iterator[Row]:
    for lineno, _, raw, _ in lines:
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise DataError(f"not valid JSON ({exc})", path=name, line=lineno,
                            hint="each line must be one JSON object; run `trajtune validate` for a full report") from None
        if not isinstance(obj, dict):
            raise DataError(f"expected a JSON object, got {type(obj).__name__}", path=name, line=lineno)
        if too_deep(raw, obj):
            raise DataError(f"nested deeper than {MAX_DEPTH} levels", path=name, line=lineno)
        yield Row(name, lineno, obj)


def read_json_or_jsonl(path: str | os.PathLike) -> Iterator[Row]:
    """Accept either a JSON array file (many real datasets ship arrays) or JSONL.

    An array (its first non-blank line starts with ``[``) is parsed whole, JSON gives no other
    way; its rows are numbered by element. Otherwise this is :func:`read_jsonl`.
    """
    name = display_name(path)
    bom: list[bool] = []
    lines = iter_lines(path, on_bom=lambda: bom.append(True))
    first = next(lines, None)
    if first is None:
        return
    if first[2].lstrip().startswith(b"["):
        data = b"\n".join([first[2], *(raw for _, _, raw, _ in lines)])
        try:
            arr = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise DataError(f"not valid JSON ({exc})", path=name) from None
        for i, obj in enumerate(arr, start=1):
            yield Row(name, i, obj)
        return
    if bom:
        _warn_bom(name)()
    yield from _rows(name, itertools.chain([first], lines))


def dumps(obj: Any) -> bytes:
    """Serialize one record as a compact JSON line (no trailing newline), keys in given order."""
    return orjson.dumps(obj)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_writer(path: str | os.PathLike, mode: str = "wb"):
    """Write to a temp file beside ``path`` and rename it into place on success.

    ``-`` writes to stdout instead. On an exception (SIGTERM included: the CLI turns it into one)
    the temp file is removed and the target is left untouched; one left by a SIGKILL is swept by
    the next write to the same target.
    """
    if str(path) == "-":
        out = sys.stdout.buffer if "b" in mode else sys.stdout
        yield out
        out.flush()
        return
    from trajtune.paths import temp_file

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temp_file(target)  # beside the target, umask mode; a killed run's leftovers swept
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_jsonl(path: str | os.PathLike, records: Iterable[Any]) -> int:
    """Write all records atomically; return how many were written."""
    n = 0
    with atomic_writer(path) as fh:
        for rec in records:
            fh.write(orjson.dumps(rec) + b"\n")
            n += 1
    return n


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_writer(path) as fh:
        fh.write(orjson.dumps(obj, option=orjson.OPT_INDENT_2) + b"\n")


class Appender:
    """Append records line by line (each flushed to the OS at once), for resumable stages.

    ``sync_every`` (default 1: fsync after every line) groups the fsync that guards against a
    power loss; a killed process loses nothing either way, and resume regenerates what a power
    loss took.

    On open, a partial last line (a write cut off by a kill) is truncated away so the file
    always holds whole records. ``existing_ids`` gives the ids already present, so a re-run
    appends only what is missing.
    """

    def __init__(self, path: str | os.PathLike, *, id_key: str = "id", sync_every: int = 1):
        self.path = Path(path)
        self.id_key = id_key
        # every line is flushed to the OS at once (a killed process loses nothing written); with
        # sync_every > 1 the fsync that guards against a power loss is grouped (and done on close)
        self.sync_every = max(1, int(sync_every))
        self._unsynced = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.existing_ids: set[str] = set()
        self.existing: int = 0
        self._repair_and_scan()
        self._fh = open(self.path, "ab")

    def _repair_and_scan(self) -> None:
        if not self.path.exists():
            return
        good_end = 0
        with open(self.path, "rb") as fh:
            for lineno, raw in enumerate(fh, start=1):
                if not raw.endswith(b"\n"):
                    break  # torn last line
                if not raw.strip():
                    good_end += len(raw)  # a blank line is kept, never a reason to cut what follows
                    continue
                try:
                    obj = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    if fh.read(1):  # a bad line with records after it is not a torn write: never cut data
                        raise DataError("not valid JSON; cannot append safely", path=str(self.path), line=lineno,
                                        hint="fix or remove that line, then re-run") from None
                    break
                good_end += len(raw)
                self.existing += 1
                if isinstance(obj, dict) and self.id_key in obj:
                    self.existing_ids.add(str(obj[self.id_key]))
        if good_end != self.path.stat().st_size:
            with open(self.path, "r+b") as fh:
                fh.truncate(good_end)
                fh.flush()
                os.fsync(fh.fileno())

    def write(self, record: Any) -> None:
        self._fh.write(orjson.dumps(record) + b"\n")
        self._fh.flush()
        self._unsynced += 1
        if self._unsynced >= self.sync_every:
            os.fsync(self._fh.fileno())
            self._unsynced = 0
        if isinstance(record, dict) and self.id_key in record:
            self.existing_ids.add(str(record[self.id_key]))

    def close(self) -> None:
        if not self._fh.closed:
            if self._unsynced:
                self._fh.flush()
                os.fsync(self._fh.fileno())
                self._unsynced = 0
            self._fh.close()

    def __enter__(self) -> "Appender":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
