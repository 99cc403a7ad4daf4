"""Record kinds, stable ids, kind detection and schema loading.

The JSON Schemas in ``schemas/`` are the data contract. ``validator(kind)`` returns a compiled
fastjsonschema function for the hot path; ``jsonschema_validator(kind)`` returns a Draft 2020-12
validator used to explain an error (JSON path, plain message) once the fast one has failed.
"""
from __future__ import annotations

import hashlib
import json
import re
from functools import lru_cache
from importlib import resources
from typing import Any, Callable, Iterable

import orjson

KINDS = ("sft", "preference", "group", "triplet", "task")

# A record's kind is given by its distinguishing keys.
_KIND_KEYS = {
    "sft": ("messages",),
    "preference": ("chosen", "rejected"),
    "group": ("responses",),
    "triplet": ("anchor", "positive", "negative"),
    "task": ("expected",),
}


def detect_kind(obj: Any) -> str | None:
    """Guess the kind of one record from its keys; None when it matches none."""
    if not isinstance(obj, dict):
        return None
    for kind in ("task", "preference", "group", "triplet", "sft"):
        if all(k in obj for k in _KIND_KEYS[kind]):
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


def _inline_refs(node: Any, root_kind: str) -> Any:
    """Resolve cross-file ``sft.schema.json#/$defs/x`` refs so fastjsonschema needs no network."""
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str) and v.startswith("sft.schema.json#"):
                out[k] = "#" + v.split("#", 1)[1]
            else:
                out[k] = _inline_refs(v, root_kind)
        return out
    if isinstance(node, list):
        return [_inline_refs(v, root_kind) for v in node]
    return node


@lru_cache(maxsize=None)
def validator(kind: str) -> Callable[[Any], Any]:
    """Compiled fastjsonschema validator (raises fastjsonschema.JsonSchemaValueException)."""
    import fastjsonschema

    s = _inline_refs(schema(kind), kind)
    if kind != "sft":
        defs = dict(schema("sft")["$defs"])
        defs.update(s.get("$defs", {}))
        s = dict(s)
        s["$defs"] = defs
    s = dict(s)
    s.pop("$id", None)
    return fastjsonschema.compile(s)


_WS = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """Whitespace-normalised, case-folded text (for leakage and near-duplicate checks)."""
    return _WS.sub(" ", text).strip().casefold()


def prompt_text(obj: dict) -> str:
    """The user-facing prompt of a record: the user turns (and anchor for triplets)."""
    kind = detect_kind(obj)
    if kind == "triplet":
        return str(obj.get("anchor", ""))
    msgs = obj.get("messages") if kind == "sft" else obj.get("prompt")
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
    lists = [obj.get("messages")] if kind == "sft" else [obj.get("chosen")]
    for msgs in lists:
        for m in msgs or []:
            if isinstance(m, dict):
                for c in m.get("tool_calls") or []:
                    fn = c.get("function") if isinstance(c, dict) else None
                    if isinstance(fn, dict) and fn.get("name"):
                        names.append(fn["name"])
    return names
