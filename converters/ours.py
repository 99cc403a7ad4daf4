"""trajtune records in -> the same kind out (normalised: string arguments parsed, canonical
message form). Used to re-check files and as the input side of the exports
(``--from trajtune --to openai``). ``--to triplet`` from sft or task records gives tool-retrieval
triplets (request -> the called tool vs a look-alike offered one, or with ``--negatives-from CATALOG``
a family sibling from that catalog: ``converters/tool_retrieval.py``)."""
from __future__ import annotations

from typing import Any

from trajtune.converters import openai
from trajtune.converters.common import Reject, parse_tools, per_row, record
from trajtune.records import detect_kind

NAME = "trajtune"
KINDS = ("sft", "preference", "group", "triplet", "labelled")


def detect(obj: Any) -> bool:
    return isinstance(obj, dict) and isinstance(obj.get("id"), str) and detect_kind(obj) is not None \
        and isinstance(obj.get("metadata"), dict)


def _msgs(v: Any) -> list[dict]:
    return openai.build_messages(v)


def convert_obj(obj: dict, kind: str, negatives: Any = None) -> dict | list[dict]:
    have = detect_kind(obj)
    if kind == "triplet" and have in ("sft", "task"):  # tool retrieval: request -> called tool vs a look-alike
        from trajtune.converters.tool_retrieval import triplets

        return triplets(obj, negatives=negatives)
    if have != kind:
        raise Reject("record of another kind", f"{have}, not {kind}")
    if not isinstance(obj.get("id"), str) or not obj["id"]:
        raise Reject("missing id")
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    tools = parse_tools(obj.get("tools")) if "tools" in obj else None
    if kind == "sft":
        body = {"messages": _msgs(obj["messages"])}
    elif kind == "preference":
        body = {"prompt": openai.build_messages(obj["prompt"], need_assistant=False)}
        for side in ("chosen", "rejected"):
            body[side] = openai.build_messages(obj[side])
    elif kind == "group":
        body = {"prompt": openai.build_messages(obj["prompt"], need_assistant=False),
                "responses": [{"messages": _msgs(r.get("messages")), "reward": r.get("reward")}
                              for r in obj["responses"] if isinstance(r, dict)]}
    elif kind == "labelled":
        prompt, completion = obj["prompt"], obj["completion"]
        if not isinstance(prompt, list) or not isinstance(completion, list):
            raise Reject("prompt/completion not message lists")
        msgs = openai.build_messages(prompt + completion)  # one message each: cut back at the prompt's end
        body = {"prompt": msgs[:len(prompt)], "completion": msgs[len(prompt):]}
        body.update({k: obj[k] for k in ("label", "labels") if k in obj})
    else:
        body = {k: obj.get(k) for k in ("anchor", "positive", "negative")}
    return record(obj["id"], NAME, body, meta, tools)


def convert(source, kind, cfg, emit):
    negatives = None
    if kind == "triplet" and getattr(cfg, "negatives_from", None):
        from trajtune.converters.tool_retrieval import NegativePool

        negatives = NegativePool.load(cfg.negatives_from)
    yield from per_row(source, emit, lambda o: convert_obj(o, kind, negatives))
