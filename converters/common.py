"""What every converter shares: the input source, rejects/skips, and one message builder.

A converter module exposes ``NAME``, ``KINDS`` (the record kinds it can produce), ``detect(obj)``
(does one input object look like this format?) and ``convert(source, kind, cfg, emit)``, a
generator of ``(row, record)`` pairs. Bad input is never dropped silently: a converter calls
``emit.reject(row, reason, detail)`` or ``emit.skip(reason)`` and the driver counts and writes it.

Reasons are short fixed phrases (they are counted in the summary); specifics go in ``detail``.
"""
from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import orjson

from trajtune.errors import DataError
from trajtune.jsonl import (BOM, MAX_DEPTH, READ_ERRORS, Row, display_name, iter_lines, open_input, read_error,
                            too_deep)

TOOL_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


class Reject(Exception):
    """One input cannot be converted: ``reason`` is counted, ``detail`` explains."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


# What a converter's code may raise on a malformed row it did not foresee (a number where a list
# belongs, a missing key): the row becomes a counted reject, never the end of the run.
# (not Skip, which is a filter's verdict, and not KeyboardInterrupt or MemoryError)
ROW_ERRORS = (Reject, TypeError, ValueError, LookupError, AttributeError, ArithmeticError, RecursionError,
              AssertionError)


def as_reject(exc: BaseException) -> "Reject":
    """``exc`` as a Reject: itself, or 'malformed row' with the exception named (bounded text)."""
    if isinstance(exc, Reject):
        return exc
    text = " ".join(str(exc).split())
    return Reject("malformed row", f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__)


class Ambiguous(Exception):
    """``detect``'s answer for an object that fits two formats equally: auto-detection asks for
    ``--from`` when most of the first objects are like it."""

    def __init__(self, names: tuple[str, ...], why: str):
        super().__init__(why)
        self.names = names
        self.why = why


class Skip(Exception):
    """One input is valid but left out by a filter (counted under 'skipped')."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class Emitter:
    """Counts rejects and skips; rejects are written as they happen (bounded memory)."""

    def __init__(self, write_reject: Callable[[dict], None] | None = None):
        self._write = write_reject
        self.unit = "line"  # the key a reject's row number goes under ("row" for Parquet / datasets)
        self.rejected: dict[str, int] = {}
        self.skipped: dict[str, int] = {}

    def reject(self, row: Row | None, reason: str, detail: str = "", record: Any = None, raw: str | None = None) -> None:
        """Count and write one reject: source file and line, reason, detail, the input as read
        (``raw`` text when it was not JSON) and, when it got that far, the converted ``record``."""
        self.rejected[reason] = self.rejected.get(reason, 0) + 1
        if self._write is not None:
            entry = {"source": row.path if row else None, self.unit: row.lineno if row else None, "reason": reason}
            if detail:
                entry["detail"] = detail
            entry["input"] = raw if raw is not None else (row.obj if row is not None else None)
            if record is not None:
                entry["record"] = record
            self._write(entry)

    def skip(self, reason: str, n: int = 1) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + n


# --------------------------------------------------------------------------- input source

@dataclass
class RawRow:
    lineno: int
    offset: int
    obj: Any


SPOOL_PREFIX = "trajtune-convert-"


def _sweep_spools() -> None:
    """Remove spool files (stdin, arrays, .gz) in the temp folder whose process is gone (a kill)."""
    from trajtune.paths import alive

    pat = re.compile(rf"^{SPOOL_PREFIX}(\d+)-\w+\.jsonl$")
    try:
        entries = list(os.scandir(tempfile.gettempdir()))
    except OSError:
        return
    for e in entries:
        m = pat.match(e.name)
        if m and int(m.group(1)) != os.getpid() and not alive(int(m.group(1))):
            try:
                os.unlink(e.path)
            except OSError:
                pass


class Source:
    """An input file read as rows with line numbers and byte offsets, re-readable.

    JSONL files are streamed. Stdin, a ``.gz`` file or a JSON array is first spooled to a
    temporary JSONL file (an array one element a line; a Parquet file or a ``datasets`` folder
    one row a line, see :mod:`trajtune.containers`), so every converter can make two passes
    and seek to offsets: grouping converters keep only keys and offsets in memory. Lines are read
    by ``trajtune.jsonl.iter_lines``, so line numbers are those of every other command.
    """

    def __init__(self, path: str, emit: Emitter):
        self.name = display_name(path)
        self.emit = emit
        self.unit = "line"  # what a row number counts: 'row' for Parquet and datasets folders
        self._tmp: str | None = None
        try:
            self.path = self._prepare(str(path))
        except BaseException:
            self.close()
            raise

    def _prepare(self, p: str) -> str:
        from trajtune import containers

        if p != "-" and containers.sniff(p) == "dataset":  # a datasets save_to_disk folder
            return self._respool_rows(p, "dataset")
        # a directory, a missing file, a device, a FIFO or a socket: refused before reading
        src = open_input(p)
        try:
            if p == "-" or p.endswith(".gz"):  # streamed to disk: stdin is read once, in chunks
                path = self._spool(src)
            else:
                path = p
        except READ_ERRORS as exc:
            raise read_error(self.name, exc) from None
        finally:
            if p != "-":
                src.close()
        if containers.sniff(path) == "parquet":  # by its magic bytes, so '-' can be Parquet too
            return self._respool_rows(path, "parquet")
        if self._is_json(path):
            return self._respool_json(path)
        return path

    def _respool_rows(self, path: str, container: str) -> str:
        """A Parquet file or datasets folder -> a temporary JSONL file, one row a line, read in
        record batches (bounded memory); row N is line N, and rejects say ``row``."""
        from trajtune import containers

        self.unit = "row"
        self.emit.unit = "row"
        old = self._tmp
        _sweep_spools()
        fd, tmp = tempfile.mkstemp(prefix=f"{SPOOL_PREFIX}{os.getpid()}-", suffix=".jsonl")
        self._tmp = tmp
        with os.fdopen(fd, "wb") as out:
            containers.to_jsonl(path, container, out, self.name)
        if old:
            os.unlink(old)
        return tmp

    def _spool(self, src) -> str:
        import shutil

        _sweep_spools()
        fd, tmp = tempfile.mkstemp(prefix=f"{SPOOL_PREFIX}{os.getpid()}-", suffix=".jsonl")
        self._tmp = tmp
        with os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
        return tmp

    @staticmethod
    def _is_json(path: str) -> bool:
        """Is this a JSON array, or one object over several lines, rather than JSONL?"""
        for _, _, raw, _ in iter_lines(path):  # the first line that is not blank
            raw = raw.lstrip()
            if raw.startswith(b"["):
                return True
            if not raw.startswith(b"{"):
                return False
            try:
                orjson.loads(raw)
                return False
            except orjson.JSONDecodeError:
                return True
        return False

    def _respool_json(self, path: str) -> str:
        """A JSON array (or one pretty-printed object) -> a temporary JSONL file, one element a
        line. Arrays are parsed whole (JSON gives no other way); a file that is not JSON at all
        is read as JSONL, so each bad line is rejected with its number."""
        data = Path(path).read_bytes()
        if data.startswith(BOM):
            data = data[3:]
        try:
            parsed = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            if data.lstrip().startswith(b"["):
                raise DataError(f"not valid JSON ({exc})", path=self.name) from None
            return path
        del data
        old = self._tmp
        _sweep_spools()
        fd, tmp = tempfile.mkstemp(prefix=f"{SPOOL_PREFIX}{os.getpid()}-", suffix=".jsonl")
        self._tmp = tmp
        with os.fdopen(fd, "wb") as out:
            for obj in parsed if isinstance(parsed, list) else [parsed]:
                out.write(orjson.dumps(obj) + b"\n")
        if old:
            os.unlink(old)
        return tmp

    def close(self) -> None:
        if self._tmp:
            try:
                os.unlink(self._tmp)
            except FileNotFoundError:
                pass
            self._tmp = None

    def raw_rows(self, *, report: bool = True) -> Iterator[RawRow]:
        """Every JSON object with its line and offset; bad lines are rejected (once, if report)."""
        for lineno, offset, raw, _ in iter_lines(self.path):
            try:
                obj = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                if report:
                    text = raw[:2000].decode("utf-8", "replace")
                    self.emit.reject(Row(self.name, lineno, None), "not valid JSON", str(exc), raw=text)
                continue
            if not isinstance(obj, dict):
                if report:
                    self.emit.reject(Row(self.name, lineno, obj), "not a JSON object", type(obj).__name__)
                continue
            if too_deep(raw, obj):
                if report:
                    self.emit.reject(Row(self.name, lineno, None), "nested too deeply",
                                     f"more than {MAX_DEPTH} levels", raw=raw[:2000].decode("utf-8", "replace"))
                continue
            yield RawRow(lineno, offset, obj)

    def rows(self, *, report: bool = True) -> Iterator[Row]:
        for r in self.raw_rows(report=report):
            yield Row(self.name, r.lineno, r.obj)

    def read_at(self, offset: int, lineno: int) -> Row:
        """The row at ``offset`` (one that raw_rows gave, with its ``lineno``)."""
        for _, _, raw, _ in iter_lines(self.path, start=offset):
            return Row(self.name, lineno, orjson.loads(raw))
        raise DataError(f"no line at byte {offset}", path=self.name, line=lineno)

    def peek(self, n: int = 20) -> list[Any]:
        out = []
        for r in self.raw_rows(report=False):
            out.append(r.obj)
            if len(out) >= n:
                break
        return out


def per_row(source: Source, emit: Emitter, fn: Callable[[dict], dict | list[dict]]) -> Iterator[tuple[Row, dict]]:
    """Apply ``fn`` to every row; Reject/Skip become counted rejects/skips."""
    for row in source.rows():
        try:
            out = fn(row.obj)
        except ROW_ERRORS as r_:
            r = as_reject(r_)
            emit.reject(row, r.reason, r.detail)
            continue
        except Skip as s:
            emit.skip(s.reason)
            continue
        for rec in out if isinstance(out, list) else [out]:
            yield row, rec


# --------------------------------------------------------------------------- field helpers

def loads_json(value: Any, what: str) -> Any:
    """Parse a JSON string (repeatedly, for double-encoded values); objects pass through."""
    for _ in range(3):
        if not isinstance(value, str):
            return value
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise Reject(f"{what} not valid JSON", f"{exc}: {value[:200]!r}") from None
    return value


def parse_arguments(value: Any) -> dict:
    """Tool-call arguments as an object: accepts an object, a JSON string, or a double-encoded one."""
    if value is None or value == "":
        return {}
    value = loads_json(value, "arguments")
    if not isinstance(value, dict):
        raise Reject("arguments not a JSON object", f"got {type(value).__name__}")
    return value


def parse_tools(value: Any) -> list[dict] | None:
    """Tools as [{type: function, function: {...}}]: accepts a JSON string, bare function schemas
    (sharegpt/glaive, legacy OpenAI ``functions``) or the wrapped form."""
    if value is None or value == "":
        return None
    value = loads_json(value, "tools")
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        raise Reject("tools not a list", f"got {type(value).__name__}")
    out = []
    for t in value:
        t = loads_json(t, "tools")
        if not isinstance(t, dict):
            raise Reject("tools not a list", f"tool entry is {type(t).__name__}")
        fn = t.get("function") if t.get("type") == "function" or "function" in t else t
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not TOOL_NAME.match(fn["name"]):
            raise Reject("invalid tool name", repr(fn.get("name") if isinstance(fn, dict) else fn)[:200])
        clean = {"name": fn["name"]}
        if isinstance(fn.get("description"), str):
            clean["description"] = fn["description"]
        if fn.get("parameters") is not None:
            params = loads_json(fn["parameters"], "tool parameters")
            if not isinstance(params, dict):
                raise Reject("tool parameters not an object", fn["name"])
            clean["parameters"] = _json_schema_types(params)
        out.append({"type": "function", "function": clean})
    return out


# Python type names some datasets (glaive, BFCL, xLAM) write in tool schemas -> JSON Schema types.
_PY_TYPES = {"dict": "object", "str": "string", "int": "integer", "float": "number", "bool": "boolean",
             "list": "array", "tuple": "array", "none": "null"}


def _json_schema_types(node: Any) -> Any:
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k == "type" and isinstance(v, str) and v.lower() in _PY_TYPES:
                out[k] = _PY_TYPES[v.lower()]
            elif k == "type" and isinstance(v, str) and v.lower() == "any":
                continue  # no constraint
            elif k == "properties" and isinstance(v, dict):
                out[k] = {pk: _json_schema_types(pv) for pk, pv in v.items()}
            else:
                out[k] = _json_schema_types(v) if k in ("items", "additionalProperties", "anyOf", "oneOf", "allOf") else v
        return out
    if isinstance(node, list):
        return [_json_schema_types(v) for v in node]
    return node


def text_of(content: Any) -> str | None:
    """Message content as text: strings pass; lists of text parts are joined; None stays None."""
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for p in content:
            if isinstance(p, str):
                parts.append(p)
            elif isinstance(p, dict) and p.get("type", "text") in ("text", "input_text", "output_text"):
                t = p.get("text", p.get("value", p.get("content")))
                if not isinstance(t, str):
                    raise Reject("unsupported content part", repr(p)[:200])
                parts.append(t)
            else:
                raise Reject("non-text content", repr(p)[:200])
        return "".join(parts)
    if isinstance(content, (int, float)):
        return str(content)
    raise Reject("unsupported content", type(content).__name__)


def extras(obj: dict, consumed: tuple[str, ...]) -> dict | None:
    """Top-level keys a converter does not map: kept in ``metadata.extra`` so nothing is lost."""
    out = {k: v for k, v in obj.items() if k not in consumed}
    return out or None


def record(rec_id: str, source: str, body: dict, metadata: dict | None = None, tools: list | None = None,
           extra: dict | None = None) -> dict:
    """One output record in canonical key order: id, metadata, tools, then the kind's fields."""
    meta = dict(metadata or {})
    meta.setdefault("source", source)
    if extra:
        meta["extra"] = {**meta.get("extra", {}), **extra} if isinstance(meta.get("extra"), dict) else extra
    out: dict[str, Any] = {"id": rec_id, "metadata": meta}
    if tools is not None:
        out["tools"] = tools
    out.update(body)
    return out


def declare_called_tools(tools: list | None, *message_lists: list[dict]) -> tuple[list | None, list[str]]:
    """Add a minimal declaration (name + the argument names seen) for every called tool the
    source did not declare (logs and traces often omit or redact schemas). Returns the tools and
    the names added, which converters record in ``metadata.inferred_tools``."""
    known = {t["function"]["name"] for t in tools or []}
    props: dict[str, dict] = {}
    for msgs in message_lists:
        for m in msgs:
            for c in m.get("tool_calls") or []:
                name = c["function"]["name"]
                if name not in known:
                    props.setdefault(name, {}).update({k: {} for k in c["function"]["arguments"]})
    if not props:
        return tools, []
    for name in props:
        if not TOOL_NAME.match(name):
            raise Reject("invalid tool name", repr(name)[:200])
    added = [{"type": "function", "function": {"name": n, "parameters": {"type": "object", "properties": p}}}
             for n, p in props.items()]
    return list(tools or []) + added, list(props)


def source_id(obj: dict, prefix: str, *keys: str) -> str:
    from trajtune.records import content_id

    for k in keys or ("id",):
        v = obj.get(k)
        if isinstance(v, (str, int)) and not isinstance(v, bool) and str(v).strip():
            return str(v)
    return content_id(obj, prefix)


# --------------------------------------------------------------------------- message builder

class Builder:
    """Builds a canonical message list, pairing tool results with the calls they answer.

    Canonical form (what every converter writes): each message has ``role`` and ``content``
    (``None`` only for an assistant turn that only calls tools), then ``tool_calls`` /
    ``tool_call_id`` / ``name`` / ``train`` when present. Call ids missing in the source are
    ``call_1``, ``call_2``, ... in order of appearance.
    """

    def __init__(self) -> None:
        self.messages: list[dict] = []
        self._pending: list[str] = []
        self._n = 0

    def next_id(self) -> str:
        self._n += 1
        return f"call_{self._n}"

    def system(self, text: Any) -> None:
        text = text_of(text)
        if text is None:
            raise Reject("empty system turn")
        self.messages.append({"role": "system", "content": text})

    def user(self, text: Any) -> None:
        text = text_of(text)
        if text is None or not text.strip():
            raise Reject("empty user turn")
        self._pending = []
        self.messages.append({"role": "user", "content": text})

    def call(self, name: Any, arguments: Any, call_id: Any = None) -> dict:
        if not isinstance(name, str) or not name.strip():
            raise Reject("tool call without a name", repr(name)[:200])
        args = parse_arguments(arguments)
        cid = call_id if isinstance(call_id, str) and call_id.strip() else self.next_id()
        if isinstance(call_id, str) and call_id.strip():
            self._n += 1
        return {"id": cid, "type": "function", "function": {"name": name, "arguments": args}}

    def assistant(self, content: Any, calls: list[dict] | None = None, train: bool | None = None, merge: bool = False) -> None:
        content = text_of(content)
        if content is not None and not content.strip() and calls:
            content = None
        prev = None
        if merge and calls and self.messages and self.messages[-1]["role"] == "assistant" \
                and "tool_calls" not in self.messages[-1] and content is None:
            prev = self.messages.pop()  # thought turn followed by its call turn: one message
            content = prev["content"]
            train = prev.get("train", train)
        if not calls and (content is None or not content.strip()):
            raise Reject("empty assistant turn")
        msg: dict[str, Any] = {"role": "assistant", "content": content}
        if calls:
            if merge and self.messages and self.messages[-1]["role"] == "assistant" and "tool_calls" in self.messages[-1] \
                    and content is None:
                self.messages[-1]["tool_calls"].extend(calls)  # consecutive call turns: parallel calls
                self._pending.extend(c["id"] for c in calls)
                return
            msg["tool_calls"] = calls
            self._pending = [c["id"] for c in calls]  # earlier calls left unanswered stay unanswered
        else:
            self._pending = []
        if train is not None:
            msg["train"] = bool(train)
        if prev is not None and "reasoning" in prev:
            msg["reasoning"] = prev["reasoning"]
        self.messages.append(msg)

    def tool(self, content: Any, call_id: Any = None, name: Any = None) -> None:
        if isinstance(content, (dict, list)):
            content = orjson.dumps(content).decode()
        content = text_of(content)
        if content is None:
            content = ""
        if isinstance(call_id, str) and call_id.strip():
            cid = call_id
            if cid in self._pending:
                self._pending.remove(cid)
        elif self._pending:
            cid = self._pending.pop(0)
        else:
            raise Reject("tool result without a matching call")
        msg: dict[str, Any] = {"role": "tool", "content": content, "tool_call_id": cid}
        if isinstance(name, str) and name:
            msg["name"] = name
        self.messages.append(msg)

    def finish(self, *, need_assistant: bool = True) -> list[dict]:
        if not self.messages:
            raise Reject("no messages")
        if need_assistant and not any(m["role"] == "assistant" for m in self.messages):
            raise Reject("no assistant turn")
        return self.messages
