"""BFCL (Berkeley Function Calling Leaderboard) questions -> task records, for ``trajtune evaluate``.

Input: a BFCL category file (``BFCL_v4_<category>.json``, JSON lines: ``id``, ``question`` (turns
of messages), ``function`` (the tools)) with its possible_answer file (``ground_truth``: the
calls, each argument listing its acceptable values), found beside it
(``possible_answer/BFCL_v4_<category>.json`` next to the file, or under a sibling
``possible_answer`` folder), given with ``--answers FILE``, or else read from the ``bfcl-eval`` wheel when it is
already cached (:mod:`trajtune.bfcl`; a file's name never triggers a download). IN may also be ``bfcl:<category>`` or, with
``--from bfcl``, a bare category name (``trajtune convert --from bfcl --to task simple_python
-o tasks.jsonl``): the category is extracted from the cached wheel.

Mapping (one record a question, id ``bfcl-<category>-<n>``, ``metadata``: ``source: bfcl``,
``scoring: bfcl`` (the scorer's BFCL rules), ``bfcl_id``, ``bfcl_category`` and ``category``):

* prompt: the question's messages as they are (one turn; no system message is added);
* tools: the functions, names verbatim (dots included); BFCL parameter types as JSON Schema
  (dict -> object, float -> number, int -> integer, tuple/list -> array, bool -> boolean,
  any -> no type constraint; nested ``properties`` and ``items`` too); each description gets the
  hint BFCL adds for Python categories (" Note that the provided function is in Python 3 syntax.");
* expected: ``calls`` in the answer's order; ``order: any`` for ``parallel*`` categories, else
  ``strict``; ``""`` among an argument's acceptable values becomes ``null`` (optional) unless
  the tool requires the argument (then the other values are kept; ``""`` alone stays ``""``);
  an optional answer argument the tool does not declare is left out (BFCL fails a call that
  sends it); a dict argument's per-key alternatives (and those of each dict in a list of
  dicts) are expanded into the concrete values, keys marked ``""`` present or absent (one
  level, as BFCL checks them), at most 256 per argument;
* ``irrelevance`` and ``live_irrelevance``: ``expected: {"calls": []}`` (no call is right).

Rejected (one counted reject a row, with the reason): multi-turn categories (``multi_turn_*``,
``memory``, ``web_search``, ``format_sensitivity``: "multi-turn category not supported"), a
question of several turns, ``live_relevance`` (BFCL passes any call there: a task cannot say
"some call"), ``simple_java``/``simple_javascript`` (their arguments are Java/JavaScript source
text checked by BFCL's own type converters), answers that name a tool not offered, omit a
required argument, give one the tool does not declare, or expand to too many values.
"""
from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

import orjson

from trajtune.converters.common import (TOOL_NAME, Builder, Emitter, Reject, Source, _json_schema_types, extras,
                                        per_row, record)
from trajtune.jsonl import Row

NAME = "bfcl"
KINDS = ("task",)

MAX_VALUES = 256  # concrete acceptable values of one argument after expanding dict alternatives
PYTHON_HINT = " Note that the provided function is in Python 3 syntax."
MULTI_TURN = ("multi_turn", "memory", "web_search", "format_sensitivity")
_FILE = re.compile(r"^BFCL_v\d+_(\w+)\.jsonl?(?:\.gz)?$")


def detect(obj: Any) -> bool:
    return isinstance(obj, dict) and "question" in obj and "function" in obj


def resolve_input(inp: str) -> str:
    """IN as a file: ``bfcl:<category>`` or a category name that is not a file -> the category's
    file extracted from the cached wheel (its possible_answer file beside it)."""
    from trajtune import bfcl

    if inp.startswith("bfcl:"):
        return str(bfcl.category_path(inp[len("bfcl:"):]))
    if inp != "-" and not Path(inp).exists() and re.fullmatch(r"\w+", inp):
        return str(bfcl.category_path(inp))  # an unknown name: a usage error naming the categories
    return inp


def side_inputs(cfg: Any, inp: str) -> list[str]:
    """The possible_answer file a conversion of ``inp`` reads: ``--answers``, else the one beside IN."""
    answers = getattr(cfg, "answers", None) or _beside(inp if inp != "-" else "<stdin>")
    return [answers] if answers else []


def category_of(bfcl_id: Any, file_category: str | None) -> str | None:
    """The category of a row: its file's (``BFCL_v4_<category>.json``), else BFCL's rule on the
    id (everything before the last ``_``)."""
    if file_category:
        return file_category
    if isinstance(bfcl_id, str) and "_" in bfcl_id:
        return bfcl_id.split(":")[0].rsplit("_", 1)[0]
    return None


# --------------------------------------------------------------------------- answers

class Answers:
    """id -> ground truth, from ``--answers``, the file beside IN, or the cached wheel (read once, when needed)."""

    def __init__(self, source: Source, cfg: Any, emit: Emitter):
        self.emit = emit
        self.explicit = getattr(cfg, "answers", None)
        if self.explicit:
            from trajtune.paths import check_input

            check_input(self.explicit)  # missing or unreadable: a usage error before any row
        self.beside = _beside(source.name)
        self._file: dict[str, Any] | None = None
        self._wheel: dict[str, dict[str, Any]] = {}

    def _load_file(self, path: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        src = Source(path, self.emit)
        try:
            for raw in src.raw_rows():
                if isinstance(raw.obj.get("id"), str) and "ground_truth" in raw.obj:
                    out.setdefault(raw.obj["id"], raw.obj["ground_truth"])
                else:
                    self.emit.reject(Row(src.name, raw.lineno, raw.obj), "not a possible answer",
                                     "a possible answer has 'id' and 'ground_truth'")
        finally:
            src.close()
        return out

    def get(self, bfcl_id: str, category: str) -> Any:
        path = self.explicit or self.beside
        if path:
            if self._file is None:
                self._file = self._load_file(path)
            table = self._file
        else:
            from trajtune import bfcl

            if category not in bfcl.CATEGORIES or category in bfcl.NO_ANSWERS:
                raise Reject("no possible answer file", "none beside IN and not a BFCL category with answers: "
                                                        "pass --answers FILE")
            if bfcl.cached_wheel() is None:  # a file's name never makes convert download anything
                raise Reject("no possible answer file", "none beside IN, and the bfcl-eval wheel is not cached: pass "
                                                        f"--answers FILE, or convert the category by name ({category})")
            if category not in self._wheel:
                table = self._wheel[category] = {}
                for line in bfcl.category_files(category)[1]:
                    obj = orjson.loads(line)
                    table.setdefault(obj["id"], obj["ground_truth"])
            table = self._wheel[category]
        if bfcl_id not in table:
            raise Reject("no possible answer for this id", f"{bfcl_id} is not in {path or 'the bfcl-eval wheel'}")
        return table[bfcl_id]


def _beside(name: str) -> str | None:
    """The possible_answer file of ``name``: possible_answer/NAME next to it, or in a sibling folder."""
    if name == "<stdin>":
        return None
    p = Path(name)
    for cand in (p.parent / "possible_answer" / p.name, p.parent.parent / "possible_answer" / p.name):
        if cand.is_file() and cand.resolve() != p.resolve():
            return str(cand)
    return None


# --------------------------------------------------------------------------- values

def _btype(schema: Any) -> str | None:
    """A BFCL parameter type as 'dict', 'array' or the type name (None when not given)."""
    t = schema.get("type") if isinstance(schema, dict) else None
    if not isinstance(t, str):
        return None
    t = t.lower()
    return "dict" if t in ("dict", "object") else "array" if t in ("array", "list", "tuple") else t


def _is_blank(v: Any) -> bool:
    return isinstance(v, str) and v == ""


def _choices(alts: Any, required: bool) -> tuple[list, bool]:
    """(the values other than "", optional?) of one list of BFCL alternatives."""
    if not isinstance(alts, list):
        alts = [alts]  # a literal value where a list of alternatives belongs
    optional = any(_is_blank(v) for v in alts) and not required
    values = [v for v in alts if not _is_blank(v)]
    if not values and not optional:
        values = [""]  # a required argument whose one acceptable value is ""
    return values, optional


def _cap(n: int, where: str) -> None:
    if n > MAX_VALUES:
        raise Reject("too many acceptable values", f"{where}: {n} concrete values (at most {MAX_VALUES})")


def _expand_dict(d: dict, schema: Any, where: str) -> list[dict]:
    """A dict whose values list alternatives -> every concrete dict (a key marked "" present or absent)."""
    required = schema.get("required") if isinstance(schema, dict) and isinstance(schema.get("required"), list) else []
    options = []
    for key, alts in d.items():
        values, optional = _choices(alts, key in required)
        options.append([(key, v) for v in values] + ([None] if optional else []))
    n = 1
    for o in options:
        n *= len(o)
    _cap(n, where)
    return [{kv[0]: kv[1] for kv in combo if kv is not None} for combo in itertools.product(*options)]


def _expand_list(items: list, item_schema: Any, where: str) -> list[list]:
    """A list of dicts with per-key alternatives -> every concrete list."""
    options = [_expand_dict(x, item_schema, where) if isinstance(x, dict) else [x] for x in items]
    n = 1
    for o in options:
        n *= len(o)
    _cap(n, where)
    return [list(combo) for combo in itertools.product(*options)]


def acceptable(alts: Any, schema: Any, required: bool, where: str) -> list:
    """BFCL's acceptable values of one argument -> ours (null last when it may be left out)."""
    if not isinstance(alts, list):
        raise Reject("malformed possible answer", f"{where}: acceptable values are not a list")
    if not alts:
        raise Reject("answer argument has no acceptable value", f"{where}: []")
    values, optional = _choices(alts, required)
    t = _btype(schema)
    item_t = _btype(schema.get("items")) if isinstance(schema, dict) else None
    out: list = []
    seen: set[bytes] = set()
    for v in values:
        if t == "dict" and isinstance(v, dict):
            concrete = _expand_dict(v, schema, where)
        elif t == "array" and item_t == "dict" and isinstance(v, list):
            concrete = _expand_list(v, schema["items"], where)
        else:
            concrete = [v]
        for c in concrete:
            key = orjson.dumps(c, option=orjson.OPT_SORT_KEYS)
            if key not in seen:
                seen.add(key)
                out.append(c)
        _cap(len(out), where)
    if optional:
        out.append(None)
    return out


# --------------------------------------------------------------------------- one question

def _prompt(question: Any) -> list[dict]:
    if not isinstance(question, list) or not question:
        raise Reject("question not a list of turns")
    if all(isinstance(m, dict) for m in question):
        question = [question]  # one turn, not wrapped
    if len(question) > 1:
        raise Reject("multi-turn question not supported", f"{len(question)} turns")
    turn = question[0]
    if not isinstance(turn, list) or not turn:
        raise Reject("question not a list of turns")
    b = Builder()
    for m in turn:
        if not isinstance(m, dict):
            raise Reject("message not an object", type(m).__name__)
        role = m.get("role")
        if role == "system":
            b.system(m.get("content"))
        elif role == "user":
            b.user(m.get("content"))
        elif role == "assistant":
            b.assistant(m.get("content"))
        else:
            raise Reject("unsupported role", repr(role)[:100])
    return b.finish(need_assistant=False)


def _tool(fn: Any) -> dict:
    if not isinstance(fn, dict):
        raise Reject("function not an object", type(fn).__name__)
    name = fn.get("name")
    if not isinstance(name, str) or not TOOL_NAME.match(name):
        raise Reject("invalid tool name", repr(name)[:200])
    params = fn.get("parameters")
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise Reject("tool parameters not an object", name)
    schema = _json_schema_types(params)
    schema["type"] = "object"  # BFCL writes "dict"; every tool takes an object
    desc = fn.get("description") if isinstance(fn.get("description"), str) else ""
    return {"type": "function", "function": {"name": name, "description": desc + PYTHON_HINT, "parameters": schema}}


def _calls(ground_truth: Any, functions: dict[str, dict]) -> list[dict]:
    if not isinstance(ground_truth, list) or not ground_truth:
        raise Reject("malformed possible answer", "ground_truth is not a non-empty list of calls")
    calls = []
    for i, call in enumerate(ground_truth):
        if not isinstance(call, dict) or len(call) != 1:
            raise Reject("malformed possible answer", f"call {i} is not {{name: arguments}}")
        (name, args), = call.items()
        if name not in functions:
            raise Reject("answer calls a tool not offered", f"{name} (tools: {', '.join(functions)})"[:300])
        if not isinstance(args, dict):
            raise Reject("malformed possible answer", f"{name}: arguments are not an object")
        params = functions[name].get("parameters") if isinstance(functions[name].get("parameters"), dict) else {}
        props = params.get("properties") if isinstance(params.get("properties"), dict) else {}
        required = params.get("required") if isinstance(params.get("required"), list) else []
        out: dict[str, list] = {}
        for arg, alts in args.items():
            where = f"{name}.{arg}"
            if arg not in props:
                if isinstance(alts, list) and any(_is_blank(v) for v in alts):
                    continue  # optional and undeclared: BFCL fails a call that sends it
                raise Reject("answer argument not in the tool schema", where)
            out[arg] = acceptable(alts, props[arg], arg in required, where)
        missing = [r for r in required if r not in out]
        if missing:
            raise Reject("answer omits a required argument", f"{name}: {', '.join(map(str, missing))}")
        calls.append({"name": name, "arguments": out})
    return calls


def convert_obj(obj: dict, file_category: str | None, answers: Answers) -> dict:
    bfcl_id = obj.get("id")
    cat = category_of(bfcl_id, file_category)
    if cat is not None and cat.startswith(MULTI_TURN):
        raise Reject("multi-turn category not supported", cat)
    if cat is not None and "java" in cat:  # simple_java, simple_javascript
        raise Reject("language-specific category not supported",
                     f"{cat}: arguments are source text checked by BFCL's own type converters")
    if cat is not None and "relevance" in cat and "irrelevance" not in cat:
        raise Reject("relevance category not supported", f"{cat}: BFCL passes any call; a task cannot say 'some call'")
    if not isinstance(bfcl_id, str) or not bfcl_id.strip():
        raise Reject("missing id")
    if cat is None:
        raise Reject("unknown category", f"{bfcl_id}: neither the file name (BFCL_v4_<category>.json) nor the id says")
    prompt = _prompt(obj.get("question"))
    functions = obj.get("function")
    if not isinstance(functions, list):
        raise Reject("function not a list", type(functions).__name__)
    tools = [_tool(fn) for fn in functions]
    by_name = {fn["name"]: fn for fn in functions}
    if len(by_name) != len(functions):
        raise Reject("duplicate tool name")
    if "irrelevance" in cat:
        expected: dict = {"calls": []}
    else:
        expected = {"calls": _calls(answers.get(bfcl_id, cat), by_name),
                    "order": "any" if "parallel" in cat else "strict"}
    n = bfcl_id[len(cat) + 1:] if bfcl_id.startswith(cat + "_") else bfcl_id
    # category: evaluate's report breaks pass rates down by it (and averages over categories, as BFCL does)
    meta = {"source": NAME, "scoring": "bfcl", "bfcl_id": bfcl_id, "bfcl_category": cat, "category": cat}
    return record(f"bfcl-{cat}-{n}", NAME, {"prompt": prompt, "expected": expected}, meta, tools,
                  extra=extras(obj, ("id", "question", "function")))


def convert(source, kind, cfg, emit):
    m = _FILE.match(Path(source.name).name)
    file_category = m.group(1) if m else None
    answers = Answers(source, cfg, emit)
    yield from per_row(source, emit, lambda obj: convert_obj(obj, file_category, answers))
