"""The convert stage's work: one source format in, trajtune records (or an export format) out.

``run_convert(cfg)`` reads ``cfg.input`` (JSON array or JSONL, ``-`` = stdin), converts every row
with the source's converter, checks every record against its schema, and writes the records to
``cfg.output`` and a rejects JSONL atomically. A record that fails its schema or one of the
semantic checks of ``trajtune validate`` (error severity) is rejected, so the output always
validates. It returns the summary (converted, rejected by reason, skipped by filter); the stage
turns "nothing converted" into exit 1.

The command and its options (``cfg``): :mod:`trajtune.scripts.convert`.
"""
from __future__ import annotations

import os
import re
import tempfile
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import orjson

from trajtune import config, containers, records
from trajtune.converters import exports, registry
from trajtune.converters.common import ROW_ERRORS, Emitter, Reject, Source, as_reject
from trajtune.errors import ConfigError, UsageError
from trajtune.jsonl import atomic_writer
from trajtune.paths import guard


_PLACEHOLDER = re.compile(r"\{\{\s*\w+\s*\}\}")


def _placeholder(rec: dict) -> str | None:
    """The first ``{{name}}`` left in a record's texts (template datasets such as identity.json)."""
    stack = [v for k, v in rec.items() if k not in ("id", "metadata", "tools")]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            m = _PLACEHOLDER.search(v)
            if m:
                return m.group(0)
        elif isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return None


def _stem(p: Path) -> str:
    for ext in (".jsonl", ".parquet"):
        if p.name.endswith(ext):
            return p.name[: -len(ext)]
    return p.name


def default_rejects(out: str) -> str | None:
    if out == "-":
        return None
    p = Path(out)
    return str(p.with_name(_stem(p) + ".rejects.jsonl"))


def config_path(out: str) -> Path:
    """Where the resolved config of a conversion is saved: OUT.convert.yaml beside OUT."""
    p = Path(out)
    return p.with_name(_stem(p) + ".convert.yaml")


def _files(path: str) -> list[Path]:
    """A file, or every file of a datasets folder (its stamp is theirs)."""
    p = Path(path)
    return sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]


def saved_config(cfg: Any) -> dict:
    """The resolved config as saved in OUT.convert.yaml and compared on a re-run (``force`` is
    how a run is asked for, not what it produces: it is left out)."""
    return {k: v for k, v in config.to_dict(cfg).items() if k != "force"}


def _stamp(cfg: Any, inp: str) -> str:
    """What the output depends on besides the config: the input files' sizes and mtimes."""
    parts = []
    for f in (inp, cfg.annotations, getattr(cfg, "negatives_from", None), *registry.side_inputs(cfg.source_format, cfg, inp)):
        for one in _files(f) if f else ():
            st = one.stat()
            parts.append(f"{one.resolve()} {st.st_size} {st.st_mtime_ns}")
    return "; ".join(parts)


def _saved(cfg: Any, inp: str, out: str, rejects: str | None) -> dict | None:
    """The summary of the previous identical run when its outputs are still there, else None."""
    side = config_path(out)
    if not (Path(out).exists() and side.is_file() and (rejects is None or Path(rejects).is_file())):
        return None
    try:
        text = side.read_text("utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    head = [line for line in text.splitlines() if line.startswith("# ")]
    body = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
    try:
        saved = config.safe_yaml(body, str(side))
    except ConfigError:
        return None  # an unreadable sidecar only means: convert again
    if saved != saved_config(cfg) or f"# input: {_stamp(cfg, inp)}" not in head:
        return None
    for line in head:
        if line.startswith("# summary: "):
            return orjson.loads(line[len("# summary: "):])
    return None


@contextmanager
def _writer(out: str, container: str):
    """The output as a binary JSONL stream: the file itself (atomic), or for Parquet and datasets
    folders a spool file turned into the container once every record is in (atomic too)."""
    if container == "jsonl":
        with atomic_writer(out) as fh:
            yield fh
        return
    from trajtune.converters.common import SPOOL_PREFIX, _sweep_spools

    _sweep_spools()
    fd, spool = tempfile.mkstemp(prefix=f"{SPOOL_PREFIX}{os.getpid()}-", suffix=".jsonl")
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
        containers.write(container, spool, out)
    finally:
        Path(spool).unlink(missing_ok=True)


def run_convert(cfg: Any) -> dict:
    """Convert ``cfg.input`` to ``cfg.output`` (a :class:`trajtune.scripts.convert.Config`). A
    file-to-file run whose config and inputs are unchanged since the last run (OUT.convert.yaml)
    is skipped unless ``cfg.force``; its summary says ``up_to_date``."""
    out = cfg.output
    live = registry.live(cfg.source_format)  # phoenix, redis: IN is a server, read into a spool file
    inp = cfg.input if live else registry.resolve_input(cfg.source_format, cfg.input)  # bfcl: a category name -> its cached file
    # 1) what to produce: a record kind, possibly exported to another format, in a container
    export = exports.EXPORTS.get(cfg.to)
    kind = exports.KIND.get(cfg.to, "sft") if export else cfg.to
    container = containers.output_container(cfg.container, out)
    rejects_path = cfg.rejects or default_rejects(out)
    # no output may be an input (symlinks and hard links included), checked before any work
    folder = {"OUT": out} if container == "dataset" else {}
    guard({"IN": None if live else inp, "--annotations": cfg.annotations, "--negatives-from": getattr(cfg, "negatives_from", None),
           "--answers": [] if live else registry.side_inputs(cfg.source_format, cfg, inp)},
          files={"OUT": None if folder else out, "--rejects": rejects_path,
                 "the saved config": None if out == "-" or live else config_path(out),
                 **(live.sidecars(out) if live else {})}, replaced=folder)
    files = not live and inp != "-" and out != "-" and (Path(inp).is_file() or containers.sniff(inp) == "dataset")
    if files and not cfg.force:
        previous = _saved(cfg, inp, out, rejects_path)
        if previous is not None:
            return {**previous, "up_to_date": True}

    with (atomic_writer(rejects_path) if rejects_path else nullcontext()) as rej_fh, _writer(out, container) as out_fh:
        emit = Emitter((lambda e: rej_fh.write(orjson.dumps(e) + b"\n")) if rejects_path else None)
        source = live.open_source(cfg, out, emit) if live else Source(inp, emit)
        try:
            # 2) which source format
            fmt = cfg.source_format
            if fmt == "auto":
                head = source.peek()
                if not head:  # not one JSON object: reject every line (nothing dropped silently)
                    for _ in source.raw_rows():
                        pass
                    fmt = "unknown"
                else:
                    fmt = registry.detect(head, source.name)
            module = registry.get(fmt) if fmt != "unknown" else None
            if module is not None and kind not in module.KINDS:
                raise UsageError(f"--from {fmt} gives {', '.join(module.KINDS)} records, not {kind}",
                                 hint=f"pass --to {module.KINDS[0]}")
            # 3) convert, run THE record check (schema, then validate's agent checks), write
            seen: dict[str, int] = {}
            n = 0
            for row, rec in module.convert(source, kind, cfg, emit) if module is not None else ():
                try:
                    errors = records.check(rec, kind)
                except ROW_ERRORS as exc:  # a record the checks cannot read is rejected, not fatal
                    r = as_reject(exc)
                    emit.reject(row, r.reason, r.detail, record=rec)
                    continue
                if errors and errors[0][0] == "schema":
                    emit.reject(row, "fails the schema", f"{errors[0][2]}: {errors[0][1]}", record=rec)
                    continue
                if not cfg.allow_placeholders and (ph := _placeholder(rec)):
                    emit.reject(row, "unfilled {{placeholder}}", ph, record=rec)
                    continue
                if errors:  # the same agent checks `trajtune validate` runs
                    emit.reject(row, f"fails check {errors[0][0]}", f"{errors[0][1]} (at {errors[0][2]})", record=rec)
                    continue
                if rec["id"] in seen:
                    emit.reject(row, "duplicate id", f"{rec['id']} first seen at line {seen[rec['id']]}", record=rec)
                    continue
                if cfg.max_records is not None and n >= cfg.max_records:
                    emit.skip("beyond max_records")
                    continue
                if export:
                    try:
                        out_rec = export(rec)
                    except Reject as r:  # a record the export format cannot hold
                        emit.reject(row, r.reason, r.detail, record=rec)
                        continue
                else:
                    out_rec = rec
                seen[rec["id"]] = row.lineno
                out_fh.write(orjson.dumps(out_rec) + b"\n")
                n += 1
        finally:
            source.close()
    if live:
        live.finish(source)  # phoenix: the fetched spans are kept, the cursor moves on
    summary = {
        **(live.summary(source) if live else {}),
        "from": fmt, "to": cfg.to, "input": source.name, "output": out, "container": container, "rejects": rejects_path,
        "converted": n, "rejected": dict(sorted(emit.rejected.items())),
        "skipped": dict(sorted(emit.skipped.items())), "up_to_date": False,
    }
    # 4) save the resolved config beside the output (usable as --config) with what it was run on
    if files:
        import yaml

        with atomic_writer(config_path(out), "w") as fh:
            fh.write(f"# trajtune convert: resolved config of the run that wrote {Path(out).name}; "
                     f"repeat it with --config {config_path(out).name}\n")
            fh.write(f"# input: {_stamp(cfg, inp)}\n# summary: {orjson.dumps(summary).decode()}\n")
            yaml.safe_dump(saved_config(cfg), fh, sort_keys=False)
    return summary
