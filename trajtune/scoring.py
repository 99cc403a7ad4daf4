r"""THE verifier: score one model reply against a task's ``expected``.

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
in order ``no_call`` (no call at all where one was expected), ``missing_call`` (some calls made,
but not every expected one), ``hallucinated_tool`` (the name is not
among the task's tools), ``wrong_tool``, ``missing_argument``, ``extra_argument``,
``wrong_argument``; then ``extra_calls``; ``unexpected_call`` for no-call and answer tasks;
``wrong_answer``.

Reward: 1.0 for a pass; otherwise partial credit in [0, 0.9]:
``0.1 * valid_json + 0.3 * name_fraction + 0.5 * argument_accuracy``, zero when a tool was
hallucinated, and 0.0 for failed no-call and answer tasks.

**BFCL mode** (``match="bfcl"``, or ``match="auto"`` and the task's ``metadata.scoring == "bfcl"``):
the Berkeley Function Calling Leaderboard's AST checker (``bfcl-eval`` 2026.3.23,
``bfcl_eval/eval_checker/ast_eval/ast_checker.py``, language Python), ported rule for rule and
checked against the real one on every task of simple_python, multiple, parallel, parallel_multiple
and irrelevance (``tests/bfcl/test_parity.py``). An acceptable value ``null`` plays BFCL's ``""``
(the converter maps ``""`` to ``null`` for arguments the tool does not require): the argument may be omitted, and ``""`` itself is then an
acceptable string (``[]`` an acceptable list), as in BFCL. Rules:

* exactly as many calls as expected (``len(calls) != len(expected)`` fails first); ``order: any``
  pairs them as BFCL's ``parallel_function_checker_no_order`` does: greedily, each expected call
  in turn taking the first not yet taken call that passes; ``strict``: by position;
* per call: exact name; every ``required`` parameter of the tool's schema present; no parameter
  outside the schema's properties or outside the expected arguments; then each sent value: type
  first (JSON Schema types read as BFCL's: ``number`` = float, ``object`` = dict, no type = "any",
  which BFCL checks as a string), an int is accepted for a float (and compared as a float) but not
  a float for an int, ``true`` is not an int; when the acceptable values are of another type than
  the schema says (BFCL's "variable" case) a value of their type is compared as is; strings compare
  after BFCL's ``standardize_string`` (``re.sub(r"[ \,\.\/\-\_\*\^]", "", s).lower()``, ``'``
  read as ``"``); lists item by item in order, top-level string items standardised; arrays check
  their items' type one level deep (an int item is not a float there); objects key by key
  (every sent key expected, every expected key sent unless ``null``/``""`` is among its values,
  string values standardised, other values compared with Python ``==``, so ``1 == 1.0 == true``);
  lists of objects likewise, object by object; anything else by Python ``==`` membership; finally
  an expected argument that was not sent fails unless ``null`` is among its values;
* decoding follows BFCL's ``<tool_call>`` decoder (its Qwen FC handler) on top of the shared
  parser: a block that is not JSON is skipped, a block left open is not a call, and a call that
  is not ``{"name": str, "arguments": {...}}`` makes the whole reply undecodable (a failure for
  call tasks); the ``truncated`` flag changes no verdict, only the reason given for a failure;
* no call expected (irrelevance): passes when no valid call is decoded;
* reasons and partial credit as above, with each argument judged by the BFCL rules; answer tasks
  (``expected.answer``) have no BFCL counterpart and keep the rules above.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from trajtune.chat import parse_tool_calls

REASONS = (
    "no_call", "missing_call", "wrong_tool", "hallucinated_tool", "missing_argument", "extra_argument", "wrong_argument",
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
    match: str = "trajtune"  # the rules applied: "trajtune" | "bfcl"

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


def _gain(m: _CallMatch) -> float:
    return (10.0 if m.ok else 0.0) + (2.0 if m.name_ok else 0.0) + m.args_right / max(m.args_total, 1)


def _pair(got: list[dict], want: list[dict], tools: dict[str, dict], order: str,
          matcher=None, table: list[list[_CallMatch]] | None = None) -> list[tuple[int, int, _CallMatch]]:
    """Pairs (expected index, got index, match). strict: by position; any: best assignment."""
    matcher = matcher or match_call
    if order != "any" or len(want) <= 1 and len(got) <= 1:
        return [(i, i, table[i][i] if table else matcher(got[i], want[i], tools))
                for i in range(min(len(got), len(want)))]
    import numpy as np
    from scipy.optimize import linear_sum_assignment

    table = table or [[matcher(g, w, tools) for g in got] for w in want]
    gain = np.array([[_gain(m) for m in row] for row in table])
    rows, cols = linear_sum_assignment(gain, maximize=True)
    return sorted((int(r), int(c), table[r][c]) for r, c in zip(rows, cols))


# ---------------------------------------------------------------------------------------------
# the scorer


def task_kind(task: dict) -> str:
    exp = task.get("expected") or {}
    if "answer" in exp:
        return "answer"
    return "calls" if exp.get("calls") else "no_call"


MATCH_MODES = ("auto", "bfcl", "trajtune")


def scoring_mode(task: dict, match: str = "auto") -> str:
    """The rules for ``task``: ``match`` itself, or with ``auto`` the task's ``metadata.scoring``."""
    if match not in MATCH_MODES:
        raise ValueError(f"match must be one of {', '.join(MATCH_MODES)}, not {match!r}")
    if match == "auto":
        meta = task.get("metadata") if isinstance(task.get("metadata"), dict) else {}
        return "bfcl" if meta.get("scoring") == "bfcl" else "trajtune"
    return match


def score(task: dict, text: str, truncated: bool = False, match: str = "auto") -> Score:
    """Score one reply ``text`` to ``task``. ``truncated``: generation stopped at the token limit.
    ``match``: "trajtune", "bfcl" (BFCL's AST checker) or "auto" (the task's ``metadata.scoring``)."""
    if scoring_mode(task, match) == "bfcl" and task_kind(task) != "answer":
        return _score_bfcl(task, text or "", truncated)
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
            if calls:
                return fail("missing_call", f"expected call {i + 1} ({w.get('name')}) was not made")
            return fail("no_call", f"no tool call; expected {w.get('name')}")
        if not m.ok:
            return fail(m.reason, m.detail)
    if len(calls) > len(want):
        extra = [c["name"] for j, c in enumerate(calls) if j not in {g for _, g, _ in pairs}]
        return fail("extra_calls", f"{len(calls)} calls, expected {len(want)} (extra: {', '.join(map(str, extra))})")
    s.passed, s.reward, s.tool_name_correct, s.argument_accuracy = True, 1.0, True, 1.0
    return s


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().casefold()


# ---------------------------------------------------------------------------------------------
# BFCL mode: a port of bfcl_eval/eval_checker/ast_eval/ast_checker.py (bfcl-eval 2026.3.23), Python
# language. Each helper names the function it ports; BFCL's quirks are kept on purpose (they are
# what the leaderboard counts), and tests/bfcl/test_parity.py compares the two on BFCL's own data.

_BFCL_TYPES: dict[str, type] = {"string": str, "integer": int, "float": float, "boolean": bool, "array": list,
                                "tuple": list, "dict": dict, "any": str}  # PYTHON_TYPE_MAPPING
_JSON_TO_BFCL = {"number": "float", "object": "dict"}
_BFCL_PUNCT = re.compile(r"[ \,\.\/\-\_\*\^]")


def bfcl_standardize(text: str) -> str:
    """BFCL's ``standardize_string``: drop spaces and ``,./-_*^``, lower-case, ``'`` -> ``"``."""
    return _BFCL_PUNCT.sub("", text).lower().replace("'", '"')


def _bfcl_type(schema: dict | None) -> str:
    """The BFCL type name of a parameter schema (JSON Schema or BFCL's own names; none = "any")."""
    t = _schema_type(schema)
    t = _JSON_TO_BFCL.get(t, t)
    return t if t in _BFCL_TYPES else "any"


def _bfcl_values(acceptable: Any, schema: dict | None) -> list:
    """Our acceptable values in BFCL's form: ``null`` -> ``""``; a literal object -> {key: [value]}."""
    values = acceptable if isinstance(acceptable, list) else [acceptable]
    values = ["" if v is None else v for v in values]
    btype = _bfcl_type(schema)
    items = (schema or {}).get("items") if btype in ("array", "tuple") else None
    if btype == "dict":
        return [_bfcl_dict_form(v) for v in values]
    if isinstance(items, dict) and _bfcl_type(items) == "dict":
        return [[_bfcl_dict_form(d) for d in v] if isinstance(v, list) else v for v in values]
    return values


def _bfcl_dict_form(v: Any) -> Any:
    """A literal acceptable object ({key: value}) as BFCL writes one ({key: [acceptable values]});
    a ``null`` value reads as ``""`` (the key may be left out)."""
    if not isinstance(v, dict):
        return v
    return {k: ["" if x is None else x] for k, x in v.items()}


def _bfcl_answer_type(acceptable: list) -> type | None:  # get_possible_answer_type
    for a in acceptable:
        if a != "":
            return type(a)
    return None


def _bfcl_type_ok(value: Any, acceptable: list, expected: type, nested: type | None) -> tuple[bool, bool]:
    """``type_checker``: (valid, is_variable)."""
    answer_type = _bfcl_answer_type(acceptable)
    is_variable = answer_type is not None and answer_type != expected
    if type(value) == expected:
        if nested is None:
            return True, is_variable
        for item in acceptable:
            if type(item) != list or all(_bfcl_type_ok(v, item, nested, None)[0] for v in value):
                return True, is_variable
        return False, is_variable
    if answer_type is not None and type(value) == answer_type:
        return True, True
    return False, False


def _bfcl_std(v: Any) -> Any:
    return bfcl_standardize(v) if type(v) == str else v


def _bfcl_in(value: Any, candidates: list) -> bool:
    """Python's ``in`` (``==``: 1 == 1.0 == True), as BFCL compares; never raises."""
    try:
        return value in candidates
    except Exception:  # pragma: no cover - == between JSON values does not raise
        return False


def _bfcl_string_ok(value: str, acceptable: list) -> bool:  # string_checker
    return bfcl_standardize(value) in [bfcl_standardize(a) for a in acceptable if type(a) == str]


def _bfcl_list_ok(value: list, acceptable: list) -> bool:  # list_checker
    got = [_bfcl_std(v) for v in value]
    for cand in acceptable:
        if isinstance(cand, (list, str)):  # BFCL iterates it: "" reads as [], other strings as characters
            if _bfcl_in(got, [[_bfcl_std(x) for x in cand]]):
                return True
    return False


def _bfcl_dict_ok(value: Any, acceptable: list) -> bool:  # dict_checker
    if not isinstance(value, dict):
        return False
    for cand in acceptable:
        if cand == "" or not isinstance(cand, dict):
            continue
        ok = True
        for k, v in value.items():
            vals = cand.get(k)
            if k not in cand or not isinstance(vals, list) or not _bfcl_in(_bfcl_std(v), [_bfcl_std(a) for a in vals]):
                ok = False
                break
        if ok and all(k in value or (isinstance(vals, list) and "" in vals) for k, vals in cand.items()):
            return True
    return False


def _bfcl_list_dict_ok(value: list, acceptable: list) -> bool:  # list_dict_checker
    for cand in acceptable:
        if not isinstance(cand, (list, str)) or len(value) != len(cand):
            continue
        if all(_bfcl_dict_ok(value[i], [cand[i]]) for i in range(len(value))):
            return True
    return False


def _bfcl_value_ok(value: Any, acceptable: list, schema: dict | None) -> tuple[bool, str]:
    """One sent argument against its acceptable values (BFCL form), as ``simple_function_checker``
    judges it: (ok, "" or "type"/"value")."""
    btype = _bfcl_type(schema)
    expected = _BFCL_TYPES[btype]
    nested = None
    if btype in ("array", "tuple"):
        items = (schema or {}).get("items")
        nested = _BFCL_TYPES[_bfcl_type(items)] if isinstance(items, dict) else None
    if btype == "float" and type(value) == int:  # Python's int -> float promotion
        value = float(value)
    valid, is_variable = _bfcl_type_ok(value, acceptable, expected, nested)
    if not valid:
        return False, "type"
    if not is_variable:
        if expected is dict:
            return _bfcl_dict_ok(value, acceptable), "value"
        if expected is list and nested is dict:
            return _bfcl_list_dict_ok(value, acceptable), "value"
        if expected is str:
            return _bfcl_string_ok(value, acceptable), "value"
        if expected is list:
            return _bfcl_list_ok(value, acceptable), "value"
    return _bfcl_in(value, acceptable), "value"


def bfcl_match_call(got: dict, want: dict, tools: dict[str, dict]) -> _CallMatch:
    """One call against one expected call by BFCL's ``simple_function_checker``; the first error
    is the reason, and every argument is judged for the partial credit."""
    want_args: dict = want.get("arguments") or {}
    name = got.get("name")
    if name != want.get("name"):
        reason = "hallucinated_tool" if name not in tools else "wrong_tool"
        return _CallMatch(False, reason, f"called {name!r}, expected {want.get('name')!r}", False, 0, len(want_args))
    args = got.get("arguments") if isinstance(got.get("arguments"), dict) else {}
    params = tools.get(name) or {}
    props = params.get("properties") if isinstance(params.get("properties"), dict) else None
    required = [r for r in params.get("required") or [] if isinstance(r, str)]
    first: tuple[str, str] | None = None

    def note(reason: str, detail: str) -> None:
        nonlocal first
        first = first or (reason, f"{name}: {detail}")

    for r in required:
        if r not in args:
            note("missing_argument", f"required argument {r!r} missing")
    right, extra = 0, 0
    for arg, value in args.items():
        if (props is not None and arg not in props) or arg not in want_args:
            extra += 1
            note("extra_argument", f"unexpected argument {arg!r}")
            continue
        schema = props.get(arg) if props else None
        acceptable = _bfcl_values(want_args[arg], schema)
        ok, what = _bfcl_value_ok(value, acceptable, schema)
        if ok:
            right += 1
        else:
            note("wrong_argument", f"argument {arg!r} got {_short(value)}, " + (
                f"not of type {_bfcl_type(schema)}" if what == "type" else f"expected one of {_short(acceptable)}"))
    for arg, acceptable in want_args.items():
        if arg in args:
            continue
        if "" in _bfcl_values(acceptable, props.get(arg) if props else None) and arg not in required:
            right += 1
        else:
            note("missing_argument", f"argument {arg!r} missing")
    missing_required = [r for r in required if r not in args and r not in want_args]
    total = len(want_args) + len(missing_required) + extra
    if first is None:
        return _CallMatch(True, None, "", True, right, total)
    return _CallMatch(False, first[0], first[1], True, right, total)


def _bfcl_decode(text: str):
    """The calls BFCL's ``<tool_call>`` decoder would see: (parsed reply, calls, decodable, left open)."""
    from trajtune.chat import TOOL_CALL_CLOSE, TOOL_CALL_OPEN

    full = parse_tool_calls(text)
    end = text.rfind(TOOL_CALL_CLOSE)
    closed = text[: end + len(TOOL_CALL_CLOSE)] if end >= 0 else ""
    left_open = TOOL_CALL_OPEN in text[len(closed):]
    parsed = parse_tool_calls(closed) if left_open else full
    decodable = "bad_call" not in parsed.errors and all(isinstance(c.get("arguments"), dict) for c in parsed.calls)
    return full, (parsed.calls if decodable else []), decodable, left_open


def _score_bfcl(task: dict, text: str, truncated: bool) -> Score:
    full, calls, decodable, left_open = _bfcl_decode(text)
    exp = task.get("expected") or {}
    tools = _tool_schemas(task)
    kind = task_kind(task)
    hallucinated = any(c.get("name") not in tools for c in full.calls)
    s = Score(passed=False, kind=kind, calls=full.calls, content=full.content, valid_json=full.valid_json,
              hallucinated=hallucinated, match="bfcl")

    def fail(reason: str, detail: str) -> Score:
        s.reason, s.detail = reason, detail
        return s

    if kind == "no_call":  # irrelevance: right when no valid call is decoded
        s.tool_name_correct = not calls
        if calls:
            return fail("unexpected_call", f"expected no tool call, got {calls[0]['name']!r}")
        s.passed, s.reward = True, 1.0
        return s

    want = exp.get("calls") or []
    order = exp.get("order", "strict")
    cut = truncated or left_open
    if not decodable:
        s.tool_name_correct, s.argument_accuracy = False, 0.0
        return fail("truncated" if cut else "unparsable_json",
                    "a <tool_call> block is not {\"name\": ..., \"arguments\": {...}}: BFCL cannot decode the reply")
    table = [[bfcl_match_call(g, w, tools) for g in calls] for w in want]
    pairs = _pair(calls, want, tools, order, table=table)
    matched = {i: m for i, _, m in pairs}
    name_right = sum(1 for m in matched.values() if m.name_ok)
    args_right = sum(m.args_right for m in matched.values())
    args_total = sum(matched[i].args_total if i in matched else len(w.get("arguments") or {}) for i, w in enumerate(want))
    s.tool_name_correct = name_right == len(want) and len(calls) == len(want)
    s.argument_accuracy = args_right / args_total if args_total else (1.0 if s.tool_name_correct else 0.0)
    name_fraction = name_right / max(len(want), len(calls), 1)
    partial = 0.0 if hallucinated else 0.1 * s.valid_json + 0.3 * name_fraction + 0.5 * s.argument_accuracy
    s.reward = round(min(partial, 0.9), 6)

    if len(calls) < len(want):
        if cut:
            return fail("truncated", "the reply was cut off before every expected call was made")
        if calls:
            return fail("missing_call", f"{len(calls)} call(s), expected {len(want)}")
        return fail("no_call", f"no tool call; expected {want[0].get('name')}")
    if len(calls) > len(want):
        return fail("extra_calls", f"{len(calls)} calls, expected {len(want)}")
    if order == "any" and len(want) > 1:  # parallel_function_checker_no_order: greedy, first fit
        taken: set[int] = set()
        for i, w in enumerate(want):
            j = next((j for j in range(len(calls)) if j not in taken and table[i][j].ok), None)
            if j is None:
                rest = [table[i][j] for j in range(len(calls)) if j not in taken]
                best = max(rest, key=_gain)
                return fail(best.reason or "wrong_argument", f"no call matches expected call {i + 1} "
                            f"({w.get('name')}): {best.detail or 'its match was taken by an earlier expected call'}")
            taken.add(j)
    else:
        for i in range(len(want)):
            if not table[i][i].ok:
                return fail(table[i][i].reason, table[i][i].detail)
    s.passed, s.reward, s.tool_name_correct, s.argument_accuracy = True, 1.0, True, 1.0
    return s
