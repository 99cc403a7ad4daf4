"""THE verifier: score one model reply against a task's ``expected``.

``score(task, text, truncated=False)`` parses the reply with the shared parser
(:func:`trajtune.chat.parse_tool_calls`) and returns a :class:`Score`. ``evaluate`` uses it for
its metrics and the generation backends use ``Score.reward`` as an RL reward, so one definition
of "correct" holds everywhere.

Rules (documented in the README):

* **Calls** (``expected.calls``): each expected call must be matched by one call of the model:
  same tool name, every argument equal to one of its acceptable values, no argument the task
  does not list. An argument whose acceptable values include ``null`` is optional: it may be
  omitted (or sent as ``null``). ``order: strict`` pairs calls by position; ``order: any``
  finds the best pairing (``scipy.optimize.linear_sum_assignment``).
* **Type-aware values**: JSON types must agree: ``"5"`` is not ``5`` and ``true`` is not ``1``
  (``5`` and ``5.0`` are the same number). When the tool's JSON schema declares the argument a
  ``string``, the model must send a string and a non-string acceptable value is compared by its
  JSON text (acceptable ``5`` matches ``"5"``). Objects compare key by key and arrays item by item
  with the same rules (using the nested schema when the tool gives one).
* **No call** (``expected.calls == []``): passes only when the model makes no call at all and
  ends its turn (a reply cut at the token limit fails as ``truncated``).
* **Answers** (``expected.answer``): ``exact`` (equal after trimming surrounding whitespace),
  ``contains`` (case- and whitespace-insensitive substring) or ``regex`` (``re.search``, DOTALL, at most 0.5 s);
  a reply that calls a tool fails with ``unexpected_call``.

Failure reasons, the first that applies: ``truncated`` (a ``<tool_call>`` left open, or the
generation hit the token limit before producing what was expected), ``unparsable_json`` (a
call block that is not JSON or not ``{"name": ..., "arguments": ...}``), then per expected call
in order ``no_call`` (an expected call was not made), ``hallucinated_tool`` (the name is not
among the task's tools), ``wrong_tool``, ``missing_argument``, ``extra_argument``,
``wrong_argument``; then ``extra_calls``; ``unexpected_call`` for no-call and answer tasks;
``wrong_answer``.

Reward: 1.0 for a pass; otherwise partial credit in [0, 0.9]:
``0.1 * valid_json + 0.3 * name_fraction + 0.5 * argument_accuracy``, zero when a tool was
hallucinated, and 0.0 for failed no-call and answer tasks.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from trajtune.chat import parse_tool_calls

REASONS = (
    "no_call", "wrong_tool", "hallucinated_tool", "missing_argument", "extra_argument", "wrong_argument",
    "unparsable_json", "truncated", "extra_calls", "unexpected_call", "wrong_answer",
)


@dataclass
class Score:
    passed: bool
    reason: str | None = None  # None when passed; else one of REASONS
    detail: str = ""  # a sentence a person reads, e.g. "argument 'limit': got '5', expected one of [5]"
    kind: str = "calls"  # "calls" | "no_call" | "answer"
    calls: list[dict] = field(default_factory=list)  # parsed [{"name", "arguments"}]
    content: str = ""  # reply text before the first call
    valid_json: bool = True
    tool_name_correct: bool | None = None  # None for answer tasks
    argument_accuracy: float | None = None  # None for answer and no-call tasks
    hallucinated: bool = False  # a call names a tool the task does not offer
    reward: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------------------------------------
# values


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _schema_type(schema: dict | None) -> str | None:
    if not isinstance(schema, dict):
        return None
    t = schema.get("type")
    if isinstance(t, list):
        t = [x for x in t if x != "null"]
        return t[0] if len(t) == 1 else None
    return t if isinstance(t, str) else None


def values_equal(got: Any, want: Any, schema: dict | None = None) -> bool:
    """Type-aware equality of one argument value against one acceptable value."""
    stype = _schema_type(schema)
    if stype == "string" and got is not None and not isinstance(got, str):
        return False  # the tool takes a string
    if stype == "string" and isinstance(got, str) and not isinstance(want, str) and want is not None:
        return got == json.dumps(want, ensure_ascii=False) if not _is_num(want) else _num_text_equal(got, want)
    if got is None or want is None:
        return got is None and want is None
    if isinstance(want, bool) or isinstance(got, bool):
        return isinstance(want, bool) and isinstance(got, bool) and got == want
    if _is_num(want) or _is_num(got):
        return _is_num(want) and _is_num(got) and math.isclose(float(got), float(want), rel_tol=0, abs_tol=1e-9)
    if isinstance(want, str) or isinstance(got, str):
        return isinstance(want, str) and isinstance(got, str) and got == want
    if isinstance(want, dict):
        if not isinstance(got, dict) or set(got) != set(want):
            return False
        props = (schema or {}).get("properties") or {}
        return all(values_equal(got[k], want[k], props.get(k)) for k in want)
    if isinstance(want, list):
        if not isinstance(got, list) or len(got) != len(want):
            return False
        items = (schema or {}).get("items")
        return all(values_equal(g, w, items if isinstance(items, dict) else None) for g, w in zip(got, want))
    return got == want


def _num_text_equal(text: str, num: float) -> bool:
    try:
        return math.isclose(float(text), float(num), rel_tol=0, abs_tol=1e-9) and text.strip() == text
    except ValueError:
        return False


# ---------------------------------------------------------------------------------------------
# one call against one expected call


@dataclass
class _CallMatch:
    ok: bool
    reason: str | None
    detail: str
    name_ok: bool
    args_right: int  # expected arguments matched (an omitted optional one counts as matched)
    args_total: int  # expected arguments + extra arguments sent


def _tool_schemas(task: dict) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for t in task.get("tools") or []:
        fn = t.get("function", t) if isinstance(t, dict) else None
        if isinstance(fn, dict) and isinstance(fn.get("name"), str):
            params = fn.get("parameters") if isinstance(fn.get("parameters"), dict) else {}
            out[fn["name"]] = params
    return out


def _short(v: Any) -> str:
    s = json.dumps(v, ensure_ascii=False)
    return s if len(s) <= 60 else s[:57] + "..."


def match_call(got: dict, want: dict, tools: dict[str, dict]) -> _CallMatch:
    want_args: dict = want.get("arguments") or {}
    n_want = len(want_args)
    name = got.get("name")
    if name != want.get("name"):
        reason = "hallucinated_tool" if name not in tools else "wrong_tool"
        return _CallMatch(False, reason, f"called {name!r}, expected {want.get('name')!r}", False, 0, n_want)
    args = got.get("arguments")
    if args is None:
        args = {}
    if not isinstance(args, dict):
        return _CallMatch(False, "wrong_argument", f"{name}: arguments are {type(args).__name__}, not an object",
                          True, 0, n_want)
    props = (tools.get(name) or {}).get("properties") or {}
    right = 0
    first: tuple[str, str] | None = None
    for arg, acceptable in want_args.items():
        acceptable = acceptable if isinstance(acceptable, list) else [acceptable]
        optional = any(a is None for a in acceptable)
        if arg not in args:
            if optional:
                right += 1
            elif first is None:
                first = ("missing_argument", f"{name}: argument {arg!r} missing")
            continue
        if any(values_equal(args[arg], a, props.get(arg)) for a in acceptable):
            right += 1
        elif first is None:
            first = ("wrong_argument", f"{name}: argument {arg!r} got {_short(args[arg])}, expected one of "
                     f"{_short(acceptable)}")
    extra = [a for a in args if a not in want_args]
    if extra and first is None:
        first = ("extra_argument", f"{name}: unexpected argument {extra[0]!r}")
    total = n_want + len(extra)
    if first is None:
        return _CallMatch(True, None, "", True, right, total)
    return _CallMatch(False, first[0], first[1], True, right, total)


def _pair(got: list[dict], want: list[dict], tools: dict[str, dict], order: str) -> list[tuple[int, int, _CallMatch]]:
    """Pairs (expected index, got index, match). strict: by position; any: best assignment."""
    if order != "any" or len(want) <= 1 and len(got) <= 1:
        return [(i, i, match_call(got[i], want[i], tools)) for i in range(min(len(got), len(want)))]
    import numpy as np
    from scipy.optimize import linear_sum_assignment

    table = [[match_call(g, w, tools) for g in got] for w in want]
    gain = np.array([[(10.0 if m.ok else 0.0) + (2.0 if m.name_ok else 0.0) + m.args_right / max(m.args_total, 1)
                      for m in row] for row in table])
    rows, cols = linear_sum_assignment(gain, maximize=True)
    return sorted((int(r), int(c), table[r][c]) for r, c in zip(rows, cols))


# ---------------------------------------------------------------------------------------------
# the scorer


def task_kind(task: dict) -> str:
    exp = task.get("expected") or {}
    if "answer" in exp:
        return "answer"
    return "calls" if exp.get("calls") else "no_call"


def score(task: dict, text: str, truncated: bool = False) -> Score:
    """Score one reply ``text`` to ``task``. ``truncated``: generation stopped at the token limit."""
    parsed = parse_tool_calls(text or "")
    exp = task.get("expected") or {}
    tools = _tool_schemas(task)
    kind = task_kind(task)
    calls = parsed.calls
    hallucinated = any(c.get("name") not in tools for c in calls)
    s = Score(passed=False, kind=kind, calls=calls, content=parsed.content, valid_json=parsed.valid_json,
              hallucinated=hallucinated)

    def fail(reason: str, detail: str) -> Score:
        s.reason, s.detail = reason, detail
        return s

    # 1) answer tasks and no-call tasks: any call (even a malformed one) is the wrong move
    if kind in ("answer", "no_call"):
        s.tool_name_correct = None if kind == "answer" else (not calls and not parsed.errors)
        if calls or parsed.errors:
            what = calls[0]["name"] if calls else "a malformed call"
            return fail("unexpected_call", f"expected no tool call, got {what!r}" if calls else f"expected no tool call, got {what}")
        if kind == "no_call":
            if truncated:  # the turn never ended: a call could still have come
                return fail("truncated", "generation hit the token limit without ending the turn")
            s.passed, s.reward = True, 1.0
            return s
        answer, rule = str(exp.get("answer", "")), exp.get("match", "exact")
        reply = parsed.content
        if rule == "contains":
            ok = _norm(answer) in _norm(reply)
        elif rule == "regex":
            from trajtune.jsonschemas import RegexTimeout, regex_error, regex_search

            try:  # the task's regex is data: bounded in time, and an invalid one never matches
                ok = regex_error(answer) is None and regex_search(answer, reply)
            except RegexTimeout:
                ok = False
        else:
            ok = reply.strip() == answer.strip()
        if ok:
            s.passed, s.reward = True, 1.0
            return s
        if truncated:
            return fail("truncated", "generation hit the token limit before the answer was complete")
        return fail("wrong_answer", f"answer does not {'match' if rule != 'contains' else 'contain'} {_short(answer)}")

    # 2) call tasks: format problems first
    want = exp.get("calls") or []
    order = exp.get("order", "strict")
    pairs = _pair(calls, want, tools, order)
    matched = {i: m for i, _, m in pairs}
    name_right = sum(1 for m in matched.values() if m.name_ok)
    args_right = sum(m.args_right for m in matched.values())
    args_total = 0
    for i, w in enumerate(want):
        m = matched.get(i)
        args_total += m.args_total if m else len(w.get("arguments") or {})
    s.tool_name_correct = name_right == len(want) and len(calls) == len(want)
    s.argument_accuracy = args_right / args_total if args_total else (1.0 if s.tool_name_correct else 0.0)
    name_fraction = name_right / max(len(want), len(calls), 1)
    partial = 0.0 if hallucinated else 0.1 * s.valid_json + 0.3 * name_fraction + 0.5 * s.argument_accuracy
    s.reward = round(min(partial, 0.9), 6)

    if "truncated" in parsed.errors:
        return fail("truncated", "a <tool_call> block was cut off by the token limit")
    if parsed.errors:
        return fail("unparsable_json", "a <tool_call> block is not valid JSON {\"name\": ..., \"arguments\": {...}}")
    # 3) per expected call, in order
    for i, w in enumerate(want):
        m = matched.get(i)
        if m is None:
            if truncated:
                return fail("truncated", "generation hit the token limit before every expected call was made")
            return fail("no_call", f"expected call {i + 1} ({w.get('name')}) was not made" if calls
                        else f"no tool call; expected {w.get('name')}")
        if not m.ok:
            return fail(m.reason, m.detail)
    if len(calls) > len(want):
        extra = [c["name"] for j, c in enumerate(calls) if j not in {g for _, g, _ in pairs}]
        return fail("extra_calls", f"{len(calls)} calls, expected {len(want)} (extra: {', '.join(map(str, extra))})")
    s.passed, s.reward, s.tool_name_correct, s.argument_accuracy = True, 1.0, True, 1.0
    return s


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().casefold()
