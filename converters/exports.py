"""Exports (``--to``): sft records to openai, sharegpt, alpaca-text and TRL's formats; preference
and labelled records to TRL's formats. ``KIND`` says which record kind an export reads (sft when
absent); an export that cannot hold a record raises Reject and the record is rejected.

* ``openai``: chat fine-tuning JSONL, ``arguments`` as JSON strings, ``train`` as ``weight``;
  ``id`` and ``metadata`` are kept (hosted APIs ignore unknown top-level keys; drop them with
  ``jq -c 'del(.id, .metadata)'`` if yours does not).
* ``sharegpt``: LLaMA-Factory conversations (human/gpt/function_call/observation, ``tools`` as a
  JSON string). Call ids and ``train`` flags are kept only where they cannot be re-derived.
* ``alpaca-text``: ``{"id", "text"}`` in the Alpaca prompt layout for text-only trainers;
  tool calls are written in the fallback format of :mod:`trajtune.chat` (one-way).
* TRL's conversational formats (``id`` and ``metadata`` kept, ``tools`` as trl reads them,
  tool-call ``arguments`` as objects as chat templates expect; in Parquet they become JSON text,
  see :mod:`trajtune.containers`): ``trl`` (sft -> language modeling ``messages``, for
  ``SFTTrainer`` with ``assistant_only_loss``), ``trl-prompt-completion`` (sft -> ``prompt`` =
  the turns before the first assistant turn, ``completion`` = the rest), ``trl-preference``
  (preference -> ``prompt``/``chosen``/``rejected``, explicit prompt), ``trl-unpaired``
  (labelled with ``label`` -> ``prompt``/``completion``/``label``, KTO) and ``trl-stepwise``
  (labelled with ``labels`` -> ``prompt``/``completions``/``labels``; TRL's stepwise format is
  text only, so steps must be plain assistant text). Messages keep our ``train`` and ``reasoning``
  keys (trl ignores them), so every TRL export reads back into the same records.
"""
from __future__ import annotations

from typing import Any, Callable

import orjson

from trajtune.chat import format_tool_call
from trajtune.converters.common import Reject


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


def _with_tools(rec: dict) -> dict:
    out = _head(rec)
    if "tools" in rec:
        out["tools"] = rec["tools"]
    return out


def to_trl(rec: dict) -> dict:
    return {**_with_tools(rec), "messages": rec["messages"]}


def to_trl_prompt_completion(rec: dict) -> dict:
    msgs = rec["messages"]
    first = next(i for i, m in enumerate(msgs) if m["role"] == "assistant")  # checked records have one
    return {**_with_tools(rec), "prompt": msgs[:first], "completion": msgs[first:]}


def to_trl_preference(rec: dict) -> dict:
    return {**_with_tools(rec), "prompt": rec["prompt"], "chosen": rec["chosen"], "rejected": rec["rejected"]}


def to_trl_unpaired(rec: dict) -> dict:
    if "label" not in rec:
        raise Reject("stepwise record", "it has per-step labels: export it with --to trl-stepwise")
    return {**_with_tools(rec), "prompt": rec["prompt"], "completion": rec["completion"], "label": rec["label"]}


def to_trl_stepwise(rec: dict) -> dict:
    if "labels" not in rec:
        raise Reject("unpaired record", "it has one label: export it with --to trl-unpaired")
    steps = rec["completion"]
    if any(set(m) != {"role", "content"} or m["role"] != "assistant" for m in steps):
        raise Reject("stepwise record not text-only", "TRL's stepwise format holds plain text steps (no tool calls, "
                     "tool results or train flags); keep it as JSONL labelled records")
    prompt = rec["prompt"]
    one_user = len(prompt) == 1 and set(prompt[0]) == {"role", "content"} and prompt[0]["role"] == "user"
    return {**_with_tools(rec), "prompt": prompt[0]["content"] if one_user else prompt,
            "completions": [m["content"] for m in steps], "labels": rec["labels"]}


EXPORTS: dict[str, Callable[[dict], dict]] = {
    "openai": to_openai, "sharegpt": to_sharegpt, "alpaca-text": to_alpaca_text,
    "trl": to_trl, "trl-prompt-completion": to_trl_prompt_completion, "trl-preference": to_trl_preference,
    "trl-unpaired": to_trl_unpaired, "trl-stepwise": to_trl_stepwise,
}
# the record kind an export reads (sft unless named here)
KIND = {"trl-preference": "preference", "trl-unpaired": "labelled", "trl-stepwise": "labelled"}
