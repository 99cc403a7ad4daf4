"""Self-critiques and hard failures -> sft / preference.

* Self-critique rows: ``instruction``, ``input`` (the bad output), ``output`` (the corrected one),
  ``meta`` with the ``critique``. sft trains on the corrected output; preference prefers it over
  the bad one (rows whose two outputs are identical are skipped).
* Hard-failure rows: ``instruction``, ``reference_answer``, ``category`` -> sft on the reference
  answer (they have no rejected answer, so ``--to preference`` skips them with a count).
"""
from __future__ import annotations

from typing import Any

from trajtune.converters.common import Builder, Reject, Skip, per_row, record, source_id

NAME = "critiques"
KINDS = ("sft", "preference")


def _is_critique(obj: dict) -> bool:
    return "instruction" in obj and "output" in obj and "input" in obj and isinstance(obj.get("meta"), dict)


def _is_failure(obj: dict) -> bool:
    return "instruction" in obj and "reference_answer" in obj


def detect(obj: Any) -> bool:
    return isinstance(obj, dict) and (_is_critique(obj) or _is_failure(obj))


def _text(obj: dict, key: str) -> str:
    v = obj.get(key)
    if not isinstance(v, str) or not v.strip():
        raise Reject(f"{key} empty")
    return v


def convert_obj(obj: dict, kind: str) -> dict:
    instruction = _text(obj, "instruction")
    meta: dict[str, Any] = {}
    if isinstance(obj.get("category"), str):
        meta["category"] = obj["category"]
    if _is_failure(obj) and not _is_critique(obj):
        answer = _text(obj, "reference_answer")
        if kind == "preference":
            raise Skip("hard-failure row has no rejected answer")
        meta["kind"] = "hard_failure"
        b = Builder()
        b.user(instruction)
        b.assistant(answer)
        return record(source_id(obj, "failure-"), NAME, {"messages": b.finish()}, meta)
    if not _is_critique(obj):
        raise Reject("neither a critique nor a hard-failure row")
    bad, good = _text(obj, "input"), _text(obj, "output")
    critique = obj["meta"].get("critique")
    if isinstance(critique, str):
        meta["critique"] = critique
    meta["kind"] = "self_critique"
    if kind == "preference":
        if bad.strip() == good.strip():
            raise Skip("identical chosen and rejected")
        body = {"prompt": [{"role": "user", "content": instruction}],
                "chosen": [{"role": "assistant", "content": good}],
                "rejected": [{"role": "assistant", "content": bad}]}
        return record(source_id(obj, "critique-pref-"), NAME, body, meta)
    b = Builder()
    b.user(instruction)
    b.assistant(good)
    return record(source_id(obj, "critique-"), NAME, {"messages": b.finish()}, meta)


def convert(source, kind, cfg, emit):
    yield from per_row(source, emit, lambda o: convert_obj(o, kind))
