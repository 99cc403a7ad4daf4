"""The offline backend: trajectories, preference pairs and eval tasks from templates + simulators.

Deterministic for a seed: candidate ``i`` is drawn from ``random.Random(f"{seed}:{kind}:{i}")``
alone, so its content (and its id, a hash of the content) does not depend on ``--count``.
``count`` is a target for the number of records in the output file: records are appended with
:class:`trajtune.jsonl.Appender` (flushed line by line, so a killed run loses nothing; fsync every 256 lines and on close; a torn last line from a kill is
repaired on the next run), candidates whose id is already there are skipped, and
near-duplicates (same normalised user text and same calls) are dropped and counted.

Every record is checked before it is written (``trajtune.records.check``): the record schema and the
semantic checks of ``trajtune validate`` (called tools offered, arguments satisfy the tool's
parameters, call ids answered). A record that fails is counted under ``invalid`` (a template bug).

Preference failures whose call would not be a valid structured tool call (hallucinated tool,
missing required argument, wrong argument type, malformed or truncated JSON) are written as the
assistant's *text* in the fallback format (``<tool_call>...</tool_call>``): that is exactly what
a model emits, and it keeps the file valid for ``trajtune validate``.
"""
from __future__ import annotations

import json
import random
import string
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional

from trajtune.chat import TOOL_CALL_CLOSE, TOOL_CALL_OPEN, format_tool_call
from trajtune.config import field
from trajtune.errors import ConfigError
from trajtune.generators import shapes
from trajtune.generators.catalog import CATEGORIES, Catalog, is_default, load_catalog
from trajtune.generators.shapes import DEFAULT_SHARES, SHAPES, parse_shares
from trajtune.generators.templates import Instance, NoCall, Template, TemplateSet, load_templates
from trajtune.records import content_id, normalize_text

DEFAULT_SYSTEM = "You are a software engineering agent. Use a tool when it helps; otherwise answer directly."
FAILURE_TYPES = shapes.PREF_FAILURES
NOCALL_CATEGORY = "chat"


# ------------------------------------------------------------------------------------ configs


@dataclass
class SourceOptions:
    """Where the tools and the task templates come from (``generate tools`` reads them too)."""

    catalog: list[str] = field(default_factory=list, metavar="PATH",
                               help="tool catalog: our YAML, an OpenAI tools JSON list, an MCP tools/list result or an "
                                    "OpenAPI 3 document (file or folder; repeat to merge; default: data/tools)")
    templates: str | None = field(None, metavar="PATH", help="task templates YAML file or folder (default: data/templates)")

    def __post_init__(self) -> None:
        if isinstance(self.catalog, str):
            self.catalog = [self.catalog]


@dataclass
class GenerateConfig(SourceOptions):
    """What the offline engine reads: the options every generating subcommand shares (the command
    configs of ``trajtune.scripts.generate`` add the output, the backend and its options)."""

    count: int = field(200, flags=("-n",), help="target number of records in the output file (re-runs append what is missing)")
    seed: int = field(0, help="random seed; the same seed gives the same records")
    category: list[str] = field(default_factory=list, flags=("-c",), metavar="CATEGORY",
                                help=f"only these template categories ({', '.join(CATEGORIES)}); empty = all. Applies to "
                                     "records from hand-written templates; records the phrasing grammar makes follow --shapes")
    distractors_min: int = field(1, help="fewest extra (irrelevant) tools offered per template record (grammar records: "
                                         "their shape decides, e.g. choose offers look-alikes up to --max-tools)")
    distractors_max: int = field(2, help="most extra (irrelevant) tools offered per template record")
    max_tools: int = field(4, help="cap on tools offered per record (keeps rendered prompts ~250-450 tokens)")
    no_call_share: float = field(0.12, help="share of template records whose right answer is a plain reply (no tool call); "
                                          "grammar records get theirs from the irrelevance and missing_info shares of --shapes")
    system_prompt: str = field(DEFAULT_SYSTEM, help="system message of every record")
    max_attempts: int = field(30, help="give up after count x this many candidates (pools exhausted)")
    shapes: dict | list[str] = field(default_factory=lambda: dict(DEFAULT_SHARES), metavar="SHAPE=SHARE,...",
                                     help="shares of the task shapes for tools without templates: "
                                          + ", ".join(SHAPES) + " (unlisted keep their default; 0 disables one)")
    template_share: Optional[float] = field(None, help="share of records from hand-written templates; default: all of "
                                            "them when every tool has templates, else 0.3 (0 when none apply)")
    optional_share: float = field(0.35, help="chance that an optional parameter is stated (and sent) in a schema-engine request")
    no_system_share: float = field(0.4, help="share of schema-engine records without a system message (as benchmarks prompt)")
    topic_share: float = field(0.0, help="share of the irrelevance records (grammar) that ask a general question about an "
                                         "offered tool's own subject, which calling it would not answer (harder negatives)")
    near_miss_share: float = field(0.0, help="share of the irrelevance records (grammar) that offer only a sibling of the "
                                             "requested tool: same domain and shared words, another action or object "
                                             "(the hardest negatives: the tool looks right and is not)")

    def __post_init__(self) -> None:
        super().__post_init__()
        self.shapes = parse_shares(self.shapes)

    def check(self) -> None:
        if self.count < 0:
            raise ConfigError("--count must be 0 or more")
        bad = [c for c in self.category if c not in CATEGORIES]
        if bad:
            raise ConfigError(f"unknown category {bad[0]!r}", hint=f"choose from {', '.join(CATEGORIES)}")
        if not 0 <= self.distractors_min <= self.distractors_max:
            raise ConfigError("need 0 <= distractors_min <= distractors_max")
        if not 0.0 <= self.no_call_share <= 1.0:
            raise ConfigError("no_call_share must be between 0 and 1")
        for name in ("template_share", "optional_share", "no_system_share", "topic_share", "near_miss_share"):
            v = getattr(self, name)
            if v is not None and not 0.0 <= v <= 1.0:
                raise ConfigError(f"{name} must be between 0 and 1")


@dataclass
class TrajectoriesConfig(GenerateConfig):
    followup_share: float = field(0.0, help="share of grammar records that go on with one or two more user requests on "
                                            "the same offered tools (a call of one of them, or a request none serves), "
                                            "each trained: more requests per token of tool schemas")

    def check(self) -> None:
        super().check()
        if not 0.0 <= self.followup_share <= 1.0:
            raise ConfigError("followup_share must be between 0 and 1")


def parse_mix(items: list[str]) -> dict[str, float]:
    """``["chatter=2", "wrong_tool=1"]`` -> weights over all failure types (unlisted ones keep 1)."""
    from trajtune.errors import UsageError

    weights = {t: 1.0 for t in FAILURE_TYPES}
    for part in items:
        part = str(part).strip()
        if not part:
            continue
        name, sep, val = part.partition("=")
        name = name.strip()
        if not sep or name not in FAILURE_TYPES:
            raise UsageError(f"--mix: bad entry {part!r}", hint=f"use TYPE=WEIGHT with TYPE in {', '.join(FAILURE_TYPES)}")
        try:
            weights[name] = float(val)
        except ValueError:
            raise UsageError(f"--mix: weight for {name} must be a number, got {val.strip()!r}") from None
    return weights


@dataclass
class PreferencesConfig(GenerateConfig):
    # a mapping TYPE: WEIGHT (YAML; unlisted types get weight 0), or TYPE=W entries (the flag; unlisted keep 1)
    failure_mix: dict | list[str] = field(default_factory=lambda: {t: 1.0 for t in FAILURE_TYPES}, flags=("--mix",),
                                          metavar="TYPE=W,...",
                                          help="relative weight of each rejected-side failure type, e.g. "
                                               "chatter=2,wrong_tool=0 (unlisted types keep 1; 0 disables one)")
    later_step_share: float = field(0.3, help="share of pairs taken at a later step of a multi-step task")

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.failure_mix, str):
            self.failure_mix = [self.failure_mix]
        if isinstance(self.failure_mix, (list, tuple)):
            self.failure_mix = parse_mix([p for item in self.failure_mix for p in str(item).split(",")])

    def check(self) -> None:
        super().check()
        unknown = set(self.failure_mix) - set(FAILURE_TYPES)
        if unknown:
            raise ConfigError(f"unknown failure type {sorted(unknown)[0]!r} in failure_mix",
                              hint=f"choose from {', '.join(FAILURE_TYPES)}")
        if any((not isinstance(v, (int, float))) or isinstance(v, bool) or v < 0 for v in self.failure_mix.values()):
            raise ConfigError("failure_mix weights must be numbers >= 0")
        if not any(self.failure_mix.get(t, 0) > 0 for t in FAILURE_TYPES):
            raise ConfigError("failure_mix gives every failure type weight 0")


@dataclass
class TasksConfig(GenerateConfig):
    count: int = field(80, flags=("-n",), help="target number of tasks in the output file")
    seed: int = field(1, help="random seed (use a different one from training generation)")
    split: str = field("eval", choices=("eval", "train"),
                       help="eval: held-out phrasings and templates; train: training phrasings (a recall check)")
    heldout_template_share: float = field(0.2, flags=("--held-out-template-share",),
                                          help="share of eval tasks from held-out templates (reported separately)")
    later_step_share: float = field(0.3, help="share of tasks asking for a later step, earlier steps given")
    no_call_share: float = field(0.15, help="share of template tasks whose right answer is no call (grammar tasks: the "
                                          "irrelevance and missing_info shares of --shapes)")

    def check(self) -> None:
        super().check()
        if self.split not in ("eval", "train"):
            raise ConfigError(f"--split must be eval or train, got {self.split!r}")


# ---------------------------------------------------------------------------------- helpers


@dataclass
class Sources:
    catalog: Catalog
    templates: TemplateSet

    def split_by_category(self, category: str | None) -> tuple[list[str], list[str]]:
        """(names in ``category``, the other names), catalog order; cached."""
        cache = self.__dict__.setdefault("_by_cat", {})
        if category not in cache:
            tools = self.catalog.tools.items()
            cache[category] = ([n for n, t in tools if t.category == category], [n for n, t in tools if t.category != category])
        return cache[category]

    def templated(self) -> set[str]:
        """Tools that hand-written templates call (the grammar leaves them to the templates)."""
        return {s.call for t in self.templates.templates.values() for s in t.steps}

    def training(self) -> "Sources":
        """The sources training generation sees: tools held out for evaluation removed."""
        tools = {n: t for n, t in self.catalog.tools.items() if t.split != "eval"}
        if len(tools) == len(self.catalog.tools):
            return self
        return Sources(Catalog(tools, self.catalog.sources), self.templates)


def load_sources(cfg: GenerateConfig) -> Sources:
    catalog = load_catalog(cfg.catalog)
    lenient = cfg.templates is None and not is_default(cfg.catalog)
    return Sources(catalog, load_templates(cfg.templates, catalog, lenient=lenient))


class Rejected:
    """A candidate a quality gate refused: counted in the summary's ``gates`` table."""

    def __init__(self, gate: str, reason: str):
        self.gate, self.reason = gate, reason


def _schema_setup(cfg: GenerateConfig, src: Sources, split: str):
    """(engine or None, template share) for the schema-driven shapes of :mod:`shapes`."""
    from trajtune.generators.shapes import Engine

    engine = Engine(src.catalog, split=split, shares=cfg.shapes, optional_share=cfg.optional_share,
                    no_system_share=cfg.no_system_share, system_prompt=cfg.system_prompt,
                    exclude=src.templated(), max_tools=max(cfg.max_tools, 2), topic_share=cfg.topic_share,
                    near_miss_share=cfg.near_miss_share)
    has_templates = bool(src.templates.select(split=split))
    if not engine.targets:
        if not has_templates:
            raise ConfigError("no tool can be phrased: the catalog has no tools without templates the grammar can phrase, "
                              "and no templates apply", hint="run `trajtune generate tools --check --catalog ...`")
        return None, 1.0
    share = cfg.template_share if cfg.template_share is not None else 0.3
    return engine, (share if has_templates else 0.0)


_PUNCT = str.maketrans("", "", string.punctuation)


def near_dup_key(*parts: Any) -> str:
    """Normalised text (case, whitespace, punctuation) + canonical JSON of the rest."""
    out = []
    for p in parts:
        out.append(normalize_text(p.translate(_PUNCT)) if isinstance(p, str) else json.dumps(p, sort_keys=True))
    return "\x1f".join(out)


def _categories(cfg: GenerateConfig, ts: TemplateSet, split: str) -> list[str]:
    cats = [c for c in CATEGORIES if (not cfg.category or c in cfg.category) and ts.select(categories=[c], split=split)]
    if not cats:
        raise ConfigError(f"no templates for category {', '.join(cfg.category) or 'any'} in split {split}")
    return cats


def _offer_tools(src: Sources, needed: list[str], rng: random.Random, cfg: GenerateConfig, category: str | None) -> list[dict]:
    """The needed tools plus distractors (half from the same category when possible), shuffled."""
    names = list(needed)
    k = rng.randint(cfg.distractors_min, cfg.distractors_max)
    k = max(min(k, cfg.max_tools - len(names)), 1 if names and cfg.distractors_min > 0 else 0)
    same_all, other_all = src.split_by_category(category)
    same = [n for n in same_all if n not in names]
    other = [n for n in other_all if n not in names]
    for _ in range(k):
        pool = same if same and (rng.random() < 0.5 or not other) else other
        if not pool:
            break
        pick = pool.pop(rng.randrange(len(pool)))
        names.append(pick)
    rng.shuffle(names)
    return src.catalog.openai_tools(names)


def _call_msg(call: dict, n: int) -> dict:
    return {"role": "assistant", "content": call["thought"] or None,
            "tool_calls": [{"id": f"call_{n}", "type": "function",
                            "function": {"name": call["name"], "arguments": call["arguments"]}}]}


def _steps_messages(src: Sources, inst: Instance, upto: int) -> list[dict]:
    """Assistant call + tool observation for steps [0, upto)."""
    msgs: list[dict] = []
    for k, call in enumerate(inst.calls[:upto]):
        msgs.append(_call_msg(call, k + 1))
        msgs.append({"role": "tool", "tool_call_id": f"call_{k + 1}", "name": call["name"],
                     "content": src.catalog[call["name"]].simulate(call["arguments"])})
    return msgs


def _pick_instance(src: Sources, cfg: GenerateConfig, rng: random.Random, i: int, cats: list[str],
                   split: str, templates: list[Template] | None = None) -> Instance:
    if templates is None:
        cat = cats[i % len(cats)]
        templates = src.templates.select(categories=[cat], split=split)
    tmpl = rng.choice(templates)
    idx = rng.choice(tmpl.phrasing_indices(split))
    return src.templates.fill(tmpl, idx, rng)


def _meta(**kw: Any) -> dict:
    out = {"source": "generate", "backend": "offline"}
    out.update({k: v for k, v in kw.items() if v is not None})
    out["review"] = "pending"
    return out


class _Checker:
    """THE record check (``trajtune.records.check``) on one record; returns the first problem."""

    def __init__(self, kind: str):
        self.kind = kind

    def __call__(self, rec: dict) -> str | None:
        from trajtune.records import check

        for name, msg, where in check(rec, self.kind):
            return f"schema: {where}: {msg}" if name == "schema" else f"{name}: {msg} at {where}"
        return None


def _bump(d: dict, key: Any) -> None:
    d[str(key)] = d.get(str(key), 0) + 1


def _run(kind: str, out: str, cfg: GenerateConfig, make: Callable[[int], tuple[dict, str] | None],
         key_of: Callable[[dict], str], progress: Callable[[int, int], None] | None,
         buckets: tuple[str, ...]) -> dict:
    """The shared loop: resume, draw candidates, drop duplicates, check, append, count."""
    from trajtune.jsonl import Appender, read_jsonl

    check = _Checker(kind)
    summary: dict[str, Any] = {"kind": kind, "backend": "offline", "out": str(out), "target": cfg.count, "seed": cfg.seed,
                               "existing": 0, "written": 0, "dropped_near_duplicates": 0, "invalid": 0,
                               "invalid_reasons": {}, "semantic_rejects": 0, "semantic_reasons": {},
                               "not_applicable": 0, "already_written": 0}
    for b in buckets:
        summary[f"by_{b}"] = {}
    with Appender(out, sync_every=256) as app:
        seen: set[str] = set()
        prior = set(app.existing_ids)  # a resumed run replays the candidate stream: these are in the file already
        if app.existing:
            for row in read_jsonl(out):
                try:
                    seen.add(key_of(row.obj))
                except Exception:  # a foreign record: its id still prevents duplicates
                    pass
        summary["existing"] = app.existing
        total = app.existing
        limit = max(cfg.count, 1) * cfg.max_attempts
        i = 0
        while total < cfg.count and i < limit:
            made = make(i)
            i += 1
            if made is None:  # e.g. a failure kind this instance cannot show
                summary["not_applicable"] += 1
                continue
            if isinstance(made, Rejected):
                if made.gate == "semantic":
                    summary["semantic_rejects"] += 1
                    _bump(summary["semantic_reasons"], made.reason.split(": ", 1)[-1].split(" ", 2)[-1][:60])
                else:
                    summary["not_applicable"] += 1
                continue
            rec, key = made
            if rec["id"] in prior:
                summary["already_written"] += 1
                continue
            if key in seen or rec["id"] in app.existing_ids:  # a near or an exact duplicate of this run's records
                summary["dropped_near_duplicates"] += 1
                continue
            problem = check(rec)
            if problem:
                summary["invalid"] += 1
                _bump(summary["invalid_reasons"], problem.split(":", 1)[0])
                continue
            seen.add(key)
            app.write(rec)
            total += 1
            summary["written"] += 1
            for b in buckets:
                _bump(summary[f"by_{b}"], rec["metadata"].get(b, "template" if b == "shape" else None))
            if progress:
                progress(total, cfg.count)
        summary["candidates"] = i
    summary["total"] = total
    # the APIGen-style table: how many candidates each quality gate refused; with the candidates a
    # shape (or failure kind) could not make here and (resumed) those already in the file, it adds up
    summary["gates"] = {"format": summary["invalid"], "semantic": summary["semantic_rejects"],
                        "dedup": summary["dropped_near_duplicates"], "passed": summary["written"],
                        "not_applicable": summary["not_applicable"], "already_written": summary["already_written"]}
    summary["short"] = max(0, cfg.count - total)
    return summary


# ------------------------------------------------------------------------- schema engine

_DIFFICULTY = {"single": "easy", "irrelevance": "easy", "missing_info": "easy", "choose": "medium", "typed": "medium",
               "parallel": "medium", "parallel_multi": "hard", "multi_step": "hard"}


def _episode(engine: Any, rng: random.Random) -> Any:
    """One gated episode, or Rejected (the shape cannot be made here, or the semantic gate)."""
    ep, shape = engine.episode(rng)
    if ep is None:
        return Rejected("shape", f"{shape}: not possible with this catalog")
    problem = shapes.semantic_problem(engine, ep)
    if problem:
        return Rejected("semantic", problem)
    return ep


def _episode_step(engine: Any, rng: random.Random, later_step_share: float) -> Any:
    """(episode, the step a pair or task is cut at: a later one for a share of multi-step episodes) or Rejected."""
    ep = _episode(engine, rng)
    if isinstance(ep, Rejected):
        return ep
    return ep, (1 if len(ep.turns) > 1 and rng.random() < later_step_share else 0)


def _schema_meta(ep: Any, split: str, engine: Any, **kw: Any) -> dict:
    t = ep.target
    reason = kw.pop("split_reason", None)
    # category: the shape (as BFCL's categories are shapes); the tool's domain is kept beside it
    return _meta(category=ep.shape, domain=engine._domain(t), difficulty=_DIFFICULTY[ep.shape], template_id="schema",
                 shape=ep.shape, tool=t.name, phrasing=ep.frame, steps=len(ep.turns), split=split, split_reason=reason, **kw)


# ------------------------------------------------------------------------------ trajectories


def trajectory_record(src: Sources, cfg: GenerateConfig, inst: Instance, rng: random.Random) -> dict:
    tmpl = inst.template
    tools = _offer_tools(src, tmpl.tools, rng, cfg, tmpl.category)
    msgs = [{"role": "system", "content": cfg.system_prompt}, {"role": "user", "content": inst.user}]
    msgs += _steps_messages(src, inst, len(inst.calls))
    msgs.append({"role": "assistant", "content": inst.answer})
    body = {"tools": tools, "messages": msgs}
    meta = _meta(category=tmpl.category, difficulty=tmpl.difficulty(), template_id=tmpl.id,
                 phrasing=inst.phrasing_index, steps=len(inst.calls), split="train")
    return {"id": content_id(body, "traj-"), "metadata": meta, **body}


def nocall_record(src: Sources, cfg: GenerateConfig, n: NoCall, rng: random.Random) -> tuple[list[dict], list[dict]]:
    """(tools, [system, user]) for a request that needs no tool; 2-4 tools are still offered."""
    cat = rng.choice(CATEGORIES)
    cfg2 = GenerateConfig(distractors_min=max(2, cfg.distractors_min), distractors_max=max(2, cfg.distractors_max) + 1,
                          max_tools=max(cfg.max_tools, 3))
    tools = _offer_tools(src, [], rng, cfg2, cat)
    return tools, [{"role": "system", "content": cfg.system_prompt}, {"role": "user", "content": n.user}]


def _sft_key(rec: dict) -> str:
    msgs = rec.get("messages") or []
    user = " ".join(m.get("content") or "" for m in msgs if m.get("role") == "user")  # every request of the conversation
    calls = [(c["function"]["name"], c["function"]["arguments"]) for m in msgs for c in (m.get("tool_calls") or [])]
    return near_dup_key(user, calls)


def generate_trajectories(cfg: TrajectoriesConfig, out: str, *, progress=None, sources: Sources | None = None) -> dict:
    """Multi-step sft records (thought -> call -> observation ... -> answer) for training phrasings."""
    # 1) load the catalog and templates; pick the categories that have training templates
    src = (sources or load_sources(cfg)).training()
    engine, tshare = _schema_setup(cfg, src, "train")
    cats = _categories(cfg, src.templates, "train") if tshare > 0 else []
    nocalls = src.templates.nocall_for("train")

    # 2) candidate i: a schema-engine episode, a no-call exchange or a filled template, as a trajectory
    def make(i: int):
        rng = random.Random(f"{cfg.seed}:trajectories:{i}")
        if engine is not None and rng.random() >= tshare:
            ep = _episode(engine, rng)
            if isinstance(ep, Rejected):
                return ep
            followups = []
            if cfg.followup_share > 0 and rng.random() < cfg.followup_share:  # no draw at 0: the same records as before
                for _ in range(rng.choice([1, 1, 2])):
                    f = engine.followup(ep, rng)
                    if f is None:
                        break
                    problem = shapes.semantic_problem(engine, f)
                    if problem:
                        return Rejected("semantic", f"follow-up: {problem}")
                    followups.append(f)
            body = shapes.sft_body(ep, followups)
            meta = _schema_meta(ep, "train", engine, requests=1 + len(followups) if followups else None)
            rec = {"id": content_id(body, "traj-"), "metadata": meta, **body}
            return rec, _sft_key(rec)
        if nocalls and rng.random() < cfg.no_call_share:
            n = rng.choice(nocalls)
            tools, msgs = nocall_record(src, cfg, n, rng)
            msgs.append({"role": "assistant", "content": n.reply})
            body = {"tools": tools, "messages": msgs}
            meta = _meta(category=NOCALL_CATEGORY, difficulty="easy", template_id="nocall", phrasing=n.index,
                         steps=0, split="train")
            rec = {"id": content_id(body, "traj-"), "metadata": meta, **body}
        else:
            rec = trajectory_record(src, cfg, _pick_instance(src, cfg, rng, i, cats, "train"), rng)
        return rec, _sft_key(rec)

    # 3) append what is missing
    return _run("sft", out, cfg, make, _sft_key, progress, ("category", "difficulty", "shape"))


# ------------------------------------------------------------------------------- preferences

_FAKE_NAMES = {
    "read_file": ["open_file", "cat_file"], "write_file": ["save_file", "put_file"], "list_directory": ["ls", "list_files"],
    "search_docs": ["docs_search", "lookup_docs"], "run_tests": ["pytest", "test_runner"],
    "rename_symbol": ["rename", "refactor_rename"], "format_code": ["black", "prettify"], "git_diff": ["diff", "show_diff"],
    "git_commit": ["commit", "git_push"], "grep": ["search_code", "find_text"], "get_logs": ["read_logs", "tail_logs"],
    "run_command": ["shell", "exec"], "check_status": ["health_check", "get_status"], "deploy": ["deploy_service", "release"],
    "restart_service": ["restart", "reboot_service"], "scale_service": ["scale", "set_replicas"],
    "http_request": ["curl", "fetch_url"], "database_query": ["sql_query", "query_table"], "count_rows": ["row_count", "count"],
    "cache_get": ["redis_get", "get_cache"], "cache_set": ["redis_set", "set_cache"], "export_csv": ["to_csv", "dump_table"],
}
_CHATTER = [
    "Sure, I can help with that! Let me know if there's anything else you need.",
    "Great question. That should be straightforward to do.",
    "Okay, I'll take care of it right away.",
    "I understand. This is a common task and usually works fine.",
    "Happy to help with this request!",
]


def _text_call(thought: str, body: str) -> str:
    return (thought + "\n" if thought else "") + body


def _placeholder(schema: dict, values: dict, rng: random.Random) -> Any:
    t = schema.get("type")
    if "enum" in schema:
        return rng.choice(schema["enum"])
    if t == "integer":
        return rng.choice([1, 5, 10, 100])
    if t == "boolean":
        return True
    strs = [v for v in values.values() if isinstance(v, str)]
    return rng.choice(strs) if strs else "value"


def _rejected(kind: str, src: Sources, inst: Instance, step: int, tools: list[dict], rng: random.Random) -> dict | None:
    """One failing assistant turn of ``kind`` for step ``step``; None when not applicable."""
    call = inst.calls[step]
    name, args, thought = call["name"], call["arguments"], call["thought"]
    params = src.catalog[name].parameters
    props = params.get("properties") or {}
    required = [r for r in params.get("required") or [] if r in args]
    offered = [t["function"]["name"] for t in tools]
    if kind == "wrong_tool":
        others = [n for n in offered if n != name]
        if not others:
            return None
        other = rng.choice(others)
        oparams = src.catalog[other].parameters
        oargs = {}
        for r in oparams.get("required") or []:
            oargs[r] = args[r] if r in args and not src.catalog[other].check({r: args[r]}) else \
                _placeholder(oparams["properties"][r], inst.values, rng)
        if src.catalog[other].check(oargs):
            return None
        return {"role": "assistant", "content": thought or None, "tool_calls": [
            {"id": f"call_{step + 1}", "type": "function", "function": {"name": other, "arguments": oargs}}]}
    if kind == "missing_required_arg":
        if not required:
            return None
        drop = rng.choice(required)
        bad = {k: v for k, v in args.items() if k != drop}
        return {"role": "assistant", "content": _text_call(thought, format_tool_call(name, bad))}
    if kind == "wrong_type":
        if not args:
            return None
        k = rng.choice(sorted(args))
        v = args[k]
        if isinstance(v, bool):
            wrong: Any = "true" if v else "false"
        elif isinstance(v, int):
            wrong = str(v)
        else:
            wrong = [v]
        bad = dict(args)
        bad[k] = wrong
        return {"role": "assistant", "content": _text_call(thought, format_tool_call(name, bad))}
    if kind == "wrong_value":
        cands = []
        for k, v in args.items():
            schema = props.get(k) or {}
            if "enum" in schema:
                alts = [e for e in schema["enum"] if e != v]
            else:
                slot = next((s for s, val in inst.values.items() if val == v), None)
                pool = inst.template.slots.get(slot, "") if slot else ""
                pname, _, fld = pool.partition(".")
                entries = src.templates.pools.get(pname, [])
                alts = []
                for e in entries:
                    e = e[fld] if fld else e
                    e = e["value"] if isinstance(e, dict) else e
                    if e != v and type(e) is type(v):
                        alts.append(e)
            if alts:
                cands.append((k, alts))
        if not cands:
            return None
        k, alts = rng.choice(cands)
        bad = dict(args)
        bad[k] = rng.choice(alts)
        return {"role": "assistant", "content": thought or None, "tool_calls": [
            {"id": f"call_{step + 1}", "type": "function", "function": {"name": name, "arguments": bad}}]}
    if kind == "extra_argument":
        got = shapes.extra_argument(props, args, rng)
        if got is None:
            return None
        return {"role": "assistant", "content": thought or None, "tool_calls": [
            {"id": f"call_{step + 1}", "type": "function", "function": {"name": name, "arguments": {**args, got[0]: got[1]}}}]}
    if kind == "extra_call":  # the right call and one more nobody asked for
        others = [n for n in offered if n != name]
        if not others:
            return None
        other = rng.choice(others)
        oparams = src.catalog[other].parameters
        oargs = {r: _placeholder(oparams["properties"][r], inst.values, rng) for r in oparams.get("required") or []}
        if src.catalog[other].check(oargs):
            return None
        return {"role": "assistant", "content": thought or None, "tool_calls": [
            {"id": f"call_{step + 1}", "type": "function", "function": {"name": name, "arguments": args}},
            {"id": f"call_{step + 2}", "type": "function", "function": {"name": other, "arguments": oargs}}]}
    if kind == "hallucinated_tool":
        fakes = [f for f in _FAKE_NAMES.get(name, [name + "_tool"]) if f not in offered]
        if not fakes:
            return None
        return {"role": "assistant", "content": _text_call(thought, format_tool_call(rng.choice(fakes), args))}
    if kind == "malformed_json":
        text = json.dumps({"name": name, "arguments": args}, ensure_ascii=False)
        broken = rng.choice([text[:-1], text.replace('":', '"', 1), text.replace('"', "'")])
        return {"role": "assistant", "content": _text_call(thought, f"{TOOL_CALL_OPEN}\n{broken}\n{TOOL_CALL_CLOSE}")}
    if kind == "truncated_json":
        text = json.dumps({"name": name, "arguments": args}, ensure_ascii=False)
        cut = max(8, int(len(text) * rng.uniform(0.4, 0.8)))
        return {"role": "assistant", "content": _text_call(thought, f"{TOOL_CALL_OPEN}\n{text[:cut]}")}
    if kind == "chatter":
        return {"role": "assistant", "content": rng.choice(_CHATTER)}
    raise ValueError(kind)


def _pref_key(rec: dict) -> str:
    meta = rec.get("metadata") or {}
    prompt = rec.get("prompt") or []
    user = next((m.get("content") or "" for m in prompt if m.get("role") == "user"), "")
    return near_dup_key(user, len(prompt), rec.get("chosen"), meta.get("failure_type"))


def generate_preferences(cfg: PreferencesConfig, out: str, *, progress=None, sources: Sources | None = None) -> dict:
    """Preference pairs: chosen = the correct next step, rejected = a labelled realistic failure."""
    # 1) load; failure types by weight
    src = (sources or load_sources(cfg)).training()
    engine, tshare = _schema_setup(cfg, src, "train")
    cats = _categories(cfg, src.templates, "train") if tshare > 0 else []
    nocalls = src.templates.nocall_for("train")
    types = [t for t in FAILURE_TYPES if cfg.failure_mix.get(t, 0) > 0]
    weights = [float(cfg.failure_mix[t]) for t in types]

    def schema_pair(rng: random.Random):
        got = _episode_step(engine, rng, cfg.later_step_share)
        if isinstance(got, Rejected):
            return got
        ep, step = got
        task = shapes.task_body(ep, step)
        if ep.turns:
            chosen = [shapes._call_msg(ep.turns[step], sum(len(t) for t in ep.turns[:step]) + 1)]
        else:
            chosen = [{"role": "assistant", "content": ep.reply}]
        bad = None
        for ftype in rng.choices(types, weights=weights, k=len(types) * 2):
            bad = shapes.rejected_turn(engine, ep, step, ftype, rng)
            if bad is not None:
                break
        if bad is None:
            return None
        body = {"tools": task["tools"], "prompt": task["prompt"], "chosen": chosen, "rejected": [bad[0]]}
        rec = {"id": content_id(body, "pref-"), "metadata": _schema_meta(ep, "train", engine, step=step, failure_type=bad[1]),
               **body}
        return rec, _pref_key(rec)

    # 2) candidate i: a prompt (user request + earlier steps), the right step and a failure
    def make(i: int):
        rng = random.Random(f"{cfg.seed}:preferences:{i}")
        if engine is not None and rng.random() >= tshare:
            return schema_pair(rng)
        if nocalls and rng.random() < cfg.no_call_share:
            n = rng.choice(nocalls)
            tools, prompt = nocall_record(src, cfg, n, rng)
            name = rng.choice([t["function"]["name"] for t in tools])
            tool = src.catalog[name]
            args = {r: _placeholder(tool.parameters["properties"][r], {"x": "value"}, rng)
                    for r in tool.parameters.get("required") or []}
            chosen = [{"role": "assistant", "content": n.reply}]
            rejected = [{"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": name, "arguments": args}}]}]
            meta = _meta(category=NOCALL_CATEGORY, difficulty="easy", template_id="nocall", phrasing=n.index,
                         step=0, failure_type="unneeded_call", split="train")
        else:
            inst = _pick_instance(src, cfg, rng, i, cats, "train")
            tmpl = inst.template
            step = rng.randrange(1, len(inst.calls)) if len(inst.calls) > 1 and rng.random() < cfg.later_step_share else 0
            tools = _offer_tools(src, tmpl.tools, rng, cfg, tmpl.category)
            prompt = [{"role": "system", "content": cfg.system_prompt}, {"role": "user", "content": inst.user}]
            prompt += _steps_messages(src, inst, step)
            chosen = [_call_msg(inst.calls[step], step + 1)]
            bad = None
            order = rng.choices(types, weights=weights, k=len(types) * 2)
            for ftype in order:
                bad = _rejected(ftype, src, inst, step, tools, rng)
                if bad is not None:
                    break
            if bad is None:
                return None
            rejected = [bad]
            meta = _meta(category=tmpl.category, difficulty=tmpl.difficulty(), template_id=tmpl.id,
                         phrasing=inst.phrasing_index, step=step, failure_type=ftype, split="train")
        body = {"tools": tools, "prompt": prompt, "chosen": chosen, "rejected": rejected}
        rec = {"id": content_id(body, "pref-"), "metadata": meta, **body}
        return rec, _pref_key(rec)

    # 3) append what is missing
    return _run("preference", out, cfg, make, _pref_key, progress, ("category", "difficulty", "failure_type", "shape"))


# ------------------------------------------------------------------------------------- tasks


def _task_key(rec: dict) -> str:
    prompt = rec.get("prompt") or []
    user = next((m.get("content") or "" for m in prompt if m.get("role") == "user"), "")
    return near_dup_key(user, len(prompt))


def _task_maker(cfg: TasksConfig, src: Sources) -> Callable[[int], tuple[dict, str] | None]:
    """make(i) -> (task record, near-duplicate key) or None, deterministic for (seed, split, i)."""
    split = cfg.split
    if split != "eval":
        src = src.training()
    engine, tshare = _schema_setup(cfg, src, split)
    cats = _categories(cfg, src.templates, split) if tshare > 0 else []
    nocalls = src.templates.nocall_for(split)
    held_templates = [t for t in src.templates.select(categories=cfg.category or None, split="eval") if t.split == "eval"]
    if split != "eval":
        held_templates = []

    def schema_task(rng: random.Random):
        got = _episode_step(engine, rng, cfg.later_step_share)
        if isinstance(got, Rejected):
            return got
        ep, step = got
        body = shapes.task_body(ep, step)
        if split == "eval":
            reason = "held_out_tool" if ep.target.split == "eval" else "held_out_phrasing"
        else:
            reason = "train_phrasing"
        rec = {"id": content_id(body, "task-"), "metadata": _schema_meta(ep, split, engine, step=step, split_reason=reason),
               **body}
        return rec, _task_key(rec)

    def make(i: int):
        rng = random.Random(f"{cfg.seed}:tasks:{split}:{i}")
        if engine is not None and rng.random() >= tshare:
            return schema_task(rng)
        r = rng.random()
        if nocalls and r < cfg.no_call_share:
            n = rng.choice(nocalls)
            tools, prompt = nocall_record(src, cfg, n, rng)
            expected = {"calls": [], "order": "strict"}
            meta = _meta(category=NOCALL_CATEGORY, difficulty="easy", template_id="nocall", phrasing=n.index, step=0,
                         split=split, split_reason="no_call")
        else:
            if held_templates and r < cfg.no_call_share + cfg.heldout_template_share:
                inst = _pick_instance(src, cfg, rng, i, cats, split, templates=held_templates)
                reason = "held_out_template"
            else:
                cat = cats[i % len(cats)]
                pool = [t for t in src.templates.select(categories=[cat], split=split) if t.split == "train"]
                if not pool:
                    return None
                inst = _pick_instance(src, cfg, rng, i, cats, split, templates=pool)
                reason = "held_out_phrasing" if split == "eval" else "train_phrasing"
            tmpl = inst.template
            step = rng.randrange(1, len(inst.calls)) if len(inst.calls) > 1 and rng.random() < cfg.later_step_share else 0
            tools = _offer_tools(src, tmpl.tools, rng, cfg, tmpl.category)
            prompt = [{"role": "system", "content": cfg.system_prompt}, {"role": "user", "content": inst.user}]
            prompt += _steps_messages(src, inst, step)
            expected = {"calls": [{"name": inst.calls[step]["name"], "arguments": inst.alternatives[step]}],
                        "order": "strict"}
            meta = _meta(category=tmpl.category, difficulty=tmpl.difficulty(), template_id=tmpl.id,
                         phrasing=inst.phrasing_index, step=step, split=split, split_reason=reason)
        body = {"tools": tools, "prompt": prompt, "expected": expected}
        rec = {"id": content_id(body, "task-"), "metadata": meta, **body}
        return rec, _task_key(rec)

    return make


def generate_tasks(cfg: TasksConfig, out: str, *, progress=None, sources: Sources | None = None) -> dict:
    """Eval tasks: the next assistant turn's calls (first step, or a later one with earlier steps given).

    ``split: eval`` draws from held-out phrasings of training intents (``split_reason:
    held_out_phrasing``), held-out templates (``held_out_template``) and held-out no-call
    requests (``no_call``); training generation never emits any of them.
    """
    # 1) load the catalog and templates
    src = sources or load_sources(cfg)
    # 2) candidate i: pick the kind, fill a phrasing, cut at a step, list acceptable values
    make = _task_maker(cfg, src)
    # 3) append what is missing
    return _run("task", out, cfg, make, _task_key, progress, ("category", "difficulty", "split_reason", "shape"))


def iter_tasks(cfg: TasksConfig, *, sources: Sources | None = None, first_step_only: bool = True) -> Iterator[dict]:
    """An endless, deterministic stream of task records (near-duplicates skipped), for backends.

    The teacher and local backends solve these prompts: with ``cfg.split = "train"`` they come
    from training phrasings only, so held-out phrasings and templates never reach training data.
    ``first_step_only`` yields only tasks that start from the user request.
    """
    src = sources or load_sources(cfg)
    make = _task_maker(cfg, src)
    seen: set[str] = set()
    i = 0
    misses = 0
    while misses < max(1000, cfg.max_attempts * 100):
        made = make(i)
        i += 1
        if made is None or isinstance(made, Rejected):
            misses += 1
            continue
        rec, key = made
        if key in seen or (first_step_only and rec["metadata"].get("step", 0) != 0):
            misses += 1
            continue
        misses = 0
        seen.add(key)
        yield rec
