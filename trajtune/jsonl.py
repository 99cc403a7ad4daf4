"""Streaming JSONL: read with line numbers (files, .gz, '-'), write atomically or append+fsync.

Reading never loads a whole file: lines are yielded one at a time with their 1-based line
number. CRLF endings are tolerated; a UTF-8 BOM on the first line is stripped with a warning.
"""
from __future__ import annotations

import gzip
import io
import os
import sys
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import orjson

from trajtune.errors import DataError, UsageError

BOM = b"\xef\xbb\xbf"


class BOMWarning(UserWarning):
    pass


@dataclass
class Line:
    """One raw line of a JSONL file: ``raw`` is bytes without the line ending."""

    path: str
    lineno: int
    raw: bytes
    offset: int = 0


@dataclass
class Row:
    """One parsed JSONL object with where it came from."""

    path: str
    lineno: int
    obj: Any


def display_name(path: str | os.PathLike) -> str:
    return "<stdin>" if str(path) == "-" else str(path)


def _open_binary(path: str | os.PathLike):
    p = str(path)
    if p == "-":
        return sys.stdin.buffer
    pp = Path(p)
    if pp.is_dir():
        raise UsageError(f"{p} is a directory, not a JSONL file", hint="pass the files inside it")
    if not pp.exists():
        raise UsageError(f"{p}: no such file")
    from trajtune.paths import check_input

    check_input(pp)  # a device, FIFO or socket never ends: refused
    try:
        fh = open(pp, "rb")
    except OSError as exc:
        raise UsageError(f"{p}: cannot open ({exc.strerror})") from None
    if p.endswith(".gz"):
        return gzip.GzipFile(fileobj=fh, mode="rb")
    return fh


def iter_lines(path: str | os.PathLike, *, max_line_bytes: int | None = None) -> Iterator[Line]:
    """Yield raw lines with 1-based numbers and byte offsets. Blank lines are skipped.

    ``max_line_bytes`` guards memory on pathological inputs: a longer line is yielded with
    ``raw`` truncated to that many bytes (callers report it as too long).
    """
    name = display_name(path)
    fh = _open_binary(path)
    offset = 0
    try:
        for lineno, raw in enumerate(fh, start=1):
            start = offset
            offset += len(raw)
            if lineno == 1 and raw.startswith(BOM):
                warnings.warn(f"{name}:1: UTF-8 byte order mark stripped", BOMWarning, stacklevel=2)
                raw = raw[3:]
            raw = raw.rstrip(b"\r\n")
            if not raw.strip():
                continue
            if max_line_bytes is not None and len(raw) > max_line_bytes:
                raw = raw[:max_line_bytes]
            yield Line(name, lineno, raw, start)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(f"read error: {exc}", path=name) from None
    finally:
        if fh is not sys.stdin.buffer:
            fh.close()


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
    for line in iter_lines(path):
        try:
            obj = orjson.loads(line.raw)
        except orjson.JSONDecodeError as exc:
            raise DataError(f"not valid JSON ({exc})", path=line.path, line=line.lineno,
                            hint="each line must be one JSON object; run `trajtune validate` for a full report") from None
        if not isinstance(obj, dict):
            raise DataError(f"expected a JSON object, got {type(obj).__name__}", path=line.path, line=line.lineno)
        if too_deep(line.raw, obj):
            raise DataError(f"nested deeper than {MAX_DEPTH} levels", path=line.path, line=line.lineno)
        yield Row(line.path, line.lineno, obj)


def read_json_or_jsonl(path: str | os.PathLike) -> Iterator[Row]:
    """Accept either a JSON array/object file or JSONL (many real datasets ship arrays)."""
    p = str(path)
    fh = _open_binary(p)
    try:
        head = fh.peek(64)[:64] if hasattr(fh, "peek") else b""
    except Exception:
        head = b""
    stripped = head.lstrip(BOM).lstrip()
    if p != "-" and stripped.startswith(b"["):
        fh.close()
        data = Path(p).read_bytes()
        if p.endswith(".gz"):
            data = gzip.decompress(data)
        if data.startswith(BOM):
            data = data[3:]
        try:
            arr = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise DataError(f"not valid JSON ({exc})", path=p) from None
        for i, obj in enumerate(arr, start=1):
            yield Row(p, i, obj)
        return
    if p != "-":
        fh.close()
        yield from read_jsonl(p)
        return
    # stdin: buffer it so we can sniff arrays too
    data = fh.read()
    if data.startswith(BOM):
        data = data[3:]
    if data.lstrip().startswith(b"["):
        try:
            arr = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise DataError(f"not valid JSON ({exc})", path="<stdin>") from None
        for i, obj in enumerate(arr, start=1):
            yield Row("<stdin>", i, obj)
        return
    for lineno, raw in enumerate(data.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise DataError(f"not valid JSON ({exc})", path="<stdin>", line=lineno) from None
        yield Row("<stdin>", lineno, obj)


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
    """Append records line by line with flush+fsync, for resumable stages.

    On open, a partial last line (a write cut off by a kill) is truncated away so the file
    always holds whole records. ``existing_ids`` gives the ids already present, so a re-run
    appends only what is missing.
    """

    def __init__(self, path: str | os.PathLike, *, id_key: str = "id"):
        self.path = Path(path)
        self.id_key = id_key
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
        os.fsync(self._fh.fileno())
        if isinstance(record, dict) and self.id_key in record:
            self.existing_ids.add(str(record[self.id_key]))

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()

    def __enter__(self) -> "Appender":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
