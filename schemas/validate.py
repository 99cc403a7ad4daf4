"""The validate engine: schema + semantic checks over JSONL files, streaming, in bounded memory.

Steps per file: 1) detect the kind from the first lines (or take ``--kind``); 2) stream the
lines (split by byte ranges across processes with ``workers > 1``), per line: orjson parse,
the compiled schema check of ``trajtune.records`` (jsonschema-rs), and only when that fails python
jsonschema to explain the error in plain words; then the
semantic checks of ``trajtune.schemas.checks``; 3) merge: duplicate ids and contents are found
from 8-byte digests (12 bytes a record with its line number, never the records themselves);
4) summarise.

Other stages use ``require_valid(path, kind)``, which returns the records or raises DataError.
The command, its options (``cfg`` here is a :class:`trajtune.scripts.validate.Config`) and its
report: :mod:`trajtune.scripts.validate`. This module imports nothing of the CLI.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import sys
from array import array
from functools import lru_cache
from typing import Any, Callable

import orjson

from trajtune import records
from trajtune.errors import DataError, UsageError
from trajtune.jsonl import MAX_DEPTH, display_name, iter_lines, open_input, too_deep
from trajtune.paths import guard
from trajtune.schemas.checks import ERROR, SEVERITY, WARNING, check_record

KEEP_PROBLEMS = 10_000  # problems kept per file for printing and the report; counts are always complete
DETECT_LINES = 200
MIN_SPLIT_BYTES = 4 << 20  # smaller files are not worth starting worker processes for
DETECT_BYTES = 8 << 20
BOM_MESSAGE = "UTF-8 byte order mark at the start of the file (stripped)"
_NAN = re.compile(rb"(?<![\"\w])(-?Infinity|NaN)(?![\"\w])")


@dataclasses.dataclass
class FileResult:
    """What validate found in one file. ``problems`` holds (line, check, message, json_path)."""

    path: str
    kind: str | None = None
    records: int = 0
    valid: int = 0
    by_check: dict[str, int] = dataclasses.field(default_factory=dict)
    problems: list[tuple[int | None, str, str, str]] = dataclasses.field(default_factory=list)
    turns: int = 0
    tool_calls: int = 0
    tools: set[str] = dataclasses.field(default_factory=set)
    tokens: dict | None = None

    @property
    def errors(self) -> int:
        return sum(n for c, n in self.by_check.items() if SEVERITY[c] == ERROR)

    @property
    def warnings(self) -> int:
        return sum(n for c, n in self.by_check.items() if SEVERITY[c] == WARNING)

    def failed(self, strict: bool = False) -> bool:
        return self.errors > 0 or (strict and self.warnings > 0)

    def to_dict(self) -> dict:
        return {
            "path": self.path, "kind": self.kind, "records": self.records, "valid": self.valid,
            "errors": self.errors, "warnings": self.warnings,
            "by_check": {c: {"severity": SEVERITY[c], "count": n} for c, n in sorted(self.by_check.items())},
            "turns": self.turns, "tool_calls": self.tool_calls, "distinct_tools": len(self.tools),
            "tokens": self.tokens,
            "problems": [{"line": ln, "check": c, "severity": SEVERITY[c], "message": m, "at": w}
                         for ln, c, m, w in self.problems],
            "problems_truncated": sum(self.by_check.values()) > len(self.problems),
        }


# --------------------------------------------------------------------------- reading

if sys.platform.startswith("linux"):
    # Python's own 64-bit SipHash of bytes: several times cheaper than blake2b. It is salted per
    # interpreter, and workers are forked (they share the salt), so digests from all chunks agree.
    def _digest(data: bytes) -> int:
        return hash(data) & 0xFFFFFFFFFFFFFFFF
else:  # spawned workers get a new salt: use a keyless hash there
    def _digest(data: bytes) -> int:
        return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def fast_record_validator(kind: str) -> Callable[[Any], bool]:
    """``is_valid`` for a record of ``kind``: the compiled schema of THE record check
    (jsonschema-rs, about 15x faster than fastjsonschema on these schemas)."""
    return records.is_valid(kind)


def _detect_kind(lines: list[bytes]) -> str | None:
    objs = []
    for raw in lines:
        try:
            objs.append(orjson.loads(raw))
        except orjson.JSONDecodeError:
            continue
    return records.detect_file_kind(objs)


# --------------------------------------------------------------------------- the scanner

class _Scan:
    """Validates the lines of one file (or one byte range of it) and accumulates the result."""

    def __init__(self, kind: str | None, cfg: Any, against: dict | None = None,
                 on_record: Callable[[dict], None] | None = None):
        self.kind = kind
        self.fast = fast_record_validator(kind) if kind else None
        self.explain = records.jsonschema_validator(kind) if kind else None
        self.cfg = cfg
        self.against = against
        self.on_record = on_record
        self.records = 0
        self.lines = 0
        self.by_check: dict[str, int] = {}
        self.n_errors = 0
        self.problems: list[tuple[int | None, str, str, str]] = []
        self.error_lines = array("I")
        self.id_digests = array("Q")
        self.id_lines = array("I")
        self.content_digests = array("Q")
        self.content_lines = array("I")
        self.turns = 0
        self.tool_calls = 0
        self.tools: set[str] = set()
        self.token_counts = array("I")
        self.truncated = 0
        self.tok = _load_tokenizer(cfg.tokenizer) if cfg.tokenizer else None

    # -- bookkeeping
    def add(self, line: int | None, check: str, message: str, where: str = "") -> None:
        self.by_check[check] = self.by_check.get(check, 0) + 1
        if SEVERITY[check] == ERROR:
            self.n_errors += 1
        if len(self.problems) < KEEP_PROBLEMS:
            self.problems.append((line, check, message, where))

    # -- one line (as trajtune.jsonl.iter_lines yields it: never blank, BOM stripped)
    def feed(self, lineno: int, raw: bytes | None, length: int) -> None:
        self.lines = lineno
        if raw is None:
            self.records += 1
            self.add(lineno, "line_too_long", f"line is {length / 1e6:.1f} MB, over the {self.cfg.max_line_mb:g} MB limit "
                     "(raise --max-line-mb to check it)")
            self.error_lines.append(lineno)
            return
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            self.records += 1
            self.error_lines.append(lineno)
            self._bad_json(lineno, raw, exc)
            return
        self.records += 1
        if type(obj) is not dict:
            self.error_lines.append(lineno)
            self.add(lineno, "not_object", f"expected a JSON object, got {_type_name(obj)}")
            return
        if too_deep(raw, obj):
            self.error_lines.append(lineno)
            self.add(lineno, "too_deep", f"nested deeper than {MAX_DEPTH} levels")
            return
        if self.on_record is not None:
            self.on_record(obj)
        n_before = self.n_errors
        self._record(lineno, obj, raw)
        if self.n_errors > n_before:
            self.error_lines.append(lineno)

    def _bad_json(self, lineno: int, raw: bytes, exc: Exception) -> None:
        msg = str(exc)
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as uexc:
            self.add(lineno, "not_utf8", f"not UTF-8: byte 0x{raw[uexc.start]:02x} at column {uexc.start + 1}",)
            return
        if "depth limit" in msg or "recursion" in msg:
            self.add(lineno, "too_deep", f"nested deeper than the JSON parser allows ({msg})")
            return
        if _NAN.search(raw):
            try:
                json.loads(raw)  # the stdlib accepts NaN/Infinity: then that is the only defect
                self.add(lineno, "nan_infinity", "NaN or Infinity is not valid JSON; write null or a number")
                return
            except (ValueError, RecursionError):
                pass
        self.add(lineno, "not_json", f"not valid JSON: {msg}")

    def _record(self, lineno: int, obj: dict, raw: bytes) -> None:
        kind = self.kind
        if kind is None:
            self.add(lineno, "unknown_kind", "cannot tell the record kind (no messages, chosen/rejected, responses, "
                     "anchor/positive/negative, expected or completion+label key); pass --kind")
            return
        rid = obj.get("id")
        if type(rid) is str:
            self.id_digests.append(_digest(rid.encode("utf-8", "surrogatepass")))
            self.id_lines.append(lineno)
        try:
            if not self.fast(obj) and self._explain(lineno, orjson.loads(raw)):  # explain the record as written
                return
            issues = check_record(obj, kind)
        except Exception as exc:  # a check must never crash validate; report it instead
            self.add(lineno, "schema", f"could not check this record ({type(exc).__name__}: {exc})")
            return
        for check, message, where in issues:
            self.add(lineno, check, message, where)
        content = {k: v for k, v in obj.items() if k != "id" and k != "metadata"}
        self.content_digests.append(_digest(orjson.dumps(content, option=orjson.OPT_SORT_KEYS)))
        self.content_lines.append(lineno)
        self._stats(obj, kind)
        if self.against:
            self._leakage(lineno, obj)
        if self.tok is not None:
            self._tokens(lineno, obj, kind)

    def _explain(self, lineno: int, obj: dict) -> bool:
        """Report schema errors in plain words; False when jsonschema finds nothing wrong."""
        from jsonschema.exceptions import best_match, relevance

        errs = sorted(self.explain.iter_errors(obj), key=relevance)
        if not errs:
            return False
        seen = set()
        other = records.detect_kind(obj)
        if other and other != self.kind:
            self.add(lineno, "schema", f"this looks like a {other} record in a {self.kind} file; keep one kind per file "
                     f"(or pass --kind)", "$")
            return True
        for top in errs[:3]:
            e = best_match([top])  # descends into oneOf/anyOf to the most relevant branch
            where = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in e.absolute_path)
            msg = f"{where}: {_short(e.message)}"
            if msg not in seen:
                seen.add(msg)
                self.add(lineno, "schema", msg, where)
        return True

    def _stats(self, obj: dict, kind: str) -> None:
        if kind == "sft":
            msgs = obj["messages"]
            self.turns += len(msgs)
            n = 0
            for m in msgs:
                if "tool_calls" in m:
                    n += len(m["tool_calls"])
            self.tool_calls += n
            tools = obj.get("tools")
            if tools and len(self.tools) < 100_000:
                for t in tools:
                    self.tools.add(t["function"]["name"])
            return
        if kind == "sft":
            lists = [obj["messages"]]
        elif kind == "preference":
            lists = [obj["prompt"], obj["chosen"]]
        elif kind == "group":
            lists = [obj["prompt"], obj["responses"][0]["messages"]]
        elif kind == "labelled":
            lists = [obj["prompt"], obj["completion"]]
        elif kind == "task":
            lists = [obj["prompt"]]
            self.tool_calls += len(obj["expected"].get("calls") or ())
        else:
            lists = []
        for msgs in lists:
            self.turns += len(msgs)
            for m in msgs:
                calls = m.get("tool_calls")
                if calls:
                    self.tool_calls += len(calls)
        if len(self.tools) < 100_000:
            for t in obj.get("tools") or ():
                self.tools.add(t["function"]["name"])

    def _leakage(self, lineno: int, obj: dict) -> None:
        text = records.prompt_text(obj)
        if not text.strip():
            return
        exact, norm = self.against
        hit = exact.get(_digest(text.encode("utf-8", "surrogatepass")))
        how = "exact"
        if hit is None:
            hit = norm.get(_digest(records.normalize_text(text).encode("utf-8", "surrogatepass")))
            how = "after whitespace/case normalisation"
        if hit is not None:
            self.add(lineno, "leakage", f"prompt also in {hit[0]}:{hit[1]} ({how})", "$")

    def _tokens(self, lineno: int, obj: dict, kind: str) -> None:
        try:
            n = _count_tokens(self.tok, obj, kind)
        except Exception as exc:
            self.add(lineno, "schema", f"the chat template cannot render this record ({type(exc).__name__}: {_short(str(exc))})")
            return
        self.token_counts.append(n)
        ml = self.cfg.max_length
        if ml is not None and n > ml:
            self.truncated += 1
            self.add(lineno, "truncated", f"id {obj.get('id')!r} has {n} tokens, over --max-length {ml}: it would be truncated")

    def export(self) -> dict:
        """Picklable partial result (for the worker processes)."""
        return {
            "records": self.records, "lines": self.lines, "by_check": self.by_check, "problems": self.problems,
            "error_lines": self.error_lines, "id_digests": self.id_digests, "id_lines": self.id_lines,
            "content_digests": self.content_digests, "content_lines": self.content_lines,
            "turns": self.turns, "tool_calls": self.tool_calls, "tools": self.tools,
            "token_counts": self.token_counts, "truncated": self.truncated,
        }


def _type_name(obj: Any) -> str:
    return {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean"}.get(
        type(obj), "null" if obj is None else type(obj).__name__)


def _short(text: str, n: int = 300) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


@lru_cache(maxsize=4)
def _load_tokenizer(model: str):
    from transformers import AutoTokenizer

    from trajtune.models import resolve_model

    try:
        return AutoTokenizer.from_pretrained(resolve_model(model, weights=False))
    except Exception as exc:
        raise UsageError(f"--tokenizer {model}: cannot load a tokenizer ({_short(str(exc), 200)})") from None


def _count_tokens(tok, obj: dict, kind: str) -> int:
    from trajtune import chat

    def n(text: str) -> int:
        return len(tok(text, add_special_tokens=False)["input_ids"])

    tools = obj.get("tools")
    if kind == "sft":
        return n(chat.render(tok, obj["messages"], tools))
    if kind == "preference":
        return max(n(chat.render(tok, obj["prompt"] + obj[s], tools)) for s in ("chosen", "rejected"))
    if kind == "group":
        return max(n(chat.render(tok, obj["prompt"] + r["messages"], tools)) for r in obj["responses"])
    if kind == "labelled":
        return n(chat.render(tok, obj["prompt"] + obj["completion"], tools))
    if kind == "task":
        return n(chat.render_prompt(tok, obj["prompt"], tools))
    return max(n(obj[k]) for k in ("anchor", "positive", "negative"))


# --------------------------------------------------------------------------- per file

def _line_limit(cfg: Any) -> int:
    return int(cfg.max_line_mb * 1e6) + 2  # the line ending (CRLF) on top


def _scan_range(args: tuple) -> dict:
    """Worker: validate the lines of path[start:end] (line numbers relative to the range)."""
    path, start, end, kind, cfg, against = args
    scan = _Scan(kind, cfg, against)
    feed = scan.feed
    for lineno, _, raw, length in iter_lines(path, limit=_line_limit(cfg), start=start, end=end,
                                             on_bom=lambda: scan.add(1, "bom", BOM_MESSAGE)):
        feed(lineno, raw, length)
    return scan.export()


def _split(path: str, parts: int, limit: int) -> list[tuple[int, int]]:
    """About equal byte ranges, each ending just after a line that iter_lines yields: a range's
    last line number is then its count of lines (blank lines after it would go uncounted), by
    which _merge shifts the line numbers of the ranges after it."""
    size = os.path.getsize(path)
    bounds = [0]
    for i in range(1, parts):
        end = size
        # the first line from here (perhaps the tail of one) that is not blank ends the range
        for _, offset, _, length in iter_lines(path, limit=limit, start=max(size * i // parts, bounds[-1])):
            end = offset + length
            break
        bounds.append(end)
    bounds.append(size)
    return [(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]


def validate_file(path: str, cfg: Any, *, against: tuple[dict, dict] | None = None,
                  on_record: Callable[[dict], None] | None = None) -> FileResult:
    """Validate one JSONL file (or '-'); raises UsageError when it cannot be read."""
    name = display_name(path)
    bom: list[bool] = []
    lines = iter_lines(path, limit=_line_limit(cfg), on_bom=lambda: bom.append(True))
    try:
        # 1) the kind, from the first lines (kept, so stdin is read once)
        head: list[tuple[int, int, bytes | None, int]] = []
        size = 0
        for item in lines:
            head.append(item)
            size += item[3]
            if len(head) >= DETECT_LINES or size >= DETECT_BYTES:
                break
        kind = cfg.kind or _detect_kind([raw for _, _, raw, _ in head if raw is not None])
        seekable = path != "-" and not path.endswith(".gz")
        workers = cfg.workers if (seekable and on_record is None and os.path.getsize(path) >= MIN_SPLIT_BYTES) else 1
        # 2) stream the lines
        if workers == 1:
            scan = _Scan(kind, cfg, against, on_record)
            if bom:
                scan.add(1, "bom", BOM_MESSAGE)
            feed = scan.feed
            for lineno, _, raw, length in head:
                feed(lineno, raw, length)
            for lineno, _, raw, length in lines:
                feed(lineno, raw, length)
            parts = [scan.export()]
        else:  # the first range's worker reports a BOM
            parts = _run_workers(path, workers, kind, cfg, against)
    finally:
        lines.close()
    # 3) merge the parts and find duplicates across all of them
    return _merge(name, kind, parts, cfg)


def _run_workers(path: str, workers: int, kind: str | None, cfg: Any, against) -> list[dict]:
    import multiprocessing as mp

    ranges = _split(path, workers, _line_limit(cfg))
    ctx = mp.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    pool = ctx.Pool(len(ranges), initializer=_plain_worker_signals)
    try:
        parts = pool.map(_scan_range, [(path, a, b, kind, cfg, against) for a, b in ranges])
    except BaseException:
        pool.terminate()
        pool.join()
        raise
    # the work is done: let the workers leave on their own. `with Pool` terminates them on exit,
    # and a full test run hung there (2026-12-07): the parent joined a worker that stayed blocked
    # on the task queue's lock (py-spy) instead of dying from the SIGTERM
    pool.close()
    pool.join()
    return parts


def _plain_worker_signals() -> None:
    """A pool worker dies quietly on SIGTERM and leaves Ctrl-C to the parent.

    Forked workers inherit the parent's handlers: the command line's SIGTERM handler raises
    KeyboardInterrupt, so the pool's own terminate() (SIGTERM to the workers still alive, on every
    exit) could print "Interrupted" and a traceback, and a worker interrupted while releasing the
    task queue's lock left it held, so another worker waited on it forever and validate hung."""
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _merge(name: str, kind: str | None, parts: list[dict], cfg: Any) -> FileResult:
    import numpy as np

    res = FileResult(name, kind)
    shift = 0
    id_d, id_l, c_d, c_l, err_l, tok = [], [], [], [], [], []
    by_check: dict[str, int] = {}
    for p in parts:
        res.records += p["records"]
        for c, n in p["by_check"].items():
            by_check[c] = by_check.get(c, 0) + n
        room = KEEP_PROBLEMS - len(res.problems)
        res.problems += [(ln + shift if ln is not None else None, c, m, w) for ln, c, m, w in p["problems"][:max(room, 0)]]
        id_d.append(np.frombuffer(p["id_digests"], np.uint64))
        id_l.append(np.frombuffer(p["id_lines"], np.uint32).astype(np.int64) + shift)
        c_d.append(np.frombuffer(p["content_digests"], np.uint64))
        c_l.append(np.frombuffer(p["content_lines"], np.uint32).astype(np.int64) + shift)
        err_l.append(np.frombuffer(p["error_lines"], np.uint32).astype(np.int64) + shift)
        tok.append(np.frombuffer(p["token_counts"], np.uint32))
        res.turns += p["turns"]
        res.tool_calls += p["tool_calls"]
        res.tools |= p["tools"]
        shift += p["lines"]
    res.by_check = by_check

    def dups(digests: list, lines: list) -> tuple[Any, Any, Any]:
        """(line of each later copy, line of its first copy, copies in its group)."""
        d = np.concatenate(digests) if digests else np.zeros(0, np.uint64)
        ln = np.concatenate(lines) if lines else np.zeros(0, np.int64)
        if len(d) < 2:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
        order = np.argsort(d, kind="stable")
        ds, ls = d[order], ln[order]
        new = np.empty(len(ds), bool)
        new[0] = True
        new[1:] = ds[1:] != ds[:-1]
        group = np.cumsum(new) - 1
        starts = np.flatnonzero(new)
        sizes = np.diff(np.append(starts, len(ds)))
        later = ~new
        return ls[later], ls[starts][group[later]], sizes[group[later]]

    dup_id_lines, first_id, _ = dups(id_d, id_l)
    for line, first in zip(dup_id_lines[:KEEP_PROBLEMS].tolist(), first_id[:KEEP_PROBLEMS].tolist()):
        _keep(res, line, "duplicate_id", f"id already used at line {first}", "$.id")
    if len(dup_id_lines):
        by_check["duplicate_id"] = by_check.get("duplicate_id", 0) + len(dup_id_lines)
    dup_c_lines, first_c, copies = dups(c_d, c_l)
    for line, first, n in zip(dup_c_lines[:KEEP_PROBLEMS].tolist(), first_c[:KEEP_PROBLEMS].tolist(),
                              copies[:KEEP_PROBLEMS].tolist()):
        _keep(res, line, "duplicate_content", f"same content as line {first} ({n} copies in this file)", "$")
    if len(dup_c_lines):
        by_check["duplicate_content"] = by_check.get("duplicate_content", 0) + len(dup_c_lines)
    errs = np.concatenate(err_l) if err_l else np.zeros(0, np.int64)
    bad = len(np.union1d(errs, dup_id_lines))
    res.valid = res.records - bad
    res.problems.sort(key=lambda p: (p[0] if p[0] is not None else 0, p[1]))
    del res.problems[KEEP_PROBLEMS:]
    if res.records == 0:
        res.by_check["empty_file"] = 1
        res.problems.insert(0, (None, "empty_file", "no records: the file is empty", ""))
    if cfg.tokenizer:
        counts = np.concatenate(tok) if tok else np.zeros(0, np.uint32)
        res.tokens = {
            "tokenizer": cfg.tokenizer, "counted": int(len(counts)),
            "p50": int(np.percentile(counts, 50)) if len(counts) else None,
            "p95": int(np.percentile(counts, 95)) if len(counts) else None,
            "max": int(counts.max()) if len(counts) else None,
            "max_length": cfg.max_length,
            "truncated": sum(p["truncated"] for p in parts),
            "truncated_ids": [m.split("'")[1] if "'" in m else m for _, c, m, _ in res.problems if c == "truncated"][:1000],
        }
    return res


def _keep(res: FileResult, line: int, check: str, message: str, where: str) -> None:
    if len(res.problems) < 2 * KEEP_PROBLEMS:
        res.problems.append((line, check, message, where))


# --------------------------------------------------------------------------- leakage

def load_against(paths: list[str]) -> tuple[dict, dict]:
    """Digests of the prompts of the --against files: (exact, normalised) -> (file, line)."""
    exact: dict[int, tuple[str, int]] = {}
    norm: dict[int, tuple[str, int]] = {}
    for path in paths:
        name = display_name(path)
        for lineno, _, raw, _ in iter_lines(path, limit=64 << 20):
            try:
                obj = orjson.loads(raw) if raw is not None else None
            except orjson.JSONDecodeError:
                continue
            if not isinstance(obj, dict):
                continue
            text = records.prompt_text(obj)
            if not text.strip():
                continue
            exact.setdefault(_digest(text.encode("utf-8", "surrogatepass")), (name, lineno))
            norm.setdefault(_digest(records.normalize_text(text).encode("utf-8", "surrogatepass")), (name, lineno))
    return exact, norm


# --------------------------------------------------------------------------- the stage

def validate(paths: list[str], cfg: Any) -> list[FileResult]:
    """Validate every path; raises UsageError (exit 2) for unreadable paths before any work."""
    if not paths:
        raise UsageError("no files given", hint="trajtune validate data/train.jsonl")
    for p in list(paths) + list(cfg.against):
        if p != "-":
            open_input(p).close()  # missing file, directory, device: a usage error, before any work
    if sum(1 for p in list(paths) + list(cfg.against) if p == "-") > 1:
        raise UsageError("'-' (stdin) can be given only once")
    guard({"PATH": paths, "--against": cfg.against}, files={"-o": cfg.output})
    if cfg.tokenizer:
        _load_tokenizer(cfg.tokenizer)  # fail early (exit 2) on a bad --tokenizer; workers inherit it
    against = load_against(cfg.against) if cfg.against else None
    return [validate_file(p, cfg, against=against) for p in paths]


def report_dict(results: list[FileResult], cfg: Any) -> dict:
    return {
        "ok": not any(r.failed(cfg.strict) for r in results),
        "strict": cfg.strict,
        "totals": {
            "files": len(results),
            "records": sum(r.records for r in results),
            "valid": sum(r.valid for r in results),
            "errors": sum(r.errors for r in results),
            "warnings": sum(r.warnings for r in results),
        },
        "files": [r.to_dict() for r in results],
    }


def require_valid(path: str, kind: str | None = None) -> list[dict]:
    """Read a JSONL file, run schema + semantic checks and return its records.

    Raises DataError listing the first problems as ``file:line: [check] message`` and the
    total count when any error is found (warnings do not fail).
    """
    from trajtune.scripts.validate import Config  # the defaults of `trajtune validate`

    out: list[dict] = []
    res = validate_file(str(path), Config(kind=kind), on_record=out.append)
    if res.errors:
        errs = [p for p in res.problems if SEVERITY[p[1]] == ERROR]
        lines = [f"{res.path}:{ln}: [{c}] {m}" if ln is not None else f"{res.path}: [{c}] {m}" for ln, c, m, _ in errs[:5]]
        more = f"\n  ... and {res.errors - len(lines)} more" if res.errors > len(lines) else ""
        raise DataError(f"{res.errors} error(s) in {res.path}:\n  " + "\n  ".join(lines) + more,
                        hint=f"run `trajtune validate {res.path}` for the full report")
    return out


# --------------------------------------------------------------------------- output

def _gh_escape(text: str, prop: bool = False) -> str:
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return text.replace(":", "%3A").replace(",", "%2C") if prop else text


def _entry(r: Any) -> dict:
    """A file of the report (``report_dict(...)["files"][i]``); a FileResult is converted."""
    return r.to_dict() if isinstance(r, FileResult) else r


def file_failed(r: Any, strict: bool = False) -> bool:
    """Whether one file of the report (or a FileResult) fails: errors, or warnings with ``strict``."""
    r = _entry(r)
    return r["errors"] > 0 or (strict and r["warnings"] > 0)


def print_problems(files: list[Any], cfg: Any, out=None) -> None:
    """One line per problem on stdout: ``file:line: severity [check] message`` or GitHub annotations.

    ``files``: the report's files (or FileResults); ``cfg``: its format, max_errors and output."""
    out = out or sys.stdout
    report_file = cfg.output if cfg.output and cfg.output != "-" else None
    for r in map(_entry, files):
        path = r["path"]
        shown = r["problems"][: cfg.max_errors]
        for p in shown:
            ln, check, msg, where, sev = p["line"], p["check"], p["message"], p["at"], p["severity"]
            if cfg.format == "github":
                props = f"file={_gh_escape(path, True)}" + (f",line={ln}" if ln is not None else "")
                props += f",title={_gh_escape(check, True)}"
                out.write(f"::{sev} {props}::{_gh_escape(msg)}\n")
            else:
                loc = f"{path}:{ln}" if ln is not None else path
                at = f" (at {where})" if where and where != "$" and where not in msg and check != "arguments_schema" else ""
                out.write(f"{loc}: {sev} [{check}] {msg}{at}\n")
        hidden = r["errors"] + r["warnings"] - len(shown)
        if hidden > 0:
            note = f"{path}: {hidden} more problem(s) not printed (--max-errors {cfg.max_errors}; all are counted"
            note += f", see {report_file})" if report_file else ", see the report: -o FILE)"
            if cfg.format == "github":
                out.write(f"::notice file={_gh_escape(path, True)}::{_gh_escape(note)}\n")
            else:
                out.write(note + "\n")
    out.flush()


def summary_table(r: Any, strict: bool = False):
    """The summary (a rich Table) of one file of the report (or a FileResult)."""
    from rich.table import Table

    r = _entry(r)
    by_check = {c: v["count"] for c, v in r["by_check"].items()}
    t = Table(show_header=False, box=None, pad_edge=False)
    t.add_column(style="bold")
    t.add_column(justify="right")
    t.add_row("records", f"{r['records']:,}")
    t.add_row("valid", f"{r['valid']:,}")
    t.add_row("errors", f"[red]{r['errors']:,}[/]" if r["errors"] else "0")
    for c, n in sorted(by_check.items()):
        if SEVERITY[c] == ERROR:
            t.add_row(f"  {c}", f"{n:,}")
    t.add_row("warnings", f"[yellow]{r['warnings']:,}[/]" if r["warnings"] else "0")
    for c, n in sorted(by_check.items()):
        if SEVERITY[c] == WARNING:
            t.add_row(f"  {c}", f"{n:,}")
    t.add_row("turns", f"{r['turns']:,}")
    t.add_row("tool calls", f"{r['tool_calls']:,}")
    t.add_row("distinct tools", f"{r['distinct_tools']:,}")
    if r["tokens"]:
        tk = r["tokens"]
        t.add_row("tokens p50 / p95 / max", f"{tk['p50']} / {tk['p95']} / {tk['max']}")
        if tk["max_length"] is not None:
            t.add_row(f"over {tk['max_length']} tokens", f"{tk['truncated']:,}")
    return t
