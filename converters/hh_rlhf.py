"""Anthropic HH-RLHF style rows -> preference or sft.

``chosen`` and ``rejected`` are whole transcripts as strings (``"\\n\\nHuman: ...\\n\\nAssistant:
..."``). The turns both share, up to the last shared user turn, are the prompt; the rest of each
transcript is the chosen / rejected answer. ``--to sft`` keeps the chosen transcript.
"""
from __future__ import annotations

import re
from typing import Any

from trajtune.converters.common import Builder, Reject, per_row, record, source_id

NAME = "hh-rlhf"
KINDS = ("preference", "sft")

_TURN = re.compile(r"\n\n(Human|Assistant): ?")


def detect(obj: Any) -> bool:
    return isinstance(obj, dict) and isinstance(obj.get("chosen"), str) and isinstance(obj.get("rejected"), str) \
        and "Human:" in obj["chosen"]


def turns(text: str) -> list[tuple[str, str]]:
    body = "\n\n" + text.lstrip("\n")
    marks = list(_TURN.finditer(body))
    if not marks:
        raise Reject("no Human:/Assistant: turns")
    out = []
    for i, m in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(body)
        out.append(("user" if m.group(1) == "Human" else "assistant", body[m.end():end].strip()))
    return out


def _messages(pairs: list[tuple[str, str]], need_assistant: bool = True) -> list[dict]:
    b = Builder()
    for role, text in pairs:
        (b.user if role == "user" else b.assistant)(text)
    return b.finish(need_assistant=need_assistant)


def convert_obj(obj: dict, kind: str) -> dict:
    c, r = turns(obj["chosen"]), turns(obj["rejected"])
    if kind == "sft":
        return record(source_id(obj, "hh-"), NAME, {"messages": _messages(c)})
    n = 0
    while n < min(len(c), len(r)) and c[n] == r[n]:
        n += 1
    while n > 0 and c[n - 1][0] == "assistant":
        n -= 1
    if n == 0:
        raise Reject("no shared prompt")
    if c[n:] == r[n:]:
        raise Reject("identical chosen and rejected")
    body = {"prompt": _messages(c[:n], need_assistant=False), "chosen": _messages(c[n:]), "rejected": _messages(r[n:])}
    return record(source_id(obj, "hh-"), NAME, body)


def convert(source, kind, cfg, emit):
    yield from per_row(source, emit, lambda o: convert_obj(o, kind))
