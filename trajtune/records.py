"""Record kinds, stable ids, kind detection, schema loading and THE record check.

The JSON Schemas in ``schemas/`` are the data contract. :func:`check` is the one record check
every stage runs (convert, generate offline and teacher, evaluate, training through validate's
engine): the kind's schema on jsonschema-rs (compiled once, offline), then the agent-specific
checks of :mod:`trajtune.schemas.checks`. :func:`is_valid` is its schema half for hot loops;
:func:`validator` raises :class:`Invalid` instead. ``jsonschema_validator(kind)`` (python
jsonschema, Draft 2020-12) only explains a record that failed, for validate's messages.
"""
from __future__ import annotations

import hashlib
import json
import re
from functools import lru_cache
from importlib import resources
from typing import Any, Callable, Iterable

import orjson

KINDS = ("sft", "preference", "group", "triplet", "task", "labelled")

# A record's kind is given by its distinguishing keys.
_KIND_KEYS = {
    "sft": ("messages",),
    "preference": ("chosen", "rejected"),
    "group": ("responses",),
    "triplet": ("anchor", "positive", "negative"),
    "task": ("expected",),
    "labelled": ("prompt", "completion"),  # and label (one verdict) or labels (one a step)
}


def detect_kind(obj: Any) -> str | None:
    """Guess the kind of one record from its keys; None when it matches none."""
    if not isinstance(obj, dict):
        return None
    for kind in ("task", "preference", "group", "triplet", "labelled", "sft"):
        if all(k in obj for k in _KIND_KEYS[kind]) and (kind != "labelled" or "label" in obj or "labels" in obj):
            return kind
    return None


def detect_file_kind(objs: Iterable[Any]) -> str | None:
    """Majority kind over the first records of a file."""
    counts: dict[str, int] = {}
    for obj in objs:
        k = detect_kind(obj)
        if k:
            counts[k] = counts.get(k, 0) + 1
    return max(counts, key=counts.get) if counts else None


def content_id(obj: Any, prefix: str = "") -> str:
    """Stable id from content: sha1 of canonical JSON (sorted keys), 16 hex chars."""
    digest = hashlib.sha1(orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]
    return f"{prefix}{digest}"


@lru_cache(maxsize=None)
def schema(kind: str) -> dict:
    if kind not in KINDS:
        raise KeyError(kind)
    text = resources.files("trajtune.schemas").joinpath(f"{kind}.schema.json").read_text("utf-8")
    return json.loads(text)


def _registry():
    from referencing import Registry, Resource

    reg = Registry()
    for k in KINDS:
        s = schema(k)
        res = Resource.from_contents(s)
        reg = reg.with_resource(s["$id"], res).with_resource(f"{k}.schema.json", res)
    return reg


@lru_cache(maxsize=None)
def jsonschema_validator(kind: str):
    from jsonschema import Draft202012Validator

    return Draft202012Validator(schema(kind), registry=_registry())


def inlined_schema(kind: str) -> dict:
    """The kind's schema with the cross-file ``sft.schema.json#/$defs/..`` refs made local."""
    raw = json.dumps(schema(kind)).replace('"sft.schema.json#', '"#')
    out = json.loads(raw)
    if kind != "sft":
        out["$defs"] = {**schema("sft")["$defs"], **out.get("$defs", {})}
    out.pop("$id", None)
    return out


@lru_cache(maxsize=None)
def _compiled(kind: str):
    import jsonschema_rs

    return jsonschema_rs.Draft202012Validator(inlined_schema(kind), offline=True)


def is_valid(kind: str) -> Callable[[Any], bool]:
    """The compiled schema check of ``kind`` (jsonschema-rs, offline): a bool, for hot loops."""
    return _compiled(kind).is_valid


def schema_error(obj: Any, kind: str) -> tuple[str, str] | None:
    """(message, JSON path) of the first schema violation of ``obj``, or None when it is valid."""
    v = _compiled(kind)
    if v.is_valid(obj):
        return None
    for err in v.iter_errors(obj):
        path = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err.instance_path)
        msg = " ".join(str(err.message).split())
        return (msg if len(msg) <= 300 else msg[:297] + "..."), path
    return "invalid", "$"


class Invalid(ValueError):
    """A record that fails its kind's schema: ``message`` says where and what."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def validator(kind: str) -> Callable[[Any], None]:
    """The schema check of ``kind`` as a function that raises :class:`Invalid`."""
    fast = is_valid(kind)

    def check_schema(obj: Any) -> None:
        if not fast(obj):
            msg, path = schema_error(obj, kind) or ("invalid", "$")
            raise Invalid(f"{path}: {msg}")

    return check_schema


def check(obj: Any, kind: str, *, errors_only: bool = True) -> list[tuple[str, str, str]]:
    """THE record check: ``[(check, message, JSON path)]``, empty when ``obj`` is a good record.

    A schema violation is one ``("schema", ...)`` issue (the agent checks assume a schema-valid
    record, so they run only after it passes); then the agent-specific checks, error severity
    only unless ``errors_only`` is False."""
    bad = schema_error(obj, kind)
    if bad is not None:
        return [("schema", bad[0], bad[1])]
    from trajtune.schemas.checks import ERROR, SEVERITY, check_record

    issues = check_record(obj, kind)
    return [i for i in issues if SEVERITY.get(i[0]) == ERROR] if errors_only else issues


_WS = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """Whitespace-normalised, case-folded text (for leakage and near-duplicate checks)."""
    return _WS.sub(" ", text).strip().casefold()


def prompt_text(obj: dict) -> str:
    """The user-facing prompt of a record: the user turns (and anchor for triplets; the first turn's
    user messages of a raw BFCL question line, so `validate --against` takes BFCL's files as they ship)."""
    kind = detect_kind(obj)
    if kind == "triplet":
        return str(obj.get("anchor", ""))
    msgs = obj.get("messages") if kind == "sft" else obj.get("prompt")
    if kind is None and isinstance(obj.get("question"), list):  # a raw BFCL line: question = [turn, ...]
        first = obj["question"][0] if obj["question"] else []
        msgs = first if isinstance(first, list) else obj["question"]
    if isinstance(msgs, str):
        return msgs
    if not isinstance(msgs, list):
        return ""
    parts = [m.get("content") or "" for m in msgs if isinstance(m, dict) and m.get("role") == "user"]
    return "\n".join(p if isinstance(p, str) else json.dumps(p) for p in parts)


def called_tools(obj: dict) -> list[str]:
    """Names of tools called in a record's assistant turns (sft: messages; others: chosen/expected)."""
    names: list[str] = []
    kind = detect_kind(obj)
    if kind == "task":
        exp = obj.get("expected") or {}
        return [c.get("name") for c in exp.get("calls", []) if isinstance(c, dict)]
    lists = [obj.get("messages")] if kind == "sft" else [obj.get("completion")] if kind == "labelled" \
        else [obj.get("chosen")]
    for msgs in lists:
        for m in msgs or []:
            if isinstance(m, dict):
                for c in m.get("tool_calls") or []:
                    fn = c.get("function") if isinstance(c, dict) else None
                    if isinstance(fn, dict) and fn.get("name"):
                        names.append(fn["name"])
    return names
