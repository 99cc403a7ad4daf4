"""Semantic (agent-specific) checks over one parsed, schema-valid record.

Each check has a stable name (used in reports, ``--format github`` titles and the
``metadata.expect`` field of ``data/examples/invalid/*.jsonl``) and a severity in ``SEVERITY``.
A check function takes one record and returns a list of ``(check, message, json_path)``;
``check_record(obj, kind)`` runs the ones for the record's kind. They assume the record already
passed its JSON Schema (types and required keys are known to be right).

Tool arguments are checked against the tool's ``parameters`` JSON Schema. Validators are cached
per distinct schema, compiled offline with a bounded regex engine (trajtune.jsonschemas): a tool
schema's remote ``$ref`` is a ``tool_schema`` error, never a request.
"""
from __future__ import annotations

from typing import Any, Callable

import orjson

from trajtune.jsonschemas import ArgSchema, arg_schema, regex_error

Issue = tuple[str, str, str]  # (check, message, JSON path)

ERROR, WARNING = "error", "warning"

# Every check name validate can report, with its severity. Names are a stable interface.
SEVERITY: dict[str, str] = {
    # line level (the engine)
    "not_utf8": ERROR,
    "not_json": ERROR,
    "nan_infinity": ERROR,
    "too_deep": ERROR,
    "line_too_long": ERROR,
    "not_object": ERROR,
    "unknown_kind": ERROR,
    "schema": ERROR,
    "empty_file": ERROR,
    "bom": WARNING,
    # record level (this module)
    "role_order": ERROR,
    "orphan_tool_message": ERROR,
    "tool_call_id_unanswered": ERROR,
    "call_without_result": WARNING,
    "duplicate_call_id": ERROR,
    "unknown_tool": ERROR,
    "duplicate_tool": ERROR,
    "tool_schema": ERROR,
    "arguments_schema": ERROR,
    "empty_assistant": ERROR,
    "no_assistant": ERROR,
    "empty_prompt": ERROR,
    "chosen_equals_rejected": ERROR,
    "step_labels": ERROR,
    "positive_equals_negative": ERROR,
    "flat_rewards": WARNING,
    "bad_regex": ERROR,
    # file level (the engine)
    "duplicate_id": ERROR,
    "duplicate_content": WARNING,
    "leakage": ERROR,
    "truncated": WARNING,
}


# --------------------------------------------------------------------------- tool schemas
# Tool schemas come with the data: they are compiled offline and bounded (trajtune.jsonschemas).

def arg_validator(parameters: dict) -> ArgSchema:
    """The cached validator for one distinct ``parameters`` schema."""
    return arg_schema(parameters)


# --------------------------------------------------------------------------- helpers
# These run on every record: no string formatting unless something is wrong.

_TABLES: dict[bytes, tuple[dict, list]] = {}


def _tool_table(tools: list | None, where: str, issues: list[Issue]) -> dict[str, ArgSchema | None]:
    """name -> validator of its parameters (None when absent); reports duplicate names and bad schemas.

    Most files repeat the same tool lists, so tables are cached by the list's JSON.
    """
    if not tools:
        return {}
    key = orjson.dumps(tools)
    hit = _TABLES.get(key)
    if hit is None:
        if len(_TABLES) > 5000:
            _TABLES.clear()
        found: list[Issue] = []
        hit = _TABLES[key] = (_build_tool_table(tools, where, found), found)
    if hit[1]:
        issues.extend(hit[1])
    return hit[0]


def _build_tool_table(tools: list, where: str, issues: list[Issue]) -> dict[str, ArgSchema | None]:
    table: dict[str, ArgSchema | None] = {}
    for i, t in enumerate(tools):
        fn = t["function"]
        name = fn["name"]
        if name in table:
            issues.append(("duplicate_tool", f"tool '{name}' is declared twice", f"{where}[{i}]"))
            continue
        params = fn.get("parameters")
        v = table[name] = arg_validator(params) if params is not None else None
        if v is not None and v.schema_error:
            issues.append(("tool_schema", f"tool '{name}' has an invalid parameters schema: {v.schema_error}",
                           f"{where}[{i}].function.parameters"))
    return table


def _is_blank(text: Any) -> bool:
    return not isinstance(text, str) or not text.strip()


def _check_dialogue(msgs: list, where: str, tools: dict[str, ArgSchema | None], issues: list[Issue],
                    *, start_pending: dict[str, str] | None = None, seen_ids: set[str] | None = None,
                    need_user_first: bool = True) -> dict[str, str]:
    """Role order, call ids, tool results, tool names and arguments over one message list.

    Returns the calls still pending (id -> tool name) at the end, so a continuation (chosen,
    rejected, responses) can be checked after its prompt.
    """
    pending: dict[str, str] = dict(start_pending) if start_pending else {}
    answered: set[str] = set()
    seen: set[str] = set(seen_ids) if seen_ids else set()
    first_turn = need_user_first
    i = -1
    for m in msgs:
        i += 1
        role = m["role"]
        if role == "tool":
            cid = m["tool_call_id"]
            if cid in pending:
                del pending[cid]
                answered.add(cid)
                continue
            here = f"{where}[{i}]"
            if first_turn:
                first_turn = False
                issues.append(("role_order", "the first non-system turn is 'tool'; it must be the user's", here))
            elif not pending:
                what = f"tool_call_id '{cid}' was already answered" if cid in answered else \
                    f"tool message '{cid}' answers no pending call"
                issues.append(("orphan_tool_message", what, here))
            else:
                issues.append(("tool_call_id_unanswered",
                               f"tool_call_id '{cid}' matches no earlier call (pending: {', '.join(sorted(pending))})",
                               here + ".tool_call_id"))
                oldest = next(iter(pending))  # count it as the next result: one defect, one report
                del pending[oldest]
                answered.add(oldest)
            continue
        if pending:
            issues.append(("call_without_result",
                           f"call(s) {', '.join(sorted(pending))} got no tool result before this '{role}' turn",
                           f"{where}[{i}]"))
            pending.clear()
        if role == "system":
            if i:
                issues.append(("role_order", "a system message must come first", f"{where}[{i}]"))
            continue
        if first_turn:
            first_turn = False
            if role != "user":
                issues.append(("role_order", f"the first non-system turn is '{role}'; it must be the user's", f"{where}[{i}]"))
        if role != "assistant":
            continue
        calls = m.get("tool_calls")
        if not calls:
            content = m.get("content")
            if not content or (not content.strip() if isinstance(content, str) else True):
                issues.append(("empty_assistant", "assistant turn has neither content nor tool calls", f"{where}[{i}]"))
            continue
        j = -1
        for call in calls:
            j += 1
            cid = call["id"]
            if cid in seen:
                issues.append(("duplicate_call_id", f"call id '{cid}' is used twice in this record",
                               f"{where}[{i}].tool_calls[{j}].id"))
            seen.add(cid)
            fn = call["function"]
            name = fn["name"]
            pending[cid] = name
            if name not in tools:
                known = ", ".join(sorted(tools)) or "none declared"
                issues.append(("unknown_tool", f"calls '{name}', which is not in the record's tools ({known})",
                               f"{where}[{i}].tool_calls[{j}].function.name"))
                continue
            v = tools[name]
            if v is not None:
                for msg in v.errors(fn["arguments"]):
                    issues.append(("arguments_schema", f"'{name}' arguments: {msg}",
                                   f"{where}[{i}].tool_calls[{j}].function.arguments"))
    return pending


def _prompt_blank(msgs: list) -> bool:
    return all(_is_blank(m.get("content")) for m in msgs if m["role"] == "user")


def _ids_in(msgs: list) -> set[str]:
    return {c["id"] for m in msgs for c in (m.get("tool_calls") or [])}


# --------------------------------------------------------------------------- per kind

def check_sft(obj: dict) -> list[Issue]:
    issues: list[Issue] = []
    tools = _tool_table(obj.get("tools"), "$.tools", issues)
    msgs = obj["messages"]
    _check_dialogue(msgs, "$.messages", tools, issues)
    if not any(m["role"] == "assistant" for m in msgs):
        issues.append(("no_assistant", "no assistant turn: nothing to train on", "$.messages"))
    elif not any(m["role"] == "user" and not _is_blank(m.get("content")) for m in msgs):
        issues.append(("empty_prompt", "no user turn has any text", "$.messages"))
    return issues


def _canon(x: Any) -> bytes:
    return orjson.dumps(x, option=orjson.OPT_SORT_KEYS)


def _check_prompt(obj: dict, issues: list) -> tuple:
    """Shared by preference, group and task records: the tool table, an empty prompt, and the
    prompt's own dialogue. Returns (tools, prompt, calls still pending at the prompt's end)."""
    tools = _tool_table(obj.get("tools"), "$.tools", issues)
    prompt = obj["prompt"]
    if _prompt_blank(prompt):
        issues.append(("empty_prompt", "the prompt has no user text", "$.prompt"))
    return tools, prompt, _check_dialogue(prompt, "$.prompt", tools, issues)


def check_preference(obj: dict) -> list[Issue]:
    issues: list[Issue] = []
    tools, prompt, pending = _check_prompt(obj, issues)
    # a call pending at the end of the prompt may be answered inside each continuation
    ids = _ids_in(prompt)
    for side in ("chosen", "rejected"):
        _check_dialogue(obj[side], f"$.{side}", tools, issues, start_pending=pending, seen_ids=ids, need_user_first=False)
    if _canon(obj["chosen"]) == _canon(obj["rejected"]):
        issues.append(("chosen_equals_rejected", "chosen and rejected are identical: the pair teaches nothing", "$.rejected"))
    return issues


def check_labelled(obj: dict) -> list[Issue]:
    issues: list[Issue] = []
    tools, prompt, pending = _check_prompt(obj, issues)
    completion = obj["completion"]
    _check_dialogue(completion, "$.completion", tools, issues, start_pending=pending, seen_ids=_ids_in(prompt),
                    need_user_first=False)
    steps = sum(1 for m in completion if m["role"] == "assistant")
    if not steps:
        issues.append(("no_assistant", "the completion has no assistant turn: nothing is judged", "$.completion"))
    elif "labels" in obj and len(obj["labels"]) != steps:
        issues.append(("step_labels", f"{len(obj['labels'])} labels for {steps} assistant step(s) of the completion",
                       "$.labels"))
    return issues


def check_group(obj: dict) -> list[Issue]:
    issues: list[Issue] = []
    tools, prompt, pending = _check_prompt(obj, issues)
    ids = _ids_in(prompt)
    for i, r in enumerate(obj["responses"]):
        _check_dialogue(r["messages"], f"$.responses[{i}].messages", tools, issues, start_pending=pending,
                        seen_ids=ids, need_user_first=False)
    rewards = {r["reward"] for r in obj["responses"]}
    if len(rewards) == 1:
        issues.append(("flat_rewards", f"every response has reward {rewards.pop()}: no learning signal", "$.responses"))
    return issues


def check_triplet(obj: dict) -> list[Issue]:
    issues: list[Issue] = []
    if _is_blank(obj["anchor"]):
        issues.append(("empty_prompt", "the anchor is only whitespace", "$.anchor"))
    if obj["positive"].strip() == obj["negative"].strip():
        issues.append(("positive_equals_negative", "positive and negative are the same text", "$.negative"))
    return issues


def check_task(obj: dict) -> list[Issue]:
    issues: list[Issue] = []
    tools, prompt, _ = _check_prompt(obj, issues)
    exp = obj["expected"]
    if "answer" in exp:
        if exp.get("match") == "regex":
            err = regex_error(exp["answer"])
            if err:
                issues.append(("bad_regex", f"expected.answer is not a valid regex: {err}", "$.expected.answer"))
        return issues
    for i, call in enumerate(exp["calls"]):
        where = f"$.expected.calls[{i}]"
        name = call["name"]
        if name not in tools:
            known = ", ".join(sorted(tools)) or "none declared"
            issues.append(("unknown_tool", f"expects '{name}', which is not in the record's tools ({known})", where + ".name"))
            continue
        params = tools[name].schema if tools[name] is not None else None
        if not isinstance(params, dict):
            continue
        props = params.get("properties") if isinstance(params.get("properties"), dict) else {}
        required = params.get("required") if isinstance(params.get("required"), list) else []
        args = call["arguments"]
        for arg, alts in args.items():
            awhere = f"{where}.arguments.{arg}"
            if props and arg not in props:
                issues.append(("arguments_schema", f"'{name}' has no parameter '{arg}' (known: {', '.join(props)})", awhere))
                continue
            if arg in required and None in alts:
                issues.append(("arguments_schema", f"'{name}' requires '{arg}' but null marks it optional", awhere))
            sub = props.get(arg)
            if isinstance(sub, dict):
                v = arg_validator(sub)
                for k, alt in enumerate(alts):
                    if alt is None:
                        continue
                    for msg in v.errors(alt):
                        issues.append(("arguments_schema", f"'{name}' acceptable value {k} for '{arg}': {msg}",
                                       f"{awhere}[{k}]"))
        for req in required:
            if req not in args:
                issues.append(("arguments_schema", f"'{name}' requires '{req}' but expected.arguments omits it",
                               where + ".arguments"))
    return issues


CHECKS: dict[str, Callable[[dict], list[Issue]]] = {
    "sft": check_sft,
    "preference": check_preference,
    "group": check_group,
    "triplet": check_triplet,
    "task": check_task,
    "labelled": check_labelled,
}


def check_record(obj: dict, kind: str) -> list[Issue]:
    """All semantic issues of one schema-valid record of ``kind``."""
    return CHECKS[kind](obj)
