"""Task templates: intents with many phrasings, slots filled from value pools, and the tool-call
sequence (1-5 steps) each intent maps to.

Template files are YAML (``data/templates/*.yaml``); a file may hold ``pools:``,
``templates:`` and ``nocall:``::

    pools:
      table: [orders, users]                     # scalar: the value is also what the user says
      env:  [{value: production, say: [production, prod], alt: []}]
      rename: [{old: get_user, new: fetch_user}] # record pool: slots `rename.old`, `rename.new`
    templates:
      - id: database_query
        category: data                           # coding | debugging | refactoring | devops | data
        split: eval                              # optional: the whole template is held out
        slots: {table: table, limit: limit}
        phrasings: ["Show {limit} rows from {table}.", ...]
        steps:
          - {thought: "I'll query {table}.", call: database_query, args: {table: "{table}", limit: "{limit}"}}
        answer: "Here are {limit} rows from {table}."
    nocall:                                       # requests whose right answer is a plain reply
      - {user: "Hi there!", reply: "Hello! What can I help you with?"}

Rules:

* An argument written exactly ``"{slot}"`` takes the slot's typed value (numbers stay numbers);
  any other string is filled as text. Every slot must appear in every phrasing, so each argument
  is recoverable from the user's words.
* **Held-out phrasings**: every 4th phrasing of a template (the 4th, 8th, ...) and every 4th
  ``nocall`` entry is reserved for evaluation; training never emits it. ``split: eval`` holds
  out a whole template (reported separately as ``held_out_template``).
* Difficulty: ``easy`` (1 step, at most 2 arguments), ``medium`` (2 steps, or 3+ arguments),
  ``hard`` (3+ steps).
"""
from __future__ import annotations

import random
import re
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from trajtune.config import read_text, safe_yaml
from trajtune.errors import ConfigError, DataError
from trajtune.generators.catalog import CATEGORIES, Catalog
from trajtune.records import normalize_text

HOLDOUT_EVERY = 4
_SLOT = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def default_templates_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "data" / "templates"


def is_heldout_phrasing(index: int) -> bool:
    return index % HOLDOUT_EVERY == HOLDOUT_EVERY - 1


@dataclass
class Step:
    call: str
    args: dict
    thought: str = ""


@dataclass
class Template:
    id: str
    category: str
    phrasings: list[str]
    steps: list[Step]
    slots: dict[str, str] = field(default_factory=dict)  # slot -> "pool" or "pool.field"
    answer: str = ""
    split: str = "train"  # "train" | "eval" (whole template held out)
    source: str = ""

    def phrasing_indices(self, split: str) -> list[int]:
        """Indices of the phrasings usable for ``split`` ("train" or "eval")."""
        if self.split == "eval":
            return list(range(len(self.phrasings))) if split == "eval" else []
        return [i for i in range(len(self.phrasings)) if is_heldout_phrasing(i) == (split == "eval")]

    @property
    def tools(self) -> list[str]:
        seen: list[str] = []
        for s in self.steps:
            if s.call not in seen:
                seen.append(s.call)
        return seen

    def difficulty(self) -> str:
        n = len(self.steps)
        nargs = max((len(s.args) for s in self.steps), default=0)
        if n >= 3:
            return "hard"
        if n == 2 or nargs >= 3:
            return "medium"
        return "easy"


@dataclass
class NoCall:
    user: str
    reply: str
    index: int

    @property
    def heldout(self) -> bool:
        return is_heldout_phrasing(self.index)


@dataclass
class Instance:
    """One filled template: the user's words and the gold calls, with acceptable alternatives."""

    template: Template
    phrasing_index: int
    user: str
    calls: list[dict]  # [{"name", "arguments", "thought"}]
    alternatives: list[dict]  # per call: {arg: [acceptable values]}
    answer: str
    values: dict


@dataclass
class TemplateSet:
    templates: dict[str, Template]
    pools: dict[str, list]
    nocall: list[NoCall]
    sources: list[str] = field(default_factory=list)

    def select(self, *, categories: list[str] | None = None, split: str = "train") -> list[Template]:
        out = []
        for t in self.templates.values():
            if categories and t.category not in categories:
                continue
            if t.phrasing_indices(split):
                out.append(t)
        return out

    def nocall_for(self, split: str) -> list[NoCall]:
        return [n for n in self.nocall if n.heldout == (split == "eval")]

    # ------------------------------------------------------------------ filling

    def _draw(self, tmpl: Template, rng: random.Random) -> tuple[dict, dict, dict]:
        """Slot values: (typed value, what the user says, acceptable alternatives)."""
        rows: dict[str, Any] = {}
        values, says, alts = {}, {}, {}
        for slot, ref in tmpl.slots.items():
            pool, _, fld = ref.partition(".")
            if pool not in rows:
                rows[pool] = rng.choice(self.pools[pool])
            entry = rows[pool]
            if fld:
                entry = entry[fld]
            if isinstance(entry, dict):
                values[slot] = entry["value"]
                say = entry.get("say") or [entry["value"]]
                says[slot] = rng.choice(say)
                alts[slot] = list(entry.get("alt") or [])
            else:
                values[slot] = entry
                says[slot] = entry
                alts[slot] = []
        return values, says, alts

    def fill(self, tmpl: Template, phrasing_index: int, rng: random.Random) -> Instance:
        values, says, alts = self._draw(tmpl, rng)
        user = _format(tmpl.phrasings[phrasing_index], says)
        calls, alternatives = [], []
        for step in tmpl.steps:
            args, acc = {}, {}
            for k, v in step.args.items():
                m = _SLOT.fullmatch(v) if isinstance(v, str) else None
                if m:
                    args[k] = values[m.group(1)]
                    acc[k] = [args[k]] + [a for a in alts[m.group(1)] if a != args[k]]
                elif isinstance(v, str):
                    args[k] = _format(v, values)
                    acc[k] = [args[k]]
                else:
                    args[k] = v
                    acc[k] = [v]
            calls.append({"name": step.call, "arguments": args, "thought": _format(step.thought, values)})
            alternatives.append(acc)
        answer = _format(tmpl.answer, values) if tmpl.answer else "Done."
        return Instance(tmpl, phrasing_index, user, calls, alternatives, answer, values)


def _format(text: str, values: dict) -> str:
    return _SLOT.sub(lambda m: str(values[m.group(1)]) if m.group(1) in values else m.group(0), text)


# ---------------------------------------------------------------------------------------- load


def _files(path: str | Path | None) -> list[Path]:
    p = Path(path) if path is not None else default_templates_dir()
    if p.is_dir():
        return sorted(list(p.glob("*.yaml")) + list(p.glob("*.yml")))
    if not p.is_file():
        raise DataError(f"templates not found: {p}", hint="pass a YAML file or a folder of them with --templates")
    return [p]


def _line_of(text: str, key: str) -> int | None:
    m = re.search(rf"^\s*-?\s*id:\s*['\"]?{re.escape(key)}['\"]?\s*$", text, re.M)
    return text.count("\n", 0, m.start()) + 1 if m else None


def load_templates(path: str | Path | None = None, catalog: Catalog | None = None, *,
                   lenient: bool = False) -> TemplateSet:
    """Load and check templates (YAML file or folder; default ``data/templates``).

    With a catalog, every step's tool must exist and its filled arguments must satisfy the
    tool's parameters (checked on one filling per template). Problems raise DataError file:line.
    ``lenient`` (the default templates beside a user's own catalog): a template calling a tool the
    catalog lacks is left out instead.
    """
    pools: dict[str, list] = {}
    raw_templates: list[tuple[Path, str, dict]] = []
    nocall: list[NoCall] = []
    files = _files(path)
    for f in files:
        try:
            text = read_text(f, "template file")
            data = safe_yaml(text, str(f)) or {}
        except ConfigError as exc:
            raise DataError(exc.message, path=exc.path, line=exc.line) from None
        if not isinstance(data, dict):
            raise DataError("a template file must be a mapping with pools:, templates: and/or nocall:", path=str(f))
        unknown = set(data) - {"pools", "templates", "nocall"}
        if unknown:
            raise DataError(f"unknown top-level key(s): {', '.join(sorted(unknown))}", path=str(f),
                            hint="expected pools, templates, nocall")
        for name, entries in (data.get("pools") or {}).items():
            if not isinstance(entries, list) or not entries:
                raise DataError(f"pool {name!r} must be a non-empty list", path=str(f))
            pools[name] = entries
        for t in data.get("templates") or []:
            raw_templates.append((f, text, t))
        for n in data.get("nocall") or []:
            if not isinstance(n, dict) or not isinstance(n.get("user"), str) or not isinstance(n.get("reply"), str):
                raise DataError("each nocall entry needs `user` and `reply` strings", path=str(f))
            nocall.append(NoCall(n["user"], n["reply"], len(nocall)))

    templates: dict[str, Template] = {}
    for f, text, t in raw_templates:
        tid = t.get("id") if isinstance(t, dict) else None
        line = _line_of(text, tid) if isinstance(tid, str) else None

        def bad(msg: str):
            return DataError(f"template {tid!r}: {msg}", path=str(f), line=line)

        if not isinstance(tid, str) or not tid:
            raise DataError("every template needs an `id`", path=str(f))
        if tid in templates:
            raise bad(f"duplicate id (also in {templates[tid].source})")
        unknown = set(t) - {"id", "category", "split", "slots", "phrasings", "steps", "answer"}
        if unknown:
            raise bad(f"unknown key(s) {', '.join(sorted(unknown))}")
        if t.get("category") not in CATEGORIES:
            raise bad(f"category must be one of {', '.join(CATEGORIES)}")
        split = t.get("split", "train")
        if split not in ("train", "eval"):
            raise bad("split must be train or eval")
        slots = t.get("slots") or {}
        for slot, ref in slots.items():
            pool, _, fld = str(ref).partition(".")
            if pool not in pools:
                raise bad(f"slot {slot!r} uses unknown pool {pool!r}")
            if fld and not all(isinstance(e, dict) and fld in e for e in pools[pool]):
                raise bad(f"slot {slot!r}: every entry of pool {pool!r} needs field {fld!r}")
        phrasings = t.get("phrasings") or []
        if len(phrasings) < HOLDOUT_EVERY and split == "train":
            raise bad(f"needs at least {HOLDOUT_EVERY} phrasings (every {HOLDOUT_EVERY}th is held out for eval)")
        for p in phrasings:
            used = set(_SLOT.findall(p))
            missing = set(slots) - used
            if missing:
                raise bad(f"phrasing {p!r} does not mention slot(s) {', '.join(sorted(missing))}")
            if used - set(slots):
                raise bad(f"phrasing {p!r} uses undeclared slot(s) {', '.join(sorted(used - set(slots)))}")
        steps = []
        if lenient and catalog is not None and any(isinstance(s, dict) and s.get("call") not in catalog
                                                   for s in t.get("steps") or []):
            continue
        for s in t.get("steps") or []:
            if not isinstance(s, dict) or not isinstance(s.get("call"), str):
                raise bad("each step needs `call` (a tool name)")
            if catalog is not None and s["call"] not in catalog:
                raise bad(f"step calls {s['call']!r}, which is not in the tool catalog")
            steps.append(Step(s["call"], dict(s.get("args") or {}), str(s.get("thought") or "")))
        if not 1 <= len(steps) <= 5:
            raise bad("needs 1 to 5 steps")
        tmpl = Template(tid, t["category"], list(phrasings), steps, dict(slots), str(t.get("answer") or ""), split, str(f))
        # train and eval phrasings must differ after normalisation (no leakage by punctuation)
        train_norm = {_norm(tmpl.phrasings[i]) for i in tmpl.phrasing_indices("train")}
        for i in tmpl.phrasing_indices("eval"):
            if _norm(tmpl.phrasings[i]) in train_norm:
                raise bad(f"held-out phrasing {tmpl.phrasings[i]!r} repeats a training phrasing")
        templates[tid] = tmpl
    ts = TemplateSet(templates, pools, nocall, [str(f) for f in files])
    if catalog is not None:
        rng = random.Random(0)
        for tmpl in templates.values():
            inst = ts.fill(tmpl, 0, rng)
            for c in inst.calls:
                errs = catalog[c["name"]].check(c["arguments"])
                if errs:
                    raise DataError(f"template {tmpl.id!r}: step {c['name']} arguments {c['arguments']} are invalid: "
                                    f"{'; '.join(errs)}", path=tmpl.source, line=None)
    return ts


_PUNCT = str.maketrans("", "", string.punctuation)


def _norm(text: str) -> str:
    return normalize_text(text.translate(_PUNCT))
