"""TRL's dataset formats -> sft, preference or labelled records.

TRL (huggingface.co/docs/trl/dataset_formats) writes each column either *standard* (a string) or
*conversational* (a message list, tool calls with object or JSON-string ``arguments``); a
``tools`` column (a list or a JSON string) is carried through. Row types, told apart by their keys:

=========================  ===============================  ==========================================
type                       keys                             becomes
=========================  ===============================  ==========================================
language modeling          ``messages``                     sft (the openai reader; auto-detection
                                                            calls it ``openai``, the same format)
language modeling          ``text``                         rejected: plain text has no turns
prompt-only                ``prompt``                       rejected: no answer to learn from offline
prompt-completion          ``prompt``, ``completion``       sft: prompt + completion (assistant turns
                                                            inside the prompt get ``train: false``:
                                                            TRL does not train the prompt)
preference                 ``prompt``, ``chosen``,          preference
                           ``rejected``
preference, implicit       ``chosen``, ``rejected``         preference: the shared beginning is the
prompt                                                      prompt (whole turns; for text, TRL's
                                                            character prefix)
unpaired preference (KTO)  ``prompt``, ``completion``,      ``--to labelled``: one record a row;
                           ``label``                        ``--to preference``: pairs (rule below);
                                                            ``--to sft``: label true rows (false ones
                                                            are skipped, counted)
stepwise supervision       ``prompt``, ``completions``,     labelled with ``labels``: one assistant
                           ``labels``                       message a step
=========================  ===============================  ==========================================

LLaMA-Factory's KTO rows (``messages`` + ``label``) are unpaired preference rows whose completion is
the turns after the last user turn. A standard prompt is a user turn, a standard completion an
assistant turn. A row with the keys of two types (``completion`` beside ``chosen``) is rejected.

**Pairing rule** (``--to preference`` on unpaired rows): rows are grouped by their prompt and
tools (the converted messages, compared exactly); within a group the n-th ``label: true`` row is
paired with the n-th ``label: false`` row, in file order, into one preference record (written in
the order of the desirable rows; id ``<chosen id>+<rejected id>``; ``metadata.pair`` names both
rows by id and line). A row left without a partner is rejected ("no partner with the other
label"), so pairs x 2 + rejected = input.
"""
from __future__ import annotations

from typing import Any, Iterator

import orjson

from trajtune.converters import openai
from trajtune.converters.common import (ROW_ERRORS, Reject, Skip, as_reject, extras, parse_tools, per_row, record,
                                        source_id)
from trajtune.jsonl import Row

NAME = "trl"
KINDS = ("sft", "preference", "labelled")

# (type, the keys that make it), most specific first
SHAPES = (
    ("stepwise supervision", ("prompt", "completions", "labels")),
    ("unpaired preference", ("prompt", "completion", "label")),
    ("unpaired preference", ("messages", "label")),
    ("preference", ("prompt", "chosen", "rejected")),
    ("preference", ("chosen", "rejected")),
    ("prompt-completion", ("prompt", "completion")),
    ("language modeling", ("messages",)),
    ("prompt-only", ("prompt",)),
    ("language modeling (text)", ("text",)),
)
_TRL_KEYS = frozenset(k for _, keys in SHAPES for k in keys)
_UNPAIRED = "unpaired preference"


def shape(obj: dict) -> str | None:
    """The TRL type of a row, None when it is none; Reject when it has the keys of two."""
    for name, keys in SHAPES:
        if all(k in obj for k in keys):
            other = sorted((set(obj) & _TRL_KEYS) - set(keys) - ({"prompt"} if name == "preference" else set()))
            if other:
                raise Reject("keys of two TRL types", f"{name} row also has {', '.join(other)}; keep one type a file")
            return name
    return None


def detect(obj: Any) -> bool:
    if not isinstance(obj, dict):
        return False
    try:
        s = shape(obj)
    except Reject:
        return True  # TRL keys, mixed: rejected row by row with the reason
    return s is not None and s != "language modeling"  # messages rows: the openai reader's (the same format)


# --------------------------------------------------------------------------- columns -> messages

def _turns(value: Any, role: str, what: str) -> list:
    """One column as raw messages: text is one turn of ``role``, a message list is itself."""
    if isinstance(value, str):
        return [{"role": role, "content": value}]
    if isinstance(value, list) and value:
        return value
    raise Reject(f"{what} neither text nor a message list", type(value).__name__)


def build(*parts: list, need_assistant: bool = True) -> list[list[dict]]:
    """Build the concatenated parts as one conversation (tool results pair with calls across the
    parts) and cut it back into the parts (the builder makes one message of each)."""
    msgs = openai.build_messages([m for p in parts for m in p], need_assistant=need_assistant)
    out, i = [], 0
    for p in parts:
        out.append(msgs[i:i + len(p)])
        i += len(p)
    return out


def _head(obj: dict, prefix: str = "trl-") -> tuple[str, dict | None, list | None]:
    meta = obj.get("metadata")
    if meta is not None and not isinstance(meta, dict):
        raise Reject("metadata not an object", type(meta).__name__)
    return source_id(obj, prefix), meta, parse_tools(obj.get("tools"))


def _extra(obj: dict) -> dict | None:
    return extras(obj, ("id", "metadata", "tools", *_TRL_KEYS))


def _label(v: Any, what: str = "label") -> bool:
    if not isinstance(v, bool):
        raise Reject(f"{what} not true/false", repr(v)[:200])
    return v


def _unpaired(obj: dict) -> tuple[list[dict], list[dict]]:
    """(prompt, completion) of an unpaired row: prompt/completion columns, or messages whose
    turns after the last user turn are the completion."""
    if "messages" in obj:
        msgs = obj["messages"]
        if not isinstance(msgs, list) or not msgs:
            raise Reject("messages missing or not a list")
        last_user = max((i for i, m in enumerate(msgs) if isinstance(m, dict) and m.get("role") == "user"), default=-1)
        if last_user < 0 or last_user == len(msgs) - 1:
            raise Reject("no completion", "an unpaired row needs turns after its last user turn")
        return tuple(build(msgs[:last_user + 1], msgs[last_user + 1:]))
    prompt, completion = build(_turns(obj["prompt"], "user", "prompt"), _turns(obj["completion"], "assistant", "completion"))
    return prompt, completion


def _common_prefix(c: list, r: list) -> int:
    n = 0
    while n < min(len(c), len(r)) and c[n] == r[n]:
        n += 1
    while n > 0 and isinstance(c[n - 1], dict) and c[n - 1].get("role") != "user":
        n -= 1  # the answers start after the last shared user turn
    return n


def _preference(obj: dict) -> dict:
    c, r = obj["chosen"], obj["rejected"]
    prompt = obj.get("prompt")
    if isinstance(c, str) and isinstance(r, str) and prompt is None:  # standard, implicit: TRL's extract_prompt
        n = 0
        while n < min(len(c), len(r)) and c[n] == r[n]:
            n += 1
        if 0 < n < len(c) and c[n - 1] == " ":
            n -= 1  # the space starts the answer
        if not c[:n].strip():
            raise Reject("no shared prompt", "chosen and rejected share no beginning")
        prompt, c, r = c[:n], c[n:], r[n:]
    elif isinstance(c, list) and isinstance(r, list) and not isinstance(prompt, list):
        # conversational, implicit (a text prompt beside message lists is TRL's "implicit" too)
        n = _common_prefix(c, r)
        if n == 0:
            raise Reject("no shared prompt", "chosen and rejected share no user turn")
        prompt, c, r = c[:n], c[n:], r[n:]
    elif prompt is None:
        raise Reject("chosen/rejected neither both text nor both message lists")
    raw_prompt = _turns(prompt, "user", "prompt")
    p, chosen = build(raw_prompt, _turns(c, "assistant", "chosen"))
    _, rejected = build(raw_prompt, _turns(r, "assistant", "rejected"))
    if chosen == rejected:
        raise Reject("identical chosen and rejected")
    return {"prompt": p, "chosen": chosen, "rejected": rejected}


def _stepwise(obj: dict) -> dict:
    steps, labels = obj["completions"], obj["labels"]
    if not isinstance(steps, list) or not steps or not isinstance(labels, list):
        raise Reject("completions/labels not lists")
    if len(steps) != len(labels):
        raise Reject("completions and labels differ in length", f"{len(steps)} completions, {len(labels)} labels")
    raw = [s if isinstance(s, dict) else {"role": "assistant", "content": s} for s in steps]
    prompt, completion = build(_turns(obj["prompt"], "user", "prompt"), raw)
    return {"prompt": prompt, "completion": completion, "labels": [_label(v, "labels") for v in labels]}


# --------------------------------------------------------------------------- rows -> records

_NOT_TRAINABLE = {
    "language modeling (text)": ("language-modeling text (no turns)",
                                 "plain text has no user/assistant turns; convert the data it was rendered from"),
    "prompt-only": ("prompt only (no answer)",
                    "there is no answer to learn from offline (prompt-only data is for online methods)"),
}
_OTHER_KIND = {"preference": "preference", "stepwise supervision": "labelled", _UNPAIRED: "labelled",
               "prompt-completion": "sft", "language modeling": "sft"}


def convert_obj(obj: dict, kind: str) -> dict:
    s = shape(obj)
    if s is None:
        raise Reject("not a TRL row", "keys: " + ", ".join(sorted(obj))[:200])
    if s in _NOT_TRAINABLE:
        raise Reject(*_NOT_TRAINABLE[s])
    if kind == "sft" and s == "language modeling":
        return openai.convert_obj(obj, source=NAME)
    rec_id, meta, tools = _head(obj)
    if kind == "sft" and s == "prompt-completion":
        prompt, completion = build(_turns(obj["prompt"], "user", "prompt"),
                                   _turns(obj["completion"], "assistant", "completion"))
        for m in prompt:
            if m["role"] == "assistant" and "train" not in m:
                m["train"] = False  # TRL trains the completion only
        body = {"messages": prompt + completion}
    elif kind == "sft" and s == _UNPAIRED:
        if _label(obj["label"]) is False:
            raise Skip("label false (undesirable answer)")
        prompt, completion = _unpaired(obj)
        body = {"messages": prompt + completion}
    elif kind == "preference" and s == "preference":
        body = _preference(obj)
    elif kind == "labelled" and s == _UNPAIRED:
        label = _label(obj["label"])
        prompt, completion = _unpaired(obj)
        body = {"prompt": prompt, "completion": completion, "label": label}
    elif kind == "labelled" and s == "stepwise supervision":
        body = _stepwise(obj)
    else:
        raise Reject(f"{s} row", f"convert it with --to {_OTHER_KIND[s]}")
    return record(rec_id, NAME, body, meta, tools, _extra(obj))


def _key(rec: dict) -> bytes:
    return orjson.dumps([rec.get("tools"), rec["prompt"]], option=orjson.OPT_SORT_KEYS)


def _paired(source, emit) -> Iterator[tuple[Row, dict]]:
    """--to preference: preference rows as they come, unpaired rows paired by the rule above
    (two passes: the first keeps only a prompt digest, line and offset a row)."""
    import hashlib

    groups: dict[bytes, tuple[list, list]] = {}
    order: list[bytes] = []
    for raw in source.raw_rows():
        row = Row(source.name, raw.lineno, raw.obj)
        try:
            if shape(raw.obj) != _UNPAIRED:
                yield row, convert_obj(raw.obj, "preference")
                continue
            rec = convert_obj(raw.obj, "labelled")
        except ROW_ERRORS as exc:
            r = as_reject(exc)
            emit.reject(row, r.reason, r.detail)
            continue
        key = hashlib.sha1(_key(rec)).digest()
        if key not in groups:
            groups[key] = ([], [])
            order.append(key)
        groups[key][0 if rec["label"] else 1].append((raw.lineno, raw.offset))
    pairs, alone = [], []
    for key in order:
        good, bad = groups.pop(key)
        pairs += zip(good, bad)
        alone += good[len(bad):] + bad[len(good):]
    for lineno, offset in sorted(alone):
        row = source.read_at(offset, lineno)
        emit.reject(row, "no partner with the other label",
                    "no row with the same prompt and the opposite label is left to pair it with")
    for (gl, go), (bl, bo) in sorted(pairs):
        good, bad = source.read_at(go, gl), source.read_at(bo, bl)
        try:
            g, b = convert_obj(good.obj, "labelled"), convert_obj(bad.obj, "labelled")
            if g["completion"] == b["completion"]:
                raise Reject("identical chosen and rejected")
        except ROW_ERRORS as exc:
            r = as_reject(exc)
            emit.reject(good, r.reason, r.detail)
            continue
        meta = {**g["metadata"], "pair": {"chosen": {"id": g["id"], "line": gl}, "rejected": {"id": b["id"], "line": bl}}}
        body = {"prompt": g["prompt"], "chosen": g["completion"], "rejected": b["completion"]}
        yield good, record(f"{g['id']}+{b['id']}", NAME, body, meta, g.get("tools"))


def convert(source, kind, cfg, emit):
    if kind == "preference":
        yield from _paired(source, emit)
    else:
        yield from per_row(source, emit, lambda o: convert_obj(o, kind))
