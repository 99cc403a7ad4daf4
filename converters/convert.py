"""The convert stage: one source format in, trajtune records (or an export format) out.

``run_convert(cfg, inp, out)`` reads ``inp`` (JSON array or JSONL, ``-`` = stdin), converts
every row with the source's converter, checks every record against its schema, and writes the
records and a rejects JSONL atomically. A record that fails its schema or one of the semantic
checks of ``trajtune validate`` (error severity) is rejected, so the output always validates. It returns the summary (converted, rejected by reason,
skipped by filter); the CLI turns "nothing converted" into exit 1.
"""
from __future__ import annotations

import dataclasses
import re
from contextlib import nullcontext
from pathlib import Path
from typing import Optional

import orjson

from trajtune import config
from trajtune.converters import exports, registry
from trajtune.converters.common import ROW_ERRORS, Emitter, Source, as_reject
from trajtune.errors import ConfigError, UsageError
from trajtune.jsonl import atomic_writer
from trajtune.paths import guard
from trajtune.records import KINDS, validator
from trajtune.schemas.checks import ERROR, SEVERITY, check_record


@dataclasses.dataclass
class ConvertConfig:
    source_format: str = config.field("auto", help="input format (--from); auto = detect from the first rows")
    to: str = config.field("sft", help="output: a record kind (sft, preference, group, triplet) or an export "
                           "(openai, sharegpt, alpaca-text)")
    rejects: Optional[str] = config.field(None, help="rejects JSONL (default: OUT with .rejects.jsonl beside it)")
    max_records: Optional[int] = config.field(None, help="stop after this many converted records")
    allow_placeholders: bool = config.field(False, help="keep records with unfilled {{placeholders}} (template data)")
    # tool-invocation logs
    quality_threshold: float = config.field(0.90, help="tool-logs: minimum success rate kept")
    min_length: int = config.field(1, help="tool-logs: shortest tool sequence kept")
    max_length: int = config.field(5, help="tool-logs: longest tool sequence kept")
    min_task_chars: int = config.field(10, help="tool-logs: a shorter task_description is rejected")
    min_result_chars: int = config.field(2, help="tool-logs: a shorter expected_result is rejected")
    # interaction logs
    min_quality: float = config.field(0.8, help="interactions -> sft: minimum quality_scores.overall")
    min_quality_diff: float = config.field(0.2, help="interactions -> preference: minimum quality gap")
    group_size: int = config.field(4, help="interactions -> group: answers per group")
    agent_types: list[str] = config.field(default_factory=list, help="interactions: keep only these agent types")
    days_back: Optional[int] = config.field(None, help="interactions: keep only the last N days before --as-of")
    as_of: Optional[str] = config.field(None, help="interactions: reference date for --days-back (default: now, UTC)")
    # traces
    annotations: Optional[str] = config.field(None, help="traces: annotations JSON/JSONL (else read from the input)")
    approved_only: bool = config.field(True, help="traces -> sft: only spans annotated approved")
    sessions: bool = config.field(False, help="traces -> sft: one multi-turn trajectory per session.id")
    min_turns: int = config.field(2, help="traces --sessions: fewest turns in a session")

    def check(self) -> None:
        if self.to not in KINDS and self.to not in exports.EXPORTS:
            raise ConfigError(f"--to must be a kind ({', '.join(k for k in KINDS if k != 'task')}) or an export "
                              f"({', '.join(exports.EXPORTS)}), got '{self.to}'")
        if self.min_length < 0 or self.max_length < self.min_length:
            raise ConfigError("--min-length/--max-length: need 0 <= min-length <= max-length")
        if self.group_size < 2:
            raise ConfigError("--group-size must be at least 2")
        if not 0 <= self.quality_threshold <= 1:
            raise ConfigError("--quality-threshold must be between 0 and 1")


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


def default_rejects(out: str) -> str | None:
    if out == "-":
        return None
    p = Path(out)
    stem = p.name[:-6] if p.name.endswith(".jsonl") else p.name
    return str(p.with_name(stem + ".rejects.jsonl"))


def config_path(out: str) -> Path:
    """Where the resolved config of a conversion is saved: OUT.convert.yaml beside OUT."""
    p = Path(out)
    stem = p.name[:-6] if p.name.endswith(".jsonl") else p.name
    return p.with_name(stem + ".convert.yaml")


def _stamp(cfg: ConvertConfig, inp: str) -> str:
    """What the output depends on besides the config: the input files' sizes and mtimes."""
    parts = []
    for f in (inp, cfg.annotations):
        if f:
            st = Path(f).stat()
            parts.append(f"{Path(f).resolve()} {st.st_size} {st.st_mtime_ns}")
    return "; ".join(parts)


def _saved(cfg: ConvertConfig, inp: str, out: str, rejects: str | None) -> dict | None:
    """The summary of the previous identical run when its outputs are still there, else None."""
    side = config_path(out)
    if not (Path(out).is_file() and side.is_file() and (rejects is None or Path(rejects).is_file())):
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
    if saved != config.to_dict(cfg) or f"# input: {_stamp(cfg, inp)}" not in head:
        return None
    for line in head:
        if line.startswith("# summary: "):
            return orjson.loads(line[len("# summary: "):])
    return None


def run_convert(cfg: ConvertConfig, inp: str, out: str, *, force: bool = False) -> dict:
    """Convert ``inp`` to ``out``. A file-to-file run whose config and inputs are unchanged since
    the last run (OUT.convert.yaml) is skipped unless ``force``; its summary says ``up_to_date``."""
    # 1) what to produce: a record kind, possibly exported to another format
    export = exports.EXPORTS.get(cfg.to)
    kind = "sft" if export else cfg.to
    rejects_path = cfg.rejects or default_rejects(out)
    # no output may be an input (symlinks and hard links included), checked before any work
    guard({"IN": inp, "--annotations": cfg.annotations},
          files={"OUT": out, "--rejects": rejects_path, "the saved config": None if out == "-" else config_path(out)})
    files = inp != "-" and out != "-" and Path(inp).is_file()
    if files and not force:
        previous = _saved(cfg, inp, out, rejects_path)
        if previous is not None:
            return {**previous, "up_to_date": True}

    with (atomic_writer(rejects_path) if rejects_path else nullcontext()) as rej_fh, atomic_writer(out) as out_fh:
        emit = Emitter((lambda e: rej_fh.write(orjson.dumps(e) + b"\n")) if rejects_path else None)
        source = Source(inp, emit)
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
                raise UsageError(f"--from {fmt} gives {', '.join(module.KINDS)} records, not {kind}")
            # 3) convert, check each record against its schema, write
            check = validator(kind)
            seen: dict[str, int] = {}
            n = 0
            for row, rec in module.convert(source, kind, cfg, emit) if module is not None else ():
                try:
                    check(rec)
                except Exception as exc:  # fastjsonschema.JsonSchemaValueException
                    emit.reject(row, "fails the schema", getattr(exc, "message", str(exc)), record=rec)
                    continue
                if not cfg.allow_placeholders and (ph := _placeholder(rec)):
                    emit.reject(row, "unfilled {{placeholder}}", ph, record=rec)
                    continue
                try:
                    errors = [i for i in check_record(rec, kind) if SEVERITY.get(i[0]) == ERROR]
                except ROW_ERRORS as exc:  # a record the checks cannot read is rejected, not fatal
                    r = as_reject(exc)
                    emit.reject(row, r.reason, r.detail, record=rec)
                    continue
                if errors:  # the same semantic checks `trajtune validate` runs
                    emit.reject(row, f"fails check {errors[0][0]}", f"{errors[0][1]} (at {errors[0][2]})", record=rec)
                    continue
                if rec["id"] in seen:
                    emit.reject(row, "duplicate id", f"{rec['id']} first seen at line {seen[rec['id']]}", record=rec)
                    continue
                if cfg.max_records is not None and n >= cfg.max_records:
                    emit.skip("beyond max_records")
                    continue
                seen[rec["id"]] = row.lineno
                out_fh.write(orjson.dumps(export(rec) if export else rec) + b"\n")
                n += 1
        finally:
            source.close()
    summary = {
        "from": fmt, "to": cfg.to, "input": source.name, "output": out, "rejects": rejects_path,
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
            yaml.safe_dump(config.to_dict(cfg), fh, sort_keys=False)
    return summary
