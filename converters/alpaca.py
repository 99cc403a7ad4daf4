"""Alpaca rows -> sft: ``instruction`` (+ ``input``) as the user turn, ``output`` as the answer,
optional ``system`` and ``history`` ([[user, assistant], ...]). JSON array or JSONL. Other keys
go to ``metadata.extra``.

Rows with unfilled ``{{placeholders}}`` (templates such as LLaMA-Factory's identity.json) are
rejected by the convert driver unless ``--allow-placeholders``.
"""
from __future__ import annotations

from typing import Any

from trajtune.converters.common import Builder, Reject, extras, per_row, record, source_id

NAME = "alpaca"
KINDS = ("sft",)


def detect(obj: Any) -> bool:
    return isinstance(obj, dict) and "instruction" in obj and "output" in obj


def _str(obj: dict, key: str) -> str:
    v = obj.get(key)
    if v is None:
        return ""
    if not isinstance(v, str):
        raise Reject(f"{key} not a string", type(v).__name__)
    return v


def convert_obj(obj: dict) -> dict:
    instruction, inp, output = _str(obj, "instruction"), _str(obj, "input"), _str(obj, "output")
    if not instruction.strip():
        raise Reject("instruction empty")
    if not output.strip():
        raise Reject("output empty")
    b = Builder()
    if _str(obj, "system").strip():
        b.system(obj["system"])
    history = obj.get("history") or []
    if not isinstance(history, list):
        raise Reject("history not a list of [user, assistant] pairs")
    for pair in history:
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
            raise Reject("history not a list of [user, assistant] pairs", repr(pair)[:200])
        b.user(pair[0])
        b.assistant(pair[1])
    b.user(instruction + ("\n\n" + inp if inp.strip() else ""))
    b.assistant(output)
    meta = {k: obj[k] for k in ("category",) if isinstance(obj.get(k), str)}
    return record(source_id(obj, "alpaca-"), NAME, {"messages": b.finish()}, meta,
                  extra=extras(obj, ("id", "metadata", "instruction", "input", "output", "system", "history", "category")))


def convert(source, kind, cfg, emit):
    yield from per_row(source, emit, convert_obj)
