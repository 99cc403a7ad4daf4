"""The design's cold-start SFT export -> sft: ``{"task_id", "prompt", "completion", "metadata"}``.

``prompt`` is the user turn and ``completion`` the assistant turn (text, kept as it is; message
lists are read as TRL's conversational columns); ``task_id`` is the record id and ``metadata``
(``tool_sequence``, ``difficulty``, ``agent``, ``success``, anything else) is kept whole. A row
with ``metadata.success: false`` records a failed run and is rejected unless ``--keep-failed``.

A row with ``task_id``, ``prompt`` and ``completion`` but none of those metadata keys could as
well be a TRL prompt-completion row with an extra column: auto-detection then asks for ``--from``.
"""
from __future__ import annotations

from typing import Any

from trajtune.converters import trl
from trajtune.converters.common import Ambiguous, Reject, extras, parse_tools, per_row, record

NAME = "cold-start"
KINDS = ("sft",)
META_KEYS = ("tool_sequence", "difficulty", "agent", "success")


def detect(obj: Any) -> bool:
    if not (isinstance(obj, dict) and "task_id" in obj and "prompt" in obj and "completion" in obj):
        return False
    meta = obj.get("metadata")
    if isinstance(meta, dict) and any(k in meta for k in META_KEYS):
        return True
    raise Ambiguous(("cold-start", "trl"), "rows with task_id, prompt and completion but no metadata."
                    + "/".join(META_KEYS))


def convert_obj(obj: dict, keep_failed: bool) -> dict:
    tid = obj.get("task_id")
    if isinstance(tid, bool) or not isinstance(tid, (str, int)) or not str(tid).strip():
        raise Reject("task_id missing or empty", repr(tid)[:200])
    meta = obj.get("metadata", {})
    if not isinstance(meta, dict):
        raise Reject("metadata not an object", type(meta).__name__)
    success = meta.get("success")
    if success is not None and not isinstance(success, bool):
        raise Reject("success not true/false", repr(success)[:200])
    if success is False and not keep_failed:
        raise Reject("success false (a failed run)", "pass --keep-failed to keep failed runs")
    prompt, completion = trl.build(trl._turns(obj["prompt"], "user", "prompt"),
                                   trl._turns(obj["completion"], "assistant", "completion"))
    return record(str(tid), NAME, {"messages": prompt + completion}, meta, parse_tools(obj.get("tools")),
                  extras(obj, ("task_id", "prompt", "completion", "metadata", "tools")))


def convert(source, kind, cfg, emit):
    yield from per_row(source, emit, lambda o: convert_obj(o, cfg.keep_failed))
