"""Exports of sft records (``--to``): openai, sharegpt, alpaca-text.

* ``openai``: chat fine-tuning JSONL, ``arguments`` as JSON strings, ``train`` as ``weight``;
  ``id`` and ``metadata`` are kept (hosted APIs ignore unknown top-level keys; drop them with
  ``jq -c 'del(.id, .metadata)'`` if yours does not).
* ``sharegpt``: LLaMA-Factory conversations (human/gpt/function_call/observation, ``tools`` as a
  JSON string). Call ids and ``train`` flags are kept only where they cannot be re-derived.
* ``alpaca-text``: ``{"id", "text"}`` in the Alpaca prompt layout for text-only trainers;
  tool calls are written in the fallback format of :mod:`trajtune.chat` (one-way).
"""
from __future__ import annotations

from typing import Any, Callable

import orjson

from trajtune.chat import format_tool_call


def _json(obj: Any) -> str:
    return orjson.dumps(obj).decode()


def _head(rec: dict) -> dict:
    out: dict[str, Any] = {"id": rec["id"]}
    if "metadata" in rec:
        out["metadata"] = rec["metadata"]
    return out


def to_openai(rec: dict) -> dict:
    msgs = []
    for m in rec["messages"]:
        o = {k: v for k, v in m.items() if k != "train"}
        if "tool_calls" in m:
            o["tool_calls"] = [{"id": c["id"], "type": "function",
                                "function": {"name": c["function"]["name"], "arguments": _json(c["function"]["arguments"])}}
                               for c in m["tool_calls"]]
        if "train" in m:
            o["weight"] = 1 if m["train"] else 0
        msgs.append(o)
    out = _head(rec)
    if "tools" in rec:
        out["tools"] = rec["tools"]
    out["messages"] = msgs
    return out


def to_sharegpt(rec: dict) -> dict:
    conv: list[dict] = []
    n = 0
    pending: list[str] = []
    for m in rec["messages"]:
        role = m["role"]
        extra = {k: m[k] for k in ("train", "reasoning") if k in m}
        if role == "system":
            conv.append({"from": "system", "value": m["content"]})
        elif role == "user":
            conv.append({"from": "human", "value": m["content"]})
        elif role == "assistant":
            if m.get("content") is not None:
                conv.append({"from": "gpt", "value": m["content"], **extra})
            if m.get("tool_calls"):
                specs = []
                for c in m["tool_calls"]:
                    n += 1
                    spec = {"name": c["function"]["name"], "arguments": c["function"]["arguments"]}
                    if c["id"] != f"call_{n}":
                        spec["id"] = c["id"]
                    specs.append(spec)
                    pending.append(c["id"])
                conv.append({"from": "function_call", "value": _json(specs[0] if len(specs) == 1 else specs),
                             **({} if m.get("content") is not None else extra)})
        elif role == "tool":
            turn = {"from": "observation", "value": m["content"]}
            expected = pending[0] if pending else None
            if m["tool_call_id"] != expected:
                turn["tool_call_id"] = m["tool_call_id"]
            if m["tool_call_id"] in pending:
                pending.remove(m["tool_call_id"])
            if "name" in m:
                turn["name"] = m["name"]
            conv.append(turn)
    out = _head(rec)
    out["conversations"] = conv
    if "tools" in rec:
        out["tools"] = _json([t["function"] for t in rec["tools"]])
    return out


def to_alpaca_text(rec: dict) -> dict:
    parts = []
    for m in rec["messages"]:
        if m["role"] == "system":
            parts.append(m["content"])
        elif m["role"] == "user":
            parts.append("### Instruction:\n" + m["content"])
        elif m["role"] == "tool":
            parts.append("### Tool result:\n" + m["content"])
        else:
            text = [m["content"]] if m.get("content") else []
            text += [format_tool_call(c["function"]["name"], c["function"]["arguments"]) for c in m.get("tool_calls") or []]
            parts.append("### Response:\n" + "\n".join(text))
    out = _head(rec)
    out["text"] = "\n\n".join(parts)
    return out


EXPORTS: dict[str, Callable[[dict], dict]] = {"openai": to_openai, "sharegpt": to_sharegpt, "alpaca-text": to_alpaca_text}
