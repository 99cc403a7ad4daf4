"""The schema-driven generator: records for tools without templates, in every task shape.

A candidate is an :class:`Episode` drawn for one **shape** (its share set by ``--shapes``):

============== =================================================================================
single         one tool, one call (sometimes with a distractor)
choose         2-5 tools offered, several look alike (same family or domain); call the right one
parallel       one tool called for several values in one turn
parallel_multi different tools in one turn ("... Also, ...")
multi_step     call, observation, a second call using a value from the observation, answer
irrelevance    no offered tool fits: answer directly, no call (``--topic-share`` of them: a general
               question on an offered tool's own subject, which calling it would not answer;
               ``--near-miss-share``: only a sibling of the asked-for tool is offered, same domain and
               shared words, another action or object: "find the prime factors" with a tool that
               checks a prime number)
missing_info   a required value is not stated: ask for it, no call
typed          numbers, floats, lists and objects copied exactly (tools with such parameters)
============== =================================================================================

A trajectory can go on with **follow-ups** (``generate trajectories --followup-share``): one or two
more requests on the same offered tools (:meth:`Engine.followup`), each trained.

Requests come from the phrasing grammar (:mod:`trajtune.generators.phrasing`), values from the
schema sampler (:mod:`trajtune.generators.values`), observations from the catalog's simulators
(a declared result schema, or a plausible default). An episode is rendered as an sft
trajectory, a preference pair (chosen: the right turn; rejected: a labelled failure) or an
eval task (the acceptable values of each argument; an optional parameter left unstated may be
omitted or sent with its default).

**Gates** (the APIGen-style filter, every candidate, counted per gate): ``format`` (THE record
check: schema, offered tools, argument types), ``semantic`` (each argument value is stated in the
request or an earlier observation; no tool outside the offer), ``dedup`` (normalised request +
calls). Splits: training uses tools whose ``split`` is ``train`` (synthetic families held out
for evaluation never appear, not even as distractors) and the grammar's training frames;
``tasks --split eval`` uses held-out tools (when the catalog has them) and held-out frames.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any

from trajtune.generators import phrasing
from trajtune.generators.catalog import Catalog, Tool
from trajtune.generators.values import sample, words

_STOP = {"get", "set", "the", "for", "and", "with", "from", "list", "find", "search", "create", "update", "delete",
         "calculate", "compute", "check", "add", "all", "new", "given", "into", "that", "this", "your", "api", "tool"}


def _singular(w: str) -> str:
    w = w.lower()
    if len(w) > 4 and w.endswith("ies"):
        return w[:-3] + "y"
    if len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
        return w[:-1]
    return w


# a verb phrase's object ends before these ("list the books by author": books)
_PREPOSITIONS = {"by", "for", "from", "of", "with", "in", "on", "to", "at", "into", "using", "via", "given", "looked", "between"}
# actions that only read: two of them on different things never serve each other's request
_READ_VERBS = {"get", "list", "search", "find", "check", "calculate", "compute", "estimate", "count", "show", "fetch",
               "look", "query", "detect", "compare", "track", "recommend"}

SHAPES = ("single", "choose", "parallel", "parallel_multi", "multi_step", "irrelevance", "missing_info", "typed")
DEFAULT_SHARES = {"single": 0.18, "choose": 0.22, "parallel": 0.14, "parallel_multi": 0.12, "multi_step": 0.06,
                  "irrelevance": 0.14, "missing_info": 0.05, "typed": 0.09}
NOCALL_SHAPES = ("irrelevance", "missing_info")
SYSTEMS = ["You are a helpful assistant with access to tools.",
           "You are an assistant. Call a function when one fits the request; otherwise reply in plain text.",
           "You can call the functions below. Only call a function when it matches what the user asked.",
           "You are a precise assistant. Copy argument values exactly as the user gives them."]


def parse_shares(items: Any) -> dict[str, float]:
    """``{"single": 2}`` or ``["single=2", "parallel=1"]`` -> shares over all shapes (unlisted keep the default)."""
    from trajtune.errors import UsageError

    out = dict(DEFAULT_SHARES)
    if isinstance(items, dict):
        pairs = list(items.items())
    else:
        pairs = []
        for part in [p for item in (items or []) for p in str(item).split(",")]:
            part = part.strip()
            if not part:
                continue
            name, sep, val = part.partition("=")
            if not sep:
                raise UsageError(f"--shapes: bad entry {part!r}", hint=f"use SHAPE=SHARE with SHAPE in {', '.join(SHAPES)}")
            pairs.append((name.strip(), val.strip()))
    for name, val in pairs:
        if name not in SHAPES:
            raise UsageError(f"--shapes: unknown shape {name!r}", hint=f"choose from {', '.join(SHAPES)}")
        try:
            out[name] = float(val)
        except (TypeError, ValueError):
            raise UsageError(f"--shapes: share for {name} must be a number, got {val!r}") from None
        if out[name] < 0:
            raise UsageError(f"--shapes: share for {name} must be >= 0")
    if not any(v > 0 for v in out.values()):
        raise UsageError("--shapes gives every shape share 0")
    return out


@dataclass
class Episode:
    shape: str
    offered: list[Tool]
    user: str
    turns: list[list[dict]] = field(default_factory=list)  # each turn: calls [{"name", "arguments"}]
    observations: list[list[str]] = field(default_factory=list)
    reply: str = ""  # the final answer (call shapes) or the whole reply (no-call shapes)
    frame: int = 0
    target: Tool | None = None
    omitted: dict = field(default_factory=dict)  # per call index: {param: default} of unstated optional params
    system: str | None = None


class Engine:
    """Episodes over the grammar-phrased tools of ``catalog`` for one split."""

    def __init__(self, catalog: Catalog, *, split: str, shares: dict[str, float], optional_share: float = 0.35,
                 no_system_share: float = 0.4, system_prompt: str | None = None, exclude: set[str] | None = None,
                 max_tools: int = 5, topic_share: float = 0.0, near_miss_share: float = 0.0):
        self.catalog = catalog
        self.topic_share = topic_share
        self.near_miss_share = near_miss_share
        self._siblings: list[tuple[Tool, list[Tool]]] | None = None  # built on first use
        self.split = split
        self.frames = "eval" if split == "eval" else "train"
        every = list(catalog.tools.values())
        held = [t for t in every if t.split == "eval"]
        train = [t for t in every if t.split != "eval"]
        if split == "eval":
            targets = held or train
            offer = every
        else:
            targets = train
            offer = train
        exclude = exclude or set()
        self.targets = [t for t in targets if t.name not in exclude and phrasing.phrase_problem(t.name, t.description, t.parameters) is None]
        self.offer = offer
        self._by_vp: dict | None = None  # verb phrase -> the catalog's tools, built on first use
        self.max_tools = max(2, max_tools)
        self.optional_share = optional_share
        self.no_system_share = no_system_share
        self.system_prompt = system_prompt
        self.shapes = [s for s in SHAPES if shares.get(s, 0) > 0]
        self.weights = [shares[s] for s in self.shapes]
        self._intent: dict[str, phrasing.Intent] = {}
        self.by_domain: dict[str, list[Tool]] = {}
        self.by_family: dict[str, list[Tool]] = {}
        for t in offer:
            self.by_domain.setdefault(self._domain(t), []).append(t)
            self.by_family.setdefault(t.meta.get("family") or t.name, []).append(t)
        self.typed = [t for t in self.targets if any(_kind(s) in ("number", "array", "object")
                                                     for s in (t.parameters.get("properties") or {}).values())]
        self.parallel_ok = [t for t in self.targets if self._varying(t)]
        self.missing_ok = [t for t in self.targets if any(_kind((t.parameters.get("properties") or {}).get(p) or {}) == "string"
                                                          for p in t.parameters.get("required") or [])]
        self.pairs = self._pairs()
        self._outside_tools: list[Tool] | None = None
        self._words: dict[str, frozenset[str]] = {}
        self._target_names = {t.name for t in self.targets}

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _domain(t: Tool) -> str:
        return str(t.meta.get("domain") or t.category)

    def intent(self, t: Tool) -> phrasing.Intent:
        it = self._intent.get(t.name)
        if it is None:
            it = self._intent[t.name] = phrasing.intent(t.name, t.description, t.parameters)
        return it

    def _sense(self, t: Tool) -> str:
        return str(t.meta.get("sense") or t.name)

    def _varying(self, t: Tool) -> str | None:
        props = t.parameters.get("properties") or {}
        for p in t.parameters.get("required") or []:
            s = props.get(p) or {}
            if _kind(s) in ("string", "integer", "number") and "enum" not in s:
                return p
        return None

    def _pairs(self) -> list[tuple[Tool, Tool, str]]:
        """(producer, consumer, parameter): the producer's result has a field the consumer requires."""
        out = []
        by_param: dict[str, list[Tool]] = {}
        for t in self.targets:
            props = t.parameters.get("properties") or {}
            for p in t.parameters.get("required") or []:
                if _kind(props.get(p) or {}) == "string" and "enum" not in (props.get(p) or {}):
                    by_param.setdefault(p, []).append(t)
        for t in self.targets:
            rprops = (t.result_schema or {}).get("properties") or {}
            for r, rs in rprops.items():
                if not isinstance(rs, dict) or _kind(rs) != "string" or r in (t.parameters.get("properties") or {}):
                    continue
                for c in by_param.get(r, []):
                    if c.name != t.name and self._sense(c) != self._sense(t):
                        out.append((t, c, r))
        return out

    def args(self, t: Tool, rng: random.Random, *, optional_share: float | None = None) -> tuple[dict, dict]:
        """(arguments, omitted optional {param: default}) for a call of ``t``."""
        props = t.parameters.get("properties") or {}
        required = [p for p in t.parameters.get("required") or [] if p in props]
        share = self.optional_share if optional_share is None else optional_share
        out, omitted = {}, {}
        for p, s in props.items():
            s = s if isinstance(s, dict) else {}
            if p in required or rng.random() < share:
                v = sample(p, s, rng)
                if "default" in s and v == s["default"] and p not in required:
                    omitted[p] = s["default"]
                    continue
                out[p] = v
            else:
                omitted[p] = s.get("default", _ABSENT)
        return out, omitted

    def _fits_as_well(self, t: Tool, target: Tool, call: dict | None) -> bool:
        """True when ``t`` serves the target's request as well as the target does: the same verb phrase,
        every stated argument one of its parameters and none of its required ones missing (so the
        request names nothing that tells them apart)."""
        if call is None or self.intent(t).vp != self.intent(target).vp:
            return False
        args = set(call["arguments"])
        return args <= set((t.parameters.get("properties") or {})) and set(t.parameters.get("required") or []) <= args

    def _distractors(self, target: list[Tool], rng: random.Random, k: int, *, lookalike: bool,
                     call: dict | None = None) -> list[Tool]:
        taken = {t.name for t in target}
        senses = {self._sense(t) for t in target}
        if call is not None:  # never offer a tool the request cannot tell from the one it asks for
            if self._by_vp is None:
                self._by_vp = {}
                for t in self.catalog.tools.values():
                    self._by_vp.setdefault(self.intent(t).vp, []).append(t)
            taken |= {t.name for t in self._by_vp.get(self.intent(target[0]).vp, [])
                      if t.name not in taken and self._fits_as_well(t, target[0], call)}
        out: list[Tool] = []
        if lookalike:
            t0 = target[0]
            fam = [t for t in self.by_family.get(t0.meta.get("family") or t0.name, []) if t.name not in taken and self._sense(t) not in senses]
            dom = [t for t in self.by_domain.get(self._domain(t0), []) if t.name not in taken and self._sense(t) not in senses]
            for pool in (fam, dom):
                rng.shuffle(pool)
                for t in pool:
                    if len(out) >= max(1, k - 1):
                        break
                    if t.name not in taken and self._sense(t) not in senses:
                        out.append(t)
                        taken.add(t.name)
                        senses.add(self._sense(t))
        tries = 0
        while len(out) < k and tries < 20:
            tries += 1
            t = rng.choice(self.offer)
            if t.name in taken or self._sense(t) in senses:
                continue
            out.append(t)
            taken.add(t.name)
            senses.add(self._sense(t))
        return out

    def _system(self, rng: random.Random) -> str | None:
        if rng.random() < self.no_system_share:
            return None
        return self.system_prompt if rng.random() < 0.5 and self.system_prompt else rng.choice(SYSTEMS)

    def _offer(self, needed: list[Tool], extra: list[Tool], rng: random.Random) -> list[Tool]:
        tools = list(needed) + extra[: max(0, self.max_tools - len(needed))]
        rng.shuffle(tools)
        return tools

    # ------------------------------------------------------------------ shapes

    def episode(self, rng: random.Random) -> tuple[Episode | None, str]:
        """One candidate (or None with the shape, when the catalog cannot make that shape)."""
        shape = rng.choices(self.shapes, weights=self.weights)[0]
        if not self.targets:
            return None, shape
        ep = getattr(self, f"_{shape}")(rng)
        if ep is not None:
            ep.system = self._system(rng)
        return ep, shape

    def _one_call(self, t: Tool, rng: random.Random, optional_share: float | None = None) -> tuple[dict, dict]:
        a, om = self.args(t, rng, optional_share=optional_share)
        return {"name": t.name, "arguments": a}, om

    def _finish(self, ep: Episode, rng: random.Random) -> Episode:
        ep.observations = [[self.catalog[c["name"]].simulate(c["arguments"]) for c in turn] for turn in ep.turns]
        last = ep.turns[-1]
        obs = ep.observations[-1]
        if len(last) == 1:
            ep.reply = phrasing.final_answer(self.intent(self.catalog[last[0]["name"]]), obs[0], rng)
        else:
            ep.reply = " ".join(phrasing.final_answer(self.intent(self.catalog[c["name"]]), o, rng)
                                for c, o in zip(last, obs))
        return ep

    def _single(self, rng: random.Random, target: Tool | None = None, optional_share: float | None = None) -> Episode:
        t = target or rng.choice(self.targets)
        call, om = self._one_call(t, rng, optional_share)
        user, frame = phrasing.request(self.intent(t), call["arguments"], rng, self.frames)
        extra = self._distractors([t], rng, rng.choice([0, 0, 1, 2]), lookalike=False, call=call)
        ep = Episode("single", self._offer([t], extra, rng), user, [[call]], frame=frame, target=t, omitted={0: om})
        return self._finish(ep, rng)

    def _typed(self, rng: random.Random) -> Episode | None:
        if not self.typed:
            return None
        ep = self._single(rng, rng.choice(self.typed), optional_share=0.6)
        ep.shape = "typed"
        return ep

    def _choose(self, rng: random.Random) -> Episode:
        t = rng.choice(self.targets)
        call, om = self._one_call(t, rng)
        user, frame = phrasing.request(self.intent(t), call["arguments"], rng, self.frames)
        extra = self._distractors([t], rng, rng.randint(1, min(4, self.max_tools - 1)), lookalike=True, call=call)
        ep = Episode("choose", self._offer([t], extra, rng), user, [[call]], frame=frame, target=t, omitted={0: om})
        return self._finish(ep, rng)

    def _parallel(self, rng: random.Random) -> Episode | None:
        if not self.parallel_ok:
            return None
        t = rng.choice(self.parallel_ok)
        vary = self._varying(t)
        base, om = self.args(t, rng)
        n = rng.choice([2, 2, 3])
        props = t.parameters.get("properties") or {}
        vals: list[Any] = []
        for _ in range(n * 4):
            v = sample(vary, props[vary], rng)
            if v not in vals:
                vals.append(v)
            if len(vals) == n:
                break
        if len(vals) < 2:
            return None
        shared = {k: v for k, v in base.items() if k != vary}
        if rng.random() < 0.6:
            user, frame = phrasing.same_tool_request(self.intent(t), shared, vary, vals, rng, self.frames)
            calls = [{"name": t.name, "arguments": {**{k: v for k, v in base.items() if k != vary}, vary: v}} for v in vals]
            # keep the parameter order of the schema
            calls = [{"name": t.name, "arguments": {k: c["arguments"][k] for k in props if k in c["arguments"]}} for c in calls]
        else:
            calls = [{"name": t.name, "arguments": self.args(t, rng, optional_share=0.0)[0]} for _ in range(n)]
            if len({json.dumps(c["arguments"], sort_keys=True) for c in calls}) < len(calls):
                return None
            om = {p: (props[p] or {}).get("default", _ABSENT) for p in props if p not in (t.parameters.get("required") or [])}
            user, frame = phrasing.multi_request([phrasing.clause(self.intent(t), c["arguments"], rng) for c in calls],
                                                 rng, self.frames)
        extra = self._distractors([t], rng, rng.choice([0, 1, 1, 2]), lookalike=rng.random() < 0.5)
        ep = Episode("parallel", self._offer([t], extra, rng), user, [calls], frame=frame, target=t,
                     omitted={i: om for i in range(len(calls))})
        return self._finish(ep, rng)

    def _parallel_multi(self, rng: random.Random) -> Episode | None:
        t = rng.choice(self.targets)
        same = [x for x in self.by_domain.get(self._domain(t), []) if x.name in self._target_names and self._sense(x) != self._sense(t)] \
            if rng.random() < 0.5 else []
        others = same or [x for x in rng.sample(self.targets, min(6, len(self.targets))) if self._sense(x) != self._sense(t)]
        if not others:
            return None
        k = 2 if rng.random() < 0.8 or len(others) < 2 else 3
        picked = [t] + rng.sample(others, min(k - 1, len(others)))
        if len({self._sense(x) for x in picked}) < len(picked):
            return None
        calls, oms = [], {}
        for i, x in enumerate(picked):
            c, om = self._one_call(x, rng, optional_share=0.2)
            calls.append(c)
            oms[i] = om
        if any(b is not a and self._fits_as_well(b, a, c) for a, c in zip(picked, calls) for b in picked):
            return None  # two of the calls could be swapped: the request cannot say which tool does which
        user, frame = phrasing.multi_request([phrasing.clause(self.intent(x), c["arguments"], rng)
                                              for x, c in zip(picked, calls)], rng, self.frames)
        extra = self._distractors(picked, rng, rng.choice([0, 1, 1]), lookalike=False)
        ep = Episode("parallel_multi", self._offer(picked, extra, rng), user, [calls], frame=frame, target=t, omitted=oms)
        return self._finish(ep, rng)

    def _multi_step(self, rng: random.Random) -> Episode | None:
        if not self.pairs:
            return None
        prod, cons, param = rng.choice(self.pairs)
        c1, om1 = self._one_call(prod, rng, optional_share=0.2)
        obs1 = self.catalog[prod.name].simulate(c1["arguments"])
        try:
            got = json.loads(obs1).get(param)
        except (json.JSONDecodeError, AttributeError):
            return None
        if not isinstance(got, str) or not got:
            return None
        a2, om2 = self.args(cons, rng, optional_share=0.0)
        a2[param] = got
        props = cons.parameters.get("properties") or {}
        a2 = {k: a2[k] for k in props if k in a2}
        c2 = {"name": cons.name, "arguments": a2}
        it2 = self.intent(cons)
        rest = {k: v for k, v in a2.items() if k != param}
        second = it2.vp + (f" with {phrasing.join([phrasing.arg_phrase(it2, k, v, rng) for k, v in rest.items()], rng)}" if rest else "")
        np = it2.np.get(param) or param
        first = phrasing.clause(self.intent(prod), c1["arguments"], rng)
        user, frame = phrasing.then_request(first, second, np, rng, self.frames)
        extra = self._distractors([prod, cons], rng, rng.choice([0, 1]), lookalike=False)
        ep = Episode("multi_step", self._offer([prod, cons], extra, rng), user, [[c1], [c2]], frame=frame, target=prod,
                     omitted={0: om1, 1: om2})
        return self._finish(ep, rng)

    def _content_words(self, t: Tool) -> frozenset[str]:
        """The tool's content words, singular ("users" and "user" are one word), stop words left out."""
        got = self._words.get(t.name)
        if got is None:
            got = self._words[t.name] = frozenset(_singular(w) for w in words(t.name) + self.intent(t).vp.split()
                                                  if len(w) > 2 and w not in _STOP)
        return got

    def _outside(self) -> list[Tool]:
        """Requests no tool of a one-domain catalog serves: the synthetic APIs (seed 0) of this split,
        their held-out families for the eval split, the others for training."""
        if self._outside_tools is None:
            from trajtune.generators.synth import synthesize
            from trajtune.generators.toolsrc import parse

            found, _ = parse(synthesize(None, 0))
            want_eval = self.split == "eval"
            self._outside_tools = [Tool(name=f["name"], description=f["description"], category=f["category"],
                                        parameters=f["parameters"], result_schema=f.get("result"), meta=f.get("meta") or {})
                                   for f in found if ((f.get("meta") or {}).get("split") == "eval") == want_eval]
        return self._outside_tools

    def _irrelevance(self, rng: random.Random) -> Episode | None:
        """A request no offered tool serves: another domain of the catalog (or, for a catalog of one
        domain, a synthetic API outside it), sharing no content word with the offered tools."""
        if self.topic_share > 0 and rng.random() < self.topic_share:  # no draw at 0: the same records as before
            ep = self._topic(rng)
            if ep is not None:
                return ep
        if self.near_miss_share > 0 and rng.random() < self.near_miss_share:  # likewise
            ep = self._near_miss(rng)
            if ep is not None:
                return ep
        own = len(self.by_domain) >= 3
        t = rng.choice(self.targets) if own or rng.random() < 0.3 else rng.choice(self._outside())
        call, _ = self._one_call(t, rng, optional_share=0.2)
        it = self.intent(t)
        user, frame = phrasing.request(it, call["arguments"], rng, self.frames)
        dom = self._domain(t)
        tw = self._content_words(t)
        fam = t.meta.get("family") or t.name
        want = rng.choice([1, 1, 2, 3])
        # half the time near misses: tools of the same domain (another family, no content word shared)
        near = own and rng.random() < 0.5 and len(self.by_domain.get(dom, [])) > 1
        pool = self.by_domain[dom] if near else self.offer
        offered: list[Tool] = []
        for _ in range(40):
            x = rng.choice(pool)
            if x.name != t.name and (x.meta.get("family") or x.name) != fam and (near or self._domain(x) != dom or not own) \
                    and not self._content_words(x) & tw and x not in offered:
                offered.append(x)
                if len(offered) == want:
                    break
        if not offered:
            return None
        reply = phrasing.decline(it, [self.intent(x) for x in offered], rng)
        return Episode("irrelevance", offered, user, [], reply=reply, frame=frame, target=t)

    @staticmethod
    def _action(vp: str) -> tuple[str, str] | None:
        """(verb, head noun of its object) of a verb phrase: "list the books by author" -> ("list",
        "book"); None when there is no object."""
        ws = vp.lower().split()
        obj: list[str] = []
        for w in ws[1:]:
            if w in _PREPOSITIONS:
                break
            if w not in ("the", "a", "an"):
                obj.append(w)
        return (ws[0], _singular(obj[-1])) if ws and obj else None

    def _sibling(self, t: Tool, x: Tool) -> bool:
        """True when offering ``x`` alone makes a near miss for a request of ``t``: the same domain,
        another family and sense, a content word in common, but another thing acted on, and another
        action unless both only read ("get the weather forecast" vs "get the current weather" is a
        miss; "send the email" vs "send the message", or "list the books by author" vs "search the
        books", could serve the same request and are not)."""
        if x.name == t.name or self._domain(x) != self._domain(t) or self._sense(x) == self._sense(t) \
                or (x.meta.get("family") or x.name) == (t.meta.get("family") or t.name):
            return False
        if not self._content_words(x) & self._content_words(t):
            return False
        a, b = self._action(self.intent(t).vp), self._action(self.intent(x).vp)
        if a is None or b is None or a[1] == b[1]:
            return False
        return a[0] != b[0] or a[0] in _READ_VERBS

    def _near_miss(self, rng: random.Random) -> Episode | None:
        """A request for one tool with only its siblings offered (:meth:`_sibling`): the hard
        irrelevance, where the offered tool shares the request's domain and words but does something
        else, so the right answer is still no call."""
        if self._siblings is None:
            self._siblings = []
            for t in self.targets:
                sib = [x for x in self.by_domain.get(self._domain(t), []) if self._sibling(t, x)]
                if sib:
                    self._siblings.append((t, sib))
        if not self._siblings:
            return None
        t, sib = rng.choice(self._siblings)
        call, _ = self._one_call(t, rng, optional_share=0.2)
        it = self.intent(t)
        user, frame = phrasing.request(it, call["arguments"], rng, self.frames)
        offered = [rng.choice(sib)]
        more = [x for x in sib if self._sense(x) != self._sense(offered[0])]
        if more and rng.random() < 0.3:
            offered.append(rng.choice(more))
        rng.shuffle(offered)
        reply = phrasing.decline(it, [self.intent(x) for x in offered], rng)
        return Episode("irrelevance", offered, user, [], reply=reply, frame=frame, target=t)

    def _topic(self, rng: random.Random) -> Episode | None:
        """A general question on an offered tool's own subject that the tool does not answer ("Why would
        someone want to get the restaurant menu?" with that tool offered): the harder irrelevance, where
        the request shares the tool's words but asks for no call."""
        t = rng.choice(self.targets)
        it = self.intent(t)
        if not phrasing.topic_object(it):
            return None
        user, frame = phrasing.topic_question(it, rng, self.frames)
        extra = self._distractors([t], rng, rng.choice([0, 0, 1]), lookalike=False)
        return Episode("irrelevance", self._offer([t], extra, rng), user, [], reply=phrasing.topic_reply(it, rng),
                       frame=frame, target=t)

    def followup(self, prev: Episode, rng: random.Random) -> Episode | None:
        """The user's next request in the same conversation, on the tools already offered: most often
        a call of one of them (another one than before or the same with new values: choosing among
        the same offer again), else a request none of them serves (answer directly). None when the
        offer allows neither."""
        offered = list(prev.offered)
        callable_ = [t for t in offered if t.name in self._target_names]
        if callable_ and rng.random() < 0.75:
            t = rng.choice(callable_)
            call, om = self._one_call(t, rng)
            if any(o is not t and self._fits_as_well(o, t, call) for o in offered):
                return None  # the request could not tell the offered tools apart
            user, frame = phrasing.request(self.intent(t), call["arguments"], rng, self.frames)
            return self._finish(Episode("single", offered, user, [[call]], frame=frame, target=t, omitted={0: om}), rng)
        seen = frozenset().union(*(self._content_words(x) for x in offered))
        families = {x.meta.get("family") or x.name for x in offered}
        senses = {self._sense(x) for x in offered}
        for _ in range(20):
            t = rng.choice(self.targets)
            if (t.meta.get("family") or t.name) in families or self._sense(t) in senses or self._content_words(t) & seen:
                continue
            call, _ = self._one_call(t, rng, optional_share=0.2)
            it = self.intent(t)
            user, frame = phrasing.request(it, call["arguments"], rng, self.frames)
            return Episode("irrelevance", offered, user, [], reply=phrasing.decline(it, [self.intent(x) for x in offered], rng),
                           frame=frame, target=t)
        return None

    def _missing_info(self, rng: random.Random) -> Episode | None:
        if not self.missing_ok:
            return None
        t = rng.choice(self.missing_ok)
        call, _ = self._one_call(t, rng, optional_share=0.1)
        props = t.parameters.get("properties") or {}
        cands = [p for p in t.parameters.get("required") or [] if _kind(props.get(p) or {}) == "string"]
        drop = rng.choice(cands)
        args = {k: v for k, v in call["arguments"].items() if k != drop}
        it = self.intent(t)
        user, frame = phrasing.request(it, args, rng, self.frames)
        extra = self._distractors([t], rng, rng.choice([0, 1]), lookalike=False)
        return Episode("missing_info", self._offer([t], extra, rng), user, [], reply=phrasing.ask_missing(it, drop, rng),
                       frame=frame, target=t)


class _Absent:
    def __repr__(self) -> str:
        return "<absent>"


_ABSENT = _Absent()


def _kind(schema: Any) -> str:
    if not isinstance(schema, dict):  # `true` / `false` sub-schemas
        return "any"
    t = schema.get("type")
    if isinstance(t, list):
        t = next((x for x in t if x != "null"), None)
    if t is None and "properties" in schema:
        return "object"
    return str(t or "any")


# ---------------------------------------------------------------------------- records


def _messages_head(ep: Episode) -> list[dict]:
    head = [{"role": "system", "content": ep.system}] if ep.system else []
    return head + [{"role": "user", "content": ep.user}]


def _call_msg(turn: list[dict], start: int) -> dict:
    return {"role": "assistant", "content": None,
            "tool_calls": [{"id": f"call_{start + i}", "type": "function",
                            "function": {"name": c["name"], "arguments": c["arguments"]}} for i, c in enumerate(turn)]}


def _steps(ep: Episode, upto: int, first_id: int = 1) -> list[dict]:
    msgs, n = [], first_id
    for k in range(upto):
        turn = ep.turns[k]
        msgs.append(_call_msg(turn, n))
        for i, c in enumerate(turn):
            msgs.append({"role": "tool", "tool_call_id": f"call_{n + i}", "name": c["name"], "content": ep.observations[k][i]})
        n += len(turn)
    return msgs


def tools_json(ep: Episode) -> list[dict]:
    return [t.openai() for t in ep.offered]


def sft_body(ep: Episode, followups: list[Episode] | tuple = ()) -> dict:
    """The trajectory: the episode's request, calls, observations and answer, then each follow-up
    request of the same conversation with its own (call ids numbered on across the conversation)."""
    msgs = _messages_head(ep) + _steps(ep, len(ep.turns)) + [{"role": "assistant", "content": ep.reply}]
    n = 1 + sum(len(t) for t in ep.turns)
    for f in followups:
        msgs += [{"role": "user", "content": f.user}] + _steps(f, len(f.turns), n) + [{"role": "assistant", "content": f.reply}]
        n += sum(len(t) for t in f.turns)
    return {"tools": tools_json(ep), "messages": msgs}


def task_body(ep: Episode, step: int) -> dict:
    prompt = _messages_head(ep) + _steps(ep, step)
    if not ep.turns:
        return {"tools": tools_json(ep), "prompt": prompt, "expected": {"calls": [], "order": "strict"}}
    turn = ep.turns[step]
    calls = []
    base = sum(len(t) for t in ep.turns[:step])
    for i, c in enumerate(turn):
        acc = {k: [v] for k, v in c["arguments"].items()}
        for p, d in ep.omitted.get(base + i, {}).items():
            # an unstated optional parameter may be left out or sent with its default; without a
            # default the model must not send it (so it is not listed)
            if p not in acc and not isinstance(d, _Absent):
                acc[p] = [None, d]
        calls.append({"name": c["name"], "arguments": acc})
    return {"tools": tools_json(ep), "prompt": prompt,
            "expected": {"calls": calls, "order": "any" if len(calls) > 1 else "strict"}}


def calls_text(ep: Episode) -> list:
    return [[{"name": c["name"], "arguments": c["arguments"]} for c in turn] for turn in ep.turns]


# ---------------------------------------------------------------------------- gates


def semantic_problem(engine: Engine, ep: Episode) -> str | None:
    """The semantic gate: every value stated (request or earlier observations), every tool offered."""
    offered = {t.name: t for t in ep.offered}
    context = ep.user
    for k, turn in enumerate(ep.turns):
        for c in turn:
            tool = offered.get(c["name"])
            if tool is None:
                return f"calls {c['name']!r}, which is not offered"
            it = engine.intent(tool)
            props = tool.parameters.get("properties") or {}
            for p, v in c["arguments"].items():
                if p not in props:
                    return f"{c['name']}: argument {p!r} is not a parameter"
                if not phrasing.stated(v, context, p, it.np.get(p, "")):
                    return f"{c['name']}: value of {p!r} is not stated in the request"
        context += " " + " ".join(ep.observations[k])
    if ep.shape in NOCALL_SHAPES and ep.turns:
        return "a no-call shape with calls"
    return None


# ----------------------------------------------------------------------- preferences

PREF_FAILURES = ("wrong_tool", "missing_required_arg", "wrong_type", "wrong_value", "hallucinated_tool",
                 "malformed_json", "truncated_json", "chatter", "extra_argument", "extra_call")
# keys a model invents when a tool has no unused optional parameter (extra_argument)
EXTRA_KEYS = ("version", "mode", "format", "verbose", "force", "region", "priority", "notes")


def extra_argument(props: dict, args: dict, rng: random.Random) -> tuple[str, Any] | None:
    """(key, value) a request did not ask for: an unused optional parameter with a value other than
    its default, or else an invented key; the mirror image of missing_required_arg (without it,
    DPO on "missing argument" pairs teaches a model to add arguments nobody stated)."""
    spare = sorted(k for k in props if k not in args)
    if spare:
        k = rng.choice(spare)
        schema = props[k] if isinstance(props[k], dict) else {}
        for _ in range(6):
            v = sample(k, schema, rng)
            if "default" not in schema or v != schema["default"]:
                return k, v
        return None
    k = rng.choice([w for w in EXTRA_KEYS if w not in props] or ["extra"])
    return k, sample(k, {"type": "string"}, rng)


def rejected_turn(engine: Engine, ep: Episode, step: int, ftype: str, rng: random.Random) -> tuple[dict, str] | None:
    """A failing assistant turn (message, failure type) for the turn at ``step``; None when not applicable."""
    from trajtune.chat import TOOL_CALL_CLOSE, TOOL_CALL_OPEN, format_tool_call

    # the rejected turn's call ids continue the conversation's, as the chosen turn's do
    first = sum(len(t) for t in ep.turns[:step]) + 1
    if ep.shape in NOCALL_SHAPES:
        if ep.shape == "irrelevance":
            t = rng.choice(ep.offered)
            a, _ = engine.args(t, rng, optional_share=0.0)
            return _call_msg([{"name": t.name, "arguments": a}], first), "unneeded_call"
        t = ep.target
        a, _ = engine.args(t, rng, optional_share=0.0)
        return _call_msg([{"name": t.name, "arguments": a}], first), "invented_argument"
    turn = ep.turns[step]
    if len(turn) > 1 and rng.random() < 0.35:
        k = rng.randrange(len(turn))
        return _call_msg([c for i, c in enumerate(turn) if i != k], first), "partial_calls"
    i = rng.randrange(len(turn))
    call = turn[i]
    name, args = call["name"], call["arguments"]
    tool = engine.catalog[name]
    required = [r for r in tool.parameters.get("required") or [] if r in args]

    def text(body: str) -> dict:
        return {"role": "assistant", "content": body}

    def others(bad: dict) -> list[dict]:
        return [c if j != i else bad for j, c in enumerate(turn)]

    if ftype == "wrong_tool":
        alts = [t for t in ep.offered if t.name != name]
        if not alts:
            return None
        t = rng.choice(alts)
        a, _ = engine.args(t, rng, optional_share=0.0)
        return _call_msg(others({"name": t.name, "arguments": a}), first), ftype
    if ftype == "missing_required_arg":
        if not required:
            return None
        drop = rng.choice(required)
        return text("\n".join(format_tool_call(c["name"], {k: v for k, v in c["arguments"].items() if k != drop})
                              if j == i else format_tool_call(c["name"], c["arguments"]) for j, c in enumerate(turn))), ftype
    if ftype == "wrong_type":
        keys = [k for k, v in args.items() if isinstance(v, (int, float, list)) and not isinstance(v, bool)]
        if not keys:
            return None
        k = rng.choice(keys)
        bad = dict(args)
        bad[k] = phrasing.value_text(args[k]) if not isinstance(args[k], list) else phrasing.value_text(args[k])
        return text("\n".join(format_tool_call(c["name"], bad if j == i else c["arguments"]) for j, c in enumerate(turn))), ftype
    if ftype == "wrong_value":
        if not args:
            return None
        k = rng.choice(sorted(args))
        props = tool.parameters.get("properties") or {}
        for _ in range(6):
            v = sample(k, props.get(k) or {}, rng)
            if v != args[k]:
                return _call_msg(others({"name": name, "arguments": {**args, k: v}}), first), ftype
        return None
    if ftype == "extra_argument":
        got = extra_argument(tool.parameters.get("properties") or {}, args, rng)
        if got is None:
            return None
        return _call_msg(others({"name": name, "arguments": {**args, got[0]: got[1]}}), first), ftype
    if ftype == "extra_call":  # the right calls and one more nobody asked for
        alts = [t for t in ep.offered if t.name not in {c["name"] for c in turn}]
        if not alts:
            return None
        t = rng.choice(alts)
        a, _ = engine.args(t, rng, optional_share=0.0)
        return _call_msg(list(turn) + [{"name": t.name, "arguments": a}], first), ftype
    if ftype == "hallucinated_tool":
        fake = rng.choice([name + "_tool", "get_" + name.split(".")[-1], name.replace("get", "fetch") if "get" in name else name + "_v3"])
        if fake in {t.name for t in ep.offered}:
            return None
        return text(format_tool_call(fake, args)), ftype
    if ftype == "malformed_json":
        body = json.dumps({"name": name, "arguments": args}, ensure_ascii=False)
        broken = rng.choice([body[:-1], body.replace('":', '"', 1), body.replace('"', "'")])
        return text(f"{TOOL_CALL_OPEN}\n{broken}\n{TOOL_CALL_CLOSE}"), ftype
    if ftype == "truncated_json":
        body = json.dumps({"name": name, "arguments": args}, ensure_ascii=False)
        return text(f"{TOOL_CALL_OPEN}\n{body[: max(8, int(len(body) * rng.uniform(0.4, 0.8)))]}"), ftype
    if ftype == "chatter":
        return text(rng.choice(["Sure, I can help with that! Let me know if you need anything else.",
                                "Okay, I'll take care of it right away.", "Happy to help with this request!"])), ftype
    raise ValueError(ftype)
